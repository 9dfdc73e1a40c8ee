//! FlowRunSchedules: watch -> observe -> decide -> act -> report, like the FlowRuns.
//!
//! The watch wakes a schedule when it changes, when one of its FlowRuns changes (the FlowRun
//! watch passes the owner on), and at its next slot (the requeue its decision asks for):
//! nothing polls. The schedule's FlowRuns are read from the FlowRun watch's cache, so a
//! reconcile makes no read request. A schedule that does not parse (e.g. stored under an
//! older, looser schema) is reported and skipped; the watch goes on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flowrun_api::schedule::RUN_NOW_ANNOTATION;
use flowrun_api::{FlowRun, FlowRunSchedule};
use flowrun_core::backoff::retry_delay;
use flowrun_core::decide::Rules;
use flowrun_core::schedule::{self, Child, ScheduleObserved};
use futures::{Stream, StreamExt};
use jiff::Timestamp;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::broadcast;

use crate::lock;
use crate::reconcile::object_key as key;
use crate::report::events::EventPublisher;
use crate::report::schedule::{
    Created, ScheduleError, StatusWrite, create_flowrun, delete_flowrun, write_status,
};
use crate::telemetry::Telemetry;
use crate::watch::{Scope, scoped_apis};

/// Owner changes waiting for the schedule watches; a lagging watch loses only wake-ups that
/// its next slot or the next change of the schedule makes good.
const OWNER_CHANGES_CAPACITY: usize = 4096;

/// How soon a schedule whose status write met a newer version is decided on again, should
/// the watch event of that version (which triggers a reconcile at once) not come.
const STALE_RECHECK: Duration = Duration::from_secs(1);

/// Schedules reconciled at once, per watch.
const SCHEDULE_CONCURRENCY: u16 = 64;

type Guarded = DeserializeGuard<FlowRunSchedule>;

/// The owners of changed FlowRuns, from the FlowRun watches to the schedule watches.
#[derive(Clone)]
pub struct OwnerChanges(broadcast::Sender<ObjectRef<Guarded>>);

impl Default for OwnerChanges {
    fn default() -> Self {
        OwnerChanges(broadcast::channel(OWNER_CHANGES_CAPACITY).0)
    }
}

impl OwnerChanges {
    /// Passes on the schedule controlling `flowrun`, if any.
    pub fn changed(&self, flowrun: &DeserializeGuard<FlowRun>) {
        let owner = flowrun
            .meta()
            .owner_references
            .iter()
            .flatten()
            .find(|owner| {
                owner.controller == Some(true) && owner.kind == FlowRunSchedule::kind(&())
            });
        if let (Some(owner), Some(namespace)) = (owner, flowrun.namespace()) {
            // Without receivers (no schedule watch yet) no one needs waking.
            let _ = self.0.send(ObjectRef::new(&owner.name).within(&namespace));
        }
    }

