//! The writes of a FlowRunSchedule decision: FlowRuns created (AlreadyExists is success when
//! the schedule controls the FlowRun of that name), FlowRuns deleted (Replace, history), then one status write by
//! server-side apply that carries the resourceVersion decided on, so a decision taken on a
//! stale copy is refused instead of counting its slots twice.

use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use flowrun_api::{FIELD_MANAGER, FlowRun, FlowRunSchedule, FlowRunScheduleStatus};
use flowrun_core::schedule::is_child_of;

#[derive(Debug, thiserror::Error)]
#[error("failed to {action} for FlowRunSchedule {namespace}/{name}")]
pub struct ScheduleError {
    action: String,
    namespace: String,
    name: String,
    #[source]
    source: kube::Error,
}

impl ScheduleError {
    pub(crate) fn new(schedule: &FlowRunSchedule, action: String, source: kube::Error) -> Self {
        ScheduleError {
            action,
            namespace: schedule.namespace().unwrap_or_default(),
            name: schedule.name_any(),
            source,
        }
    }
}

/// What creating a slot's (or run-now's) FlowRun found.
pub enum Created {
    New(Box<FlowRun>),
    /// The schedule's FlowRun exists already (created before a crash, or by the decision on an
    /// older copy): done.
    Before,
    /// A FlowRun of that name exists that the schedule does not control (a user's).
    Taken,
}

/// Creates a FlowRun of the schedule with this UID. AlreadyExists is read back: the name is
/// the slot's, but only the schedule's own FlowRun under it counts as the slot's run.
pub async fn create_flowrun(
    api: &Api<FlowRun>,
    flowrun: &FlowRun,
    schedule_uid: &str,
) -> Result<Created, kube::Error> {
    match api.create(&PostParams::default(), flowrun).await {
        Ok(created) => Ok(Created::New(Box::new(created))),
        Err(kube::Error::Api(status)) if status.is_already_exists() => {
            // A list by name, not a get: the operator's role has list on FlowRuns, no get. Only
            // the metadata: a FlowRun stored under an older schema is judged by its owner too.
            let by_name =
                ListParams::default().fields(&format!("metadata.name={}", flowrun.name_any()));
            let existing = api.list_metadata(&by_name).await?.items;
            if existing
                .iter()
                .any(|existing| !is_child_of(existing, schedule_uid))
            {
                Ok(Created::Taken)
            } else {
                // The schedule's own, or deleted since (pruned): the slot had its run.
                Ok(Created::Before)
            }
        }
        Err(error) => Err(error),
    }
}

/// Deletes a FlowRun; one already gone is fine. A FlowRun whose run is going keeps its
/// finalizer until the FlowRun controller has canceled the run.
pub async fn delete_flowrun(api: &Api<FlowRun>, name: &str) -> Result<(), kube::Error> {
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        Err(error) => Err(error),
    }
}

/// What the status write found.
pub enum StatusWrite {
    Written,
    /// The schedule changed since the copy decided on: decide again on the newer one.
    Stale,
}

pub async fn write_status(
    api: &Api<FlowRunSchedule>,
    schedule: &FlowRunSchedule,
    status: &FlowRunScheduleStatus,
) -> Result<StatusWrite, kube::Error> {
    let patch = json!({
        "apiVersion": FlowRunSchedule::api_version(&()),
        "kind": FlowRunSchedule::kind(&()),
        "metadata": {"resourceVersion": schedule.resource_version()},
        "status": status,
    });
    match api
        .patch_status(
            &schedule.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => Ok(StatusWrite::Written),
        Err(kube::Error::Api(status)) if status.is_conflict() => Ok(StatusWrite::Stale),
        Err(error) => Err(error),
    }
}
