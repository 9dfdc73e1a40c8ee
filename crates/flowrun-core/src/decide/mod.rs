//! The decisions, as pure functions of the FlowRun, the clock and AppFlow's answers. No I/O here:
//! everything the functions need is passed in, so every rule is a row in a table test.
//!
//! [`decide`] looks at a FlowRun and says what to do; when that is a call to AppFlow, [`after`]
//! turns the call's [`Answer`] into the outcome to report. The rules by stage: [`start`]ing a
//! run, [`follow`]ing it, and [`finish`]ing the FlowRun; [`status`] holds what they share.

use std::sync::Arc;
use std::time::Duration;

use flowrun_api::conditions::Reason;
use flowrun_api::{FlowRun, FlowRunPolicy, FlowRunStatus, Phase, StartRecord};
use jiff::{SignedDuration, Timestamp};
use kube_core::ResourceExt;

use crate::appflow::{
    AppFlowError, ExecutionRecord, FlowKey, StartFlowRequest, StartedFlow, StoppedFlow,
};

mod finish;
mod follow;
mod start;
mod status;

use follow::{annotated_start, deadline, first_attempt, flow_as, flow_key, region};
use status::given_up;

/// The operator's rules, from its flags (not to be confused with a `FlowRunPolicy`, which is
/// a tenant's grant).
#[derive(Clone, Debug)]
pub struct Rules {
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
    /// How long a deleted FlowRun's run is tried to be canceled before the finalizer is
    /// released anyway (`--cancel-timeout`).
    pub cancel_timeout: SignedDuration,
}

/// What the reconciler read besides the object itself.
#[derive(Clone, Debug)]
pub struct Observed {
    pub now: Timestamp,
    /// A random number in `[0, 1)` that spreads retries of many FlowRuns apart.
    pub jitter: f64,
    /// The FlowRunPolicies of the FlowRun's namespace.
    pub policies: Vec<Arc<FlowRunPolicy>>,
    /// The FlowRunPolicies of the namespace that the operator cannot read (e.g. stored under an
    /// older schema). Any of them may name the role the FlowRun must use, so while one is
    /// there nothing in the namespace is started.
    pub unreadable_policies: Vec<UnreadablePolicy>,
    /// The other Activated FlowRuns of the same flow name in the watched namespaces, from the
    /// watch's cache. Gathered only when [`needs_activations`] says the decision reads them,
    /// since that scans every cached FlowRun.
    pub activations: Vec<FlowRun>,
}

/// True when [`decide`] reads [`Observed::activations`]: for an Activated FlowRun with
/// deactivateOnDelete that is being deleted.
pub fn needs_activations(flowrun: &FlowRun) -> bool {
    flowrun.metadata.deletion_timestamp.is_some()
        && flowrun.phase() == Phase::Activated
        && flowrun.spec.deactivate_on_delete
}

/// A FlowRunPolicy that does not parse into today's type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnreadablePolicy {
    pub name: String,
    /// Why it does not parse.
    pub error: String,
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

/// Start the run.
#[derive(Clone, Debug, PartialEq)]
pub struct StartCall {
    pub request: StartFlowRequest,
    /// The status the answer is reported on: the start record, identity and policy.
    pub status: Box<FlowRunStatus>,
}

/// Find the run's record in its flow's history.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackCall {
    pub flow: FlowKey,
    pub execution_id: String,
    pub started: Timestamp,
}

/// Cancel the run.
#[derive(Clone, Debug, PartialEq)]
pub struct CancelCall {
    pub flow: FlowKey,
    pub execution_id: String,
    pub cause: CancelCause,
}

/// Deactivate the flow a deleted FlowRun activated.
#[derive(Clone, Debug, PartialEq)]
pub struct StopCall {
    pub flow: FlowKey,
}

/// A call to AppFlow the reconciler makes for the decision.
#[derive(Clone, Debug, PartialEq)]
pub enum AppFlowCall {
    StartFlow(StartCall),
    Track(TrackCall),
    Cancel(CancelCall),
    Stop(StopCall),
}

