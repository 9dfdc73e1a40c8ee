//! The restJson1 wire: operations and their paths, request bodies and AppFlow's input
//! constraints (the SDK checks none of them), response bodies, errors, and what the SDK tells us in
//! its headers.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer};

use crate::config::{FLOW_NAME_MAX, FLOW_NAME_RULE, FlowStatus, TriggerType, is_valid_flow_name};
use crate::errors::AppFlowError;
use crate::model::{ExecutionStatus, Flow, LastRun, Run, RunState};

pub const DEFAULT_REGION: &str = "us-east-1";
const ACCOUNT_ID: &str = "123456789012";
const CLIENT_TOKEN_MAX: usize = 256;
const NEXT_TOKEN_MAX: usize = 2048;
const EXECUTION_ID_MAX: usize = 256;
const EXECUTION_IDS_MAX: usize = 100;
const MAX_RESULTS_RANGE: std::ops::RangeInclusive<i64> = 1..=100;
const DEFAULT_MAX_RESULTS: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Operation {
    StartFlow,
    DescribeFlow,
    DescribeFlowExecutionRecords,
    CancelFlowExecutions,
    StopFlow,
    ListFlows,
}

impl Operation {
    pub const ALL: [Operation; 6] = [
        Operation::StartFlow,
        Operation::DescribeFlow,
        Operation::DescribeFlowExecutionRecords,
        Operation::CancelFlowExecutions,
        Operation::StopFlow,
        Operation::ListFlows,
    ];

    /// Every operation is a POST to its own path.
    pub fn path(self) -> &'static str {
        match self {
            Operation::StartFlow => "/start-flow",
            Operation::DescribeFlow => "/describe-flow",
            Operation::DescribeFlowExecutionRecords => "/describe-flow-execution-records",
            Operation::CancelFlowExecutions => "/cancel-flow-executions",
            Operation::StopFlow => "/stop-flow",
            Operation::ListFlows => "/list-flows",
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

// ---- Requests ----

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartFlowRequest {
    pub flow_name: Option<String>,
    pub client_token: Option<String>,
}

/// DescribeFlow and StopFlow.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowNameRequest {
    pub flow_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeFlowExecutionRecordsRequest {
    pub flow_name: Option<String>,
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelFlowExecutionsRequest {
    pub flow_name: Option<String>,
    pub execution_ids: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListFlowsRequest {
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
}

/// Unknown members are ignored; an empty body is an empty object.
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, AppFlowError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|err| AppFlowError::validation(format!("Invalid request body: {err}")))
}

/// The flow name and client token as sent, for the request log, even when the body is invalid.
pub fn peek_names(body: &[u8]) -> (Option<String>, Option<String>) {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Names {
        flow_name: Option<serde_json::Value>,
        client_token: Option<serde_json::Value>,
    }
    let text = |value: Option<serde_json::Value>| match value {
        Some(serde_json::Value::String(text)) => Some(text),
        _ => None,
    };
    match serde_json::from_slice::<Names>(body) {
        Ok(names) => (text(names.flow_name), text(names.client_token)),
        Err(_) => (None, None),
    }
}

// The messages copy AWS's "1 validation error detected" wording.
fn constraint_error(member: &str, value: &str, constraint: &str) -> AppFlowError {
    AppFlowError::validation(format!(
        "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: {constraint}"
    ))
}

pub fn required_flow_name(flow_name: Option<String>) -> Result<String, AppFlowError> {
    let name =
        flow_name.ok_or_else(|| constraint_error("flowName", "null", "Member must not be null"))?;
    if name.chars().count() > FLOW_NAME_MAX {
        return Err(constraint_error(
            "flowName",
            &name,
            &format!("Member must have length less than or equal to {FLOW_NAME_MAX}"),
        ));
    }
    if !is_valid_flow_name(&name) {
        return Err(constraint_error(
            "flowName",
            &name,
            &format!("Member must satisfy regular expression pattern: {FLOW_NAME_RULE}"),
        ));
    }
    Ok(name)
}

pub fn check_client_token(token: &str) -> Result<(), AppFlowError> {
    let length = token.chars().count();
    if !(1..=CLIENT_TOKEN_MAX).contains(&length) {
        return Err(constraint_error(
            "clientToken",
            token,
            &format!("Member must have length between 1 and {CLIENT_TOKEN_MAX}"),
        ));
    }
    if !token.chars().all(|c| (' '..='~').contains(&c)) {
        return Err(constraint_error(
            "clientToken",
            token,
            "Member must satisfy regular expression pattern: [ -~]+",
        ));
    }
    Ok(())
}

pub fn page_size(max_results: Option<i64>) -> Result<usize, AppFlowError> {
    match max_results {
        None => Ok(DEFAULT_MAX_RESULTS),
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|_| MAX_RESULTS_RANGE.contains(&n))
            .ok_or_else(|| {
                constraint_error(
                    "maxResults",
                    &n.to_string(),
                    "Member must have value between 1 and 100",
                )
            }),
    }
}

/// The shape check only; whether we issued the token is the model's business.
pub fn check_next_token(token: &str) -> Result<(), AppFlowError> {
    if token.is_empty()
        || token.chars().count() > NEXT_TOKEN_MAX
        || token.contains(char::is_whitespace)
    {
        return Err(constraint_error(
            "nextToken",
            token,
            &format!(
                "Member must have length less than or equal to {NEXT_TOKEN_MAX} and satisfy regular expression pattern: \\S+"
            ),
        ));
    }
    Ok(())
}

pub fn check_execution_ids(ids: &[String]) -> Result<(), AppFlowError> {
    if ids.len() > EXECUTION_IDS_MAX {
        return Err(constraint_error(
            "executionIds",
            &format!("{} ids", ids.len()),
            &format!("Member must have length less than or equal to {EXECUTION_IDS_MAX}"),
        ));
    }
    match ids.iter().find(|id| {
        id.is_empty() || id.chars().count() > EXECUTION_ID_MAX || id.contains(char::is_whitespace)
    }) {
        Some(id) => Err(constraint_error(
            "executionIds.member",
            id,
            &format!(
                "Member must have length less than or equal to {EXECUTION_ID_MAX} and satisfy regular expression pattern: \\S+"
            ),
        )),
        None => Ok(()),
    }
}

// ---- Responses ----

/// restJson1 timestamps are epoch seconds as a JSON number (fractions allowed).
#[derive(Debug, Clone, Copy)]
pub struct Epoch(pub Timestamp);

impl Serialize for Epoch {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Microseconds keep the value well inside f64's exact range.
        serializer.serialize_f64(self.0.as_microsecond() as f64 / 1e6)
    }
}

