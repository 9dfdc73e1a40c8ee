//! The end of a FlowRun: stopping its run on delete (whatever stage it reached) or past its
//! deadline, deactivating the flow it activated (deactivateOnDelete), releasing the finalizer,
//! and deleting it once its TTL has passed.

use flowrun_api::conditions::{READY, Reason};
use flowrun_api::{FlowRun, FlowRunStatus, Phase, StartRecord};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube_core::ResourceExt;

use super::start::{start_record, within_token_window};
use super::status::{
    Health, failed, finished, has_finalizer, keeps_finalizer, progressing, reason_for, report,
    until,
};
use super::{
    AppFlowCall, CancelCall, CancelCause, Decision, EventType, FinalizerChange, Observed, Outcome,
    Rules, StartCall, StopCall, Transition, first_attempt, flow_as, flow_key, region,
};
use crate::appflow::{
    AppFlowError, FailureKind, FlowKey, StartFlowRequest, StartedFlow, StoppedFlow,
    UNSUPPORTED_OPERATION,
};
use crate::backoff::retry_delay;

/// What a FlowRun being deleted may have left running in AppFlow.
enum Leftover {
    /// This run is in progress.
    Execution(String),
    /// StartFlow was called and its outcome is unknown: a run may exist under the FlowRun's
    /// token.
    Unknown(StartRecord),
    /// The FlowRun activated its flow, and deactivateOnDelete asks to deactivate it.
    Activation,
}

/// StartFlow errors after which AppFlow runs nothing for the call: it answered, and refused.
const REFUSALS: [FailureKind; 4] = [
    FailureKind::InvalidRequest,
    FailureKind::FlowNotFound,
    FailureKind::AccessDenied,
    FailureKind::QuotaExceeded,
];

/// `None`: nothing runs (never started, refused, or finished), or it is not the operator's to
/// stop (`cancelOnDelete: false`, `deactivateOnDelete: false`).
fn leftover(flowrun: &FlowRun, status: &FlowRunStatus) -> Option<Leftover> {
    let spec = &flowrun.spec;
    match flowrun.phase() {
        Phase::Running if spec.cancel_on_delete => {
            status.execution_id.clone().map(Leftover::Execution)
        }
        Phase::Activated if spec.deactivate_on_delete => Some(Leftover::Activation),
        Phase::Retrying if last_attempt_refused(status) => None,
        // No record: StartFlow was never called. A record that does not parse was edited by
        // hand, and the start path gives up on it too. Whether the call ran the flow or
        // activated it is not known yet, so either option asks.
        Phase::Pending | Phase::Retrying if spec.cancel_on_delete || spec.deactivate_on_delete => {
            start_record(flowrun).ok().flatten().map(Leftover::Unknown)
        }
        Phase::Pending
        | Phase::Retrying
        | Phase::Running
        | Phase::Succeeded
        | Phase::Failed
        | Phase::Activated
        | Phase::Canceled => None,
    }
}

/// True when `other` is an Activated FlowRun, not being deleted, of the flow in `flow`: the
/// same name and region under the same AWS identity (another role may be another account,
/// whose flow of that name is another flow).
fn still_activates(other: &FlowRun, flowrun: &FlowRun, flow: &FlowKey, rules: &Rules) -> bool {
    let theirs = flow_key(other, rules);
    let role = |key: &FlowKey| key.role.as_ref().map(|role| role.role_arn.clone());
    other.metadata.uid != flowrun.metadata.uid
        && other.phase() == Phase::Activated
        && other.metadata.deletion_timestamp.is_none()
        && theirs.region == flow.region
        && theirs.flow_name == flow.flow_name
        && role(&theirs) == role(flow)
}

/// The latest StartFlow attempt was refused, as the Ready condition's reason says.
fn last_attempt_refused(status: &FlowRunStatus) -> bool {
    status
        .conditions
        .iter()
        .find(|condition| condition.type_ == READY)
        .is_some_and(|ready| {
            REFUSALS
                .iter()
                .any(|kind| reason_for(*kind).as_str() == ready.reason)
        })
}

