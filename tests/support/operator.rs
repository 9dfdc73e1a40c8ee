//! The operator binary under test, run as a child process the way users run it: flags and
//! environment only, the standard AWS chain pointed at the local AppFlow endpoint.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::cluster::{cluster, repo_root};

pub struct Operator {
    child: Child,
    log: PathBuf,
}

impl Operator {
    /// Starts the operator watching only `namespace`, so concurrent tests never share FlowRuns.
    /// `extra_args` override the fast test defaults.
    pub fn start(namespace: &str, appflow_endpoint: &str, extra_args: &[&str]) -> Self {
        let watch = format!("--watch-namespaces={namespace}");
        let args: Vec<&str> = [watch.as_str()]
            .into_iter()
            .chain(extra_args.iter().copied())
            .collect();
        Self::start_with(
            &cluster().operator_kubeconfig,
            namespace,
            appflow_endpoint,
            &args,
        )
    }

    /// Starts the operator with these credentials and flags (on top of the fast test defaults);
    /// `name` names its log file.
    pub fn start_with(
        kubeconfig: &Path,
        name: &str,
        appflow_endpoint: &str,
        args: &[&str],
    ) -> Self {
        Self::start_with_env(kubeconfig, name, appflow_endpoint, args, &[])
    }

    /// Like [`Operator::start_with`], with extra environment variables (e.g. its own
    /// `AWS_ACCESS_KEY_ID`, so the endpoint's request log tells two operators apart).
    pub fn start_with_env(
        kubeconfig: &Path,
        name: &str,
        appflow_endpoint: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let log_dir = repo_root().join("target/test-logs");
        std::fs::create_dir_all(&log_dir).expect("failed to create target/test-logs");
        let log = log_dir.join(format!(
            "{name}-operator-{}.log",
            uuid::Uuid::new_v4().simple()
        ));
        let stdout = File::create(&log).expect("failed to create the operator log");
        let stderr = stdout
            .try_clone()
            .expect("failed to share the operator log");
        // FLOWRUN_OPERATOR_BIN runs another build instead (e.g. to benchmark two versions).
        let binary = std::env::var_os("FLOWRUN_OPERATOR_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_flowrun-operator").into());
        let child = Command::new(binary)
            .args([
                "--metrics-address=127.0.0.1:0",
                "--retry-initial-delay=200ms",
                "--retry-max-delay=2s",
                "--aws-timeout=5s",
                "--start-rate-limit=1000",
                "--poll-initial-interval=250ms",
                "--poll-max-interval=1s",
                "--log-level=info,flowrun_operator=debug",
            ])
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("AWS_ENDPOINT_URL_APPFLOW", appflow_endpoint)
            // The endpoint also answers STS AssumeRole, for FlowRunPolicy roles.
            .env("AWS_ENDPOINT_URL_STS", appflow_endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "AKIDOPERATOR")
            .env("AWS_SECRET_ACCESS_KEY", "operator-secret")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
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

    /// SIGTERM, as Kubernetes stops a pod; waits up to `timeout` for the exit code.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(code) = self.exited() {
                return Some(code);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// `http://127.0.0.1:PORT` of /metrics, /healthz and /readyz, from the operator's log.
    pub async fn http_url(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let logs = self.logs();
            let port = logs
                .lines()
                .find(|line| line.contains("Serving /metrics"))
                .and_then(|line| line.split("127.0.0.1:").nth(1))
                .map(|rest| {
                    rest.chars()
                        .take_while(char::is_ascii_digit)
                        .collect::<String>()
                });
            if let Some(port) = port.filter(|port| !port.is_empty()) {
                return format!("http://127.0.0.1:{port}");
            }
            assert!(
                Instant::now() < deadline,
                "the operator serves no HTTP after 30 s:\n{logs}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The value of the sample named exactly `series` (name and labels) in its /metrics.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        metric(&self.http_url().await, series).await
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

impl Operator {
    /// The operator's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `(resident memory in KiB, peak resident memory in KiB, CPU seconds user + system)` of the
    /// running operator, from `/proc`.
    pub fn footprint(&self) -> Option<(u64, u64, f64)> {
        process_footprint(self.pid())
    }
}

/// `(VmRSS KiB, VmHWM KiB, utime + stime seconds)` of a process, from `/proc/<pid>/status` and
/// `/proc/<pid>/stat`; `None` once it has exited.
pub fn process_footprint(pid: u32) -> Option<(u64, u64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|value| value.parse::<u64>().ok())
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may contain spaces, ends with ") ".
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let hz = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| {
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(100.0);
    Some((kib("VmRSS:")?, kib("VmHWM:")?, ticks as f64 / hz))
}

/// The value of the sample named exactly `series` (name and labels) in `base`/metrics.
pub async fn metric(base: &str, series: &str) -> Option<f64> {
    let url = format!("{base}/metrics");
    let response = reqwest::get(&url)
        .await
        .unwrap_or_else(|error| panic!("GET {url}: {error}"));
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}
