//! Report, for machines: Prometheus metrics and the liveness and readiness probes, served over
//! HTTP on one port (`/metrics`, `/healthz`, `/readyz`).
//!
//! Every label has a small, fixed set of values (operations, outcomes, phases, reasons), never
//! a FlowRun name or an error message, so the number of series stays bounded however many
//! FlowRuns there are.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::appflow::{
    AppFlow, AppFlowError, FailureKind, FlowKey, RecordsPage, StartFlowRequest, StartedFlow,
};
use crate::flowrun::{FlowRun, FlowRunStatus, Phase};
use crate::lock;

/// OpenMetrics text, which Prometheus scrapes natively.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

const RECONCILE_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
const CALL_BUCKETS: [f64; 11] = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// Flow runs take seconds to hours.
const RUN_BUCKETS: [f64; 13] = [
    5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0,
];
/// Phases always reported by `flowrun_flowruns`, at 0 when no FlowRun is in them.
const PHASES: [&str; 7] = [
    "Pending",
    "Starting",
    "Running",
    "Succeeded",
    "Failed",
    "Canceled",
    "Activated",
];
/// AppFlow error codes reported as themselves; any other code is reported as `OtherError`.
const KNOWN_ERROR_CODES: [&str; 9] = [
    "ResourceNotFoundException",
    "ValidationException",
    "UnsupportedOperationException",
    "AccessDeniedException",
    "ServiceQuotaExceededException",
    "ConflictException",
    "InternalServerException",
    "ConnectorAuthenticationException",
    "ConnectorServerException",
];

/// What this replica does, as `/readyz` and `flowrun_leader` report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Starting up: not leading, and (with leader election) the Lease was not read yet.
    Starting,
    /// Another replica leads; this one takes over when it stops.
    Standby { leader: Option<String> },
    /// This replica reconciles.
    Leading,
    /// Shutting down, or the Lease was lost.
    Stopping,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

struct Metrics {
    reconciles: Counter,
    reconcile_duration: Histogram,
    reconcile_errors: Family<ReasonLabels, Counter>,
    appflow_calls: Family<CallLabels, Counter>,
    appflow_call_duration: Family<OperationLabels, Histogram>,
    flowruns: Family<PhaseLabels, Gauge>,
    run_duration: Family<PhaseLabels, Histogram>,
    leader: Gauge,
    events_dropped: Counter,
}

#[derive(Default)]
struct Watches {
    stores: Vec<Store<DeserializeGuard<FlowRun>>>,
    synced: usize,
}

/// The operator's metrics and health, shared by the controller, the leader election and the
/// HTTP server.
pub struct Telemetry {
    registry: Registry,
    metrics: Metrics,
    role: Mutex<Role>,
    watches: Mutex<Watches>,
    /// One scrape at a time: the phase gauges are recounted for each.
    scrape: Mutex<()>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    pub fn new() -> Self {
        let metrics = Metrics {
            reconciles: Counter::default(),
            reconcile_duration: Histogram::new(RECONCILE_BUCKETS),
            reconcile_errors: Family::default(),
            appflow_calls: Family::default(),
            appflow_call_duration: Family::new_with_constructor(|| Histogram::new(CALL_BUCKETS)),
            flowruns: Family::default(),
            run_duration: Family::new_with_constructor(|| Histogram::new(RUN_BUCKETS)),
            leader: Gauge::default(),
            events_dropped: Counter::default(),
        };
        // Present from the start, so that dashboards and alerts see zeros rather than nothing.
        for phase in ["Succeeded", "Failed", "Canceled"] {
            let _ = metrics.run_duration.get_or_create_owned(&PhaseLabels {
                phase: phase.to_owned(),
            });
        }
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);

