//! The Helm chart and the operator agree: the chart ships the committed CRD, and configures the
//! binary with flags it has, all of them. (The chart's own tests are in tests/chart/, run by
//! `hack/chart.sh test`.)

mod support;

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::{Value, json};
use support::chart::{of_kind, render};
use support::cluster::repo_root;

#[test]
fn chart_ships_the_committed_crd() {
    let read = |path: &str| std::fs::read_to_string(repo_root().join(path)).unwrap_or_default();
    assert!(
        read("charts/flowrun-operator/crds/flowrun.yaml") == read("crds/flowrun.yaml"),
        "charts/flowrun-operator/crds/flowrun.yaml differs from crds/flowrun.yaml; copy it with:\n    \
         cp crds/flowrun.yaml charts/flowrun-operator/crds/flowrun.yaml"
    );
}

/// `FLOWRUN_*` variables the binary reads, from `--help` (`[env: FLOWRUN_X=]`).
fn binary_variables() -> BTreeSet<String> {
    let output = Command::new(env!("CARGO_BIN_EXE_flowrun-operator"))
        .arg("--help")
        .output()
        .expect("the operator runs");
    let help = String::from_utf8_lossy(&output.stdout).into_owned();
    help.split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split(['=', ']']).next())
        .map(str::to_owned)
        .collect()
}

/// `FLOWRUN_*` variables the chart sets on the operator's container, in any of its Deployments
/// (one, or one per shard).
fn chart_variables(values: &Value) -> BTreeSet<String> {
    let objects = render("flowrun-system", values);
    of_kind(&objects, "Deployment")
        .into_iter()
        .flat_map(|deployment| {
            deployment["spec"]["template"]["spec"]["containers"][0]["env"]
                .as_array()
                .expect("env is a list")
                .iter()
                .filter_map(|variable| variable["name"].as_str())
                .filter(|name| name.starts_with("FLOWRUN_"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn chart_sets_every_flag_of_the_operator_and_no_other() {
    let binary = binary_variables();
    assert!(binary.contains("FLOWRUN_CONCURRENCY"), "{binary:?}");
    let mut chart = chart_variables(&json!({}));
    chart.extend(chart_variables(&json!({
        "aws": {"region": "eu-west-1"},
        "controller": {
            "defaultRegion": "eu-central-1",
            "watchNamespaces": ["team-a"],
            "requirePolicy": true,
        },
        "sharding": {"label": "team", "shards": [{"name": "payments"}]},
    })));

    let unknown: Vec<_> = chart.difference(&binary).collect();
    assert!(
        unknown.is_empty(),
        "the chart sets variables the operator does not read: {unknown:?}"
    );
    // The chart sets POD_NAMESPACE, which the operator takes as the Lease's namespace.
    let missing: Vec<_> = binary
        .difference(&chart)
        .filter(|name| *name != "FLOWRUN_LEADER_ELECTION_NAMESPACE")
        .collect();
    assert!(
        missing.is_empty(),
        "the chart has no value for these flags: {missing:?}; add them to \
         charts/flowrun-operator (values.yaml, values.schema.json, templates/deployment.yaml)"
    );
}
