//! Starting a run: the start record written before the first attempt, every attempt checked
//! against the policies and the token window, and StartFlow's answer turned into a status.

use std::sync::Arc;

use flowrun_api::conditions::Reason;
use flowrun_api::{
    FlowRun, FlowRunPolicy, FlowRunStatus, OPERATOR_IDENTITY, Phase, START_ANNOTATION, StartRecord,
    TOKEN_WINDOW,
};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube_core::ResourceExt;

use super::status::{Health, failed, finished, given_up, progressing, reason_for, report, until};
use super::{
    AppFlowCall, Decision, EventType, FinalizerChange, IN_PROGRESS, Observed, Outcome, Rules,
    StartCall, Transition, annotated_start, deadline, first_attempt, region,
};
use crate::appflow::{
    AppFlowError, AssumedRole, FailureKind, FlowKey, StartFlowRequest, StartedFlow,
};
use crate::backoff::{poll_interval, retry_delay};
use crate::permit;

/// Past this age a retry might reach AppFlow after the token expired and start a second run.
const TOKEN_SAFETY_MARGIN: SignedDuration = SignedDuration::from_mins(30);

/// A FlowRun not started yet. The first attempt is preceded by one metadata write that records
/// what the run is bound to (the start record) and adds the finalizer; every later attempt,
/// even by another operator process, reuses that record and the FlowRun's UID as token.
pub(super) fn decide_start(
    flowrun: &FlowRun,
    uid: String,
    status: FlowRunStatus,
    observed: &Observed,
    rules: &Rules,
) -> Decision {
    let record = match start_record(flowrun) {
        Ok(record) => record,
        Err(why) => return given_up(flowrun, status, observed, Reason::InvalidObject, why),
    };
    let Some(region) = record
        .as_ref()
        .and_then(|record| record.region.clone())
        .or_else(|| region(flowrun, rules))
    else {
        return report(failed(
            flowrun,
            status,
            observed,
            Reason::InvalidRequest,
            "no AWS region: set spec.region or the operator's --default-region".into(),
        ));
    };
    // The record pins a region the operator chose (--default-region), never another one.
    if let Some(wanted) = &flowrun.spec.region
        && *wanted != region
    {
        let why = format!(
            "the start record says region {region} but spec.region is {wanted}; the record was \
             edited by hand"
        );
        return given_up(flowrun, status, observed, Reason::InvalidObject, why);
    }
    if !observed.unreadable_policies.is_empty() {
        return wait_for_readable_policies(flowrun, status, observed);
    }
    // Checked before every attempt: a record never grants what the policies no longer do.
    let policies: Vec<&FlowRunPolicy> = observed.policies.iter().map(Arc::as_ref).collect();
    let namespace = flowrun.namespace().unwrap_or_default();
    let grant = match permit::permit(
        &policies,
        &namespace,
        &flowrun.spec.flow_name,
        &region,
        rules.require_flowrun_policy,
    ) {
        Ok(grant) => grant,
        // Refused before any AppFlow call; a later policy change does not revive it.
        Err(message) => {
            return report(failed(
                flowrun,
                status,
                observed,
                Reason::NotPermitted,
                message,
            ));
        }
    };
    let identity = grant
        .role_arn
        .clone()
        .unwrap_or_else(|| OPERATOR_IDENTITY.to_owned());
    let Some(record) = record else {
        let record = StartRecord {
            time: observed.now,
            region: Some(region),
            identity: Some(identity),
            external_id: grant.external_id,
        };
        return report(Transition {
            start_record: Some(record),
            // Before the run (or the activation) can exist, so a delete at any later moment
            // stops it.
            finalizer: (flowrun.spec.cancel_on_delete || flowrun.spec.deactivate_on_delete)
                .then_some(FinalizerChange::Add),
            proceed: true,
            ..Transition::default()
        });
    };
    // What a failure below leaves in the status, so nothing the record says is lost.
    let status = FlowRunStatus {
        client_token: Some(uid.clone()),
        region: Some(region.clone()),
        identity: Some(identity.clone()),
        policy: grant.policy.clone(),
        external_id: grant.external_id.clone(),
        start_time: Some(Time(record.time)),
        ..status
    };
    if let Some(recorded) = &record.identity
        && *recorded != identity
    {
        let why = format!(
            "the FlowRunPolicies changed while flow {} was being started: the first StartFlow \
             attempt was made as {recorded}, and they now allow {identity}. Retrying under \
             another identity could start a second run, so the FlowRun is not retried",
            flowrun.spec.flow_name
        );
        return given_up(flowrun, status, observed, Reason::NotPermitted, why);
    }
    if !within_token_window(&record, observed.now) {
        let why = format!(
            "StartFlow was first tried at {} and its outcome is unknown; AppFlow honours the \
             idempotency token for 8 hours only, so it is not retried",
            record.time
        );
        return given_up(flowrun, status, observed, Reason::StartOutcomeUnknown, why);
    }
    if let Some(deadline) = deadline(flowrun)
        && observed.now >= deadline
    {
        let message = format!(
            "flow {} could not be started within activeDeadlineSeconds; {}",
            flowrun.spec.flow_name,
            status.message.as_deref().unwrap_or_default()
        );
        return report(failed(
            flowrun,
            status,
            observed,
            Reason::DeadlineExceeded,
            message,
        ));
    }
    if let Some(MicroTime(next)) = status.next_attempt_time
        && next > observed.now
    {
        return Outcome::Wait(Some(until(observed.now, next))).into();
    }
    let role = grant.role_arn.map(|role_arn| AssumedRole {
        role_arn,
        external_id: grant.external_id,
        session_name: permit::session_name(&namespace),
    });
    Decision::Call(AppFlowCall::StartFlow(StartCall {
        request: StartFlowRequest {
            flow: FlowKey {
                region,
                flow_name: flowrun.spec.flow_name.clone(),
                role,
            },
            client_token: uid,
        },
        status: Box::new(status),
    }))
}

