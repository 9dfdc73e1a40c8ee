//! `LocalAppFlow`: one `appflow-local` process per test, a real `aws-sdk-appflow` client pointed
//! at it, and typed access to its control API (`/_local/...`).
//!
//! ```ignore
//! let appflow = LocalAppFlow::start("flows:\n  - name: demo\n    runSeconds: 0.3\n");
//! let started = appflow.sdk_client().start_flow().flow_name("demo").send().await?;
//! assert_eq!(appflow.stats().await.executions("demo"), 1);
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_sdk_appflow::config::retry::RetryConfig;
use aws_sdk_appflow::config::timeout::TimeoutConfig;
use aws_sdk_appflow::config::{BehaviorVersion, Credentials, Region};
use serde::{Deserialize, Serialize};
use tempfile::TempDir;

/// The access key id of `sdk_client()`, as the request log reports it.
pub const TEST_ACCESS_KEY_ID: &str = "AKIDAPPFLOWLOCAL";
pub const TEST_REGION: &str = "us-east-1";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);

/// The `appflow-local` binary, built in the profile of the test (or benchmark) that runs it.
pub fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| super::workspace::binary("appflow-local"))
}

pub struct LocalAppFlow {
    child: Child,
    endpoint: String,
    log_path: PathBuf,
    http: reqwest::Client,
    // Holds the config, address and log files until the endpoint is gone.
    _dir: TempDir,
}

