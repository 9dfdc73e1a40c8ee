//! The Argo CD health check in docs/argocd, run by a real Lua interpreter (the reference Lua
//! 5.4, built from source by mlua) against sample FlowRuns.

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
    let object: serde_json::Value =
        serde_yaml_ng::from_str(flowrun_yaml).expect("sample FlowRun parses");
    let lua = Lua::new();
    let obj = lua.to_value(&object).expect("converts to Lua");
    lua.globals().set("obj", obj).expect("sets obj");
    let hs: Table = lua
        .load(docs("flowrun-health.lua"))
        .set_name("flowrun-health.lua")
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
fn argocd_cm_example_embeds_the_same_check() {
    let cm: serde_json::Value =
        serde_yaml_ng::from_str(&docs("argocd-cm.yaml")).expect("argocd-cm.yaml parses");
    let embedded = cm["data"]["resource.customizations.health.appflow.flowrun.dev_FlowRun"]
        .as_str()
        .expect("the health key is there");
    let normalise = |text: &str| -> Vec<String> {
        text.lines()
            .map(|line| line.trim_end().to_owned())
            .collect()
    };
    assert_eq!(
        normalise(embedded),
        normalise(&docs("flowrun-health.lua")),
        "docs/argocd/argocd-cm.yaml is out of date: re-indent flowrun-health.lua into it"
    );
}
