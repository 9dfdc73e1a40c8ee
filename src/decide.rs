//! The decisions, as pure functions of the FlowRun, the clock and AppFlow's answer. No I/O here:
//! everything the functions need is passed in, so every rule is a row in a table test.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::ResourceExt;

use crate::appflow::{AppFlowError, FailureKind, StartFlowRequest, StartedFlow};
use crate::conditions::{self, DesiredCondition, Reason};
use crate::flowrun::{FlowRun, FlowRunStatus, Phase};

/// AppFlow honours a StartFlow idempotency token for 8 hours.
pub const TOKEN_WINDOW: SignedDuration = SignedDuration::from_hours(8);
/// Past this age a retry might reach AppFlow after the token expired and start a second run.
pub const TOKEN_SAFETY_MARGIN: SignedDuration = SignedDuration::from_mins(30);

/// The operator's rules for starting flows, from its flags.
#[derive(Clone, Debug)]
pub struct StartPolicy {
    pub default_region: Option<String>,
    /// How long a flow that does not exist is waited for (GitOps may apply the FlowRun first).
    pub not_found_grace: SignedDuration,
    pub retry_initial_delay: SignedDuration,
    pub retry_max_delay: SignedDuration,
}

/// What the reconciler read besides the object itself.
#[derive(Clone, Copy, Debug)]
pub struct Observed {
    pub now: Timestamp,
    /// A random number in `[0, 1)` that spreads retries of many FlowRuns apart.
    pub jitter: f64,
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

/// A new status to write, the event announcing it, and when to look again.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub status: FlowRunStatus,
    pub event: Option<EventNote>,
    pub requeue: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Nothing to write; look again after the given time, or when the object changes.
    Wait(Option<Duration>),
    /// Write a new status without calling AppFlow.
    Report(Box<Transition>),
    /// Call StartFlow, then hand its result to [`after_start`].
    StartFlow(StartFlowRequest),
}

/// A safety net for a status write whose watch event never comes.
const RECHECK_AFTER_WRITE: Duration = Duration::from_secs(30);

pub fn decide(flowrun: &FlowRun, observed: &Observed, policy: &StartPolicy) -> Decision {
    let Some(uid) = flowrun.uid() else {
        // Objects read from the API server always have a UID; nothing is safe to do without one.
        return Decision::Wait(None);
    };
    let status = flowrun.status.clone().unwrap_or_default();
    match flowrun.phase() {
        Phase::Pending => {
            let Some(region) = flowrun
                .spec
                .region
                .clone()
                .or(policy.default_region.clone())
            else {
                return Decision::Report(Box::new(failed(
                    flowrun,
                    status,
                    observed,
                    Reason::InvalidRequest,
                    "no AWS region: set spec.region or the operator's --default-region".into(),
                )));
            };
            let message = format!("Starting flow {} in {region}", flowrun.spec.flow_name);
            let status = FlowRunStatus {
                phase: Some(Phase::Starting),
                client_token: Some(uid),
                region: Some(region),
                start_time: Some(Time(observed.now)),
                start_attempts: Some(0),
                message: Some(message.clone()),
                ..status
            };
            Decision::Report(Box::new(progressing(
                flowrun,
                status,
                observed,
                Reason::Starting,
                Some(message),
            )))
        }
        Phase::Starting => {
            let first_attempt = first_attempt(flowrun);
            if observed.now >= first_attempt + (TOKEN_WINDOW - TOKEN_SAFETY_MARGIN) {
                return Decision::Report(Box::new(failed(
                    flowrun,
                    status,
                    observed,
                    Reason::StartOutcomeUnknown,
                    format!(
                        "StartFlow was first tried at {first_attempt} and its outcome is unknown; \
                         AppFlow honours the idempotency token for 8 hours only, so it is not \
                         retried. Check the run history of flow {} in AppFlow and create a new \
                         FlowRun to run it again",
                        flowrun.spec.flow_name
                    ),
                )));
            }
            if let Some(MicroTime(next)) = status.next_attempt_time
                && next > observed.now
            {
                return Decision::Wait(Some(until(observed.now, next)));
            }
            Decision::StartFlow(StartFlowRequest {
                region: status
                    .region
                    .or(flowrun.spec.region.clone())
                    .or(policy.default_region.clone())
                    .unwrap_or_default(),
                flow_name: flowrun.spec.flow_name.clone(),
                client_token: uid,
            })
        }
        Phase::Running | Phase::Succeeded | Phase::Failed | Phase::Activated => {
            Decision::Wait(None)
        }
    }
}

