//! A cluster of a test's own, for tests that stop its API server or change its CRDs (the
//! shared cluster's CRDs must stay as the other tests expect them).

use std::path::PathBuf;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::{Client, CustomResourceExt};
use serde_json::json;

use super::cluster::{Cluster, cluster_sh, own_cluster, repo_root};
use super::flowruns::World;
use super::operator::Operator;

/// A cluster under `target/chaos-clusters/`, cleaned up (processes stopped, state deleted)
/// when dropped, even when the test fails.
pub struct OwnCluster {
    dir: PathBuf,
    pub cluster: Cluster,
}

impl OwnCluster {
    pub fn up(name: &str) -> Self {
        Self::up_with_apiserver_args(name, "")
    }

    /// An own cluster whose API server has these extra flags (e.g. feature gates).
    pub fn up_with_apiserver_args(name: &str, apiserver_args: &str) -> Self {
        let dir = repo_root().join("target/chaos-clusters").join(format!(
            "{name}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        std::fs::create_dir_all(dir.parent().expect("has a parent"))
            .expect("create target/chaos-clusters");
        let cluster = own_cluster(&dir, apiserver_args);
        OwnCluster { dir, cluster }
    }

    /// `hack/cluster.sh ARGS` on this cluster, off the async runtime's thread.
    pub async fn sh(&self, args: &'static [&'static str]) -> String {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || cluster_sh(&dir, args))
            .await
            .expect("cluster.sh task")
    }

    /// The operator under test on this cluster, watching `world`'s namespace.
    pub fn operator(&self, world: &World, args: &[&str]) -> Operator {
        let watch = format!("--watch-namespaces={}", world.namespace);
        let args: Vec<&str> = [watch.as_str()]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        Operator::start_with(
            &self.cluster.operator_kubeconfig,
            &world.namespace,
            world.appflow.endpoint_url(),
            &args,
        )
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(repo_root().join("hack/cluster.sh"))
            .arg("clean")
            .env("FLOWRUN_CLUSTER_DIR", &self.dir)
            .output();
    }
}

/// `K`'s CRD as an older release might have had it: the same names, no schema to speak of.
/// Objects written under it are what an upgrade finds stored once the schema tightens.
pub fn loose_crd<K: CustomResourceExt>() -> CustomResourceDefinition {
    loosened(K::crd())
}

/// `crd` with every version's schema accepting anything.
pub fn loosened(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        version.schema = Some(
            serde_json::from_value(json!({"openAPIV3Schema": {
                "type": "object", "x-kubernetes-preserve-unknown-fields": true
            }}))
            .expect("a valid schema"),
        );
    }
    crd
}

/// The stand-in CRD named `name` from `hack/apiserver/standins.yaml`, as installed.
pub fn standin_crd(name: &str) -> CustomResourceDefinition {
    let path = repo_root().join("hack/apiserver/standins.yaml");
    let text = std::fs::read_to_string(&path).expect("read the stand-ins");
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|document| {
            <CustomResourceDefinition as serde::Deserialize>::deserialize(document).expect("a CRD")
        })
        .find(|crd| crd.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no stand-in named {name}"))
}

/// Replaces the installed CRD's versions with `crd`'s (a whole replace, unlike an apply, so no
/// field of the old schema survives under another field manager).
pub async fn replace_crd_versions(client: &Client, crd: &CustomResourceDefinition) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.metadata.name.as_deref().expect("a name");
    let mut installed = crds.get(name).await.expect("the CRD is installed");
    installed.spec.versions = crd.spec.versions.clone();
    crds.replace(name, &PostParams::default(), &installed)
        .await
        .expect("replace the CRD");
}
