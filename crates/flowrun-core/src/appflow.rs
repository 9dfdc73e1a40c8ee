//! AppFlow as the rules see it: the calls' inputs and answers as plain data, and what each
//! error means for a FlowRun. The calls themselves are made by the operator's `act` step.

use jiff::Timestamp;

/// A StartFlow call: which flow, and the idempotency token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartFlowRequest {
    pub flow: FlowKey,
    pub client_token: String,
}

/// What StartFlow returned. `execution_id` is `None` for scheduled and event-triggered flows,
/// which StartFlow activates instead of running.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StartedFlow {
    pub flow_arn: Option<String>,
    pub flow_status: Option<String>,
    pub execution_id: Option<String>,
}

/// What StopFlow returned: the flow's status after it, e.g. Suspended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoppedFlow {
    pub flow_status: Option<String>,
}

/// Which flow, and as whom: flows are named per region, and a tenant's runs may use an IAM role
/// of its own.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub region: String,
    pub flow_name: String,
    /// `None`: the operator's own AWS identity.
    pub role: Option<AssumedRole>,
}

/// An IAM role the operator assumes (STS AssumeRole) for a tenant's calls.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AssumedRole {
    pub role_arn: String,
    pub external_id: Option<String>,
    pub session_name: String,
}

/// One run of a flow, as DescribeFlowExecutionRecords reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecutionRecord {
    pub execution_id: String,
    /// AppFlow's ExecutionStatus, verbatim (new values must not be lost).
    pub status: String,
    pub started_at: Option<Timestamp>,
    pub last_updated_at: Option<Timestamp>,
    pub records_processed: Option<i64>,
    pub bytes_processed: Option<i64>,
    pub bytes_written: Option<i64>,
    pub error_message: Option<String>,
}

impl ExecutionRecord {
    /// AppFlow's final execution statuses: a record in one of them never changes again.
    pub fn is_final(&self) -> bool {
        matches!(self.status.as_str(), "Successful" | "Error" | "Canceled")
    }
}

/// How the decision logic treats a failed call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The flow does not exist (yet).
    FlowNotFound,
    /// The request is wrong in a way a retry cannot fix.
    InvalidRequest,
    AccessDenied,
    QuotaExceeded,
    Conflict,
    /// Throttled beyond the SDK's own retries.
    Throttled,
    /// No credentials to sign with (e.g. STS AssumeRole was denied).
    CredentialsUnavailable,
    /// A server error, a timeout or no connection.
    Unavailable,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AppFlowError {
    pub kind: FailureKind,
    /// AWS error code, e.g. `ConflictException`, when AppFlow answered with one.
    pub code: Option<String>,
    pub message: String,
}

/// AppFlow's error codes (service model), each with the kind it means; `None`: a server-side
/// failure, judged by its HTTP status. Metrics name these codes as they are.
const SERVICE_ERRORS: [(&str, Option<FailureKind>); 9] = [
    ("ResourceNotFoundException", Some(FailureKind::FlowNotFound)),
    ("ValidationException", Some(FailureKind::InvalidRequest)),
    (UNSUPPORTED_OPERATION, Some(FailureKind::InvalidRequest)),
    ("AccessDeniedException", Some(FailureKind::AccessDenied)),
    (
        "ServiceQuotaExceededException",
        Some(FailureKind::QuotaExceeded),
    ),
    ("ConflictException", Some(FailureKind::Conflict)),
    ("InternalServerException", None),
    ("ConnectorAuthenticationException", None),
    ("ConnectorServerException", None),
];

/// Codes AWS SDKs treat as throttling; AppFlow may send them on any operation.
const THROTTLING_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestThrottled",
    "RequestThrottledException",
    "RequestLimitExceeded",
    "LimitExceededException",
    "SlowDown",
];

/// Classifies an error response by its AWS error code, falling back to the HTTP status for codes
/// the service model does not name.
pub fn classify(code: Option<&str>, http_status: Option<u16>) -> FailureKind {
    if let Some(code) = code {
        if let Some((_, Some(kind))) = SERVICE_ERRORS.iter().find(|(known, _)| *known == code) {
            return *kind;
        }
        if THROTTLING_CODES.contains(&code) {
            return FailureKind::Throttled;
        }
    }
    match http_status {
        Some(429) => FailureKind::Throttled,
        Some(401 | 403) => FailureKind::AccessDenied,
        Some(404) => FailureKind::FlowNotFound,
        Some(409) => FailureKind::Conflict,
        Some(400..=499) => FailureKind::InvalidRequest,
        _ => FailureKind::Unavailable,
    }
}

/// AppFlow's answer to StopFlow for an on-demand flow: there is nothing to deactivate.
pub const UNSUPPORTED_OPERATION: &str = "UnsupportedOperationException";

/// The code as metrics name it: one of AppFlow's own codes, or `None` for any other.
pub fn service_error_code(code: &str) -> Option<&'static str> {
    SERVICE_ERRORS
        .iter()
        .map(|(known, _)| *known)
        .find(|known| *known == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_and_statuses_are_classified_for_the_decision_logic() {
        use FailureKind::*;
        let table: &[(Option<&str>, Option<u16>, FailureKind)] = &[
            (Some("ResourceNotFoundException"), Some(404), FlowNotFound),
            (Some("ValidationException"), Some(400), InvalidRequest),
            (
                Some("UnsupportedOperationException"),
                Some(400),
                InvalidRequest,
            ),
            (Some("AccessDeniedException"), Some(403), AccessDenied),
            (
                Some("ServiceQuotaExceededException"),
                Some(402),
                QuotaExceeded,
            ),
            (Some("ConflictException"), Some(409), Conflict),
            // The code decides, whatever the status (the SDK maps by code too).
            (Some("ConflictException"), Some(400), Conflict),
            (Some("ThrottlingException"), Some(429), Throttled),
            (Some("TooManyRequestsException"), Some(400), Throttled),
            (Some("InternalServerException"), Some(500), Unavailable),
            (Some("SomethingNew"), Some(503), Unavailable),
            (Some("SomethingNew"), Some(429), Throttled),
            (Some("SomethingNew"), Some(403), AccessDenied),
            (Some("SomethingNew"), Some(418), InvalidRequest),
            (None, Some(502), Unavailable),
            (None, None, Unavailable),
        ];
        for (code, status, expected) in table {
            assert_eq!(
                classify(*code, *status),
                *expected,
                "code {code:?}, status {status:?}"
            );
        }
    }
}
