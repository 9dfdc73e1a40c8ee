//! The six AppFlow operations: log the call, apply faults, then parse, validate and run it
//! against the model.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::Serialize;
use tracing::info;

use crate::app::{App, RequestId};
use crate::errors::{AppFlowError, ErrorKind};
use crate::faults::{Disruption, MAX_HOLD};
use crate::model::Model;
use crate::recorder::Request;
use crate::wire::{
    self, CancelFlowExecutionsRequest, CancelFlowExecutionsResponse, DEFAULT_REGION,
    DescribeFlowExecutionRecordsRequest, DescribeFlowExecutionRecordsResponse,
    DescribeFlowResponse, Epoch, ExecutionRecord, FlowDefinition, FlowNameRequest,
    ListFlowsRequest, ListFlowsResponse, Operation, Signer, StartFlowRequest, StartFlowResponse,
    StopFlowResponse,
};

pub async fn handle(
    app: Arc<App>,
    op: Operation,
    RequestId(request_id): RequestId,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let signer = Signer::from_headers(&headers);
    let (attempt, max_attempts) = wire::sdk_attempt(&headers);
    let (flow_name, client_token) = wire::peek_names(&body);
    let region = signer
        .region
        .clone()
        .unwrap_or_else(|| DEFAULT_REGION.to_owned());
    let (seq, verdict) = {
        let mut shared = app.lock();
        let verdict = shared.faults.judge(op, flow_name.as_deref());
        let seq = shared.recorder.begin(Request {
            time: Epoch(Timestamp::now()),
            request_id,
            operation: op,
            flow_name: flow_name.clone(),
            client_token,
            attempt,
            max_attempts,
            access_key_id: signer.access_key_id,
            region: signer.region,
            faults: verdict.fired.clone(),
        });
        (seq, verdict)
    };

    if !verdict.delay.is_zero() {
        app.hold(verdict.delay).await;
    }
    let result = match verdict.disruption() {
        Some(Disruption::Fail(error)) => Err(error),
        Some(Disruption::Hang) => {
            // Normally the client gives up first and this answer is never read.
            app.hold(MAX_HOLD).await;
            Err(AppFlowError::new(
                ErrorKind::InternalServer,
                "The request was held by a hang fault and then released",
            ))
        }
        None => perform(op, &body, &region, &mut app.lock().model, Timestamp::now()),
    };
    if !verdict.response_delay.is_zero() {
        app.hold(verdict.response_delay).await;
    }

    let error_type = result.as_ref().err().map(|error| error.kind.code());
    let response = result.unwrap_or_else(IntoResponse::into_response);
    let status = response.status().as_u16();
    app.lock().recorder.finish(seq, status, error_type);
    info!(
        seq,
        operation = %op,
        flow = flow_name.as_deref(),
        status,
        error = error_type,
        "Answered AppFlow call"
    );
    response
}

fn perform(
    op: Operation,
    body: &[u8],
    region: &str,
    model: &mut Model,
    now: Timestamp,
) -> Result<Response, AppFlowError> {
    match op {
        Operation::StartFlow => {
            let request: StartFlowRequest = wire::parse_body(body)?;
            let name = wire::required_flow_name(request.flow_name)?;
            if let Some(token) = &request.client_token {
                wire::check_client_token(token)?;
            }
            let execution_id = uuid::Uuid::new_v4().to_string();
            let started =
                model.start_flow(&name, request.client_token.as_deref(), now, execution_id)?;
            ok(StartFlowResponse {
                flow_arn: wire::flow_arn(region, &started.flow_name),
                flow_status: started.flow_status,
                execution_id: started.execution_id,
            })
        }
        Operation::DescribeFlow => {
            let request: FlowNameRequest = wire::parse_body(body)?;
            let name = wire::required_flow_name(request.flow_name)?;
            ok(DescribeFlowResponse::new(model.flow(&name)?, region, now))
        }
        Operation::DescribeFlowExecutionRecords => {
            let request: DescribeFlowExecutionRecordsRequest = wire::parse_body(body)?;
            let name = wire::required_flow_name(request.flow_name)?;
            let limit = wire::page_size(request.max_results)?;
            if let Some(token) = &request.next_token {
                wire::check_next_token(token)?;
            }
            let page = model.execution_records(&name, limit, request.next_token.as_deref())?;
            ok(DescribeFlowExecutionRecordsResponse {
                flow_executions: page
                    .items
                    .into_iter()
                    .map(|run| ExecutionRecord::new(run, now))
                    .collect(),
                next_token: page.next_token,
            })
        }
        Operation::CancelFlowExecutions => {
            let request: CancelFlowExecutionsRequest = wire::parse_body(body)?;
            let name = wire::required_flow_name(request.flow_name)?;
            let ids = request.execution_ids.unwrap_or_default();
            wire::check_execution_ids(&ids)?;
            ok(CancelFlowExecutionsResponse {
                invalid_executions: model.cancel_executions(&name, &ids, now)?,
            })
        }
        Operation::StopFlow => {
            let request: FlowNameRequest = wire::parse_body(body)?;
            let name = wire::required_flow_name(request.flow_name)?;
            let flow = model.stop_flow(&name, now)?;
            ok(StopFlowResponse {
                flow_arn: wire::flow_arn(region, &name),
                flow_status: flow.status,
            })
        }
        Operation::ListFlows => {
            let request: ListFlowsRequest = wire::parse_body(body)?;
            let limit = wire::page_size(request.max_results)?;
            if let Some(token) = &request.next_token {
                wire::check_next_token(token)?;
            }
            let page = model.list_flows(limit, request.next_token.as_deref())?;
            ok(ListFlowsResponse {
                flows: page
                    .items
                    .into_iter()
                    .map(|flow| FlowDefinition::new(flow, region, now))
                    .collect(),
                next_token: page.next_token,
            })
        }
    }
}

fn ok(body: impl Serialize) -> Result<Response, AppFlowError> {
    Ok(Json(body).into_response())
}
