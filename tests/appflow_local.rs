//! The real `aws-sdk-appflow` client against `appflow-local`: every operation, every modelled
//! error as the SDK's typed variant, idempotency tokens, run lifecycles, pagination, retries and
//! faults. Each test starts its own endpoint.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use aws_sdk_appflow::Client;
use aws_sdk_appflow::config::retry::RetryConfig;
use aws_sdk_appflow::config::timeout::TimeoutConfig;
use aws_sdk_appflow::config::{Credentials, Region};
use aws_sdk_appflow::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_appflow::operation::RequestId;
use aws_sdk_appflow::operation::cancel_flow_executions::CancelFlowExecutionsError;
use aws_sdk_appflow::operation::describe_flow::DescribeFlowError;
use aws_sdk_appflow::operation::describe_flow_execution_records::DescribeFlowExecutionRecordsError;
use aws_sdk_appflow::operation::list_flows::ListFlowsError;
use aws_sdk_appflow::operation::start_flow::StartFlowError;
use aws_sdk_appflow::operation::stop_flow::StopFlowError;
use aws_sdk_appflow::types::{ExecutionRecord, ExecutionStatus, FlowStatus, TriggerType};
use support::appflow_local::{Fault, FaultKind, LocalAppFlow, TEST_ACCESS_KEY_ID};

const FLOWS: &str = r#"
flows:
  - name: succeeds
    runSeconds: 1.5
    recordsProcessed: 1200
    bytesProcessed: 1048576
    bytesWritten: 524288
  - name: fails
    runSeconds: 0.3
    outcome: Error
    errorMessage: "Zendesk API rate limit exceeded"
    recordsProcessed: 10
    putFailuresCount: 4
  - name: long-running
    runSeconds: 600
    cancelSeconds: 1.5
  - name: instant
    runSeconds: 0
  - name: nightly
    triggerType: Scheduled
    status: Suspended
  - name: on-event
    triggerType: Event
    status: Draft
  - name: retired
    status: Deleted
"#;

/// The flows of `FLOWS` that AppFlow would list (not the deleted one).
const LIVE_FLOWS: [&str; 6] = [
    "succeeds",
    "fails",
    "long-running",
    "instant",
    "nightly",
    "on-event",
];
const ARN_PREFIX: &str = "arn:aws:appflow:us-east-1:123456789012:flow/";
const DEADLINE: Duration = Duration::from_secs(20);

/// One of the SDK's `is_*_exception` checks, each true for exactly one typed variant.
type IsVariant<E> = fn(&E) -> bool;

async fn start(client: &Client, flow: &str) -> String {
    let output = client
        .start_flow()
        .flow_name(flow)
        .send()
        .await
        .expect("start flow");
    output
        .execution_id()
        .expect("an on-demand run has an id")
        .to_owned()
}

async fn find_record(client: &Client, flow: &str, id: &str) -> ExecutionRecord {
    let output = client
        .describe_flow_execution_records()
        .flow_name(flow)
        .max_results(100)
        .send()
        .await
        .expect("describe execution records");
    output
        .flow_executions()
        .iter()
        .find(|record| record.execution_id() == Some(id))
        .cloned()
        .unwrap_or_else(|| panic!("run {id} of {flow} is not listed"))
}

