//! One reconcile, read as the pipeline: observe -> decide -> act -> report. Lines that touch
//! the network: `act` (AppFlow) and `report` (Kubernetes).

use std::borrow::Cow;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use flowrun_api::{FIELD_MANAGER, FlowRun, Phase};
use flowrun_core::backoff::retry_delay;
use flowrun_core::decide::{self, Decision, Observed, Outcome, Rules};
use jiff::Timestamp;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};

use crate::act::{Actor, AppFlow, start_slot_wait};
use crate::lock;
use crate::policies::PolicyWatch;
use crate::report::events::{self, EventPublisher};
use crate::report::{self, ReportError};
use crate::telemetry::Telemetry;

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
    pub act: Actor<A>,
    pub(crate) events: Arc<EventPublisher>,
    pub rules: Rules,
    /// FlowRuns reconciled at once, all watches together (`--concurrency`).
    pub(crate) concurrency: u16,
    /// One permit per reconcile in progress: the watches (one per namespace listed) share it.
    pub(crate) reconcile_budget: Arc<tokio::sync::Semaphore>,
    /// Consecutive unexpected errors per FlowRun UID, for the error policy's backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Per FlowRun UID, the resourceVersions this operator's writes replaced, until the watch
    /// has delivered a later one (see `is_stale`).
    superseded: Mutex<HashMap<String, Vec<String>>>,
    /// Metrics and readiness.
    pub telemetry: Arc<Telemetry>,
    /// The FlowRunPolicies of the watched namespaces.
    pub(crate) policies: PolicyWatch,
    /// The FlowRun watches' caches, set once the watches are made: where a deleted Activated
    /// FlowRun finds the others that keep its flow active.
    flowrun_stores: OnceLock<Vec<Store<DeserializeGuard<FlowRun>>>>,
}

