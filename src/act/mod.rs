//! Act: the one place reconciles call AppFlow. [`Actor::call`] makes the call a decision asks
//! for and returns it paired with its answer; StartFlow calls are paced (a rate limit and a cap
//! per flow), and history reads go through the [`tracker`].

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use flowrun_core::decide::{Answer, AppFlowCall, CancelCall, StartCall, StopCall, TrackCall};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::lock;

pub mod appflow;
pub mod metered;
pub mod sdk;
mod slots;
pub mod tracker;

pub use appflow::AppFlow;
pub use slots::start_slot_wait;

use appflow::StartedFlow;
use slots::StartSlots;
use tracker::ExecutionTracker;

/// The AppFlow client and what paces its calls, shared by all reconciles.
pub struct Actor<A> {
    appflow: A,
    /// Spreads StartFlow calls out so a burst of FlowRuns does not trip AppFlow's throttling.
    start_limiter: DefaultDirectRateLimiter,
    start_slots: StartSlots,
    /// Reads each flow's run history at most once per tick for all its runs in progress.
    tracker: ExecutionTracker,
    /// StartFlow's answer per client token until a write has recorded it. While the API server
    /// refuses writes, each retry would otherwise call StartFlow again: harmless with the token,
    /// but it spends AppFlow's quota.
    answered: Mutex<HashMap<String, StartedFlow>>,
}

impl<A: AppFlow> Actor<A> {
    /// `start_rate`: StartFlow calls per second, all flows together; `starts_per_flow`: one
    /// flow's calls in flight at most; `poll_tick`: how long one history read serves its runs.
    pub fn new(
        appflow: A,
        start_rate: NonZeroU32,
        starts_per_flow: usize,
        poll_tick: Duration,
    ) -> Self {
        Actor {
            appflow,
            start_limiter: RateLimiter::direct(Quota::per_second(start_rate)),
            start_slots: StartSlots::new(starts_per_flow),
            tracker: ExecutionTracker::new(poll_tick),
            answered: Mutex::default(),
        }
    }

    /// Makes `call` for the FlowRun named `flowrun` (for logs). `None`: the flow has no free
    /// StartFlow slot, so no call was made.
    pub async fn call(&self, flowrun: &str, call: AppFlowCall) -> Option<Answer> {
        let answer = match call {
            AppFlowCall::StartFlow(call) => return self.start(flowrun, call).await,
            AppFlowCall::Track(call) => self.track(flowrun, call).await,
            AppFlowCall::Cancel(call) => self.cancel(flowrun, call).await,
            AppFlowCall::Stop(call) => self.stop(flowrun, call).await,
        };
        Some(answer)
    }

    /// A write for the FlowRun of this token landed: its StartFlow answer is recorded.
    pub fn forget_answer(&self, client_token: &str) {
        lock(&self.answered).remove(client_token);
    }

    #[cfg(test)]
    pub(crate) fn has_answer(&self, client_token: &str) -> bool {
        lock(&self.answered).contains_key(client_token)
    }

    async fn start(&self, flowrun: &str, call: StartCall) -> Option<Answer> {
        let request = &call.request;
        let answered = lock(&self.answered).get(&request.client_token).cloned();
        if let Some(started) = answered {
            tracing::debug!(flowrun, "Reusing StartFlow's answer, not recorded yet");
            return Some(Answer::Started(call, Ok(started)));
        }
        let Some(_slot) = self.start_slots.take(&request.flow) else {
            tracing::debug!(flowrun, "Waiting for a StartFlow slot of its flow");
            return None;
        };
        self.start_limiter.until_ready().await;
        let result = self.appflow.start_flow(request).await;
        match &result {
            Ok(started) => {
                lock(&self.answered).insert(request.client_token.clone(), started.clone());
                tracing::info!(
                    flowrun,
                    flow = %request.flow.flow_name,
                    execution_id = started.execution_id.as_deref().unwrap_or_default(),
                    "Started flow"
                );
            }
            Err(error) => tracing::warn!(
                flowrun,
                flow = %request.flow.flow_name,
                code = error.code.as_deref().unwrap_or_default(),
                %error,
                "Failed to start flow"
            ),
        }
        Some(Answer::Started(call, result))
    }

    async fn track(&self, flowrun: &str, call: TrackCall) -> Answer {
        let result = self
            .tracker
            .find(&self.appflow, &call.flow, &call.execution_id, call.started)
            .await;
        if let Err(error) = &result {
            tracing::warn!(flowrun, flow = %call.flow.flow_name, %error, "Failed to read run history");
        }
        Answer::Tracked(call, result)
    }

    async fn cancel(&self, flowrun: &str, call: CancelCall) -> Answer {
        let result = self
            .appflow
            .cancel_flow_executions(&call.flow, std::slice::from_ref(&call.execution_id))
            .await;
        let (flow, execution_id) = (&call.flow.flow_name, &call.execution_id);
        match &result {
            Ok(_) => {
                tracing::info!(flowrun, %flow, execution_id, cause = ?call.cause, "Canceled flow run")
            }
            Err(error) => {
                tracing::warn!(flowrun, %flow, execution_id, %error, "Failed to cancel flow run")
            }
        }
        Answer::Canceled(call, result)
    }

    async fn stop(&self, flowrun: &str, call: StopCall) -> Answer {
        let result = self.appflow.stop_flow(&call.flow).await;
        let flow = &call.flow.flow_name;
        match &result {
            Ok(_) => tracing::info!(flowrun, %flow, "Deactivated flow"),
            Err(error) => tracing::warn!(flowrun, %flow, %error, "Failed to deactivate flow"),
        }
        Answer::Stopped(call, result)
    }
}
