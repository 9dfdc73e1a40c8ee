//! Following a run: its record in the flow's history turned into the status, and the flow,
//! region and times a run is bound to once it started.

use flowrun_api::conditions::Reason;
use flowrun_api::{
    FlowRun, FlowRunStatus, OPERATOR_IDENTITY, Phase, START_ANNOTATION, StartRecord,
};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube_core::ResourceExt;

use super::status::{Health, failed, finished, reason_for, report};
use super::{EventType, Observed, Outcome, Rules, Transition};
use crate::appflow::{AppFlowError, AssumedRole, ExecutionRecord, FailureKind, FlowKey};
use crate::backoff::poll_interval;
use crate::permit;

pub(super) fn after_track(
    flowrun: &FlowRun,
    observed: &Observed,
    rules: &Rules,
    execution_id: &str,
    result: Result<Option<ExecutionRecord>, AppFlowError>,
) -> Outcome {
    let status = flowrun.status.clone().unwrap_or_default();
    let flow = &flowrun.spec.flow_name;
    let next_poll = poll_interval(rules, observed.now.duration_since(first_attempt(flowrun)));
    let record = match result {
        // Not listed yet: AppFlow is still setting the run up.
        Ok(None) => return Outcome::Wait(Some(next_poll)),
        Ok(Some(record)) => record,
        Err(error) if error.kind == FailureKind::FlowNotFound => {
            return report(failed(
                flowrun,
                status,
                observed,
                Reason::FlowNotFound,
                format!(
                    "flow {flow} no longer exists, so the outcome of execution {execution_id} \
                     is unknown: {error}"
                ),
            ));
        }
        Err(error) => {
            let reason = reason_for(error.kind);
            return report(
                Transition::default()
                    .with_event(
                        EventType::Warning,
                        reason,
                        format!("Failed to read the run history of flow {flow}: {error}"),
                    )
                    .requeue_after(Some(next_poll)),
            );
        }
    };
    let status = FlowRunStatus {
        execution_status: Some(record.status.clone()),
        records_processed: record.records_processed.or(status.records_processed),
        bytes_processed: record.bytes_processed.or(status.bytes_processed),
        bytes_written: record.bytes_written.or(status.bytes_written),
        ..status
    };
    let completed = FlowRunStatus {
        completion_time: Some(Time(record.last_updated_at.unwrap_or(observed.now))),
        ..status.clone()
    };
    match record.status.as_str() {
        "Successful" => {
            let message = format!(
                "Execution {execution_id} of flow {flow} succeeded: {} records processed",
                record.records_processed.unwrap_or(0)
            );
            let status = FlowRunStatus {
                phase: Some(Phase::Succeeded),
                message: Some(message.clone()),
                ..completed
            };
            report(
                finished(flowrun, status, observed, Health::Ready, Reason::Succeeded).with_event(
                    EventType::Normal,
                    Reason::Succeeded,
                    message,
                ),
            )
        }
        "Error" => {
            let message = format!(
                "Execution {execution_id} of flow {flow} failed: {}",
                record
                    .error_message
                    .as_deref()
                    .unwrap_or("AppFlow gave no message")
            );
            report(failed(
                flowrun,
                completed,
                observed,
                Reason::ExecutionFailed,
                message,
            ))
        }
        "Canceled" => {
            let message = format!("Execution {execution_id} of flow {flow} was canceled");
            let status = FlowRunStatus {
                phase: Some(Phase::Canceled),
                message: Some(message.clone()),
                ..completed
            };
            report(
                finished(
                    flowrun,
                    status,
                    observed,
                    Health::Stalled,
                    Reason::ExecutionCanceled,
                )
                .with_event(EventType::Warning, Reason::ExecutionCanceled, message),
            )
        }
        // InProgress, CancelStarted, or a status newer than this operator: still going.
        _ => {
            let previous = flowrun.status.clone().unwrap_or_default();
            if status == previous {
                Outcome::Wait(Some(next_poll))
            } else {
                report(Transition {
                    status: Some(status),
                    requeue: Some(next_poll),
                    ..Transition::default()
                })
            }
        }
    }
}

pub(super) fn region(flowrun: &FlowRun, rules: &Rules) -> Option<String> {
    flowrun
        .spec
        .region
        .clone()
        .or_else(|| rules.default_region.clone())
}

/// The flow of a FlowRun past Pending: in the region and under the identity recorded when it
/// was allowed to start, whatever the policies say now.
pub(super) fn flow_key(flowrun: &FlowRun, rules: &Rules) -> FlowKey {
    let status = flowrun.status.clone().unwrap_or_default();
    let region = status.region.or_else(|| region(flowrun, rules));
    flow_as(flowrun, region, status.identity, status.external_id)
}

/// The FlowRun's flow in `region`, called as `identity` (a role ARN, or the operator's own).
pub(super) fn flow_as(
    flowrun: &FlowRun,
    region: Option<String>,
    identity: Option<String>,
    external_id: Option<String>,
) -> FlowKey {
    let role = identity
        .filter(|identity| identity != OPERATOR_IDENTITY)
        .map(|role_arn| AssumedRole {
            role_arn,
            external_id,
            session_name: permit::session_name(&flowrun.namespace().unwrap_or_default()),
        });
    FlowKey {
        region: region.unwrap_or_default(),
        flow_name: flowrun.spec.flow_name.clone(),
        role,
    }
}

pub(super) fn annotated_start(flowrun: &FlowRun) -> Option<Result<StartRecord, serde_json::Error>> {
    let text = flowrun.annotations().get(START_ANNOTATION)?;
    Some(serde_json::from_str(text))
}

/// When StartFlow was first tried: from the status, else the start record's annotation. A
/// FlowRun with neither (edited by hand) falls back to the creation time, which can only make
/// the token window look older, never younger.
pub(super) fn first_attempt(flowrun: &FlowRun) -> Timestamp {
    flowrun
        .status
        .as_ref()
        .and_then(|status| status.start_time.as_ref())
        .map(|time| time.0)
        .or_else(|| Some(annotated_start(flowrun)?.ok()?.time))
        .or_else(|| {
            flowrun
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|time| time.0)
        })
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

pub(super) fn deadline(flowrun: &FlowRun) -> Option<Timestamp> {
    let seconds = flowrun.spec.active_deadline_seconds?;
    Some(first_attempt(flowrun) + SignedDuration::from_secs(seconds))
}