impl<A: AppFlow> Context<A> {
    /// Starts the FlowRunPolicy watch of `namespaces` (all when empty) and the event
    /// publisher; `pod_name` names this replica in the events it publishes.
    pub fn new(
        client: Client,
        appflow: A,
        rules: Rules,
        limits: Limits,
        namespaces: &[String],
        telemetry: Arc<Telemetry>,
        pod_name: Option<String>,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: pod_name,
        };
        let events = Arc::new(EventPublisher::spawn(
            client.clone(),
            reporter,
            events::QUEUE_CAPACITY,
            telemetry.clone(),
        ));
        Context {
            policies: PolicyWatch::spawn(&client, namespaces, events.clone(), &telemetry),
            events,
            client,
            // At most half the reconcile slots wait on one flow's StartFlow: a flow whose calls
            // hang until the AWS timeout must not hold them all and stall the other flows.
            act: Actor::new(
                appflow,
                limits.start_rate,
                usize::from(limits.concurrency / 2).max(1),
                limits.poll_tick,
            ),
            rules,
            concurrency: limits.concurrency,
            reconcile_budget: Arc::new(tokio::sync::Semaphore::new(usize::from(
                limits.concurrency,
            ))),
            failures: Mutex::default(),
            superseded: Mutex::default(),
            telemetry,
            flowrun_stores: OnceLock::new(),
        }
    }

    /// Hands the FlowRun watches' caches over; only the first call counts.
    pub(crate) fn set_flowrun_stores(&self, stores: Vec<Store<DeserializeGuard<FlowRun>>>) {
        // A second set would come from a second watch::run, which main never starts.
        let _ = self.flowrun_stores.set(stores);
    }

    /// The other Activated FlowRuns of `flow_name` in the caches.
    fn activations(&self, flowrun: &FlowRun) -> Vec<FlowRun> {
        let stores = self
            .flowrun_stores
            .get()
            .map(Vec::as_slice)
            .unwrap_or_default();
        stores
            .iter()
            .flat_map(Store::state)
            .filter_map(|guarded| match &guarded.0 {
                Ok(other)
                    if other.spec.flow_name == flowrun.spec.flow_name
                        && other.phase() == Phase::Activated
                        && other.uid() != flowrun.uid() =>
                {
                    Some(other.clone())
                }
                _ => None,
            })
            .collect()
    }

    /// True once the watch has seen this FlowRun go (deleted, relabelled out of the shard, or
    /// re-created under its name): its copy was handed to this reconcile before, and while it
    /// waited for a permit the deletion event cleared what `is_stale` knows. Asked after
    /// `is_stale`: the cache drops the FlowRun before the deletion event clears those marks,
    /// so one of the two checks always sees it.
    fn left_the_cache(&self, flowrun: &FlowRun) -> bool {
        let Some(stores) = self.flowrun_stores.get() else {
            return false;
        };
        let key = ObjectRef::<DeserializeGuard<FlowRun>>::new(&flowrun.name_any())
            .within(&flowrun.namespace().unwrap_or_default());
        !stores.iter().any(|store| {
            store
                .get(&key)
                .is_some_and(|cached| cached.uid() == flowrun.uid())
        })
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

    /// A write for the FlowRun landed: what it had to record is recorded.
    fn reported(&self, uid: &str) {
        self.clear_failures(uid);
        self.act.forget_answer(uid);
    }

    /// A FlowRun is gone: drop what was kept for it, so a long-lived operator does not grow
    /// with every FlowRun it ever saw.
    pub(crate) fn forget(&self, gone: &DeserializeGuard<FlowRun>) {
        let Some(uid) = gone.uid() else {
            return;
        };
        self.clear_failures(&uid);
        lock(&self.superseded).remove(&uid);
        self.act.forget_answer(&uid);
        tracing::debug!(flowrun = %object_key(gone), "Forgot the deleted FlowRun");
    }

    /// What is kept for the FlowRun of this UID, map by map.
    #[cfg(test)]
    fn kept_for(&self, uid: &str) -> [bool; 3] {
        [
            lock(&self.failures).contains_key(uid),
            lock(&self.superseded).contains_key(uid),
            self.act.has_answer(uid),
        ]
    }

    /// True while the watch has not delivered this operator's latest write to the FlowRun yet.
    /// Under load the watch can lag behind a requeue; deciding on the older copy would repeat
    /// the step already taken (StartFlow again, or a status written back over a newer one).
    /// resourceVersions are opaque, so they are only compared for equality: a copy is stale
    /// while it is one that a write of this operator replaced. The watch delivers versions in
    /// order, so any other version is the write itself or later.
    fn is_stale(&self, uid: &str, flowrun: &FlowRun) -> bool {
        let mut superseded = lock(&self.superseded);
        let Some(versions) = superseded.get(uid) else {
            return false;
        };
        if flowrun
            .resource_version()
            .is_some_and(|seen| versions.contains(&seen))
        {
            return true;
        }
        superseded.remove(uid);
        false
    }

    /// The writes of a transition decided on `decided_on` produced `versions`, in order: the
    /// decided-on version and every one but the last are superseded. A write that changed
    /// nothing keeps the version, and the watch sends nothing for it: that one is not
    /// remembered. When the writes made the FlowRun vanish, every copy is superseded: the
    /// watch may still deliver the ones before, and deciding on them would cancel the run and
    /// remove the finalizer a second time. The deletion's watch event forgets them (`forget`).
    fn remember_write(&self, uid: &str, decided_on: &FlowRun, versions: &[String], vanished: bool) {
        let mut superseded: Vec<String> = decided_on.resource_version().into_iter().collect();
        superseded.extend(versions.iter().cloned());
        if !vanished {
            let Some(last) = versions.last() else {
                return;
            };
            superseded.retain(|version| version != last);
        }
        if !superseded.is_empty() {
            lock(&self.superseded)
                .entry(uid.to_owned())
                .or_default()
                .extend(superseded);
        }
    }
}

/// How soon a FlowRun whose cached copy predates the operator's own write is looked at again,
/// should the watch event of that write (which triggers a reconcile at once) not come.
const STALE_RECHECK: Duration = Duration::from_secs(1);

