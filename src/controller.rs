//! Watch and reconcile. Each reconcile reads as the pipeline: observe -> decide -> act -> report.
//! Lines that touch the network: `act` (AppFlow) and `report` (Kubernetes).

use std::borrow::Cow;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use jiff::Timestamp;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};

use crate::appflow::{AppFlow, FlowKey, StartedFlow};
use crate::conditions::Reason;
use crate::decide::{
    self, AppFlowCall, CallResult, Decision, EventNote, EventType, Observed, Policy,
    START_ANNOTATION,
};
use crate::events::{self, EventPublisher};
use crate::flowrun::FlowRun;
use crate::lock;
use crate::report::{self, FIELD_MANAGER, ReportError};
use crate::telemetry::Telemetry;
use crate::tenancy::PolicyWatch;
use crate::tracker::ExecutionTracker;

/// How much the controller does at once.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// FlowRuns reconciled at once (`--concurrency`).
    pub concurrency: u16,
    /// StartFlow calls per second, all flows together (`--start-rate-limit`).
    pub start_rate: NonZeroU32,
    /// How long one read of a flow's history serves its runs: the shortest poll interval.
    pub poll_tick: Duration,
}

/// Everything a reconcile needs, shared by all of them.
pub struct Context<A> {
    pub client: Client,
    pub appflow: A,
    events: EventPublisher,
    pub policy: Policy,
    concurrency: u16,
    /// Spreads StartFlow calls out so a burst of FlowRuns does not trip AppFlow's throttling.
    start_limiter: DefaultDirectRateLimiter,
    start_slots: StartSlots,
    /// Reads each flow's run history at most once per tick for all its runs in progress.
    tracker: ExecutionTracker,
    /// Consecutive unexpected errors per FlowRun UID, for the error policy's backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// The resourceVersion of this operator's latest write per FlowRun UID, until the watch
    /// has delivered it (see `is_stale`).
    written: Mutex<HashMap<String, u64>>,
    /// StartFlow's answer per client token until a write has recorded it. While the API server
    /// refuses writes, each retry would otherwise call StartFlow again: harmless with the token,
    /// but it spends AppFlow's quota.
    answered: Mutex<HashMap<String, StartedFlow>>,
    /// Metrics and readiness.
    pub telemetry: Arc<Telemetry>,
    /// The FlowRunPolicies of the watched namespaces.
    policies: PolicyWatch,
}

impl<A: AppFlow> Context<A> {
    pub fn new(
        client: Client,
        appflow: A,
        policy: Policy,
        limits: Limits,
        policies: PolicyWatch,
        telemetry: Arc<Telemetry>,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            events: EventPublisher::spawn(
                client.clone(),
                reporter,
                events::QUEUE_CAPACITY,
                telemetry.clone(),
            ),
            client,
            appflow,
            policy,
            concurrency: limits.concurrency,
            start_limiter: RateLimiter::direct(Quota::per_second(limits.start_rate)),
            // At most half the reconcile slots wait on one flow's StartFlow: a flow whose calls
            // hang until the AWS timeout must not hold them all and stall the other flows.
            start_slots: StartSlots::new(usize::from(limits.concurrency / 2).max(1)),
            tracker: ExecutionTracker::new(limits.poll_tick),
            failures: Mutex::default(),
            written: Mutex::default(),
            answered: Mutex::default(),
            telemetry,
            policies,
        }
    }

    fn record_failure(&self, uid: &str) -> u32 {
        let mut failures = lock(&self.failures);
        let count = failures.entry(uid.to_owned()).or_insert(0);
        *count = count.saturating_add(1);
        *count
    }

    fn clear_failures(&self, uid: &str) {
        lock(&self.failures).remove(uid);
    }

    fn answered_start(&self, token: &str) -> Option<StartedFlow> {
        let answered = lock(&self.answered);
        answered.get(token).cloned()
    }

    fn remember_answer(&self, token: &str, started: &StartedFlow) {
        lock(&self.answered).insert(token.to_owned(), started.clone());
    }

    /// A write for the FlowRun landed: what it had to record is recorded.
    fn reported(&self, uid: &str) {
        self.clear_failures(uid);
        lock(&self.answered).remove(uid);
    }

    /// True while the watch has not delivered this operator's latest write to the FlowRun yet.
    /// Under load the watch can lag behind a requeue; deciding on the older copy would repeat
    /// the step already taken (StartFlow again, or a status written back over a newer one).
    /// resourceVersions are etcd revisions, so they are compared as numbers; a server whose
    /// versions are not numbers gets no such guard.
    fn is_stale(&self, uid: &str, flowrun: &FlowRun) -> bool {
        let mut written = lock(&self.written);
        let Some(&wrote) = written.get(uid) else {
            return false;
        };
        let seen = flowrun
            .resource_version()
            .and_then(|version| version.parse::<u64>().ok());
        if seen.is_some_and(|seen| seen < wrote) {
            return true;
        }
        written.remove(uid);
        false
    }

    fn remember_write(&self, uid: &str, written: Option<&FlowRun>) {
        if let Some(version) = written
            .and_then(|written| written.resource_version())
            .and_then(|version| version.parse().ok())
        {
            lock(&self.written).insert(uid.to_owned(), version);
        }
    }
}

