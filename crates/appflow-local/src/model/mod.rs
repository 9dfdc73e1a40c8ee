//! The pure state of the fake AppFlow account: flows, their runs, idempotency tokens and page
//! tokens. No clock and no randomness in here: callers pass `now` and new execution ids, so tests
//! drive time by hand.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use jiff::Timestamp;

use crate::config::{FlowSpec, FlowStatus, TriggerType};
use crate::errors::{AppFlowError, ErrorKind};

/// AppFlow remembers a StartFlow clientToken for 8 hours.
pub use flowrun_api::TOKEN_WINDOW;

mod flow;

pub use flow::{ExecutionStatus, Flow, LastRun, Run, RunState, Started};

struct TokenEntry {
    started: Started,
    first_seen: Timestamp,
}

enum Cursor {
    /// The next records page holds the runs older than index `before`.
    Records { flow_name: String, before: usize },
    /// The next flows page starts after this name.
    Flows { after: String },
}

pub struct Page<T> {
    pub items: Vec<T>,
    pub next_token: Option<String>,
}

pub struct Model {
    flows: BTreeMap<String, Flow>,
    tokens: HashMap<String, TokenEntry>,
    pages: HashMap<String, Cursor>,
    // Never reset, so a page token from before a reset cannot come back meaning something else.
    pages_issued: u64,
    executions_by_flow: BTreeMap<String, u64>,
    executions_by_token: BTreeMap<String, u64>,
}

impl Model {
    pub fn new(specs: &[FlowSpec], now: Timestamp) -> Self {
        Self {
            flows: specs
                .iter()
                .map(|spec| (spec.name.clone(), Flow::new(spec.clone(), now)))
                .collect(),
            tokens: HashMap::new(),
            pages: HashMap::new(),
            pages_issued: 0,
            executions_by_flow: BTreeMap::new(),
            executions_by_token: BTreeMap::new(),
        }
    }

    pub fn reset(&mut self, specs: &[FlowSpec], now: Timestamp) {
        *self = Self {
            pages_issued: self.pages_issued,
            ..Self::new(specs, now)
        };
    }

    /// Creates or replaces a flow; an existing flow keeps its runs and creation time.
    /// Returns whether the flow is new.
    pub fn upsert_flow(&mut self, spec: FlowSpec, now: Timestamp) -> bool {
        match self.flows.get_mut(&spec.name) {
            Some(flow) => {
                flow.status = spec.status;
                flow.spec = spec;
                flow.last_updated_at = now;
                false
            }
            None => {
                self.flows.insert(spec.name.clone(), Flow::new(spec, now));
                true
            }
        }
    }

    pub fn delete_flow(&mut self, name: &str) -> bool {
        self.flows.remove(name).is_some()
    }

    pub fn expire_tokens(&mut self) {
        self.tokens.clear();
    }

    pub fn executions_by_flow(&self) -> &BTreeMap<String, u64> {
        &self.executions_by_flow
    }

    pub fn executions_by_token(&self) -> &BTreeMap<String, u64> {
        &self.executions_by_token
    }

    pub fn flow(&self, name: &str) -> Result<&Flow, AppFlowError> {
        live_flow(&self.flows, name)
    }

    /// `execution_id` is used only if an on-demand run actually starts.
    pub fn start_flow(
        &mut self,
        name: &str,
        client_token: Option<&str>,
        now: Timestamp,
        execution_id: String,
    ) -> Result<Started, AppFlowError> {
        let trigger_type = live_flow(&self.flows, name)?.spec.trigger_type;
        self.tokens
            .retain(|_, entry| now < entry.first_seen + TOKEN_WINDOW);
        if let Some(token) = client_token
            && let Some(entry) = self.tokens.get(token)
        {
            // AppFlow docs: different parameters with the same token are an error for
            // scheduled and event flows, but not for on-demand ones.
            if entry.started.flow_name != name && trigger_type != TriggerType::OnDemand {
                return Err(AppFlowError::new(
                    ErrorKind::Conflict,
                    format!(
                        "Client token {token} was already used to start flow {}",
                        entry.started.flow_name
                    ),
                ));
            }
            return Ok(entry.started.clone());
        }
        let started = live_flow_mut(&mut self.flows, name)?.start(now, execution_id)?;
        if started.execution_id.is_some() {
            *self.executions_by_flow.entry(name.to_owned()).or_default() += 1;
        }
        if let Some(token) = client_token {
            let executions = self
                .executions_by_token
                .entry(token.to_owned())
                .or_default();
            *executions += u64::from(started.execution_id.is_some());
            self.tokens.insert(
                token.to_owned(),
                TokenEntry {
                    started: started.clone(),
                    first_seen: now,
                },
            );
        }
        Ok(started)
    }

