//! Leader election on a `coordination.k8s.io/v1` Lease: of several replicas exactly one
//! reconciles, and a standby takes over when it dies or shuts down.
//!
//! The algorithm is client-go's (`k8s.io/client-go/tools/leaderelection`):
//! - Read the Lease. Take it when it is free, or when its holder has not renewed it for its
//!   `leaseDurationSeconds`. That time is measured on this replica's monotonic clock from the
//!   moment it last saw the Lease change, so clocks that disagree between nodes do not matter.
//! - Write it back under the `resourceVersion` read: of two replicas that try at once, one wins
//!   and the other gets a conflict.
//! - The leader renews every retry period. If it cannot renew within the renew deadline (shorter
//!   than the lease duration), it gives up before anyone else may take the Lease, and the
//!   operator exits.
//! - On shutdown the leader releases the Lease, so a standby takes over at once.
//!
//! Why not a crate: kube-lease-manager, the one maintained crate built for kube 5, renews and
//! releases with strategic-merge patches. Only built-in types accept those, and the local API
//! server the tests run against serves Lease as a custom resource, so it could not be tested
//! here. client-go's get/create/update needs nothing more and is about 150 lines.
//!
//! The decisions are pure functions ([`step`], [`Observer`], [`released`]); [`Elector`] does the
//! I/O around them.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::report::FIELD_MANAGER;
use crate::telemetry::{Role, Telemetry};

/// How long shutdown waits for the Lease to be released before it gives up (the standby then
/// takes over when the Lease expires).
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// client-go's factor: a standby waits between 1 and 2.2 retry periods between attempts, and
/// the renew deadline must leave room for more than one attempt.
const JITTER_FACTOR: f64 = 1.2;

/// The leader election flags, part of [`crate::settings::Settings`].
#[derive(clap::Args, Debug, Clone)]
pub struct LeaderElectionArgs {
    /// Reconcile only while holding a Lease, so that of several replicas one works and the
    /// others stand by (e.g. --leader-election or --leader-election=false)
    #[arg(
        long = "leader-election",
        env = "FLOWRUN_LEADER_ELECTION",
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub enabled: bool,

    /// Namespace of the Lease [default: the POD_NAMESPACE environment variable]
    #[arg(
        long = "leader-election-namespace",
        env = "FLOWRUN_LEADER_ELECTION_NAMESPACE"
    )]
    pub namespace: Option<String>,

    /// Name of the Lease
    #[arg(
        long = "leader-election-lease-name",
        env = "FLOWRUN_LEADER_ELECTION_LEASE_NAME",
        default_value = "flowrun-operator"
    )]
    pub lease_name: String,

    /// How long a standby waits, after the leader's last renewal, before it takes the Lease
    /// (whole seconds)
    #[arg(long = "leader-election-lease-duration", env = "FLOWRUN_LEADER_ELECTION_LEASE_DURATION",
          default_value = "15s", value_parser = crate::settings::parse_duration)]
    pub lease_duration: SignedDuration,

    /// How long the leader keeps trying to renew the Lease before it gives up and exits
    #[arg(long = "leader-election-renew-deadline", env = "FLOWRUN_LEADER_ELECTION_RENEW_DEADLINE",
          default_value = "10s", value_parser = crate::settings::parse_duration)]
    pub renew_deadline: SignedDuration,

    /// How often the leader renews the Lease, and how often a standby tries to take it
    #[arg(long = "leader-election-retry-period", env = "FLOWRUN_LEADER_ELECTION_RETRY_PERIOD",
          default_value = "2s", value_parser = crate::settings::parse_duration)]
    pub retry_period: SignedDuration,
}

