//! The rules of leader election, pure: what to do with the Lease as read, when a holder's
//! claim has run out, and the spec that hands the Lease back.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use tokio::time::Instant;

/// What to do with the Lease as it is now.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Step {
    /// There is no Lease: create it, held by this replica.
    Create(LeaseSpec),
    /// Take or renew the Lease: write this spec under the `resourceVersion` read.
    Update(LeaseSpec),
    /// Another replica holds the Lease and renews it.
    Follow { holder: String },
}

/// The decision of one round. `current` is the Lease's spec (`None`: no Lease), `expired` what
/// the [`Observer`] says of it.
pub(super) fn step(
    current: Option<&LeaseSpec>,
    expired: bool,
    identity: &str,
    lease_seconds: i32,
    now: Timestamp,
) -> Step {
    let held = |acquired: Timestamp, transitions: i32| LeaseSpec {
        holder_identity: Some(identity.to_owned()),
        lease_duration_seconds: Some(lease_seconds),
        acquire_time: Some(MicroTime(acquired)),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..current.cloned().unwrap_or_default()
    };
    let Some(current) = current else {
        return Step::Create(held(now, 0));
    };
    let transitions = current.lease_transitions.unwrap_or(0);
    match current.holder_identity.as_deref().filter(|h| !h.is_empty()) {
        Some(holder) if holder == identity => {
            let acquired = current.acquire_time.as_ref().map_or(now, |time| time.0);
            Step::Update(held(acquired, transitions))
        }
        Some(holder) if !expired => Step::Follow {
            holder: holder.to_owned(),
        },
        // Free, released, or its holder stopped renewing.
        _ => Step::Update(held(now, transitions.saturating_add(1))),
    }
}

/// The spec that hands the Lease back: no holder, so a standby takes it on its next try.
pub(super) fn released(current: LeaseSpec, now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        ..current
    }
}

/// Remembers the Lease as last seen and when, by this replica's clock. A holder's claim runs
/// out `leaseDurationSeconds` after the Lease last changed as seen from here.
#[derive(Debug, Default)]
pub(super) struct Observer {
    seen: Option<(Option<LeaseSpec>, Instant)>,
}

impl Observer {
    /// Records the Lease read at `now`; true when its holder's claim has run out.
    pub(super) fn expired(
        &mut self,
        current: Option<&LeaseSpec>,
        now: Instant,
        default_duration: Duration,
    ) -> bool {
        let since = match &self.seen {
            Some((seen, since)) if seen.as_ref() == current => *since,
            _ => {
                self.seen = Some((current.cloned(), now));
                now
            }
        };
        let duration = current
            .and_then(|spec| spec.lease_duration_seconds)
            .and_then(|seconds| u64::try_from(seconds).ok())
            .map_or(default_duration, Duration::from_secs);
        now >= since + duration
    }

    /// Records a Lease this replica wrote.
    pub(super) fn wrote(&mut self, spec: LeaseSpec, now: Instant) {
        self.seen = Some((Some(spec), now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "op-a_1234";
    const OTHER: &str = "op-b_5678";

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).expect("valid timestamp")
    }

    fn held_by(holder: &str, acquired: i64, renewed: i64, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(MicroTime(at(acquired))),
            renew_time: Some(MicroTime(at(renewed))),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn each_lease_state_leads_to_one_step() {
        let free = LeaseSpec::default();
        let empty_holder = LeaseSpec {
            holder_identity: Some(String::new()),
            lease_transitions: Some(3),
            ..LeaseSpec::default()
        };
        let table: &[(&str, Option<LeaseSpec>, bool, Step)] = &[
            (
                "no lease: create it",
                None,
                false,
                Step::Create(held_by(ME, 100, 100, 0)),
            ),
            (
                "free lease: take it",
                Some(free),
                false,
                Step::Update(held_by(ME, 100, 100, 1)),
            ),
            (
                "released (empty holder): take it at once",
                Some(empty_holder),
                false,
                Step::Update(held_by(ME, 100, 100, 4)),
            ),
            (
                "held by another, still valid: follow",
                Some(held_by(OTHER, 0, 90, 2)),
                false,
                Step::Follow {
                    holder: OTHER.to_owned(),
                },
            ),
            (
                "held by another that stopped renewing: take it",
                Some(held_by(OTHER, 0, 10, 2)),
                true,
                Step::Update(held_by(ME, 100, 100, 3)),
            ),
            (
                "held by me: renew, keeping acquireTime and transitions",
                Some(held_by(ME, 40, 95, 2)),
                false,
                Step::Update(held_by(ME, 40, 100, 2)),
            ),
            (
                "held by me, even if it looks expired here: renew",
                Some(held_by(ME, 40, 60, 2)),
                true,
                Step::Update(held_by(ME, 40, 100, 2)),
            ),
        ];
        for (case, current, expired, expected) in table {
            assert_eq!(
                &step(current.as_ref(), *expired, ME, 15, at(100)),
                expected,
                "{case}"
            );
        }
    }

    #[test]
    fn released_lease_has_no_holder_and_keeps_its_history() {
        let spec = released(held_by(ME, 40, 95, 2), at(100));
        assert_eq!(spec.holder_identity, None);
        assert_eq!(spec.lease_transitions, Some(2));
        assert_eq!(spec.lease_duration_seconds, Some(1));
        assert_eq!(spec.renew_time, Some(MicroTime(at(100))));
        // A standby that reads it takes it at once, without waiting for any expiry.
        assert!(matches!(
            step(Some(&spec), false, OTHER, 15, at(101)),
            Step::Update(_)
        ));
    }

    #[test]
    fn a_claim_runs_out_a_lease_duration_after_the_lease_last_changed_as_seen_here() {
        let start = Instant::now();
        let secs = |s: u64| start + Duration::from_secs(s);
        let default = Duration::from_secs(30);
        let mut observer = Observer::default();
        let first = held_by(OTHER, 0, 0, 0);

        // The first sight starts the clock, however old renewTime looks (clock skew).
        assert!(!observer.expired(Some(&first), secs(0), default));
        assert!(!observer.expired(Some(&first), secs(14), default));
        assert!(observer.expired(Some(&first), secs(15), default));

        // A renewal restarts it.
        let renewed = held_by(OTHER, 0, 12, 0);
        assert!(!observer.expired(Some(&renewed), secs(16), default));
        assert!(!observer.expired(Some(&renewed), secs(30), default));
        assert!(observer.expired(Some(&renewed), secs(31), default));

        // Without leaseDurationSeconds the configured duration applies.
        let no_duration = LeaseSpec {
            lease_duration_seconds: None,
            ..renewed
        };
        assert!(!observer.expired(Some(&no_duration), secs(40), default));
        assert!(observer.expired(Some(&no_duration), secs(70), default));

        // What this replica wrote counts as seen when written.
        observer.wrote(held_by(ME, 70, 70, 1), secs(70));
        assert!(!observer.expired(Some(&held_by(ME, 70, 70, 1)), secs(80), default));
    }
}
