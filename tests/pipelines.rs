//! The pipeline recipes in examples/argo-workflows and examples/tekton: the Argo Workflows
//! resource template's FlowRun is accepted by the real API server and run by the operator, and
//! its success and failure conditions, evaluated on the statuses the operator wrote, say
//! succeeded and failed where they should; the Tekton Task is checked for what Tekton needs
//! of it (no Tekton schema is packaged in a registry these machines reach, see
//! docs/pipelines.md).

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use flowrun_api::flowrun::{FlowRun, Phase};
use kube::CustomResourceExt;
use kube::api::PostParams;
use serde_json::Value;
use support::cluster::repo_root;
use support::flowruns::World;

fn example(path: &str) -> Value {
    let path = repo_root().join("examples").join(path);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// An Argo resource condition: a requirement on a field, `FIELD == VALUE` or
/// `FIELD in (A,B)`, as Argo's resource executor evaluates them (label-selector syntax on the
/// object's fields).
#[derive(Debug)]
struct Requirement {
    field: Vec<String>,
    values: BTreeSet<String>,
}

fn requirement(condition: &str) -> Requirement {
    let (field, values) = if let Some((field, value)) = condition.split_once("==") {
        (field, BTreeSet::from([value.trim().to_owned()]))
    } else if let Some((field, set)) = condition.split_once(" in ") {
        let set = set.trim().trim_start_matches('(').trim_end_matches(')');
        (field, set.split(',').map(|v| v.trim().to_owned()).collect())
    } else {
        panic!("not a condition this test reads: {condition}")
    };
    Requirement {
        field: field.trim().split('.').map(str::to_owned).collect(),
        values,
    }
}

impl Requirement {
    fn holds(&self, object: &Value) -> bool {
        let value = self
            .field
            .iter()
            .try_fold(object, |value, key| value.get(key));
        value
            .and_then(Value::as_str)
            .is_some_and(|value| self.values.contains(value))
    }
}

fn template() -> Value {
    example("argo-workflows/run-flow.yaml")["spec"]["templates"][0].clone()
}

fn conditions() -> (Requirement, Requirement) {
    let resource = &template()["resource"];
    let condition = |key: &str| requirement(resource[key].as_str().expect("a condition"));
    (condition("successCondition"), condition("failureCondition"))
}

#[test]
fn argo_conditions_read_a_top_level_status_field_that_the_crd_defines() {
    let (success, failure) = conditions();
    let crd = serde_json::to_value(FlowRun::crd()).expect("serialises");
    let status = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"];
    for requirement in [&success, &failure] {
        assert_eq!(requirement.field, ["status", "phase"], "{requirement:?}");
        let phase = &status["properties"]["phase"];
        let allowed: BTreeSet<&str> = phase["enum"]
            .as_array()
            .expect("an enum in the schema")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for value in &requirement.values {
            assert!(
                allowed.contains(value.as_str()),
                "{value} not in {allowed:?}"
            );
        }
    }
    // Every final phase but Activated (a scheduled flow has no run to wait for) ends the step.
    let ends: BTreeSet<&str> = Phase::ALL
        .iter()
        .filter(|phase| phase.is_final() && **phase != Phase::Activated)
        .map(|phase| phase.as_str())
        .collect();
    let decided: BTreeSet<&str> = success
        .values
        .iter()
        .chain(&failure.values)
        .map(String::as_str)
        .collect();
    assert_eq!(decided, ends);
    assert!(success.values.is_disjoint(&failure.values));
}

/// The resource template's FlowRun with Argo's parameters filled in.
fn manifest(flow: &str, name: &str) -> FlowRun {
    let text = template()["resource"]["manifest"]
        .as_str()
        .expect("a manifest")
        .replace("{{inputs.parameters.flow}}", flow)
        .replace("{{inputs.parameters.region}}", "us-east-1")
        .replace("{{workflow.name}}", name);
    assert!(!text.contains("{{"), "a parameter left: {text}");
    let mut flowrun: FlowRun = serde_yaml_ng::from_str(&text).expect("a FlowRun");
    // The local API server accepts generateName, but the test waits on a known name.
    flowrun.metadata.name = Some(name.to_owned());
    flowrun.metadata.generate_name = None;
    flowrun
}

#[tokio::test]
async fn argo_conditions_tell_success_and_failure_apart_on_the_statuses_the_operator_writes() {
    let world = World::new(
        "argo-recipe",
        "flows:\n  - {name: quick, runSeconds: 1}\n  - {name: broken, runSeconds: 1, outcome: Error, errorMessage: boom}\n",
    )
    .await;
    let operator = world.operator(&[]);
    let (success, failure) = conditions();
    for (flow, succeeds) in [("quick", true), ("broken", false)] {
        let name = format!("wf-{flow}");
        let created = world
            .flowruns
            .create(&PostParams::default(), &manifest(flow, &name))
            .await
            .expect("the API server accepts the template's FlowRun");
        let as_json = serde_json::to_value(&created).expect("serialises");
        assert!(
            !success.holds(&as_json) && !failure.holds(&as_json),
            "undecided at first"
        );
        let done = world
            .wait_for(&name, Duration::from_secs(60), Some(&operator), |status| {
                status.phase.is_some_and(Phase::is_final)
            })
            .await;
        let done = serde_json::to_value(&done).expect("serialises");
        assert_eq!(success.holds(&done), succeeds, "{flow}: {done}");
        assert_eq!(failure.holds(&done), !succeeds, "{flow}: {done}");
    }
}

#[test]
fn tekton_task_runs_the_plugin_with_wait_and_declares_every_parameter_it_uses() {
    let task = example("tekton/run-flow-task.yaml");
    assert_eq!(task["apiVersion"], "tekton.dev/v1");
    assert_eq!(task["kind"], "Task");
    let declared: BTreeSet<&str> = task["spec"]["params"]
        .as_array()
        .expect("params")
        .iter()
        .map(|p| p["name"].as_str().expect("a name"))
        .collect();
    let steps = task["spec"]["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 1);
    let step = &steps[0];
    let script = step["script"].as_str().expect("a script");
    assert!(script.starts_with("#!/bin/sh"), "{script}");
    assert!(
        script.contains("kubectl flowrun run \"$FLOW\"") && script.contains("--wait"),
        "{script}"
    );
    // Parameters reach the script through env only, never spliced into shell text.
    assert!(!script.contains("$(params."), "{script}");
    let text = serde_json::to_string(step).expect("serialises");
    for used in text.split("$(params.").skip(1) {
        let name = used.split(')').next().expect("a parameter name");
        assert!(declared.contains(name), "$(params.{name}) is not declared");
    }
    let script_file = tempfile::NamedTempFile::new().expect("a file");
    std::fs::write(script_file.path(), script).expect("write");
    let syntax = std::process::Command::new("sh")
        .arg("-n")
        .arg(script_file.path())
        .status()
        .expect("sh -n");
    assert!(syntax.success(), "the step's script does not parse as sh");
}