    /// Newest first.
    pub fn execution_records(
        &mut self,
        name: &str,
        limit: usize,
        next_token: Option<&str>,
    ) -> Result<Page<&Run>, AppFlowError> {
        let run_count = live_flow(&self.flows, name)?.runs.len();
        let end = match next_token {
            None => run_count,
            Some(token) => match self.pages.get(token) {
                Some(Cursor::Records { flow_name, before }) if flow_name == name => {
                    (*before).min(run_count)
                }
                _ => return Err(invalid_next_token()),
            },
        };
        let start = end.saturating_sub(limit);
        let next_token = (start > 0).then(|| {
            self.issue_page_token(Cursor::Records {
                flow_name: name.to_owned(),
                before: start,
            })
        });
        let runs = &live_flow(&self.flows, name)?.runs;
        Ok(Page {
            items: runs[start..end].iter().rev().collect(),
            next_token,
        })
    }

    /// Cancels the given runs (all in-progress runs when `ids` is empty) and returns the ids
    /// that could not be cancelled because they are not in progress or unknown.
    pub fn cancel_executions(
        &mut self,
        name: &str,
        ids: &[String],
        now: Timestamp,
    ) -> Result<Vec<String>, AppFlowError> {
        let flow = live_flow_mut(&mut self.flows, name)?;
        if ids.is_empty() {
            for run in flow.runs.iter_mut().filter(|run| run.in_progress(now)) {
                run.cancel_requested_at = Some(now);
            }
            return Ok(Vec::new());
        }
        let mut invalid = Vec::new();
        for id in ids {
            match flow.runs.iter_mut().find(|run| run.id == *id) {
                Some(run) if run.in_progress(now) => run.cancel_requested_at = Some(now),
                _ => invalid.push(id.clone()),
            }
        }
        Ok(invalid)
    }

    /// Ends every in-progress run of the flow now, with the outcome its plan gives; returns
    /// how many. Lets a test hold runs open as long as it needs and no longer.
    pub fn finish_runs(&mut self, name: &str, now: Timestamp) -> Result<usize, AppFlowError> {
        let flow = live_flow_mut(&mut self.flows, name)?;
        let mut finished = 0;
        for run in flow.runs.iter_mut() {
            if run.in_progress(now) {
                run.finish_at(now);
                finished += 1;
            }
        }
        Ok(finished)
    }

    pub fn stop_flow(&mut self, name: &str, now: Timestamp) -> Result<&Flow, AppFlowError> {
        let flow = live_flow_mut(&mut self.flows, name)?;
        if flow.spec.trigger_type == TriggerType::OnDemand {
            return Err(AppFlowError::new(
                ErrorKind::UnsupportedOperation,
                format!("Flow {name} runs on demand and cannot be stopped"),
            ));
        }
        flow.set_status(FlowStatus::Suspended, now);
        Ok(flow)
    }

    /// By name; deleted flows are not listed.
    pub fn list_flows(
        &mut self,
        limit: usize,
        next_token: Option<&str>,
    ) -> Result<Page<&Flow>, AppFlowError> {
        let after = match next_token {
            None => Bound::Unbounded,
            Some(token) => match self.pages.get(token) {
                Some(Cursor::Flows { after }) => Bound::Excluded(after.clone()),
                _ => return Err(invalid_next_token()),
            },
        };
        let mut names = self
            .flows
            .range::<String, _>((after, Bound::Unbounded))
            .filter(|(_, flow)| flow.status != FlowStatus::Deleted)
            .map(|(name, _)| name.clone());
        let page: Vec<String> = names.by_ref().take(limit).collect();
        let more = names.next().is_some();
        let next_token = match page.last() {
            Some(last) if more => Some(self.issue_page_token(Cursor::Flows {
                after: last.clone(),
            })),
            _ => None,
        };
        Ok(Page {
            items: page
                .iter()
                .filter_map(|name| self.flows.get(name))
                .collect(),
            next_token,
        })
    }

