//! The workspace's crate boundaries, as its README states them: the API and the rules build
//! on no Kubernetes client, no async runtime and no AWS SDK, and the local AppFlow endpoint is
//! not built on the SDK it stands in for.

use std::process::Command;

/// Every crate `package` depends on, directly or not, for its normal (non-test) build.
fn dependencies(package: &str) -> Vec<String> {
    let output = Command::new(env!("CARGO"))
        .args(["tree", "--locked", "--offline", "--edges", "normal"])
        .args(["--prefix", "none", "--format", "{p}", "--package", package])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        output.status.success(),
        "cargo tree --package {package} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Fails naming the crates of `forbidden` (and any AWS SDK crate) that `package` depends on.
fn assert_none_of(package: &str, forbidden: &[&str]) {
    let found: Vec<String> = dependencies(package)
        .into_iter()
        .filter(|name| forbidden.contains(&name.as_str()) || name.starts_with("aws-"))
        .collect();
    assert!(
        found.is_empty(),
        "{package} must not depend on {found:?} (see the README's Layout)"
    );
}

/// A Kubernetes client, an async runtime, an HTTP stack.
const NETWORK: &[&str] = &[
    "kube",
    "kube-client",
    "kube-runtime",
    "tokio",
    "hyper",
    "reqwest",
];

#[test]
fn the_api_and_the_rules_have_no_client_runtime_or_aws_sdk() {
    for package in ["flowrun-api", "flowrun-core"] {
        let found = dependencies(package);
        assert!(
            found.iter().any(|name| name == "kube-core"),
            "{package}: cargo tree lists no kube-core, so this check reads nothing: {found:?}"
        );
        assert_none_of(package, NETWORK);
    }
}

#[test]
fn the_local_appflow_endpoint_is_not_built_on_the_aws_sdk_or_a_kubernetes_client() {
    assert_none_of("appflow-local", &["kube", "kube-client", "kube-runtime"]);
}

#[test]
fn the_kubectl_plugin_is_a_client_of_the_api_without_the_aws_sdk_or_the_operator() {
    let found = dependencies("kubectl-flowrun");
    assert!(
        found.iter().any(|name| name == "kube-client"),
        "kubectl-flowrun: cargo tree lists no kube-client, so this check reads nothing: {found:?}"
    );
    // aws-lc-rs is the TLS crypto kube uses, not the SDK.
    let forbidden: Vec<&String> = found
        .iter()
        .filter(|name| {
            ["flowrun-operator", "appflow-local"].contains(&name.as_str())
                || name.starts_with("aws-sdk-")
                || name.starts_with("aws-smithy-")
                || name.starts_with("aws-config")
        })
        .collect();
    assert!(
        forbidden.is_empty(),
        "kubectl-flowrun must not depend on {forbidden:?} (see the README's Layout)"
    );
}