/// How soon a FlowRun whose cached copy predates the operator's own write is looked at again,
/// should the watch event of that write (which triggers a reconcile at once) not come.
const STALE_RECHECK: Duration = Duration::from_secs(1);

/// StartFlow calls in flight per flow (region and name), up to a limit.
struct StartSlots {
    per_flow: usize,
    in_flight: Mutex<HashMap<(String, String), usize>>,
}

/// One StartFlow call in flight; dropping it frees the slot.
struct StartSlot<'a> {
    slots: &'a StartSlots,
    flow: (String, String),
}

impl StartSlots {
    fn new(per_flow: usize) -> Self {
        StartSlots {
            per_flow,
            in_flight: Mutex::default(),
        }
    }

    fn take(&self, flow: &FlowKey) -> Option<StartSlot<'_>> {
        let key = (flow.region.clone(), flow.flow_name.clone());
        let mut in_flight = lock(&self.in_flight);
        let count = in_flight.entry(key.clone()).or_insert(0);
        if *count >= self.per_flow {
            return None;
        }
        *count += 1;
        Some(StartSlot {
            slots: self,
            flow: key,
        })
    }
}

impl Drop for StartSlot<'_> {
    fn drop(&mut self) {
        let mut in_flight = lock(&self.slots.in_flight);
        if let Some(count) = in_flight.get_mut(&self.flow) {
            *count -= 1;
            if *count == 0 {
                in_flight.remove(&self.flow);
            }
        }
    }
}

/// How soon a FlowRun whose flow has no free StartFlow slot tries again.
fn start_slot_wait() -> Duration {
    Duration::from_millis(500 + fastrand::u64(..1000))
}

/// Runs the controller until SIGTERM/SIGINT: one watch over all namespaces, or one per
/// namespace listed.
pub async fn run<A: AppFlow>(ctx: Arc<Context<A>>, namespaces: &[String]) {
    // A FlowRun must not be judged against policies that are not loaded yet.
    ctx.policies.wait_until_ready().await;
    let apis: Vec<Api<DeserializeGuard<FlowRun>>> = if namespaces.is_empty() {
        vec![Api::all(ctx.client.clone())]
    } else {
        namespaces
            .iter()
            .map(|namespace| Api::namespaced(ctx.client.clone(), namespace))
            .collect()
    };
    let controllers = apis.into_iter().map(|api| {
        // The cache holds every FlowRun in scope. managedFields are about 80 % of a FlowRun's
        // memory there (8.6 of 11.2 kB), and labels and other annotations (kubectl's
        // last-applied-configuration repeats the whole object) can weigh as much; nothing here
        // reads them: drop them as they arrive, and most of a finished FlowRun's status.
        let (store, writer) = reflector::store();
        let flowruns = reflector(
            writer,
            watcher(api, watcher::Config::default()).modify(|guarded| {
                if let Ok(flowrun) = &mut guarded.0 {
                    decide::trim_finished(flowrun);
                }
                let metadata = guarded.meta_mut();
                metadata.managed_fields = None;
                metadata.labels = None;
                if let Some(annotations) = &mut metadata.annotations {
                    annotations.retain(|key, _| key == START_ANNOTATION);
                }
            }),
        )
        .applied_objects();
        let controller = Controller::for_stream(flowruns, store);
        // Polled in this task, like the controller's own wait for its cache (see watch_store).
        let synced = ctx.telemetry.watch_store(controller.store());
        let run = controller
            .with_config(controller::Config::default().concurrency(ctx.concurrency))
            .shutdown_on_signal()
            .run(
                |flowrun, ctx| async move {
                    let telemetry = ctx.telemetry.clone();
                    telemetry.measure_reconcile(reconcile(flowrun, ctx)).await
                },
                error_policy,
                ctx.clone(),
            )
            .for_each(|result| async move {
                if let Err(error) = result {
                    tracing::debug!(%error, "Reconcile did not complete");
                }
            });
        async move {
            futures::future::select(std::pin::pin!(run), std::pin::pin!(synced)).await;
        }
    });
    futures::future::join_all(controllers).await;
}