/// Polls until the run reaches `status`; fails after `DEADLINE`.
async fn wait_for_status(
    client: &Client,
    flow: &str,
    id: &str,
    status: ExecutionStatus,
) -> ExecutionRecord {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let record = find_record(client, flow, id).await;
        if record.execution_status() == Some(&status) {
            return record;
        }
        assert!(
            Instant::now() < deadline,
            "run {id} of {flow} is still {:?}, not {status:?}",
            record.execution_status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn on_demand_start_returns_arn_active_status_and_a_new_execution_id() {
    let appflow = LocalAppFlow::start(FLOWS);
    let client = appflow.sdk_client();

    let first = client
        .start_flow()
        .flow_name("succeeds")
        .send()
        .await
        .unwrap();
    let second = client
        .start_flow()
        .flow_name("succeeds")
        .send()
        .await
        .unwrap();

    assert_eq!(
        first.flow_arn(),
        Some(format!("{ARN_PREFIX}succeeds").as_str())
    );
    assert_eq!(first.flow_status(), Some(&FlowStatus::Active));
    assert!(first.request_id().is_some_and(|id| !id.is_empty()));
    // Without an explicit token the SDK sends a fresh one each time.
    assert_ne!(first.execution_id(), second.execution_id());
    assert_eq!(appflow.stats().await.executions("succeeds"), 2);
}

#[tokio::test]
async fn run_goes_in_progress_then_successful_with_counters() {
    let appflow = LocalAppFlow::start(FLOWS);
    let client = appflow.sdk_client();
    let id = start(&client, "succeeds").await;

    let running = find_record(&client, "succeeds", &id).await;
    assert_eq!(
        running.execution_status(),
        Some(&ExecutionStatus::Inprogress)
    );
    assert!(running.execution_result().is_none());
    assert!(running.started_at().is_some());

    let done = wait_for_status(&client, "succeeds", &id, ExecutionStatus::Successful).await;
    let result = done
        .execution_result()
        .expect("a finished run has a result");
    assert_eq!(result.records_processed(), Some(1200));
    assert_eq!(result.bytes_processed(), Some(1_048_576));
    assert_eq!(result.bytes_written(), Some(524_288));
    assert!(result.error_info().is_none());
    let (started, ended) = (
        done.started_at().unwrap(),
        done.data_pull_end_time().unwrap(),
    );
    let run_seconds = ended.as_secs_f64() - started.as_secs_f64();
    assert!((run_seconds - 1.5).abs() < 0.001, "{run_seconds}");
    assert_eq!(done.last_updated_at(), Some(ended));
    assert_eq!(done.data_pull_start_time(), Some(started));
}

#[tokio::test]
async fn failing_run_ends_in_error_with_message_and_put_failures() {
    let appflow = LocalAppFlow::start(FLOWS);
    let client = appflow.sdk_client();
    let id = start(&client, "fails").await;

    let record = wait_for_status(&client, "fails", &id, ExecutionStatus::Error).await;
    let result = record.execution_result().unwrap();
    let error = result.error_info().expect("a failed run has errorInfo");
    assert_eq!(
        error.execution_message(),
        Some("Zendesk API rate limit exceeded")
    );
    assert_eq!(error.put_failures_count(), Some(4));
    assert_eq!(result.records_processed(), Some(10));

    let flow = client
        .describe_flow()
        .flow_name("fails")
        .send()
        .await
        .unwrap();
    let last = flow.last_run_execution_details().unwrap();
    assert_eq!(
        last.most_recent_execution_status(),
        Some(&ExecutionStatus::Error)
    );
    assert_eq!(
        last.most_recent_execution_message(),
        Some("Zendesk API rate limit exceeded")
    );
}

#[tokio::test]
async fn describe_flow_reports_trigger_type_status_times_and_latest_run() {
    let appflow = LocalAppFlow::start(FLOWS);
    let client = appflow.sdk_client();

    let before = client
        .describe_flow()
        .flow_name("long-running")
        .send()
        .await
        .unwrap();
    assert_eq!(before.flow_name(), Some("long-running"));
    assert_eq!(
        before.flow_arn(),
        Some(format!("{ARN_PREFIX}long-running").as_str())
    );
    assert_eq!(before.flow_status(), Some(&FlowStatus::Active));
    assert_eq!(
        before
            .trigger_config()
            .map(|trigger| trigger.trigger_type()),
        Some(&TriggerType::Ondemand)
    );
    assert!(before.created_at().is_some() && before.last_updated_at().is_some());
    assert!(before.last_run_execution_details().is_none());

    let id = start(&client, "long-running").await;
    let after = client
        .describe_flow()
        .flow_name("long-running")
        .send()
        .await
        .unwrap();
    let last = after.last_run_execution_details().unwrap();
    assert_eq!(
        last.most_recent_execution_status(),
        Some(&ExecutionStatus::Inprogress)
    );
    let record = find_record(&client, "long-running", &id).await;
    assert_eq!(last.most_recent_execution_time(), record.started_at());

    let nightly = client
        .describe_flow()
        .flow_name("nightly")
        .send()
        .await
        .unwrap();
    assert_eq!(nightly.flow_status(), Some(&FlowStatus::Suspended));
    assert_eq!(
        nightly
            .trigger_config()
            .map(|trigger| trigger.trigger_type()),
        Some(&TriggerType::Scheduled)
    );
}

#[tokio::test]
async fn scheduled_and_event_flows_start_with_null_execution_id_and_become_active() {
    let appflow = LocalAppFlow::start(FLOWS);
    let client = appflow.sdk_client();

    for flow in ["nightly", "on-event"] {
        let started = client.start_flow().flow_name(flow).send().await.unwrap();
        assert_eq!(started.execution_id(), None, "{flow}");
        assert_eq!(started.flow_status(), Some(&FlowStatus::Active), "{flow}");
        let described = client.describe_flow().flow_name(flow).send().await.unwrap();
        assert_eq!(described.flow_status(), Some(&FlowStatus::Active), "{flow}");
        let records = client
            .describe_flow_execution_records()
            .flow_name(flow)
            .send()
            .await
            .unwrap();
        assert!(records.flow_executions().is_empty(), "{flow}");
    }
    assert!(appflow.stats().await.executions_by_flow.is_empty());
}

#[tokio::test]
async fn stop_flow_suspends_scheduled_and_event_flows() {
    let appflow = LocalAppFlow::start(FLOWS);
    let client = appflow.sdk_client();

    for flow in ["nightly", "on-event"] {
        client.start_flow().flow_name(flow).send().await.unwrap();
        let stopped = client.stop_flow().flow_name(flow).send().await.unwrap();
        assert_eq!(
            stopped.flow_arn(),
            Some(format!("{ARN_PREFIX}{flow}").as_str())
        );
        assert_eq!(stopped.flow_status(), Some(&FlowStatus::Suspended));
        let described = client.describe_flow().flow_name(flow).send().await.unwrap();
        assert_eq!(described.flow_status(), Some(&FlowStatus::Suspended));
    }
}

#[tokio::test]
async fn stop_flow_on_an_on_demand_flow_is_unsupported_operation() {
    let appflow = LocalAppFlow::start(FLOWS);
    let client = appflow.sdk_client();

    let err = client
        .stop_flow()
        .flow_name("succeeds")
        .send()
        .await
        .unwrap_err();
    let err = err.into_service_error();
    assert!(
        matches!(err, StopFlowError::UnsupportedOperationException(_)),
        "{err:?}"
    );
    assert!(
        err.message()
            .is_some_and(|message| message.contains("succeeds"))
    );
}

#[tokio::test]
async fn cancel_moves_a_running_execution_to_cancel_started_then_canceled() {
    let appflow = LocalAppFlow::start(FLOWS);
    let client = appflow.sdk_client();
    let id = start(&client, "long-running").await;

    let cancel = client
        .cancel_flow_executions()
        .flow_name("long-running")
        .execution_ids(&id)
        .send()
        .await
        .unwrap();
    assert!(cancel.invalid_executions().is_empty());
    let record = find_record(&client, "long-running", &id).await;
    assert_eq!(
        record.execution_status(),
        Some(&ExecutionStatus::Cancelstarted)
    );
    wait_for_status(&client, "long-running", &id, ExecutionStatus::Canceled).await;
}

#[tokio::test]
async fn cancel_reports_finished_and_unknown_ids_as_invalid_executions() {
    let appflow = LocalAppFlow::start(FLOWS);
    let client = appflow.sdk_client();
    let finished = start(&client, "instant").await;
    wait_for_status(&client, "instant", &finished, ExecutionStatus::Successful).await;

    let cancel = client
        .cancel_flow_executions()
        .flow_name("instant")
        .execution_ids(&finished)
        .execution_ids("no-such-run")
        .send()
        .await
        .unwrap();
    assert_eq!(
        cancel.invalid_executions(),
        [finished.as_str(), "no-such-run"]
    );
    let record = find_record(&client, "instant", &finished).await;
    assert_eq!(
        record.execution_status(),
        Some(&ExecutionStatus::Successful)
    );
}

#[tokio::test]
async fn cancel_without_ids_cancels_every_running_execution() {
    let appflow = LocalAppFlow::start(FLOWS);
    let client = appflow.sdk_client();
    let ids = [
        start(&client, "long-running").await,
        start(&client, "long-running").await,
    ];

    let cancel = client
        .cancel_flow_executions()
        .flow_name("long-running")
        .send()
        .await
        .unwrap();
    assert!(cancel.invalid_executions().is_empty());
    for id in &ids {
        wait_for_status(&client, "long-running", id, ExecutionStatus::Canceled).await;
    }
}

#[tokio::test]
async fn replayed_client_token_returns_same_execution_and_starts_nothing() {
    let appflow = LocalAppFlow::start(FLOWS);
    let client = appflow.sdk_client();
    let token = "flowrun-0b6f3c1e/generation-1";

    let first = client
        .start_flow()
        .flow_name("succeeds")
        .client_token(token)
        .send()
        .await
        .unwrap();
    let replay = client
        .start_flow()
        .flow_name("succeeds")
        .client_token(token)
        .send()
        .await
        .unwrap();

    assert!(first.execution_id().is_some());
    assert_eq!(replay.execution_id(), first.execution_id());
    assert_eq!(replay.flow_arn(), first.flow_arn());
    let stats = appflow.stats().await;
    assert_eq!(stats.token(token).start_flow_calls, 2);
    assert_eq!(stats.token(token).executions, 1);
    assert_eq!(stats.executions("succeeds"), 1);
}

#[tokio::test]
async fn client_token_after_expiry_starts_a_new_execution() {
    let appflow = LocalAppFlow::start(FLOWS);
    let client = appflow.sdk_client();
    let token = "flowrun-expiring";

    let first = client
        .start_flow()
        .flow_name("succeeds")
        .client_token(token)
        .send()
        .await
        .unwrap();
    appflow.expire_tokens().await;
    let later = client
        .start_flow()
        .flow_name("succeeds")
        .client_token(token)
        .send()
        .await
        .unwrap();

    assert_ne!(later.execution_id(), first.execution_id());
    let stats = appflow.stats().await;
    assert_eq!(
        (
            stats.token(token).start_flow_calls,
            stats.token(token).executions
        ),
        (2, 2)
    );
}

#[tokio::test]
async fn token_reused_for_another_flow_returns_the_original_on_demand_but_conflicts_when_scheduled()
{
    let appflow = LocalAppFlow::start(FLOWS);
    let client = appflow.sdk_client();
    let token = "shared-token";
    let original = client
        .start_flow()
        .flow_name("succeeds")
        .client_token(token)
        .send()
        .await
        .unwrap();

    let on_demand = client
        .start_flow()
        .flow_name("instant")
        .client_token(token)
        .send()
        .await
        .unwrap();
    assert_eq!(on_demand.execution_id(), original.execution_id());
    assert_eq!(on_demand.flow_arn(), original.flow_arn());

    let err = client
        .start_flow()
        .flow_name("nightly")
        .client_token(token)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, StartFlowError::ConflictException(_)),
        "{err:?}"
    );
    assert_eq!(appflow.stats().await.executions("instant"), 0);
}

