//! Report: the only writes to Kubernetes. One status write per transition, by server-side apply
//! under one field manager (so fields the operator drops are removed); the start record and
//! the finalizer in one metadata write (also by server-side apply: the operator owns only its
//! own entries); deletion after the TTL; and an event for the transition.

use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use flowrun_api::{FIELD_MANAGER, FINALIZER, FlowRun, FlowRunStatus, START_ANNOTATION};
use flowrun_core::decide::{FinalizerChange, Transition};

use events::EventPublisher;

pub mod events;
pub mod schedule;

#[derive(Debug, thiserror::Error)]
#[error("failed to {action} FlowRun {namespace}/{name}")]
pub struct ReportError {
    action: &'static str,
    namespace: String,
    name: String,
    #[source]
    source: kube::Error,
}

/// What the writes of one transition left.
pub struct Written {
    /// The FlowRun as the last write left it, if it wrote and the FlowRun is still there.
    pub latest: Option<FlowRun>,
    /// The resourceVersion each write produced, in order: a transition may write up to three
    /// times, and the watch delivers every one of them.
    pub versions: Vec<String>,
    /// The FlowRun is gone after the writes (its last finalizer removed, or deleted).
    pub vanished: bool,
}

/// Carries out a transition: start record and finalizer in, status, finalizer out, deletion;
/// then its event.
pub async fn apply(
    api: &Api<FlowRun>,
    events: &EventPublisher,
    flowrun: &FlowRun,
    transition: &Transition,
    action: &str,
) -> Result<Written, ReportError> {
    let failed = |action| {
        move |source| ReportError {
            action,
            namespace: flowrun.namespace().unwrap_or_default(),
            name: flowrun.name_any(),
            source,
        }
    };
    let mut written = None;
    let mut versions = Vec::new();
    let mut vanished = false;
    let mut produced = |written: &Option<FlowRun>| {
        if let Some(version) = written.as_ref().and_then(|w| w.resource_version()) {
            versions.push(version);
        }
    };
    if let Some(record) = &transition.start_record {
        let record = json!(record).to_string();
        let finalizer = transition.finalizer == Some(FinalizerChange::Add);
        written = write_metadata(api, flowrun, finalizer, Some(&record))
            .await
            .map_err(failed("record the start of"))?;
        produced(&written);
    }
    if let Some(status) = &transition.status {
        written = Some(
            write_status(api, flowrun, status)
                .await
                .map_err(failed("write the status of"))?,
        );
        produced(&written);
        tracing::info!(
            flowrun = %format!("{}/{}", flowrun.namespace().unwrap_or_default(), flowrun.name_any()),
            phase = ?status.phase,
            message = status.message.as_deref().unwrap_or_default(),
            "Updated status"
        );
    }
    if transition.finalizer == Some(FinalizerChange::Remove) {
        // The start record stays: it is the FlowRun's account of its first attempt.
        let record = flowrun.annotations().get(START_ANNOTATION);
        written = write_metadata(api, flowrun, false, record.map(String::as_str))
            .await
            .map_err(failed("remove the finalizer of"))?;
        produced(&written);
        vanished = written.is_none();
    }
    if transition.delete {
        written = None;
        vanished = true;
        match api.delete(&flowrun.name_any(), &Default::default()).await {
            // Someone else deleted it first: the goal is reached.
            Ok(_) => {}
            Err(error) if is_gone(&error) => {}
            Err(error) => return Err(failed("delete")(error)),
        }
    }
    if let Some(event) = &transition.event {
        events.publish(flowrun.object_ref(&()), event, action);
    }
    Ok(Written {
        latest: written,
        versions,
        vanished,
    })
}

async fn write_status(
    api: &Api<FlowRun>,
    flowrun: &FlowRun,
    status: &FlowRunStatus,
) -> Result<FlowRun, kube::Error> {
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
}

/// `metadata.finalizers` is a set and annotations a map: applying them with or without our
/// entries adds or removes only those and leaves other controllers' entries alone. Returns the
/// FlowRun written (`None` when it is gone).
async fn write_metadata(
    api: &Api<FlowRun>,
    flowrun: &FlowRun,
    finalizer: bool,
    start_record: Option<&str>,
) -> Result<Option<FlowRun>, kube::Error> {
    let finalizers: &[&str] = if finalizer { &[FINALIZER] } else { &[] };
    let annotations = start_record
        .map(|record| json!({ START_ANNOTATION: record }))
        .unwrap_or_else(|| json!({}));
    let patch = json!({
        "apiVersion": FlowRun::api_version(&()),
        "kind": FlowRun::kind(&()),
        "metadata": {
            "name": flowrun.name_any(),
            // A precondition: without it, a late apply to a FlowRun that is gone would create
            // one, and one to a FlowRun re-created under the name would strip its finalizer.
            "uid": flowrun.uid(),
            "finalizers": finalizers,
            "annotations": annotations,
        },
    });
    match api
        .patch(
            &flowrun.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        // Removing a deleted FlowRun's last finalizer deletes it in the same request, and the
        // answer is its last state under the version it had before: no new version to wait
        // for, and the watch may still deliver copies under that version.
        Ok(written)
            if !finalizer
                && written.metadata.deletion_timestamp.is_some()
                && written.finalizers().is_empty() =>
        {
            Ok(None)
        }
        // The removal found it gone already: nothing left to do.
        Err(error) if !finalizer && (is_gone(&error) || is_replaced(&error)) => Ok(None),
        other => other.map(Some),
    }
}

/// The FlowRun is gone. A 404 alone does not say so: while an API server starts, it answers
/// "404 page not found" for a CRD's resources before it serves them, and taking that for a
/// deleted FlowRun once left a finalizer behind (seen in the API server restart chaos test).
fn is_gone(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.is_not_found())
}

/// The answers to an apply whose UID precondition failed: 409 when no FlowRun has the name
/// any more (a forced apply without a resourceVersion meets no other conflict), 422 naming
/// `metadata.uid` when another FlowRun took it. Either way the FlowRun of that UID is gone.
fn is_replaced(error: &kube::Error) -> bool {
    let kube::Error::Api(status) = error else {
        return false;
    };
    status.code == 409
        || (status.code == 422
            && status.details.as_ref().is_some_and(|details| {
                details
                    .causes
                    .iter()
                    .any(|cause| cause.field == "metadata.uid")
            }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_not_found_status_means_the_flowrun_is_gone() {
        let status = |reason: &str, message: &str| {
            kube::Error::Api(Box::new(kube::core::Status {
                code: 404,
                reason: reason.into(),
                message: message.into(),
                ..kube::core::Status::default()
            }))
        };
        assert!(is_gone(&status(
            "NotFound",
            "flowruns.appflow.flowrun.dev \"nightly\" not found"
        )));
        // What kube makes of a starting API server's "404 page not found".
        assert!(!is_gone(&status(
            "Failed to parse error data",
            "404 page not found"
        )));
    }
}