pub fn flow_arn(region: &str, flow_name: &str) -> String {
    format!("arn:aws:appflow:{region}:{ACCOUNT_ID}:flow/{flow_name}")
}

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

/// The error form every AWS SDK understands: the code in `x-amzn-ErrorType` and `__type`, the
/// status from the service model.
impl IntoResponse for AppFlowError {
    fn into_response(self) -> Response {
        let code = self.kind.code();
        let status =
            StatusCode::from_u16(self.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::json!({ "message": self.message, "__type": code });
        let mut response = (status, axum::Json(body)).into_response();
        response
            .headers_mut()
            .insert("x-amzn-errortype", HeaderValue::from_static(code));
        response
    }
}

// ---- What the SDK tells us in headers ----

/// Who signed the request, from `Authorization: AWS4-HMAC-SHA256 Credential=AKID/date/region/appflow/aws4_request, ...`.
/// The signature itself is not checked.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Signer {
    pub access_key_id: Option<String>,
    pub region: Option<String>,
}

impl Signer {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let scope = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|auth| auth.split_once("Credential="))
            .map(|(_, rest)| rest.split([',', ' ']).next().unwrap_or_default());
        let fields: Vec<&str> = scope.unwrap_or_default().split('/').collect();
        let field = |index: usize| {
            fields
                .get(index)
                .filter(|field| !field.is_empty())
                .map(|field| (*field).to_owned())
        };
        Self {
            access_key_id: field(0),
            region: field(2),
        }
    }
}