/// A FlowRun being deleted: stop what it may have left running, then let it go. A run in
/// progress is canceled. When StartFlow's outcome is unknown, StartFlow is called again with
/// the same token, which inside the token window returns the run the first call started
/// and starts none (see [`after_replay`]). Failures are retried until `--cancel-timeout`
/// after the deletion; then the finalizer is released with a warning naming the run.
pub(super) fn decide_deletion(
    flowrun: &FlowRun,
    uid: String,
    observed: &Observed,
    rules: &Rules,
) -> Decision {
    if !has_finalizer(flowrun) {
        return Outcome::Wait(None).into();
    }
    let status = flowrun.status.clone().unwrap_or_default();
    let Some(leftover) = leftover(flowrun, &status) else {
        return report(release());
    };
    if let Leftover::Activation = leftover {
        let flow = flow_key(flowrun, rules);
        if let Some(other) = observed
            .activations
            .iter()
            .find(|other| still_activates(other, flowrun, &flow, rules))
        {
            return report(release().with_event(
                EventType::Normal,
                Reason::DeactivationSkipped,
                format!(
                    "Left flow {} in {} active: FlowRun {} activated it too and still exists",
                    flow.flow_name,
                    flow.region,
                    object_key(other)
                ),
            ));
        }
    }
    if observed.now >= give_up_at(flowrun, observed, rules) {
        let why = format!(
            "it could not be stopped within --cancel-timeout={:#} of the deletion: {}",
            rules.cancel_timeout,
            status.message.as_deref().unwrap_or_default()
        );
        return report(abandon(flowrun, &leftover, &uid, &why));
    }
    if status.cancel_attempts.is_some()
        && let Some(MicroTime(next)) = status.next_attempt_time
        && next > observed.now
    {
        return Outcome::Wait(Some(until(observed.now, next))).into();
    }
    match &leftover {
        Leftover::Activation => Decision::Call(AppFlowCall::Stop(StopCall {
            flow: flow_key(flowrun, rules),
        })),
        Leftover::Execution(execution_id) => Decision::Call(AppFlowCall::Cancel(CancelCall {
            flow: flow_key(flowrun, rules),
            execution_id: execution_id.clone(),
            cause: CancelCause::Deleted,
        })),
        Leftover::Unknown(record) if !within_token_window(record, observed.now) => {
            let why = format!(
                "StartFlow was first tried at {} and its outcome is unknown, and AppFlow no \
                 longer honours the token, so asking again could start a run",
                record.time
            );
            report(abandon(flowrun, &leftover, &uid, &why))
        }
        Leftover::Unknown(record) => {
            let region = record.region.clone().or_else(|| region(flowrun, rules));
            let status = FlowRunStatus {
                client_token: Some(uid.clone()),
                region: region.clone(),
                identity: record.identity.clone(),
                external_id: record.external_id.clone(),
                start_time: Some(Time(record.time)),
                ..status
            };
            Decision::Call(AppFlowCall::StartFlow(StartCall {
                request: StartFlowRequest {
                    flow: flow_as(
                        flowrun,
                        region,
                        record.identity.clone(),
                        record.external_id.clone(),
                    ),
                    client_token: uid,
                },
                status: Box::new(status),
            }))
        }
    }
}

fn release() -> Transition {
    Transition {
        finalizer: Some(FinalizerChange::Remove),
        ..Transition::default()
    }
}

/// The finalizer released with the run (maybe) still going: a warning names it, so that
/// someone can stop it in AppFlow.
fn abandon(flowrun: &FlowRun, leftover: &Leftover, uid: &str, why: &str) -> Transition {
    let flow = &flowrun.spec.flow_name;
    let run = match leftover {
        Leftover::Execution(execution_id) => format!("execution {execution_id} of flow {flow}"),
        Leftover::Unknown(_) => {
            format!("the run of flow {flow} that StartFlow may have started (client token {uid})")
        }
        Leftover::Activation => {
            return release().with_event(
                EventType::Warning,
                Reason::RunAbandoned,
                format!(
                    "Released the deleted FlowRun, but flow {flow}, which it activated, may \
                     still be active: {why}. Deactivate it in AppFlow (StopFlow) if it must \
                     not run"
                ),
            );
        }
    };
    release().with_event(
        EventType::Warning,
        Reason::RunAbandoned,
        format!(
            "Released the deleted FlowRun, but {run} may still be running: {why}. Stop it in \
             AppFlow if it must not finish"
        ),
    )
}

