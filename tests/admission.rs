//! Bad FlowRuns are refused by `kubectl apply` with a message that says what to fix, before the
//! operator ever sees them.

mod support;

use flowrun_api::flowrun::FlowRun;
use kube::CustomResourceExt;
use support::cluster::{client, install_crd, kubectl, kubectl_apply, unique_namespace};

fn flowrun(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: appflow.flowrun.dev/v1alpha1\nkind: FlowRun\nmetadata:\n  name: {name}\nspec:\n{spec}\n"
    )
}

#[tokio::test]
async fn kubectl_apply_refuses_invalid_flowruns_saying_what_to_fix() {
    let client = client().await;
    install_crd(&client, &FlowRun::crd()).await;
    let namespace = unique_namespace(&client, "admission").await;
    let too_long = format!("a{}", "b".repeat(256));

    // (case, spec, what the message must say)
    let table = [
        (
            "missing flowName",
            "  region: us-east-1".to_owned(),
            "spec.flowName: Required value",
        ),
        (
            "space in flowName",
            "  flowName: my flow".to_owned(),
            "should match",
        ),
        (
            "one character",
            "  flowName: a".to_owned(),
            "should be at least 2",
        ),
        (
            "257 characters",
            format!("  flowName: {too_long}"),
            "may not be more than 256",
        ),
        (
            "leading dash",
            "  flowName: -flow".to_owned(),
            "should match",
        ),
        (
            "unknown field",
            "  flowName: ok-flow\n  flowname: typo".to_owned(),
            "unknown field \"spec.flowname\"",
        ),
        (
            "bad region",
            "  flowName: ok-flow\n  region: EU West".to_owned(),
            "spec.region",
        ),
    ];
    for (index, (case, spec, expected)) in table.iter().enumerate() {
        let output = kubectl_apply(&namespace, &flowrun(&format!("bad-{index}"), spec));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{case}: must be refused");
        assert!(stderr.contains(expected), "{case}: {stderr}");
    }
}

#[tokio::test]
async fn spec_cannot_change_after_creation_but_labels_can() {
    let client = client().await;
    install_crd(&client, &FlowRun::crd()).await;
    let namespace = unique_namespace(&client, "immutable").await;

    let created = kubectl_apply(&namespace, &flowrun("fixed", "  flowName: first-flow"));
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );

    let edited = kubectl_apply(&namespace, &flowrun("fixed", "  flowName: second-flow"));
    let stderr = String::from_utf8_lossy(&edited.stderr);
    assert!(!edited.status.success());
    assert!(
        stderr.contains("FlowRun spec is immutable; create a new FlowRun to run the flow again"),
        "{stderr}"
    );

    let labelled = kubectl()
        .args([
            "label",
            "--namespace",
            &namespace,
            "flowrun/fixed",
            "team=data",
        ])
        .output()
        .expect("kubectl runs");
    assert!(
        labelled.status.success(),
        "{}",
        String::from_utf8_lossy(&labelled.stderr)
    );
}