/// The status after a StartFlow call returned `result`.
pub fn after_start(
    flowrun: &FlowRun,
    observed: &Observed,
    policy: &StartPolicy,
    result: Result<StartedFlow, AppFlowError>,
) -> Transition {
    let status = FlowRunStatus {
        next_attempt_time: None,
        ..flowrun.status.clone().unwrap_or_default()
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
                    let message = format!("Started flow {flow}: execution {execution_id}");
                    let status = FlowRunStatus {
                        phase: Some(Phase::Running),
                        execution_id: Some(execution_id),
                        message: Some(message.clone()),
                        ..status
                    };
                    progressing(flowrun, status, observed, Reason::Running, Some(message))
                }
                None => {
                    let message = format!(
                        "Activated flow {flow}: it runs on its schedule or trigger, so there is \
                         no single execution to follow"
                    );
                    let status = FlowRunStatus {
                        phase: Some(Phase::Activated),
                        message: Some(message.clone()),
                        conditions: conditions::merge(
                            &status.conditions,
                            &[
                                condition(conditions::READY, true, Reason::Activated, &message),
                                condition(
                                    conditions::RECONCILING,
                                    false,
                                    Reason::Activated,
                                    &message,
                                ),
                                condition(conditions::STALLED, false, Reason::Activated, &message),
                            ],
                            flowrun.metadata.generation,
                            &Time(observed.now),
                        ),
                        observed_generation: flowrun.metadata.generation,
                        ..status
                    };
                    Transition {
                        status,
                        event: Some(EventNote {
                            type_: EventType::Normal,
                            reason: Reason::Activated,
                            note: message,
                        }),
                        requeue: None,
                    }
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
            let delay = retry_delay(policy, attempts, observed.jitter);
            let status = FlowRunStatus {
                start_attempts: Some(attempts),
                next_attempt_time: Some(MicroTime(observed.now + delay)),
                message: Some(format!(
                    "{message} (attempt {attempts}; retrying in {delay:#})"
                )),
                ..status
            };
            let mut transition = progressing(flowrun, status, observed, reason, None);
            transition.event = Some(EventNote {
                type_: EventType::Warning,
                reason,
                note: transition.status.message.clone().unwrap_or_default(),
            });
            transition.requeue = Some(until(observed.now, observed.now + delay));
            transition
        }
    }
}

/// Capped exponential backoff with "equal jitter": half the delay is fixed, half random. The
/// attempt count lives in the status, so the backoff survives operator restarts.
pub fn retry_delay(policy: &StartPolicy, attempts: u32, jitter: f64) -> SignedDuration {
    let exponent = attempts.saturating_sub(1).min(30);
    let full = policy
        .retry_initial_delay
        .checked_mul(1 << exponent)
        .unwrap_or(policy.retry_max_delay)
        .min(policy.retry_max_delay);
    let half = full / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
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
    }
}

/// When StartFlow was first tried; a status without it (edited by hand) falls back to the
/// creation time, which can only make the token window look older, never younger.
fn first_attempt(flowrun: &FlowRun) -> Timestamp {
    flowrun
        .status
        .as_ref()
        .and_then(|status| status.start_time.as_ref())
        .or(flowrun.metadata.creation_timestamp.as_ref())
        .map_or(Timestamp::UNIX_EPOCH, |time| time.0)
}

fn until(now: Timestamp, then: Timestamp) -> Duration {
    Duration::try_from(then.duration_since(now)).unwrap_or_default()
}

fn condition(type_: &'static str, status: bool, reason: Reason, message: &str) -> DesiredCondition {
    DesiredCondition {
        type_,
        status,
        reason,
        message: message.to_owned(),
    }
}

/// Starting, retrying or running: kstatus `Reconciling=True`, not ready yet, not stalled.
fn progressing(
    flowrun: &FlowRun,
    status: FlowRunStatus,
    observed: &Observed,
    reason: Reason,
    event_note: Option<String>,
) -> Transition {
    let message = status.message.clone().unwrap_or_default();
    let status = FlowRunStatus {
        conditions: conditions::merge(
            &status.conditions,
            &[
                condition(conditions::READY, false, reason, &message),
                condition(conditions::RECONCILING, true, reason, &message),
                condition(conditions::STALLED, false, reason, &message),
            ],
            flowrun.metadata.generation,
            &Time(observed.now),
        ),
        observed_generation: flowrun.metadata.generation,
        ..status
    };
    Transition {
        status,
        event: event_note.map(|note| EventNote {
            type_: EventType::Normal,
            reason,
            note,
        }),
        requeue: Some(RECHECK_AFTER_WRITE),
    }
}

/// A terminal failure: kstatus `Stalled=True`; the operator does nothing more for this FlowRun.
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
        conditions: conditions::merge(
            &status.conditions,
            &[
                condition(conditions::READY, false, reason, &message),
                condition(conditions::RECONCILING, false, reason, &message),
                condition(conditions::STALLED, true, reason, &message),
            ],
            flowrun.metadata.generation,
            &Time(observed.now),
        ),
        observed_generation: flowrun.metadata.generation,
        ..status
    };
    Transition {
        status,
        event: Some(EventNote {
            type_: EventType::Warning,
            reason,
            note: message,
        }),
        requeue: None,
    }
}

#[cfg(test)]
mod tests;