    fn issue_page_token(&mut self, cursor: Cursor) -> String {
        self.pages_issued += 1;
        let token = format!("page-{:012x}", self.pages_issued);
        self.pages.insert(token.clone(), cursor);
        token
    }
}

/// Deleted flows answer like missing ones.
fn live_flow<'a>(flows: &'a BTreeMap<String, Flow>, name: &str) -> Result<&'a Flow, AppFlowError> {
    flows
        .get(name)
        .filter(|flow| flow.status != FlowStatus::Deleted)
        .ok_or_else(|| AppFlowError::flow_not_found(name))
}

fn live_flow_mut<'a>(
    flows: &'a mut BTreeMap<String, Flow>,
    name: &str,
) -> Result<&'a mut Flow, AppFlowError> {
    flows
        .get_mut(name)
        .filter(|flow| flow.status != FlowStatus::Deleted)
        .ok_or_else(|| AppFlowError::flow_not_found(name))
}

fn invalid_next_token() -> AppFlowError {
    AppFlowError::validation("The nextToken is invalid or expired")
}

#[cfg(test)]
mod tests {
    use super::*;
    use flow::RunResult;
    use jiff::SignedDuration;

    const T0: &str = "2026-01-01T00:00:00Z";

    fn at(seconds: f64) -> Timestamp {
        T0.parse::<Timestamp>().unwrap() + SignedDuration::from_secs_f64(seconds)
    }

    fn spec(yaml: &str) -> FlowSpec {
        let spec: FlowSpec = serde_yaml_ng::from_str(yaml).unwrap();
        spec.validate().unwrap();
        spec
    }

    fn model() -> Model {
        let specs = [
            spec(
                "name: ok\nrunSeconds: 10\ncancelSeconds: 2\nrecordsProcessed: 7\nbytesProcessed: 70\nbytesWritten: 60",
            ),
            spec(
                "name: failing\nrunSeconds: 1\noutcome: Error\nerrorMessage: boom\nputFailuresCount: 3",
            ),
            spec("name: other\nrunSeconds: 1"),
            spec("name: nightly\ntriggerType: Scheduled\nstatus: Draft"),
            spec("name: on-event\ntriggerType: Event\nstatus: Suspended"),
            spec("name: draft\nstatus: Draft"),
            spec("name: gone\nstatus: Deleted"),
        ];
        Model::new(&specs, at(0.0))
    }

    fn start(model: &mut Model, flow: &str, token: Option<&str>, now: f64, id: &str) -> Started {
        model
            .start_flow(flow, token, at(now), id.to_owned())
            .unwrap()
    }

    fn status_of(model: &mut Model, flow: &str, id: &str, now: f64) -> ExecutionStatus {
        let page = model.execution_records(flow, 100, None).unwrap();
        let run = page.items.iter().find(|run| run.id == id).unwrap();
        run.state(at(now)).status
    }

    #[test]
    fn run_state_follows_the_clock() {
        use ExecutionStatus::*;
        // (flow, cancel requested at, observed at, expected status, expected lastUpdatedAt)
        let cases = [
            ("ok", None, 0.0, InProgress, 0.0),
            ("ok", None, 9.999, InProgress, 0.0),
            ("ok", None, 10.0, Successful, 10.0),
            ("failing", None, 5.0, Error, 1.0),
            ("ok", Some(4.0), 5.0, CancelStarted, 4.0),
            ("ok", Some(4.0), 6.0, Canceled, 6.0),
            ("ok", Some(4.0), 60.0, Canceled, 6.0),
        ];
        for (flow, cancel_at, now, expected, updated) in cases {
            let mut model = model();
            start(&mut model, flow, None, 0.0, "run-1");
            if let Some(cancel_at) = cancel_at {
                let invalid = model.cancel_executions(flow, &["run-1".to_owned()], at(cancel_at));
                assert_eq!(invalid.unwrap(), Vec::<String>::new());
            }
            let page = model.execution_records(flow, 20, None).unwrap();
            let state = page.items[0].state(at(now));
            assert_eq!(state.status, expected, "{flow} at {now}");
            assert_eq!(state.last_updated_at, at(updated), "{flow} at {now}");
        }
    }

