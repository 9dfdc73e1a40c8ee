//! The pipeline recipes in examples/argo-workflows and examples/tekton: the Argo Workflows
//! template matches Argo's published schema (Hera's models, unknown fields refused), its
//! FlowRun is accepted by the real API server and run by the operator, and its success and
//! failure conditions, evaluated on the statuses the operator wrote, say succeeded and failed
//! where they should; the Tekton Task's step script runs for real (sh, with the parameters
//! Tekton would substitute, kubectl and kubectl-flowrun on PATH) and its exit status follows
//! the run. No registry these machines reach ships Tekton v1's schema (see docs/pipelines.md).

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use flowrun_api::flowrun::{FlowRun, Phase};
use kube::CustomResourceExt;
use kube::api::{ListParams, PostParams};
use serde_json::Value;
use support::cluster::{cluster, edited_kubeconfig, repo_root};
use support::flowruns::World;

/// `hack/pipelines.sh validate FILES`: Argo's schema, installed once into the cache.
fn argo_validate(files: &[PathBuf]) -> Output {
    Command::new("bash")
        .arg(repo_root().join("hack/pipelines.sh"))
        .arg("validate")
        .args(files)
        .output()
        .expect("run hack/pipelines.sh")
}

#[test]
fn argo_examples_match_argos_published_schema_and_a_misspelled_field_fails() {
    let dir = repo_root().join("examples/argo-workflows");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/argo-workflows")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {}", dir.display());
    let output = argo_validate(&files);
    assert!(
        output.status.success(),
        "{files:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let text = std::fs::read_to_string(dir.join("run-flow.yaml")).expect("read");
    let broken = tempfile::tempdir().expect("temp dir");
    let cases = [
        (
            "successCondition:",
            "successCondtion:",
            "spec.templates.0.resource.successCondtion: Extra inputs are not permitted",
        ),
        (
            "  entrypoint:",
            "  entrypont:",
            "spec.entrypont: Extra inputs are not permitted",
        ),
        (
            "setOwnerReference: true",
            "setOwnerReference: \"yes\"",
            "spec.templates.0.resource.setOwnerReference: Input should be a valid boolean",
        ),
        (
            "jsonPath: \"{.status.executionId}\"",
            "jsonpath: \"{.status.executionId}\"",
            "spec.templates.0.outputs.parameters.0.valueFrom.jsonpath: Extra inputs are not permitted",
        ),
    ];
    // One run for all broken copies: importing Argo's models takes seconds.
    let paths: Vec<PathBuf> = cases
        .iter()
        .enumerate()
        .map(|(i, (from, to, _))| {
            assert!(text.contains(from), "{from}");
            let path = broken.path().join(format!("broken-{i}.yaml"));
            std::fs::write(&path, text.replacen(from, to, 1)).expect("write");
            path
        })
        .collect();
    let output = argo_validate(&paths);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    for (path, (_, to, error)) in paths.iter().zip(cases) {
        let line = format!("{}: WorkflowTemplate {error}", path.display());
        assert!(
            stderr.lines().any(|l| l == line),
            "{to}: no {line:?} in {stderr}"
        );
    }
}

/// A flow that succeeds and one that fails, for the recipes' two outcomes.
const FLOWS: &str = "flows:\n  - {name: quick, runSeconds: 1}\n  - {name: broken, runSeconds: 1, outcome: Error, errorMessage: boom}\n";

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
    let world = World::new("argo-recipe", FLOWS).await;
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

/// The Task's step as Tekton runs it: the script, and the step's environment with every
/// `$(params.NAME)` replaced by the value given or the parameter's default.
fn tekton_step(given: &[(&str, &str)]) -> (String, Vec<(String, String)>) {
    let task = example("tekton/run-flow-task.yaml");
    let step = &task["spec"]["steps"][0];
    let substitute = |text: &str| {
        task["spec"]["params"]
            .as_array()
            .expect("params")
            .iter()
            .fold(text.to_owned(), |text, param| {
                let name = param["name"].as_str().expect("a name");
                let value = given
                    .iter()
                    .find(|(given, _)| *given == name)
                    .map(|(_, value)| *value)
                    .or_else(|| param["default"].as_str());
                match value {
                    Some(value) => text.replace(&format!("$(params.{name})"), value),
                    None => text,
                }
            })
    };
    let env = step["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|var| {
            let value = substitute(var["value"].as_str().expect("a value"));
            assert!(!value.contains("$(params."), "no value for {value}");
            (var["name"].as_str().expect("a name").to_owned(), value)
        })
        .collect();
    (step["script"].as_str().expect("a script").to_owned(), env)
}

/// A kubeconfig like the test cluster's whose context's namespace is `namespace`: in a pod,
/// the plugin takes the namespace of its service account.
fn kubeconfig_in(namespace: &str, dir: &Path) -> PathBuf {
    edited_kubeconfig(dir, |config| {
        for context in config["contexts"].as_sequence_mut().expect("contexts") {
            context["context"]["namespace"] = namespace.into();
        }
    })
}

#[tokio::test]
async fn tekton_step_script_exits_0_when_the_run_succeeds_and_1_when_it_fails() {
    let world = World::new("tekton-recipe", FLOWS).await;
    let operator = world.operator(&[]);
    let plugin = support::workspace::binary("kubectl-flowrun");
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = kubeconfig_in(&world.namespace, dir.path());
    // The step's image: kubectl (the cluster's, else the machine's) and the plugin on PATH.
    let path = [
        plugin.parent().map(Path::to_path_buf),
        cluster().tool_path.clone(),
        Some(PathBuf::from("/usr/local/bin")),
        Some(PathBuf::from("/usr/bin")),
        Some(PathBuf::from("/bin")),
    ]
    .into_iter()
    .flatten()
    .map(|dir| dir.display().to_string())
    .collect::<Vec<_>>()
    .join(":");
    for (flow, exit) in [("quick", 0), ("broken", 1)] {
        let (script, env) = tekton_step(&[("flow", flow), ("image", "unused")]);
        // Tekton writes the script to a file and runs it by its #! line.
        let script_path = dir.path().join(format!("{flow}-script"));
        std::fs::write(&script_path, &script).expect("write the script");
        std::fs::set_permissions(
            &script_path,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        let output = tokio::process::Command::new(&script_path)
            .env_clear()
            .envs(env)
            .env("PATH", &path)
            .env("HOME", dir.path())
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .await
            .expect("the step runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(exit),
            "{flow}: {stdout}{stderr} (operator log {:?})",
            operator.log_path()
        );
        let runs = world
            .flowruns
            .list(&ListParams::default())
            .await
            .expect("list");
        let run = runs
            .items
            .iter()
            .find(|run| run.spec.flow_name == flow)
            .unwrap_or_else(|| panic!("no FlowRun of {flow}: {stdout}{stderr}"));
        let expected = if exit == 0 {
            Phase::Succeeded
        } else {
            Phase::Failed
        };
        assert_eq!(run.phase(), expected, "{flow}: {stdout}{stderr}");
        assert_eq!(run.spec.region.as_deref(), Some("eu-west-1"), "the default");
    }
}
