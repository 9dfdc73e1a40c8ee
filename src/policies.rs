//! Watch: the FlowRunPolicies of the watched namespaces, for the rules' permit check.

use std::sync::Arc;

use flowrun_api::FlowRunPolicy;
use futures::StreamExt;
use kube::Client;
use kube::api::Api;
use kube::runtime::reflector::{self, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};

use crate::watch::scoped_apis;

/// The FlowRunPolicies of the watched namespaces, kept in memory so
/// that observing a FlowRun's policies costs no API call.
pub struct PolicyWatch {
    stores: Vec<Store<FlowRunPolicy>>,
}

impl PolicyWatch {
    /// Starts one watch over all namespaces, or one per namespace listed, in the background.
    pub fn spawn(client: &Client, namespaces: &[String]) -> Self {
        let apis: Vec<Api<FlowRunPolicy>> = scoped_apis(client, namespaces);
        let stores = apis
            .into_iter()
            .map(|api| {
                let (store, writer) = reflector::store();
                let stream = reflector(writer, watcher(api, watcher::Config::default()))
                    .default_backoff()
                    .touched_objects();
                tokio::spawn(stream.for_each(|event| async move {
                    if let Err(error) = event {
                        tracing::warn!(%error, "FlowRunPolicy watch failed; retrying");
                    }
                }));
                store
            })
            .collect();
        PolicyWatch { stores }
    }

    /// Waits until every watch has listed its policies once: before that, an empty store
    /// could not be told apart from a namespace without policies.
    pub async fn wait_until_ready(&self) {
        for store in &self.stores {
            // The writer lives as long as its background task, i.e. as long as the process.
            let _ = store.wait_until_ready().await;
        }
    }

    pub fn of_namespace(&self, namespace: &str) -> Vec<Arc<FlowRunPolicy>> {
        self.stores
            .iter()
            .flat_map(|store| {
                store.state_filter(|policy| policy.metadata.namespace.as_deref() == Some(namespace))
            })
            .collect()
    }
}
