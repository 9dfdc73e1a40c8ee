//! Events, published off the reconcile path. A reconcile hands its event to a bounded queue and
//! goes on; one task publishes the queue one event at a time. When a burst fills the queue,
//! further events are dropped and counted (`flowrun_events_dropped`): events are best-effort in
//! Kubernetes, and the status, which carries the same facts, must never wait for them.
//!
//! Warnings go through kube's `Recorder`, which folds repeats of a reason on one object into a
//! series (a retry loop makes one event with a count, not hundreds). Normal events happen once
//! per transition and are created directly: the `Recorder` keeps each event it published for
//! 6 minutes, and a burst of thousands of runs would make that cache the operator's largest
//! piece of memory, scanned under one lock at every publish.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use flowrun_api::conditions::Reason;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::core::error_boundary::InvalidObject;
use kube::runtime::events::{Event, EventType as KubeEventType, Recorder, Reporter};
use kube::{Client, Resource};
use tokio::sync::mpsc;

use crate::telemetry::Telemetry;
use flowrun_core::decide::{EventNote, EventType};

/// Events waiting to be published; about 1 kB each.
pub const QUEUE_CAPACITY: usize = 2048;
/// The events API caps notes at 1 kB.
const MAX_NOTE_BYTES: usize = 1000;

pub struct EventPublisher {
    queue: mpsc::Sender<Queued>,
    /// Set while events are being dropped, so the log says so once per episode.
    dropping: AtomicBool,
    telemetry: Arc<Telemetry>,
}

struct Queued {
    regarding: ObjectReference,
    note: EventNote,
    action: String,
}

impl EventPublisher {
    /// Starts the publishing task, with room for `capacity` waiting events; the task ends when
    /// the publisher is dropped and the queue is empty.
    pub fn spawn(
        client: Client,
        reporter: Reporter,
        capacity: usize,
        telemetry: Arc<Telemetry>,
    ) -> Self {
        let (queue, mut queued) = mpsc::channel(capacity);
        let writer = EventWriter {
            recorder: Recorder::new(client.clone(), reporter.clone()),
            client,
            reporter,
        };
        // One event write at a time, so that a burst's events do not crowd out its status
        // writes at the API server (docs/performance.md); that is still hundreds per second.
        let counter = telemetry.clone();
        tokio::spawn(async move {
            while let Some(event) = queued.recv().await {
                counter.count_queued_event(false);
                writer.write(event).await;
            }
        });
        EventPublisher {
            queue,
            dropping: AtomicBool::new(false),
            telemetry,
        }
    }

    /// Queues an event about `regarding`; never waits.
    pub fn publish(&self, regarding: ObjectReference, note: &EventNote, action: &str) {
        let queued = Queued {
            regarding,
            note: EventNote {
                note: truncate(&note.note, MAX_NOTE_BYTES).to_owned(),
                ..note.clone()
            },
            action: action.to_owned(),
        };
        // Counted before it can be taken off the queue, so the gauge never goes below zero.
        self.telemetry.count_queued_event(true);
        match self.queue.try_send(queued) {
            Ok(()) => {
                if self.dropping.swap(false, Ordering::Relaxed) {
                    tracing::info!("Publishing events again");
                }
            }
            Err(error) => {
                self.telemetry.count_queued_event(false);
                self.telemetry.count_dropped_event();
                if !self.dropping.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        %error,
                        "Dropping events: too many are waiting to be published; statuses are \
                         unaffected (see flowrun_events_dropped_total)"
                    );
                }
            }
        }
    }
}

