//! Health: what this replica does (leading, standing by) and whether it is ready, as
//! `/readyz` reports it.

use flowrun_api::{FlowRun, FlowRunPolicy, FlowRunSchedule};
use kube::core::DeserializeGuard;
use kube::runtime::reflector::Store;

/// What this replica does, as `/readyz` and `flowrun_leader` report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Starting up: not leading, and (with leader election) the Lease was not read yet.
    Starting,
    /// Another replica leads; this one takes over when it stops.
    Standby { leader: Option<String> },
    /// This replica reconciles.
    Leading,
    /// Shutting down, or the Lease was lost.
    Stopping,
}

#[derive(Default)]
pub(super) struct Watches {
    pub(super) stores: Vec<Store<DeserializeGuard<FlowRun>>>,
    pub(super) policies: Vec<Store<DeserializeGuard<FlowRunPolicy>>>,
    pub(super) schedules: Vec<Store<DeserializeGuard<FlowRunSchedule>>>,
    pub(super) synced: usize,
}

/// Readiness: a leader is ready once every watch has synced; a standby is ready (it must be,
/// or a rolling update and a PodDisruptionBudget would count it as down) and says so.
pub(super) fn readiness(role: &Role, watches: usize, synced: usize) -> (bool, String) {
    match role {
        Role::Starting => (false, "not ready: starting".to_owned()),
        Role::Standby { leader } => (
            true,
            format!(
                "ok: standby, {} leads",
                leader.as_deref().unwrap_or("another replica")
            ),
        ),
        Role::Leading if watches == 0 || synced < watches => (
            false,
            format!("not ready: leading, FlowRun watches synced: {synced} of {watches}"),
        ),
        Role::Leading => (true, "ok: leading, FlowRun watch synced".to_owned()),
        Role::Stopping => (false, "not ready: shutting down".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_waits_for_every_watch_and_reports_standby_as_ready() {
        let leader = Some("op-b_1234".to_owned());
        let table: &[(Role, usize, usize, bool, &str)] = &[
            (Role::Starting, 0, 0, false, "not ready: starting"),
            (
                Role::Leading,
                0,
                0,
                false,
                "not ready: leading, FlowRun watches synced: 0 of 0",
            ),
            (
                Role::Leading,
                2,
                1,
                false,
                "not ready: leading, FlowRun watches synced: 1 of 2",
            ),
            (
                Role::Leading,
                2,
                2,
                true,
                "ok: leading, FlowRun watch synced",
            ),
            (
                Role::Standby { leader },
                0,
                0,
                true,
                "ok: standby, op-b_1234 leads",
            ),
            (
                Role::Standby { leader: None },
                0,
                0,
                true,
                "ok: standby, another replica leads",
            ),
            (Role::Stopping, 1, 1, false, "not ready: shutting down"),
        ];
        for (role, watches, synced, ready, text) in table {
            assert_eq!(
                readiness(role, *watches, *synced),
                (*ready, (*text).to_owned()),
                "{role:?}"
            );
        }
    }
}