/// A checked leader election setup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub namespace: String,
    pub lease_name: String,
    /// Unique per process: the pod name and a random suffix.
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaderElectionArgs {
    /// `None` when leader election is off; an error names the flag to fix. `pod_namespace` and
    /// `pod_name` come from the environment (the chart sets them from the downward API).
    pub fn config(
        &self,
        pod_namespace: Option<String>,
        pod_name: Option<String>,
    ) -> Result<Option<Config>, String> {
        if !self.enabled {
            return Ok(None);
        }
        let namespace = self
            .namespace
            .clone()
            .or(pod_namespace)
            .filter(|namespace| !namespace.is_empty())
            .ok_or("--leader-election needs --leader-election-namespace or POD_NAMESPACE")?;
        let seconds = |duration: SignedDuration| Duration::try_from(duration).unwrap_or_default();
        let (lease_duration, renew_deadline, retry_period) = (
            seconds(self.lease_duration),
            seconds(self.renew_deadline),
            seconds(self.retry_period),
        );
        if lease_duration.subsec_nanos() != 0 {
            return Err(format!(
                "--leader-election-lease-duration must be whole seconds, not {:#}",
                self.lease_duration
            ));
        }
        if renew_deadline >= lease_duration {
            return Err(format!(
                "--leader-election-renew-deadline ({:#}) must be shorter than \
                 --leader-election-lease-duration ({:#})",
                self.renew_deadline, self.lease_duration
            ));
        }
        if renew_deadline.as_secs_f64() <= JITTER_FACTOR * retry_period.as_secs_f64() {
            return Err(format!(
                "--leader-election-renew-deadline ({:#}) must be longer than 1.2 times \
                 --leader-election-retry-period ({:#})",
                self.renew_deadline, self.retry_period
            ));
        }
        Ok(Some(Config {
            namespace,
            lease_name: self.lease_name.clone(),
            identity: identity(pod_name.as_deref()),
            lease_duration,
            renew_deadline,
            retry_period,
        }))
    }
}

/// `<pod name or host name>_<random>`: unique even when a pod restarts under the same name.
fn identity(pod_name: Option<&str>) -> String {
    let host = pod_name
        .map(str::to_owned)
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| FIELD_MANAGER.to_owned());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}_{}", &suffix[..8])
}

/// What to do with the Lease as it is now.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Step {
    /// There is no Lease: create it, held by this replica.
    Create(LeaseSpec),
    /// Take or renew the Lease: write this spec under the `resourceVersion` read.
    Update(LeaseSpec),
    /// Another replica holds the Lease and renews it.
    Follow { holder: String },
}

