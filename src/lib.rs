//! flowrun-operator: runs Amazon AppFlow flows from `FlowRun` custom resources.
//!
//! The data takes one road: watch -> observe -> decide -> act -> report.
//! - [`controller`]: watch and reconcile; observes the clock and calls the other steps.
//! - [`decide`]: pure decisions (no I/O).
//! - [`appflow`]: act; the only module that calls AWS ([`tracker`] batches its history reads).
//! - [`report`]: the only module that writes FlowRuns; [`events`] publishes their events.
//! - [`tenancy`]: FlowRunPolicy, who may run which flow under which AWS identity.
//! - [`leader`]: leader election on a Lease; [`telemetry`]: metrics, `/healthz` and `/readyz`.

pub mod appflow;
pub mod conditions;
pub mod controller;
pub mod decide;
pub mod events;
pub mod flowrun;
pub mod leader;
pub mod report;
pub mod settings;
pub mod telemetry;
pub mod tenancy;
pub mod tracker;

/// Locks a mutex of plain maps and counters. A thread that panicked while holding it leaves
/// them usable, so poisoning is ignored rather than spread.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
