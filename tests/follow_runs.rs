//! Following runs to their end on a real API server and the local AppFlow endpoint:
//! completion, batched polling, cancel on delete, deadlines, TTL, and an operator that was down.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flowrun_api::conditions::{FINISHED, READY, RECONCILING, STALLED};
use flowrun_api::flowrun::{FlowRunSpec, FlowRunStatus, Phase};
use flowrun_api::{FIELD_MANAGER, FINALIZER};
use flowrun_core::decide::{FinalizerChange, Transition};
use flowrun_operator::report::{self, events::EventPublisher};
use flowrun_operator::telemetry::Telemetry;
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::events::Reporter;
use serde_json::json;
use support::appflow_local::{Fault, FaultKind, LocalAppFlow};
use support::cluster::kubectl;
use support::flowruns::{World, condition, is, uid};
use support::operator::Operator;

const FINISH: Duration = Duration::from_secs(60);

const FLOWS: &str = r#"
flows:
  - name: quick
    runSeconds: 0.5
    recordsProcessed: 1200
    bytesProcessed: 4096
    bytesWritten: 2048
  - name: broken
    runSeconds: 0.5
    outcome: Error
    errorMessage: "Connector returned 401 Unauthorized"
    recordsProcessed: 10
  - name: endless
    runSeconds: 3600
    cancelSeconds: 3
"#;

fn phase_is(phase: Phase) -> impl Fn(&FlowRunStatus) -> bool {
    move |status| status.phase == Some(phase)
}

/// Every execution of `flow` and its status, read from the endpoint through the real SDK.
async fn executions(appflow: &LocalAppFlow, flow: &str) -> HashMap<String, String> {
    let mut pages = appflow
        .sdk_client()
        .describe_flow_execution_records()
        .flow_name(flow)
        .into_paginator()
        .page_size(100)
        .send();
    let mut statuses = HashMap::new();
    while let Some(page) = pages.next().await {
        for record in page.expect("history page").flow_executions() {
            statuses.insert(
                record.execution_id().unwrap_or_default().to_owned(),
                record
                    .execution_status()
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default(),
            );
        }
    }
    statuses
}

