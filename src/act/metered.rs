//! Every AppFlow call counted and timed, by operation and outcome.

use std::sync::Arc;

use super::appflow::{
    AppFlow, AppFlowError, FlowKey, RecordsPage, StartFlowRequest, StartedFlow, StoppedFlow,
};
use crate::telemetry::Telemetry;

/// An [`AppFlow`] that counts and times every call of the one it wraps.
pub struct Metered<A> {
    inner: A,
    telemetry: Arc<Telemetry>,
}

impl<A> Metered<A> {
    pub fn new(inner: A, telemetry: Arc<Telemetry>) -> Self {
        Metered { inner, telemetry }
    }
}

impl<A: AppFlow> AppFlow for Metered<A> {
    async fn start_flow(&self, request: &StartFlowRequest) -> Result<StartedFlow, AppFlowError> {
        self.telemetry
            .measure_call("StartFlow", self.inner.start_flow(request))
            .await
    }

    async fn describe_execution_records(
        &self,
        flow: &FlowKey,
        next_token: Option<&str>,
    ) -> Result<RecordsPage, AppFlowError> {
        self.telemetry
            .measure_call(
                "DescribeFlowExecutionRecords",
                self.inner.describe_execution_records(flow, next_token),
            )
            .await
    }

    async fn cancel_flow_executions(
        &self,
        flow: &FlowKey,
        execution_ids: &[String],
    ) -> Result<Vec<String>, AppFlowError> {
        self.telemetry
            .measure_call(
                "CancelFlowExecutions",
                self.inner.cancel_flow_executions(flow, execution_ids),
            )
            .await
    }

    async fn stop_flow(&self, flow: &FlowKey) -> Result<StoppedFlow, AppFlowError> {
        self.telemetry
            .measure_call("StopFlow", self.inner.stop_flow(flow))
            .await
    }
}
