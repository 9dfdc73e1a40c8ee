//! The start path on a real API server and the local AppFlow endpoint: one flow run per
//! FlowRun, exactly once, through restarts, kills and every class of AppFlow error.

mod support;

use std::time::Duration;

use flowrun_api::conditions::{READY, RECONCILING, STALLED};
use flowrun_api::flowrun::Phase;
use flowrun_api::flowrun::{FlowRun, FlowRunSpec};
use flowrun_api::{FINALIZER, START_ANNOTATION};
use jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use serde_json::json;
use support::appflow_local::{Fault, FaultKind};
use support::cluster::{cluster, unique_namespace};
use support::flowruns::{FLOWS, World, condition, is, uid};
use support::operator::Operator;

const START: Duration = Duration::from_secs(30);

fn phase_is(phase: Phase) -> impl Fn(&flowrun_api::flowrun::FlowRunStatus) -> bool {
    move |status| status.phase == Some(phase)
}

#[tokio::test]
async fn applied_flowrun_starts_its_flow_once_with_its_uid_as_client_token() {
    let world = World::new("start", FLOWS).await;
    let operator = world.operator(&[]);

    let created = world.create("nightly", "on-demand").await;
    let running = world
        .wait_for("nightly", START, Some(&operator), phase_is(Phase::Running))
        .await;

    let status = running.status.expect("status");
    let token = uid(&created);
    assert_eq!(status.client_token.as_deref(), Some(token.as_str()));
    assert!(status.execution_id.is_some());
    assert_eq!(status.flow_status.as_deref(), Some("Active"));
    assert_eq!(
        status.flow_arn.as_deref(),
        Some("arn:aws:appflow:us-east-1:123456789012:flow/on-demand")
    );
    assert_eq!(status.region.as_deref(), Some("us-east-1"));
    assert!(status.start_time.is_some());
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(condition(&status, READY), is("False", "Running"));
    assert_eq!(condition(&status, RECONCILING), is("True", "Running"));
    assert_eq!(condition(&status, STALLED), is("False", "Running"));

    let stats = world.appflow.stats().await;
    assert_eq!(stats.calls("StartFlow"), 1);
    assert_eq!(stats.token(&token).start_flow_calls, 1);
    assert_eq!(stats.token(&token).executions, 1);
    let started = world.wait_for_event("nightly", "Running").await;
    assert!(
        started
            .note
            .unwrap_or_default()
            .contains(status.execution_id.as_deref().unwrap_or_default())
    );
}

#[tokio::test]
async fn scheduled_flow_is_activated_and_ready_without_an_execution_id() {
    let world = World::new("activate", FLOWS).await;
    let operator = world.operator(&[]);

    world.create("turn-on", "scheduled").await;
    let activated = world
        .wait_for(
            "turn-on",
            START,
            Some(&operator),
            phase_is(Phase::Activated),
        )
        .await;

    let status = activated.status.expect("status");
    assert_eq!(status.execution_id, None);
    assert_eq!(status.flow_status.as_deref(), Some("Active"));
    assert_eq!(condition(&status, READY), is("True", "Activated"));
    assert_eq!(condition(&status, RECONCILING), is("False", "Activated"));
}

#[tokio::test]
async fn operator_killed_between_start_flow_and_status_write_starts_no_second_run() {
    let world = World::new("kill-window", FLOWS).await;
    // StartFlow takes effect at once but answers only after 30 s: the window to kill in.
    world
        .appflow
        .set_faults(&[Fault::slow_response("StartFlow", Duration::from_secs(30)).times(1)])
        .await;
    let mut operator = world.operator(&[]);
    let token = uid(&world.create("once", "on-demand").await);

    // The execution exists at AppFlow while the operator still waits for the answer.
    let deadline = tokio::time::Instant::now() + START;
    while world.appflow.stats().await.token(&token).executions == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "StartFlow never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    operator.kill();
    let unfinished = world.flowruns.get("once").await.expect("FlowRun exists");
    assert!(
        unfinished.annotations().contains_key(START_ANNOTATION),
        "the start was recorded before the call"
    );
    assert_eq!(unfinished.finalizers(), [FINALIZER]);
    assert_eq!(
        unfinished.status.and_then(|status| status.execution_id),
        None
    );

    let operator = world.operator(&[]);
    let running = world
        .wait_for("once", START, Some(&operator), phase_is(Phase::Running))
        .await;

    let stats = world.appflow.stats().await.token(&token);
    assert_eq!(
        stats.start_flow_calls, 2,
        "the restart replays the same token"
    );
    assert_eq!(stats.executions, 1, "and AppFlow starts nothing new");
    assert!(running.status.expect("status").execution_id.is_some());
}