/// Waits (bounded) until the endpoint reports `execution_id` with `status`.
async fn wait_for_execution(appflow: &LocalAppFlow, flow: &str, execution_id: &str, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = executions(appflow, flow).await.remove(execution_id);
        if seen.as_deref() == Some(status) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{execution_id}: {seen:?}, expected {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `kubectl wait --for=condition=CONDITION` on `objects`; fails unless it returns within 60 s.
fn kubectl_wait(world: &World, operator: &Operator, condition: &str, objects: &[&str]) {
    let waited = kubectl()
        .args(["wait", "--namespace", &world.namespace, "--timeout=60s"])
        .arg(format!("--for=condition={condition}"))
        .args(objects)
        .output()
        .expect("kubectl runs");
    assert!(
        waited.status.success(),
        "kubectl wait: {} (operator log {})",
        String::from_utf8_lossy(&waited.stderr),
        operator.log_path().display()
    );
}

#[tokio::test]
async fn successful_run_ends_succeeded_with_counts_and_kubectl_wait_returns() {
    let world = World::new("success", FLOWS).await;
    let operator = world.operator(&[]);
    world.create("copy", "quick").await;

    kubectl_wait(&world, &operator, "Ready", &["flowrun/copy"]);

    let flowrun = world
        .wait_until("copy", FINISH, Some(&operator), |flowrun| {
            flowrun.finalizers().is_empty()
        })
        .await;
    let status = flowrun.status.expect("status");
    assert_eq!(status.phase, Some(Phase::Succeeded));
    assert_eq!(status.execution_status.as_deref(), Some("Successful"));
    assert_eq!(
        (
            status.records_processed,
            status.bytes_processed,
            status.bytes_written
        ),
        (Some(1200), Some(4096), Some(2048))
    );
    let (started, completed) = (
        status.start_time.clone().expect("start time").0,
        status.completion_time.clone().expect("completion time").0,
    );
    assert!(completed >= started, "{started} -> {completed}");
    assert_eq!(condition(&status, READY), is("True", "Succeeded"));
    assert_eq!(condition(&status, RECONCILING), is("False", "Succeeded"));
    assert_eq!(condition(&status, STALLED), is("False", "Succeeded"));
    assert_eq!(condition(&status, FINISHED), is("True", "Succeeded"));
    world.wait_for_event("copy", "Succeeded").await;
}

/// `kubectl wait --for=condition=Finished` is the one wait a CI job needs: it returns for a
/// failed run as for a succeeded one, and the phase then tells which.
#[tokio::test]
async fn kubectl_wait_for_finished_returns_for_a_failed_run_and_a_succeeded_one() {
    let world = World::new("finished", FLOWS).await;
    let operator = world.operator(&[]);
    world.create("good", "quick").await;
    world.create("bad", "broken").await;

    kubectl_wait(
        &world,
        &operator,
        "Finished",
        &["flowrun/good", "flowrun/bad"],
    );

    for (name, phase) in [("good", "Succeeded"), ("bad", "Failed")] {
        let read = kubectl()
            .args(["get", "--namespace", &world.namespace, "flowrun", name])
            .arg("-o=jsonpath={.status.phase} {.status.completionTime}")
            .output()
            .expect("kubectl runs");
        let printed = String::from_utf8_lossy(&read.stdout).into_owned();
        let (printed_phase, completion_time) = printed.split_once(' ').unwrap_or_default();
        assert_eq!(printed_phase, phase, "{name}: {printed}");
        assert!(!completion_time.is_empty(), "{name}: no completionTime");
    }
}

#[tokio::test]
async fn failing_run_ends_failed_with_the_appflow_message() {
    let world = World::new("failure", FLOWS).await;
    let operator = world.operator(&[]);
    world.create("copy", "broken").await;

    let failed = world
        .wait_for("copy", FINISH, Some(&operator), phase_is(Phase::Failed))
        .await;

    let status = failed.status.expect("status");
    assert_eq!(status.execution_status.as_deref(), Some("Error"));
    assert_eq!(status.records_processed, Some(10));
    assert!(status.completion_time.is_some());
    assert!(
        status
            .message
            .unwrap_or_default()
            .contains("Connector returned 401 Unauthorized")
    );
    let stalled = condition(&failed_status(&world, "copy").await, STALLED);
    assert_eq!(stalled, is("True", "ExecutionFailed"));
    let event = world.wait_for_event("copy", "ExecutionFailed").await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
}

async fn failed_status(world: &World, name: &str) -> FlowRunStatus {
    world
        .flowruns
        .get(name)
        .await
        .expect("FlowRun")
        .status
        .expect("status")
}

#[tokio::test]
async fn hundred_runs_of_one_flow_cost_one_history_read_per_tick_and_are_found_past_page_one() {
    // Runs stay InProgress until the test ends them, however slowly the 100 start.
    let world = World::new("batch", "flows:\n  - name: shared\n    runSeconds: 3600\n").await;
    let tick = Duration::from_millis(500);
    let operator = world.operator(&["--poll-initial-interval=500ms", "--poll-max-interval=1s"]);
    let started = Instant::now();
    let names: Vec<String> = (0..100).map(|i| format!("run-{i:03}")).collect();
    for name in &names {
        world.create(name, "shared").await;
    }
    let mut ours = Vec::new();
    for name in &names {
        let running = world
            .wait_for(name, FINISH, Some(&operator), phase_is(Phase::Running))
            .await;
        ours.push(running.status.and_then(|s| s.execution_id).expect("id"));
    }
    // 150 newer runs started outside the operator push all of ours off the first page.
    let client = world.appflow.sdk_client();
    for _ in 0..150 {
        client
            .start_flow()
            .flow_name("shared")
            .send()
            .await
            .expect("start");
    }
    let first_page = client
        .describe_flow_execution_records()
        .flow_name("shared")
        .max_results(100)
        .send()
        .await
        .expect("history");
    assert!(
        first_page.flow_executions().iter().all(|record| !ours
            .iter()
            .any(|id| Some(id.as_str()) == record.execution_id())),
        "none of ours is on page one"
    );
    let statuses = executions(&world.appflow, "shared").await;
    for id in &ours {
        assert_eq!(
            statuses[id], "InProgress",
            "{id} was still running when pushed off"
        );
    }
    assert_eq!(world.appflow.finish_runs("shared").await, 250);

    for name in &names {
        world
            .wait_for(name, FINISH, Some(&operator), phase_is(Phase::Succeeded))
            .await;
    }

    let elapsed = started.elapsed();
    let reads = world
        .appflow
        .stats()
        .await
        .calls("DescribeFlowExecutionRecords");
    // One read per tick at most, of up to 3 pages (250 records, 100 a page).
    let ticks = (elapsed.as_millis() / tick.as_millis()) as u64 + 1;
    println!("{reads} DescribeFlowExecutionRecords calls in {elapsed:?} ({ticks} ticks)");
    assert!(
        reads <= ticks * 3,
        "{reads} history calls in {elapsed:?} ({ticks} ticks) for 100 runs of one flow"
    );
    assert_eq!(world.appflow.stats().await.executions("shared"), 250);
}

#[tokio::test]
async fn deleting_a_running_flowrun_cancels_exactly_its_execution() {
    let world = World::new("cancel", FLOWS).await;
    let operator = world.operator(&[]);
    world.create("doomed", "endless").await;
    world.create("survivor", "endless").await;
    let mut execution = HashMap::new();
    for name in ["doomed", "survivor"] {
        let running = world
            .wait_for(name, FINISH, Some(&operator), phase_is(Phase::Running))
            .await;
        assert_eq!(
            running.finalizers(),
            ["appflow.flowrun.dev/cancel-on-delete"],
            "held while running"
        );
        let id = running.status.and_then(|s| s.execution_id).expect("id");
        execution.insert(name, id);
    }

    world
        .flowruns
        .delete("doomed", &DeleteParams::default())
        .await
        .expect("delete");
    world.wait_until_gone("doomed").await;

    let cancels = world.appflow.requests_for("CancelFlowExecutions").await;
    assert_eq!(cancels.len(), 1, "{cancels:?}");
    // The run goes CancelStarted, then (after the flow's 3 s cancel time) Canceled.
    wait_for_execution(
        &world.appflow,
        "endless",
        &execution["doomed"],
        "CancelStarted",
    )
    .await;
    wait_for_execution(&world.appflow, "endless", &execution["doomed"], "Canceled").await;
    let statuses = executions(&world.appflow, "endless").await;
    assert_eq!(statuses[&execution["survivor"]], "InProgress");

    // Gone from the cluster, gone from the operator's memory too.
    wait_until_forgotten(&world, &operator, "doomed").await;
}

/// Waits (bounded) until the operator's log says it dropped what it kept for the FlowRun: its
/// watch has delivered the deletion.
async fn wait_until_forgotten(world: &World, operator: &Operator, name: &str) {
    let forgotten = format!("{}/{name}", world.namespace);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !operator
        .logs()
        .lines()
        .any(|line| line.contains("Forgot the deleted FlowRun") && line.contains(&forgotten))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the operator did not forget {forgotten} within 10 s of its deletion: see {}",
            operator.log_path().display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn deleting_a_flowrun_whose_start_timed_out_cancels_the_one_run_its_token_started() {
    let world = World::new("delete-unknown", FLOWS).await;
    world
        .appflow
        .set_faults(&[Fault::slow_response("StartFlow", Duration::from_secs(4)).times(1)])
        .await;
    // The retry after the timeout comes late, so the FlowRun is deleted while Starting.
    let operator = world.operator(&["--aws-timeout=1s", "--retry-initial-delay=1m"]);
    let token = uid(&world.create("lost", "endless").await);
    world
        .wait_for("lost", FINISH, Some(&operator), |status| {
            status.phase == Some(Phase::Retrying)
                && condition(status, READY) == is("False", "AppFlowUnavailable")
        })
        .await;
    let started = executions(&world.appflow, "endless").await;
    assert_eq!(
        started.len(),
        1,
        "the timed-out call started the run: {started:?}"
    );
    let (execution_id, _) = started.into_iter().next().expect("one run");

    world
        .flowruns
        .delete("lost", &DeleteParams::default())
        .await
        .expect("delete");
    world.wait_until_gone("lost").await;

    let stats = world.appflow.stats().await;
    assert_eq!(
        stats.token(&token).start_flow_calls,
        2,
        "the first call, then the same token again to learn the run"
    );
    assert_eq!(stats.token(&token).executions, 1, "and no second run");
    assert_eq!(stats.executions("endless"), 1);
    assert_eq!(stats.calls("CancelFlowExecutions"), 1);
    wait_for_execution(&world.appflow, "endless", &execution_id, "CancelStarted").await;
    let event = world.wait_for_event("lost", "CanceledOnDelete").await;
    assert!(
        event.note.unwrap_or_default().contains(&execution_id),
        "the event names the run"
    );
}

/// A late write about a deleted FlowRun (decided on a copy from before its deletion) must not
/// land on another FlowRun: removing the finalizer of one that is gone creates nothing, and one
/// re-created under the name keeps its own. Both count as done.
#[tokio::test]
async fn a_late_finalizer_removal_touches_no_flowrun_created_under_the_name_since() {
    let world = World::new("late-write", FLOWS).await;
    let events = EventPublisher::spawn(
        world.client.clone(),
        Reporter::from(FIELD_MANAGER),
        1,
        Arc::new(Telemetry::new()),
    );
    let remove = Transition {
        finalizer: Some(FinalizerChange::Remove),
        ..Transition::default()
    };
    let finalized = |name: &'static str| {
        let api = world.flowruns.clone();
        async move {
            let patch = json!({
                "apiVersion": "appflow.flowrun.dev/v1alpha1",
                "kind": "FlowRun",
                "metadata": {"name": name, "finalizers": [FINALIZER]},
            });
            api.patch(
                name,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Apply(&patch),
            )
            .await
            .expect("add the finalizer")
        }
    };
    let gone = || async {
        world
            .flowruns
            .get_opt("again")
            .await
            .expect("get")
            .is_none()
    };
    world.create("again", "quick").await;
    let first = finalized("again").await;
    world
        .flowruns
        .delete("again", &DeleteParams::default())
        .await
        .expect("delete");
    let removal = report::apply(&world.flowruns, &events, &first, &remove, "test").await;
    assert!(
        removal.expect("removed").vanished,
        "removing the last finalizer of a deleted FlowRun made it vanish"
    );
    assert!(gone().await);

    let late = report::apply(&world.flowruns, &events, &first, &remove, "test").await;
    assert!(late.expect("gone counts as done").vanished);
    assert!(gone().await, "and nothing was created");

    world.create("again", "quick").await;
    let second = finalized("again").await;
    let late = report::apply(&world.flowruns, &events, &first, &remove, "test").await;
    assert!(late.expect("replaced counts as done").vanished);
    let kept = world.flowruns.get("again").await.expect("get");
    assert_eq!(kept.uid(), second.uid());
    assert_eq!(
        kept.finalizers(),
        [FINALIZER],
        "the new FlowRun keeps its finalizer"
    );
}

/// A cancel that can never succeed (the role was revoked, say) must not hold the FlowRun,
/// and its namespace, for ever: retried until --cancel-timeout, then released with a warning.
#[tokio::test]
async fn a_cancel_that_keeps_failing_releases_the_flowrun_after_the_cancel_timeout() {
    let world = World::new("cancel-denied", FLOWS).await;
    let operator = world.operator(&["--cancel-timeout=4s", "--retry-initial-delay=500ms"]);
    world.create("stuck", "endless").await;
    let running = world
        .wait_for("stuck", FINISH, Some(&operator), phase_is(Phase::Running))
        .await;
    let execution_id = running
        .status
        .and_then(|status| status.execution_id)
        .expect("execution id");
    world
        .appflow
        .set_faults(&[Fault::new("CancelFlowExecutions", FaultKind::AccessDenied)])
        .await;

    world
        .flowruns
        .delete("stuck", &DeleteParams::default())
        .await
        .expect("delete");
    // Held and retrying, and saying so, until the timeout.
    let retrying = world
        .wait_for("stuck", FINISH, Some(&operator), |status| {
            status.cancel_attempts >= Some(2)
        })
        .await;
    let retrying = retrying.status.expect("status");
    let message = retrying.message.clone().unwrap_or_default();
    assert!(
        message.contains("the finalizer is released at"),
        "{message}"
    );
    assert_eq!(
        condition(&retrying, RECONCILING),
        is("True", "AccessDenied")
    );
    world.wait_for_event("stuck", "AccessDenied").await;
    world.wait_until_gone("stuck").await;

    let abandoned = world.wait_for_event("stuck", "RunAbandoned").await;
    assert_eq!(abandoned.type_.as_deref(), Some("Warning"));
    let note = abandoned.note.unwrap_or_default();
    assert!(
        note.contains(&format!("execution {execution_id} of flow endless")),
        "{note}"
    );
    assert_eq!(
        operator.metric("flowrun_abandoned_runs_total").await,
        Some(1.0)
    );
    let cancels = world.appflow.stats().await.calls("CancelFlowExecutions");
    assert!(
        (2..=8).contains(&cancels),
        "backed off, not hammered: {cancels} cancels in 4 s"
    );
    assert_eq!(
        executions(&world.appflow, "endless").await[&execution_id],
        "InProgress",
        "the run is left going, as the warning says"
    );
}

#[tokio::test]
async fn deleting_a_finished_flowrun_makes_no_aws_call() {
    let world = World::new("delete-done", FLOWS).await;
    let operator = world.operator(&[]);
    world.create("done", "quick").await;
    // Succeeded, and the finalizer released right after.
    world
        .wait_until("done", FINISH, Some(&operator), |flowrun| {
            flowrun.status.as_ref().and_then(|s| s.phase) == Some(Phase::Succeeded)
                && flowrun.finalizers().is_empty()
        })
        .await;
    let calls_before = world.appflow.requests().await.len();

    world
        .flowruns
        .delete("done", &DeleteParams::default())
        .await
        .expect("delete");
    world.wait_until_gone("done").await;
    // The operator has seen the deletion (its watch handles it), and called nothing.
    wait_until_forgotten(&world, &operator, "done").await;

    assert_eq!(world.appflow.requests().await.len(), calls_before);
}

#[tokio::test]
async fn run_past_its_deadline_is_canceled_and_fails() {
    let world = World::new("deadline", FLOWS).await;
    let operator = world.operator(&[]);
    let spec = FlowRunSpec {
        active_deadline_seconds: Some(2),
        ..FlowRunSpec::new("endless")
    };
    world.create_with("slow", spec).await;

    let failed = world
        .wait_until("slow", FINISH, Some(&operator), |flowrun| {
            flowrun.status.as_ref().and_then(|s| s.phase) == Some(Phase::Failed)
                && flowrun.finalizers().is_empty()
        })
        .await;

    let status = failed.status.expect("status");
    assert_eq!(condition(&status, STALLED), is("True", "DeadlineExceeded"));
    let execution_id = status.execution_id.expect("it had started");
    wait_for_execution(&world.appflow, "endless", &execution_id, "Canceled").await;
    world.wait_for_event("slow", "DeadlineExceeded").await;
}

#[tokio::test]
async fn finished_flowrun_is_deleted_after_its_ttl() {
    let world = World::new("ttl", FLOWS).await;
    let _operator = world.operator(&[]);
    let spec = FlowRunSpec {
        ttl_seconds_after_finished: Some(2),
        ..FlowRunSpec::new("quick")
    };
    world.create_with("ephemeral", spec).await;
    let finished = world
        .wait_for("ephemeral", FINISH, None, phase_is(Phase::Succeeded))
        .await;
    let completed = finished
        .status
        .and_then(|status| status.completion_time)
        .expect("completionTime")
        .0;

    world.wait_until_gone("ephemeral").await;

    // Deleted, and no earlier than the TTL after completionTime (whole seconds, as the operator
    // reads it).
    let gone = jiff::Timestamp::now();
    assert!(
        gone >= completed + jiff::SignedDuration::from_secs(2),
        "deleted at {gone}, completed at {completed}"
    );
    assert_eq!(world.appflow.stats().await.executions("quick"), 1);
}

#[tokio::test]
async fn runs_that_finish_while_the_operator_is_down_are_reported_when_it_returns() {
    let world = World::new("downtime", "flows:\n  - name: medium\n    runSeconds: 2\n").await;
    let mut operator = world.operator(&[]);
    let names = ["a", "b", "c"];
    let mut ids = Vec::new();
    for name in names {
        world.create(name, "medium").await;
    }
    for name in names {
        let running = world
            .wait_for(name, FINISH, Some(&operator), phase_is(Phase::Running))
            .await;
        ids.push(running.status.and_then(|s| s.execution_id).expect("id"));
    }
    operator.kill();
    for id in &ids {
        wait_for_execution(&world.appflow, "medium", id, "Successful").await;
    }

    let operator = world.operator(&[]);
    for name in names {
        world
            .wait_for(name, FINISH, Some(&operator), phase_is(Phase::Succeeded))
            .await;
    }
    assert_eq!(world.appflow.stats().await.executions("medium"), 3);
}
