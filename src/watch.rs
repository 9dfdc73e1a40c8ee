//! Watch: the FlowRuns in scope, kept in a trimmed cache, each change handed to
//! [`crate::reconcile`] (and to its FlowRunSchedule's reconcile, see [`crate::schedules`]); one
//! watch over all namespaces, or one per namespace listed, of the shard's FlowRuns only when a
//! label selector is set.

use std::sync::Arc;

use flowrun_api::{FlowRun, Phase, START_ANNOTATION};
use flowrun_core::shard::LabelSelector;
use futures::{StreamExt, TryStreamExt};
use std::time::Duration;

use kube::api::{Api, WatchEvent, WatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, ObjectRef, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};

use crate::act::AppFlow;
use crate::reconcile::{Context, error_policy, reconcile};
use crate::schedules::{OwnerChanges, ScheduleContext};

/// What one operator serves: the namespaces (all when none is listed) and, for a shard, the
/// label selector its FlowRuns and FlowRunSchedules match. FlowRunPolicies are not sharded:
/// FlowRun labels are the tenant's to choose, and a shard that missed its namespace's policy
/// would run the tenant's FlowRuns unchecked, as its own identity (docs/sharding.md).
#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub namespaces: Vec<String>,
    pub selector: Option<LabelSelector>,
    /// The initial list comes as one streaming watch, not pages (`--initial-list`).
    pub streaming_lists: bool,
}

impl Scope {
    /// The watch of the shard's objects: the API server filters by the selector, so a shard
    /// lists, caches and hears of its own objects only. An object relabelled out of it is a
    /// deletion for this watch, one relabelled into it a creation. Either way no response
    /// holds every FlowRun at once: pages of 500, or one object per watch event.
    pub fn watcher_config(&self) -> watcher::Config {
        let config = match &self.selector {
            Some(selector) => watcher::Config::default().labels(&selector.to_string()),
            None => watcher::Config::default(),
        };
        if self.streaming_lists {
            config.streaming_lists()
        } else {
            config
        }
    }

    /// The label keys the selector reads, which a schedule's FlowRuns take from the schedule.
    pub fn shard_keys(&self) -> Vec<String> {
        self.selector
            .as_ref()
            .map(LabelSelector::keys)
            .unwrap_or_default()
    }
}

/// A label no FlowRun carries: the probe's watch sends no object.
const PROBE_SELECTOR: &str = "appflow.flowrun.dev/initial-list-probe=none";

/// How long the probe waits for the end of its initial events.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the API server streams initial lists (its WatchList feature: on by default since
/// Kubernetes 1.34, off in 1.33, and an administrator can switch it off). A streaming watch
/// on a server without it would never end its initial list, and the operator would never be
/// ready; so one watch with `sendInitialEvents` for a label nothing carries asks first. A
/// server with the feature ends it at once with the bookmark that marks the end of the
/// initial events; one without refuses it (422), or, before Kubernetes 1.27, ignores the
/// parameter and sends no such bookmark.
pub async fn serves_streaming_lists(client: &Client, namespaces: &[String]) -> bool {
    // Permissions are the same in every watched namespace: one stands for all.
    let api = scoped_apis::<FlowRun>(client, namespaces).swap_remove(0);
    let params = WatchParams::streaming_lists()
        .labels(PROBE_SELECTOR)
        .timeout(u32::try_from(PROBE_TIMEOUT.as_secs()).unwrap_or(10));
    let probe = async {
        let mut events = api.watch(&params, "0").await?.boxed();
        while let Some(event) = events.try_next().await? {
            if let WatchEvent::Bookmark(bookmark) = event
                && bookmark
                    .metadata
                    .annotations
                    .contains_key(INITIAL_EVENTS_END)
            {
                return Ok(true);
            }
        }
        Ok::<_, kube::Error>(false)
    };
    let answer = tokio::time::timeout(PROBE_TIMEOUT, probe).await;
    match &answer {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) | Err(_) => tracing::info!(
            "The API server sent no end of initial events to a streaming watch: paged lists"
        ),
        Ok(Err(error)) => {
            tracing::info!(%error, "The API server does not stream initial lists: paged lists")
        }
    }
    matches!(answer, Ok(Ok(true)))
}

/// The annotation of the bookmark that ends a streaming watch's initial events.
const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// One `Api` per namespace listed, or one over all namespaces when none is.
pub fn scoped_apis<K>(client: &Client, namespaces: &[String]) -> Vec<Api<K>>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    if namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        namespaces
            .iter()
            .map(|namespace| Api::namespaced(client.clone(), namespace))
            .collect()
    }
}

