//! Multi-tenant safety on a real API server and the local AppFlow + STS endpoint: policies
//! decide which flows a namespace may run, and under which IAM role.

mod support;

use std::time::Duration;

use flowrun_api::conditions::{READY, STALLED};
use flowrun_api::flowrun::{FlowRunSpec, FlowRunStatus, Phase};
use flowrun_api::policy::{FlowRunPolicy, FlowRunPolicySpec, OPERATOR_IDENTITY};
use kube::api::{Api, PostParams};
use support::flowruns::{World, condition, is};

const START: Duration = Duration::from_secs(30);
const ROLE: &str = "arn:aws:iam::111111111111:role/tenant-sales";

const FLOWS: &str = r#"
flows:
  - name: sales-report
    runSeconds: 600
  - name: hr-payroll
    runSeconds: 600
"#;

fn phase_is(phase: Phase) -> impl Fn(&FlowRunStatus) -> bool {
    move |status| status.phase == Some(phase)
}

async fn create_policy(world: &World, name: &str, spec: FlowRunPolicySpec) {
    let policies: Api<FlowRunPolicy> = Api::namespaced(world.client.clone(), &world.namespace);
    policies
        .create(&PostParams::default(), &FlowRunPolicy::new(name, spec))
        .await
        .expect("an admin creates the policy");
}

fn sales_policy(role_arn: Option<&str>) -> FlowRunPolicySpec {
    FlowRunPolicySpec {
        flows: vec!["sales-*".into()],
        regions: vec!["us-east-1".into()],
        role_arn: role_arn.map(str::to_owned),
        external_id: role_arn.map(|_| "sales-ext".to_owned()),
    }
}

#[tokio::test]
async fn with_require_policy_only_flows_and_regions_a_policy_allows_are_started() {
    let world = World::new("tenant-rules", FLOWS).await;
    create_policy(&world, "sales", sales_policy(None)).await;
    let operator = world.operator(&["--require-policy"]);

    world.create("allowed", "sales-report").await;
    world.create("other-flow", "hr-payroll").await;
    let other_region = FlowRunSpec {
        region: Some("eu-west-1".into()),
        ..FlowRunSpec::new("sales-report")
    };
    world.create_with("other-region", other_region).await;

    let running = world
        .wait_for("allowed", START, Some(&operator), phase_is(Phase::Running))
        .await;
    let status = running.status.expect("status");
    assert_eq!(status.identity.as_deref(), Some(OPERATOR_IDENTITY));
    assert_eq!(status.policy.as_deref(), Some("sales"));
    for (name, looked_for) in [
        ("other-flow", "flow hr-payroll in region us-east-1"),
        ("other-region", "flow sales-report in region eu-west-1"),
    ] {
        let refused = world
            .wait_for(name, START, Some(&operator), phase_is(Phase::Failed))
            .await;
        let status = refused.status.expect("status");
        assert_eq!(condition(&status, STALLED), is("True", "NotPermitted"));
        let message = status.message.unwrap_or_default();
        assert!(message.contains(looked_for), "{message}");
        assert!(message.contains("looked at: sales"), "{message}");
        world.wait_for_event(name, "NotPermitted").await;
    }
    let start_flows = world.appflow.requests_for("StartFlow").await;
    assert_eq!(
        start_flows.len(),
        1,
        "only the allowed FlowRun reached AppFlow"
    );
    assert_eq!(start_flows[0].flow_name.as_deref(), Some("sales-report"));
}

#[tokio::test]
async fn with_require_policy_a_namespace_without_policy_starts_nothing() {
    let world = World::new("tenant-none", FLOWS).await;
    let operator = world.operator(&["--require-policy"]);

    world.create("orphan", "sales-report").await;
    let refused = world
        .wait_for("orphan", START, Some(&operator), phase_is(Phase::Failed))
        .await;

    let status = refused.status.expect("status");
    assert_eq!(condition(&status, STALLED), is("True", "NotPermitted"));
    let message = status.message.unwrap_or_default();
    assert!(
        message.contains(&format!(
            "no FlowRunPolicy in namespace {}",
            world.namespace
        )),
        "{message}"
    );
    assert!(
        world.appflow.requests().await.is_empty(),
        "no AppFlow call at all"
    );
}

#[tokio::test]
async fn a_policy_role_is_assumed_and_signs_the_start_flow_call() {
    let world = World::new("tenant-role", FLOWS).await;
    world.appflow.upsert_role(ROLE, Some("sales-ext")).await;
    create_policy(&world, "sales", sales_policy(Some(ROLE))).await;
    let operator = world.operator(&["--require-policy"]);

    world.create("as-tenant", "sales-report").await;
    world.create("as-tenant-again", "sales-report").await;
    for name in ["as-tenant", "as-tenant-again"] {
        let running = world
            .wait_for(name, START, Some(&operator), phase_is(Phase::Running))
            .await;
        assert_eq!(
            running.status.expect("status").identity.as_deref(),
            Some(ROLE)
        );
    }

    let issued = world.appflow.issued_credentials().await;
    assert_eq!(issued.len(), 1, "cached until they expire: {issued:?}");
    assert_eq!(issued[0].role_arn, ROLE);
    assert_eq!(issued[0].external_id.as_deref(), Some("sales-ext"));
    assert_eq!(
        issued[0].session_name,
        format!("flowrun-{}", world.namespace)
    );
    let start_flows = world.appflow.requests_for("StartFlow").await;
    assert_eq!(start_flows.len(), 2);
    for start_flow in start_flows {
        assert_eq!(
            start_flow.access_key_id.as_deref(),
            Some(issued[0].access_key_id.as_str()),
            "StartFlow was signed with the assumed role's key"
        );
    }
}

#[tokio::test]
async fn a_role_that_cannot_be_assumed_is_a_retried_condition_until_it_can() {
    let world = World::new("tenant-sts", FLOWS).await;
    create_policy(&world, "sales", sales_policy(Some(ROLE))).await;
    let operator = world.operator(&["--require-policy"]);

    world.create("waiting", "sales-report").await;
    let waiting = world
        .wait_for("waiting", START, Some(&operator), |status| {
            status.start_attempts >= Some(2)
        })
        .await;
    let status = waiting.status.expect("status");
    assert_eq!(status.phase, Some(Phase::Retrying));
    assert_eq!(
        condition(&status, READY),
        is("False", "CredentialsUnavailable")
    );
    assert_eq!(
        condition(&status, STALLED),
        is("False", "CredentialsUnavailable")
    );
    assert!(status.message.unwrap_or_default().contains(ROLE));
    assert!(world.appflow.requests_for("StartFlow").await.is_empty());

    // The admin fixes the role's trust: the next attempt goes through.
    world.appflow.upsert_role(ROLE, Some("sales-ext")).await;
    world
        .wait_for("waiting", START, Some(&operator), phase_is(Phase::Running))
        .await;
}
