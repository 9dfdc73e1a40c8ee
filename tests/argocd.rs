//! The Argo CD health checks and resource actions in docs/argocd, run against sample objects in
//! two Lua VMs: the reference Lua 5.4 (built from source by mlua) and gopher-lua, the Lua 5.1
//! VM in Go that Argo CD runs them in, with the libraries Argo CD opens and its way of turning
//! the result into JSON (hack/argocd-lua, built once by `hack/apiserver/build.sh --argocd-lua`).
//! Every case must give the same answer in both: a script can pass in one and fail in the
//! other (the string library, for one, is not there in Argo CD).

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use flowrun_api::flowrun::FlowRun;
use kube::api::{Api, PostParams};
use mlua::{Lua, LuaSerdeExt};
use serde_json::{Value, json};
use support::cluster::{cached_tool, client, output_with_input, repo_root, unique_namespace};

fn docs(file: &str) -> String {
    let path = repo_root().join("docs/argocd").join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Where Argo CD's kind of script runs.
#[derive(Clone, Copy, Debug)]
enum Vm {
    /// The reference Lua 5.4, all standard libraries open.
    Reference,
    /// gopher-lua, opened and read back as Argo CD does.
    Argo,
}

const VMS: [Vm; 2] = [Vm::Reference, Vm::Argo];

/// What Argo CD runs the script for.
#[derive(Clone, Copy)]
enum Mode {
    Health,
    Discovery,
    Action,
}

/// hack/argocd-lua, from `FLOWRUN_ARGOCD_LUA` or built (once, then cached) by build.sh.
fn argocd_lua() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| cached_tool("FLOWRUN_ARGOCD_LUA", "--argocd-lua"))
}

/// Runs `script` (a file in docs/argocd, or Lua source when it has no `.lua` suffix) on
/// `object` in `vm`; returns what the script returned, or its error.
fn run(vm: Vm, mode: Mode, script: &str, object: &Value) -> Result<Value, String> {
    let source = if script.ends_with(".lua") {
        docs(script)
    } else {
        script.to_owned()
    };
    match vm {
        Vm::Reference => {
            let lua = Lua::new();
            let obj = lua.to_value(object).map_err(|e| e.to_string())?;
            lua.globals().set("obj", obj).map_err(|e| e.to_string())?;
            let returned: mlua::Value = lua.load(source).eval().map_err(|e| e.to_string())?;
            lua.from_value(returned).map_err(|e| e.to_string())
        }
        Vm::Argo => {
            let file = tempfile::NamedTempFile::new().expect("a temporary file");
            std::fs::write(file.path(), source).expect("write the script");
            let mode = match mode {
                Mode::Health => "health",
                Mode::Discovery => "discovery",
                Mode::Action => "action",
            };
            let output = output_with_input(
                Command::new(argocd_lua()).arg(mode).arg(file.path()),
                object.to_string().as_bytes(),
            );
            if !output.status.success() {
                return Err(String::from_utf8_lossy(&output.stderr).into_owned());
            }
            Ok(serde_json::from_slice(&output.stdout).expect("argocd-lua prints JSON"))
        }
    }
}

fn object(yaml: &str) -> Value {
    serde_yaml_ng::from_str(yaml).expect("sample object parses")
}

/// Runs the health check in `check` on an object given as YAML in both VMs; returns
/// (status, message), the same in both.
fn health_of(check: &str, object_yaml: &str) -> (String, String) {
    let answers: Vec<(String, String)> = VMS
        .iter()
        .map(|vm| {
            let hs = run(*vm, Mode::Health, check, &object(object_yaml))
                .unwrap_or_else(|error| panic!("{vm:?}: {check} failed: {error}"));
            let field = |key: &str| hs[key].as_str().unwrap_or_default().to_owned();
            (field("status"), field("message"))
        })
        .collect();
    assert_eq!(answers[0], answers[1], "{check} on {object_yaml}");
    answers[0].clone()
}

fn health(flowrun_yaml: &str) -> (String, String) {
    health_of("flowrun-health.lua", flowrun_yaml)
}