/// `namespace/name`, as events name another FlowRun.
fn object_key(flowrun: &FlowRun) -> String {
    format!(
        "{}/{}",
        flowrun.namespace().unwrap_or_default(),
        flowrun.name_any()
    )
}

/// StartFlow's answer for a FlowRun being deleted (asked with the same token, to learn what
/// runs): a run is recorded and then canceled; a refusal means nothing runs.
///
/// The one corner: when the first call never reached AppFlow (the connection failed before
/// the request was sent), this call starts the run, which is canceled at once. That is the
/// lesser evil: a timeout or a 5xx usually means AppFlow did get the call, and releasing
/// without asking would leave every such run going with nothing watching it.
pub(super) fn after_replay(
    flowrun: &FlowRun,
    status: FlowRunStatus,
    observed: &Observed,
    rules: &Rules,
    result: Result<StartedFlow, AppFlowError>,
) -> Transition {
    let flow = &flowrun.spec.flow_name;
    match result {
        // A run, but cancelOnDelete is off: it is not the operator's to stop.
        Ok(StartedFlow {
            execution_id: Some(_),
            ..
        }) if !flowrun.spec.cancel_on_delete => release(),
        Ok(StartedFlow {
            execution_id: Some(execution_id),
            flow_arn,
            flow_status,
        }) => {
            let status = FlowRunStatus {
                phase: Some(Phase::Running),
                execution_id: Some(execution_id.clone()),
                flow_arn,
                flow_status,
                next_attempt_time: None,
                message: Some(format!(
                    "The FlowRun was deleted while StartFlow's outcome was unknown; StartFlow \
                     with the same token returned execution {execution_id}, which is canceled \
                     next"
                )),
                ..status
            };
            Transition {
                proceed: true,
                ..progressing(flowrun, status, observed, Reason::Running)
            }
        }
        // An activation to undo: recorded first, then deactivated like any Activated FlowRun.
        Ok(StartedFlow {
            execution_id: None,
            flow_arn,
            flow_status,
        }) if flowrun.spec.deactivate_on_delete => {
            let status = FlowRunStatus {
                phase: Some(Phase::Activated),
                flow_arn,
                flow_status,
                next_attempt_time: None,
                completion_time: Some(Time(observed.now)),
                message: Some(format!(
                    "The FlowRun was deleted while StartFlow's outcome was unknown; StartFlow \
                     with the same token says it activated flow {flow}, which is deactivated \
                     next (deactivateOnDelete)"
                )),
                ..status
            };
            Transition {
                proceed: true,
                ..finished(flowrun, status, observed, Health::Ready, Reason::Activated)
            }
        }
        Ok(StartedFlow {
            execution_id: None, ..
        }) => release().with_event(
            EventType::Warning,
            Reason::RunAbandoned,
            format!(
                "Released the deleted FlowRun, but flow {flow} is scheduled or event-triggered \
                 and StartFlow activated it, and spec.deactivateOnDelete is off. Deactivate it \
                 in AppFlow (StopFlow) if it must not run"
            ),
        ),
        Err(error) if REFUSALS.contains(&error.kind) => release(),
        Err(error) => retry_on_delete(
            flowrun,
            status,
            observed,
            rules,
            reason_for(error.kind),
            format!(
                "Failed to learn whether flow {flow} was started (StartFlow with the same \
                 token): {error}"
            ),
        ),
    }
}

/// When the operator stops trying to stop a deleted FlowRun's run: `--cancel-timeout` after
/// the deletion.
fn give_up_at(flowrun: &FlowRun, observed: &Observed, rules: &Rules) -> Timestamp {
    let deleted = flowrun
        .metadata
        .deletion_timestamp
        .as_ref()
        .map_or(observed.now, |time| time.0);
    deleted + rules.cancel_timeout
}

