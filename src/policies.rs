//! Watch: the FlowRunPolicies of the watched namespaces, for the rules' permit check.
//!
//! A policy that does not parse (e.g. stored under an older, looser schema) is kept as such,
//! reported, and closes its own namespace only: the rules start nothing there until it is fixed
//! or deleted (see `flowrun_core::decide`), while every other namespace is served as before.

use std::sync::Arc;

use flowrun_api::FlowRunPolicy;
use flowrun_core::decide::UnreadablePolicy;
use futures::{Stream, StreamExt};
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::reflector::{self, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::broadcast;

use crate::report::events::EventPublisher;
use crate::telemetry::Telemetry;
use crate::watch::scoped_apis;

/// Policy changes waiting to be handed to the FlowRun watches; they come rarely.
const CHANGES_CAPACITY: usize = 1024;

/// The FlowRunPolicies of the watched namespaces, kept in memory so
/// that observing a FlowRun's policies costs no API call.
pub struct PolicyWatch {
    stores: Vec<Store<DeserializeGuard<FlowRunPolicy>>>,
    /// The namespace of each policy created, changed or deleted.
    changed: broadcast::Sender<String>,
}

/// The policies of one namespace, as the rules see them.
pub struct NamespacePolicies {
    pub readable: Vec<Arc<FlowRunPolicy>>,
    pub unreadable: Vec<UnreadablePolicy>,
}

impl PolicyWatch {
    /// Starts one watch over all namespaces, or one per namespace listed, in the background.
    pub fn spawn(
        client: &Client,
        namespaces: &[String],
        events: Arc<EventPublisher>,
        telemetry: &Telemetry,
    ) -> Self {
        let (changed, _) = broadcast::channel(CHANGES_CAPACITY);
        let apis: Vec<Api<DeserializeGuard<FlowRunPolicy>>> = scoped_apis(client, namespaces);
        let stores = apis
            .into_iter()
            .map(|api| {
                let (store, writer) = reflector::store();
                let stream =
                    reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
                let changed = changed.clone();
                let events = events.clone();
                tokio::spawn(stream.for_each(move |event| {
                    match event {
                        Ok(event) => on_event(&event, &changed, &events),
                        Err(error) => {
                            tracing::warn!(%error, "FlowRunPolicy watch failed; retrying");
                        }
                    }
                    std::future::ready(())
                }));
                telemetry.watch_policies(store.clone());
                store
            })
            .collect();
        PolicyWatch { stores, changed }
    }

    /// Waits until every watch has listed its policies once: before that, an empty store
    /// could not be told apart from a namespace without policies.
    pub async fn wait_until_ready(&self) {
        for store in &self.stores {
            // The writer lives as long as its background task, i.e. as long as the process.
            let _ = store.wait_until_ready().await;
        }
    }

    pub fn of_namespace(&self, namespace: &str) -> NamespacePolicies {
        let mut policies = NamespacePolicies {
            readable: Vec::new(),
            unreadable: Vec::new(),
        };
        let in_namespace = self.stores.iter().flat_map(|store| {
            store.state_filter(|policy| policy.namespace().as_deref() == Some(namespace))
        });
        for guarded in in_namespace {
            match &guarded.0 {
                Ok(policy) => policies.readable.push(Arc::new(policy.clone())),
                Err(invalid) => policies.unreadable.push(UnreadablePolicy {
                    name: invalid.metadata.name.clone().unwrap_or_default(),
                    error: invalid.error.clone(),
                }),
            }
        }
        policies
    }

    /// The namespaces whose policies change from now on; `None`: some changes were missed, so
    /// any namespace may have changed.
    pub fn changes(&self) -> impl Stream<Item = Option<String>> + Send + 'static {
        futures::stream::unfold(self.changed.subscribe(), |mut changes| async move {
            match changes.recv().await {
                Ok(namespace) => Some((Some(namespace), changes)),
                Err(broadcast::error::RecvError::Lagged(_)) => Some((None, changes)),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        })
    }
}

fn on_event(
    event: &watcher::Event<DeserializeGuard<FlowRunPolicy>>,
    changed: &broadcast::Sender<String>,
    events: &EventPublisher,
) {
    let guarded = match event {
        watcher::Event::Apply(guarded) | watcher::Event::InitApply(guarded) => {
            if let Err(invalid) = &guarded.0 {
                report_unreadable(invalid, events);
            }
            guarded
        }
        watcher::Event::Delete(guarded) => guarded,
        watcher::Event::Init | watcher::Event::InitDone => return,
    };
    // Without receivers (no FlowRun watch yet) the change needs no one's attention.
    let _ = changed.send(guarded.namespace().unwrap_or_default());
}

fn report_unreadable(invalid: &InvalidObject, events: &EventPublisher) {
    let namespace = invalid.metadata.namespace.clone().unwrap_or_default();
    let name = invalid.metadata.name.clone().unwrap_or_default();
    tracing::warn!(
        policy = %format!("{namespace}/{name}"),
        error = %invalid.error,
        "Cannot read FlowRunPolicy; starting nothing in its namespace until it is fixed"
    );
    events.publish_unreadable::<FlowRunPolicy>(
        invalid,
        "No FlowRun in this namespace is started until it is fixed or deleted.",
    );
}