impl LocalAppFlow {
    /// Starts an endpoint serving the flows in `config_yaml` (the `examples/appflow-local/flows.yaml`
    /// schema) on a free port, and waits until it listens.
    pub fn start(config_yaml: &str) -> Self {
        let dir = tempfile::tempdir().expect("create a temp dir for appflow-local");
        let config_path = dir.path().join("appflow-local.yaml");
        let address_path = dir.path().join("address");
        let log_path = dir.path().join("appflow-local.log");
        std::fs::write(&config_path, config_yaml).expect("write the appflow-local config");
        let log = File::create(&log_path).expect("create the appflow-local log");
        let mut child = Command::new(binary())
            .arg("--config")
            .arg(&config_path)
            .args(["--listen", "127.0.0.1:0", "--address-file"])
            .arg(&address_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn appflow-local");

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let endpoint = loop {
            if let Ok(address) = std::fs::read_to_string(&address_path) {
                break address;
            }
            let exited = child.try_wait().expect("poll appflow-local");
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            if let Some(status) = exited {
                panic!("appflow-local exited with {status} before listening:\n{log}");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("appflow-local did not listen within {STARTUP_TIMEOUT:?}:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Self {
            child,
            endpoint,
            log_path,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("build the control API client"),
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint_url(&self) -> &str {
        &self.endpoint
    }

    /// The settings of `sdk_client()`, to adjust (timeouts, retries, credentials) before `build()`.
    pub fn sdk_config_builder(&self) -> aws_sdk_appflow::config::Builder {
        aws_sdk_appflow::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(Region::new(TEST_REGION))
            .credentials_provider(Credentials::new(
                TEST_ACCESS_KEY_ID,
                "appflow-local-secret",
                None,
                None,
                "appflow-local-test",
            ))
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(3)
                    .with_initial_backoff(Duration::from_millis(10)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_secs(5))
                    .operation_timeout(Duration::from_secs(15))
                    .build(),
            )
    }

    /// A real AppFlow client: us-east-1, static test credentials, 3 attempts with 10 ms initial
    /// backoff, 5 s per attempt and 15 s per operation.
    pub fn sdk_client(&self) -> aws_sdk_appflow::Client {
        aws_sdk_appflow::Client::from_conf(self.sdk_config_builder().build())
    }

    /// What the endpoint wrote to stderr so far.
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed: {status}");
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll appflow-local") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "appflow-local did not exit within {SHUTDOWN_TIMEOUT:?} of SIGTERM:\n{}",
                self.server_log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub async fn stats(&self) -> Stats {
        self.control(reqwest::Method::GET, "/_local/stats", None)
            .await
            .json()
            .await
            .expect("decode /_local/stats")
    }

    /// Every AppFlow call so far, oldest first.
    pub async fn requests(&self) -> Vec<RequestRecord> {
        self.control(reqwest::Method::GET, "/_local/requests", None)
            .await
            .json()
            .await
            .expect("decode /_local/requests")
    }

    /// The calls of one operation (e.g. "StartFlow"), oldest first.
    pub async fn requests_for(&self, operation: &str) -> Vec<RequestRecord> {
        let mut requests = self.requests().await;
        requests.retain(|request| request.operation == operation);
        requests
    }

    /// Replaces all fault rules.
    pub async fn set_faults(&self, faults: &[Fault]) {
        let body = serde_json::to_value(faults).expect("encode fault rules");
        self.control(reqwest::Method::PUT, "/_local/faults", Some(body))
            .await;
    }

    pub async fn clear_faults(&self) {
        self.control(reqwest::Method::DELETE, "/_local/faults", None)
            .await;
    }

    /// Forgets every StartFlow clientToken, as if AppFlow's 8-hour window had passed.
    pub async fn expire_tokens(&self) {
        self.control(reqwest::Method::POST, "/_local/expire-tokens", None)
            .await;
    }

    /// Creates or replaces one flow, given in the config file's flow schema, e.g.
    /// `"name: late\nrunSeconds: 0.5"`.
    pub async fn upsert_flow(&self, flow_yaml: &str) {
        let flow: serde_json::Value = serde_yaml_ng::from_str(flow_yaml).expect("parse flow YAML");
        self.control(reqwest::Method::PUT, "/_local/flows", Some(flow))
            .await;
    }

    pub async fn delete_flow(&self, name: &str) {
        self.control(reqwest::Method::DELETE, &flow_path(name), None)
            .await;
    }

    /// Ends every in-progress run of the flow now; returns how many.
    pub async fn finish_runs(&self, name: &str) -> u64 {
        let path = format!("{}/finish", flow_path(name));
        let answer: serde_json::Value = self
            .control(reqwest::Method::POST, &path, None)
            .await
            .json()
            .await
            .expect("finish answer");
        answer["finished"].as_u64().expect("finished count")
    }

    /// Lets the local STS hand out credentials for `role_arn` (with this external ID, if any).
    pub async fn upsert_role(&self, role_arn: &str, external_id: Option<&str>) {
        let role = serde_json::json!({"arn": role_arn, "externalId": external_id});
        self.control(reqwest::Method::PUT, "/_local/roles", Some(role))
            .await;
    }

    /// The credentials the local STS issued, oldest first.
    pub async fn issued_credentials(&self) -> Vec<IssuedCredentials> {
        self.control(reqwest::Method::GET, "/_local/sts", None)
            .await
            .json()
            .await
            .expect("decode /_local/sts")
    }

    /// Back to the configured flows, with no runs, tokens, request log, stats or faults.
    pub async fn reset(&self) {
        self.control(reqwest::Method::POST, "/_local/reset", None)
            .await;
    }

    async fn control(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.endpoint));
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|err| panic!("{method} {path} failed: {err}"));
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            panic!("{method} {path} answered {status}: {text}");
        }
        response
    }
}

impl Drop for LocalAppFlow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One entry of `GET /_local/sts`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuedCredentials {
    pub access_key_id: String,
    pub role_arn: String,
    pub session_name: String,
    pub external_id: Option<String>,
}

/// `GET /_local/stats`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Attempts as received, faulted and invalid ones included.
    pub calls_by_operation: BTreeMap<String, u64>,
    pub client_tokens: BTreeMap<String, TokenStats>,
    pub executions_by_flow: BTreeMap<String, u64>,
}

impl Stats {
    pub fn calls(&self, operation: &str) -> u64 {
        self.calls_by_operation
            .get(operation)
            .copied()
            .unwrap_or_default()
    }

    pub fn token(&self, client_token: &str) -> TokenStats {
        self.client_tokens
            .get(client_token)
            .copied()
            .unwrap_or_default()
    }

