//! The HTTP server for machines: `/metrics`, `/healthz` and `/readyz` on one port.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::Telemetry;

/// OpenMetrics text, which Prometheus asks for.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Prometheus' classic text format, for clients that do not ask for OpenMetrics (curl,
/// `promtool check metrics`, older scrapers).
const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The HTTP routes: `/metrics`, `/healthz` (the process serves), `/readyz` (see [`Telemetry::readiness`]).
pub fn router(telemetry: Arc<Telemetry>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(telemetry)
}

async fn metrics(
    State(telemetry): State<Arc<Telemetry>>,
    headers: axum::http::HeaderMap,
) -> impl IntoResponse {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|accept| accept.contains("application/openmetrics-text"));
    if openmetrics {
        ([(header::CONTENT_TYPE, CONTENT_TYPE)], telemetry.encode())
    } else {
        (
            [(header::CONTENT_TYPE, TEXT_CONTENT_TYPE)],
            classic_text(&telemetry.encode()),
        )
    }
}

/// OpenMetrics text (as prometheus-client writes it) in Prometheus' classic text format: a
/// counter's HELP and TYPE name its `_total` samples, and there are no UNIT lines, `_created`
/// samples or `# EOF`.
fn classic_text(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let header = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|prefix| Some((prefix, line.strip_prefix(prefix)?)));
        match header {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let total = if counters.contains(&name) {
                    "_total"
                } else {
                    ""
                };
                text.push_str(&format!("{prefix}{name}{total} {tail}\n"));
            }
            None => {
                let name = line.split(['{', ' ']).next().unwrap_or_default();
                let created = name
                    .strip_suffix("_created")
                    .is_some_and(|family| counters.contains(&family));
                if !created {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
    }
    text
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
    use flowrun_core::appflow::{AppFlowError, FailureKind};

    use super::super::Role;
    use super::*;

    #[tokio::test]
    async fn endpoints_serve_metrics_health_and_readiness() {
        let telemetry = Arc::new(Telemetry::new());
        let address = serve("127.0.0.1:0".parse().expect("address"), telemetry.clone())
            .await
            .expect("bind");
        let base = format!("http://{address}");
        let http = reqwest::Client::new();
        let get = |path: &str| {
            // As Prometheus asks.
            let request = http.get(format!("{base}{path}")).header(
                "accept",
                "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
            );
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

        let throttled = AppFlowError {
            kind: FailureKind::Throttled,
            code: Some("ThrottlingException".to_owned()),
            message: "slow down".to_owned(),
        };
        let call = telemetry.measure_call("StartFlow", async { Err::<(), _>(throttled) });
        assert!(call.await.is_err());
        let (status, content_type, text) = get("/metrics").await;
        assert_eq!(status, 200);
        assert_eq!(content_type.as_deref(), Some(CONTENT_TYPE));
        for line in [
            "flowrun_appflow_calls_total{operation=\"StartFlow\",outcome=\"throttled\"} 1",
            "flowrun_flowruns{phase=\"Running\"} 0",
            "flowrun_leader 0",
            "flowrun_events_queued 0",
            "flowrun_reconcile_errors_total{reason=\"Conflict\"} 0",
            "flowrun_appflow_calls_total{operation=\"CancelFlowExecutions\",outcome=\"throttled\"} 0",
            "# TYPE process_resident_memory_bytes gauge",
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

        // Without asking for OpenMetrics: the classic text format.
        let response = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("request");
        assert_eq!(
            response.headers().get("content-type").map(|v| v.as_bytes()),
            Some(TEXT_CONTENT_TYPE.as_bytes())
        );
        let classic = response.text().await.expect("body");
        assert!(classic.contains("# TYPE flowrun_reconciles_total counter\n"));
        assert!(!classic.contains("# EOF"));
    }

    #[test]
    fn classic_text_names_counters_by_their_samples_and_drops_what_it_lacks() {
        let openmetrics = "# HELP a_calls Calls.\n# TYPE a_calls counter\na_calls_total{x=\"1\"} 2\n\
             a_calls_created{x=\"1\"} 1.7e9\n# HELP a_memory Memory.\n# TYPE a_memory gauge\n\
             # UNIT a_memory bytes\na_memory 5\n# TYPE a_seconds histogram\n\
             a_seconds_count 1\n# EOF\n";
        assert_eq!(
            classic_text(openmetrics),
            "# HELP a_calls_total Calls.\n# TYPE a_calls_total counter\na_calls_total{x=\"1\"} 2\n\
             # HELP a_memory Memory.\n# TYPE a_memory gauge\na_memory 5\n\
             # TYPE a_seconds histogram\na_seconds_count 1\n"
        );
    }
}