/// A failed attempt to stop a deleted FlowRun's run: retried with backoff, said in the status
/// and a Warning event, until `--cancel-timeout` after the deletion.
fn retry_on_delete(
    flowrun: &FlowRun,
    status: FlowRunStatus,
    observed: &Observed,
    rules: &Rules,
    reason: Reason,
    failure: String,
) -> Transition {
    let attempts = status.cancel_attempts.unwrap_or(0).saturating_add(1);
    let delay = retry_delay(
        rules,
        u32::try_from(attempts).unwrap_or(u32::MAX),
        observed.jitter,
    );
    let give_up = give_up_at(flowrun, observed, rules);
    let next = (observed.now + delay).min(give_up);
    let message = format!(
        "{failure} (attempt {attempts}; retrying in {:#}; the finalizer is released at \
         {give_up} if it keeps failing)",
        next.duration_since(observed.now)
    );
    let status = FlowRunStatus {
        cancel_attempts: Some(attempts),
        next_attempt_time: Some(MicroTime(next)),
        message: Some(message.clone()),
        ..status
    };
    progressing(flowrun, status, observed, reason)
        .with_event(EventType::Warning, reason, message)
        .requeue_after(Some(until(observed.now, next)))
}

/// A finished FlowRun: drop a finalizer left behind by a crash, and delete it once its TTL
/// has passed.
pub(super) fn decide_finished(
    flowrun: &FlowRun,
    status: &FlowRunStatus,
    observed: &Observed,
) -> Outcome {
    if has_finalizer(flowrun) && !keeps_finalizer(flowrun, status.phase) {
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
            let failure =
                format!("Failed to cancel execution {execution_id} of flow {flow}: {error}");
            if cause == CancelCause::Deleted {
                let status = flowrun.status.clone().unwrap_or_default();
                return retry_on_delete(flowrun, status, observed, rules, reason, failure);
            }
            // Past the deadline: retried until it works, or until the FlowRun is deleted.
            let delay = retry_delay(rules, 4, observed.jitter);
            return Transition::default()
                .with_event(
                    EventType::Warning,
                    reason,
                    format!("{failure} (retrying in {delay:#})"),
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
        CancelCause::Deleted => release().with_event(
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

/// StopFlow's answer for a deleted Activated FlowRun. A flow that is gone, or that runs on
/// demand now, has nothing left to deactivate; other refusals cannot be fixed by a retry and
/// release with a warning; the rest is retried until `--cancel-timeout`.
pub(super) fn after_stop(
    flowrun: &FlowRun,
    observed: &Observed,
    rules: &Rules,
    call: &StopCall,
    result: Result<StoppedFlow, AppFlowError>,
) -> Transition {
    let (flow, region) = (&call.flow.flow_name, &call.flow.region);
    match result {
        Ok(stopped) => release().with_event(
            EventType::Normal,
            Reason::Deactivated,
            format!(
                "Deactivated flow {flow} in {region} (StopFlow) as the FlowRun was deleted; its \
                 status is now {}",
                stopped.flow_status.as_deref().unwrap_or("not reported")
            ),
        ),
        Err(error) if error.kind == FailureKind::FlowNotFound => release().with_event(
            EventType::Normal,
            Reason::Deactivated,
            format!("Flow {flow} in {region} no longer exists, so nothing is left to deactivate"),
        ),
        Err(error) if error.code.as_deref() == Some(UNSUPPORTED_OPERATION) => release().with_event(
            EventType::Normal,
            Reason::DeactivationSkipped,
            format!(
                "Flow {flow} in {region} runs on demand now, so there is nothing to \
                     deactivate: {error}"
            ),
        ),
        Err(error) if error.kind == FailureKind::InvalidRequest => {
            let uid = flowrun.uid().unwrap_or_default();
            let why = format!("StopFlow was refused: {error}");
            abandon(flowrun, &Leftover::Activation, &uid, &why)
        }
        Err(error) => retry_on_delete(
            flowrun,
            flowrun.status.clone().unwrap_or_default(),
            observed,
            rules,
            reason_for(error.kind),
            format!("Failed to deactivate flow {flow} in {region} (StopFlow): {error}"),
        ),
    }
}
