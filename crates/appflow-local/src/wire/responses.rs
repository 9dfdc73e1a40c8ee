//! Response bodies, as the service model names their members.

use jiff::Timestamp;
use serde::Serialize;

use super::{Epoch, flow_arn};
use crate::config::{FlowStatus, TriggerType};
use crate::model::{ExecutionStatus, Flow, LastRun, Run, RunState};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StartFlowResponse {
    pub flow_arn: String,
    pub flow_status: FlowStatus,
    // Sent as null for scheduled and event flows, as AppFlow documents.
    pub execution_id: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StopFlowResponse {
    pub flow_arn: String,
    pub flow_status: FlowStatus,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelFlowExecutionsResponse {
    pub invalid_executions: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeFlowResponse {
    flow_arn: String,
    flow_name: String,
    flow_status: FlowStatus,
    trigger_config: TriggerConfig,
    created_at: Epoch,
    last_updated_at: Epoch,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_run_execution_details: Option<ExecutionDetails>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TriggerConfig {
    trigger_type: TriggerType,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExecutionDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    most_recent_execution_message: Option<String>,
    most_recent_execution_time: Epoch,
    most_recent_execution_status: ExecutionStatus,
}

impl From<LastRun> for ExecutionDetails {
    fn from(last: LastRun) -> Self {
        Self {
            most_recent_execution_message: last.message,
            most_recent_execution_time: Epoch(last.time),
            most_recent_execution_status: last.status,
        }
    }
}

impl DescribeFlowResponse {
    pub fn new(flow: &Flow, region: &str, now: Timestamp) -> Self {
        Self {
            flow_arn: flow_arn(region, &flow.spec.name),
            flow_name: flow.spec.name.clone(),
            flow_status: flow.status,
            trigger_config: TriggerConfig {
                trigger_type: flow.spec.trigger_type,
            },
            created_at: Epoch(flow.created_at),
            last_updated_at: Epoch(flow.last_updated_at),
            last_run_execution_details: flow.last_run(now).map(ExecutionDetails::from),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListFlowsResponse {
    pub flows: Vec<FlowDefinition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowDefinition {
    flow_arn: String,
    flow_name: String,
    flow_status: FlowStatus,
    trigger_type: TriggerType,
    created_at: Epoch,
    last_updated_at: Epoch,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_run_execution_details: Option<ExecutionDetails>,
}

impl FlowDefinition {
    pub fn new(flow: &Flow, region: &str, now: Timestamp) -> Self {
        Self {
            flow_arn: flow_arn(region, &flow.spec.name),
            flow_name: flow.spec.name.clone(),
            flow_status: flow.status,
            trigger_type: flow.spec.trigger_type,
            created_at: Epoch(flow.created_at),
            last_updated_at: Epoch(flow.last_updated_at),
            last_run_execution_details: flow.last_run(now).map(ExecutionDetails::from),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeFlowExecutionRecordsResponse {
    pub flow_executions: Vec<ExecutionRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionRecord {
    execution_id: String,
    execution_status: ExecutionStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    execution_result: Option<ExecutionResult>,
    started_at: Epoch,
    last_updated_at: Epoch,
    data_pull_start_time: Epoch,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_pull_end_time: Option<Epoch>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExecutionResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    error_info: Option<ErrorInfo>,
    bytes_processed: u64,
    bytes_written: u64,
    records_processed: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorInfo {
    put_failures_count: u64,
    execution_message: String,
}

impl ExecutionRecord {
    pub fn new(run: &Run, now: Timestamp) -> Self {
        let RunState {
            status,
            last_updated_at,
            data_pull_end_time,
            result,
        } = run.state(now);
        Self {
            execution_id: run.id.clone(),
            execution_status: status,
            execution_result: result.map(|result| ExecutionResult {
                error_info: result.error.map(|error| ErrorInfo {
                    put_failures_count: error.put_failures_count,
                    execution_message: error.message,
                }),
                bytes_processed: result.bytes_processed,
                bytes_written: result.bytes_written,
                records_processed: result.records_processed,
            }),
            started_at: Epoch(run.started_at),
            last_updated_at: Epoch(last_updated_at),
            // The fake pulls data for the whole run.
            data_pull_start_time: Epoch(run.started_at),
            data_pull_end_time: data_pull_end_time.map(Epoch),
        }
    }
}
