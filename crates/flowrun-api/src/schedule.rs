//! The `FlowRunSchedule` API: a FlowRun created for every slot of a cron schedule, like a
//! CronJob makes Jobs.
//!
//! Each slot's FlowRun is named after the schedule and the slot ([`slot_run_name`]), so that
//! creating it twice is refused by the API server: one slot, one FlowRun, one AppFlow run.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube_derive::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::flowrun::FlowRunSpec;

/// Label on every FlowRun a schedule created: the schedule's name.
pub const SCHEDULE_LABEL: &str = "appflow.flowrun.dev/schedule";
/// Annotation on a slot's FlowRun: the slot's time (RFC 3339, UTC).
pub const SLOT_ANNOTATION: &str = "appflow.flowrun.dev/slot";
/// Annotation on a schedule: set it to a new value to run the flow once now, in a FlowRun
/// named `<schedule>-now-<value>`.
pub const RUN_NOW_ANNOTATION: &str = "appflow.flowrun.dev/run-now";
/// The longest schedule name: its FlowRuns add `-` and up to 10 digits of minutes, and the
/// name is also the value of [`SCHEDULE_LABEL`] (at most 63 characters), as for a CronJob.
// Checked by the operator: kube-derive's root-level rules need the `kube` facade crate, which
// this crate does not depend on.
pub const SCHEDULE_NAME_MAX: usize = 52;

/// The macros a schedule may use instead of five fields.
macro_rules! schedule_rule {
    () => {
        r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|\S+( +\S+){4})$"
    };
}
/// Five fields separated by spaces, or a macro: what admission checks. The operator parses the
/// fields themselves and reports what admission cannot see (condition Stalled, reason
/// InvalidSchedule).
pub const SCHEDULE_PATTERN: &str = schedule_rule!();

/// Runs an Amazon AppFlow flow on a cron schedule: one FlowRun per slot.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
// kube's `printcolumn(...)` repeats the same keys once per column by design.
#[allow(clippy::duplicated_attributes)]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "appflow.flowrun.dev",
    version = "v1alpha1",
    kind = "FlowRunSchedule",
    plural = "flowrunschedules",
    shortname = "frs",
    category = "appflow",
    namespaced,
    status = "FlowRunScheduleStatus",
    doc = "FlowRunSchedule runs an Amazon AppFlow flow on a cron schedule, creating one FlowRun \
           per slot, like a CronJob creates Jobs.",
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "Time Zone", type_ = "string", json_path = ".spec.timeZone"),
    printcolumn(name = "Suspend", type_ = "boolean", json_path = ".spec.suspend"),
    printcolumn(
        name = "Active",
        type_ = "string",
        json_path = ".status.active[*].name"
    ),
    printcolumn(
        name = "Last Schedule",
        type_ = "date",
        json_path = ".status.lastScheduleTime"
    ),
    printcolumn(name = "Next", type_ = "date", json_path = ".status.nextScheduleTime"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(crates(kube_core = "::kube_core"))]
#[schemars(transform = crate::description::join_description_lines)]
#[serde(rename_all = "camelCase")]
pub struct FlowRunScheduleSpec {
    /// When to run: five cron fields (minute hour day-of-month month day-of-week, e.g.
    /// "0 2 * * *") or @hourly, @daily (@midnight), @weekly, @monthly, @yearly (@annually).
    /// A slot in a daylight saving gap runs at the first minute after the gap; a slot in a
    /// repeated hour runs once.
    #[schemars(length(min = 1, max = 256), regex(pattern = SCHEDULE_PATTERN))]
    pub schedule: String,

    /// IANA time zone the schedule is read in, e.g. Europe/Berlin. Defaults to UTC.
    #[serde(default = "utc")]
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$")
    )]
    pub time_zone: String,

    /// What a slot does while an earlier run of this schedule is still going: Forbid (skip the
    /// slot, the default), Allow (run anyway), Replace (delete the active FlowRun, which
    /// cancels its run, then start the new one).
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,

    /// A slot noticed more than this many seconds late (e.g. after the operator was down) is
    /// skipped and counted as missed instead of run late. Unset: the most recent slot is
    /// always run, however late.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub starting_deadline_seconds: Option<i64>,

    /// Stop starting runs; runs already going are not affected. Slots that pass while
    /// suspended are not run later.
    #[serde(default)]
    pub suspend: bool,

    /// Finished successful FlowRuns to keep; older ones are deleted.
    #[serde(default = "three")]
    #[schemars(range(min = 0, max = 1000))]
    pub successful_runs_history_limit: i32,

    /// Failed or canceled FlowRuns to keep; older ones are deleted.
    #[serde(default = "one")]
    #[schemars(range(min = 0, max = 1000))]
    pub failed_runs_history_limit: i32,

    /// The FlowRun each slot creates.
    pub flow_run_template: FlowRunTemplate,
}