#[tokio::test]
async fn fifty_flowruns_under_repeated_kills_get_exactly_one_execution_each() {
    let world = World::new("kill-storm", FLOWS).await;
    // Every answer is 1 s late, and each kill comes as soon as the endpoint has taken a new
    // StartFlow call: it lands between that call and its status write however busy the machine
    // is (a kill after a fixed delay missed the window on a loaded machine).
    world
        .appflow
        .set_faults(&[Fault::slow_response("StartFlow", Duration::from_secs(1))])
        .await;
    let names: Vec<String> = (0..50).map(|i| format!("run-{i:02}")).collect();
    for name in &names {
        world.create(name, "on-demand").await;
    }

    for _round in 0..6 {
        let mut operator = world.operator(&[]);
        let seen = world.appflow.stats().await.calls("StartFlow");
        world
            .wait_for_calls("StartFlow", seen + 1, Duration::from_secs(60))
            .await;
        operator.kill();
    }
    world.appflow.clear_faults().await;
    let operator = world.operator(&[]);
    let mut tokens = Vec::new();
    for name in &names {
        let running = world
            .wait_for(
                name,
                Duration::from_secs(60),
                Some(&operator),
                phase_is(Phase::Running),
            )
            .await;
        tokens.push(uid(&running));
    }

    let stats = world.appflow.stats().await;
    assert_eq!(stats.executions("on-demand"), 50);
    for token in tokens {
        assert_eq!(stats.token(&token).executions, 1, "token {token}");
    }
    // The kills hit the window: some StartFlow calls were replayed by the next operator.
    let replayed = stats.replayed_tokens();
    eprintln!("{replayed} of 50 tokens replayed after a kill");
    assert!(
        replayed > 0,
        "no kill landed between StartFlow and its status write"
    );
}

#[tokio::test]
async fn starting_flowrun_past_the_token_window_fails_without_calling_start_flow() {
    let world = World::new("expired", FLOWS).await;
    let created = world.create("stale", "on-demand").await;
    // As if an operator recorded Starting nine hours ago and then vanished.
    let first_attempt = Timestamp::now() - SignedDuration::from_hours(9);
    world
        .flowruns
        .patch_status(
            "stale",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "phase": "Starting",
                "clientToken": uid(&created),
                "region": "us-east-1",
                "startTime": first_attempt.to_string(),
            }})),
        )
        .await
        .expect("status patch");
    world.appflow.expire_tokens().await;

    let operator = world.operator(&[]);
    let failed = world
        .wait_for("stale", START, Some(&operator), phase_is(Phase::Failed))
        .await;

    let status = failed.status.expect("status");
    assert_eq!(
        condition(&status, STALLED),
        is("True", "StartOutcomeUnknown")
    );
    assert_eq!(
        condition(&status, READY),
        is("False", "StartOutcomeUnknown")
    );
    assert!(
        status
            .message
            .unwrap_or_default()
            .contains("create a new FlowRun")
    );
    assert_eq!(world.appflow.stats().await.calls("StartFlow"), 0);
    world.wait_for_event("stale", "StartOutcomeUnknown").await;
}

#[tokio::test]
async fn flow_created_after_its_flowrun_is_waited_for_then_started() {
    let world = World::new("late-flow", FLOWS).await;
    let operator = world.operator(&[]);

    world.create("early", "created-later").await;
    let waiting = world
        .wait_for("early", START, Some(&operator), |status| {
            status.start_attempts >= Some(2)
        })
        .await;
    let status = waiting.status.expect("status");
    assert_eq!(status.phase, Some(Phase::Retrying));
    assert_eq!(condition(&status, READY), is("False", "FlowNotFound"));
    assert_eq!(condition(&status, STALLED), is("False", "FlowNotFound"));
    world.wait_for_event("early", "FlowNotFound").await;

    world
        .appflow
        .upsert_flow("name: created-later\ntriggerType: OnDemand\nrunSeconds: 600\n")
        .await;
    world
        .wait_for("early", START, Some(&operator), phase_is(Phase::Running))
        .await;
}

