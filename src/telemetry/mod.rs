//! Report, for machines: Prometheus metrics and the liveness and readiness probes, served over
//! HTTP on one port ([`server`]).
//!
//! Every label has a small, fixed set of values (operations, outcomes, phases, reasons), or is
//! the FlowRun's namespace; never a FlowRun name or an error message, so the number of series
//! stays bounded however many FlowRuns there are ([`metrics`]).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use flowrun_api::conditions::Reason;
use flowrun_api::{FlowRun, FlowRunPolicy, FlowRunSchedule};
use flowrun_core::appflow::AppFlowError;
use flowrun_core::decide::Transition;
use flowrun_core::schedule::SlotCounts;
use jiff::Timestamp;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::Store;
use prometheus_client::registry::Registry;

use crate::lock;

mod health;
mod metrics;
pub mod server;

pub use health::Role;
pub use server::serve;

use health::{Watches, readiness};
use metrics::{
    CallLabels, FinishedLabels, Metrics, NamespaceLabels, OperationLabels, PhaseLabels,
    ReasonLabels, SCHEDULE_STATES, SlotLabels, StateLabels, call_outcome, count_phases,
    error_reason, finished_run, milestones, oldest_starting, resident_memory_bytes, schedule_state,
};

/// The operator's metrics and health, shared by the controller, the leader election and the
/// HTTP server.
pub struct Telemetry {
    registry: Registry,
    metrics: Metrics,
    role: Mutex<Role>,
    watches: Mutex<Watches>,
    /// One scrape at a time: the phase gauges are recounted for each.
    scrape: Mutex<()>,
    /// How many FlowRun watches have synced; the schedule watches wait for all of them.
    flowruns_synced: tokio::sync::watch::Sender<usize>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    pub fn new() -> Self {
        let metrics = Metrics::new();
        let mut registry = Registry::default();
        metrics.register(registry.sub_registry_with_prefix("flowrun"));
        metrics.register_process(&mut registry);
        Telemetry {
            registry,
            metrics,
            role: Mutex::new(Role::Starting),
            watches: Mutex::default(),
            scrape: Mutex::default(),
            flowruns_synced: tokio::sync::watch::Sender::new(0),
        }
    }

    pub fn set_role(&self, role: Role) {
        self.metrics
            .leader
            .set(i64::from(matches!(role, Role::Leading)));
        *lock(&self.role) = role;
    }

    pub fn role(&self) -> Role {
        lock(&self.role).clone()
    }