#[tokio::test]
async fn unknown_and_deleted_flows_are_resource_not_found_on_every_operation() {
    let appflow = LocalAppFlow::start(FLOWS);
    let client = appflow.sdk_client();

    for flow in ["missing", "retired"] {
        let err = client
            .start_flow()
            .flow_name(flow)
            .send()
            .await
            .unwrap_err();
        assert!(
            matches!(
                err.into_service_error(),
                StartFlowError::ResourceNotFoundException(_)
            ),
            "{flow}"
        );
        let err = client
            .describe_flow()
            .flow_name(flow)
            .send()
            .await
            .unwrap_err();
        assert!(
            matches!(
                err.into_service_error(),
                DescribeFlowError::ResourceNotFoundException(_)
            ),
            "{flow}"
        );
        let err = client
            .describe_flow_execution_records()
            .flow_name(flow)
            .send()
            .await
            .unwrap_err();
        assert!(
            matches!(
                err.into_service_error(),
                DescribeFlowExecutionRecordsError::ResourceNotFoundException(_)
            ),
            "{flow}"
        );
        let err = client
            .cancel_flow_executions()
            .flow_name(flow)
            .send()
            .await
            .unwrap_err();
        assert!(
            matches!(
                err.into_service_error(),
                CancelFlowExecutionsError::ResourceNotFoundException(_)
            ),
            "{flow}"
        );
        let err = client.stop_flow().flow_name(flow).send().await.unwrap_err();
        assert!(
            matches!(
                err.into_service_error(),
                StopFlowError::ResourceNotFoundException(_)
            ),
            "{flow}"
        );
    }
}

