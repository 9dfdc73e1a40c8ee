//! Misconfiguration ends the operator at once with one clear error line.

use std::process::Command;

fn operator() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flowrun-operator"));
    for (key, _) in std::env::vars() {
        if key.starts_with("FLOWRUN_") {
            command.env_remove(key);
        }
    }
    command
}

#[test]
fn bad_flag_value_is_one_clear_error_and_exit_code_two() {
    let output = operator()
        .arg("--not-found-grace=soon")
        .output()
        .expect("operator runs");

    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--not-found-grace"), "{stderr}");
    assert!(stderr.contains("not a duration"), "{stderr}");
}

#[test]
fn unreachable_api_server_is_one_clear_error_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    // Port 9 (discard) on loopback: nothing listens there.
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:9'}\n\
         users:\n- name: u\n  user: {token: t}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\n\
         current-context: x\n",
    )
    .expect("kubeconfig written");

    let output = operator()
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .expect("operator runs");

    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("error: failed to reach the Kubernetes API server"),
        "{stderr}"
    );
}

#[test]
fn missing_kubeconfig_is_one_line_that_names_each_cause_once() {
    let output = operator()
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("operator runs");

    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: failed to load Kubernetes credentials"),
        "{stderr}"
    );
    for cause in [
        "/nonexistent/kubeconfig",
        "No such file or directory",
        "failed to infer config",
    ] {
        assert_eq!(stderr.matches(cause).count(), 1, "{cause:?} in {stderr}");
    }
}

#[test]
fn help_lists_every_flag_with_its_environment_variable() {
    let output = operator().arg("--help").output().expect("operator runs");
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--default-region",
        "FLOWRUN_DEFAULT_REGION",
        "--watch-namespaces",
        "--concurrency",
        "--start-rate-limit",
        "--aws-timeout",
        "--not-found-grace",
        "--log-format",
        "--log-level",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
}
