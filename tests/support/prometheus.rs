//! Real Prometheus tools for the monitoring tests: `promtool` and a `prometheus` server on
//! loopback, from Debian's packages (`hack/apiserver/build.sh --prometheus` fetches them once
//! into the cache beside the API server's binaries).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use super::cluster::{cached_tool, output_with_input};

/// The directory holding `prometheus` and `promtool`: `FLOWRUN_PROMETHEUS_BIN_DIR`, or the
/// cache that the build script fills (a no-op when it is filled already).
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| cached_tool("FLOWRUN_PROMETHEUS_BIN_DIR", "--prometheus"))
}

/// Runs `promtool ARGS` in `dir`, with `stdin` as its input.
pub fn promtool(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    output_with_input(
        Command::new(bin_dir().join("promtool"))
            .args(args)
            .current_dir(dir),
        stdin.unwrap_or_default().as_bytes(),
    )
}

/// The rules of the chart's PrometheusRule, rendered with `values` (plus `enabled`), as a
/// Prometheus rule file.
pub fn chart_rules(values: &Value) -> String {
    let mut values = values.clone();
    values["metrics"]["prometheusRule"]["enabled"] = Value::Bool(true);
    let objects = super::chart::render("flowrun-system", &values);
    let [rule] = super::chart::of_kind(&objects, "PrometheusRule")[..] else {
        panic!("the chart renders one PrometheusRule");
    };
    serde_yaml_ng::to_string(&rule["spec"]).expect("rules as YAML")
}

/// A Prometheus server on loopback that scrapes `targets` (host:port) every second as job
/// `job` and evaluates `rules` every second; stopped when dropped.
pub struct Prometheus {
    child: Child,
    pub url: String,
    http: reqwest::Client,
    dir: TempDir,
}

impl Prometheus {
    pub fn start(job: &str, targets: &[&str], rules: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temp dir for Prometheus");
        std::fs::write(dir.path().join("rules.yaml"), rules).expect("write the rules");
        let config = serde_json::json!({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": ["rules.yaml"],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}],
        });
        std::fs::write(dir.path().join("prometheus.yml"), config.to_string())
            .expect("write the config");
        // A free port: bound and released at once (Prometheus has no "port 0, tell me").
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("a log file");
        let child = Command::new(bin_dir().join("prometheus"))
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("share the log"))
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            dir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Waits (bounded) until the server answers `/-/ready`.
    pub async fn wait_ready(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let ready = self
                .http
                .get(format!("{}/-/ready", self.url))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success());
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus is not ready after {within:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `GET /api/v1/PATH?params`, the `data` of a successful answer or the error's text.
    pub async fn api(&self, path: &str, params: &[(&str, &str)]) -> Result<Value, String> {
        let mut url =
            reqwest::Url::parse(&format!("{}/api/v1/{path}", self.url)).expect("a valid URL");
        url.query_pairs_mut().extend_pairs(params);
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|error| error.to_string())?;
        let body: Value = response.json().await.map_err(|error| error.to_string())?;
        if body["status"] == "success" {
            Ok(body["data"].clone())
        } else {
            Err(format!("{}: {}", body["errorType"], body["error"]))
        }
    }

    /// The result vector of an instant query.
    pub async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let data = self.api("query", &[("query", expr)]).await?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// The alerts the rules hold now (pending and firing).
    pub async fn alerts(&self) -> Vec<Value> {
        self.api("alerts", &[])
            .await
            .map(|data| data["alerts"].as_array().cloned().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
