//! Condition types and reasons are API: users and tools (`kubectl wait`, Flux, Argo CD) match on
//! them, so they are named once, here. The types follow kstatus: `Ready`, `Reconciling` and
//! `Stalled`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

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
    /// ttlSecondsAfterFinished passed; the FlowRun is deleted (event only).
    TtlExpired,
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
            Reason::TtlExpired => "TtlExpired",
        }
    }
}

/// The desired state of one condition, before timestamps are filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredCondition {
    pub type_: &'static str,
    pub status: bool,
    pub reason: Reason,
    pub message: String,
}

/// Merges desired conditions into the current list. A condition whose status does not change
/// keeps its `lastTransitionTime`; conditions of other types are kept as they are.
pub fn merge(
    current: &[Condition],
    desired: &[DesiredCondition],
    observed_generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let mut merged: Vec<Condition> = current
        .iter()
        .filter(|condition| !desired.iter().any(|d| d.type_ == condition.type_))
        .cloned()
        .collect();
    for want in desired {
        let status = if want.status { "True" } else { "False" };
        let last_transition_time = current
            .iter()
            .find(|c| c.type_ == want.type_ && c.status == status)
            .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
        merged.push(Condition {
            type_: want.type_.to_owned(),
            status: status.to_owned(),
            reason: want.reason.as_str().to_owned(),
            message: want.message.clone(),
            observed_generation,
            last_transition_time,
        });
    }
    merged.sort_by(|a, b| a.type_.cmp(&b.type_));
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(seconds: i64) -> Time {
        Time(jiff::Timestamp::from_second(seconds).expect("valid timestamp"))
    }

    fn desired(type_: &'static str, status: bool, reason: Reason) -> DesiredCondition {
        DesiredCondition {
            type_,
            status,
            reason,
            message: format!("{reason:?}"),
        }
    }

    #[test]
    fn unchanged_status_keeps_its_transition_time_while_reason_and_message_update() {
        let first = merge(
            &[],
            &[desired(READY, false, Reason::Throttled)],
            Some(1),
            &time(100),
        );
        let second = merge(
            &first,
            &[desired(READY, false, Reason::Throttled)],
            Some(1),
            &time(200),
        );

        assert_eq!(second.len(), 1);
        assert_eq!(second[0].last_transition_time, time(100));
        assert_eq!(second[0].reason, "Throttled");
        assert_eq!(second[0].message, "Throttled");
    }

    #[test]
    fn changed_status_takes_the_new_transition_time() {
        let first = merge(
            &[],
            &[desired(READY, false, Reason::Throttled)],
            Some(1),
            &time(100),
        );
        let second = merge(
            &first,
            &[desired(READY, true, Reason::Running)],
            Some(2),
            &time(200),
        );

        assert_eq!(second[0].status, "True");
        assert_eq!(second[0].last_transition_time, time(200));
        assert_eq!(second[0].observed_generation, Some(2));
    }

    #[test]
    fn conditions_not_mentioned_are_kept_and_the_list_is_sorted_by_type() {
        let first = merge(
            &[],
            &[
                desired(STALLED, false, Reason::Throttled),
                desired(READY, false, Reason::Throttled),
            ],
            Some(1),
            &time(100),
        );
        let second = merge(
            &first,
            &[desired(RECONCILING, true, Reason::Throttled)],
            Some(1),
            &time(200),
        );

        let types: Vec<&str> = second.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [READY, RECONCILING, STALLED]);
    }
}
