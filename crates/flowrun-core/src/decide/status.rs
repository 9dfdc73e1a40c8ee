//! The statuses and transitions the rules share: conditions by kstatus, the final phases, and
//! the reason for each kind of AppFlow failure.

use std::time::Duration;

use flowrun_api::conditions::{self, Reason};
use flowrun_api::{FINALIZER, FlowRun, FlowRunStatus, Phase};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube_core::ResourceExt;

use super::{EventType, FinalizerChange, Observed, Outcome, RECHECK_AFTER_WRITE, Transition};
use crate::appflow::FailureKind;
use crate::conditions::{DesiredCondition, merge};

pub(super) fn reason_for(kind: FailureKind) -> Reason {
    match kind {
        FailureKind::FlowNotFound => Reason::FlowNotFound,
        FailureKind::InvalidRequest => Reason::InvalidRequest,
        FailureKind::AccessDenied => Reason::AccessDenied,
        FailureKind::QuotaExceeded => Reason::QuotaExceeded,
        FailureKind::Conflict => Reason::Conflict,
        FailureKind::Throttled => Reason::Throttled,
        FailureKind::Unavailable => Reason::AppFlowUnavailable,
        FailureKind::CredentialsUnavailable => Reason::CredentialsUnavailable,
    }
}

/// A write, as an [`Outcome`] or a [`super::Decision`].
pub(super) fn report<T: From<Outcome>>(transition: Transition) -> T {
    Outcome::Report(Box::new(transition)).into()
}

pub(super) fn has_finalizer(flowrun: &FlowRun) -> bool {
    flowrun.finalizers().iter().any(|f| f == FINALIZER)
}

/// A FlowRun that ended Activated with deactivateOnDelete keeps the finalizer: its deletion
/// still has a flow to deactivate.
pub(super) fn keeps_finalizer(flowrun: &FlowRun, phase: Option<Phase>) -> bool {
    phase == Some(Phase::Activated) && flowrun.spec.deactivate_on_delete
}

pub(super) fn until(now: Timestamp, then: Timestamp) -> Duration {
    Duration::try_from(then.duration_since(now)).unwrap_or_default()
}

/// What the conditions say: kstatus' three, and `Finished` on every final phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Health {
    /// Starting, retrying or running: `Reconciling=True`.
    Progressing,
    /// Succeeded or activated: `Ready=True`.
    Ready,
    /// Failed or canceled: `Stalled=True`; nothing more will happen.
    Stalled,
}

pub(super) fn with_conditions(
    flowrun: &FlowRun,
    status: FlowRunStatus,
    observed: &Observed,
    health: Health,
    reason: Reason,
) -> FlowRunStatus {
    let message = status.message.clone().unwrap_or_default();
    let condition = |type_, on| DesiredCondition {
        type_,
        status: on,
        reason,
        message: message.clone(),
    };
    FlowRunStatus {
        conditions: merge(
            &status.conditions,
            &[
                condition(conditions::READY, health == Health::Ready),
                condition(conditions::RECONCILING, health == Health::Progressing),
                condition(conditions::STALLED, health == Health::Stalled),
                condition(conditions::FINISHED, health != Health::Progressing),
            ],
            flowrun.metadata.generation,
            &Time(observed.now),
        ),
        observed_generation: flowrun.metadata.generation,
        ..status
    }
}

pub(super) fn progressing(
    flowrun: &FlowRun,
    status: FlowRunStatus,
    observed: &Observed,
    reason: Reason,
) -> Transition {
    Transition {
        status: Some(with_conditions(
            flowrun,
            status,
            observed,
            Health::Progressing,
            reason,
        )),
        requeue: Some(RECHECK_AFTER_WRITE),
        ..Transition::default()
    }
}

/// A final phase: the finalizer goes (there is no run left to cancel, and no flow to
/// deactivate unless [`keeps_finalizer`]) and, with a TTL, the FlowRun comes back for deletion.
pub(super) fn finished(
    flowrun: &FlowRun,
    status: FlowRunStatus,
    observed: &Observed,
    health: Health,
    reason: Reason,
) -> Transition {
    let release = has_finalizer(flowrun) && !keeps_finalizer(flowrun, status.phase);
    Transition {
        status: Some(with_conditions(flowrun, status, observed, health, reason)),
        finalizer: release.then_some(FinalizerChange::Remove),
        requeue: flowrun
            .spec
            .ttl_seconds_after_finished
            .and_then(|ttl| u64::try_from(ttl).ok())
            .map(Duration::from_secs),
        ..Transition::default()
    }
}

/// A FlowRun the operator will not start or follow, because going on could run the flow twice
/// (or report a run that is not there): it fails, and the message says what to do instead.
pub(super) fn given_up<T: From<Outcome>>(
    flowrun: &FlowRun,
    status: FlowRunStatus,
    observed: &Observed,
    reason: Reason,
    why: String,
) -> T {
    let message = format!(
        "{why}. Check the run history of flow {} in AppFlow and create a new FlowRun to run it \
         again",
        flowrun.spec.flow_name
    );
    report(failed(flowrun, status, observed, reason, message))
}

/// A terminal failure: `Stalled=True`, a Warning event; the operator does nothing more.
pub(super) fn failed(
    flowrun: &FlowRun,
    status: FlowRunStatus,
    observed: &Observed,
    reason: Reason,
    message: String,
) -> Transition {
    let status = FlowRunStatus {
        phase: Some(Phase::Failed),
        message: Some(message.clone()),
        next_attempt_time: None,
        completion_time: status.completion_time.or(Some(Time(observed.now))),
        ..status
    };
    finished(flowrun, status, observed, Health::Stalled, reason).with_event(
        EventType::Warning,
        reason,
        message,
    )
}