async fn reconcile<A: AppFlow>(
    guarded: Arc<DeserializeGuard<FlowRun>>,
    ctx: Arc<Context<A>>,
) -> Result<Action, ReportError> {
    let flowrun = match &guarded.0 {
        Ok(flowrun) => flowrun,
        Err(invalid) => {
            report_invalid(&ctx, invalid);
            return Ok(Action::await_change());
        }
    };
    let uid = flowrun.uid().unwrap_or_default();
    if ctx.is_stale(&uid, flowrun) {
        return Ok(Action::requeue(STALE_RECHECK));
    }
    let api: Api<FlowRun> =
        Api::namespaced(ctx.client.clone(), &flowrun.namespace().unwrap_or_default());
    let mut flowrun = Cow::Borrowed(flowrun);
    loop {
        // Observe.
        let observed = observe(&ctx, &flowrun);
        // Decide.
        let (transition, action) = match decide::decide(&flowrun, &observed, &ctx.policy) {
            Decision::Wait(requeue) => return Ok(wait(&ctx, &uid, requeue)),
            Decision::Report(transition) => (*transition, "Reconcile"),
            Decision::Call(call) => {
                // Act.
                let Some(result) = call_appflow(&ctx, &flowrun, &call).await else {
                    return Ok(Action::requeue(start_slot_wait()));
                };
                let observed = observe(&ctx, &flowrun);
                match decide::after(&flowrun, &observed, &ctx.policy, &call, result) {
                    Decision::Report(transition) => (*transition, call_name(&call)),
                    Decision::Wait(requeue) => return Ok(wait(&ctx, &uid, requeue)),
                    Decision::Call(next) => unreachable!("after() never calls again: {next:?}"),
                }
            }
        };

        // Report.
        let written = report::apply(&api, &ctx.events, &flowrun, &transition, action).await?;
        ctx.remember_write(&uid, written.as_ref());
        ctx.telemetry
            .record_transition(flowrun.status.as_ref(), transition.status.as_ref());
        ctx.reported(&uid);
        match written {
            // The write returned the newest FlowRun: no need to wait for the watch to see it.
            Some(written) if transition.proceed => flowrun = Cow::Owned(written),
            _ => {
                return Ok(transition
                    .requeue
                    .map_or_else(Action::await_change, Action::requeue));
            }
        }
    }
}

fn wait<A: AppFlow>(ctx: &Context<A>, uid: &str, requeue: Option<Duration>) -> Action {
    ctx.clear_failures(uid);
    requeue.map_or_else(Action::await_change, Action::requeue)
}

/// The one place reconciles call AppFlow. `None`: the flow has no free StartFlow slot, so no
/// call was made.
async fn call_appflow<A: AppFlow>(
    ctx: &Context<A>,
    flowrun: &FlowRun,
    call: &AppFlowCall,
) -> Option<CallResult> {
    let key = object_key(flowrun);
    match call {
        AppFlowCall::StartFlow { request, .. } => {
            if let Some(started) = ctx.answered_start(&request.client_token) {
                tracing::debug!(flowrun = %key, "Reusing StartFlow's answer, not recorded yet");
                return Some(CallResult::Started(Ok(started)));
            }
            let Some(_slot) = ctx.start_slots.take(&request.flow) else {
                tracing::debug!(flowrun = %key, "Waiting for a StartFlow slot of its flow");
                return None;
            };
            ctx.start_limiter.until_ready().await;
            let result = ctx.appflow.start_flow(request).await;
            match &result {
                Ok(started) => {
                    ctx.remember_answer(&request.client_token, started);
                    tracing::info!(
                        flowrun = %key,
                        flow = %request.flow.flow_name,
                        execution_id = started.execution_id.as_deref().unwrap_or_default(),
                        "Started flow"
                    );
                }
                Err(error) => tracing::warn!(
                    flowrun = %key,
                    flow = %request.flow.flow_name,
                    code = error.code.as_deref().unwrap_or_default(),
                    %error,
                    "Failed to start flow"
                ),
            }
            Some(CallResult::Started(result))
        }
        AppFlowCall::Track {
            flow,
            execution_id,
            started,
        } => {
            let result = ctx
                .tracker
                .find(&ctx.appflow, flow, execution_id, *started)
                .await;
            if let Err(error) = &result {
                tracing::warn!(flowrun = %key, flow = %flow.flow_name, %error, "Failed to read run history");
            }
            Some(CallResult::Tracked(result))
        }
        AppFlowCall::Cancel {
            flow,
            execution_id,
            cause,
        } => {
            let result = ctx
                .appflow
                .cancel_flow_executions(flow, std::slice::from_ref(execution_id))
                .await;
            match &result {
                Ok(_) => {
                    tracing::info!(flowrun = %key, flow = %flow.flow_name, execution_id, ?cause, "Canceled flow run")
                }
                Err(error) => {
                    tracing::warn!(flowrun = %key, flow = %flow.flow_name, execution_id, %error, "Failed to cancel flow run")
                }
            }
            Some(CallResult::Canceled(result))
        }
    }
}

