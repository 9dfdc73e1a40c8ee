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

/// What the unit tests of several modules share.
#[cfg(test)]
pub(crate) mod test_support {
    use flowrun_core::decide::Rules;
    use jiff::SignedDuration;

    /// A client that never connects: nothing reaches an API server.
    pub fn offline_client() -> kube::Client {
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
        kube::Client::try_from(config).expect("client")
    }

    /// Short delays and intervals; no default region, no policy required.
    pub fn rules() -> Rules {
        Rules {
            default_region: None,
            not_found_grace: SignedDuration::from_mins(10),
            retry_initial_delay: SignedDuration::from_secs(1),
            retry_max_delay: SignedDuration::from_secs(2),
            poll_initial_interval: SignedDuration::from_secs(1),
            poll_max_interval: SignedDuration::from_secs(2),
            require_flowrun_policy: false,
            cancel_timeout: SignedDuration::from_mins(15),
        }
    }
}