#[tokio::test]
async fn invalid_start_flow_input_is_an_unhandled_validation_exception() {
    let appflow = LocalAppFlow::start(FLOWS);
    let client = appflow.sdk_client();
    let long_name = "a".repeat(257);
    // (case, flowName, clientToken, member named in the message)
    let cases = [
        ("space in name", "has space", None, "flowName"),
        ("257-character name", long_name.as_str(), None, "flowName"),
        ("1-character name", "a", None, "flowName"),
        ("empty client token", "succeeds", Some(""), "clientToken"),
        (
            "tab in client token",
            "succeeds",
            Some("tab\there"),
            "clientToken",
        ),
    ];
    for (case, name, token, member) in cases {
        let err = client
            .start_flow()
            .flow_name(name)
            .set_client_token(token.map(str::to_owned))
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        // ValidationException is not modelled for StartFlow, so the SDK has no variant for it.
        assert_eq!(err.code(), Some("ValidationException"), "{case}");
        assert!(
            !(err.is_conflict_exception()
                || err.is_internal_server_exception()
                || err.is_resource_not_found_exception()
                || err.is_service_quota_exceeded_exception()),
            "{case}: {err:?}"
        );
        assert!(
            err.message()
                .is_some_and(|message| message.contains(member)),
            "{case}: {err:?}"
        );
    }
    assert!(appflow.stats().await.executions_by_flow.is_empty());
}

