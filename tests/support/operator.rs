//! The operator binary under test, run as a child process the way users run it: flags and
//! environment only, the standard AWS chain pointed at the local AppFlow endpoint.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::cluster::{cluster, repo_root};

pub struct Operator {
    child: Child,
    log: PathBuf,
}

impl Operator {
    /// Starts the operator watching only `namespace`, so concurrent tests never share FlowRuns.
    /// `extra_args` override the fast test defaults.
    pub fn start(namespace: &str, appflow_endpoint: &str, extra_args: &[&str]) -> Self {
        let log_dir = repo_root().join("target/test-logs");
        std::fs::create_dir_all(&log_dir).expect("failed to create target/test-logs");
        let log = log_dir.join(format!(
            "{namespace}-operator-{}.log",
            uuid::Uuid::new_v4().simple()
        ));
        let stdout = File::create(&log).expect("failed to create the operator log");
        let stderr = stdout
            .try_clone()
            .expect("failed to share the operator log");
        let child = Command::new(env!("CARGO_BIN_EXE_flowrun-operator"))
            .args([
                &format!("--watch-namespaces={namespace}"),
                "--retry-initial-delay=200ms",
                "--retry-max-delay=2s",
                "--aws-timeout=5s",
                "--start-rate-limit=1000",
                "--poll-initial-interval=250ms",
                "--poll-max-interval=1s",
                "--log-level=info,flowrun_operator=debug",
            ])
            .args(extra_args)
            .env("KUBECONFIG", &cluster().operator_kubeconfig)
            .env("AWS_ENDPOINT_URL_APPFLOW", appflow_endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "AKIDOPERATOR")
            .env("AWS_SECRET_ACCESS_KEY", "operator-secret")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("failed to start the operator binary");
        Operator { child, log }
    }

    /// SIGKILL: no chance to finish anything, as when a node dies.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_path(&self) -> &PathBuf {
        &self.log
    }

    /// `Some(exit code)` once the process has ended.
    pub fn exited(&mut self) -> Option<i32> {
        self.child
            .try_wait()
            .expect("failed to poll the operator")
            .map(|status| status.code().unwrap_or(-1))
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}
