//! AppFlow through the real AWS SDK: the only code that touches it, and where its errors are
//! classified for the rules.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_config::SdkConfig;
use aws_sdk_appflow::config::Region;
use aws_sdk_appflow::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use flowrun_core::appflow::{AssumedRole, FailureKind, classify};
use jiff::Timestamp;

use super::appflow::{
    AppFlow, AppFlowError, ExecutionRecord, FlowKey, RecordsPage, StartFlowRequest, StartedFlow,
    StoppedFlow,
};

/// Builds the rules' error from the SDK's: the service's code and status, or what failed on
/// the way.
fn from_sdk<E>(error: SdkError<E, aws_sdk_appflow::config::http::HttpResponse>) -> AppFlowError
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
            .map_err(from_sdk)?;
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
            .map_err(from_sdk)?;
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
            .map_err(from_sdk)?;
        Ok(output.invalid_executions.unwrap_or_default())
    }

    async fn stop_flow(&self, flow: &FlowKey) -> Result<StoppedFlow, AppFlowError> {
        let output = self
            .client(flow)
            .await
            .stop_flow()
            .flow_name(&flow.flow_name)
            .send()
            .await
            .map_err(from_sdk)?;
        Ok(StoppedFlow {
            flow_status: output.flow_status.map(|status| status.as_str().to_owned()),
        })
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