    fn of_namespace(
        &self,
        namespace: Option<String>,
    ) -> impl Stream<Item = ObjectRef<Guarded>> + Send + use<> {
        futures::stream::unfold(self.0.subscribe(), |mut changes| async move {
            loop {
                match changes.recv().await {
                    Ok(owner) => return Some((owner, changes)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .filter(move |owner| {
            std::future::ready(namespace.is_none() || owner.namespace == namespace)
        })
    }
}

/// What a schedule reconcile needs.
pub struct ScheduleContext {
    client: Client,
    events: Arc<EventPublisher>,
    telemetry: Arc<Telemetry>,
    /// The FlowRun watches' caches, where a schedule's FlowRuns are found.
    flowruns: Vec<Store<DeserializeGuard<FlowRun>>>,
    /// For the error policy's backoff (the FlowRuns' retry delays).
    rules: Rules,
    /// The shard selector's label keys, which the schedule's FlowRuns take from it.
    shard_keys: Vec<String>,
    failures: Mutex<HashMap<String, u32>>,
    /// Per schedule UID, the resourceVersion its last status write replaced, until the watch
    /// delivers a later one. A slot's FlowRun wakes its schedule before the watch has the
    /// status written after it: deciding on that copy would only send a write the
    /// resourceVersion precondition refuses.
    replaced: Mutex<HashMap<String, String>>,
}

impl ScheduleContext {
    pub fn new(
        client: Client,
        events: Arc<EventPublisher>,
        telemetry: Arc<Telemetry>,
        flowruns: Vec<Store<DeserializeGuard<FlowRun>>>,
        rules: Rules,
        shard_keys: Vec<String>,
    ) -> Self {
        ScheduleContext {
            client,
            events,
            telemetry,
            flowruns,
            rules,
            shard_keys,
            failures: Mutex::default(),
            replaced: Mutex::default(),
        }
    }

    /// True while the cached copy is one this operator's status write replaced.
    fn is_stale(&self, uid: &str, schedule: &FlowRunSchedule) -> bool {
        let mut replaced = lock(&self.replaced);
        if replaced
            .get(uid)
            .is_some_and(|version| schedule.resource_version().as_deref() == Some(version.as_str()))
        {
            return true;
        }
        replaced.remove(uid);
        false
    }

    fn children(&self, namespace: &str, uid: &str) -> Vec<Child> {
        self.flowruns
            .iter()
            .flat_map(|store| {
                store.state_filter(|guarded| guarded.namespace().as_deref() == Some(namespace))
            })
            .filter_map(|guarded| match &guarded.0 {
                Ok(flowrun) if schedule::is_child_of(flowrun, uid) => Some(Child::of(flowrun)),
                _ => None,
            })
            .collect()
    }
}

/// Runs the schedule controllers (one per watched namespace, or one for all; of the shard's
/// schedules only) until SIGTERM/SIGINT. Starts deciding once the FlowRun watches have synced.
pub async fn run(ctx: Arc<ScheduleContext>, scope: &Scope, owners: OwnerChanges) {
    ctx.telemetry
        .wait_for_flowrun_watches(ctx.flowruns.len())
        .await;
    let apis: Vec<Api<Guarded>> = scoped_apis(&ctx.client, &scope.namespaces);
    let controllers = apis.into_iter().map(|api| {
        let namespace = api.namespace().map(str::to_owned);
        let (store, writer) = reflector::store();
        // As Controller::new builds it (the controller backs off its triggers' errors), with
        // the trim.
        let schedules = reflector(
            writer,
            watcher(api, scope.watcher_config()).modify(trim_for_cache),
        )
        .applied_objects();
        let controller =
            Controller::for_stream(schedules, store).reconcile_on(owners.of_namespace(namespace));
        ctx.telemetry.watch_schedules(controller.store());
        // A schedule reconcile makes a few quick writes and no AppFlow call: a fixed budget
        // keeps a minute with many slots from crowding out the FlowRuns' reconciles.
        controller
            .with_config(controller::Config::default().concurrency(SCHEDULE_CONCURRENCY))
            .shutdown_on_signal()
            .run(reconcile, error_policy, ctx.clone())
            .for_each(|result| async move {
                if let Err(error) = result {
                    tracing::debug!(%error, "Schedule reconcile did not complete");
                }
            })
    });
    futures::future::join_all(controllers).await;
}

/// managedFields (parsed, several times their JSON's size) and annotations such as kubectl's
/// last-applied-configuration are most of a cached schedule's memory, and nothing here reads
/// them: dropped as they arrive. Labels stay: a schedule's FlowRuns take its shard labels.
fn trim_for_cache(guarded: &mut Guarded) {
    let metadata = guarded.meta_mut();
    metadata.managed_fields = None;
    if let Some(annotations) = &mut metadata.annotations {
        annotations.retain(|key, _| key == RUN_NOW_ANNOTATION);
    }
}

async fn reconcile(
    guarded: Arc<Guarded>,
    ctx: Arc<ScheduleContext>,
) -> Result<Action, ScheduleError> {
    let schedule = match &guarded.0 {
        Ok(schedule) => schedule,
        Err(invalid) => {
            report_unreadable(&ctx, invalid);
            return Ok(Action::await_change());
        }
    };
    // Deleted: the garbage collector deletes its FlowRuns through their ownerReferences.
    if schedule.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = schedule.namespace().unwrap_or_default();
    let uid = schedule.uid().unwrap_or_default();
    if ctx.is_stale(&uid, schedule) {
        return Ok(Action::requeue(STALE_RECHECK));
    }

    // Observe.
    let observed = ScheduleObserved {
        now: Timestamp::now(),
        children: ctx.children(&namespace, &uid),
        shard_keys: ctx.shard_keys.clone(),
    };
    // Decide.
    let mut decision = schedule::decide(schedule, &observed);

    // Act: the FlowRuns.
    let failed = |action: String| move |source| ScheduleError::new(schedule, action, source);
    let flowruns: Api<FlowRun> = Api::namespaced(ctx.client.clone(), &namespace);
    for name in &decision.replace {
        delete_flowrun(&flowruns, name)
            .await
            .map_err(failed(format!("delete the active FlowRun {name}")))?;
    }
    for flowrun in std::mem::take(&mut decision.create) {
        let name = flowrun.name_any();
        match create_flowrun(&flowruns, &flowrun, &uid)
            .await
            .map_err(failed(format!("create FlowRun {name}")))?
        {
            Created::New(created) => {
                tracing::info!(schedule = %key(schedule), flowrun = %name, "Created FlowRun");
                if let Some(reference) = decision
                    .status
                    .active
                    .iter_mut()
                    .find(|reference| reference.name.as_deref() == Some(name.as_str()))
                {
                    reference.uid = created.uid();
                }
            }
            Created::Before => {}
            Created::Taken => {
                tracing::warn!(schedule = %key(schedule), flowrun = %name, "FlowRun name taken");
                decision.name_taken(&flowrun);
            }
        }
    }
    let status = decision.status;
    for name in &decision.prune {
        delete_flowrun(&flowruns, name)
            .await
            .map_err(failed(format!("delete the old FlowRun {name}")))?;
    }

    // Report.
    if schedule.status.as_ref() != Some(&status) {
        let api: Api<FlowRunSchedule> = Api::namespaced(ctx.client.clone(), &namespace);
        let written = write_status(&api, schedule, &status)
            .await
            .map_err(failed("write the status".to_owned()))?;
        if let StatusWrite::Stale = written {
            return Ok(Action::requeue(STALE_RECHECK));
        }
        if let Some(version) = schedule.resource_version() {
            lock(&ctx.replaced).insert(uid.clone(), version);
        }
    }
    for event in &decision.events {
        ctx.events
            .publish(schedule.object_ref(&()), event, "Schedule");
    }
    ctx.telemetry.count_slots(decision.slots);
    lock(&ctx.failures).remove(&uid);
    Ok(decision
        .requeue
        .map_or_else(Action::await_change, Action::requeue))
}

/// Unexpected errors (the API server refused a write): retried with the FlowRuns' capped
/// exponential backoff, per schedule.
fn error_policy(guarded: Arc<Guarded>, error: &ScheduleError, ctx: Arc<ScheduleContext>) -> Action {
    let failures = {
        let mut failures = lock(&ctx.failures);
        let count = failures
            .entry(guarded.uid().unwrap_or_default())
            .or_insert(0);
        *count = count.saturating_add(1);
        *count
    };
    let delay = retry_delay(&ctx.rules, failures, fastrand::f64());
    tracing::warn!(
        schedule = %key(guarded.as_ref()),
        error = %error,
        source = %std::error::Error::source(error).map(ToString::to_string).unwrap_or_default(),
        retry_in = %format!("{delay:#}"),
        "Schedule reconcile failed"
    );
    Action::requeue(Duration::try_from(delay).unwrap_or(Duration::from_secs(1)))
}

fn report_unreadable(ctx: &ScheduleContext, invalid: &InvalidObject) {
    let namespace = invalid.metadata.namespace.clone().unwrap_or_default();
    let name = invalid.metadata.name.clone().unwrap_or_default();
    tracing::warn!(
        schedule = %format!("{namespace}/{name}"),
        error = %invalid.error,
        "Skipped unreadable FlowRunSchedule"
    );
    ctx.events.publish_unreadable::<FlowRunSchedule>(
        invalid,
        "No FlowRun is created for it until it is fixed.",
    );
}

#[cfg(test)]
mod tests {
    use kube::runtime::events::Reporter;

    use super::*;

    #[tokio::test]
    async fn the_copy_a_status_write_replaced_is_stale_until_a_later_one_is_seen() {
        let client = crate::test_support::offline_client();
        let telemetry = Arc::new(Telemetry::new());
        let events =
            EventPublisher::spawn(client.clone(), Reporter::from("test"), 1, telemetry.clone());
        let ctx = ScheduleContext::new(
            client,
            Arc::new(events),
            telemetry,
            Vec::new(),
            crate::test_support::rules(),
            Vec::new(),
        );
        let at = |version: &str| {
            let schedule: FlowRunSchedule = serde_json::from_value(serde_json::json!({
                "apiVersion": "appflow.flowrun.dev/v1alpha1",
                "kind": "FlowRunSchedule",
                "metadata": {"name": "nightly", "resourceVersion": version},
                "spec": {"schedule": "@daily", "flowRunTemplate": {"spec": {"flowName": "sales"}}},
            }))
            .expect("a FlowRunSchedule");
            schedule
        };
        assert!(!ctx.is_stale("uid-1", &at("a1")), "nothing written yet");
        lock(&ctx.replaced).insert("uid-1".into(), "a1".into());
        assert!(ctx.is_stale("uid-1", &at("a1")));
        assert!(!ctx.is_stale("uid-1", &at("b2")), "the write, or later");
        assert!(
            !ctx.is_stale("uid-1", &at("a1")),
            "forgotten once caught up"
        );
    }

    #[test]
    fn the_cache_keeps_what_deciding_reads_and_drops_managed_fields_and_other_annotations() {
        let schedule: FlowRunSchedule = serde_json::from_value(serde_json::json!({
            "apiVersion": "appflow.flowrun.dev/v1alpha1",
            "kind": "FlowRunSchedule",
            "metadata": {
                "name": "nightly",
                "labels": {"team": "a"},
                "annotations": {
                    RUN_NOW_ANNOTATION: "backfill-1",
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"the whole\": \"object\"}",
                },
                "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:spec": {}}}],
            },
            "spec": {"schedule": "@daily", "flowRunTemplate": {"spec": {"flowName": "sales"}}},
        }))
        .expect("a FlowRunSchedule");
        let mut guarded = DeserializeGuard(Ok(schedule.clone()));
        trim_for_cache(&mut guarded);
        let trimmed = guarded.0.expect("readable");
        assert_eq!(trimmed.managed_fields(), []);
        assert_eq!(
            trimmed.annotations().keys().collect::<Vec<_>>(),
            [RUN_NOW_ANNOTATION]
        );
        assert_eq!(trimmed.labels(), schedule.labels());
        assert_eq!(trimmed.spec, schedule.spec);
    }
}
