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
//! server the tests run against serves Lease as a custom resource that refuses them, so it
//! could not be tested here. Written here instead, it is client-go's get/create/update: about
//! 100 lines of rules and 350 of I/O, logs, flags and shutdown. Its merit beyond testability is
//! client-go's: expiry is measured on this replica's own clock, never by comparing clocks.
//!
//! The decisions are pure functions ([`lease`]: `step`, `Observer`, `released`);
//! [`elector::Elector`] does the I/O around them; [`lead`] runs the controller while leading.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use flowrun_api::FIELD_MANAGER;
use kube::Client;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::shutdown::shutdown_signal;
use crate::telemetry::{Role, Telemetry};

mod elector;
mod lease;

use elector::Elector;

/// How long shutdown waits for the Lease to be released before it gives up (the standby then
/// takes over when the Lease expires).
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// client-go's factor: a standby waits between 1 and 2.2 retry periods between attempts, and
/// the renew deadline must leave room for more than one attempt.
pub const JITTER_FACTOR: f64 = 1.2;

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

/// `<pod name or host name>_<random>`: unique even when a pod restarts under the same name.
pub fn identity(pod_name: Option<&str>) -> String {
    let host = pod_name
        .map(str::to_owned)
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| FIELD_MANAGER.to_owned());
    format!("{host}_{:08x}", fastrand::u32(..))
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