/// The decision of one round. `current` is the Lease's spec (`None`: no Lease), `expired` what
/// the [`Observer`] says of it.
pub(crate) fn step(
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
pub(crate) fn released(current: LeaseSpec, now: Timestamp) -> LeaseSpec {
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
pub(crate) struct Observer {
    seen: Option<(Option<LeaseSpec>, Instant)>,
}

impl Observer {
    /// Records the Lease read at `now`; true when its holder's claim has run out.
    pub(crate) fn expired(
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
    pub(crate) fn wrote(&mut self, spec: LeaseSpec, now: Instant) {
        self.seen = Some((Some(spec), now));
    }
}

/// How one round of [`Elector::try_acquire_or_renew`] ended.
enum Round {
    /// This replica holds the Lease.
    Holding,
    /// Another replica holds a valid Lease.
    Following(String),
    /// Another writer changed the Lease between the read and the write (409 Conflict).
    Conflict,
}

/// Takes, renews and releases the Lease.
pub struct Elector {
    api: Api<Lease>,
    config: Config,
    observer: Observer,
    telemetry: Arc<Telemetry>,
}

impl Elector {
    pub fn new(client: Client, config: Config, telemetry: Arc<Telemetry>) -> Self {
        Elector {
            api: Api::namespaced(client, &config.namespace),
            config,
            observer: Observer::default(),
            telemetry,
        }
    }

    /// Waits, as a standby, until this replica holds the Lease. Errors are logged and retried.
    pub async fn acquire(&mut self) {
        tracing::info!(
            lease = %format!("{}/{}", self.config.namespace, self.config.lease_name),
            identity = %self.config.identity,
            "Waiting for the leader lease"
        );
        let mut last_holder = None;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(Round::Holding) => {
                    tracing::info!(identity = %self.config.identity, "Became the leader");
                    return;
                }
                Ok(Round::Conflict) => {}
                Ok(Round::Following(holder)) => {
                    if last_holder.as_ref() != Some(&holder) {
                        tracing::info!(leader = %holder, "Standing by; another replica leads");
                        last_holder = Some(holder);
                    }
                }
                Err(error) => tracing::warn!(%error, "Failed to read or take the leader lease"),
            }
            let jitter = 1.0 + fastrand::f64() * JITTER_FACTOR;
            tokio::time::sleep(self.config.retry_period.mul_f64(jitter)).await;
        }
    }

    /// Keeps renewing the Lease in the background until [`Leadership::release`] or until the
    /// Lease is lost, which [`Leadership::lost`] reports.
    pub fn keep_leading(mut self) -> Leadership {
        self.telemetry.set_role(Role::Leading);
        let (lost_tx, lost_rx) = oneshot::channel();
        let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut renewed = Instant::now();
            loop {
                let deadline = renewed + self.config.renew_deadline;
                let round = async {
                    tokio::time::sleep(self.config.retry_period).await;
                    tokio::time::timeout_at(deadline, self.try_acquire_or_renew()).await
                };
                let outcome = tokio::select! {
                    _ = &mut stop_rx => None,
                    outcome = round => Some(outcome),
                };
                let lost = match outcome {
                    None => return self,
                    Some(Ok(Ok(Round::Holding))) => {
                        renewed = Instant::now();
                        None
                    }
                    // Someone else wrote the Lease meanwhile: the next round reads who.
                    Some(Ok(Ok(Round::Conflict))) => None,
                    Some(Ok(Ok(Round::Following(holder)))) => {
                        Some(format!("{holder} took the lease"))
                    }
                    Some(Ok(Err(error))) => {
                        tracing::warn!(%error, "Failed to renew the leader lease");
                        None
                    }
                    Some(Err(_elapsed)) => None,
                };
                let lost = lost.or_else(|| {
                    (Instant::now() >= deadline).then(|| {
                        format!(
                            "could not renew it within the renew deadline ({:?})",
                            self.config.renew_deadline
                        )
                    })
                });
                if let Some(reason) = lost {
                    self.telemetry.set_role(Role::Stopping);
                    let _ = lost_tx.send(reason);
                    return self;
                }
            }
        });
        Leadership {
            lost: lost_rx,
            stop: Some(stop_tx),
            task,
        }
    }

    /// One round: read the Lease, then take it, renew it, or follow its holder.
    async fn try_acquire_or_renew(&mut self) -> Result<Round, kube::Error> {
        let lease = self.api.get_opt(&self.config.lease_name).await?;
        let now = Instant::now();
        let current = lease
            .as_ref()
            .map(|lease| lease.spec.clone().unwrap_or_default());
        let expired = self
            .observer
            .expired(current.as_ref(), now, self.config.lease_duration);
        let lease_seconds = i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        let written = match step(
            current.as_ref(),
            expired,
            &self.config.identity,
            lease_seconds,
            Timestamp::now(),
        ) {
            Step::Follow { holder } => {
                self.telemetry.set_role(Role::Standby {
                    leader: Some(holder.clone()),
                });
                return Ok(Round::Following(holder));
            }
            Step::Create(spec) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.lease_name.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec.clone()),
                };
                self.api.create(&params, &lease).await.map(|_| spec)
            }
            Step::Update(spec) => {
                let mut lease = lease.unwrap_or_default();
                lease.spec = Some(spec.clone());
                self.api
                    .replace(&self.config.lease_name, &params, &lease)
                    .await
                    .map(|_| spec)
            }
        };
        match written {
            Ok(spec) => {
                self.observer.wrote(spec, now);
                Ok(Round::Holding)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Round::Conflict),
            Err(error) => Err(error),
        }
    }

    /// Hands the Lease back if this replica still holds it; true if it did.
    async fn release(&mut self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.config.lease_name).await? else {
            return Ok(false);
        };
        let spec = lease.spec.take().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(false);
        }
        lease.spec = Some(released(spec, Timestamp::now()));
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        self.api
            .replace(&self.config.lease_name, &params, &lease)
            .await?;
        Ok(true)
    }
}

/// The Lease was lost while leading.
#[derive(Debug, thiserror::Error)]
#[error("lost the leader lease ({0}); exiting so that only the new leader reconciles")]
pub struct LostLease(String);

/// Runs `work` (the controller) only while this replica holds the Lease: stands by until it
/// does (and returns if SIGTERM or SIGINT comes first), runs `work` to its end (its own
/// graceful shutdown finishes the reconciles in flight), then releases the Lease. Stops `work`
/// at once and fails if the Lease is lost meanwhile.
pub async fn lead(
    client: Client,
    config: Config,
    telemetry: Arc<Telemetry>,
    work: impl Future<Output = ()>,
) -> Result<(), LostLease> {
    let mut elector = Elector::new(client, config, telemetry);
    tokio::select! {
        () = elector.acquire() => {}
        () = shutdown_signal() => {
            tracing::info!("Stopped while standing by");
            return Ok(());
        }
    }
    let mut leadership = elector.keep_leading();
    tokio::select! {
        () = work => {}
        reason = leadership.lost() => return Err(LostLease(reason)),
    }
    leadership.release().await;
    Ok(())
}

