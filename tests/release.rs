//! The release binary, the one the image ships (`cargo build --release --locked`, as in the
//! Dockerfile), on the real API server: it serves its probes, starts a flow, and stops cleanly
//! on SIGTERM. hack/test.sh builds it and names it in FLOWRUN_RELEASE_BINARY.

mod support;

use std::fs::File;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flowrun_api::flowrun::Phase;
use support::cluster::{cluster, repo_root};
use support::flowruns::{FLOWS, World};

#[tokio::test]
async fn release_binary_starts_a_flow_and_stops_cleanly_on_sigterm() {
    // Never skipped in silence: a skip would read as a pass.
    let binary = std::env::var_os("FLOWRUN_RELEASE_BINARY").expect(
        "FLOWRUN_RELEASE_BINARY is not set: run the suite with hack/test.sh, which builds the \
         release binary and sets it, or build it (cargo build --release --bin \
         flowrun-operator) and set FLOWRUN_RELEASE_BINARY=target/release/flowrun-operator",
    );
    let world = World::new("release", FLOWS).await;
    let log_path = repo_root().join(format!("target/test-logs/{}-release.log", world.namespace));
    let log = File::create(&log_path).expect("create the log");
    let mut child = Command::new(&binary)
        .args([
            &format!("--watch-namespaces={}", world.namespace),
            "--metrics-address=127.0.0.1:0",
            "--log-format=json",
        ])
        .env("KUBECONFIG", &cluster().operator_kubeconfig)
        .env("AWS_ENDPOINT_URL_APPFLOW", world.appflow.endpoint_url())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "AKIDRELEASE")
        .env("AWS_SECRET_ACCESS_KEY", "release-secret")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("share the log"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|error| panic!("start {}: {error}", binary.to_string_lossy()));
    let logs = || std::fs::read_to_string(&log_path).unwrap_or_default();

    // JSON logs: the line announcing the HTTP server carries its address.
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = loop {
        let address = logs()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find(|line| line["message"] == "Serving /metrics, /healthz and /readyz")
            .and_then(|line| line["address"].as_str().map(str::to_owned));
        if let Some(address) = address {
            break format!("http://{address}");
        }
        assert!(Instant::now() < deadline, "no HTTP server:\n{}", logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = reqwest::get(format!("{url}/readyz"))
            .await
            .expect("GET /readyz");
        if ready.status().is_success() {
            break;
        }
        assert!(Instant::now() < deadline, "not ready:\n{}", logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    world.create("release", "on-demand").await;
    world
        .wait_for("release", Duration::from_secs(30), None, |status| {
            status.phase == Some(Phase::Running)
        })
        .await;
    assert_eq!(world.appflow.stats().await.executions("on-demand"), 1);

    let pid = child.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll the operator") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "no exit after SIGTERM:\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit {status} after SIGTERM:\n{}", logs());
    assert!(logs().contains("Stopped flowrun-operator"), "{}", logs());
}
