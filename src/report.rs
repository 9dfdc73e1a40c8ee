//! Report: the only writes to Kubernetes. One status write per transition, by server-side apply
//! under one field manager (so fields the operator drops are removed), and an event for it.

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType as KubeEventType, Recorder};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::decide::{EventNote, EventType};
use crate::flowrun::{FlowRun, FlowRunStatus};

pub const FIELD_MANAGER: &str = "flowrun-operator";

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("failed to write the status of FlowRun {namespace}/{name}")]
    WriteStatus {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

pub async fn write_status(
    api: &Api<FlowRun>,
    flowrun: &FlowRun,
    status: &FlowRunStatus,
) -> Result<(), ReportError> {
    let patch = json!({
        "apiVersion": FlowRun::api_version(&()),
        "kind": FlowRun::kind(&()),
        "status": status,
    });
    api.patch_status(
        &flowrun.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(drop)
    .map_err(|source| ReportError::WriteStatus {
        namespace: flowrun.namespace().unwrap_or_default(),
        name: flowrun.name_any(),
        source,
    })
}

/// Publishes an event about `regarding`. Events are best-effort: a failure is logged, never
/// allowed to undo or repeat the transition it describes.
pub async fn publish(
    recorder: &Recorder,
    regarding: &k8s_openapi::api::core::v1::ObjectReference,
    note: &EventNote,
    action: &str,
) {
    let event = Event {
        type_: match note.type_ {
            EventType::Normal => KubeEventType::Normal,
            EventType::Warning => KubeEventType::Warning,
        },
        reason: note.reason.as_str().to_owned(),
        // The events API caps notes at 1 kB.
        note: Some(truncate(&note.note, 1000).to_owned()),
        action: action.to_owned(),
        secondary: None,
    };
    if let Err(error) = recorder.publish(&event, regarding).await {
        tracing::warn!(
            object = regarding.name.as_deref().unwrap_or_default(),
            reason = note.reason.as_str(),
            %error,
            "Failed to publish event"
        );
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
    use super::truncate;

    #[test]
    fn truncation_never_splits_a_character() {
        assert_eq!(truncate("abc", 10), "abc");
        assert_eq!(truncate("abcdef", 3), "abc");
        assert_eq!(truncate("aé", 2), "a");
    }
}
