//! The `FlowRun` API (`appflow.flowrun.dev/v1alpha1`).
//!
//! `///` comments on fields are user documentation: they become the CRD's descriptions and what
//! `kubectl explain flowrun.spec` prints. Implementer notes use `//`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time};
use kube_derive::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// AppFlow's flow name rule (service model: `FlowName`), as AWS writes it in its errors.
macro_rules! flow_name_rule {
    () => {
        r"[a-zA-Z0-9][\w!@#.-]+"
    };
}
/// The pattern of AppFlow's flow names, as AWS writes it in its validation errors.
pub const FLOW_NAME_RULE: &str = flow_name_rule!();
/// The same rule anchored, for the CRD's schema.
pub const FLOW_NAME_PATTERN: &str = concat!("^", flow_name_rule!(), "$");
/// The longest flow name AppFlow accepts.
pub const FLOW_NAME_MAX: usize = 256;

/// True for a name AppFlow accepts as a flow name: [`FLOW_NAME_RULE`], at most [`FLOW_NAME_MAX`]
/// characters (`\w` is ASCII there, as in Java's regular expressions).
pub fn is_valid_flow_name(name: &str) -> bool {
    let mut chars = name.chars();
    let starts_well = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest = chars.as_str();
    starts_well
        && !rest.is_empty()
        && name.chars().count() <= FLOW_NAME_MAX
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_!@#.-".contains(c))
}

/// A request to run an Amazon AppFlow flow once.
///
/// The operator calls AppFlow StartFlow with the FlowRun's UID as the idempotency token, so the
/// flow is started at most once per FlowRun, and reports the run in `status`.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
// kube's `printcolumn(...)` repeats the same keys once per column by design.
#[allow(clippy::duplicated_attributes)]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "appflow.flowrun.dev",
    version = "v1alpha1",
    kind = "FlowRun",
    plural = "flowruns",
    shortname = "fr",
    category = "appflow",
    namespaced,
    status = "FlowRunStatus",
    doc = "FlowRun runs an Amazon AppFlow flow once and reports how the run goes.",
    printcolumn(name = "Flow", type_ = "string", json_path = ".spec.flowName"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Execution",
        type_ = "string",
        json_path = ".status.executionId"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Flow Status",
        type_ = "string",
        json_path = ".status.flowStatus",
        priority = 1
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.message",
        priority = 1
    )
)]
#[x_kube(crates(kube_core = "::kube_core"), validation = Rule::new("self == oldSelf").message(
    "FlowRun spec is immutable; create a new FlowRun to run the flow again"
))]
#[schemars(transform = crate::description::join_description_lines)]
#[serde(rename_all = "camelCase")]
pub struct FlowRunSpec {
    /// Name of the AppFlow flow to run: 2 to 256 characters, starting with a letter or digit,
    /// then letters, digits and _ ! @ # . - only. Spaces are not allowed; use underscores or
    /// hyphens.
    #[schemars(length(min = 2, max = FLOW_NAME_MAX), regex(pattern = FLOW_NAME_PATTERN))]
    pub flow_name: String,

    /// AWS region of the flow, e.g. eu-west-1. Defaults to the operator's default region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[a-z0-9-]+$"))]
    pub region: Option<String>,

    /// Cancel the AppFlow run when this FlowRun is deleted while the run is in progress. While
    /// it is, the FlowRun carries the finalizer appflow.flowrun.dev/cancel-on-delete.
    #[serde(default = "default_true")]
    pub cancel_on_delete: bool,

    /// Deactivate the flow (AppFlow StopFlow) when this FlowRun is deleted after it activated
    /// a scheduled or event-triggered flow (phase Activated), unless another Activated FlowRun
    /// of the same flow, region and AWS identity still exists. While it may have to, the
    /// FlowRun carries the finalizer appflow.flowrun.dev/cancel-on-delete. Off by default.
    #[serde(default)]
    pub deactivate_on_delete: bool,

    /// Seconds the run may stay in progress, counted from the first StartFlow attempt. Past
    /// them the run is canceled and the FlowRun fails with reason DeadlineExceeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<i64>,

    /// Seconds after the FlowRun finished (Succeeded, Failed, Canceled or Activated) when the
    /// operator deletes it. Off when unset. Do not use it on FlowRuns kept in Git: the GitOps
    /// tool would create the FlowRun again, which runs the flow again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: Option<i64>,
}

fn default_true() -> bool {
    true
}

impl FlowRunSpec {
    /// A spec with the defaults, as the API server fills them in.
    pub fn new(flow_name: &str) -> Self {
        FlowRunSpec {
            flow_name: flow_name.to_owned(),
            region: None,
            cancel_on_delete: true,
            deactivate_on_delete: false,
            active_deadline_seconds: None,
            ttl_seconds_after_finished: None,
        }
    }
}

/// Where the FlowRun is in its life: Pending (not started yet, or the first StartFlow call is
/// under way), Starting (StartFlow failed and is retried), Running (AppFlow accepted the run),
/// Succeeded, Failed (see message and conditions), Canceled (the run was canceled), or
/// Activated (a scheduled or event-triggered flow was activated).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    /// Not started yet, or the first StartFlow call is under way (see the annotation
    /// appflow.flowrun.dev/start).
    Pending,
    /// StartFlow failed and is retried, with the FlowRun's UID as idempotency token.
    // The API has called it Starting since v1alpha1; the code says what it means.
    #[serde(rename = "Starting")]
    Retrying,
    /// AppFlow accepted the run; `executionId` names it.
    Running,
    /// The run finished successfully.
    Succeeded,
    /// The run could not be started or did not succeed; see `message` and the conditions.
    Failed,
    /// The flow is scheduled or event-triggered: StartFlow activated it and no single run exists.
    Activated,
    /// The run was canceled, in AppFlow or by the operator.
    Canceled,
}

