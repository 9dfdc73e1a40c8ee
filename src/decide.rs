//! The decisions, as pure functions of the FlowRun, the clock and AppFlow's answers. No I/O here:
//! everything the functions need is passed in, so every rule is a row in a table test.
//!
//! [`decide`] looks at a FlowRun and says what to do; when that is a call to AppFlow, [`after`]
//! turns the call's result into the status to report.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::ResourceExt;

use std::sync::Arc;

use crate::appflow::{
    AppFlowError, AssumedRole, ExecutionRecord, FailureKind, FlowKey, StartFlowRequest, StartedFlow,
};
use crate::conditions::{self, DesiredCondition, Reason};
use crate::flowrun::{FlowRun, FlowRunStatus, Phase};
use crate::tenancy::{self, FlowRunPolicy, OPERATOR_IDENTITY};

/// AppFlow honours a StartFlow idempotency token for 8 hours.
pub const TOKEN_WINDOW: SignedDuration = SignedDuration::from_hours(8);
/// Past this age a retry might reach AppFlow after the token expired and start a second run.
pub const TOKEN_SAFETY_MARGIN: SignedDuration = SignedDuration::from_mins(30);
/// Held by FlowRuns whose run is in progress, so that deleting one cancels its run first.
pub const FINALIZER: &str = "appflow.flowrun.dev/cancel-on-delete";
/// Holds a FlowRun's [`StartRecord`] as JSON.
pub const START_ANNOTATION: &str = "appflow.flowrun.dev/start";

/// What a run is bound to from its first StartFlow attempt on: written (with the finalizer)
/// before that attempt, so that every retry, even after a crash, measures the token window from
/// the same moment and goes to the same region as the same identity.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StartRecord {
    /// The first attempt; AppFlow honours the token for 8 hours from it.
    pub time: Timestamp,
    // `None` only in a status written by hand or by an older version of the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
}

/// The operator's rules, from its flags.
#[derive(Clone, Debug)]
pub struct Policy {
    pub default_region: Option<String>,
    /// How long a flow that does not exist is waited for (GitOps may apply the FlowRun first).
    pub not_found_grace: SignedDuration,
    pub retry_initial_delay: SignedDuration,
    pub retry_max_delay: SignedDuration,
    /// Poll interval right after a run started; it grows with the run's age up to the max.
    pub poll_initial_interval: SignedDuration,
    pub poll_max_interval: SignedDuration,
    /// A namespace without a FlowRunPolicy may start nothing.
    pub require_flowrun_policy: bool,
}

/// What the reconciler read besides the object itself.
#[derive(Clone, Debug)]
pub struct Observed {
    pub now: Timestamp,
    /// A random number in `[0, 1)` that spreads retries of many FlowRuns apart.
    pub jitter: f64,
    /// The FlowRunPolicies of the FlowRun's namespace.
    pub policies: Vec<Arc<FlowRunPolicy>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// A Kubernetes event to publish for a transition; its reason is the condition reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventNote {
    pub type_: EventType,
    pub reason: Reason,
    pub note: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinalizerChange {
    Add,
    Remove,
}

/// What to write to Kubernetes, the event announcing it, and when to look again. Applied in
/// this order: metadata (start record, finalizer added), status, finalizer removed, deletion.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Transition {
    /// The start record to write to the annotation (in the same write as an added finalizer).
    pub start_record: Option<StartRecord>,
    /// The new status; `None` leaves it as it is.
    pub status: Option<FlowRunStatus>,
    pub finalizer: Option<FinalizerChange>,
    pub delete: bool,
    pub event: Option<EventNote>,
    pub requeue: Option<Duration>,
    /// Decide again at once on the object the write returned, instead of waiting for the watch.
    pub proceed: bool,
}

impl Transition {
    fn with_event(mut self, type_: EventType, reason: Reason, note: String) -> Self {
        self.event = Some(EventNote {
            type_,
            reason,
            note,
        });
        self
    }

