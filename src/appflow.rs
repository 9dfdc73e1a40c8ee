//! The one place that talks to Amazon AppFlow: a narrow trait with one method per AWS call, its
//! implementation on the real SDK, and the classification of AppFlow's errors.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use aws_config::SdkConfig;
use aws_sdk_appflow::config::Region;
use aws_sdk_appflow::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
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

/// One page of a flow's run history, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordsPage {
    pub records: Vec<ExecutionRecord>,
    pub next_token: Option<String>,
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

/// Amazon AppFlow as the controller needs it: one method per AWS call.
pub trait AppFlow: Send + Sync + 'static {
    fn start_flow(
        &self,
        request: &StartFlowRequest,
    ) -> impl Future<Output = Result<StartedFlow, AppFlowError>> + Send;

    /// One page (up to 100 records) of the flow's run history.
    fn describe_execution_records(
        &self,
        flow: &FlowKey,
        next_token: Option<&str>,
    ) -> impl Future<Output = Result<RecordsPage, AppFlowError>> + Send;

    /// Cancels the given runs; returns the ids AppFlow could not cancel (already finished).
    fn cancel_flow_executions(
        &self,
        flow: &FlowKey,
        execution_ids: &[String],
    ) -> impl Future<Output = Result<Vec<String>, AppFlowError>> + Send;
}

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
    match code {
        Some("ResourceNotFoundException") => return FailureKind::FlowNotFound,
        Some("ValidationException" | "UnsupportedOperationException") => {
            return FailureKind::InvalidRequest;
        }
        Some("AccessDeniedException") => return FailureKind::AccessDenied,
        Some("ServiceQuotaExceededException") => return FailureKind::QuotaExceeded,
        Some("ConflictException") => return FailureKind::Conflict,
        Some(code) if THROTTLING_CODES.contains(&code) => return FailureKind::Throttled,
        _ => {}
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

impl AppFlowError {
    fn from_sdk<E>(error: SdkError<E, aws_sdk_appflow::config::http::HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match &error {
            SdkError::ServiceError(service) => {
                let code = service.err().code().map(str::to_owned);
                let status = service.raw().status().as_u16();
                let message = service
                    .err()
                    .message()
                    .map_or_else(|| DisplayErrorContext(&error).to_string(), str::to_owned);
                AppFlowError {
                    kind: classify(code.as_deref(), Some(status)),
                    code,
                    message,
                }
            }
            // A request the SDK could not even build will not build on a retry either.
            SdkError::ConstructionFailure(_) => AppFlowError {
                kind: FailureKind::InvalidRequest,
                code: None,
                message: DisplayErrorContext(&error).to_string(),
            },
            _ => match credentials_error(&error) {
                Some(credentials) => AppFlowError {
                    kind: FailureKind::CredentialsUnavailable,
                    code: None,
                    message: format!("no AWS credentials: {}", DisplayErrorContext(credentials)),
                },
                None => AppFlowError {
                    kind: FailureKind::Unavailable,
                    code: None,
                    message: DisplayErrorContext(&error).to_string(),
                },
            },
        }
    }
}

/// The credentials provider's error behind a failed dispatch, if that is what failed.
fn credentials_error<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a aws_credential_types::provider::error::CredentialsError> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(credentials) = error.downcast_ref() {
            return Some(credentials);
        }
        current = error.source();
    }
    None
}

/// AppFlow through the real SDK. Clients are made per region and identity on first use and
/// kept, so connections are reused and an assumed role's credentials are cached (by the SDK's
/// identity cache) until they expire.
pub struct SdkAppFlow {
    base: SdkConfig,
    clients: Mutex<HashMap<(String, Option<AssumedRole>), aws_sdk_appflow::Client>>,
}

impl SdkAppFlow {
    /// `base` carries credentials, endpoint, retry and timeout settings; the region is set per call.
    pub fn new(base: SdkConfig) -> Self {
        SdkAppFlow {
            base,
            clients: Mutex::default(),
        }
    }

