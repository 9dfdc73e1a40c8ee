//! The `FlowRun` API (`appflow.flowrun.dev/v1alpha1`).
//!
//! `///` comments on fields are user documentation: they become the CRD's descriptions and what
//! `kubectl explain flowrun.spec` prints. Implementer notes use `//`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// AppFlow's own flow name rule (service model: max 256, pattern `[a-zA-Z0-9][\w!@#.-]+`).
pub const FLOW_NAME_PATTERN: &str = r"^[a-zA-Z0-9][\w!@#.-]+$";

/// A request to run an Amazon AppFlow flow once.
///
/// The operator calls AppFlow StartFlow with the FlowRun's UID as the idempotency token, so the
/// flow is started at most once per FlowRun, and reports the run in `status`.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
// kube's `printcolumn(...)` repeats the same keys once per column by design.
#[allow(clippy::duplicated_attributes)]
#[kube(
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
#[x_kube(validation = Rule::new("self == oldSelf").message(
    "FlowRun spec is immutable; create a new FlowRun to run the flow again"
))]
#[serde(rename_all = "camelCase")]
pub struct FlowRunSpec {
    /// Name of the AppFlow flow to run: 2 to 256 characters, starting with a letter or digit,
    /// then letters, digits and _ ! @ # . - only. Spaces are not allowed; use underscores or
    /// hyphens.
    #[schemars(length(min = 2, max = 256), regex(pattern = FLOW_NAME_PATTERN))]
    pub flow_name: String,

    /// AWS region of the flow, e.g. eu-west-1. Defaults to the operator's default region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[a-z0-9-]+$"))]
    pub region: Option<String>,
}

/// Where the FlowRun is in its life: Pending (not started yet), Starting (StartFlow is being
/// called or retried), Running (AppFlow accepted the run), Succeeded, Failed (see message and
/// conditions), or Activated (a scheduled or event-triggered flow was activated).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    /// Seen by the operator, not yet started.
    Pending,
    /// StartFlow is being called (and retried) with the FlowRun's UID as idempotency token.
    Starting,
    /// AppFlow accepted the run; `executionId` names it.
    Running,
    /// The run finished successfully.
    Succeeded,
    /// The run could not be started or did not succeed; see `message` and the conditions.
    Failed,
    /// The flow is scheduled or event-triggered: StartFlow activated it and no single run exists.
    Activated,
}

impl Phase {
    /// Phases the operator never leaves on its own.
    pub fn is_final(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed | Phase::Activated)
    }
}

/// What the operator observed and did for this FlowRun.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
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

    /// Time of the first StartFlow attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,

    /// Number of StartFlow attempts that returned an error so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_attempts: Option<u32>,

    /// Earliest time of the next StartFlow attempt after a retryable error.
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

/// The CRD as committed in `crds/flowrun.yaml`.
pub fn crd_yaml() -> Result<String, serde_yaml_ng::Error> {
    use kube::CustomResourceExt;
    let yaml = serde_yaml_ng::to_string(&FlowRun::crd())?;
    Ok(format!(
        "# Generated by `cargo run --bin crdgen`; do not edit by hand.\n{yaml}"
    ))
}
