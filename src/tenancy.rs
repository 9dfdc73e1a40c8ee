//! Who may run which flow, under which AWS identity: the `FlowRunPolicy` API and the pure rule
//! that checks a FlowRun against the policies of its namespace.
//!
//! Cluster admins create FlowRunPolicies in tenant namespaces; tenants get no RBAC on them. A
//! FlowRun may start a flow when a policy of its namespace lists the flow and the region. With
//! `--require-policy` a namespace without policies may start nothing; without it such a
//! namespace keeps the operator's own identity and may start any flow.

use std::sync::Arc;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::reflector::{self, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// What `status.identity` says when no role is assumed.
pub const OPERATOR_IDENTITY: &str = "operator default";

/// Allows the FlowRuns of its namespace to run some AppFlow flows, optionally under an IAM role
/// the operator assumes for them.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
// kube's `printcolumn(...)` repeats the same keys once per column by design.
#[allow(clippy::duplicated_attributes)]
#[kube(
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

/// What a policy grants a FlowRun.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grant {
    /// The policy that allowed it; `None` when the namespace has no policy and none is required.
    pub policy: Option<String>,
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
}

/// Checks a FlowRun's flow and region against the policies of its namespace. The first policy
/// by name that allows both decides the identity; the error says what was looked for.
pub fn permit(
    policies: &[&FlowRunPolicy],
    namespace: &str,
    flow: &str,
    region: &str,
    require_policy: bool,
) -> Result<Grant, String> {
    if policies.is_empty() {
        return if require_policy {
            Err(format!(
                "no FlowRunPolicy in namespace {namespace}, and the operator requires one: a \
                 cluster admin must create a FlowRunPolicy there that allows flow {flow} in \
                 region {region}"
            ))
        } else {
            Ok(Grant::default())
        };
    }
    let mut sorted: Vec<&FlowRunPolicy> = policies.to_vec();
    sorted.sort_by_key(|policy| policy.metadata.name.clone());
    let allowing = sorted.iter().find(|policy| {
        policy.spec.flows.iter().any(|pattern| glob(pattern, flow))
            && policy
                .spec
                .regions
                .iter()
                .any(|pattern| glob(pattern, region))
    });
    match allowing {
        Some(policy) => Ok(Grant {
            policy: policy.metadata.name.clone(),
            role_arn: policy.spec.role_arn.clone(),
            external_id: policy.spec.external_id.clone(),
        }),
        None => Err(format!(
            "no FlowRunPolicy in namespace {namespace} allows flow {flow} in region {region} \
             (looked at: {})",
            sorted
                .iter()
                .map(|policy| policy.metadata.name.clone().unwrap_or_default())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// `*` matches any run of characters (also none); everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty(); // no `*` at all: an exact match
    };
    for part in middle {
        match rest.find(part) {
            Some(index) => rest = &rest[index + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The STS session name for a namespace's runs: AWS allows 2 to 64 of `[\w+=,.@-]`, and
/// CloudTrail shows it, so an audit sees which tenant acted.
pub fn session_name(namespace: &str) -> String {
    let name = format!("flowrun-{namespace}");
    name.chars().take(64).collect()
}

/// Watch (needs a client): the FlowRunPolicies of the watched namespaces, kept in memory so
/// that observing a FlowRun's policies costs no API call.
pub struct PolicyWatch {
    stores: Vec<Store<FlowRunPolicy>>,
}

impl PolicyWatch {
    /// Starts one watch over all namespaces, or one per namespace listed, in the background.
    pub fn spawn(client: &Client, namespaces: &[String]) -> Self {
        let apis: Vec<Api<FlowRunPolicy>> = if namespaces.is_empty() {
            vec![Api::all(client.clone())]
        } else {
            namespaces
                .iter()
                .map(|namespace| Api::namespaced(client.clone(), namespace))
                .collect()
        };
        let stores = apis
            .into_iter()
            .map(|api| {
                let (store, writer) = reflector::store();
                let stream = reflector(writer, watcher(api, watcher::Config::default()))
                    .default_backoff()
                    .touched_objects();
                tokio::spawn(stream.for_each(|event| async move {
                    if let Err(error) = event {
                        tracing::warn!(%error, "FlowRunPolicy watch failed; retrying");
                    }
                }));
                store
            })
            .collect();
        PolicyWatch { stores }
    }

    /// Waits until every watch has listed its policies once: before that, an empty store
    /// could not be told apart from a namespace without policies.
    pub async fn wait_until_ready(&self) {
        for store in &self.stores {
            // The writer lives as long as its background task, i.e. as long as the process.
            let _ = store.wait_until_ready().await;
        }
    }

    pub fn of_namespace(&self, namespace: &str) -> Vec<Arc<FlowRunPolicy>> {
        self.stores
            .iter()
            .flat_map(|store| {
                store.state_filter(|policy| policy.metadata.namespace.as_deref() == Some(namespace))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str, flows: &[&str], regions: &[&str], role: Option<&str>) -> FlowRunPolicy {
        let mut policy = FlowRunPolicy::new(
            name,
            FlowRunPolicySpec {
                flows: flows.iter().map(|s| s.to_string()).collect(),
                regions: regions.iter().map(|s| s.to_string()).collect(),
                role_arn: role.map(str::to_owned),
                external_id: None,
            },
        );
        policy.metadata.namespace = Some("team-a".into());
        policy
    }

    #[test]
    fn glob_patterns_match_like_shell_stars() {
        let table = [
            ("sales-to-s3", "sales-to-s3", true),
            ("sales-to-s3", "sales-to-s3x", false),
            ("sales-*", "sales-to-s3", true),
            ("sales-*", "sales-", true),
            ("sales-*", "marketing-to-s3", false),
            ("*-to-s3", "sales-to-s3", true),
            ("*-to-s3", "sales-to-redshift", false),
            ("*", "anything", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXcYYb", false),
            ("ab*ba", "aba", false),
            ("eu-*", "eu-west-1", true),
            ("eu-*", "us-east-1", false),
        ];
        for (pattern, text, expected) in table {
            assert_eq!(glob(pattern, text), expected, "{pattern} ~ {text}");
        }
    }

    #[test]
    fn flows_and_regions_are_checked_against_the_namespace_policies() {
        let sales = policy(
            "sales",
            &["sales-*"],
            &["eu-*"],
            Some("arn:aws:iam::111111111111:role/sales"),
        );
        let ops = policy("ops", &["ops-report"], &["us-east-1"], None);
        let policies = [&sales, &ops];
        // (flow, region, require, allowed by)
        let table = [
            ("sales-to-s3", "eu-west-1", true, Some("sales")),
            ("sales-to-s3", "us-east-1", true, None),
            ("ops-report", "us-east-1", false, Some("ops")),
            ("hr-payroll", "eu-west-1", false, None),
        ];
        for (flow, region, require, allowed_by) in table {
            let result = permit(&policies, "team-a", flow, region, require);
            match allowed_by {
                Some(name) => assert_eq!(result.expect("allowed").policy.as_deref(), Some(name)),
                None => {
                    let message = result.expect_err("denied");
                    assert!(message.contains("looked at: ops, sales"), "{message}");
                    assert!(
                        message.contains(flow) && message.contains(region),
                        "{message}"
                    );
                }
            }
        }
        let granted = permit(&policies, "team-a", "sales-x", "eu-west-1", true).expect("allowed");
        assert_eq!(
            granted.role_arn.as_deref(),
            Some("arn:aws:iam::111111111111:role/sales")
        );
    }

    #[test]
    fn a_namespace_without_policies_is_open_unless_policies_are_required() {
        assert_eq!(
            permit(&[], "team-a", "f", "eu-west-1", false),
            Ok(Grant::default())
        );
        let message = permit(&[], "team-a", "f", "eu-west-1", true).expect_err("denied");
        assert!(
            message.contains("no FlowRunPolicy in namespace team-a"),
            "{message}"
        );
    }

    #[test]
    fn the_first_allowing_policy_by_name_decides_the_role() {
        let b = policy(
            "b",
            &["*"],
            &["*"],
            Some("arn:aws:iam::111111111111:role/b"),
        );
        let a = policy(
            "a",
            &["f"],
            &["*"],
            Some("arn:aws:iam::111111111111:role/a"),
        );
        let granted = permit(&[&b, &a], "team-a", "f", "eu-west-1", true).expect("allowed");
        assert_eq!(granted.policy.as_deref(), Some("a"));
    }

    #[test]
    fn session_names_name_the_namespace_within_the_aws_limit() {
        assert_eq!(session_name("team-a"), "flowrun-team-a");
        assert_eq!(session_name(&"n".repeat(63)).len(), 64);
    }
}
