//! `spec.deactivateOnDelete` on a real API server and the local AppFlow endpoint: deleting the
//! last Activated FlowRun of a scheduled flow deactivates it (StopFlow); another Activated
//! FlowRun of the flow keeps it active, and says so; a flow already gone or suspended is fine.

mod support;

use std::time::Duration;

use flowrun_api::FINALIZER;
use flowrun_api::flowrun::{FlowRunSpec, Phase};
use kube::ResourceExt;
use kube::api::DeleteParams;
use support::flowruns::World;
use support::operator::Operator;

const FLOWS: &str = r#"
flows:
  - name: nightly
    triggerType: Scheduled
    status: Suspended
  - name: on-event
    triggerType: Event
    status: Draft
"#;

const ACTIVATE: Duration = Duration::from_secs(30);

/// Creates a FlowRun of `flow` with deactivateOnDelete (or without) and waits until Activated.
async fn activated(world: &World, operator: &Operator, name: &str, flow: &str, deactivate: bool) {
    let spec = FlowRunSpec {
        deactivate_on_delete: deactivate,
        ..FlowRunSpec::new(flow)
    };
    world.create_with(name, spec).await;
    let flowrun = world
        .wait_for(name, ACTIVATE, Some(operator), |status| {
            status.phase == Some(Phase::Activated)
        })
        .await;
    let finalizers: &[&str] = if deactivate { &[FINALIZER] } else { &[] };
    assert_eq!(flowrun.finalizers(), finalizers, "{name}");
}

async fn flow_status(world: &World, flow: &str) -> String {
    let described = world
        .appflow
        .sdk_client()
        .describe_flow()
        .flow_name(flow)
        .send()
        .await
        .expect("DescribeFlow");
    described
        .flow_status()
        .map(|status| status.as_str().to_owned())
        .unwrap_or_default()
}

async fn delete(world: &World, name: &str) {
    world
        .flowruns
        .delete(name, &DeleteParams::default())
        .await
        .expect("delete");
    world.wait_until_gone(name).await;
}

#[tokio::test]
async fn deleting_the_last_activated_flowrun_deactivates_its_flow() {
    let world = World::new("deactivate", FLOWS).await;
    let operator = world.operator(&[]);
    activated(&world, &operator, "turn-on", "nightly", true).await;
    assert_eq!(flow_status(&world, "nightly").await, "Active");

    delete(&world, "turn-on").await;

    assert_eq!(flow_status(&world, "nightly").await, "Suspended");
    let stops = world.appflow.requests_for("StopFlow").await;
    assert_eq!(stops.len(), 1, "{stops:?}");
    let event = world.wait_for_event("turn-on", "Deactivated").await;
    assert!(
        event
            .note
            .as_deref()
            .unwrap_or_default()
            .contains("Suspended"),
        "{event:?}"
    );
}

#[tokio::test]
async fn another_activated_flowrun_of_the_flow_keeps_it_active_until_it_goes_too() {
    let world = World::new("deactivate-shared", FLOWS).await;
    let operator = world.operator(&[]);
    activated(&world, &operator, "first", "nightly", true).await;
    activated(&world, &operator, "second", "nightly", true).await;

    delete(&world, "first").await;
    let skipped = world.wait_for_event("first", "DeactivationSkipped").await;
    let note = skipped.note.unwrap_or_default();
    assert!(
        note.contains(&format!("FlowRun {}/second", world.namespace)),
        "{note}"
    );
    assert_eq!(world.appflow.stats().await.calls("StopFlow"), 0);
    assert_eq!(flow_status(&world, "nightly").await, "Active");

    delete(&world, "second").await;
    world.wait_for_event("second", "Deactivated").await;
    assert_eq!(world.appflow.stats().await.calls("StopFlow"), 1);
    assert_eq!(flow_status(&world, "nightly").await, "Suspended");
}

#[tokio::test]
async fn a_flow_already_deleted_or_suspended_releases_the_flowrun() {
    let world = World::new("deactivate-gone", FLOWS).await;
    let operator = world.operator(&[]);
    activated(&world, &operator, "deleted-flow", "nightly", true).await;
    activated(&world, &operator, "suspended-flow", "on-event", true).await;
    world.appflow.delete_flow("nightly").await;
    world
        .appflow
        .sdk_client()
        .stop_flow()
        .flow_name("on-event")
        .send()
        .await
        .expect("StopFlow by hand");

    delete(&world, "deleted-flow").await;
    delete(&world, "suspended-flow").await;

    let gone = world.wait_for_event("deleted-flow", "Deactivated").await;
    assert!(
        gone.note.unwrap_or_default().contains("no longer exists"),
        "the flow was deleted"
    );
    world.wait_for_event("suspended-flow", "Deactivated").await;
    assert_eq!(flow_status(&world, "on-event").await, "Suspended");
    for name in ["deleted-flow", "suspended-flow"] {
        let warnings: Vec<_> = world
            .events_for(name)
            .await
            .into_iter()
            .filter(|event| event.type_.as_deref() == Some("Warning"))
            .collect();
        assert!(warnings.is_empty(), "{name}: {warnings:?}");
    }
}