/// A namespace with a FlowRunPolicy the operator cannot read fails closed: that policy may name
/// the role its FlowRuns must use, and running them as another identity would mix privileges
/// up. Nothing is started, and the FlowRun waits (not fails): a change to any policy of the
/// namespace brings it back, so it starts by itself once the policy is fixed.
fn wait_for_readable_policies(
    flowrun: &FlowRun,
    status: FlowRunStatus,
    observed: &Observed,
) -> Decision {
    let namespace = flowrun.namespace().unwrap_or_default();
    let unreadable = observed
        .unreadable_policies
        .iter()
        .map(|policy| format!("{} ({})", policy.name, policy.error))
        .collect::<Vec<_>>()
        .join(", ");
    let message = format!(
        "the operator cannot read FlowRunPolicy {unreadable} in namespace {namespace}, which \
         may name the AWS role for this FlowRun: nothing in the namespace is started until a \
         cluster admin fixes or deletes it; then the FlowRun starts by itself"
    );
    let status = FlowRunStatus {
        phase: Some(flowrun.phase()),
        message: Some(message.clone()),
        ..status
    };
    let waiting = Transition {
        requeue: None,
        ..progressing(flowrun, status, observed, Reason::NotPermitted)
    };
    if waiting.status == flowrun.status {
        return Outcome::Wait(None).into();
    }
    report(waiting.with_event(EventType::Warning, Reason::NotPermitted, message))
}

/// True while a StartFlow call with the FlowRun's token is sure to reach AppFlow before the
/// token expires, so that it cannot start a second run.
pub(super) fn within_token_window(record: &StartRecord, now: Timestamp) -> bool {
    now < record.time + (TOKEN_WINDOW - TOKEN_SAFETY_MARGIN)
}

/// The start record: from the status once an attempt failed (phase Starting), else from the
/// annotation written before the first attempt. An annotation that does not parse was edited
/// by hand; guessing could start a second run, so it is an error.
pub(super) fn start_record(flowrun: &FlowRun) -> Result<Option<StartRecord>, String> {
    if flowrun.phase() == Phase::Retrying {
        let status = flowrun.status.clone().unwrap_or_default();
        return Ok(Some(StartRecord {
            time: first_attempt(flowrun),
            region: status.region,
            identity: status.identity,
            external_id: status.external_id,
        }));
    }
    annotated_start(flowrun).transpose().map_err(|error| {
        format!(
            "annotation {START_ANNOTATION} does not parse ({error}); the operator writes it \
             before the first StartFlow attempt and it must not be edited"
        )
    })
}

pub(super) fn after_start(
    flowrun: &FlowRun,
    status: FlowRunStatus,
    observed: &Observed,
    rules: &Rules,
    result: Result<StartedFlow, AppFlowError>,
) -> Transition {
    let status = FlowRunStatus {
        next_attempt_time: None,
        ..status
    };
    let flow = &flowrun.spec.flow_name;
    match result {
        Ok(started) => {
            let status = FlowRunStatus {
                flow_arn: started.flow_arn,
                flow_status: started.flow_status,
                ..status
            };
            match started.execution_id {
                Some(execution_id) => {
                    let message = format!(
                        "Started flow {flow} in {} as {}: execution {execution_id}",
                        status.region.as_deref().unwrap_or_default(),
                        status.identity.as_deref().unwrap_or_default()
                    );
                    let status = FlowRunStatus {
                        phase: Some(Phase::Running),
                        execution_id: Some(execution_id),
                        // A run StartFlow just created is in progress; saying so now saves a
                        // status write at the first poll.
                        execution_status: Some(IN_PROGRESS.to_owned()),
                        message: Some(message.clone()),
                        ..status
                    };
                    progressing(flowrun, status, observed, Reason::Running)
                        .with_event(EventType::Normal, Reason::Running, message)
                        .requeue_after(Some(poll_interval(rules, SignedDuration::ZERO)))
                }
                None => {
                    let message = format!(
                        "Activated flow {flow}: it runs on its schedule or trigger, so there is \
                         no single execution to follow"
                    );
                    let status = FlowRunStatus {
                        phase: Some(Phase::Activated),
                        message: Some(message.clone()),
                        completion_time: Some(Time(observed.now)),
                        ..status
                    };
                    finished(flowrun, status, observed, Health::Ready, Reason::Activated)
                        .with_event(EventType::Normal, Reason::Activated, message)
                }
            }
        }
        Err(error) => {
            let reason = reason_for(error.kind);
            let message = format!("StartFlow for flow {flow} failed: {error}");
            let waited = observed.now.duration_since(first_attempt(flowrun));
            let terminal = match error.kind {
                FailureKind::InvalidRequest => true,
                FailureKind::FlowNotFound => waited >= rules.not_found_grace,
                _ => false,
            };
            if terminal {
                return failed(flowrun, status, observed, reason, message);
            }
            let attempts = status.start_attempts.unwrap_or(0).saturating_add(1);
            let delay = retry_delay(
                rules,
                u32::try_from(attempts).unwrap_or(u32::MAX),
                observed.jitter,
            );
            let message = format!("{message} (attempt {attempts}; retrying in {delay:#})");
            let status = FlowRunStatus {
                phase: Some(Phase::Retrying),
                start_attempts: Some(attempts),
                next_attempt_time: Some(MicroTime(observed.now + delay)),
                message: Some(message.clone()),
                ..status
            };
            progressing(flowrun, status, observed, reason)
                .with_event(EventType::Warning, reason, message)
                .requeue_after(Some(until(observed.now, observed.now + delay)))
        }
    }
}