    /// Follows a controller's cache: readiness waits until it has synced, and the phase gauges
    /// count its FlowRuns. The future never resolves: poll it beside the controller, in the same
    /// task. (The cache's readiness signal keeps one waker: a waiter in another task could take
    /// the controller's turn and stall it.)
    pub fn watch_store(
        self: &Arc<Self>,
        store: Store<DeserializeGuard<FlowRun>>,
    ) -> impl Future<Output = ()> + Send + 'static {
        lock(&self.watches).stores.push(store.clone());
        let telemetry = Arc::clone(self);
        async move {
            if store.wait_until_ready().await.is_ok() {
                let synced = {
                    let mut watches = lock(&telemetry.watches);
                    watches.synced += 1;
                    watches.synced
                };
                telemetry.flowruns_synced.send_replace(synced);
                tracing::info!("FlowRun watch synced");
            }
            std::future::pending::<()>().await;
        }
    }

    /// Waits until `count` FlowRun watches have synced: a schedule judged on an empty FlowRun
    /// cache would see no active run and no history.
    pub async fn wait_for_flowrun_watches(&self, count: usize) {
        // The sender lives as long as `self`.
        let _ = self
            .flowruns_synced
            .subscribe()
            .wait_for(|synced| *synced >= count)
            .await;
    }

    /// Follows a FlowRunSchedule cache, for the schedules by state.
    pub fn watch_schedules(&self, store: Store<DeserializeGuard<FlowRunSchedule>>) {
        lock(&self.watches).schedules.push(store);
    }

    /// Counts the slots of one schedule decision that was carried out.
    pub fn count_slots(&self, slots: SlotCounts) {
        for (outcome, count) in [
            ("started", slots.started),
            ("skipped", slots.skipped),
            ("missed", slots.missed),
        ] {
            if count > 0 {
                self.metrics
                    .slots
                    .get_or_create(&SlotLabels { outcome })
                    .inc_by(u64::from(count));
            }
        }
    }

    /// Follows a FlowRunPolicy cache, for the count of unreadable policies.
    pub fn watch_policies(&self, store: Store<DeserializeGuard<FlowRunPolicy>>) {
        lock(&self.watches).policies.push(store);
    }

    /// `(ready, what /readyz says)`.
    pub fn readiness(&self) -> (bool, String) {
        let watches = lock(&self.watches);
        readiness(&self.role(), watches.stores.len(), watches.synced)
    }

    /// Times a reconcile and counts it, and its error by reason.
    pub async fn measure_reconcile<T, E>(
        &self,
        reconcile: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E>
    where
        E: std::error::Error + 'static,
    {
        let started = Instant::now();
        let result = reconcile.await;
        self.metrics
            .reconcile_duration
            .observe(started.elapsed().as_secs_f64());
        self.metrics.reconciles.inc();
        if let Err(error) = &result {
            self.metrics
                .reconcile_errors
                .get_or_create(&ReasonLabels {
                    reason: error_reason(error),
                })
                .inc();
        }
        result
    }

    /// Times an AppFlow call and counts it by outcome.
    pub async fn measure_call<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, AppFlowError>>,
    ) -> Result<T, AppFlowError> {
        let started = Instant::now();
        let result = call.await;
        self.metrics
            .appflow_call_duration
            .get_or_create(&OperationLabels { operation })
            .observe(started.elapsed().as_secs_f64());
        self.metrics
            .appflow_calls
            .get_or_create(&CallLabels {
                operation,
                outcome: call_outcome(result.as_ref().err()),
            })
            .inc();
        result
    }

    pub fn count_dropped_event(&self) {
        self.metrics.events_dropped.inc();
    }

    /// One more (`true`) or one fewer (`false`) event waits to be published.
    pub fn count_queued_event(&self, queued: bool) {
        if queued {
            self.metrics.events_queued.inc();
        } else {
            self.metrics.events_queued.dec();
        }
    }

    /// Call after a write of `flowrun` (as it was before the write): a run that AppFlow just
    /// accepted or that just finished is counted, a finished run adds its duration, and a run
    /// left going when its deleted FlowRun was released is counted.
    pub fn record_transition(&self, flowrun: &FlowRun, transition: &Transition) {
        let before = flowrun.status.as_ref();
        let namespace = || flowrun.metadata.namespace.clone().unwrap_or_default();
        let reached = milestones(before, transition.status.as_ref());
        if reached.started {
            self.metrics
                .runs_started
                .get_or_create(&NamespaceLabels {
                    namespace: namespace(),
                })
                .inc();
        }
        if let Some((phase, reason)) = reached.finished {
            self.metrics
                .runs_finished
                .get_or_create(&FinishedLabels {
                    namespace: namespace(),
                    phase,
                    reason,
                })
                .inc();
        }
        if transition
            .event
            .as_ref()
            .is_some_and(|event| event.reason == Reason::RunAbandoned)
        {
            self.metrics.abandoned_runs.inc();
        }
        if let Some((phase, seconds)) = finished_run(before, transition.status.as_ref()) {
            self.metrics
                .run_duration
                .get_or_create(&PhaseLabels { phase })
                .observe(seconds);
        }
    }

    /// The metrics in OpenMetrics text.
    pub fn encode(&self) -> String {
        let _one_at_a_time = lock(&self.scrape);
        let (counts, starting, unreadable_policies, schedule_states) = {
            let watches = lock(&self.watches);
            let flowruns: Vec<_> = watches
                .stores
                .iter()
                .flat_map(|store| store.state())
                .collect();
            let readable = flowruns
                .iter()
                .filter_map(|flowrun| flowrun.0.as_ref().ok());
            let mut states: Vec<(&'static str, i64)> =
                SCHEDULE_STATES.iter().map(|state| (*state, 0)).collect();
            for schedule in watches.schedules.iter().flat_map(|store| store.state()) {
                let state = schedule_state(&schedule);
                if let Some((_, count)) = states.iter_mut().find(|(name, _)| *name == state) {
                    *count += 1;
                }
            }
            let unreadable = watches
                .policies
                .iter()
                .flat_map(|store| store.state())
                .filter(|policy| policy.0.is_err())
                .count();
            (
                count_phases(flowruns.iter().cloned()),
                oldest_starting(readable, Timestamp::now()),
                unreadable,
                states,
            )
        };
        for (state, count) in schedule_states {
            self.metrics
                .schedules
                .get_or_create(&StateLabels { state })
                .set(count);
        }
        self.metrics
            .unreadable_policies
            .set(i64::try_from(unreadable_policies).unwrap_or(i64::MAX));
        self.metrics.flowruns.clear();
        for (phase, count) in counts {
            self.metrics
                .flowruns
                .get_or_create(&PhaseLabels { phase })
                .set(count);
        }
        if let Some(bytes) = resident_memory_bytes() {
            self.metrics.resident_memory.set(bytes);
        }
        self.metrics.oldest_starting.clear();
        for (namespace, seconds) in starting {
            self.metrics
                .oldest_starting
                .get_or_create(&NamespaceLabels { namespace })
                .set(seconds);
        }
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!(%error, "Failed to encode the metrics");
        }
        text
    }
}
