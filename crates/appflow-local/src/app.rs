//! The state shared by the AppFlow API and the control API, and the router that serves both.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, Uri};
use axum::middleware::{Next, from_fn};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use jiff::Timestamp;
use tokio::sync::watch;

use crate::config::FlowSpec;
use crate::errors::{AppFlowError, ErrorKind};
use crate::faults::Faults;
use crate::model::Model;
use crate::recorder::Recorder;
use crate::sts::{RoleSpec, Sts};
use crate::wire::Operation;
use crate::{api, control, sts};

pub struct App {
    shared: Mutex<Shared>,
    configured_flows: Vec<FlowSpec>,
    configured_roles: Vec<RoleSpec>,
    shutdown: watch::Receiver<bool>,
}

/// Everything mutable, behind one lock that is never held across an await.
pub struct Shared {
    pub model: Model,
    pub recorder: Recorder,
    pub faults: Faults,
    pub sts: Sts,
}

impl App {
    pub fn new(
        configured_flows: Vec<FlowSpec>,
        configured_roles: Vec<RoleSpec>,
        shutdown: watch::Receiver<bool>,
        fault_seed: u64,
    ) -> Self {
        Self {
            shared: Mutex::new(Shared {
                model: Model::new(&configured_flows, Timestamp::now()),
                recorder: Recorder::new(),
                faults: Faults::new(fault_seed),
                sts: Sts::new(&configured_roles),
            }),
            configured_flows,
            configured_roles,
            shutdown,
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Shared> {
        // The state stays consistent between statements, so a panicked handler must not
        // take the whole endpoint down with it.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Back to the configured flows, with no runs, tokens, log or faults.
    pub fn reset(&self) {
        let mut state = self.lock();
        state.model.reset(&self.configured_flows, Timestamp::now());
        state.recorder = Recorder::new();
        state.faults.clear();
        state.sts = Sts::new(&self.configured_roles);
    }

    /// Waits for `duration`, or less if the server is shutting down.
    pub async fn hold(&self, duration: Duration) {
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(duration) => {}
            _ = shutdown.wait_for(|stopping| *stopping) => {}
        }
    }
}

/// The `x-amzn-RequestId` of one response, also written to the request log.
#[derive(Clone)]
pub struct RequestId(pub String);

pub fn router(app: Arc<App>) -> Router {
    Operation::ALL
        .into_iter()
        .fold(Router::new(), |router, op| {
            router.route(
                op.path(),
                post(
                    move |State(app): State<Arc<App>>,
                          Extension(id): Extension<RequestId>,
                          headers: HeaderMap,
                          body: Bytes| api::handle(app, op, id, headers, body),
                ),
            )
        })
        .route("/", post(sts::handle))
        .merge(control::routes())
        .fallback(unknown_operation)
        .layer(from_fn(with_request_id))
        .with_state(app)
}

// AWS puts a request id on every response, errors included; the SDK exposes it.
async fn with_request_id(mut request: Request, next: Next) -> Response {
    let id = uuid::Uuid::new_v4().to_string();
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-amzn-requestid", value);
    }
    response
}

async fn unknown_operation(method: Method, uri: Uri) -> Response {
    AppFlowError::new(
        ErrorKind::UnknownOperation,
        format!("No AppFlow operation at {method} {}", uri.path()),
    )
    .into_response()
}