        let mut registry = Registry::with_prefix("flowrun");
        registry.register(
            "reconciles",
            "FlowRun reconciles completed, successful or not",
            metrics.reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took, AppFlow and Kubernetes calls included",
            metrics.reconcile_duration.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by reason (Conflict, NotFound, Forbidden, Invalid, \
             Throttled, ServerError, ApiError, Transport, Other); they are retried with backoff",
            metrics.reconcile_errors.clone(),
        );
        registry.register(
            "appflow_calls",
            "AppFlow API calls by operation and outcome (ok, throttled, unavailable, error, or \
             the AWS error code)",
            metrics.appflow_calls.clone(),
        );
        registry.register(
            "appflow_call_duration_seconds",
            "Time one AppFlow API call took, the SDK's retries included",
            metrics.appflow_call_duration.clone(),
        );
        registry.register(
            "flowruns",
            "FlowRuns watched by this replica, by phase (Invalid: not readable)",
            metrics.flowruns.clone(),
        );
        registry.register(
            "run_duration_seconds",
            "Duration of finished flow runs, from the first StartFlow attempt to the end, by \
             final phase",
            metrics.run_duration.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica leads (reconciles), 0 while it stands by",
            metrics.leader.clone(),
        );
        registry.register(
            "events_dropped",
            "Kubernetes events dropped because too many were waiting to be published (the \
             statuses carry the same facts)",
            metrics.events_dropped.clone(),
        );
        registry.register("build_info", "The operator's version", build_info);
        Telemetry {
            registry,
            metrics,
            role: Mutex::new(Role::Starting),
            watches: Mutex::default(),
            scrape: Mutex::default(),
        }
    }

    pub fn set_role(&self, role: Role) {
        self.metrics
            .leader
            .set(i64::from(matches!(role, Role::Leading)));
        *lock(&self.role) = role;
    }

    pub fn role(&self) -> Role {
        lock(&self.role).clone()
    }

    /// Follows a controller's cache: readiness waits until it has synced, and the phase gauges
    /// count its FlowRuns. The future never resolves: poll it beside the controller, in the same
    /// task. (The cache's readiness signal keeps one waker: a waiter in another task could take
    /// the controller's turn and stall it.)
    pub fn watch_store(
        self: &Arc<Self>,
        store: Store<DeserializeGuard<FlowRun>>,
    ) -> impl Future<Output = ()> + Send + 'static {
        lock(&self.watches).stores.push(store.clone());
        let telemetry = Arc::clone(self);
        async move {
            if store.wait_until_ready().await.is_ok() {
                lock(&telemetry.watches).synced += 1;
                tracing::info!("FlowRun watch synced");
            }
            std::future::pending::<()>().await;
        }
    }

    /// `(ready, what /readyz says)`.
    pub fn readiness(&self) -> (bool, String) {
        let watches = lock(&self.watches);
        readiness(&self.role(), watches.stores.len(), watches.synced)
    }

    /// Times a reconcile and counts it, and its error by reason.
    pub async fn measure_reconcile<T, E>(
        &self,
        reconcile: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E>
    where
        E: std::error::Error + 'static,
    {
        let started = Instant::now();
        let result = reconcile.await;
        self.metrics
            .reconcile_duration
            .observe(started.elapsed().as_secs_f64());
        self.metrics.reconciles.inc();
        if let Err(error) = &result {
            self.metrics
                .reconcile_errors
                .get_or_create(&ReasonLabels {
                    reason: error_reason(error),
                })
                .inc();
        }
        result
    }

    /// Times an AppFlow call and counts it by outcome.
    pub async fn measure_call<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, AppFlowError>>,
    ) -> Result<T, AppFlowError> {
        let started = Instant::now();
        let result = call.await;
        self.metrics
            .appflow_call_duration
            .get_or_create(&OperationLabels { operation })
            .observe(started.elapsed().as_secs_f64());
        self.metrics
            .appflow_calls
            .get_or_create(&CallLabels {
                operation,
                outcome: call_outcome(result.as_ref().err()),
            })
            .inc();
        result
    }

    pub fn count_dropped_event(&self) {
        self.metrics.events_dropped.inc();
    }

    /// Call after a status write: a run that just finished adds its duration.
    pub fn record_transition(&self, before: Option<&FlowRunStatus>, after: Option<&FlowRunStatus>) {
        if let Some((phase, seconds)) = finished_run(before, after) {
            self.metrics
                .run_duration
                .get_or_create(&PhaseLabels { phase })
                .observe(seconds);
        }
    }

    /// The metrics in OpenMetrics text.
    pub fn encode(&self) -> String {
        let _one_at_a_time = lock(&self.scrape);
        let counts = {
            let watches = lock(&self.watches);
            count_phases(watches.stores.iter().flat_map(|store| store.state()))
        };
        self.metrics.flowruns.clear();
        for (phase, count) in counts {
            self.metrics
                .flowruns
                .get_or_create(&PhaseLabels { phase })
                .set(count);
        }
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!(%error, "Failed to encode the metrics");
        }
        text
    }
}