    async fn client(&self, flow: &FlowKey) -> aws_sdk_appflow::Client {
        let key = (flow.region.clone(), flow.role.clone());
        if let Some(client) = self.clients().get(&key) {
            return client.clone();
        }
        let region = Region::new(flow.region.clone());
        let mut config = aws_sdk_appflow::config::Builder::from(&self.base).region(region.clone());
        if let Some(role) = &flow.role {
            let mut provider = aws_config::sts::AssumeRoleProvider::builder(&role.role_arn)
                .session_name(&role.session_name)
                .region(region)
                .configure(&self.base);
            if let Some(external_id) = &role.external_id {
                provider = provider.external_id(external_id);
            }
            config = config.credentials_provider(provider.build().await);
        }
        // Two reconciles may build the same client at once; either one serves.
        self.clients()
            .entry(key)
            .or_insert_with(|| aws_sdk_appflow::Client::from_conf(config.build()))
            .clone()
    }

    fn clients(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, Option<AssumedRole>), aws_sdk_appflow::Client>>
    {
        crate::lock(&self.clients)
    }
}

impl AppFlow for Arc<SdkAppFlow> {
    async fn start_flow(&self, request: &StartFlowRequest) -> Result<StartedFlow, AppFlowError> {
        let output = self
            .client(&request.flow)
            .await
            .start_flow()
            .flow_name(&request.flow.flow_name)
            .client_token(&request.client_token)
            .send()
            .await
            .map_err(AppFlowError::from_sdk)?;
        Ok(StartedFlow {
            flow_arn: output.flow_arn,
            flow_status: output.flow_status.map(|status| status.as_str().to_owned()),
            execution_id: output.execution_id,
        })
    }

    async fn describe_execution_records(
        &self,
        flow: &FlowKey,
        next_token: Option<&str>,
    ) -> Result<RecordsPage, AppFlowError> {
        let output = self
            .client(flow)
            .await
            .describe_flow_execution_records()
            .flow_name(&flow.flow_name)
            .max_results(MAX_PAGE_SIZE)
            .set_next_token(next_token.map(str::to_owned))
            .send()
            .await
            .map_err(AppFlowError::from_sdk)?;
        Ok(RecordsPage {
            records: output
                .flow_executions()
                .iter()
                .map(execution_record)
                .collect(),
            next_token: output.next_token,
        })
    }

    async fn cancel_flow_executions(
        &self,
        flow: &FlowKey,
        execution_ids: &[String],
    ) -> Result<Vec<String>, AppFlowError> {
        let output = self
            .client(flow)
            .await
            .cancel_flow_executions()
            .flow_name(&flow.flow_name)
            .set_execution_ids(Some(execution_ids.to_vec()))
            .send()
            .await
            .map_err(AppFlowError::from_sdk)?;
        Ok(output.invalid_executions.unwrap_or_default())
    }
}

/// The largest page DescribeFlowExecutionRecords serves: fewest calls per poll.
const MAX_PAGE_SIZE: i32 = 100;

fn execution_record(record: &aws_sdk_appflow::types::ExecutionRecord) -> ExecutionRecord {
    let result = record.execution_result();
    ExecutionRecord {
        execution_id: record.execution_id().unwrap_or_default().to_owned(),
        status: record
            .execution_status()
            .map(|status| status.as_str().to_owned())
            .unwrap_or_default(),
        started_at: record.started_at().and_then(timestamp),
        last_updated_at: record.last_updated_at().and_then(timestamp),
        records_processed: result.and_then(|r| r.records_processed()),
        bytes_processed: result.and_then(|r| r.bytes_processed()),
        bytes_written: result.and_then(|r| r.bytes_written()),
        error_message: result
            .and_then(|r| r.error_info())
            .and_then(|info| info.execution_message())
            .map(str::to_owned),
    }
}

fn timestamp(time: &aws_sdk_appflow::primitives::DateTime) -> Option<Timestamp> {
    Timestamp::new(time.secs(), i32::try_from(time.subsec_nanos()).ok()?).ok()
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