    #[test]
    fn finished_runs_carry_counters_and_errors() {
        let mut model = model();
        start(&mut model, "ok", None, 0.0, "good");
        start(&mut model, "failing", None, 0.0, "bad");
        let good = model.execution_records("ok", 20, None).unwrap().items[0].state(at(20.0));
        assert_eq!(
            good.result,
            Some(RunResult {
                records_processed: 7,
                bytes_processed: 70,
                bytes_written: 60,
                error: None
            })
        );
        assert_eq!(good.data_pull_end_time, Some(at(10.0)));
        let bad = model.execution_records("failing", 20, None).unwrap().items[0].state(at(20.0));
        let error = bad.result.unwrap().error.unwrap();
        assert_eq!(error.message, "boom");
        assert_eq!(error.put_failures_count, 3);
        let last = model.flow("failing").unwrap().last_run(at(20.0)).unwrap();
        assert_eq!(
            (last.status, last.message.as_deref()),
            (ExecutionStatus::Error, Some("boom"))
        );
    }

    #[test]
    fn finishing_a_flows_runs_ends_only_those_in_progress_with_their_planned_outcome() {
        let mut model = model();
        start(&mut model, "ok", None, 0.0, "early");
        start(&mut model, "ok", None, 3.0, "late");
        start(&mut model, "ok", None, 3.0, "canceled");
        model
            .cancel_executions("ok", &["canceled".to_owned()], at(3.5))
            .unwrap();
        assert_eq!(model.finish_runs("ok", at(4.0)).unwrap(), 2);
        for id in ["early", "late"] {
            let page = model.execution_records("ok", 20, None).unwrap();
            let run = page.items.iter().find(|run| run.id == id).unwrap();
            let state = run.state(at(4.0));
            assert_eq!(
                (state.status, state.last_updated_at),
                (ExecutionStatus::Successful, at(4.0)),
                "{id}"
            );
            assert_eq!(state.result.unwrap().records_processed, 7, "{id}");
        }
        assert_eq!(
            status_of(&mut model, "ok", "canceled", 4.0),
            ExecutionStatus::CancelStarted
        );
        assert_eq!(model.finish_runs("ok", at(5.0)).unwrap(), 0);
        assert!(model.finish_runs("gone", at(5.0)).is_err());
    }

    #[test]
    fn replayed_token_within_the_window_returns_the_first_answer_and_starts_nothing() {
        let mut model = model();
        let first = start(&mut model, "ok", Some("tok"), 0.0, "run-1");
        let replay = start(&mut model, "ok", Some("tok"), 8.0 * 3600.0 - 1.0, "run-2");
        assert_eq!(replay, first);
        assert_eq!(first.execution_id.as_deref(), Some("run-1"));
        assert_eq!(model.executions_by_flow()["ok"], 1);
        assert_eq!(model.executions_by_token()["tok"], 1);
    }

    #[test]
    fn token_past_the_window_or_expired_by_hand_starts_a_new_run() {
        let mut model = model();
        start(&mut model, "ok", Some("tok"), 0.0, "run-1");
        let late = start(&mut model, "ok", Some("tok"), 8.0 * 3600.0, "run-2");
        assert_eq!(late.execution_id.as_deref(), Some("run-2"));
        model.expire_tokens();
        let after_expiry = start(&mut model, "ok", Some("tok"), 8.0 * 3600.0 + 1.0, "run-3");
        assert_eq!(after_expiry.execution_id.as_deref(), Some("run-3"));
        assert_eq!(model.executions_by_token()["tok"], 3);
    }

    #[test]
    fn runs_without_token_always_start() {
        let mut model = model();
        start(&mut model, "ok", None, 0.0, "run-1");
        start(&mut model, "ok", None, 0.0, "run-2");
        assert_eq!(model.executions_by_flow()["ok"], 2);
        assert!(model.executions_by_token().is_empty());
    }