/// Runs the FlowRun and FlowRunSchedule controllers until SIGTERM/SIGINT.
pub async fn run<A: AppFlow>(ctx: Arc<Context<A>>, scope: &Scope) {
    // A FlowRun must not be judged against policies that are not loaded yet.
    ctx.policies.wait_until_ready().await;
    let apis: Vec<Api<DeserializeGuard<FlowRun>>> = scoped_apis(&ctx.client, &scope.namespaces);
    let owners = OwnerChanges::default();
    let mut stores = Vec::new();
    let controllers: Vec<_> = apis
        .into_iter()
        .map(|api| {
            let (store, writer) = reflector::store();
            stores.push(store.clone());
            let forget = ctx.clone();
            let owners = owners.clone();
            let flowruns = reflector(
                writer,
                watcher(api, scope.watcher_config()).modify(trim_for_cache),
            )
            .inspect_ok(move |event| match event {
                watcher::Event::Delete(gone) => {
                    forget.forget(gone);
                    owners.changed(gone);
                }
                watcher::Event::Apply(changed) => owners.changed(changed),
                _ => {}
            })
            .applied_objects();
            let waiting = store.clone();
            // A FlowRun waiting for its namespace's policies is looked at again when they change.
            let policy_changes = ctx.policies.changes().flat_map(move |namespace| {
                let refs: Vec<ObjectRef<DeserializeGuard<FlowRun>>> = waiting
                    .state()
                    .iter()
                    .filter(|guarded| namespace.is_none() || guarded.namespace() == namespace)
                    .filter(|guarded| {
                        guarded.0.as_ref().is_ok_and(|flowrun| {
                            matches!(flowrun.phase(), Phase::Pending | Phase::Retrying)
                        })
                    })
                    .map(|guarded| ObjectRef::from_obj(guarded.as_ref()))
                    .collect();
                futures::stream::iter(refs)
            });
            let controller = Controller::for_stream(flowruns, store).reconcile_on(policy_changes);
            // Polled in this task, like the controller's own wait for its cache (see watch_store).
            let synced = ctx.telemetry.watch_store(controller.store());
            // Each watch may use the whole budget; the permit keeps them all within it.
            let run = controller
                .with_config(controller::Config::default().concurrency(ctx.concurrency))
                .shutdown_on_signal()
                .run(
                    |flowrun, ctx| async move {
                        // Never closed, so the permit always comes.
                        let _permit = ctx.reconcile_budget.clone().acquire_owned().await.ok();
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
        })
        .collect();
    ctx.set_flowrun_stores(stores.clone());
    let schedules = Arc::new(ScheduleContext::new(
        ctx.client.clone(),
        ctx.events.clone(),
        ctx.telemetry.clone(),
        stores,
        ctx.rules.clone(),
        scope.shard_keys(),
    ));
    futures::future::join(
        futures::future::join_all(controllers),
        crate::schedules::run(schedules, scope, owners),
    )
    .await;
}

/// The cache holds every FlowRun in scope. managedFields are about 80 % of a FlowRun's memory
/// there, and labels and other annotations (kubectl's last-applied-configuration repeats the
/// whole object) can weigh as much; nothing reads them: they are dropped as they arrive, and
/// so is most of a finished FlowRun's status (docs/performance.md).
fn trim_for_cache(guarded: &mut DeserializeGuard<FlowRun>) {
    if let Ok(flowrun) = &mut guarded.0 {
        flowrun_core::trim::trim_finished(flowrun);
    }
    let metadata = guarded.meta_mut();
    metadata.managed_fields = None;
    metadata.labels = None;
    // The API server filters by the shard's selector: no label is read here.
    // ownerReferences stay: they tie a FlowRun to its FlowRunSchedule.
    if let Some(annotations) = &mut metadata.annotations {
        annotations.retain(|key, _| key == START_ANNOTATION);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::watcher::InitialListStrategy;

    #[test]
    fn the_initial_list_is_paged_by_default_and_streams_when_asked_with_the_selector_kept() {
        let selector: LabelSelector = "team=a".parse().expect("a selector");
        let table: &[(
            Option<&LabelSelector>,
            bool,
            InitialListStrategy,
            Option<&str>,
        )] = &[
            (None, false, InitialListStrategy::ListWatch, None),
            (
                Some(&selector),
                true,
                InitialListStrategy::StreamingList,
                Some("team=a"),
            ),
        ];
        for (selector, streaming_lists, strategy, labels) in table {
            let scope = Scope {
                namespaces: Vec::new(),
                selector: selector.cloned(),
                streaming_lists: *streaming_lists,
            };
            let config = scope.watcher_config();
            assert_eq!(&config.initial_list_strategy, strategy, "{streaming_lists}");
            assert_eq!(
                config.label_selector.as_deref(),
                *labels,
                "{streaming_lists}"
            );
            // Pages of 500 when paged; one object per event when streaming.
            assert_eq!(config.page_size, Some(500));
        }
    }
}
