//! Amazon AppFlow as the controller needs it: one narrow trait, one method per AWS call. The
//! real implementation is [`super::sdk::SdkAppFlow`]; tests put a few-line double in its place.

use std::future::Future;

pub use flowrun_core::appflow::{
    AppFlowError, ExecutionRecord, FlowKey, StartFlowRequest, StartedFlow, StoppedFlow,
};

/// One page of a flow's run history, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordsPage {
    pub records: Vec<ExecutionRecord>,
    pub next_token: Option<String>,
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

    /// Deactivates a scheduled or event-triggered flow.
    fn stop_flow(
        &self,
        flow: &FlowKey,
    ) -> impl Future<Output = Result<StoppedFlow, AppFlowError>> + Send;
}
