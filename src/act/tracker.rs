//! Act, for runs in progress: finds a run's record in its flow's history, with one history read
//! per flow per tick however many FlowRuns of that flow are running.
//!
//! Each flow has the snapshot of its last history read. The first lookup of a tick reads the
//! history (paging until it reaches records older than the run it looks for) while holding the
//! flow's reader lock; the lookups of the other runs of that flow wait on the lock and are served
//! from the new snapshot. A snapshot holds one read of one flow's recent history and is replaced
//! by the next read, so memory grows with the number of flows, not of runs.
//!
//! A read can take long: the SDK retries throttled pages, and a hanging AppFlow holds it until
//! the AWS timeout. Lookups that give up waiting for it are answered from the last snapshot, and
//! a final record (Successful, Error, Canceled) is served from any snapshot, however old, since
//! it never changes: a run that ended is seen as soon as one read has listed it, not only by a
//! lookup that happens to come within a tick of a read that succeeded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::appflow::{AppFlow, AppFlowError, ExecutionRecord, FlowKey};
// tokio's clock, which the tick's timeout uses too (and tests can pause).
use tokio::time::Instant;

/// Runs are searched from this long before their recorded start, for clocks that disagree.
const CLOCK_SKEW_ALLOWANCE: SignedDuration = SignedDuration::from_mins(5);

pub struct ExecutionTracker {
    /// How long a snapshot serves lookups: the shortest poll interval.
    tick: Duration,
    flows: Mutex<HashMap<FlowKey, Arc<FlowHistory>>>,
}

#[derive(Default)]
struct FlowHistory {
    /// The last read that succeeded, shared with the lookups while the next read is going on.
    latest: Mutex<Arc<Snapshot>>,
    /// Held by the one lookup that reads the history. It keeps the last read's failure: until a
    /// tick has passed, lookups get that error instead of each reading (and, when AppFlow hangs,
    /// waiting out the AWS timeout) in turn.
    reader: tokio::sync::Mutex<Option<(Instant, AppFlowError)>>,
}

#[derive(Default)]
struct Snapshot {
    read_at: Option<Instant>,
    /// The history was read back to records started before this time, or to its end (`None`).
    covers_since: Option<Timestamp>,
    records: HashMap<String, ExecutionRecord>,
}

impl Snapshot {
    /// What this snapshot can tell about `execution_id` without a new read: its record when
    /// that is final or the snapshot is fresh, `None` (not listed yet) when a fresh snapshot
    /// reaches back past the run's start, else nothing (`Err`: read again).
    fn answer(
        &self,
        execution_id: &str,
        since: Timestamp,
        tick: Duration,
    ) -> Result<Option<ExecutionRecord>, ()> {
        let fresh = self.read_at.is_some_and(|read_at| read_at.elapsed() < tick);
        match self.records.get(execution_id) {
            Some(record) if fresh || record.is_final() => Ok(Some(record.clone())),
            _ if fresh && self.covers_since.is_none_or(|covered| covered <= since) => Ok(None),
            _ => Err(()),
        }
    }
}

impl FlowHistory {
    fn latest(&self) -> Arc<Snapshot> {
        crate::lock(&self.latest).clone()
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
    /// another lookup has been reading the flow's history for longer than a tick and the last
    /// read did not list it.
    pub async fn find<A: AppFlow>(
        &self,
        appflow: &A,
        flow: &FlowKey,
        execution_id: &str,
        started: Timestamp,
    ) -> Result<Option<ExecutionRecord>, AppFlowError> {
        let since = started - CLOCK_SKEW_ALLOWANCE;
        let history = self.entry(flow);
        if let Ok(answer) = history.latest().answer(execution_id, since, self.tick) {
            return Ok(answer);
        }
        // Every waiting lookup holds one of the controller's concurrency slots: when a read hangs
        // until the AWS timeout, the runs of that flow must not hold them all and starve the
        // other flows. Past a tick, a waiter takes the last read's news and is polled again.
        let Ok(mut failure) = tokio::time::timeout(self.tick, history.reader.lock()).await else {
            return Ok(history.latest().records.get(execution_id).cloned());
        };
        // The lookup that held the lock before may have just read.
        if let Ok(answer) = history.latest().answer(execution_id, since, self.tick) {
            return Ok(answer);
        }
        if let Some((failed_at, error)) = &*failure
            && failed_at.elapsed() < self.tick
        {
            return Err(error.clone());
        }
        match read_history(appflow, flow, since).await {
            Ok(read) => {
                *failure = None;
                let answer = read.records.get(execution_id).cloned();
                *crate::lock(&history.latest) = Arc::new(read);
                Ok(answer)
            }
            Err(error) => {
                *failure = Some((Instant::now(), error.clone()));
                Err(error)
            }
        }
    }

    fn entry(&self, flow: &FlowKey) -> Arc<FlowHistory> {
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
        ..Snapshot::default()
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
    /// in pages of `page_size`; the reads after the first `answered` hang.
    struct History {
        records: Vec<ExecutionRecord>,
        page_size: usize,
        answered: usize,
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
                answered: usize::MAX,
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
            if self.calls.fetch_add(1, Ordering::SeqCst) >= self.answered {
                std::future::pending::<()>().await;
            }
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

    #[tokio::test(start_paused = true)]
    async fn while_a_read_hangs_an_ended_run_is_seen_at_once_and_the_others_get_the_last_news() {
        // run-0 ended, run-1 goes on; one read answers, the next hangs.
        let mut history = History::new(2, 100);
        history.records[0].status = "Successful".into();
        history.answered = 1;
        let (ended, going) = (history.records[0].clone(), history.records[1].clone());
        let started = going.started_at.expect("started");
        let appflow = Arc::new(history);
        let tick = Duration::from_millis(50);
        let tracker = Arc::new(ExecutionTracker::new(tick));
        let find = |id: &'static str| {
            let (appflow, tracker) = (appflow.clone(), tracker.clone());
            async move { tracker.find(&*appflow, &flow(), id, started).await }
        };
        assert_eq!(find("run-1").await, Ok(Some(going.clone())));
        tokio::time::sleep(2 * tick).await;
        let hanging = tokio::spawn(find("run-1"));
        while appflow.calls.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }

        let asked = tokio::time::Instant::now();
        assert_eq!(find("run-0").await, Ok(Some(ended)));
        assert_eq!(
            asked.elapsed(),
            Duration::ZERO,
            "a final record never waits"
        );
        assert_eq!(find("run-1").await, Ok(Some(going)));
        assert_eq!(
            asked.elapsed(),
            tick,
            "the others wait one tick for the last news"
        );
        assert_eq!(
            appflow.calls.load(Ordering::SeqCst),
            2,
            "one read in flight"
        );
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