#[tokio::test]
async fn invalid_paging_and_cancel_input_is_a_typed_validation_exception() {
    let appflow = LocalAppFlow::start(FLOWS);
    let client = appflow.sdk_client();
    let long_token = "t".repeat(2049);
    // (case, maxResults, nextToken)
    let cases = [
        ("maxResults 0", Some(0), None),
        ("maxResults 101", Some(101), None),
        ("nextToken never issued", None, Some("bogus")),
        ("nextToken with a space", None, Some("a b")),
        (
            "nextToken of 2049 characters",
            None,
            Some(long_token.as_str()),
        ),
    ];
    for (case, max_results, next_token) in cases {
        let err = client
            .describe_flow_execution_records()
            .flow_name("succeeds")
            .set_max_results(max_results)
            .set_next_token(next_token.map(str::to_owned))
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert!(
            matches!(
                err,
                DescribeFlowExecutionRecordsError::ValidationException(_)
            ),
            "records, {case}: {err:?}"
        );
        let err = client
            .list_flows()
            .set_max_results(max_results)
            .set_next_token(next_token.map(str::to_owned))
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert!(
            matches!(err, ListFlowsError::ValidationException(_)),
            "list, {case}: {err:?}"
        );
    }

    let too_many: Vec<String> = (0..101).map(|i| format!("run-{i}")).collect();
    let err = client
        .cancel_flow_executions()
        .flow_name("long-running")
        .set_execution_ids(Some(too_many))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, CancelFlowExecutionsError::ValidationException(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn records_next_token_from_another_flow_is_refused() {
    let appflow = LocalAppFlow::start(FLOWS);
    let client = appflow.sdk_client();
    for _ in 0..2 {
        start(&client, "instant").await;
    }
    let page = client
        .describe_flow_execution_records()
        .flow_name("instant")
        .max_results(1)
        .send()
        .await
        .unwrap();
    let token = page.next_token().expect("a second page");

    let err = client
        .describe_flow_execution_records()
        .flow_name("succeeds")
        .next_token(token)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(
            err,
            DescribeFlowExecutionRecordsError::ValidationException(_)
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn injected_faults_surface_as_the_sdk_typed_errors() {
    let appflow = LocalAppFlow::start(FLOWS);
    let client = appflow.sdk_client();

    let start_flow: [(FaultKind, IsVariant<StartFlowError>); 4] = [
        (
            FaultKind::Quota,
            StartFlowError::is_service_quota_exceeded_exception,
        ),
        (FaultKind::Conflict, StartFlowError::is_conflict_exception),
        (
            FaultKind::NotFound,
            StartFlowError::is_resource_not_found_exception,
        ),
        (
            FaultKind::Internal,
            StartFlowError::is_internal_server_exception,
        ),
    ];
    for (kind, is_expected) in start_flow {
        appflow.set_faults(&[Fault::new("StartFlow", kind)]).await;
        let err = client
            .start_flow()
            .flow_name("succeeds")
            .send()
            .await
            .unwrap_err();
        let err = err.into_service_error();
        assert!(is_expected(&err), "StartFlow {kind:?}: {err:?}");
    }

    let cancel: [(FaultKind, IsVariant<CancelFlowExecutionsError>); 3] = [
        (
            FaultKind::AccessDenied,
            CancelFlowExecutionsError::is_access_denied_exception,
        ),
        (
            FaultKind::Throttling,
            CancelFlowExecutionsError::is_throttling_exception,
        ),
        (
            FaultKind::Validation,
            CancelFlowExecutionsError::is_validation_exception,
        ),
    ];
    for (kind, is_expected) in cancel {
        appflow
            .set_faults(&[Fault::new("CancelFlowExecutions", kind)])
            .await;
        let err = client
            .cancel_flow_executions()
            .flow_name("succeeds")
            .send()
            .await
            .unwrap_err();
        let err = err.into_service_error();
        assert!(is_expected(&err), "CancelFlowExecutions {kind:?}: {err:?}");
    }

    appflow
        .set_faults(&[Fault::new("StopFlow", FaultKind::Conflict)])
        .await;
    let err = client
        .stop_flow()
        .flow_name("nightly")
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_conflict_exception());

    appflow
        .set_faults(&[Fault::new("DescribeFlow", FaultKind::Internal)])
        .await;
    let err = client
        .describe_flow()
        .flow_name("succeeds")
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_internal_server_exception());

    appflow
        .set_faults(&[Fault::new(
            "DescribeFlowExecutionRecords",
            FaultKind::Validation,
        )])
        .await;
    let err = client
        .describe_flow_execution_records()
        .flow_name("succeeds")
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_validation_exception());

    appflow
        .set_faults(&[Fault::new("ListFlows", FaultKind::Internal)])
        .await;
    let err = client.list_flows().send().await.unwrap_err();
    assert!(err.into_service_error().is_internal_server_exception());

    // Faults apply before the operation: no faulted StartFlow started a run.
    assert_eq!(appflow.stats().await.executions("succeeds"), 0);
}

#[tokio::test]
async fn throttling_and_internal_errors_are_retried_and_the_third_attempt_succeeds() {
    let appflow = LocalAppFlow::start(FLOWS);
    let client = appflow.sdk_client();

    for (kind, status) in [(FaultKind::Throttling, 429), (FaultKind::Internal, 500)] {
        appflow.reset().await;
        appflow
            .set_faults(&[Fault::new("StartFlow", kind).for_flow("succeeds").times(2)])
            .await;
        let token = format!("retry-{status}");
        let started = client
            .start_flow()
            .flow_name("succeeds")
            .client_token(&token)
            .send()
            .await
            .unwrap_or_else(|err| panic!("{kind:?}: {err:?}"));
        assert!(started.execution_id().is_some());

        let attempts: Vec<_> = appflow
            .requests_for("StartFlow")
            .await
            .into_iter()
            .map(|request| (request.attempt, request.status, request.client_token))
            .collect();
        let token = Some(token);
        assert_eq!(
            attempts,
            [
                (Some(1), Some(status), token.clone()),
                (Some(2), Some(status), token.clone()),
                (Some(3), Some(200), token.clone()),
            ],
            "{kind:?}"
        );
        let stats = appflow.stats().await.token(token.as_deref().unwrap());
        assert_eq!(
            (stats.start_flow_calls, stats.executions),
            (3, 1),
            "{kind:?}"
        );
    }
}

#[tokio::test]
async fn not_found_conflict_and_quota_errors_are_attempted_once() {
    let appflow = LocalAppFlow::start(FLOWS);
    let client = appflow.sdk_client();

    for (kind, status) in [
        (FaultKind::NotFound, 404),
        (FaultKind::Conflict, 409),
        (FaultKind::Quota, 402),
    ] {
        appflow.reset().await;
        appflow.set_faults(&[Fault::new("StartFlow", kind)]).await;
        client
            .start_flow()
            .flow_name("succeeds")
            .send()
            .await
            .unwrap_err();

        let attempts: Vec<_> = appflow
            .requests_for("StartFlow")
            .await
            .into_iter()
            .map(|request| (request.attempt, request.status, request.faults))
            .collect();
        assert_eq!(attempts, [(Some(1), Some(status), vec![kind])], "{kind:?}");
    }
}

#[tokio::test]
async fn latency_fault_delays_the_answer() {
    let appflow = LocalAppFlow::start(FLOWS);
    let client = appflow.sdk_client();
    let delay = Duration::from_millis(600);
    appflow
        .set_faults(&[Fault::latency("DescribeFlow", delay).times(1)])
        .await;

    let began = Instant::now();
    client
        .describe_flow()
        .flow_name("succeeds")
        .send()
        .await
        .unwrap();
    assert!(
        began.elapsed() >= delay,
        "answered after {:?}",
        began.elapsed()
    );

    let requests = appflow.requests_for("DescribeFlow").await;
    assert_eq!(requests.len(), 1);
    assert_eq!(
        (requests[0].status, requests[0].faults.as_slice()),
        (Some(200), [FaultKind::Latency].as_slice())
    );
}

#[tokio::test]
async fn hang_fault_ends_in_an_sdk_timeout_error() {
    let appflow = LocalAppFlow::start(FLOWS);
    let client = Client::from_conf(
        appflow
            .sdk_config_builder()
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(Duration::from_millis(500))
                    .build(),
            )
            .build(),
    );
    appflow
        .set_faults(&[Fault::new("DescribeFlow", FaultKind::Hang)])
        .await;

    let began = Instant::now();
    let err = client
        .describe_flow()
        .flow_name("succeeds")
        .send()
        .await
        .unwrap_err();
    assert!(matches!(err, SdkError::TimeoutError(_)), "{err:?}");
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "gave up after {:?}",
        began.elapsed()
    );

    let held = appflow.requests_for("DescribeFlow").await;
    assert_eq!(
        (held[0].status, held[0].faults.as_slice()),
        (None, [FaultKind::Hang].as_slice())
    );
}