#[tokio::test]
async fn flow_missing_past_the_grace_period_fails_with_flow_not_found() {
    let world = World::new("no-flow", FLOWS).await;
    let operator = world.operator(&["--not-found-grace=2s"]);

    world.create("orphan", "never-created").await;
    let failed = world
        .wait_for("orphan", START, Some(&operator), phase_is(Phase::Failed))
        .await;

    let status = failed.status.expect("status");
    assert_eq!(condition(&status, STALLED), is("True", "FlowNotFound"));
    assert!(
        status.start_attempts >= Some(2),
        "retried during the grace period"
    );
    assert!(status.message.unwrap_or_default().contains("never-created"));
}

#[tokio::test]
async fn invalid_request_fails_at_once_with_the_aws_message() {
    let world = World::new("invalid", FLOWS).await;
    world
        .appflow
        .set_faults(&[Fault::new("StartFlow", FaultKind::Validation)])
        .await;
    let operator = world.operator(&[]);

    world.create("refused", "on-demand").await;
    let failed = world
        .wait_for("refused", START, Some(&operator), phase_is(Phase::Failed))
        .await;

    let status = failed.status.expect("status");
    assert_eq!(condition(&status, STALLED), is("True", "InvalidRequest"));
    assert!(
        status
            .message
            .unwrap_or_default()
            .contains("Request validation failed"),
        "the AWS message is shown"
    );
    assert_eq!(
        world.appflow.stats().await.calls("StartFlow"),
        1,
        "no retry"
    );
    world.wait_for_event("refused", "InvalidRequest").await;
}

#[tokio::test]
async fn retryable_errors_back_off_with_growing_delays_then_start() {
    // (flow, fault, failing StartFlow requests, operator attempts that fail, reason)
    // Throttling and 500s are retried by the SDK first: 3 requests per operator attempt.
    let table = [
        ("quota", FaultKind::Quota, 3, 3, "QuotaExceeded"),
        ("conflict", FaultKind::Conflict, 3, 3, "Conflict"),
        ("denied", FaultKind::AccessDenied, 3, 3, "AccessDenied"),
        ("throttled", FaultKind::Throttling, 6, 2, "Throttled"),
        ("broken", FaultKind::Internal, 6, 2, "AppFlowUnavailable"),
        ("hanging", FaultKind::Hang, 1, 1, "AppFlowUnavailable"),
    ];
    let flows: String = table
        .iter()
        .map(|(flow, ..)| format!("  - name: {flow}\n    runSeconds: 600\n"))
        .collect();
    let world = World::new("retry", &format!("flows:\n{flows}")).await;
    let faults: Vec<Fault> = table
        .iter()
        .map(|(flow, kind, count, ..)| Fault::new("StartFlow", *kind).for_flow(flow).times(*count))
        .collect();
    world.appflow.set_faults(&faults).await;
    // The default test timeout (5 s), not less: the SDK's own throttling retries back off up
    // to 1 + 2 s, and a shorter timeout turns a Throttled attempt into AppFlowUnavailable.
    let operator = world.operator(&[]);
    for (flow, ..) in &table {
        world.create(flow, flow).await;
    }

    for (flow, _, _, failed_attempts, reason) in table {
        let running = world
            .wait_for(flow, START, Some(&operator), phase_is(Phase::Running))
            .await;
        let status = running.status.expect("status");
        assert_eq!(status.start_attempts, Some(failed_attempts), "{flow}");
        let warning = world.wait_for_event(flow, reason).await;
        assert_eq!(warning.type_.as_deref(), Some("Warning"), "{flow}");

        let token = status.client_token.expect("token");
        assert_eq!(
            world.appflow.stats().await.token(&token).executions,
            1,
            "{flow}"
        );
    }

    // Operator attempts on one flow: the gaps between them grow (200 ms initial delay, doubled,
    // half of each jittered: gap n lies in [100, 200] ms * 2^n). A lagging watch can only make a
    // gap longer, so each gap has a lower bound; and the last gap (at least 400 ms) exceeds the
    // first (at most 200 ms plus lag), which a constant delay could not do.
    let attempts: Vec<f64> = world
        .appflow
        .requests_for("StartFlow")
        .await
        .into_iter()
        .filter(|request| request.flow_name.as_deref() == Some("quota"))
        .map(|request| request.time)
        .collect();
    assert_eq!(attempts.len(), 4, "{attempts:?}");
    let gaps: Vec<f64> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    for (n, gap) in gaps.iter().enumerate() {
        let least = 0.1 * f64::from(1 << n);
        assert!(
            *gap >= least,
            "backoff grows: gap {n} of {gaps:?} s < {least} s"
        );
    }
    assert!(
        gaps[2] > gaps[0],
        "the delay doubles, it is not constant: {gaps:?} s"
    );
}