/// SIGTERM (what Kubernetes sends) or SIGINT (Ctrl+C).
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "Cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// This replica leads; the Lease is renewed in the background.
pub struct Leadership {
    lost: oneshot::Receiver<String>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Elector>,
}

impl Leadership {
    /// Resolves, with the reason, when the Lease is lost; the operator must stop at once.
    pub async fn lost(&mut self) -> String {
        (&mut self.lost)
            .await
            .unwrap_or_else(|_| "the lease renewal stopped".to_owned())
    }

    /// Stops renewing and hands the Lease back, so a standby takes over without waiting for it
    /// to expire. Call it after the controller has finished its reconciles.
    pub async fn release(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let mut elector = match self.task.await {
            Ok(elector) => elector,
            Err(error) => {
                tracing::warn!(%error, "The lease renewal task failed; the lease expires on its own");
                return;
            }
        };
        elector.telemetry.set_role(Role::Stopping);
        match tokio::time::timeout(RELEASE_TIMEOUT, elector.release()).await {
            Ok(Ok(true)) => tracing::info!("Released the leader lease"),
            Ok(Ok(false)) => {
                tracing::info!("The leader lease was no longer held; nothing to release")
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "Failed to release the leader lease; it expires on its own");
            }
            Err(_) => tracing::warn!(
                "Releasing the leader lease took longer than {RELEASE_TIMEOUT:?}; it expires on its own"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::settings::Settings;

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

    fn args(flags: &[&str]) -> LeaderElectionArgs {
        let mut argv = vec!["flowrun-operator"];
        argv.extend_from_slice(flags);
        Settings::try_parse_from(argv)
            .expect("flags parse")
            .leader_election
    }

    #[test]
    fn leader_election_is_off_unless_asked_for() {
        assert_eq!(args(&[]).config(Some("ns".into()), None), Ok(None));
        assert_eq!(
            args(&["--leader-election=false"]).config(Some("ns".into()), None),
            Ok(None)
        );
        assert!(args(&["--leader-election"]).enabled);
        assert!(args(&["--leader-election=true"]).enabled);
    }

    #[test]
    fn leader_election_settings_are_checked_together() {
        let config = args(&["--leader-election"])
            .config(
                Some("flowrun-system".into()),
                Some("flowrun-operator-7d9f".into()),
            )
            .expect("defaults fit")
            .expect("on");
        assert_eq!(config.namespace, "flowrun-system");
        assert_eq!(config.lease_name, "flowrun-operator");
        assert!(
            config.identity.starts_with("flowrun-operator-7d9f_"),
            "{}",
            config.identity
        );
        assert_eq!(config.lease_duration, Duration::from_secs(15));
        assert_eq!(config.renew_deadline, Duration::from_secs(10));
        assert_eq!(config.retry_period, Duration::from_secs(2));

        let flag_wins = args(&["--leader-election", "--leader-election-namespace=ops"])
            .config(Some("flowrun-system".into()), None)
            .expect("fits")
            .expect("on");
        assert_eq!(flag_wins.namespace, "ops");

        let refusals: &[(&[&str], Option<&str>, &str)] = &[
            (
                &["--leader-election"],
                None,
                "--leader-election-namespace or POD_NAMESPACE",
            ),
            (
                &[
                    "--leader-election",
                    "--leader-election-lease-duration=2500ms",
                ],
                Some("ns"),
                "whole seconds",
            ),
            (
                &["--leader-election", "--leader-election-renew-deadline=15s"],
                Some("ns"),
                "must be shorter than --leader-election-lease-duration",
            ),
            (
                &["--leader-election", "--leader-election-retry-period=9s"],
                Some("ns"),
                "longer than 1.2 times --leader-election-retry-period",
            ),
        ];
        for (flags, namespace, message) in refusals {
            let error = args(flags)
                .config(namespace.map(str::to_owned), None)
                .expect_err("refused");
            assert!(error.contains(message), "{flags:?}: {error}");
        }
        assert!(
            Settings::try_parse_from(["flowrun-operator", "--leader-election-retry-period=0s"])
                .is_err()
        );
    }
}