#[tokio::test]
async fn request_log_records_access_key_region_attempt_and_request_id() {
    let appflow = LocalAppFlow::start(FLOWS);
    let default_client = appflow.sdk_client();
    let operator_client = Client::from_conf(
        appflow
            .sdk_config_builder()
            .region(Region::new("eu-west-1"))
            .credentials_provider(Credentials::new(
                "AKIDOPERATOR",
                "secret",
                None,
                None,
                "test",
            ))
            .build(),
    );

    default_client
        .describe_flow()
        .flow_name("succeeds")
        .send()
        .await
        .unwrap();
    let started = operator_client
        .start_flow()
        .flow_name("succeeds")
        .client_token("logged-token")
        .send()
        .await
        .unwrap();
    // The ARN's region follows the request's SigV4 scope.
    assert_eq!(
        started.flow_arn(),
        Some("arn:aws:appflow:eu-west-1:123456789012:flow/succeeds")
    );

    let requests = appflow.requests().await;
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].access_key_id.as_deref(),
        Some(TEST_ACCESS_KEY_ID)
    );
    assert_eq!(requests[0].operation, "DescribeFlow");
    let start = &requests[1];
    assert_eq!(start.operation, "StartFlow");
    assert_eq!(start.access_key_id.as_deref(), Some("AKIDOPERATOR"));
    assert_eq!(start.region.as_deref(), Some("eu-west-1"));
    assert_eq!(start.flow_name.as_deref(), Some("succeeds"));
    assert_eq!(start.client_token.as_deref(), Some("logged-token"));
    assert_eq!((start.attempt, start.max_attempts), (Some(1), Some(3)));
    assert_eq!(
        (start.status, start.error_type.as_deref()),
        (Some(200), None)
    );
    assert_eq!(Some(start.request_id.as_str()), started.request_id());
    assert!(start.seq > requests[0].seq && start.time >= requests[0].time);
}

