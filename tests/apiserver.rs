//! The local API server is a real one: CRDs with CEL rules and a status subresource are served,
//! watches see changes, and invalid objects are refused with the server's own message.

mod support;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::discovery::Discovery;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use support::cluster::{TEST_FIELD_MANAGER, client, install_crd, kubectl_apply, unique_namespace};

const WIDGET_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.test.flowrun.dev
spec:
  group: test.flowrun.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
    - name: v1
      served: true
      storage: true
      subresources: {status: {}}
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [size]
              x-kubernetes-validations:
                - rule: "self.size <= 10"
                  message: "size must be at most 10"
              properties:
                size: {type: integer}
            status:
              type: object
              properties:
                phase: {type: string}
"#;

async fn widgets(namespace: &str) -> Api<DynamicObject> {
    let client = client().await;
    let crd: CustomResourceDefinition =
        serde_yaml_ng::from_str(WIDGET_CRD).expect("widget CRD fixture parses");
    install_crd(&client, &crd).await;
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("test.flowrun.dev", "v1", "Widget"),
        "widgets",
    );
    Api::namespaced_with(client, namespace, &resource)
}

fn widget(name: &str, size: i64) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "test.flowrun.dev/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"size": size},
    }))
    .expect("widget fixture parses")
}

#[tokio::test]
async fn crd_with_cel_rule_and_status_subresource_is_served_and_discoverable() {
    let namespace = unique_namespace(&client().await, "served").await;
    widgets(&namespace).await;

    let discovery = Discovery::new(client().await)
        .run()
        .await
        .expect("discovery works against the local server");
    let group = discovery
        .get("test.flowrun.dev")
        .expect("discovery lists the widget group");
    let (resource, capabilities) = group
        .recommended_resources()
        .into_iter()
        .find(|(resource, _)| resource.kind == "Widget")
        .expect("discovery lists widgets");
    assert_eq!(resource.plural, "widgets");
    assert!(
        capabilities
            .subresources
            .iter()
            .any(|(sub, _)| sub.plural == "status"),
        "status subresource is advertised: {:?}",
        capabilities.subresources
    );
}

#[tokio::test]
async fn watch_sees_a_created_object_and_its_status_patch() {
    let namespace = unique_namespace(&client().await, "watch").await;
    let api = widgets(&namespace).await;
    let mut events = watcher(api.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();

    api.create(&PostParams::default(), &widget("seen", 3))
        .await
        .expect("valid widget is created");
    let created = next_widget_named(&mut events, "seen").await;
    assert!(created.data.get("status").is_none(), "{created:?}");

    api.patch_status(
        "seen",
        &PatchParams::apply(TEST_FIELD_MANAGER),
        &Patch::Merge(json!({"status": {"phase": "Done"}})),
    )
    .await
    .expect("status subresource accepts a patch");
    let patched = next_widget_named(&mut events, "seen").await;
    assert_eq!(patched.data["status"]["phase"], "Done");
}

async fn next_widget_named(
    events: &mut (impl futures::Stream<Item = Result<DynamicObject, watcher::Error>> + Unpin),
    name: &str,
) -> DynamicObject {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let object = events
                .try_next()
                .await
                .expect("watch stream stays healthy")
                .expect("watch stream does not end");
            if object.metadata.name.as_deref() == Some(name) {
                return object;
            }
        }
    })
    .await
    .expect("watch delivered the change within 20 s")
}

#[tokio::test]
async fn invalid_object_is_refused_with_the_cel_message() {
    let namespace = unique_namespace(&client().await, "invalid").await;
    let api = widgets(&namespace).await;

    let error = api
        .create(&PostParams::default(), &widget("too-big", 20))
        .await
        .expect_err("a widget over the CEL limit is refused");
    match error {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 422, "{status:?}");
            assert!(
                status.message.contains("size must be at most 10"),
                "{status:?}"
            );
        }
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test]
async fn kubectl_apply_of_an_invalid_object_prints_the_server_message() {
    let namespace = unique_namespace(&client().await, "kubectl").await;
    widgets(&namespace).await;

    let manifest = serde_json::to_string(&widget("from-kubectl", 11)).expect("serialises");
    let output = kubectl_apply(&namespace, &manifest);

    assert!(!output.status.success(), "kubectl apply must fail");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("size must be at most 10"), "{stderr}");
}