/// `amz-sdk-request: attempt=2; max=3`, sent by the SDK on every attempt.
pub fn sdk_attempt(headers: &HeaderMap) -> (Option<u32>, Option<u32>) {
    let Some(value) = headers
        .get("amz-sdk-request")
        .and_then(|value| value.to_str().ok())
    else {
        return (None, None);
    };
    let field = |name: &str| {
        value
            .split(';')
            .filter_map(|part| part.trim().split_once('='))
            .find(|(key, _)| *key == name)
            .and_then(|(_, number)| number.parse().ok())
    };
    (field("attempt"), field("max"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::ErrorKind;

    #[test]
    fn input_constraints_match_the_service_model() {
        let long_name = format!("a{}", "b".repeat(256));
        assert!(required_flow_name(Some("ok-name".into())).is_ok());
        for name in [None, Some("a b".into()), Some("a".into()), Some(long_name)] {
            assert!(required_flow_name(name.clone()).is_err(), "{name:?}");
        }
        let cases: [(&str, bool); 5] = [
            ("uid-1234/gen-1", true),
            (" spaces are printable ~", true),
            ("", false),
            ("tab\there", false),
            ("ünicode", false),
        ];
        for (token, ok) in cases {
            assert_eq!(check_client_token(token).is_ok(), ok, "{token:?}");
        }
        assert!(check_client_token(&"t".repeat(256)).is_ok());
        assert!(check_client_token(&"t".repeat(257)).is_err());
        for (max, expected) in [
            (None, Some(20)),
            (Some(1), Some(1)),
            (Some(100), Some(100)),
            (Some(0), None),
            (Some(101), None),
            (Some(-1), None),
        ] {
            assert_eq!(page_size(max).ok(), expected, "{max:?}");
        }
        for (token, ok) in [("abc", true), ("", false), ("a b", false)] {
            assert_eq!(check_next_token(token).is_ok(), ok, "{token:?}");
        }
        assert!(check_next_token(&"t".repeat(2049)).is_err());
        assert!(check_execution_ids(&vec!["id".to_owned(); 100]).is_ok());
        assert!(check_execution_ids(&vec!["id".to_owned(); 101]).is_err());
        assert!(check_execution_ids(&["has space".to_owned()]).is_err());
    }

    #[test]
    fn validation_messages_follow_the_aws_wording() {
        let err = required_flow_name(Some("a b".into())).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Validation);
        assert_eq!(
            err.message,
            r"1 validation error detected: Value 'a b' at 'flowName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9][\w!@#.-]+"
        );
    }

    #[test]
    fn bodies_tolerate_unknown_members_and_emptiness() {
        let request: StartFlowRequest =
            parse_body(br#"{"flowName":"f","clientToken":"t","extra":{"x":1}}"#).unwrap();
        assert_eq!(
            (
                request.flow_name.as_deref(),
                request.client_token.as_deref()
            ),
            (Some("f"), Some("t"))
        );
        let empty: ListFlowsRequest = parse_body(b"").unwrap();
        assert!(empty.max_results.is_none());
        let wrong: Result<ListFlowsRequest, _> = parse_body(br#"{"maxResults":"ten"}"#);
        assert_eq!(wrong.err().unwrap().kind, ErrorKind::Validation);
        assert_eq!(
            peek_names(br#"{"flowName":"f","clientToken":7}"#),
            (Some("f".into()), None)
        );
        assert_eq!(peek_names(b"not json"), (None, None));
    }

    #[test]
    fn signer_and_attempt_come_from_sdk_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/eu-west-1/appflow/aws4_request, SignedHeaders=host, Signature=abc"),
        );
        headers.insert(
            "amz-sdk-request",
            HeaderValue::from_static("attempt=2; max=3"),
        );
        assert_eq!(
            Signer::from_headers(&headers),
            Signer {
                access_key_id: Some("AKIDEXAMPLE".into()),
                region: Some("eu-west-1".into())
            }
        );
        assert_eq!(sdk_attempt(&headers), (Some(2), Some(3)));
        assert_eq!(Signer::from_headers(&HeaderMap::new()), Signer::default());
        assert_eq!(sdk_attempt(&HeaderMap::new()), (None, None));
    }

    #[test]
    fn timestamps_are_epoch_seconds_with_fractions() {
        let ts: Timestamp = "2026-01-01T00:00:00.25Z".parse().unwrap();
        assert_eq!(serde_json::to_string(&Epoch(ts)).unwrap(), "1767225600.25");
    }

    #[test]
    fn errors_carry_model_status_type_header_and_json_body() {
        let response =
            AppFlowError::new(ErrorKind::ServiceQuotaExceeded, "too many").into_response();
        assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
        assert_eq!(
            response.headers()["x-amzn-errortype"],
            "ServiceQuotaExceededException"
        );
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }
}