#[tokio::test]
async fn execution_records_page_newest_first_through_the_sdk_paginator() {
    let appflow = LocalAppFlow::start(FLOWS);
    let client = appflow.sdk_client();
    let mut started = Vec::new();
    for _ in 0..45 {
        started.push(start(&client, "instant").await);
    }

    let pages: Vec<_> = client
        .describe_flow_execution_records()
        .flow_name("instant")
        .into_paginator()
        .page_size(20)
        .send()
        .try_collect()
        .await
        .unwrap();

    let sizes: Vec<usize> = pages
        .iter()
        .map(|page| page.flow_executions().len())
        .collect();
    assert_eq!(sizes, [20, 20, 5]);
    let seen: Vec<&str> = pages
        .iter()
        .flat_map(|page| page.flow_executions())
        .filter_map(|record| record.execution_id())
        .collect();
    let newest_first: Vec<&str> = started.iter().rev().map(String::as_str).collect();
    assert_eq!(seen, newest_first);
}

#[tokio::test]
async fn list_flows_pages_through_every_live_flow() {
    let appflow = LocalAppFlow::start(FLOWS);
    let client = appflow.sdk_client();
    let mut expected: BTreeSet<String> = LIVE_FLOWS.iter().map(|name| name.to_string()).collect();
    for i in 0..25 {
        let name = format!("extra-{i:02}");
        appflow
            .upsert_flow(&format!("name: {name}\ntriggerType: Event"))
            .await;
        expected.insert(name);
    }

    let pages: Vec<_> = client
        .list_flows()
        .into_paginator()
        .page_size(10)
        .send()
        .try_collect()
        .await
        .unwrap();

    let sizes: Vec<usize> = pages.iter().map(|page| page.flows().len()).collect();
    assert_eq!(sizes, [10, 10, 10, 1]);
    let flows: Vec<_> = pages.iter().flat_map(|page| page.flows()).collect();
    let names: Vec<String> = flows
        .iter()
        .filter_map(|flow| flow.flow_name())
        .map(str::to_owned)
        .collect();
    assert_eq!(names.iter().cloned().collect::<BTreeSet<_>>(), expected);
    assert_eq!(names.len(), expected.len(), "each flow is listed once");
    let nightly = flows
        .iter()
        .find(|flow| flow.flow_name() == Some("nightly"))
        .unwrap();
    assert_eq!(nightly.trigger_type(), Some(&TriggerType::Scheduled));
    assert_eq!(nightly.flow_status(), Some(&FlowStatus::Suspended));
    assert_eq!(
        nightly.flow_arn(),
        Some(format!("{ARN_PREFIX}nightly").as_str())
    );
}

#[tokio::test]
async fn flow_created_after_it_was_named_can_then_be_started() {
    let appflow = LocalAppFlow::start(FLOWS);
    let client = appflow.sdk_client();

    let err = client
        .start_flow()
        .flow_name("late-flow")
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_resource_not_found_exception());

    appflow
        .upsert_flow("name: late-flow\nrunSeconds: 0\nrecordsProcessed: 3")
        .await;
    let id = start(&client, "late-flow").await;
    let record = wait_for_status(&client, "late-flow", &id, ExecutionStatus::Successful).await;
    assert_eq!(
        record
            .execution_result()
            .and_then(|result| result.records_processed()),
        Some(3)
    );

    appflow.delete_flow("late-flow").await;
    let err = client
        .describe_flow()
        .flow_name("late-flow")
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_resource_not_found_exception());
}