/// A call together with what it returned: each answer can only be built from its own call,
/// so a history read's answer can never be taken for StartFlow's.
///
/// ```compile_fail
/// use flowrun_core::decide::{Answer, TrackCall};
/// fn mixed_up(read: TrackCall) -> Answer {
///     Answer::Started(read, Ok(Default::default()))
/// }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    Started(StartCall, Result<StartedFlow, AppFlowError>),
    /// `None`: AppFlow does not list the run yet.
    Tracked(TrackCall, Result<Option<ExecutionRecord>, AppFlowError>),
    /// The ids AppFlow could not cancel (already finished).
    Canceled(CancelCall, Result<Vec<String>, AppFlowError>),
    Stopped(StopCall, Result<StoppedFlow, AppFlowError>),
}

impl AppFlowCall {
    /// The AWS operation, as logs and metrics name it.
    pub fn operation(&self) -> &'static str {
        match self {
            AppFlowCall::StartFlow(_) => "StartFlow",
            AppFlowCall::Track(_) => "DescribeFlowExecutionRecords",
            AppFlowCall::Cancel(_) => "CancelFlowExecutions",
            AppFlowCall::Stop(_) => "StopFlow",
        }
    }
}

/// How a reconcile ends. [`after`] returns one, so an answer can never ask for another call.
///
/// ```compile_fail
/// use flowrun_core::decide::Outcome;
/// fn another_call(outcome: Outcome) {
///     if let Outcome::Call(_) = outcome {}
/// }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Nothing to write; look again after the given time, or when the object changes.
    Wait(Option<Duration>),
    /// Write to Kubernetes.
    Report(Box<Transition>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Nothing to ask AppFlow: the outcome is known.
    Done(Outcome),
    /// Call AppFlow, then hand the answer to [`after`].
    Call(AppFlowCall),
}

impl From<Outcome> for Decision {
    fn from(outcome: Outcome) -> Self {
        Decision::Done(outcome)
    }
}

/// AppFlow's status of a run in progress.
const IN_PROGRESS: &str = "InProgress";

/// A safety net for a status write whose watch event never comes.
const RECHECK_AFTER_WRITE: Duration = Duration::from_secs(30);

pub fn decide(flowrun: &FlowRun, observed: &Observed, rules: &Rules) -> Decision {
    let Some(uid) = flowrun.uid() else {
        // Objects read from the API server always have a UID; nothing is safe to do without one.
        return Outcome::Wait(None).into();
    };
    if flowrun.metadata.deletion_timestamp.is_some() {
        return finish::decide_deletion(flowrun, uid, observed, rules);
    }
    let status = flowrun.status.clone().unwrap_or_default();
    match flowrun.phase() {
        Phase::Pending | Phase::Retrying => {
            start::decide_start(flowrun, uid, status, observed, rules)
        }
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
            let flow = flow_key(flowrun, rules);
            match deadline(flowrun) {
                Some(deadline) if observed.now >= deadline => {
                    Decision::Call(AppFlowCall::Cancel(CancelCall {
                        flow,
                        execution_id,
                        cause: CancelCause::Deadline,
                    }))
                }
                _ => Decision::Call(AppFlowCall::Track(TrackCall {
                    flow,
                    execution_id,
                    started: first_attempt(flowrun),
                })),
            }
        }
        Phase::Succeeded | Phase::Failed | Phase::Activated | Phase::Canceled => {
            finish::decide_finished(flowrun, &status, observed).into()
        }
    }
}

/// The outcome once an AppFlow call returned: a report, or a wait.
pub fn after(flowrun: &FlowRun, observed: &Observed, rules: &Rules, answer: Answer) -> Outcome {
    match answer {
        // Asked only to learn what a deleted FlowRun may have left running.
        Answer::Started(call, result) if flowrun.metadata.deletion_timestamp.is_some() => {
            status::report(finish::after_replay(
                flowrun,
                *call.status,
                observed,
                rules,
                result,
            ))
        }
        Answer::Started(call, result) => status::report(start::after_start(
            flowrun,
            *call.status,
            observed,
            rules,
            result,
        )),
        Answer::Tracked(call, result) => {
            follow::after_track(flowrun, observed, rules, &call.execution_id, result)
        }
        Answer::Canceled(call, result) => status::report(finish::after_cancel(
            flowrun,
            observed,
            rules,
            &call.execution_id,
            call.cause,
            result,
        )),
        Answer::Stopped(call, result) => {
            status::report(finish::after_stop(flowrun, observed, rules, &call, result))
        }
    }
}

#[cfg(test)]
mod tests;
