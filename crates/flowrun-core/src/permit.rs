//! Who may run which flow, under which AWS identity: a FlowRun checked against the
//! FlowRunPolicies of its namespace (see `flowrun_api::policy`).

use flowrun_api::FlowRunPolicy;

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

#[cfg(test)]
mod tests {
    use super::*;
    use flowrun_api::FlowRunPolicySpec;

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
