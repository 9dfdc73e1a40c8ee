//! Condition types and reasons are API: users and tools (`kubectl wait`, Flux, Argo CD) match on
//! them, so they are named once, here. The types follow kstatus: `Ready`, `Reconciling` and
//! `Stalled`; `Finished` is ours, for `kubectl wait` in CI.

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";
/// `True` on every final phase (Succeeded, Activated, Failed, Canceled), `False` before, so that
/// one `kubectl wait --for=condition=Finished` returns whatever the outcome. Not `Complete`:
/// a Job's `Complete` means success only, and Tekton's `Succeeded` is the outcome itself
/// (`True`/`False`/`Unknown`), which `kubectl wait` cannot wait on for both values at once. Like
/// Argo Workflows' `Completed`, it says the run is over and nothing more; the phase and reason
/// say how it ended.
pub const FINISHED: &str = "Finished";

/// Why a condition has its status. Each reason is also the reason of the event published on the
/// transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// AppFlow accepted the run and it is in progress.
    Running,
    /// A scheduled or event-triggered flow was activated.
    Activated,
    /// The flow does not exist (yet); retried for the not-found grace period.
    FlowNotFound,
    /// AppFlow refused the request in a way a retry cannot fix.
    InvalidRequest,
    /// AppFlow denied access to the flow.
    AccessDenied,
    /// An AppFlow service quota (e.g. concurrent runs) was reached.
    QuotaExceeded,
    /// AppFlow reported a conflict, e.g. the flow is being updated.
    Conflict,
    /// AppFlow throttled the call even after the SDK's own retries.
    Throttled,
    /// AppFlow failed, timed out or could not be reached.
    AppFlowUnavailable,
    /// The StartFlow outcome is unknown and AppFlow no longer honours the idempotency token.
    StartOutcomeUnknown,
    /// The FlowRun cannot be read (e.g. written under an older schema; it is skipped), or its
    /// status or start record was edited by hand into something the operator cannot act on.
    InvalidObject,
    /// No FlowRunPolicy of the namespace allows the flow in the region.
    NotPermitted,
    /// No AWS credentials: the IAM role of the FlowRun's policy could not be assumed, or the
    /// operator's own credential chain failed; retried.
    CredentialsUnavailable,
    /// The run finished successfully.
    Succeeded,
    /// The run ended with an error in AppFlow.
    ExecutionFailed,
    /// The run was canceled.
    ExecutionCanceled,
    /// The run outlived spec.activeDeadlineSeconds and was canceled.
    DeadlineExceeded,
    /// The FlowRun was deleted while its run was in progress; the run was canceled (event only).
    CanceledOnDelete,
    /// The FlowRun was deleted, but its run could not be canceled (or StartFlow's outcome could
    /// not be learned) within the operator's --cancel-timeout; the finalizer was released and
    /// the run may still be going (event only).
    RunAbandoned,
    /// ttlSecondsAfterFinished passed; the FlowRun is deleted (event only).
    TtlExpired,
    /// The FlowRun was deleted with deactivateOnDelete, and its flow was deactivated
    /// (StopFlow), or was already gone (event only).
    Deactivated,
    /// The FlowRun was deleted with deactivateOnDelete, but the flow was left active because
    /// another Activated FlowRun of it still exists, or StopFlow does not apply to it any more
    /// (event only).
    DeactivationSkipped,
    /// A FlowRunSchedule is waiting for its next slot.
    Scheduled,
    /// A FlowRunSchedule is suspended (spec.suspend).
    Suspended,
    /// A FlowRunSchedule's spec.schedule or spec.timeZone cannot be used; the message names
    /// the field.
    InvalidSchedule,
    /// A FlowRunSchedule created the FlowRun of a slot, or of a run-now request (event only).
    RunCreated,
    /// A slot was skipped because a run was active (concurrencyPolicy Forbid; event only).
    SlotSkipped,
    /// Slots passed without a run: the operator was down or saw them past
    /// startingDeadlineSeconds (Warning event only, with the count).
    MissedSchedule,
    /// A slot deleted the active FlowRuns (concurrencyPolicy Replace; event only).
    RunReplaced,
    /// The run-now annotation's value cannot be part of a FlowRun name (event only).
    InvalidRunNow,
    /// A FlowRun that the schedule does not control already has the name of a slot's or a
    /// run-now request's FlowRun: that slot or request runs nothing (Warning event only).
    RunNameTaken,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Running => "Running",
            Reason::Activated => "Activated",
            Reason::FlowNotFound => "FlowNotFound",
            Reason::InvalidRequest => "InvalidRequest",
            Reason::AccessDenied => "AccessDenied",
            Reason::QuotaExceeded => "QuotaExceeded",
            Reason::Conflict => "Conflict",
            Reason::Throttled => "Throttled",
            Reason::AppFlowUnavailable => "AppFlowUnavailable",
            Reason::StartOutcomeUnknown => "StartOutcomeUnknown",
            Reason::InvalidObject => "InvalidObject",
            Reason::NotPermitted => "NotPermitted",
            Reason::CredentialsUnavailable => "CredentialsUnavailable",
            Reason::Succeeded => "Succeeded",
            Reason::ExecutionFailed => "ExecutionFailed",
            Reason::ExecutionCanceled => "ExecutionCanceled",
            Reason::DeadlineExceeded => "DeadlineExceeded",
            Reason::CanceledOnDelete => "CanceledOnDelete",
            Reason::RunAbandoned => "RunAbandoned",
            Reason::TtlExpired => "TtlExpired",
            Reason::Deactivated => "Deactivated",
            Reason::DeactivationSkipped => "DeactivationSkipped",
            Reason::Scheduled => "Scheduled",
            Reason::Suspended => "Suspended",
            Reason::InvalidSchedule => "InvalidSchedule",
            Reason::RunCreated => "RunCreated",
            Reason::SlotSkipped => "SlotSkipped",
            Reason::MissedSchedule => "MissedSchedule",
            Reason::RunReplaced => "RunReplaced",
            Reason::InvalidRunNow => "InvalidRunNow",
            Reason::RunNameTaken => "RunNameTaken",
        }
    }
}