impl EventPublisher {
    /// A Warning event (`InvalidObject`) about an object of kind `K` that does not parse, e.g.
    /// one stored under an older schema; `consequence` says what the operator does about it.
    pub fn publish_unreadable<K: Resource<DynamicType = ()>>(
        &self,
        invalid: &InvalidObject,
        consequence: &str,
    ) {
        let kind = K::kind(&());
        let regarding = ObjectReference {
            api_version: Some(K::api_version(&()).into_owned()),
            kind: Some(kind.clone().into_owned()),
            name: invalid.metadata.name.clone(),
            namespace: invalid.metadata.namespace.clone(),
            uid: invalid.metadata.uid.clone(),
            resource_version: invalid.metadata.resource_version.clone(),
            ..Default::default()
        };
        let note = EventNote {
            type_: EventType::Warning,
            reason: Reason::InvalidObject,
            note: format!(
                "The operator cannot read this {kind}: {}. {consequence}",
                invalid.error
            ),
        };
        self.publish(regarding, &note, "Reconcile");
    }
}

struct EventWriter {
    client: Client,
    reporter: Reporter,
    recorder: Recorder,
}

impl EventWriter {
    /// A failure is logged, never allowed to undo or repeat the transition it describes.
    async fn write(&self, queued: Queued) {
        let Queued {
            regarding,
            note,
            action,
        } = queued;
        let result = match note.type_ {
            EventType::Warning => {
                let event = Event {
                    type_: KubeEventType::Warning,
                    reason: note.reason.as_str().to_owned(),
                    note: Some(note.note.clone()),
                    action,
                    secondary: None,
                };
                self.recorder.publish(&event, &regarding).await
            }
            EventType::Normal => {
                let event = self.normal_event(&regarding, &note, action);
                let namespace = regarding.namespace.as_deref().unwrap_or("default");
                Api::<KubeEvent>::namespaced(self.client.clone(), namespace)
                    .create(&PostParams::default(), &event)
                    .await
                    .map(drop)
            }
        };
        if let Err(error) = result {
            tracing::warn!(
                object = regarding.name.as_deref().unwrap_or_default(),
                reason = note.reason.as_str(),
                %error,
                "Failed to publish event"
            );
        }
    }

    /// The event as kube's `Recorder` would write it, without a series.
    fn normal_event(
        &self,
        regarding: &ObjectReference,
        note: &EventNote,
        action: String,
    ) -> KubeEvent {
        let now = jiff::Timestamp::now();
        let controller = &self.reporter.controller;
        KubeEvent {
            metadata: ObjectMeta {
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or(controller),
                    now.as_nanosecond()
                )),
                namespace: regarding.namespace.clone(),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some("Normal".to_owned()),
            reason: Some(note.reason.as_str().to_owned()),
            note: Some(note.note.clone()),
            action: Some(action),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| controller.clone()),
            ),
            ..KubeEvent::default()
        }
    }
}

fn truncate(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowrun_api::conditions::Reason;

    #[test]
    fn truncation_never_splits_a_character() {
        assert_eq!(truncate("abc", 10), "abc");
        assert_eq!(truncate("abcdef", 3), "abc");
        assert_eq!(truncate("aé", 2), "a");
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_events_instead_of_waiting() {
        // An API server that accepts connections and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let url = format!("http://{address}").parse().expect("url");
        let client = Client::try_from(kube::Config::new(url)).expect("client");
        let telemetry = Arc::new(Telemetry::new());
        let reporter = Reporter {
            controller: "test".into(),
            instance: None,
        };
        let publisher = EventPublisher::spawn(client, reporter, 3, telemetry.clone());
        let regarding = ObjectReference {
            name: Some("nightly".into()),
            namespace: Some("team-a".into()),
            ..ObjectReference::default()
        };
        let note = EventNote {
            type_: EventType::Normal,
            reason: Reason::Running,
            note: "Started".into(),
        };

        // The test's runtime has one thread: the publishing task cannot take any event until
        // this loop yields, so exactly the queue's capacity is kept.
        for _ in 0..20 {
            publisher.publish(regarding.clone(), &note, "StartFlow");
        }

        let metrics = telemetry.encode();
        assert!(
            metrics.contains("flowrun_events_dropped_total 17"),
            "{metrics}"
        );
    }
}
