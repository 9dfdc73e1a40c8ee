//! The end of a FlowRun: canceling its run on delete or past its deadline, releasing the
//! finalizer, and deleting it once its TTL has passed.

use flowrun_api::conditions::Reason;
use flowrun_api::{FlowRun, FlowRunStatus, Phase};
use jiff::SignedDuration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::status::{failed, has_finalizer, reason_for, report, until};
use super::{
    AppFlowCall, CancelCall, CancelCause, Decision, EventType, FinalizerChange, Observed, Outcome,
    Rules, Transition, first_attempt, flow_key,
};
use crate::appflow::{AppFlowError, FailureKind};
use crate::backoff::retry_delay;

/// A FlowRun being deleted: cancel its run if it is in progress, then let it go.
pub(super) fn decide_deletion(flowrun: &FlowRun, rules: &Rules) -> Decision {
    if !has_finalizer(flowrun) {
        return Outcome::Wait(None).into();
    }
    let status = flowrun.status.clone().unwrap_or_default();
    match (flowrun.phase(), status.execution_id) {
        (Phase::Running, Some(execution_id)) if flowrun.spec.cancel_on_delete => {
            Decision::Call(AppFlowCall::Cancel(CancelCall {
                flow: flow_key(flowrun, rules),
                execution_id,
                cause: CancelCause::Deleted,
            }))
        }
        // Not started (no run to cancel) or already finished.
        _ => report(Transition {
            finalizer: Some(FinalizerChange::Remove),
            ..Transition::default()
        }),
    }
}

/// A finished FlowRun: drop a finalizer left behind by a crash, and delete it once its TTL
/// has passed.
pub(super) fn decide_finished(
    flowrun: &FlowRun,
    status: &FlowRunStatus,
    observed: &Observed,
) -> Outcome {
    if has_finalizer(flowrun) {
        return report(Transition {
            finalizer: Some(FinalizerChange::Remove),
            ..Transition::default()
        });
    }
    let Some(ttl) = flowrun.spec.ttl_seconds_after_finished else {
        return Outcome::Wait(None);
    };
    let finished = status
        .completion_time
        .as_ref()
        .map_or_else(|| first_attempt(flowrun), |time| time.0);
    let expires = finished + SignedDuration::from_secs(ttl);
    if observed.now < expires {
        return Outcome::Wait(Some(until(observed.now, expires)));
    }
    report(
        Transition {
            delete: true,
            ..Transition::default()
        }
        .with_event(
            EventType::Normal,
            Reason::TtlExpired,
            format!("Deleting the FlowRun {ttl} s after it finished (ttlSecondsAfterFinished)"),
        ),
    )
}

pub(super) fn after_cancel(
    flowrun: &FlowRun,
    observed: &Observed,
    rules: &Rules,
    execution_id: &str,
    cause: CancelCause,
    result: Result<Vec<String>, AppFlowError>,
) -> Transition {
    let flow = &flowrun.spec.flow_name;
    let already_finished = match result {
        Ok(invalid) => invalid.iter().any(|id| id == execution_id),
        // The flow vanished, and its runs with it: nothing is left to cancel.
        Err(error) if error.kind == FailureKind::FlowNotFound => true,
        Err(error) => {
            let reason = reason_for(error.kind);
            // Retried until it works: the finalizer holds the FlowRun until then.
            let delay = retry_delay(rules, 4, observed.jitter);
            return Transition::default()
                .with_event(
                    EventType::Warning,
                    reason,
                    format!(
                        "Failed to cancel execution {execution_id} of flow {flow}, retrying in \
                         {delay:#}: {error}"
                    ),
                )
                .requeue_after(Some(until(observed.now, observed.now + delay)));
        }
    };
    let outcome = if already_finished {
        "it had already finished"
    } else {
        "canceled it"
    };
    match cause {
        CancelCause::Deleted => Transition {
            finalizer: Some(FinalizerChange::Remove),
            ..Transition::default()
        }
        .with_event(
            EventType::Normal,
            Reason::CanceledOnDelete,
            format!(
                "The FlowRun was deleted while execution {execution_id} of flow {flow} was in \
                 progress: {outcome}"
            ),
        ),
        CancelCause::Deadline => {
            let status = FlowRunStatus {
                completion_time: Some(Time(observed.now)),
                ..flowrun.status.clone().unwrap_or_default()
            };
            failed(
                flowrun,
                status,
                observed,
                Reason::DeadlineExceeded,
                format!(
                    "execution {execution_id} of flow {flow} was still in progress after \
                     activeDeadlineSeconds={}: {outcome}",
                    flowrun.spec.active_deadline_seconds.unwrap_or_default()
                ),
            )
        }
    }
}