    fn requeue_after(mut self, delay: Option<Duration>) -> Self {
        self.requeue = delay;
        self
    }
}

/// Why a run is canceled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelCause {
    /// The FlowRun is being deleted (spec.cancelOnDelete).
    Deleted,
    /// The run outlived spec.activeDeadlineSeconds.
    Deadline,
}

/// A call to AppFlow the reconciler makes for the decision.
#[derive(Clone, Debug, PartialEq)]
pub enum AppFlowCall {
    StartFlow {
        request: StartFlowRequest,
        /// The status the answer is reported on: the start record, identity and policy.
        status: Box<FlowRunStatus>,
    },
    /// Find the run's record in its flow's history.
    Track {
        flow: FlowKey,
        execution_id: String,
        started: Timestamp,
    },
    Cancel {
        flow: FlowKey,
        execution_id: String,
        cause: CancelCause,
    },
}

/// What an [`AppFlowCall`] returned.
#[derive(Clone, Debug, PartialEq)]
pub enum CallResult {
    Started(Result<StartedFlow, AppFlowError>),
    /// `None`: AppFlow does not list the run yet.
    Tracked(Result<Option<ExecutionRecord>, AppFlowError>),
    /// The ids AppFlow could not cancel (already finished).
    Canceled(Result<Vec<String>, AppFlowError>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Nothing to write; look again after the given time, or when the object changes.
    Wait(Option<Duration>),
    /// Write to Kubernetes without calling AppFlow.
    Report(Box<Transition>),
    /// Call AppFlow, then hand the result to [`after`].
    Call(AppFlowCall),
}

/// AppFlow's status of a run in progress.
const IN_PROGRESS: &str = "InProgress";

/// A safety net for a status write whose watch event never comes.
const RECHECK_AFTER_WRITE: Duration = Duration::from_secs(30);

pub fn decide(flowrun: &FlowRun, observed: &Observed, policy: &Policy) -> Decision {
    let Some(uid) = flowrun.uid() else {
        // Objects read from the API server always have a UID; nothing is safe to do without one.
        return Decision::Wait(None);
    };
    if flowrun.metadata.deletion_timestamp.is_some() {
        return decide_deletion(flowrun, policy);
    }
    let status = flowrun.status.clone().unwrap_or_default();
    match flowrun.phase() {
        Phase::Pending | Phase::Starting => decide_start(flowrun, uid, status, observed, policy),
        Phase::Running => {
            let Some(execution_id) = status.execution_id.clone() else {
                // The operator writes Running only with the execution id: edited by hand.
                return given_up(
                    flowrun,
                    status,
                    observed,
                    Reason::InvalidObject,
                    "status.phase is Running but status.executionId is empty, so there is no \
                     run to follow; the status was edited by hand"
                        .into(),
                );
            };
            let flow = flow_key(flowrun, policy);
            match deadline(flowrun) {
                Some(deadline) if observed.now >= deadline => Decision::Call(AppFlowCall::Cancel {
                    flow,
                    execution_id,
                    cause: CancelCause::Deadline,
                }),
                _ => Decision::Call(AppFlowCall::Track {
                    flow,
                    execution_id,
                    started: first_attempt(flowrun),
                }),
            }
        }
        Phase::Succeeded | Phase::Failed | Phase::Activated | Phase::Canceled => {
            decide_finished(flowrun, &status, observed)
        }
    }
}

/// A FlowRun not started yet. The first attempt is preceded by one metadata write that records
/// what the run is bound to (the start record) and adds the finalizer; every later attempt,
/// even by another operator process, reuses that record and the FlowRun's UID as token.
fn decide_start(
    flowrun: &FlowRun,
    uid: String,
    status: FlowRunStatus,
    observed: &Observed,
    policy: &Policy,
) -> Decision {
    let record = match start_record(flowrun) {
        Ok(record) => record,
        Err(why) => return given_up(flowrun, status, observed, Reason::InvalidObject, why),
    };
    let Some(region) = record
        .as_ref()
        .and_then(|record| record.region.clone())
        .or_else(|| region(flowrun, policy))
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
    // Checked before every attempt: a record never grants what the policies no longer do.
    let policies: Vec<&FlowRunPolicy> = observed.policies.iter().map(Arc::as_ref).collect();
    let namespace = flowrun.namespace().unwrap_or_default();
    let grant = match tenancy::permit(
        &policies,
        &namespace,
        &flowrun.spec.flow_name,
        &region,
        policy.require_flowrun_policy,
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
        };
        return report(Transition {
            start_record: Some(record),
            // Before the run can exist, so a delete at any later moment cancels it.
            finalizer: flowrun
                .spec
                .cancel_on_delete
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
    if observed.now >= record.time + (TOKEN_WINDOW - TOKEN_SAFETY_MARGIN) {
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
        return Decision::Wait(Some(until(observed.now, next)));
    }
    let role = grant.role_arn.map(|role_arn| AssumedRole {
        role_arn,
        external_id: grant.external_id,
        session_name: tenancy::session_name(&namespace),
    });
    Decision::Call(AppFlowCall::StartFlow {
        request: StartFlowRequest {
            flow: FlowKey {
                region,
                flow_name: flowrun.spec.flow_name.clone(),
                role,
            },
            client_token: uid,
        },
        status: Box::new(status),
    })
}

/// The start record: from the status once an attempt failed (phase Starting), else from the
/// annotation written before the first attempt. An annotation that does not parse was edited
/// by hand; guessing could start a second run, so it is an error.
fn start_record(flowrun: &FlowRun) -> Result<Option<StartRecord>, String> {
    if flowrun.phase() == Phase::Starting {
        let status = flowrun.status.clone().unwrap_or_default();
        return Ok(Some(StartRecord {
            time: first_attempt(flowrun),
            region: status.region,
            identity: status.identity,
        }));
    }
    annotated_start(flowrun).transpose().map_err(|error| {
        format!(
            "annotation {START_ANNOTATION} does not parse ({error}); the operator writes it \
             before the first StartFlow attempt and it must not be edited"
        )
    })
}

/// A FlowRun being deleted: cancel its run if it is in progress, then let it go.
fn decide_deletion(flowrun: &FlowRun, policy: &Policy) -> Decision {
    if !has_finalizer(flowrun) {
        return Decision::Wait(None);
    }
    let status = flowrun.status.clone().unwrap_or_default();
    match (flowrun.phase(), status.execution_id) {
        (Phase::Running, Some(execution_id)) if flowrun.spec.cancel_on_delete => {
            Decision::Call(AppFlowCall::Cancel {
                flow: flow_key(flowrun, policy),
                execution_id,
                cause: CancelCause::Deleted,
            })
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
fn decide_finished(flowrun: &FlowRun, status: &FlowRunStatus, observed: &Observed) -> Decision {
    if has_finalizer(flowrun) {
        return report(Transition {
            finalizer: Some(FinalizerChange::Remove),
            ..Transition::default()
        });
    }
    let Some(ttl) = flowrun.spec.ttl_seconds_after_finished else {
        return Decision::Wait(None);
    };
    let finished = status
        .completion_time
        .as_ref()
        .map_or_else(|| first_attempt(flowrun), |time| time.0);
    let expires = finished + SignedDuration::from_secs(ttl);
    if observed.now < expires {
        return Decision::Wait(Some(until(observed.now, expires)));
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

/// Drops what [`decide`] never reads from a finished FlowRun, for the watch cache, which holds
/// every FlowRun in scope and mostly finished ones: their status is only looked at for the
/// phase and the times the TTL counts from, and a finished FlowRun's status is never written
/// again. About 60 % of a finished FlowRun's memory.
pub fn trim_finished(flowrun: &mut FlowRun) {
    if !flowrun.phase().is_final() {
        return;
    }
    if let Some(status) = &mut flowrun.status {
        *status = FlowRunStatus {
            phase: status.phase,
            start_time: status.start_time.take(),
            completion_time: status.completion_time.take(),
            ..FlowRunStatus::default()
        };
    }
}

/// The next step once an AppFlow call returned: a report, or a wait.
pub fn after(
    flowrun: &FlowRun,
    observed: &Observed,
    policy: &Policy,
    call: &AppFlowCall,
    result: CallResult,
) -> Decision {
    match (call, result) {
        (AppFlowCall::StartFlow { status, .. }, CallResult::Started(result)) => report(
            after_start(flowrun, status.as_ref().clone(), observed, policy, result),
        ),
        (AppFlowCall::Track { execution_id, .. }, CallResult::Tracked(result)) => {
            after_track(flowrun, observed, policy, execution_id, result)
        }
        (
            AppFlowCall::Cancel {
                execution_id,
                cause,
                ..
            },
            CallResult::Canceled(result),
        ) => report(after_cancel(
            flowrun,
            observed,
            policy,
            execution_id,
            *cause,
            result,
        )),
        (call, result) => unreachable!("{result:?} does not answer {call:?}"),
    }
}

fn after_start(
    flowrun: &FlowRun,
    status: FlowRunStatus,
    observed: &Observed,
    policy: &Policy,
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
                        .requeue_after(Some(poll_interval(policy, SignedDuration::ZERO)))
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
                FailureKind::FlowNotFound => waited >= policy.not_found_grace,
                _ => false,
            };
            if terminal {
                return failed(flowrun, status, observed, reason, message);
            }
            let attempts = status.start_attempts.unwrap_or(0).saturating_add(1);
            let delay = retry_delay(
                policy,
                u32::try_from(attempts).unwrap_or(u32::MAX),
                observed.jitter,
            );
            let message = format!("{message} (attempt {attempts}; retrying in {delay:#})");
            let status = FlowRunStatus {
                phase: Some(Phase::Starting),
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

fn after_track(
    flowrun: &FlowRun,
    observed: &Observed,
    policy: &Policy,
    execution_id: &str,
    result: Result<Option<ExecutionRecord>, AppFlowError>,
) -> Decision {
    let status = flowrun.status.clone().unwrap_or_default();
    let flow = &flowrun.spec.flow_name;
    let next_poll = poll_interval(policy, observed.now.duration_since(first_attempt(flowrun)));
    let record = match result {
        // Not listed yet: AppFlow is still setting the run up.
        Ok(None) => return Decision::Wait(Some(next_poll)),
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
                Decision::Wait(Some(next_poll))
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

fn after_cancel(
    flowrun: &FlowRun,
    observed: &Observed,
    policy: &Policy,
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
            let delay = retry_delay(policy, 4, observed.jitter);
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

/// Capped exponential backoff with "equal jitter": half the delay is fixed, half random. The
/// attempt count lives in the status, so the backoff survives operator restarts.
pub fn retry_delay(policy: &Policy, attempts: u32, jitter: f64) -> SignedDuration {
    let exponent = attempts.saturating_sub(1).min(30);
    let full = policy
        .retry_initial_delay
        .checked_mul(1 << exponent)
        .unwrap_or(policy.retry_max_delay)
        .min(policy.retry_max_delay);
    let half = full / 2;
    let delay = half + half.mul_f64(jitter.clamp(0.0, 1.0));
    // Whole milliseconds: finer is noise, and messages stay readable ("1s 417ms").
    SignedDuration::from_millis(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX))
}

/// Polls come quickly while a run is young and slow down as it ages: a quarter of its age,
/// between the initial and the max interval.
pub fn poll_interval(policy: &Policy, age: SignedDuration) -> Duration {
    let interval = (age / 4)
        .max(policy.poll_initial_interval)
        .min(policy.poll_max_interval);
    Duration::try_from(interval).unwrap_or_default()
}

fn reason_for(kind: FailureKind) -> Reason {
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

fn report(transition: Transition) -> Decision {
    Decision::Report(Box::new(transition))
}

fn has_finalizer(flowrun: &FlowRun) -> bool {
    flowrun.finalizers().iter().any(|f| f == FINALIZER)
}

fn region(flowrun: &FlowRun, policy: &Policy) -> Option<String> {
    flowrun
        .spec
        .region
        .clone()
        .or_else(|| policy.default_region.clone())
}

/// The flow of a FlowRun past Pending: in the region and under the identity recorded when it
/// was allowed to start, whatever the policies say now.
fn flow_key(flowrun: &FlowRun, policy: &Policy) -> FlowKey {
    let status = flowrun.status.clone().unwrap_or_default();
    let role = status
        .identity
        .filter(|identity| identity != OPERATOR_IDENTITY)
        .map(|role_arn| AssumedRole {
            role_arn,
            external_id: status.external_id,
            session_name: tenancy::session_name(&flowrun.namespace().unwrap_or_default()),
        });
    FlowKey {
        region: status
            .region
            .or_else(|| region(flowrun, policy))
            .unwrap_or_default(),
        flow_name: flowrun.spec.flow_name.clone(),
        role,
    }
}

fn annotated_start(flowrun: &FlowRun) -> Option<Result<StartRecord, serde_json::Error>> {
    let text = flowrun.annotations().get(START_ANNOTATION)?;
    Some(serde_json::from_str(text))
}

/// When StartFlow was first tried: from the status, else the start record's annotation. A
/// FlowRun with neither (edited by hand) falls back to the creation time, which can only make
/// the token window look older, never younger.
fn first_attempt(flowrun: &FlowRun) -> Timestamp {
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

fn deadline(flowrun: &FlowRun) -> Option<Timestamp> {
    let seconds = flowrun.spec.active_deadline_seconds?;
    Some(first_attempt(flowrun) + SignedDuration::from_secs(seconds))
}

fn until(now: Timestamp, then: Timestamp) -> Duration {
    Duration::try_from(then.duration_since(now)).unwrap_or_default()
}

/// kstatus: what the three conditions say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Health {
    /// Starting, retrying or running: `Reconciling=True`.
    Progressing,
    /// Succeeded or activated: `Ready=True`.
    Ready,
    /// Failed or canceled: `Stalled=True`; nothing more will happen.
    Stalled,
}

fn with_conditions(
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
        conditions: conditions::merge(
            &status.conditions,
            &[
                condition(conditions::READY, health == Health::Ready),
                condition(conditions::RECONCILING, health == Health::Progressing),
                condition(conditions::STALLED, health == Health::Stalled),
            ],
            flowrun.metadata.generation,
            &Time(observed.now),
        ),
        observed_generation: flowrun.metadata.generation,
        ..status
    }
}

fn progressing(
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

/// A final phase: the finalizer goes (there is no run left to cancel) and, with a TTL, the
/// FlowRun comes back for deletion.
fn finished(
    flowrun: &FlowRun,
    status: FlowRunStatus,
    observed: &Observed,
    health: Health,
    reason: Reason,
) -> Transition {
    Transition {
        status: Some(with_conditions(flowrun, status, observed, health, reason)),
        finalizer: has_finalizer(flowrun).then_some(FinalizerChange::Remove),
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
fn given_up(
    flowrun: &FlowRun,
    status: FlowRunStatus,
    observed: &Observed,
    reason: Reason,
    why: String,
) -> Decision {
    let message = format!(
        "{why}. Check the run history of flow {} in AppFlow and create a new FlowRun to run it \
         again",
        flowrun.spec.flow_name
    );
    report(failed(flowrun, status, observed, reason, message))
}

/// A terminal failure: `Stalled=True`, a Warning event; the operator does nothing more.
fn failed(
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

#[cfg(test)]
mod tests;
