//! The restJson1 wire: operations and their paths, [`requests`] (bodies and AppFlow's input
//! constraints, which the SDK checks none of), [`responses`], errors, and what the SDK tells
//! us in its headers.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::{Serialize, Serializer};

use crate::errors::AppFlowError;

mod requests;
mod responses;

pub use requests::*;
pub use responses::*;

pub const DEFAULT_REGION: &str = "us-east-1";
const ACCOUNT_ID: &str = "123456789012";

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