/// The actions a discovery offers, each with whether it is disabled, the same in both VMs.
fn offered(discovery: &str, object_yaml: &str) -> BTreeMap<String, bool> {
    let answers: Vec<BTreeMap<String, bool>> = VMS
        .iter()
        .map(|vm| {
            let returned = run(*vm, Mode::Discovery, discovery, &object(object_yaml))
                .unwrap_or_else(|error| panic!("{vm:?}: {discovery} failed: {error}"));
            match returned {
                // argocd-lua: Argo CD's list of actions.
                Value::Array(actions) => actions
                    .iter()
                    .map(|a| {
                        (
                            a["name"].as_str().expect("a name").to_owned(),
                            a["disabled"] == true,
                        )
                    })
                    .collect(),
                // The reference: the table by name, as the script returned it.
                Value::Object(actions) => actions
                    .iter()
                    .map(|(name, a)| (name.clone(), a["disabled"] == true))
                    .collect(),
                other => panic!("{vm:?}: {discovery} returned {other}"),
            }
        })
        .collect();
    assert_eq!(answers[0], answers[1], "{discovery} on {object_yaml}");
    answers[0].clone()
}

/// What an action asks Argo CD to do, as (operation, resource), in `vm`.
fn impacted(vm: Vm, action: &str, object: &Value) -> Result<Vec<(String, Value)>, String> {
    let list = match run(vm, Mode::Action, action, object)? {
        // An object alone is a patch of obj (Argo CD's older form of action).
        Value::Object(patched) => vec![json!({"operation": "patch", "resource": patched})],
        Value::Array(list) => list,
        other => return Err(format!("{action} returned {other}")),
    };
    Ok(list
        .into_iter()
        .map(|item| {
            let operation = item["operation"].as_str().unwrap_or_default().to_owned();
            (operation, item["resource"].clone())
        })
        .collect())
}

