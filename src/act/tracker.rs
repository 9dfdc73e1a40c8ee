//! Act, for runs in progress: finds a run's record in its flow's history, with one history read
//! per flow per tick however many FlowRuns of that flow are running.
//!
//! Each flow has a snapshot of its recent history behind an async lock. The first reconcile of
//! a tick reads the history (paging until it reaches records older than the run it looks for);
//! the reconciles of the other runs of that flow wait on the lock and are served from the
//! snapshot. A snapshot holds one read of one flow's recent history and is replaced by the
//! next read, so memory grows with the number of flows, not of runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};

use super::appflow::{AppFlow, AppFlowError, ExecutionRecord, FlowKey};

/// Runs are searched from this long before their recorded start, for clocks that disagree.
const CLOCK_SKEW_ALLOWANCE: SignedDuration = SignedDuration::from_mins(5);

pub struct ExecutionTracker {
    /// How long a snapshot serves lookups: the shortest poll interval.
    tick: Duration,
    flows: Mutex<HashMap<FlowKey, Arc<tokio::sync::Mutex<Snapshot>>>>,
}

#[derive(Default)]
struct Snapshot {
    read_at: Option<Instant>,
    /// The history was read back to records started before this time, or to its end (`None`).
    covers_since: Option<Timestamp>,
    records: HashMap<String, ExecutionRecord>,
    /// The last read failed: until a tick has passed, lookups get its error instead of each
    /// reading (and, when AppFlow hangs, waiting out the AWS timeout) in turn.
    failed: Option<(Instant, AppFlowError)>,
}

impl Snapshot {
    fn covers(&self, since: Timestamp) -> bool {
        self.covers_since.is_none_or(|covered| covered <= since)
    }
}

impl ExecutionTracker {
    pub fn new(tick: Duration) -> Self {
        ExecutionTracker {
            tick,
            flows: Mutex::default(),
        }
    }

    /// The record of `execution_id`, a run started at `started` (as the operator recorded it).
    /// `None` means no news: AppFlow does not list the run yet (it is still starting), or
    /// another lookup has been reading the flow's history for longer than a tick.
    pub async fn find<A: AppFlow>(
        &self,
        appflow: &A,
        flow: &FlowKey,
        execution_id: &str,
        started: Timestamp,
    ) -> Result<Option<ExecutionRecord>, AppFlowError> {
        let since = started - CLOCK_SKEW_ALLOWANCE;
        let entry = self.entry(flow);
        // Every waiting lookup holds one of the controller's concurrency slots: when a read hangs
        // until the AWS timeout, the runs of that flow must not hold them all and starve the
        // other flows. Past a tick, a waiter gives up with no news and is polled again later.
        let Ok(mut snapshot) = tokio::time::timeout(self.tick, entry.lock()).await else {
            return Ok(None);
        };
        if let Some((failed_at, error)) = &snapshot.failed
            && failed_at.elapsed() < self.tick
        {
            return Err(error.clone());
        }
        let fresh = snapshot
            .read_at
            .is_some_and(|read_at| read_at.elapsed() < self.tick);
        if fresh {
            if let Some(record) = snapshot.records.get(execution_id) {
                return Ok(Some(record.clone()));
            }
            if snapshot.covers(since) {
                return Ok(None);
            }
        }
        match read_history(appflow, flow, since).await {
            Ok(read) => {
                *snapshot = read;
                Ok(snapshot.records.get(execution_id).cloned())
            }
            Err(error) => {
                snapshot.failed = Some((Instant::now(), error.clone()));
                Err(error)
            }
        }
    }

    fn entry(&self, flow: &FlowKey) -> Arc<tokio::sync::Mutex<Snapshot>> {
        crate::lock(&self.flows)
            .entry(flow.clone())
            .or_default()
            .clone()
    }
}

