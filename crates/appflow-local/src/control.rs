//! The control API for tests and scripts, under `/_local/` (no AppFlow path starts there).
//! All bodies are JSON; errors are `{"message": "..."}` with status 400 or 404.
//!
//! - `GET /_local/stats` -> `{"callsByOperation": {"StartFlow": 3, ...}, "clientTokens":
//!   {"<token>": {"startFlowCalls": 2, "executions": 1}}, "executionsByFlow": {"<flow>": 1}}`.
//!   Calls are attempts as received, faulted and invalid ones included.
//! - `GET /_local/requests` -> `[{"seq", "time", "requestId", "operation", "flowName",
//!   "clientToken", "attempt", "maxAttempts", "accessKeyId", "region", "faults", "status",
//!   "errorType"}]`, oldest first, the last 100,000 calls.
//! - `GET | PUT | DELETE /_local/faults`: the fault rules; PUT replaces them with a list of
//!   `{"operation": "StartFlow" | "*", "flowName"?, "kind": "throttling" | "internal" | "quota" |
//!   "conflict" | "notFound" | "accessDenied" | "validation" | "latency" | "hang",
//!   "probability"? (0..=1, default 1), "count"? (fire this many more times), "delayMs"?
//!   (latency only)}`.
//! - `POST /_local/expire-tokens`: forget every StartFlow clientToken (8 hours passed).
//! - `PUT /_local/flows` with one flow in the config schema (201 created, 200 replaced);
//!   `DELETE /_local/flows/{name}` (204, or 404).
//! - `POST /_local/flows/{name}/finish`: every in-progress run of the flow ends now, with its
//!   planned outcome -> `{"finished": 3}` (or 404).
//! - `POST /_local/reset`: back to the configured flows; no runs, tokens, log, stats or faults.
//! - `PUT /_local/roles` with `{"arn", "externalId"?}`: a role the local STS lets callers assume;
//!   `GET /_local/sts` -> `[{"accessKeyId", "roleArn", "sessionName", "externalId",
//!   "expiration"}]`, the credentials AssumeRole issued, oldest first.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use jiff::Timestamp;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::app::App;
use crate::config::FlowSpec;
use crate::faults::FaultRule;
use crate::sts::{Issued, RoleSpec};

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/_local/stats", get(stats))
        .route("/_local/requests", get(requests))
        .route(
            "/_local/faults",
            get(list_faults).put(set_faults).delete(clear_faults),
        )
        .route("/_local/expire-tokens", post(expire_tokens))
        .route("/_local/flows", put(upsert_flow))
        .route("/_local/flows/{name}", delete(delete_flow))
        .route("/_local/flows/{name}/finish", post(finish_runs))
        .route("/_local/reset", post(reset))
        .route("/_local/roles", put(upsert_role))
        .route("/_local/sts", get(issued_credentials))
}

struct ControlError(StatusCode, String);

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "message": self.1 }))).into_response()
    }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ControlError> {
    serde_json::from_slice(body)
        .map_err(|err| ControlError(StatusCode::BAD_REQUEST, err.to_string()))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenStats {
    start_flow_calls: u64,
    /// Runs actually started under this token: the exactly-once proof.
    executions: u64,
}

async fn stats(State(app): State<Arc<App>>) -> Response {
    let shared = app.lock();
    let calls = shared.recorder.start_flow_calls_by_token();
    let executions = shared.model.executions_by_token();
    let client_tokens: BTreeMap<&str, TokenStats> = calls
        .keys()
        .chain(executions.keys())
        .map(|token| {
            let stats = TokenStats {
                start_flow_calls: calls.get(token).copied().unwrap_or_default(),
                executions: executions.get(token).copied().unwrap_or_default(),
            };
            (token.as_str(), stats)
        })
        .collect();
    Json(serde_json::json!({
        "callsByOperation": shared.recorder.calls_by_operation(),
        "clientTokens": client_tokens,
        "executionsByFlow": shared.model.executions_by_flow(),
    }))
    .into_response()
}

async fn requests(State(app): State<Arc<App>>) -> Response {
    Json(app.lock().recorder.records()).into_response()
}

async fn list_faults(State(app): State<Arc<App>>) -> Response {
    Json(app.lock().faults.rules()).into_response()
}

/// Replaces all fault rules.
async fn set_faults(State(app): State<Arc<App>>, body: Bytes) -> Result<Response, ControlError> {
    let rules: Vec<FaultRule> = parse(&body)?;
    for (index, rule) in rules.iter().enumerate() {
        rule.validate().map_err(|message| {
            ControlError(StatusCode::BAD_REQUEST, format!("[{index}]: {message}"))
        })?;
    }
    let mut shared = app.lock();
    shared.faults.set(rules);
    Ok(Json(shared.faults.rules()).into_response())
}

async fn clear_faults(State(app): State<Arc<App>>) -> StatusCode {
    app.lock().faults.clear();
    StatusCode::NO_CONTENT
}

/// Simulates the 8-hour clientToken window passing.
async fn expire_tokens(State(app): State<Arc<App>>) -> StatusCode {
    app.lock().model.expire_tokens();
    StatusCode::NO_CONTENT
}

/// 201 when the flow is new, 200 when it replaced one.
async fn upsert_flow(State(app): State<Arc<App>>, body: Bytes) -> Result<StatusCode, ControlError> {
    let spec: FlowSpec = parse(&body)?;
    spec.validate()
        .map_err(|message| ControlError(StatusCode::BAD_REQUEST, message))?;
    let created = app.lock().model.upsert_flow(spec, Timestamp::now());
    Ok(if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    })
}

async fn delete_flow(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ControlError> {
    if app.lock().model.delete_flow(&name) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ControlError(
            StatusCode::NOT_FOUND,
            format!("no flow named {name:?}"),
        ))
    }
}

async fn finish_runs(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<Response, ControlError> {
    let finished = app
        .lock()
        .model
        .finish_runs(&name, Timestamp::now())
        .map_err(|err| ControlError(StatusCode::NOT_FOUND, err.message))?;
    Ok(Json(serde_json::json!({ "finished": finished })).into_response())
}

async fn reset(State(app): State<Arc<App>>) -> StatusCode {
    app.reset();
    StatusCode::NO_CONTENT
}

async fn upsert_role(State(app): State<Arc<App>>, body: Bytes) -> Result<StatusCode, ControlError> {
    let role: RoleSpec = parse(&body)?;
    app.lock().sts.upsert_role(role);
    Ok(StatusCode::NO_CONTENT)
}

async fn issued_credentials(State(app): State<Arc<App>>) -> Json<Vec<Issued>> {
    Json(app.lock().sts.issued().to_vec())
}
