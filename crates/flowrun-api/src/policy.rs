//! The `FlowRunPolicy` API: which flows the FlowRuns of a namespace may run, in which regions,
//! and under which AWS identity.
//!
//! Cluster admins create FlowRunPolicies in tenant namespaces; tenants get no RBAC on them. A
//! FlowRun may start a flow when a policy of its namespace lists the flow and the region. With
//! `--require-policy` a namespace without policies may start nothing; without it such a
//! namespace keeps the operator's own identity and may start any flow.

use kube_derive::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// What `status.identity` says when no role is assumed.
pub const OPERATOR_IDENTITY: &str = "operator default";

/// Allows the FlowRuns of its namespace to run some AppFlow flows, optionally under an IAM role
/// the operator assumes for them.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
// kube's `printcolumn(...)` repeats the same keys once per column by design.
#[allow(clippy::duplicated_attributes)]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "appflow.flowrun.dev",
    version = "v1alpha1",
    kind = "FlowRunPolicy",
    plural = "flowrunpolicies",
    shortname = "frp",
    category = "appflow",
    namespaced,
    doc = "FlowRunPolicy says which AppFlow flows the FlowRuns of its namespace may run, in which \
           regions, and under which IAM role.",
    printcolumn(name = "Flows", type_ = "string", json_path = ".spec.flows"),
    printcolumn(name = "Regions", type_ = "string", json_path = ".spec.regions"),
    printcolumn(name = "Role", type_ = "string", json_path = ".spec.roleArn"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(crates(kube_core = "::kube_core"))]
#[schemars(transform = crate::description::join_description_lines)]
#[serde(rename_all = "camelCase")]
pub struct FlowRunPolicySpec {
    /// Flows FlowRuns of this namespace may run: exact names, or patterns where * stands for
    /// any characters (e.g. sales-*). "*" alone allows every flow.
    #[schemars(
        length(min = 1, max = 100),
        inner(regex(pattern = r"^[a-zA-Z0-9_!@#.*-]{1,256}$"))
    )]
    pub flows: Vec<String>,

    /// AWS regions those flows may run in, e.g. eu-west-1; * patterns as for flows.
    #[schemars(
        length(min = 1, max = 50),
        inner(regex(pattern = r"^[a-z0-9*-]{1,64}$"))
    )]
    pub regions: Vec<String>,

    /// IAM role the operator assumes (STS AssumeRole) to run these flows. Unset: the
    /// operator's own AWS identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}$"))]
    pub role_arn: Option<String>,

    /// External ID for AssumeRole, when the role's trust policy requires one. AWS does not
    /// treat it as a secret; it is copied into the status of the FlowRuns that use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 1224), regex(pattern = r"^[\w+=,.@:/-]+$"))]
    pub external_id: Option<String>,
}