fn utc() -> String {
    "UTC".to_owned()
}

fn three() -> i32 {
    3
}

fn one() -> i32 {
    1
}

/// What a slot does while an earlier run is active.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ConcurrencyPolicy {
    /// Skip the slot (counted in status.skippedSlots).
    #[default]
    Forbid,
    /// Start the new run beside the active ones.
    Allow,
    /// Delete the active FlowRuns (their runs are canceled), then start the new one.
    Replace,
}

/// The FlowRun a slot creates, shaped like a CronJob's jobTemplate.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FlowRunTemplate {
    /// Labels and annotations for the FlowRuns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMetadata>,

    /// The FlowRun's spec. Unlike a FlowRun's own, it may be changed: a change applies from
    /// the next slot.
    #[schemars(schema_with = "mutable_flowrun_spec")]
    pub spec: FlowRunSpec,
}

/// The metadata a template may set.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct TemplateMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A FlowRun's spec schema, with its field rules, without the rule that makes a FlowRun's spec
/// immutable: a schedule's template may change.
fn mutable_flowrun_spec(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = <FlowRunSpec as JsonSchema>::json_schema(generator);
    schema.remove("x-kubernetes-validations");
    schema
}

/// What the operator observed and did for this schedule.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[schemars(transform = crate::description::join_description_lines)]
#[serde(rename_all = "camelCase")]
pub struct FlowRunScheduleStatus {
    /// The slot of the latest FlowRun the schedule created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,

    /// When the latest FlowRun of the schedule that succeeded finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,

    /// The next slot; unset while suspended or invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,

    /// Every slot up to this time has been dealt with: run, skipped or missed. Slots after it
    /// are due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots_handled_until: Option<Time>,

    /// The FlowRuns of this schedule that have not finished.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active: Vec<ObjectReference>,

    /// Slots not run because a run was active (concurrencyPolicy Forbid), in total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub skipped_slots: Option<i64>,

    /// Slots not run because the operator noticed them too late (it was down, or past
    /// startingDeadlineSeconds), in total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub missed_slots: Option<i64>,

    /// The latest value of the annotation appflow.flowrun.dev/run-now that was acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_now: Option<String>,

    /// The metadata.generation this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Standard conditions: Ready and Stalled (kstatus).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// The name of the FlowRun for the slot at `slot_second` (Unix seconds): the schedule's name
/// and the slot in minutes since the epoch, as a CronJob names its Jobs.
pub fn slot_run_name(schedule: &str, slot_second: i64) -> String {
    format!("{schedule}-{}", slot_second.div_euclid(60))
}

/// The name of the FlowRun that the run-now annotation's `value` asks for.
pub fn run_now_name(schedule: &str, value: &str) -> String {
    format!("{schedule}-now-{value}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_count_minutes_since_the_epoch() {
        assert_eq!(slot_run_name("nightly", 0), "nightly-0");
        assert_eq!(slot_run_name("nightly", 1_764_640_800), "nightly-29410680");
        assert_eq!(slot_run_name("nightly", 1_764_640_859), "nightly-29410680");
    }

    #[test]
    fn the_template_spec_keeps_the_field_rules_but_not_the_immutability_rule() {
        use kube_core::CustomResourceExt;
        let crd = serde_json::to_value(FlowRunSchedule::crd()).expect("serialises");
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            ["flowRunTemplate"]["properties"]["spec"];
        assert_eq!(spec["properties"]["flowName"]["maxLength"], 256, "{spec}");
        assert!(spec.get("x-kubernetes-validations").is_none(), "{spec}");
    }
}