impl Phase {
    /// Every phase, as `flowrun_flowruns` lists them.
    pub const ALL: [Phase; 7] = [
        Phase::Pending,
        Phase::Retrying,
        Phase::Running,
        Phase::Succeeded,
        Phase::Failed,
        Phase::Canceled,
        Phase::Activated,
    ];

    /// The phase as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Retrying => "Starting",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
            Phase::Activated => "Activated",
            Phase::Canceled => "Canceled",
        }
    }

    /// Phases the operator never leaves on its own.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Phase::Succeeded | Phase::Failed | Phase::Activated | Phase::Canceled
        )
    }
}

/// What the operator observed and did for this FlowRun.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[schemars(transform = crate::description::join_description_lines)]
#[serde(rename_all = "camelCase")]
pub struct FlowRunStatus {
    // Documented on `Phase`, whose description the schema shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,

    /// Idempotency token sent with StartFlow: the FlowRun's UID. AppFlow honours it for 8 hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,

    /// ARN of the flow, as returned by StartFlow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_arn: Option<String>,

    /// Status of the flow (not of this run) returned by StartFlow, e.g. Active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_status: Option<String>,

    /// AppFlow's ID of this run. Empty for scheduled and event-triggered flows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,

    /// AWS region the flow was started in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,

    /// AWS identity the operator uses for this run: the IAM role ARN assumed for it, or
    /// "operator default" (the operator's own identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,

    /// The FlowRunPolicy that allowed this run, if the namespace has policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,

    /// External ID sent with AssumeRole, from the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,

    /// Time of the first StartFlow attempt (also in the annotation appflow.flowrun.dev/start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,

    /// Status of the run in AppFlow: InProgress, Successful, Error, CancelStarted, Canceled, or
    /// a newer value AppFlow reports, kept as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_status: Option<String>,

    /// Time the run finished (or the FlowRun failed or was activated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,

    /// Records the run processed, as AppFlow reports them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_processed: Option<i64>,

    /// Bytes the run read from the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_processed: Option<i64>,

    /// Bytes the run wrote to the destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_written: Option<i64>,

    /// Number of StartFlow attempts that returned an error so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub start_attempts: Option<i32>,

    /// Failed attempts to stop the run (CancelFlowExecutions, or StartFlow with the same token
    /// to learn whether a run exists) or to deactivate the flow (StopFlow, with
    /// deactivateOnDelete) since the FlowRun was deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub cancel_attempts: Option<i32>,

    /// Earliest time of the next attempt after a retryable error: of StartFlow, or, while the
    /// FlowRun is being deleted, of stopping its run or deactivating its flow.
    // Microseconds: retries may be less than a second apart, and `Time` keeps whole seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_time: Option<MicroTime>,

    /// Human-readable detail of the latest transition or error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,

    /// The metadata.generation this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Standard conditions: Ready, Reconciling and Stalled (kstatus).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

impl FlowRun {
    /// The phase, with a FlowRun the operator has not touched yet counting as Pending.
    pub fn phase(&self) -> Phase {
        self.status
            .as_ref()
            .and_then(|status| status.phase)
            .unwrap_or(Phase::Pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_names_follow_appflows_rule() {
        let longest = format!("a{}", "b".repeat(FLOW_NAME_MAX - 1));
        let table = [
            ("salesforce-to-s3", true),
            ("a_b!c@d#e.f-g", true),
            ("0x", true),
            (longest.as_str(), true),
            ("a", false),
            ("", false),
            ("-leading-dash", false),
            ("_leading-underscore", false),
            ("has space", false),
            ("a/b", false),
            ("ünicode", false),
            ("aé", false),
        ];
        for (name, valid) in table {
            assert_eq!(is_valid_flow_name(name), valid, "{name:?}");
        }
        assert!(
            !is_valid_flow_name(&format!("{longest}c")),
            "257 characters"
        );
        assert_eq!(FLOW_NAME_PATTERN, format!("^{FLOW_NAME_RULE}$"));
    }

    #[test]
    fn every_phase_is_listed_once_and_named_as_the_api_spells_it() {
        let schema = serde_json::to_value(schemars::schema_for!(Phase)).expect("schema");
        let names: Vec<&str> = schema["enum"]
            .as_array()
            .or_else(|| schema["oneOf"].as_array())
            .expect("an enum schema")
            .iter()
            .map(|value| {
                value
                    .as_str()
                    .or_else(|| value["const"].as_str())
                    .expect("a name")
            })
            .collect();
        let listed: Vec<&str> = Phase::ALL.iter().map(|phase| phase.as_str()).collect();
        assert_eq!(listed.len(), names.len(), "{listed:?} vs {names:?}");
        for phase in Phase::ALL {
            let json = serde_json::to_value(phase).expect("serialises");
            assert_eq!(json, phase.as_str(), "{phase:?}");
            assert!(
                names.contains(&phase.as_str()),
                "{phase:?} not in {names:?}"
            );
        }
    }
}