#[tokio::test]
async fn reset_restores_the_configured_flows_and_forgets_everything_else() {
    let appflow = LocalAppFlow::start(FLOWS);
    let client = appflow.sdk_client();
    start(&client, "instant").await;
    client
        .start_flow()
        .flow_name("nightly")
        .send()
        .await
        .unwrap();
    appflow.upsert_flow("name: extra").await;
    appflow
        .set_faults(&[Fault::new("ListFlows", FaultKind::Internal)])
        .await;

    appflow.reset().await;

    let stats = appflow.stats().await;
    assert!(stats.executions_by_flow.is_empty() && stats.client_tokens.is_empty());
    assert!(stats.calls_by_operation.values().all(|calls| *calls == 0));
    assert!(appflow.requests().await.is_empty());
    let flows = client.list_flows().send().await.expect("the fault is gone");
    let names: BTreeSet<&str> = flows
        .flows()
        .iter()
        .filter_map(|flow| flow.flow_name())
        .collect();
    assert_eq!(names, LIVE_FLOWS.into_iter().collect());
    let nightly = client
        .describe_flow()
        .flow_name("nightly")
        .send()
        .await
        .unwrap();
    assert_eq!(nightly.flow_status(), Some(&FlowStatus::Suspended));
    let records = client
        .describe_flow_execution_records()
        .flow_name("instant")
        .send()
        .await
        .unwrap();
    assert!(records.flow_executions().is_empty());
}

#[tokio::test]
async fn errors_on_the_wire_carry_model_status_error_type_header_and_request_id() {
    let appflow = LocalAppFlow::start(FLOWS);
    let http = reqwest::Client::new();
    let post = |path: &str, body: serde_json::Value| {
        http.post(format!("{}{path}", appflow.endpoint_url()))
            .json(&body)
            .send()
    };

    let missing = post(
        "/describe-flow",
        serde_json::json!({ "flowName": "missing" }),
    )
    .await
    .unwrap();
    assert_eq!(missing.status(), 404);
    let headers = missing.headers();
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-amzn-errortype"], "ResourceNotFoundException");
    assert!(!headers["x-amzn-requestid"].is_empty());
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["__type"], "ResourceNotFoundException");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|message| message.contains("missing"))
    );

    appflow
        .set_faults(&[Fault::new("StartFlow", FaultKind::Quota)])
        .await;
    let quota = post("/start-flow", serde_json::json!({ "flowName": "instant" }))
        .await
        .unwrap();
    assert_eq!(quota.status(), 402);
    assert_eq!(
        quota.headers()["x-amzn-errortype"],
        "ServiceQuotaExceededException"
    );
}

#[tokio::test]
async fn raw_calls_without_token_start_fresh_runs_and_ignore_unknown_members() {
    let appflow = LocalAppFlow::start(FLOWS);
    let http = reqwest::Client::new();
    let url = format!("{}/start-flow", appflow.endpoint_url());
    let body = serde_json::json!({ "flowName": "instant", "futureMember": { "x": 1 } });

    let mut ids = BTreeSet::new();
    for _ in 0..2 {
        let response = http.post(&url).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers().contains_key("x-amzn-requestid"));
        let started: serde_json::Value = response.json().await.unwrap();
        ids.insert(started["executionId"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 2);

    let records: serde_json::Value = http
        .post(format!(
            "{}/describe-flow-execution-records",
            appflow.endpoint_url()
        ))
        .body(r#"{"flowName":"instant"}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // restJson1 timestamps are epoch seconds as JSON numbers.
    assert!(records["flowExecutions"][0]["startedAt"].is_f64());
    assert!(records.get("nextToken").is_none());
}

#[tokio::test]
async fn bad_config_exits_with_one_clear_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("typo.yaml");
    std::fs::write(
        &config,
        "flows:\n  - name: demo\n    triggerTyp: OnDemand\n",
    )
    .unwrap();

    let output = std::process::Command::new(support::appflow_local::binary())
        .arg("--config")
        .arg(&config)
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();

    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("typo.yaml"), "{stderr}");
    assert!(stderr.contains("unknown field `triggerTyp`"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_hung_requests_and_exits_cleanly() {
    let appflow = LocalAppFlow::start(FLOWS);
    let client = Client::from_conf(
        appflow
            .sdk_config_builder()
            .retry_config(RetryConfig::disabled())
            .build(),
    );
    appflow
        .set_faults(&[Fault::new("DescribeFlow", FaultKind::Hang)])
        .await;
    let hung =
        tokio::spawn(async move { client.describe_flow().flow_name("succeeds").send().await });
    let deadline = Instant::now() + DEADLINE;
    while appflow.requests_for("DescribeFlow").await.is_empty() {
        assert!(Instant::now() < deadline, "the request never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let status = appflow.terminate();

    assert!(status.success(), "{status}");
    let answer = tokio::time::timeout(Duration::from_secs(5), hung)
        .await
        .expect("released")
        .unwrap();
    let err = answer.unwrap_err().into_service_error();
    assert!(err.is_internal_server_exception(), "{err:?}");
}