/// Readiness: a leader is ready once every watch has synced; a standby is ready (it must be,
/// or a rolling update and a PodDisruptionBudget would count it as down) and says so.
pub(crate) fn readiness(role: &Role, watches: usize, synced: usize) -> (bool, String) {
    match role {
        Role::Starting => (false, "not ready: starting".to_owned()),
        Role::Standby { leader } => (
            true,
            format!(
                "ok: standby, {} leads",
                leader.as_deref().unwrap_or("another replica")
            ),
        ),
        Role::Leading if watches == 0 || synced < watches => (
            false,
            format!("not ready: leading, FlowRun watches synced: {synced} of {watches}"),
        ),
        Role::Leading => (true, "ok: leading, FlowRun watch synced".to_owned()),
        Role::Stopping => (false, "not ready: shutting down".to_owned()),
    }
}

/// FlowRuns per phase; every phase of [`PHASES`] is present, `Invalid` counts unreadable ones.
fn count_phases(
    flowruns: impl Iterator<Item = Arc<DeserializeGuard<FlowRun>>>,
) -> Vec<(String, i64)> {
    let mut counts: Vec<(String, i64)> = PHASES.iter().map(|p| ((*p).to_owned(), 0)).collect();
    for flowrun in flowruns {
        let phase = match &flowrun.0 {
            Ok(flowrun) => phase_name(
                flowrun
                    .status
                    .as_ref()
                    .and_then(|status| status.phase)
                    .unwrap_or(Phase::Pending),
            ),
            Err(_) => "Invalid".to_owned(),
        };
        match counts.iter_mut().find(|(name, _)| *name == phase) {
            Some((_, count)) => *count += 1,
            None => counts.push((phase, 1)),
        }
    }
    counts
}

/// The phase as the API spells it (a unit variant's name).
fn phase_name(phase: Phase) -> String {
    format!("{phase:?}")
}

/// `(final phase, seconds)` when this write ended a run that AppFlow started.
fn finished_run(
    before: Option<&FlowRunStatus>,
    after: Option<&FlowRunStatus>,
) -> Option<(String, f64)> {
    let after = after?;
    let phase = after.phase?;
    let ended = phase.is_final() && phase != Phase::Activated && after.execution_id.is_some();
    if !ended || before.and_then(|status| status.phase) == Some(phase) {
        return None;
    }
    let start = after.start_time.as_ref()?.0;
    let end = after.completion_time.as_ref()?.0;
    let seconds = end.duration_since(start).as_secs_f64();
    Some((phase_name(phase), seconds.max(0.0)))
}

/// The reason label of a failed reconcile, from the Kubernetes error in its source chain.
fn error_reason(error: &(dyn std::error::Error + 'static)) -> &'static str {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(kube) = error.downcast_ref::<kube::Error>() {
            return match kube {
                kube::Error::Api(status) => match status.code {
                    409 => "Conflict",
                    404 | 410 => "NotFound",
                    401 | 403 => "Forbidden",
                    400 | 422 => "Invalid",
                    429 => "Throttled",
                    500..=599 => "ServerError",
                    _ => "ApiError",
                },
                _ => "Transport",
            };
        }
        current = error.source();
    }
    "Other"
}

/// The outcome label of an AppFlow call.
fn call_outcome(error: Option<&AppFlowError>) -> &'static str {
    let Some(error) = error else {
        return "ok";
    };
    if error.kind == FailureKind::Throttled {
        return "throttled";
    }
    match error.code.as_deref() {
        Some(code) => KNOWN_ERROR_CODES
            .iter()
            .find(|known| **known == code)
            .copied()
            .unwrap_or("OtherError"),
        None if error.kind == FailureKind::Unavailable => "unavailable",
        None => "error",
    }
}

/// An [`AppFlow`] that counts and times every call of the one it wraps.
pub struct Metered<A> {
    inner: A,
    telemetry: Arc<Telemetry>,
}

impl<A> Metered<A> {
    pub fn new(inner: A, telemetry: Arc<Telemetry>) -> Self {
        Metered { inner, telemetry }
    }
}

impl<A: AppFlow> AppFlow for Metered<A> {
    async fn start_flow(&self, request: &StartFlowRequest) -> Result<StartedFlow, AppFlowError> {
        self.telemetry
            .measure_call("StartFlow", self.inner.start_flow(request))
            .await
    }

    async fn describe_execution_records(
        &self,
        flow: &FlowKey,
        next_token: Option<&str>,
    ) -> Result<RecordsPage, AppFlowError> {
        self.telemetry
            .measure_call(
                "DescribeFlowExecutionRecords",
                self.inner.describe_execution_records(flow, next_token),
            )
            .await
    }

