//! The I/O of leader election: reads and writes the Lease, around the rules in [`super::lease`].

use std::sync::Arc;

use flowrun_api::FIELD_MANAGER;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::core::DeserializeGuard;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::lease::{Observer, Step, released, step};
use super::{Config, JITTER_FACTOR, Leadership};
use crate::telemetry::{Role, Telemetry};

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
    /// The same Lease, read so that one which does not parse is still seen (see `read`).
    reader: Api<DeserializeGuard<Lease>>,
    config: Config,
    observer: Observer,
    pub(super) telemetry: Arc<Telemetry>,
}

impl Elector {
    pub fn new(client: Client, config: Config, telemetry: Arc<Telemetry>) -> Self {
        Elector {
            api: Api::namespaced(client.clone(), &config.namespace),
            reader: Api::namespaced(client, &config.namespace),
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

    /// The Lease as read. One that does not parse (where Lease is served as a custom resource
    /// with a loose schema, anything can write it) counts as held by an unknown holder whose
    /// claim runs out, like any holder's, once the Lease stops changing: the holder is named
    /// by the resourceVersion, so every write to the Lease renews the claim. Failing instead
    /// would leave the operator with no leader for as long as the Lease stays unreadable.
    async fn read(&self) -> Result<Option<Lease>, kube::Error> {
        let Some(guarded) = self.reader.get_opt(&self.config.lease_name).await? else {
            return Ok(None);
        };
        Ok(Some(guarded.0.unwrap_or_else(|invalid| {
            let version = invalid
                .metadata
                .resource_version
                .clone()
                .unwrap_or_default();
            tracing::warn!(
                error = %invalid.error,
                "Cannot read the leader lease; taking it over once it stops changing"
            );
            Lease {
                metadata: invalid.metadata,
                spec: Some(LeaseSpec {
                    holder_identity: Some(format!(
                        "an unreadable Lease at resourceVersion {version}"
                    )),
                    ..LeaseSpec::default()
                }),
            }
        })))
    }

    /// One round: read the Lease, then take it, renew it, or follow its holder.
    async fn try_acquire_or_renew(&mut self) -> Result<Round, kube::Error> {
        let lease = self.read().await?;
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
    pub(super) async fn release(&mut self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.read().await? else {
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
