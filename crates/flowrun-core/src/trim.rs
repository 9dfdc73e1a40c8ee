//! What the watch cache may drop: the rules read little of a finished FlowRun, and the cache
//! holds every FlowRun in scope, mostly finished ones.

use flowrun_api::{FlowRun, FlowRunStatus, Phase};

/// Drops what [`crate::decide::decide`] never reads from a finished FlowRun: its status is only looked at for
/// the phase and the times the TTL counts from, and a finished FlowRun's status is never
/// written again. About 60 % of a finished FlowRun's memory. An Activated FlowRun keeps its
/// region and identity, which say whose flow it keeps active (see deactivateOnDelete); one
/// with deactivateOnDelete is not done with (its deletion deactivates the flow and may write
/// its status) and keeps everything.
pub fn trim_finished(flowrun: &mut FlowRun) {
    let phase = flowrun.phase();
    if !phase.is_final() || (phase == Phase::Activated && flowrun.spec.deactivate_on_delete) {
        return;
    }
    let activated = phase == Phase::Activated;
    if let Some(status) = &mut flowrun.status {
        *status = FlowRunStatus {
            phase: status.phase,
            start_time: status.start_time.take(),
            completion_time: status.completion_time.take(),
            region: status.region.take().filter(|_| activated),
            identity: status.identity.take().filter(|_| activated),
            ..FlowRunStatus::default()
        };
    }
}
