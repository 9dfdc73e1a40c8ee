//! flowrun-operator: runs Amazon AppFlow flows from `FlowRun` custom resources.
//!
//! The data takes one road: watch -> observe -> decide -> act -> report. The API types live in
//! `flowrun-api` and the pure rules (decide) in `flowrun-core`; this crate is the part that
//! touches the network:
//! - [`watch`]: the FlowRun watches and their trimmed cache; [`policies`]: the FlowRunPolicies.
//! - [`reconcile`]: one reconcile, observe -> decide -> act -> report.
//! - [`schedules`]: the FlowRunSchedules, the same road: a FlowRun per slot.
//! - [`act`]: the only module that calls AWS, behind the narrow [`act::AppFlow`] trait.
//! - [`report`]: the only module that writes FlowRuns, and publishes their events.
//! - [`leader`]: leader election on a Lease; [`telemetry`]: metrics, `/healthz` and `/readyz`.
//! - [`settings`]: the command line; [`shutdown`]: the process-wide stop signal.

pub mod act;
pub mod leader;
pub mod policies;
pub mod reconcile;
pub mod report;
pub mod schedules;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
pub mod watch;

/// Locks a mutex of plain maps and counters. A thread that panicked while holding it leaves
/// them usable, so poisoning is ignored rather than spread.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