#[tokio::test]
async fn malformed_flowrun_is_reported_and_skipped_while_others_start() {
    let world = World::new("malformed", FLOWS).await;
    world.create("garbled", "on-demand").await;
    // A timestamp with ten fraction digits passes the API server's date-time check but not
    // the operator's (nanoseconds at most); written untyped, since the typed API could not
    // read the answer either.
    let untyped: Api<DynamicObject> = Api::namespaced_with(
        world.client.clone(),
        &world.namespace,
        &ApiResource::erase::<FlowRun>(&()),
    );
    untyped
        .patch_status(
            "garbled",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"startTime": "2026-11-25T10:00:00.1234567891Z"}})),
        )
        .await
        .expect("status patch");
    world.create("healthy", "on-demand").await;

    let operator = world.operator(&[]);
    world
        .wait_for("healthy", START, Some(&operator), phase_is(Phase::Running))
        .await;
    let event = world.wait_for_event("garbled", "InvalidObject").await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    let note = event.note.unwrap_or_default();
    assert!(note.contains("cannot read this FlowRun"), "{note}");
    let garbled = untyped.get("garbled").await.expect("still there");
    assert_eq!(garbled.data["status"].get("phase"), None, "left untouched");
}

/// `--concurrency` is one budget for the operator, however many namespaces it watches: with
/// two namespaces and `--concurrency=2`, at most two StartFlow calls are ever in flight.
#[tokio::test]
async fn concurrency_is_one_budget_across_watched_namespaces() {
    const HOLD: Duration = Duration::from_millis(1500);
    // One flow per FlowRun: the per-flow StartFlow cap (half the budget, so 1) never binds.
    let flows: String = ["a", "b", "c", "d"]
        .iter()
        .map(|name| format!("  - {{name: budget-{name}, runSeconds: 600}}\n"))
        .collect();
    let world = World::new("budget", &format!("flows:\n{flows}")).await;
    let other = unique_namespace(&world.client, "budget-other").await;
    let others: Api<FlowRun> = Api::namespaced(world.client.clone(), &other);
    world
        .appflow
        .set_faults(&[Fault::latency("StartFlow", HOLD)])
        .await;
    let watch = format!("--watch-namespaces={},{other}", world.namespace);
    let operator = Operator::start_with(
        &cluster().operator_kubeconfig,
        &world.namespace,
        world.appflow.endpoint_url(),
        &[watch.as_str(), "--concurrency=2"],
    );

    world.create("run-a", "budget-a").await;
    world.create("run-b", "budget-b").await;
    for (name, flow) in [("run-c", "budget-c"), ("run-d", "budget-d")] {
        others
            .create(
                &PostParams::default(),
                &FlowRun::new(name, FlowRunSpec::new(flow)),
            )
            .await
            .expect("FlowRun created in the other namespace");
    }
    for name in ["run-a", "run-b"] {
        world
            .wait_for(
                name,
                Duration::from_secs(30),
                Some(&operator),
                phase_is(Phase::Running),
            )
            .await;
    }
    for name in ["run-c", "run-d"] {
        let running = await_condition(others.clone(), name, |flowrun: Option<&FlowRun>| {
            flowrun.is_some_and(|flowrun| flowrun.phase() == Phase::Running)
        });
        tokio::time::timeout(Duration::from_secs(30), running)
            .await
            .expect("FlowRun of the other namespace runs within 30 s")
            .expect("watch");
    }

    // Each StartFlow is held HOLD from its arrival: count the calls in flight at each arrival.
    let arrivals: Vec<f64> = world
        .appflow
        .requests_for("StartFlow")
        .await
        .iter()
        .map(|request| request.time)
        .collect();
    assert_eq!(arrivals.len(), 4, "one StartFlow per FlowRun: {arrivals:?}");
    let hold = HOLD.as_secs_f64() * 0.9;
    let most_in_flight = arrivals
        .iter()
        .map(|at| {
            arrivals
                .iter()
                .filter(|other| **other <= *at && *at < **other + hold)
                .count()
        })
        .max()
        .unwrap_or_default();
    assert_eq!(
        most_in_flight, 2,
        "StartFlow calls in flight at once, with --concurrency=2 over two namespaces \
         (arrivals {arrivals:?})"
    );
}