pub(crate) async fn reconcile<A: AppFlow>(
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
    if ctx.left_the_cache(flowrun) {
        return Ok(Action::await_change());
    }
    let api: Api<FlowRun> =
        Api::namespaced(ctx.client.clone(), &flowrun.namespace().unwrap_or_default());
    let mut flowrun = Cow::Borrowed(flowrun);
    loop {
        // Observe.
        let observed = observe(&ctx, &flowrun);
        // Decide.
        let (outcome, action) = match decide::decide(&flowrun, &observed, &ctx.rules) {
            Decision::Done(outcome) => (outcome, "Reconcile"),
            Decision::Call(call) => {
                // Act.
                let operation = call.operation();
                let Some(answer) = ctx.act.call(&object_key(flowrun.as_ref()), call).await else {
                    return Ok(Action::requeue(start_slot_wait()));
                };
                let observed = observe(&ctx, &flowrun);
                let outcome = decide::after(&flowrun, &observed, &ctx.rules, answer);
                (outcome, operation)
            }
        };
        let transition = match outcome {
            Outcome::Wait(requeue) => return Ok(wait(&ctx, &uid, requeue)),
            Outcome::Report(transition) => *transition,
        };

        // Report.
        let written = report::apply(&api, &ctx.events, &flowrun, &transition, action).await?;
        ctx.remember_write(&uid, &flowrun, &written.versions, written.vanished);
        ctx.telemetry.record_transition(&flowrun, &transition);
        ctx.reported(&uid);
        match written.latest {
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

fn observe<A: AppFlow>(ctx: &Context<A>, flowrun: &FlowRun) -> Observed {
    let policies = ctx
        .policies
        .of_namespace(&flowrun.namespace().unwrap_or_default());
    let activations = if decide::needs_activations(flowrun) {
        ctx.activations(flowrun)
    } else {
        Vec::new()
    };
    Observed {
        now: Timestamp::now(),
        jitter: fastrand::f64(),
        policies: policies.readable,
        unreadable_policies: policies.unreadable,
        activations,
    }
}

/// Unexpected errors (the API server refused or lost a status write): retry with the same
/// capped exponential backoff as AppFlow errors, per FlowRun.
pub(crate) fn error_policy<A: AppFlow>(
    guarded: Arc<DeserializeGuard<FlowRun>>,
    error: &ReportError,
    ctx: Arc<Context<A>>,
) -> Action {
    let failures = ctx.record_failure(&guarded.uid().unwrap_or_default());
    let delay = retry_delay(&ctx.rules, failures, fastrand::f64());
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
    ctx.events
        .publish_unreadable::<FlowRun>(invalid, "It is skipped until it is fixed.");
}

/// `namespace/name`, the way users name a FlowRun in logs.
pub(crate) fn object_key(object: &impl ResourceExt) -> String {
    format!(
        "{}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

#[cfg(test)]
mod tests {
    use flowrun_api::FlowRunSpec;
    use flowrun_core::appflow::{FlowKey, StartFlowRequest, StartedFlow, StoppedFlow};
    use flowrun_core::decide::{AppFlowCall, StartCall};
    use kube::runtime::watcher;

    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::act::appflow::{AppFlowError, RecordsPage};

    /// Answers StartFlow at once, counting the calls; nothing else is called here.
    #[derive(Default)]
    struct Starts(Arc<AtomicUsize>);

    impl AppFlow for Starts {
        async fn start_flow(&self, _: &StartFlowRequest) -> Result<StartedFlow, AppFlowError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(StartedFlow {
                execution_id: Some("exec-1".into()),
                ..StartedFlow::default()
            })
        }

        async fn describe_execution_records(
            &self,
            _: &FlowKey,
            _: Option<&str>,
        ) -> Result<RecordsPage, AppFlowError> {
            unreachable!("not called by this test")
        }

        async fn cancel_flow_executions(
            &self,
            _: &FlowKey,
            _: &[String],
        ) -> Result<Vec<String>, AppFlowError> {
            unreachable!("not called by this test")
        }

        async fn stop_flow(&self, _: &FlowKey) -> Result<StoppedFlow, AppFlowError> {
            unreachable!("not called by this test")
        }
    }

    /// A context whose client never connects: nothing here reaches an API server.
    fn context(appflow: Starts) -> Context<Starts> {
        let client = crate::test_support::offline_client();
        let limits = Limits {
            concurrency: 2,
            start_rate: NonZeroU32::MIN,
            poll_tick: Duration::from_secs(1),
        };
        Context::new(
            client,
            appflow,
            crate::test_support::rules(),
            limits,
            &[],
            Arc::new(Telemetry::new()),
            None,
        )
    }

    fn at_version(version: &str) -> FlowRun {
        let mut flowrun = FlowRun::new("nightly", FlowRunSpec::new("sales"));
        flowrun.metadata.uid = Some("uid-1".into());
        flowrun.metadata.resource_version = Some(version.into());
        flowrun
    }

    #[tokio::test]
    async fn copies_that_the_operators_writes_replaced_are_stale_whatever_the_versions_look_like() {
        let ctx = context(Starts::default());
        // Opaque versions, not numbers; a start record write, then the status write after it.
        ctx.remember_write("uid-1", &at_version("b7"), &["a3".into()], false);
        // A status write, then the finalizer's removal: the watch delivers both.
        ctx.remember_write(
            "uid-1",
            &at_version("a3"),
            &["m5".into(), "zz".into()],
            false,
        );
        assert!(ctx.is_stale("uid-1", &at_version("b7")));
        assert!(ctx.is_stale("uid-1", &at_version("a3")));
        assert!(
            ctx.is_stale("uid-1", &at_version("m5")),
            "between two writes"
        );
        // The write itself, or anything after it, is fresh, and the guard is done.
        assert!(!ctx.is_stale("uid-1", &at_version("q1")));
        assert!(
            !ctx.is_stale("uid-1", &at_version("b7")),
            "forgotten once caught up"
        );
        // A write that changed nothing keeps its version and no watch event comes for it.
        ctx.remember_write("uid-1", &at_version("q1"), &["q1".into()], false);
        assert!(!ctx.is_stale("uid-1", &at_version("q1")));
    }

    #[tokio::test]
    async fn once_a_write_made_the_flowrun_vanish_every_copy_of_it_is_stale() {
        let ctx = context(Starts::default());
        // A status write, then the finalizer's removal, whose answer was "gone".
        ctx.remember_write("uid-1", &at_version("d1"), &["s2".into()], false);
        ctx.remember_write("uid-1", &at_version("s2"), &[], true);
        assert!(ctx.is_stale("uid-1", &at_version("d1")));
        assert!(
            ctx.is_stale("uid-1", &at_version("s2")),
            "the status write's copy, delivered late, would cancel again"
        );
    }

    #[tokio::test]
    async fn a_deleted_flowrun_leaves_nothing_behind() {
        let ctx = context(Starts::default());
        let flowrun = at_version("42");
        ctx.record_failure("uid-1");
        ctx.remember_write("uid-1", &flowrun, &["43".into()], false);
        let call = AppFlowCall::StartFlow(StartCall {
            request: StartFlowRequest {
                flow: FlowKey {
                    region: "eu-west-1".into(),
                    flow_name: "sales".into(),
                    role: None,
                },
                client_token: "uid-1".into(),
            },
            status: Box::default(),
        });
        assert!(ctx.act.call("team-a/nightly", call).await.is_some());
        assert_eq!(ctx.kept_for("uid-1"), [true; 3], "failures, write, answer");

        ctx.forget(&DeserializeGuard(Ok(flowrun)));
        assert_eq!(ctx.kept_for("uid-1"), [false; 3]);
    }

    /// A FlowRun whose start is recorded and whose next step is StartFlow.
    fn about_to_start() -> FlowRun {
        let record = serde_json::json!({
            "time": Timestamp::now(), "region": "eu-west-1", "identity": "operator default",
        })
        .to_string();
        serde_json::from_value(serde_json::json!({
            "apiVersion": "appflow.flowrun.dev/v1alpha1",
            "kind": "FlowRun",
            "metadata": {
                "name": "nightly", "namespace": "team-a", "uid": "uid-1",
                "annotations": {flowrun_api::START_ANNOTATION: record},
                "finalizers": [flowrun_api::FINALIZER],
            },
            "spec": {"flowName": "sales"},
        }))
        .expect("a FlowRun")
    }

    /// The controller hands a reconcile its copy, and the reconcile may wait for a permit
    /// while the watch sees the FlowRun go. That copy must not be acted on: a deleted
    /// FlowRun's run was canceled twice that way. The same copy while the cache holds its
    /// FlowRun is.
    #[tokio::test]
    async fn a_copy_of_a_flowrun_the_cache_no_longer_holds_is_not_acted_on() {
        let calls = Arc::new(AtomicUsize::new(0));
        let ctx = Arc::new(context(Starts(calls.clone())));
        let (store, mut cache) = kube::runtime::reflector::store();
        ctx.set_flowrun_stores(vec![store]);
        let flowrun = about_to_start();
        let handed_over = Arc::new(DeserializeGuard(Ok(flowrun.clone())));

        let gone = reconcile(handed_over.clone(), ctx.clone()).await;
        assert_eq!(gone.ok(), Some(Action::await_change()));
        let mut successor = flowrun.clone();
        successor.metadata.uid = Some("uid-2".into());
        cache.apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(successor))));
        let replaced = reconcile(handed_over.clone(), ctx.clone()).await;
        assert_eq!(replaced.ok(), Some(Action::await_change()), "re-created");
        assert_eq!(calls.load(Ordering::SeqCst), 0);

        cache.apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(flowrun))));
        let held = reconcile(handed_over, ctx).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1, "started");
        assert!(held.is_err(), "then its status write found no API server");
    }

    /// StartFlow answered, but the write that records it failed; then the FlowRun is deleted.
    /// The answer kept in memory names the run to cancel: AppFlow is not asked again.
    #[tokio::test]
    async fn a_flowrun_deleted_before_its_start_answer_was_written_cancels_that_run() {
        let calls = Arc::new(AtomicUsize::new(0));
        let ctx = context(Starts(calls.clone()));
        let flowrun = about_to_start();
        let first = decide::decide(&flowrun, &observe(&ctx, &flowrun), &ctx.rules);
        let Decision::Call(call) = first else {
            panic!("expected StartFlow, got {first:?}");
        };
        assert!(ctx.act.call("team-a/nightly", call).await.is_some());
        // The status write failed: nothing recorded. Now the FlowRun is deleted.
        let mut deleted = flowrun.clone();
        deleted.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()),
        );
        let observed = observe(&ctx, &deleted);
        let Decision::Call(replay) = decide::decide(&deleted, &observed, &ctx.rules) else {
            panic!("a deleted FlowRun whose start is unknown asks");
        };
        let answer = ctx
            .act
            .call("team-a/nightly", replay)
            .await
            .expect("answered");
        assert_eq!(calls.load(Ordering::SeqCst), 1, "answered from memory");
        let Outcome::Report(recorded) = decide::after(&deleted, &observed, &ctx.rules, answer)
        else {
            panic!("the run is recorded");
        };
        let status = recorded.status.clone().expect("a status");
        assert_eq!(status.execution_id.as_deref(), Some("exec-1"));
        assert!(recorded.proceed, "and canceled next");
        deleted.status = Some(status);
        let next = decide::decide(&deleted, &observe(&ctx, &deleted), &ctx.rules);
        assert!(
            matches!(&next, Decision::Call(AppFlowCall::Cancel(cancel)) if cancel.execution_id == "exec-1"),
            "{next:?}"
        );
    }
}