/// Pages through the history, newest first, until a record started before `since` or the end.
async fn read_history<A: AppFlow>(
    appflow: &A,
    flow: &FlowKey,
    since: Timestamp,
) -> Result<Snapshot, AppFlowError> {
    let mut snapshot = Snapshot {
        read_at: Some(Instant::now()),
        covers_since: None,
        records: HashMap::new(),
        failed: None,
    };
    let mut next_token: Option<String> = None;
    loop {
        let page = appflow
            .describe_execution_records(flow, next_token.as_deref())
            .await?;
        let oldest_on_page = page.records.iter().filter_map(|r| r.started_at).min();
        for record in page.records {
            snapshot.records.insert(record.execution_id.clone(), record);
        }
        match (page.next_token, oldest_on_page) {
            (Some(_), Some(oldest)) if oldest < since => {
                snapshot.covers_since = Some(oldest);
                return Ok(snapshot);
            }
            // AppFlow stops repeating tokens at the end; a repeated one would loop forever.
            (Some(token), _) if next_token.as_deref() != Some(token.as_str()) => {
                next_token = Some(token);
            }
            _ => return Ok(snapshot),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::act::appflow::{RecordsPage, StartFlowRequest, StartedFlow, StoppedFlow};

    /// A flow history of `runs` records, newest first, one per minute before `newest`, served
    /// in pages of `page_size`.
    struct History {
        records: Vec<ExecutionRecord>,
        page_size: usize,
        calls: AtomicUsize,
    }

    fn at(rfc3339: &str) -> Timestamp {
        rfc3339.parse().expect("valid timestamp")
    }

    impl History {
        fn new(runs: usize, page_size: usize) -> Self {
            let newest = at("2026-11-25T12:00:00Z");
            let records = (0..runs)
                .map(|i| ExecutionRecord {
                    execution_id: format!("run-{i}"),
                    status: "InProgress".into(),
                    started_at: Some(newest - SignedDuration::from_mins(i as i64)),
                    ..ExecutionRecord::default()
                })
                .collect();
            History {
                records,
                page_size,
                calls: AtomicUsize::new(0),
            }
        }
    }

    impl AppFlow for History {
        async fn start_flow(&self, _: &StartFlowRequest) -> Result<StartedFlow, AppFlowError> {
            unreachable!("the tracker never starts flows")
        }

        async fn describe_execution_records(
            &self,
            _: &FlowKey,
            next_token: Option<&str>,
        ) -> Result<RecordsPage, AppFlowError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let offset: usize = next_token.map_or(0, |token| token.parse().expect("our token"));
            let end = (offset + self.page_size).min(self.records.len());
            Ok(RecordsPage {
                records: self.records[offset..end].to_vec(),
                next_token: (end < self.records.len()).then(|| end.to_string()),
            })
        }

        async fn cancel_flow_executions(
            &self,
            _: &FlowKey,
            _: &[String],
        ) -> Result<Vec<String>, AppFlowError> {
            unreachable!("the tracker never cancels")
        }

        async fn stop_flow(&self, _: &FlowKey) -> Result<StoppedFlow, AppFlowError> {
            unreachable!("the tracker never stops flows")
        }
    }

    fn flow() -> FlowKey {
        FlowKey {
            region: "us-east-1".into(),
            flow_name: "f".into(),
            role: None,
        }
    }

    #[tokio::test]
    async fn many_runs_of_one_flow_share_one_history_read_per_tick() {
        let history = History::new(50, 100);
        let tracker = ExecutionTracker::new(Duration::from_secs(60));

        for i in 0..50 {
            let started = at("2026-11-25T12:00:00Z") - SignedDuration::from_mins(i);
            let record = tracker
                .find(&history, &flow(), &format!("run-{i}"), started)
                .await
                .expect("found");
            assert!(record.is_some(), "run-{i}");
        }
        assert_eq!(history.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn older_runs_are_found_beyond_the_first_page_and_paging_stops_past_them() {
        let history = History::new(500, 100);
        let tracker = ExecutionTracker::new(Duration::from_secs(60));
        // run-250 started 250 minutes before the newest: on page 3. Paging stops at the page
        // that reaches 5 minutes before it (page 3 ends at run-299).
        let started = at("2026-11-25T12:00:00Z") - SignedDuration::from_mins(250);

        let record = tracker
            .find(&history, &flow(), "run-250", started)
            .await
            .expect("found");

        assert_eq!(record.map(|r| r.execution_id).as_deref(), Some("run-250"));
        assert_eq!(history.calls.load(Ordering::SeqCst), 3);
    }

    /// AppFlow failing (or, with `hang`, never answering) every history read.
    struct Broken {
        hang: bool,
        calls: AtomicUsize,
    }

    impl AppFlow for Broken {
        async fn start_flow(&self, _: &StartFlowRequest) -> Result<StartedFlow, AppFlowError> {
            unreachable!("the tracker never starts flows")
        }

        async fn describe_execution_records(
            &self,
            _: &FlowKey,
            _: Option<&str>,
        ) -> Result<RecordsPage, AppFlowError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.hang {
                std::future::pending::<()>().await;
            }
            Err(AppFlowError {
                kind: flowrun_core::appflow::FailureKind::Unavailable,
                code: None,
                message: "unavailable".into(),
            })
        }

        async fn cancel_flow_executions(
            &self,
            _: &FlowKey,
            _: &[String],
        ) -> Result<Vec<String>, AppFlowError> {
            unreachable!("the tracker never cancels")
        }

        async fn stop_flow(&self, _: &FlowKey) -> Result<StoppedFlow, AppFlowError> {
            unreachable!("the tracker never stops flows")
        }
    }

    #[tokio::test]
    async fn a_failed_read_serves_its_error_to_the_other_runs_until_the_next_tick() {
        let broken = Broken {
            hang: false,
            calls: AtomicUsize::new(0),
        };
        let tracker = ExecutionTracker::new(Duration::from_secs(60));
        let started = at("2026-11-25T12:00:00Z");
        for i in 0..10 {
            let result = tracker
                .find(&broken, &flow(), &format!("run-{i}"), started)
                .await;
            assert!(result.is_err(), "run-{i}: {result:?}");
        }
        assert_eq!(broken.calls.load(Ordering::SeqCst), 1);
    }

    // Paused time: the clock only moves when every task waits, so "one tick" is exact.
    #[tokio::test(start_paused = true)]
    async fn a_hanging_read_holds_the_other_runs_of_its_flow_one_tick_at_most() {
        let broken = Arc::new(Broken {
            hang: true,
            calls: AtomicUsize::new(0),
        });
        let tracker = Arc::new(ExecutionTracker::new(Duration::from_millis(50)));
        let started = at("2026-11-25T12:00:00Z");
        let hanging = {
            let (broken, tracker) = (broken.clone(), tracker.clone());
            tokio::spawn(async move { tracker.find(&*broken, &flow(), "run-0", started).await })
        };
        while broken.calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }

        let waited = tokio::time::Instant::now();
        let other = tracker.find(&*broken, &flow(), "run-1", started).await;

        assert_eq!(other, Ok(None), "no news");
        assert_eq!(waited.elapsed(), Duration::from_millis(50), "one tick");
        assert_eq!(broken.calls.load(Ordering::SeqCst), 1, "one read in flight");
        hanging.abort();
    }

    #[tokio::test]
    async fn a_run_not_listed_yet_is_none_and_a_stale_snapshot_is_read_again() {
        let history = History::new(3, 100);
        let tracker = ExecutionTracker::new(Duration::ZERO);

        let missing = tracker
            .find(&history, &flow(), "not-yet", at("2026-11-25T12:01:00Z"))
            .await
            .expect("no error");
        assert_eq!(missing, None);
        tracker
            .find(&history, &flow(), "run-0", at("2026-11-25T12:00:00Z"))
            .await
            .expect("found");
        assert_eq!(
            history.calls.load(Ordering::SeqCst),
            2,
            "tick of zero: every lookup reads"
        );
    }
}