fn call_name(call: &AppFlowCall) -> &'static str {
    match call {
        AppFlowCall::StartFlow { .. } => "StartFlow",
        AppFlowCall::Track { .. } => "DescribeFlowExecutionRecords",
        AppFlowCall::Cancel { .. } => "CancelFlowExecutions",
    }
}

fn observe<A>(ctx: &Context<A>, flowrun: &FlowRun) -> Observed {
    Observed {
        now: Timestamp::now(),
        jitter: fastrand::f64(),
        policies: ctx
            .policies
            .of_namespace(&flowrun.namespace().unwrap_or_default()),
    }
}

/// Unexpected errors (the API server refused or lost a status write): retry with the same
/// capped exponential backoff as AppFlow errors, per FlowRun.
fn error_policy<A: AppFlow>(
    guarded: Arc<DeserializeGuard<FlowRun>>,
    error: &ReportError,
    ctx: Arc<Context<A>>,
) -> Action {
    let failures = ctx.record_failure(&guarded.uid().unwrap_or_default());
    let delay = decide::retry_delay(&ctx.policy, failures, fastrand::f64());
    tracing::warn!(
        flowrun = %object_key(guarded.as_ref()),
        error = %error,
        source = %std::error::Error::source(error).map(ToString::to_string).unwrap_or_default(),
        retry_in = %format!("{delay:#}"),
        "Reconcile failed"
    );
    Action::requeue(Duration::try_from(delay).unwrap_or(Duration::from_secs(1)))
}

/// A FlowRun that does not parse (e.g. written under an older schema) is reported and skipped,
/// so it cannot stop the controller from serving the others.
fn report_invalid<A>(ctx: &Context<A>, invalid: &kube::core::error_boundary::InvalidObject) {
    let name = invalid.metadata.name.clone().unwrap_or_default();
    let namespace = invalid.metadata.namespace.clone().unwrap_or_default();
    tracing::warn!(flowrun = %format!("{namespace}/{name}"), error = %invalid.error, "Skipped invalid FlowRun");
    let regarding = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(FlowRun::api_version(&()).into_owned()),
        kind: Some(FlowRun::kind(&()).into_owned()),
        name: Some(name),
        namespace: Some(namespace),
        uid: invalid.metadata.uid.clone(),
        resource_version: invalid.metadata.resource_version.clone(),
        ..Default::default()
    };
    let note = EventNote {
        type_: EventType::Warning,
        reason: Reason::InvalidObject,
        note: format!(
            "The operator cannot read this FlowRun and skips it: {}",
            invalid.error
        ),
    };
    ctx.events.publish(regarding, &note, "Reconcile");
}

/// `namespace/name`, the way users name a FlowRun in logs.
fn object_key(object: &impl ResourceExt) -> String {
    format!(
        "{}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(region: &str, name: &str) -> FlowKey {
        FlowKey {
            region: region.into(),
            flow_name: name.into(),
            role: None,
        }
    }

    #[test]
    fn start_slots_cap_each_flow_and_free_on_drop() {
        let slots = StartSlots::new(2);
        let first = slots.take(&flow("eu-west-1", "sales"));
        let second = slots.take(&flow("eu-west-1", "sales"));
        assert!(first.is_some() && second.is_some());
        assert!(slots.take(&flow("eu-west-1", "sales")).is_none(), "full");
        assert!(
            slots.take(&flow("us-east-1", "sales")).is_some(),
            "other region"
        );
        assert!(slots.take(&flow("eu-west-1", "hr")).is_some(), "other flow");

        drop(first);
        let third = slots.take(&flow("eu-west-1", "sales"));
        assert!(third.is_some(), "freed");
        drop((second, third));
        let in_flight = lock(&slots.in_flight);
        assert!(in_flight.is_empty(), "no entry left behind: {in_flight:?}");
    }
}