    async fn cancel_flow_executions(
        &self,
        flow: &FlowKey,
        execution_ids: &[String],
    ) -> Result<Vec<String>, AppFlowError> {
        self.telemetry
            .measure_call(
                "CancelFlowExecutions",
                self.inner.cancel_flow_executions(flow, execution_ids),
            )
            .await
    }
}

/// The HTTP routes: `/metrics`, `/healthz` (the process serves), `/readyz` (see [`readiness`]).
pub fn router(telemetry: Arc<Telemetry>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(telemetry)
}

async fn metrics(State(telemetry): State<Arc<Telemetry>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], telemetry.encode())
}

async fn ready(State(telemetry): State<Arc<Telemetry>>) -> impl IntoResponse {
    let (ready, text) = telemetry.readiness();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, text)
}

/// Binds `address` (a bind error is returned at once) and serves the routes in the background
/// for the rest of the process; returns the address bound (for port 0, the port chosen).
pub async fn serve(address: SocketAddr, telemetry: Arc<Telemetry>) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router(telemetry)).await {
            tracing::error!(%error, "The metrics and probes server stopped");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    #[test]
    fn readiness_waits_for_every_watch_and_reports_standby_as_ready() {
        let leader = Some("op-b_1234".to_owned());
        let table: &[(Role, usize, usize, bool, &str)] = &[
            (Role::Starting, 0, 0, false, "not ready: starting"),
            (
                Role::Leading,
                0,
                0,
                false,
                "not ready: leading, FlowRun watches synced: 0 of 0",
            ),
            (
                Role::Leading,
                2,
                1,
                false,
                "not ready: leading, FlowRun watches synced: 1 of 2",
            ),
            (
                Role::Leading,
                2,
                2,
                true,
                "ok: leading, FlowRun watch synced",
            ),
            (
                Role::Standby { leader },
                0,
                0,
                true,
                "ok: standby, op-b_1234 leads",
            ),
            (
                Role::Standby { leader: None },
                0,
                0,
                true,
                "ok: standby, another replica leads",
            ),
            (Role::Stopping, 1, 1, false, "not ready: shutting down"),
        ];
        for (role, watches, synced, ready, text) in table {
            assert_eq!(
                readiness(role, *watches, *synced),
                (*ready, (*text).to_owned()),
                "{role:?}"
            );
        }
    }

    fn error(kind: FailureKind, code: Option<&str>) -> AppFlowError {
        AppFlowError {
            kind,
            code: code.map(str::to_owned),
            message: "a message that must never become a label".to_owned(),
        }
    }

    #[test]
    fn call_outcomes_are_a_small_fixed_set() {
        use FailureKind::*;
        let table = [
            (None, "ok"),
            (
                Some(error(Throttled, Some("ThrottlingException"))),
                "throttled",
            ),
            (Some(error(Throttled, None)), "throttled"),
            (
                Some(error(FlowNotFound, Some("ResourceNotFoundException"))),
                "ResourceNotFoundException",
            ),
            (
                Some(error(AccessDenied, Some("AccessDeniedException"))),
                "AccessDeniedException",
            ),
            (
                Some(error(Unavailable, Some("InternalServerException"))),
                "InternalServerException",
            ),
            (
                Some(error(Unavailable, Some("BrandNewException"))),
                "OtherError",
            ),
            (Some(error(Unavailable, None)), "unavailable"),
            (Some(error(InvalidRequest, None)), "error"),
        ];
        for (error, outcome) in table {
            assert_eq!(call_outcome(error.as_ref()), outcome, "{error:?}");
        }
    }

    #[test]
    fn reconcile_errors_are_labelled_by_the_kubernetes_error_in_their_source_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("failed to write the status")]
        struct Wrapper(#[source] kube::Error);

        let api = |code: u16| {
            kube::Error::Api(
                kube::core::Status::failure("message", "Reason")
                    .with_code(code)
                    .boxed(),
            )
        };
        assert_eq!(error_reason(&Wrapper(api(409))), "Conflict");
        assert_eq!(error_reason(&Wrapper(api(403))), "Forbidden");
        assert_eq!(error_reason(&Wrapper(api(422))), "Invalid");
        assert_eq!(error_reason(&Wrapper(api(503))), "ServerError");
        assert_eq!(error_reason(&Wrapper(api(418))), "ApiError");
        assert_eq!(
            error_reason(&Wrapper(kube::Error::LinesCodecMaxLineLengthExceeded)),
            "Transport"
        );
        assert_eq!(error_reason(&std::fmt::Error), "Other");
    }

    fn status(phase: Phase, execution: bool, start: i64, end: Option<i64>) -> FlowRunStatus {
        let time = |s: i64| Time(Timestamp::from_second(1_800_000_000 + s).expect("valid"));
        FlowRunStatus {
            phase: Some(phase),
            execution_id: execution.then(|| "e-1".to_owned()),
            start_time: Some(time(start)),
            completion_time: end.map(time),
            ..FlowRunStatus::default()
        }
    }

    #[test]
    fn a_run_duration_is_recorded_once_when_a_started_run_ends() {
        let running = status(Phase::Running, true, 0, None);
        let succeeded = status(Phase::Succeeded, true, 0, Some(90));
        let failed = status(Phase::Failed, true, 0, Some(30));
        assert_eq!(
            finished_run(Some(&running), Some(&succeeded)),
            Some(("Succeeded".to_owned(), 90.0))
        );
        assert_eq!(
            finished_run(Some(&running), Some(&failed)),
            Some(("Failed".to_owned(), 30.0))
        );
        // Written again (a retried reconcile): not a second run.
        assert_eq!(finished_run(Some(&succeeded), Some(&succeeded)), None);
        // Failed before AppFlow started anything, activated, or still running: no run ended.
        let never_started = status(Phase::Failed, false, 0, Some(600));
        assert_eq!(finished_run(None, Some(&never_started)), None);
        let activated = status(Phase::Activated, false, 0, Some(1));
        assert_eq!(finished_run(None, Some(&activated)), None);
        assert_eq!(finished_run(None, Some(&running)), None);
        assert_eq!(finished_run(Some(&running), None), None);
    }

    #[test]
    fn metrics_address_defaults_to_every_interface_on_port_8080() {
        use clap::Parser;

        use crate::settings::Settings;

        let parse = |args: &[&str]| {
            Settings::try_parse_from([&["flowrun-operator"], args].concat())
                .map(|settings| settings.metrics_address.to_string())
        };
        assert_eq!(parse(&[]).expect("default"), "0.0.0.0:8080");
        assert_eq!(
            parse(&["--metrics-address=[::]:9090"]).expect("IPv6"),
            "[::]:9090"
        );
        assert!(parse(&["--metrics-address=8080"]).is_err());
    }

    #[tokio::test]
    async fn endpoints_serve_metrics_health_and_readiness() {
        let telemetry = Arc::new(Telemetry::new());
        let address = serve("127.0.0.1:0".parse().expect("address"), telemetry.clone())
            .await
            .expect("bind");
        let base = format!("http://{address}");
        let http = reqwest::Client::new();
        let get = |path: &str| {
            let request = http.get(format!("{base}{path}"));
            async move {
                let response = request.send().await.expect("request");
                let status = response.status().as_u16();
                let content_type = response
                    .headers()
                    .get("content-type")
                    .map(|value| value.to_str().unwrap_or_default().to_owned());
                (status, content_type, response.text().await.expect("body"))
            }
        };

        assert_eq!(get("/healthz").await.0, 200);
        let (status, _, text) = get("/readyz").await;
        assert_eq!((status, text.as_str()), (503, "not ready: starting"));
        telemetry.set_role(Role::Standby { leader: None });
        assert_eq!(get("/readyz").await.0, 200);

        let call = telemetry.measure_call("StartFlow", async {
            Err::<(), _>(error(FailureKind::Throttled, Some("ThrottlingException")))
        });
        assert!(call.await.is_err());
        let (status, content_type, text) = get("/metrics").await;
        assert_eq!(status, 200);
        assert_eq!(content_type.as_deref(), Some(CONTENT_TYPE));
        for line in [
            "flowrun_appflow_calls_total{operation=\"StartFlow\",outcome=\"throttled\"} 1",
            "flowrun_flowruns{phase=\"Running\"} 0",
            "flowrun_leader 0",
            "flowrun_reconciles_total 0",
            "# TYPE flowrun_reconcile_duration_seconds histogram",
            "# TYPE flowrun_run_duration_seconds histogram",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "no line {line:?} in:\n{text}"
            );
        }
        assert!(text.contains("flowrun_build_info{version=\""), "{text}");
        assert_eq!(get("/nothing").await.0, 404);
    }
}