    #[test]
    fn token_reused_for_another_flow_depends_on_the_trigger_type() {
        let mut model = model();
        let first = start(&mut model, "ok", Some("tok"), 0.0, "run-1");
        // On demand: the original answer, nothing started.
        assert_eq!(start(&mut model, "other", Some("tok"), 1.0, "run-2"), first);
        assert!(!model.executions_by_flow().contains_key("other"));
        // Scheduled: a conflict.
        let err = model
            .start_flow("nightly", Some("tok"), at(1.0), "run-3".to_owned())
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Conflict);
    }

    #[test]
    fn scheduled_and_event_flows_are_activated_without_an_execution() {
        for flow in ["nightly", "on-event"] {
            let mut model = model();
            let started = start(&mut model, flow, Some("tok"), 3.0, "unused");
            assert_eq!(started.execution_id, None);
            assert_eq!(started.flow_status, FlowStatus::Active);
            let flow = model.flow(flow).unwrap();
            assert_eq!(
                (flow.status, flow.last_updated_at),
                (FlowStatus::Active, at(3.0))
            );
            assert_eq!(model.executions_by_token()["tok"], 0);
        }
    }

    #[test]
    fn refused_operations_name_the_appflow_error() {
        use ErrorKind::*;
        type Call = fn(&mut Model) -> Result<(), AppFlowError>;
        let cases: [(&str, Call, ErrorKind); 9] = [
            (
                "start unknown",
                |m| m.start_flow("nope", None, at(0.0), "i".into()).map(drop),
                ResourceNotFound,
            ),
            (
                "start deleted",
                |m| m.start_flow("gone", None, at(0.0), "i".into()).map(drop),
                ResourceNotFound,
            ),
            (
                "start draft on-demand",
                |m| m.start_flow("draft", None, at(0.0), "i".into()).map(drop),
                Conflict,
            ),
            (
                "describe deleted",
                |m| m.flow("gone").map(drop),
                ResourceNotFound,
            ),
            (
                "records deleted",
                |m| m.execution_records("gone", 20, None).map(drop),
                ResourceNotFound,
            ),
            (
                "cancel deleted",
                |m| m.cancel_executions("gone", &[], at(0.0)).map(drop),
                ResourceNotFound,
            ),
            (
                "stop deleted",
                |m| m.stop_flow("gone", at(0.0)).map(drop),
                ResourceNotFound,
            ),
            (
                "stop on-demand",
                |m| m.stop_flow("ok", at(0.0)).map(drop),
                UnsupportedOperation,
            ),
            (
                "records unissued token",
                |m| m.execution_records("ok", 20, Some("page-1")).map(drop),
                Validation,
            ),
        ];
        for (case, call, expected) in cases {
            let mut model = model();
            assert_eq!(call(&mut model).unwrap_err().kind, expected, "{case}");
        }
    }

    #[test]
    fn stop_suspends_scheduled_and_event_flows() {
        let mut model = model();
        start(&mut model, "nightly", None, 0.0, "unused");
        let flow = model.stop_flow("nightly", at(5.0)).unwrap();
        assert_eq!(
            (flow.status, flow.last_updated_at),
            (FlowStatus::Suspended, at(5.0))
        );
    }

    #[test]
    fn cancel_reports_runs_that_are_not_in_progress_as_invalid() {
        let mut model = model();
        start(&mut model, "ok", None, 0.0, "done");
        start(&mut model, "ok", None, 15.0, "running");
        let ids = ["done", "running", "unknown"].map(str::to_owned);
        let invalid = model.cancel_executions("ok", &ids, at(16.0)).unwrap();
        assert_eq!(invalid, ["done", "unknown"]);
        assert_eq!(
            status_of(&mut model, "ok", "running", 16.0),
            ExecutionStatus::CancelStarted
        );
        assert_eq!(
            status_of(&mut model, "ok", "done", 16.0),
            ExecutionStatus::Successful
        );
        // Cancelling again is refused: the run is no longer in progress.
        let again = model.cancel_executions("ok", &ids[1..2], at(16.5)).unwrap();
        assert_eq!(again, ["running"]);
    }

    #[test]
    fn cancel_without_ids_cancels_every_run_in_progress() {
        let mut model = model();
        start(&mut model, "ok", None, 0.0, "done");
        start(&mut model, "ok", None, 15.0, "a");
        start(&mut model, "ok", None, 16.0, "b");
        assert!(
            model
                .cancel_executions("ok", &[], at(17.0))
                .unwrap()
                .is_empty()
        );
        for (id, expected) in [
            ("done", ExecutionStatus::Successful),
            ("a", ExecutionStatus::Canceled),
            ("b", ExecutionStatus::Canceled),
        ] {
            assert_eq!(status_of(&mut model, "ok", id, 30.0), expected, "{id}");
        }
    }

    #[test]
    fn execution_records_page_newest_first_and_see_each_run_once() {
        let mut model = model();
        for i in 0..45 {
            start(&mut model, "ok", None, f64::from(i), &format!("run-{i:02}"));
        }
        let mut seen = Vec::new();
        let mut page_sizes = Vec::new();
        let mut token = None;
        loop {
            let page = model.execution_records("ok", 20, token.as_deref()).unwrap();
            page_sizes.push(page.items.len());
            seen.extend(page.items.iter().map(|run| run.id.clone()));
            match page.next_token {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        let expected: Vec<String> = (0..45).rev().map(|i| format!("run-{i:02}")).collect();
        assert_eq!(seen, expected);
        assert_eq!(page_sizes, [20, 20, 5]);
    }

    #[test]
    fn page_tokens_only_work_where_they_were_issued() {
        let mut model = model();
        for i in 0..3 {
            start(&mut model, "ok", None, 0.0, &format!("ok-{i}"));
            start(&mut model, "other", None, 0.0, &format!("other-{i}"));
        }
        let records_token = model
            .execution_records("ok", 1, None)
            .unwrap()
            .next_token
            .unwrap();
        let flows_token = model.list_flows(1, None).unwrap().next_token.unwrap();
        let err = |result: Result<Page<&Run>, AppFlowError>| result.err().unwrap().kind;
        assert_eq!(
            err(model.execution_records("other", 1, Some(&records_token))),
            ErrorKind::Validation
        );
        assert_eq!(
            err(model.execution_records("ok", 1, Some(&flows_token))),
            ErrorKind::Validation
        );
        assert_eq!(
            model
                .list_flows(1, Some(&records_token))
                .err()
                .unwrap()
                .kind,
            ErrorKind::Validation
        );
        assert!(
            model
                .execution_records("ok", 1, Some(&records_token))
                .is_ok()
        );
        // A reset forgets issued tokens and never reissues them.
        model.reset(&[spec("name: ok")], at(0.0));
        assert_eq!(
            err(model.execution_records("ok", 1, Some(&records_token))),
            ErrorKind::Validation
        );
    }

    #[test]
    fn list_flows_pages_by_name_and_hides_deleted_flows() {
        let mut model = model();
        let mut names = Vec::new();
        let mut token = None;
        loop {
            let page = model.list_flows(2, token.as_deref()).unwrap();
            names.extend(page.items.iter().map(|flow| flow.spec.name.clone()));
            match page.next_token {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        assert_eq!(
            names,
            ["draft", "failing", "nightly", "ok", "on-event", "other"]
        );
    }

    #[test]
    fn upsert_keeps_runs_and_delete_forgets_the_flow() {
        let mut model = model();
        assert!(model.upsert_flow(spec("name: late"), at(1.0)));
        start(&mut model, "late", None, 1.0, "run-1");
        assert!(!model.upsert_flow(spec("name: late\noutcome: Error"), at(2.0)));
        let flow = model.flow("late").unwrap();
        assert_eq!((flow.created_at, flow.last_updated_at), (at(1.0), at(2.0)));
        // The running run keeps the behaviour it started with.
        assert_eq!(
            status_of(&mut model, "late", "run-1", 10.0),
            ExecutionStatus::Successful
        );
        assert!(model.delete_flow("late"));
        assert!(!model.delete_flow("late"));
        assert_eq!(
            model.flow("late").err().unwrap().kind,
            ErrorKind::ResourceNotFound
        );
    }
}