    /// Tokens StartFlow was called with more than once: each such call after the first is a
    /// replay, e.g. by an operator restarted between StartFlow and its status write.
    pub fn replayed_tokens(&self) -> usize {
        self.client_tokens
            .values()
            .filter(|token| token.start_flow_calls > 1)
            .count()
    }

    /// Runs started for the flow, ever (since the last reset).
    pub fn executions(&self, flow_name: &str) -> u64 {
        self.executions_by_flow
            .get(flow_name)
            .copied()
            .unwrap_or_default()
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenStats {
    pub start_flow_calls: u64,
    /// Runs actually started under the token: 1 however often it is replayed within the window.
    pub executions: u64,
}

/// One entry of `GET /_local/requests`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    pub seq: u64,
    /// Epoch seconds.
    pub time: f64,
    /// The `x-amzn-RequestId` sent back.
    pub request_id: String,
    pub operation: String,
    pub flow_name: Option<String>,
    pub client_token: Option<String>,
    /// From the SDK's `amz-sdk-request: attempt=N; max=M` header.
    pub attempt: Option<u32>,
    pub max_attempts: Option<u32>,
    /// From the SigV4 `Credential=AKID/date/region/...` scope.
    pub access_key_id: Option<String>,
    pub region: Option<String>,
    pub faults: Vec<FaultKind>,
    /// None while the request is held (or if its client gave up first).
    pub status: Option<u16>,
    pub error_type: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FaultKind {
    /// 429 ThrottlingException (the SDK retries it).
    Throttling,
    /// 500 InternalServerException (the SDK retries it).
    Internal,
    /// 402 ServiceQuotaExceededException.
    Quota,
    /// 409 ConflictException.
    Conflict,
    /// 404 ResourceNotFoundException.
    NotFound,
    /// 403 AccessDeniedException.
    AccessDenied,
    /// 400 ValidationException.
    Validation,
    /// Answers normally after a delay.
    Latency,
    /// Performs the operation, then holds the answer for a delay.
    SlowResponse,
    /// Holds the request until the client gives up (at most 10 minutes, or until shutdown).
    Hang,
}

/// One fault rule for `set_faults`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    operation: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    flow_name: Option<String>,
    kind: FaultKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    probability: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delay_ms: Option<u64>,
}

impl Fault {
    /// Every call of `operation` (an AppFlow operation name such as "StartFlow", or "*") fails
    /// or hangs as `kind` says. Use `Fault::latency` / `Fault::slow_response` for delays.
    pub fn new(operation: &str, kind: FaultKind) -> Self {
        Self {
            operation: operation.to_owned(),
            flow_name: None,
            kind,
            probability: None,
            count: None,
            delay_ms: None,
        }
    }

    /// Delays the call before it takes effect.
    pub fn latency(operation: &str, delay: Duration) -> Self {
        Self::delay(operation, FaultKind::Latency, delay)
    }

    /// Lets the call take effect, then delays its answer: a client killed meanwhile never
    /// learns the outcome.
    pub fn slow_response(operation: &str, delay: Duration) -> Self {
        Self::delay(operation, FaultKind::SlowResponse, delay)
    }

    fn delay(operation: &str, kind: FaultKind, delay: Duration) -> Self {
        Self {
            delay_ms: Some(u64::try_from(delay.as_millis()).expect("delay fits in u64 ms")),
            ..Self::new(operation, kind)
        }
    }

    /// Only calls naming this flow.
    pub fn for_flow(mut self, flow_name: &str) -> Self {
        self.flow_name = Some(flow_name.to_owned());
        self
    }

    /// Only the next `count` matching calls.
    pub fn times(mut self, count: u64) -> Self {
        self.count = Some(count);
        self
    }

    /// Each matching call with this chance (0..=1).
    pub fn with_probability(mut self, probability: f64) -> Self {
        self.probability = Some(probability);
        self
    }
}

fn flow_path(name: &str) -> String {
    // `#` is the only character a flow name allows that a URL path does not.
    format!("/_local/flows/{}", name.replace('#', "%23"))
}
