//! The Argo CD health check in docs/argocd, run by a real Lua interpreter (the reference Lua
//! 5.4, built from source by mlua) against sample FlowRuns and FlowRunSchedules.

use std::path::Path;

use mlua::{Lua, LuaSerdeExt, Table};

fn docs(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/argocd")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Runs the health check on a FlowRun given as YAML; returns (status, message).
fn health(flowrun_yaml: &str) -> (String, String) {
    health_of("flowrun-health.lua", flowrun_yaml)
}

/// Runs the health check in `check` on an object given as YAML; returns (status, message).
fn health_of(check: &str, object_yaml: &str) -> (String, String) {
    let object: serde_json::Value =
        serde_yaml_ng::from_str(object_yaml).expect("sample object parses");
    let lua = Lua::new();
    let obj = lua.to_value(&object).expect("converts to Lua");
    lua.globals().set("obj", obj).expect("sets obj");
    let hs: Table = lua
        .load(docs(check))
        .set_name(check)
        .eval()
        .expect("health check runs");
    (
        hs.get("status").expect("hs.status"),
        hs.get("message").expect("hs.message"),
    )
}

fn flowrun(status: &str) -> String {
    format!(
        "apiVersion: appflow.flowrun.dev/v1alpha1\nkind: FlowRun\nmetadata: {{name: x}}\n\
         spec: {{flowName: f}}\n{status}"
    )
}

#[test]
fn health_follows_the_phase() {
    // (status YAML, Argo CD health)
    let table = [
        ("", "Progressing"),
        ("status: {}", "Progressing"),
        ("status: {phase: Pending}", "Progressing"),
        (
            "status: {phase: Starting, message: Starting flow f}",
            "Progressing",
        ),
        ("status: {phase: Running, executionId: e}", "Progressing"),
        ("status: {phase: Succeeded, recordsProcessed: 3}", "Healthy"),
        ("status: {phase: Activated}", "Healthy"),
        ("status: {phase: Failed, message: boom}", "Degraded"),
        ("status: {phase: Canceled}", "Degraded"),
        ("status: {phase: Exploded}", "Unknown"),
    ];
    for (status, expected) in table {
        assert_eq!(health(&flowrun(status)).0, expected, "{status}");
    }
}

#[test]
fn health_message_is_the_flowrun_message() {
    let (status, message) = health(&flowrun(
        "status: {phase: Failed, message: \"Execution e of flow f failed: Connector returned 401\"}",
    ));
    assert_eq!(status, "Degraded");
    assert_eq!(
        message,
        "Execution e of flow f failed: Connector returned 401"
    );
    assert_eq!(
        health(&flowrun("status: {phase: Running}")).1,
        "Running",
        "the phase when there is no message"
    );
}

#[test]
fn argocd_cm_example_embeds_the_same_checks() {
    let cm: serde_json::Value =
        serde_yaml_ng::from_str(&docs("argocd-cm.yaml")).expect("argocd-cm.yaml parses");
    let normalise = |text: &str| -> Vec<String> {
        text.lines()
            .map(|line| line.trim_end().to_owned())
            .collect()
    };
    for (kind, check) in [
        ("FlowRun", "flowrun-health.lua"),
        ("FlowRunSchedule", "flowrunschedule-health.lua"),
    ] {
        let key = format!("resource.customizations.health.appflow.flowrun.dev_{kind}");
        let embedded = cm["data"][&key].as_str().expect("the health key is there");
        assert_eq!(
            normalise(embedded),
            normalise(&docs(check)),
            "docs/argocd/argocd-cm.yaml is out of date: re-indent {check} into it"
        );
    }
}

fn schedule(suspend: bool, status: &str) -> String {
    format!(
        "apiVersion: appflow.flowrun.dev/v1alpha1\nkind: FlowRunSchedule\n\
         metadata: {{name: x, generation: 2}}\n\
         spec: {{schedule: '@daily', suspend: {suspend}, flowRunTemplate: {{spec: {{flowName: f}}}}}}\n{status}"
    )
}

#[test]
fn schedule_health_follows_its_conditions() {
    let ready = "status: {observedGeneration: 2, conditions: [\
                 {type: Ready, status: 'True', reason: Scheduled, message: 'Next slot at 2026-06-02T00:00:00Z'},\
                 {type: Stalled, status: 'False', reason: Scheduled, message: ''}]}";
    let invalid = "status: {observedGeneration: 2, conditions: [\
                   {type: Ready, status: 'False', reason: InvalidSchedule, message: 'spec.timeZone \"Mars\" is not a known IANA time zone'},\
                   {type: Stalled, status: 'True', reason: InvalidSchedule, message: 'spec.timeZone \"Mars\" is not a known IANA time zone'}]}";
    let old = "status: {observedGeneration: 1, conditions: [{type: Ready, status: 'True', reason: Scheduled, message: m}]}";
    // (suspend, status YAML, Argo CD health, message starts with)
    let table = [
        (false, "", "Progressing", "Waiting"),
        (false, ready, "Healthy", "Next slot"),
        (true, ready, "Suspended", "Next slot"),
        (false, invalid, "Degraded", "spec.timeZone"),
        (
            false,
            old,
            "Progressing",
            "Waiting for the operator to read the latest change",
        ),
    ];
    for (suspend, status, expected, message) in table {
        let (health, said) = health_of("flowrunschedule-health.lua", &schedule(suspend, status));
        assert_eq!(health, expected, "{status}");
        assert!(said.starts_with(message), "{status}: {said}");
    }
}