/// The one resource an action impacts, with its operation, checked alike in both VMs by `same`.
fn impacted_alike(action: &str, object: &Value, same: impl Fn(&Value) -> Value) -> (String, Value) {
    let answers: Vec<(String, Value)> = VMS
        .iter()
        .map(|vm| {
            let mut list = impacted(*vm, action, object)
                .unwrap_or_else(|error| panic!("{vm:?}: {action} failed: {error}"));
            assert_eq!(list.len(), 1, "{vm:?}: {list:?}");
            list.remove(0)
        })
        .collect();
    assert_eq!(answers[0].0, answers[1].0, "{action}: the operations");
    assert_eq!(
        same(&answers[0].1),
        same(&answers[1].1),
        "{action}: the resources"
    );
    answers[1].clone()
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
fn argocd_cm_example_embeds_the_same_scripts() {
    let cm: Value =
        serde_yaml_ng::from_str(&docs("argocd-cm.yaml")).expect("argocd-cm.yaml parses");
    let normalise = |text: &str| -> Vec<String> {
        text.lines()
            .map(|line| line.trim_end().to_owned())
            .collect()
    };
    let out_of_date =
        |file: &str| format!("docs/argocd/argocd-cm.yaml is out of date: re-indent {file} into it");
    for (kind, check) in [
        ("FlowRun", "flowrun-health.lua"),
        ("FlowRunSchedule", "flowrunschedule-health.lua"),
    ] {
        let key = format!("resource.customizations.health.appflow.flowrun.dev_{kind}");
        let embedded = cm["data"][&key].as_str().expect("the health key is there");
        assert_eq!(
            normalise(embedded),
            normalise(&docs(check)),
            "{}",
            out_of_date(check)
        );
    }
    for (kind, prefix, names) in [
        ("FlowRun", "flowrun", &["rerun"][..]),
        (
            "FlowRunSchedule",
            "flowrunschedule",
            &["run-now", "suspend", "resume"][..],
        ),
    ] {
        let key = format!("resource.customizations.actions.appflow.flowrun.dev_{kind}");
        let actions: Value =
            serde_yaml_ng::from_str(cm["data"][&key].as_str().expect("the actions key is there"))
                .expect("the actions key holds YAML");
        let discovery = format!("{prefix}-discovery.lua");
        assert_eq!(
            normalise(actions["discovery.lua"].as_str().expect("discovery.lua")),
            normalise(&docs(&discovery)),
            "{}",
            out_of_date(&discovery)
        );
        let defined: Vec<&str> = actions["definitions"]
            .as_array()
            .expect("definitions")
            .iter()
            .map(|d| d["name"].as_str().expect("a name"))
            .collect();
        assert_eq!(defined, names, "{kind}");
        for (definition, name) in actions["definitions"]
            .as_array()
            .expect("definitions")
            .iter()
            .zip(names)
        {
            let file = format!("{prefix}-{name}.lua");
            assert_eq!(
                normalise(definition["action.lua"].as_str().expect("action.lua")),
                normalise(&docs(&file)),
                "{}",
                out_of_date(&file)
            );
        }
        // Every action offered is defined, and the other way round.
        let offers = offered(
            &discovery,
            &format!("apiVersion: x\nkind: {kind}\nmetadata: {{name: x}}\nspec: {{}}"),
        );
        assert_eq!(
            offers.keys().map(String::as_str).collect::<Vec<_>>().len(),
            names.len()
        );
        for name in names {
            assert!(
                offers.contains_key(*name),
                "{kind} discovery offers {name}: {offers:?}"
            );
        }
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

/// A FlowRun as the API server returns it, with everything rerun must leave behind.
const APPLIED: &str = r#"
apiVersion: appflow.flowrun.dev/v1alpha1
kind: FlowRun
metadata:
  name: nightly
  namespace: team-a
  uid: 6f1c2b1e-0000-4000-8000-000000000001
  resourceVersion: "42"
  generation: 1
  labels: {team: sales, app.kubernetes.io/instance: flows}
  annotations:
    appflow.flowrun.dev/start: '{"time":"2026-11-25T10:00:01Z"}'
    argocd.argoproj.io/tracking-id: 'flows:appflow.flowrun.dev/FlowRun:team-a/nightly'
  finalizers: [appflow.flowrun.dev/cancel-on-delete]
spec: {flowName: salesforce-to-s3, region: eu-west-1, cancelOnDelete: true, deactivateOnDelete: false, activeDeadlineSeconds: 3600}
status: {phase: Succeeded, executionId: exec-1}
"#;

/// The rerun FlowRun's name with its time replaced: the two VMs may run a second apart.
fn without_time(resource: &Value) -> Value {
    let mut resource = resource.clone();
    resource["metadata"]["name"] = json!("<time>");
    resource
}

#[test]
fn rerun_creates_a_new_flowrun_with_the_spec_and_labels_and_nothing_of_the_old_run() {
    let applied = object(APPLIED);
    let (operation, created) = impacted_alike("flowrun-rerun.lua", &applied, without_time);

    assert_eq!(operation, "create");
    let name = created["metadata"]["name"].as_str().expect("a name");
    let time = name
        .strip_prefix("nightly-")
        .expect("named after the old one");
    assert!(
        time.len() == 14 && time.bytes().all(|b| b.is_ascii_digit()),
        "{name}"
    );
    assert_eq!(
        without_time(&created),
        json!({
            "apiVersion": "appflow.flowrun.dev/v1alpha1",
            "kind": "FlowRun",
            "metadata": {"name": "<time>", "namespace": "team-a", "labels": {"team": "sales"}},
            "spec": {"flowName": "salesforce-to-s3", "region": "eu-west-1", "cancelOnDelete": true,
                     "deactivateOnDelete": false, "activeDeadlineSeconds": 3600},
        })
    );

    // No labels left: none at all, not an empty list (which the API server would refuse).
    let mut unlabelled = applied.clone();
    unlabelled["metadata"]["labels"] = json!({"app.kubernetes.io/instance": "flows"});
    let (_, created) = impacted_alike("flowrun-rerun.lua", &unlabelled, without_time);
    assert_eq!(created["metadata"].get("labels"), None, "{created}");

    // A name with no room for the time fails in both, with the reason.
    let mut long = applied;
    long["metadata"]["name"] = json!("n".repeat(240));
    for vm in VMS {
        let error = impacted(vm, "flowrun-rerun.lua", &long).expect_err("too long");
        assert!(error.contains("too long"), "{vm:?}: {error}");
    }
}

#[tokio::test]
async fn the_flowrun_rerun_creates_is_accepted_by_the_api_server() {
    let client = client().await;
    let namespace = unique_namespace(&client, "argocd-rerun").await;
    let mut applied = object(APPLIED);
    applied["metadata"]["namespace"] = json!(namespace);
    let (_, created) = impacted_alike("flowrun-rerun.lua", &applied, without_time);
    let flowrun: FlowRun = serde_json::from_value(created).expect("a FlowRun");

    let api: Api<FlowRun> = Api::namespaced(client, &namespace);
    let stored = api
        .create(&PostParams::default(), &flowrun)
        .await
        .expect("the API server accepts it");
    assert_eq!(stored.spec, flowrun.spec);
    assert_eq!(stored.spec.active_deadline_seconds, Some(3600));
}

fn flowrun_schedule(spec: &str, annotations: &str) -> Value {
    object(&format!(
        "apiVersion: appflow.flowrun.dev/v1alpha1\nkind: FlowRunSchedule\n\
         metadata: {{name: nightly, namespace: team-a{annotations}}}\n\
         spec: {{schedule: '0 2 * * *', flowRunTemplate: {{metadata: {{}}, spec: {{flowName: f}}}}{spec}}}\n\
         status: {{active: [], lastRunNow: older}}"
    ))
}

#[test]
fn discovery_offers_rerun_run_now_and_the_suspend_action_that_changes_something() {
    assert_eq!(
        offered("flowrun-discovery.lua", APPLIED),
        BTreeMap::from([("rerun".to_owned(), false)])
    );
    // (schedule spec, suspend disabled, resume disabled)
    for (spec, suspend_disabled, resume_disabled) in [
        ("", false, true),
        (", suspend: false", false, true),
        (", suspend: true", true, false),
    ] {
        let text = serde_yaml_ng::to_string(&flowrun_schedule(spec, "")).expect("YAML");
        assert_eq!(
            offered("flowrunschedule-discovery.lua", &text),
            BTreeMap::from([
                ("resume".to_owned(), resume_disabled),
                ("run-now".to_owned(), false),
                ("suspend".to_owned(), suspend_disabled),
            ]),
            "{spec}"
        );
    }
}

#[test]
fn run_now_sets_the_annotation_to_a_value_that_names_one_flowrun() {
    for annotations in ["", ", annotations: {keep: me}"] {
        let schedule = flowrun_schedule("", annotations);
        let without_value = |resource: &Value| {
            let mut resource = resource.clone();
            resource["metadata"]["annotations"]["appflow.flowrun.dev/run-now"] = json!("<time>");
            resource
        };
        let (operation, patched) =
            impacted_alike("flowrunschedule-run-now.lua", &schedule, without_value);
        assert_eq!(operation, "patch");
        let value = patched["metadata"]["annotations"]["appflow.flowrun.dev/run-now"]
            .as_str()
            .expect("the annotation");
        assert!(
            value.len() == 14 && value.bytes().all(|b| b.is_ascii_digit()),
            "{value}"
        );
        let name = flowrun_api::schedule::run_now_name("nightly", value);
        assert!(name.len() <= 63, "{name}");
        // Nothing else changes; empty maps stay maps in Argo CD's patch.
        let mut expected = schedule.clone();
        expected["metadata"]["annotations"]["appflow.flowrun.dev/run-now"] = json!(value);
        assert_eq!(patched, expected);
    }
}

#[test]
fn suspend_and_resume_set_spec_suspend_and_nothing_else() {
    for (action, from, to) in [
        ("flowrunschedule-suspend.lua", "", true),
        ("flowrunschedule-suspend.lua", ", suspend: false", true),
        ("flowrunschedule-resume.lua", ", suspend: true", false),
    ] {
        let schedule = flowrun_schedule(from, "");
        let (operation, patched) = impacted_alike(action, &schedule, Value::clone);
        assert_eq!(operation, "patch");
        let mut expected = schedule.clone();
        expected["spec"]["suspend"] = json!(to);
        assert_eq!(patched, expected, "{action} from {from:?}");
    }
}

/// The second VM is not the first one again: what Argo CD leaves out fails there only.
#[test]
fn argo_cds_vm_has_no_string_library_and_encodes_empty_tables_as_lists() {
    let script = "return { status = 'Healthy', message = string.format('%d runs', 3) }";
    let reference = run(Vm::Reference, Mode::Health, script, &json!({})).expect("runs in 5.4");
    assert_eq!(reference["message"], "3 runs");
    let error = run(Vm::Argo, Mode::Health, script, &json!({})).expect_err("no string library");
    assert!(error.contains("string"), "{error}");

    let created = "return { { operation = 'create', resource = { metadata = { labels = {} } } } }";
    let resource = &impacted(Vm::Argo, "created", &json!({})).map(|_| ()).err();
    assert!(
        resource.is_some(),
        "'created' is not a script file or source"
    );
    let list = impacted(Vm::Argo, created, &json!({})).expect("runs");
    assert_eq!(
        list[0].1["metadata"]["labels"],
        json!([]),
        "a list, not a map"
    );
}
