//! What is counted: the metric families, their labels (each a small fixed set of values) and
//! the pure functions that pick a label.

use flowrun_api::{FlowRun, FlowRunSchedule, FlowRunStatus, Phase, conditions};
use flowrun_core::appflow::{AppFlowError, FailureKind, service_error_code};
use jiff::Timestamp;
use kube::core::DeserializeGuard;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use std::sync::Arc;

use prometheus_client::registry::Registry;

const RECONCILE_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
const CALL_BUCKETS: [f64; 11] = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// Flow runs take seconds to hours.
const RUN_BUCKETS: [f64; 13] = [
    5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0,
];
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ReasonLabels {
    pub(super) reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct CallLabels {
    pub(super) operation: &'static str,
    pub(super) outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct OperationLabels {
    pub(super) operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct PhaseLabels {
    pub(super) phase: String,
}

/// The FlowRun's namespace: bounded by the namespaces that hold FlowRuns, not by their number.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct NamespaceLabels {
    pub(super) namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct FinishedLabels {
    pub(super) namespace: String,
    pub(super) phase: &'static str,
    /// The Ready condition's reason: one of the operator's own `Reason`s.
    pub(super) reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct StateLabels {
    pub(super) state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct SlotLabels {
    pub(super) outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct BuildLabels {
    pub(super) version: &'static str,
}

pub(super) struct Metrics {
    pub(super) reconciles: Counter,
    pub(super) reconcile_duration: Histogram,
    pub(super) reconcile_errors: Family<ReasonLabels, Counter>,
    pub(super) appflow_calls: Family<CallLabels, Counter>,
    pub(super) appflow_call_duration: Family<OperationLabels, Histogram>,
    pub(super) flowruns: Family<PhaseLabels, Gauge>,
    pub(super) unreadable_policies: Gauge,
    pub(super) run_duration: Family<PhaseLabels, Histogram>,
    pub(super) leader: Gauge,
    pub(super) events_dropped: Counter,
    pub(super) events_queued: Gauge,
    pub(super) resident_memory: Gauge,
    pub(super) abandoned_runs: Counter,
    pub(super) runs_started: Family<NamespaceLabels, Counter>,
    pub(super) runs_finished: Family<FinishedLabels, Counter>,
    pub(super) oldest_starting: Family<NamespaceLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub(super) schedules: Family<StateLabels, Gauge>,
    pub(super) slots: Family<SlotLabels, Counter>,
    build_info: Family<BuildLabels, Gauge>,
}

impl Metrics {
    pub(super) fn new() -> Self {
        let metrics = Metrics {
            reconciles: Counter::default(),
            reconcile_duration: Histogram::new(RECONCILE_BUCKETS),
            reconcile_errors: Family::default(),
            appflow_calls: Family::default(),
            appflow_call_duration: Family::new_with_constructor(|| Histogram::new(CALL_BUCKETS)),
            flowruns: Family::default(),
            unreadable_policies: Gauge::default(),
            run_duration: Family::new_with_constructor(|| Histogram::new(RUN_BUCKETS)),
            leader: Gauge::default(),
            events_dropped: Counter::default(),
            events_queued: Gauge::default(),
            resident_memory: Gauge::default(),
            abandoned_runs: Counter::default(),
            runs_started: Family::default(),
            runs_finished: Family::default(),
            oldest_starting: Family::default(),
            schedules: Family::default(),
            slots: Family::default(),
            build_info: Family::default(),
        };
        // Present from the start, so that dashboards and alerts see zeros rather than nothing.
        for phase in [Phase::Succeeded, Phase::Failed, Phase::Canceled] {
            let _ = metrics.run_duration.get_or_create_owned(&PhaseLabels {
                phase: phase.as_str().to_owned(),
            });
        }
        for reason in ERROR_REASONS {
            let _ = metrics
                .reconcile_errors
                .get_or_create(&ReasonLabels { reason });
        }
        for operation in OPERATIONS {
            for outcome in ["ok", "throttled"] {
                let _ = metrics
                    .appflow_calls
                    .get_or_create(&CallLabels { operation, outcome });
            }
        }
        metrics
            .build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        metrics
    }

    /// Registers the process's own metrics, under their usual unprefixed names.
    pub(super) fn register_process(&self, registry: &mut Registry) {
        registry.register_with_unit(
            "process_resident_memory",
            "Resident memory of the operator's process (Linux only)",
            prometheus_client::registry::Unit::Bytes,
            self.resident_memory.clone(),
        );
    }

    /// Registers every family in `registry`.
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "reconciles",
            "FlowRun reconciles completed, successful or not",
            self.reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took, AppFlow and Kubernetes calls included",
            self.reconcile_duration.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by reason (Conflict, NotFound, Forbidden, Invalid, \
             Throttled, ServerError, ApiError, Transport, Other); they are retried with backoff",
            self.reconcile_errors.clone(),
        );
        registry.register(
            "appflow_calls",
            "AppFlow API calls by operation and outcome (ok, throttled, unavailable, error, or \
             the AWS error code)",
            self.appflow_calls.clone(),
        );
        registry.register(
            "appflow_call_duration_seconds",
            "Time one AppFlow API call took, the SDK's retries included",
            self.appflow_call_duration.clone(),
        );
        registry.register(
            "flowruns",
            "FlowRuns watched by this replica, by phase (Invalid: not readable)",
            self.flowruns.clone(),
        );
        registry.register(
            "run_duration_seconds",
            "Duration of finished flow runs, from the first StartFlow attempt to the end, by \
             final phase",
            self.run_duration.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica leads (reconciles), 0 while it stands by",
            self.leader.clone(),
        );
        registry.register(
            "events_dropped",
            "Kubernetes events dropped because too many were waiting to be published (the \
             statuses carry the same facts)",
            self.events_dropped.clone(),
        );
        registry.register(
            "events_queued",
            "Kubernetes events waiting to be published",
            self.events_queued.clone(),
        );
        registry.register(
            "unreadable_policies",
            "FlowRunPolicies the operator cannot read (e.g. stored under an older schema); \
             nothing is started in their namespaces until they are fixed",
            self.unreadable_policies.clone(),
        );
        registry.register(
            "abandoned_runs",
            "Deleted FlowRuns released while their run may still be going in AppFlow: it could \
             not be canceled within --cancel-timeout (event RunAbandoned names it)",
            self.abandoned_runs.clone(),
        );
        registry.register(
            "runs_started",
            "Runs AppFlow accepted (StartFlow returned an execution, or activated a scheduled \
             or event-triggered flow), by the FlowRun's namespace",
            self.runs_started.clone(),
        );
        registry.register(
            "runs_finished",
            "FlowRuns that reached Succeeded, Failed or Canceled, by namespace, phase and the \
             reason of their Ready condition (e.g. ExecutionFailed, FlowNotFound, \
             StartOutcomeUnknown)",
            self.runs_finished.clone(),
        );
        registry.register(
            "starting_oldest_age_seconds",
            "Age of the oldest FlowRun in phase Starting (StartFlow failed and is retried), \
             from its first StartFlow attempt, by namespace; namespaces without one are absent",
            self.oldest_starting.clone(),
        );
        registry.register(
            "schedules",
            "FlowRunSchedules watched by this replica, by state (Scheduled, Suspended, \
             Invalid: spec.schedule or spec.timeZone unusable, Unreadable: does not parse)",
            self.schedules.clone(),
        );
        registry.register(
            "schedule_slots",
            "Slots of FlowRunSchedules, by outcome: started (a FlowRun created, run-now \
             included), skipped (concurrencyPolicy Forbid), missed (seen too late)",
            self.slots.clone(),
        );
        registry.register(
            "build_info",
            "The operator's version",
            self.build_info.clone(),
        );
    }
}

/// The reasons of [`error_reason`], each present from the start.
const ERROR_REASONS: [&str; 9] = [
    "Conflict",
    "NotFound",
    "Forbidden",
    "Invalid",
    "Throttled",
    "ServerError",
    "ApiError",
    "Transport",
    "Other",
];

/// The AppFlow operations the operator calls (src/act/metered.rs), each present from the start.
pub(super) const OPERATIONS: [&str; 3] = [
    "StartFlow",
    "DescribeFlowExecutionRecords",
    "CancelFlowExecutions",
];

/// Resident memory in bytes, from `VmRSS` in /proc/self/status (in kB whatever the page
/// size); `None` where there is no procfs.
pub(super) fn resident_memory_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kilobytes: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kilobytes * 1024)
}

/// FlowRuns per phase; every phase is present, `Invalid` counts unreadable ones.
pub(super) fn count_phases(
    flowruns: impl Iterator<Item = Arc<DeserializeGuard<FlowRun>>>,
) -> Vec<(String, i64)> {
    let mut counts: Vec<(String, i64)> = Phase::ALL
        .iter()
        .map(|phase| (phase.as_str().to_owned(), 0))
        .collect();
    for flowrun in flowruns {
        let phase = match &flowrun.0 {
            Ok(flowrun) => flowrun.phase().as_str().to_owned(),
            Err(_) => "Invalid".to_owned(),
        };
        match counts.iter_mut().find(|(name, _)| *name == phase) {
            Some((_, count)) => *count += 1,
            None => counts.push((phase, 1)),
        }
    }
    counts
}

/// `(final phase, seconds)` when this write ended a run that AppFlow started.
pub(super) fn finished_run(
    before: Option<&FlowRunStatus>,
    after: Option<&FlowRunStatus>,
) -> Option<(String, f64)> {
    let after = after?;
    let phase = after.phase?;
    let ended = phase.is_final() && phase != Phase::Activated && after.execution_id.is_some();
    if !ended || before.and_then(|status| status.phase) == Some(phase) {
        return None;
    }
    let start = after.start_time.as_ref()?.0;
    let end = after.completion_time.as_ref()?.0;
    let seconds = end.duration_since(start).as_secs_f64();
    Some((phase.as_str().to_owned(), seconds.max(0.0)))
}

/// What a status write means for the run counters.
#[derive(Debug, PartialEq)]
pub(super) struct Milestones {
    /// AppFlow accepted the run: an execution ID appeared, or the flow was activated.
    pub(super) started: bool,
    /// `(final phase, reason)` when the FlowRun just reached Succeeded, Failed or Canceled.
    pub(super) finished: Option<(&'static str, String)>,
}

pub(super) fn milestones(
    before: Option<&FlowRunStatus>,
    after: Option<&FlowRunStatus>,
) -> Milestones {
    let Some(after) = after else {
        return Milestones {
            started: false,
            finished: None,
        };
    };
    let phase_before = before.and_then(|status| status.phase);
    let activated = after.phase == Some(Phase::Activated) && phase_before != Some(Phase::Activated);
    let executed =
        after.execution_id.is_some() && before.is_none_or(|status| status.execution_id.is_none());
    let finished = after
        .phase
        .filter(|phase| {
            matches!(phase, Phase::Succeeded | Phase::Failed | Phase::Canceled)
                && phase_before != Some(*phase)
        })
        .map(|phase| {
            let reason = after
                .conditions
                .iter()
                .find(|condition| condition.type_ == conditions::READY)
                .map_or_else(|| "Unknown".to_owned(), |ready| ready.reason.clone());
            (phase.as_str(), reason)
        });
    Milestones {
        started: activated || executed,
        finished,
    }
}

/// `(namespace, seconds)`: the age of each namespace's oldest FlowRun in phase Starting, from
/// its first StartFlow attempt (or, without one, its creation), never negative.
pub(super) fn oldest_starting<'a>(
    flowruns: impl Iterator<Item = &'a FlowRun>,
    now: Timestamp,
) -> Vec<(String, f64)> {
    let mut oldest: Vec<(String, f64)> = Vec::new();
    for flowrun in flowruns.filter(|flowrun| flowrun.phase() == Phase::Retrying) {
        let since = flowrun
            .status
            .as_ref()
            .and_then(|status| status.start_time.as_ref())
            .or(flowrun.metadata.creation_timestamp.as_ref());
        let Some(since) = since else { continue };
        let age = now.duration_since(since.0).as_secs_f64().max(0.0);
        let namespace = flowrun.metadata.namespace.clone().unwrap_or_default();
        match oldest.iter_mut().find(|(name, _)| *name == namespace) {
            Some((_, seconds)) => *seconds = seconds.max(age),
            None => oldest.push((namespace, age)),
        }
    }
    oldest
}

/// The reason label of a failed reconcile, from the Kubernetes error in its source chain.
pub(super) fn error_reason(error: &(dyn std::error::Error + 'static)) -> &'static str {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(kube) = error.downcast_ref::<kube::Error>() {
            return match kube {
                kube::Error::Api(status) => match status.code {
                    409 => "Conflict",
                    404 | 410 => "NotFound",
                    401 | 403 => "Forbidden",
                    400 | 422 => "Invalid",
                    429 => "Throttled",
                    500..=599 => "ServerError",
                    _ => "ApiError",
                },
                _ => "Transport",
            };
        }
        current = error.source();
    }
    "Other"
}

/// The outcome label of an AppFlow call.
pub(super) fn call_outcome(error: Option<&AppFlowError>) -> &'static str {
    let Some(error) = error else {
        return "ok";
    };
    if error.kind == FailureKind::Throttled {
        return "throttled";
    }
    match error.code.as_deref() {
        Some(code) => service_error_code(code).unwrap_or("OtherError"),
        None if error.kind == FailureKind::Unavailable => "unavailable",
        None => "error",
    }
}

/// The state label of a schedule, as `flowrun_schedules` counts it.
pub(super) fn schedule_state(guarded: &DeserializeGuard<FlowRunSchedule>) -> &'static str {
    let Ok(schedule) = &guarded.0 else {
        return "Unreadable";
    };
    let stalled = schedule.status.as_ref().is_some_and(|status| {
        status
            .conditions
            .iter()
            .any(|c| c.type_ == flowrun_api::conditions::STALLED && c.status == "True")
    });
    match (stalled, schedule.spec.suspend) {
        (true, _) => "Invalid",
        (false, true) => "Suspended",
        (false, false) => "Scheduled",
    }
}

/// Every state `flowrun_schedules` reports, present even at zero.
pub(super) const SCHEDULE_STATES: [&str; 4] = ["Scheduled", "Suspended", "Invalid", "Unreadable"];

#[cfg(test)]
mod tests {
    use jiff::Timestamp;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn error(kind: FailureKind, code: Option<&str>) -> AppFlowError {
        AppFlowError {
            kind,
            code: code.map(str::to_owned),
            message: "a message that must never become a label".to_owned(),
        }
    }

    #[test]
    fn call_outcomes_are_a_small_fixed_set() {
        use FailureKind::*;
        let table = [
            (None, "ok"),
            (
                Some(error(Throttled, Some("ThrottlingException"))),
                "throttled",
            ),
            (Some(error(Throttled, None)), "throttled"),
            (
                Some(error(FlowNotFound, Some("ResourceNotFoundException"))),
                "ResourceNotFoundException",
            ),
            (
                Some(error(AccessDenied, Some("AccessDeniedException"))),
                "AccessDeniedException",
            ),
            (
                Some(error(Unavailable, Some("InternalServerException"))),
                "InternalServerException",
            ),
            (
                Some(error(Unavailable, Some("BrandNewException"))),
                "OtherError",
            ),
            (Some(error(Unavailable, None)), "unavailable"),
            (Some(error(InvalidRequest, None)), "error"),
        ];
        for (error, outcome) in table {
            assert_eq!(call_outcome(error.as_ref()), outcome, "{error:?}");
        }
    }

    #[test]
    fn reconcile_errors_are_labelled_by_the_kubernetes_error_in_their_source_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("failed to write the status")]
        struct Wrapper(#[source] kube::Error);

        let api = |code: u16| {
            kube::Error::Api(
                kube::core::Status::failure("message", "Reason")
                    .with_code(code)
                    .boxed(),
            )
        };
        assert_eq!(error_reason(&Wrapper(api(409))), "Conflict");
        assert_eq!(error_reason(&Wrapper(api(403))), "Forbidden");
        assert_eq!(error_reason(&Wrapper(api(422))), "Invalid");
        assert_eq!(error_reason(&Wrapper(api(503))), "ServerError");
        assert_eq!(error_reason(&Wrapper(api(418))), "ApiError");
        assert_eq!(
            error_reason(&Wrapper(kube::Error::LinesCodecMaxLineLengthExceeded)),
            "Transport"
        );
        assert_eq!(error_reason(&std::fmt::Error), "Other");
    }

    fn status(phase: Phase, execution: bool, start: i64, end: Option<i64>) -> FlowRunStatus {
        let time = |s: i64| Time(Timestamp::from_second(1_800_000_000 + s).expect("valid"));
        FlowRunStatus {
            phase: Some(phase),
            execution_id: execution.then(|| "e-1".to_owned()),
            start_time: Some(time(start)),
            completion_time: end.map(time),
            ..FlowRunStatus::default()
        }
    }

    #[test]
    fn a_run_duration_is_recorded_once_when_a_started_run_ends() {
        let running = status(Phase::Running, true, 0, None);
        let succeeded = status(Phase::Succeeded, true, 0, Some(90));
        let failed = status(Phase::Failed, true, 0, Some(30));
        assert_eq!(
            finished_run(Some(&running), Some(&succeeded)),
            Some(("Succeeded".to_owned(), 90.0))
        );
        assert_eq!(
            finished_run(Some(&running), Some(&failed)),
            Some(("Failed".to_owned(), 30.0))
        );
        // Written again (a retried reconcile): not a second run.
        assert_eq!(finished_run(Some(&succeeded), Some(&succeeded)), None);
        // Failed before AppFlow started anything, activated, or still running: no run ended.
        let never_started = status(Phase::Failed, false, 0, Some(600));
        assert_eq!(finished_run(None, Some(&never_started)), None);
        let activated = status(Phase::Activated, false, 0, Some(1));
        assert_eq!(finished_run(None, Some(&activated)), None);
        assert_eq!(finished_run(None, Some(&running)), None);
        assert_eq!(finished_run(Some(&running), None), None);
    }

    fn with_ready_reason(mut status: FlowRunStatus, reason: &str) -> FlowRunStatus {
        status.conditions = vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
            type_: conditions::READY.to_owned(),
            status: "False".to_owned(),
            reason: reason.to_owned(),
            message: String::new(),
            last_transition_time: Time(Timestamp::UNIX_EPOCH),
            observed_generation: None,
        }];
        status
    }

    #[test]
    fn a_started_run_and_a_finished_flowrun_are_counted_once_each() {
        let pending = FlowRunStatus {
            phase: Some(Phase::Pending),
            ..FlowRunStatus::default()
        };
        let running = status(Phase::Running, true, 0, None);
        let failed = with_ready_reason(status(Phase::Failed, true, 0, Some(30)), "ExecutionFailed");
        let not_found =
            with_ready_reason(status(Phase::Failed, false, 0, Some(600)), "FlowNotFound");
        let activated = status(Phase::Activated, false, 0, Some(1));
        let finished = |phase, reason: &str| Some((phase, reason.to_owned()));
        let table = [
            (None, Some(&running), true, None),
            (Some(&pending), Some(&running), true, None),
            // A poll that writes the same run again.
            (Some(&running), Some(&running), false, None),
            (
                Some(&running),
                Some(&failed),
                false,
                finished("Failed", "ExecutionFailed"),
            ),
            (Some(&failed), Some(&failed), false, None),
            // Failed without AppFlow starting anything: finished, not started.
            (
                Some(&pending),
                Some(&not_found),
                false,
                finished("Failed", "FlowNotFound"),
            ),
            (Some(&pending), Some(&activated), true, None),
            (Some(&activated), Some(&activated), false, None),
            (Some(&running), None, false, None),
        ];
        for (before, after, started, finished) in table {
            assert_eq!(
                milestones(before, after),
                Milestones { started, finished },
                "{before:?} -> {after:?}"
            );
        }
        let unlabelled = status(Phase::Succeeded, true, 0, Some(5));
        assert_eq!(
            milestones(Some(&running), Some(&unlabelled)).finished,
            Some(("Succeeded", "Unknown".to_owned()))
        );
    }

    #[test]
    fn the_oldest_starting_flowrun_of_each_namespace_gives_its_age() {
        let at = |s: i64| Timestamp::from_second(1_800_000_000 + s).expect("valid");
        let flowrun = |namespace: &str, phase: Phase, start: Option<i64>, created: i64| {
            let mut flowrun = FlowRun::new("run", flowrun_api::FlowRunSpec::new("flow"));
            flowrun.metadata.namespace = Some(namespace.to_owned());
            flowrun.metadata.creation_timestamp = Some(Time(at(created)));
            flowrun.status = Some(FlowRunStatus {
                phase: Some(phase),
                start_time: start.map(|s| Time(at(s))),
                ..FlowRunStatus::default()
            });
            flowrun
        };
        let flowruns = [
            flowrun("team-a", Phase::Retrying, Some(100), 0),
            flowrun("team-a", Phase::Retrying, Some(40), 0),
            // Without a start time, from its creation.
            flowrun("team-b", Phase::Retrying, None, 250),
            // Not in Starting: not counted, however old.
            flowrun("team-c", Phase::Running, Some(0), 0),
            flowrun("team-c", Phase::Pending, None, 0),
            // A clock behind the start time gives 0, not a negative age.
            flowrun("team-d", Phase::Retrying, Some(400), 0),
        ];
        assert_eq!(
            oldest_starting(flowruns.iter(), at(300)),
            vec![
                ("team-a".to_owned(), 260.0),
                ("team-b".to_owned(), 50.0),
                ("team-d".to_owned(), 0.0),
            ]
        );
    }
}
