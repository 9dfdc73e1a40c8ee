use super::*;
use crate::appflow::{AssumedRole, FailureKind};
use crate::backoff::{poll_interval, retry_delay};
use crate::trim::trim_finished;
use flowrun_api::conditions;
use flowrun_api::{FlowRunStatus, OPERATOR_IDENTITY};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};

const UID: &str = "6f1c2b1e-0000-4000-8000-000000000001";

/// A FlowRun with the given extra spec lines (YAML flow style, may be empty), metadata lines
/// and status.
fn flowrun_with(spec: &str, metadata: &str, status: &str) -> FlowRun {
    let yaml = format!(
        r#"
apiVersion: appflow.flowrun.dev/v1alpha1
kind: FlowRun
metadata:
  name: nightly
  namespace: team-a
  uid: {UID}
  generation: 1
  creationTimestamp: "2026-11-25T10:00:00Z"
{metadata}
spec: {{flowName: salesforce-to-s3, region: eu-west-1{spec}}}
status: {status}
"#
    );
    serde_yaml_ng::from_str(&yaml).expect("fixture parses")
}

fn flowrun(status: &str) -> FlowRun {
    flowrun_with("", "", status)
}

fn at(rfc3339: &str) -> Timestamp {
    rfc3339.parse().expect("valid timestamp")
}

fn observed(now: &str) -> Observed {
    Observed {
        now: at(now),
        jitter: 0.5,
        policies: Vec::new(),
        unreadable_policies: Vec::new(),
        activations: Vec::new(),
    }
}

fn rules() -> Rules {
    Rules {
        default_region: Some("us-east-1".into()),
        not_found_grace: SignedDuration::from_mins(10),
        retry_initial_delay: SignedDuration::from_secs(2),
        retry_max_delay: SignedDuration::from_mins(5),
        poll_initial_interval: SignedDuration::from_secs(5),
        poll_max_interval: SignedDuration::from_mins(1),
        require_flowrun_policy: false,
        cancel_timeout: SignedDuration::from_mins(15),
    }
}

fn starting(start_time: &str, extra: &str) -> FlowRun {
    flowrun(&format!(
        "{{phase: Starting, clientToken: {UID}, region: eu-west-1, startTime: \"{start_time}\"{extra}}}"
    ))
}

const RUNNING: &str = "{phase: Running, clientToken: c, region: eu-west-1, executionId: exec-1, startTime: \"2026-11-25T10:00:00Z\"}";

fn running(spec: &str) -> FlowRun {
    flowrun_with(
        spec,
        "  finalizers: [appflow.flowrun.dev/cancel-on-delete]",
        RUNNING,
    )
}

fn condition<'a>(status: &'a FlowRunStatus, type_: &str) -> (&'a str, &'a str) {
    let condition = status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status:?}"));
    (condition.status.as_str(), condition.reason.as_str())
}

/// The write a decision (or an outcome) makes.
fn reported(decision: impl Into<Decision>) -> Transition {
    match decision.into() {
        Decision::Done(Outcome::Report(transition)) => *transition,
        other => panic!("expected a report, got {other:?}"),
    }
}

fn written(transition: &Transition) -> &FlowRunStatus {
    transition.status.as_ref().expect("a status write")
}

fn call(decision: Decision) -> AppFlowCall {
    match decision {
        Decision::Call(call) => call,
        other => panic!("expected an AppFlow call, got {other:?}"),
    }
}

fn start_answer(call: &AppFlowCall, result: Result<StartedFlow, AppFlowError>) -> Answer {
    match call {
        AppFlowCall::StartFlow(call) => Answer::Started(call.clone(), result),
        other => panic!("expected StartFlow, got {other:?}"),
    }
}

fn track_answer(
    call: &AppFlowCall,
    result: Result<Option<ExecutionRecord>, AppFlowError>,
) -> Answer {
    match call {
        AppFlowCall::Track(call) => Answer::Tracked(call.clone(), result),
        other => panic!("expected a history read, got {other:?}"),
    }
}

fn cancel_answer(call: &AppFlowCall, result: Result<Vec<String>, AppFlowError>) -> Answer {
    match call {
        AppFlowCall::Cancel(call) => Answer::Canceled(call.clone(), result),
        other => panic!("expected a cancel, got {other:?}"),
    }
}

/// The report after StartFlow returned `result`.
fn after_start(
    flowrun: &FlowRun,
    observed: &Observed,
    result: Result<StartedFlow, AppFlowError>,
) -> Transition {
    let call = call(decide(flowrun, observed, &rules()));
    assert!(matches!(call, AppFlowCall::StartFlow(_)), "{call:?}");
    reported(after(
        flowrun,
        observed,
        &rules(),
        start_answer(&call, result),
    ))
}

fn flow_key(role: Option<AssumedRole>) -> FlowKey {
    FlowKey {
        region: "eu-west-1".into(),
        flow_name: "salesforce-to-s3".into(),
        role,
    }
}

fn error(kind: FailureKind) -> AppFlowError {
    AppFlowError {
        kind,
        code: None,
        message: format!("{kind:?} from AppFlow"),
    }
}

/// The start record the operator writes for a first attempt at `time`.
fn start_record(time: &str, region: &str, identity: &str) -> StartRecord {
    StartRecord {
        time: at(time),
        region: Some(region.into()),
        identity: Some(identity.into()),
        external_id: None,
    }
}

/// A FlowRun whose start record (annotation) and finalizer are written, and no status yet.
fn recorded(record: &StartRecord, status: &str) -> FlowRun {
    let annotation = serde_json::to_string(record).expect("serializes");
    flowrun_with(
        "",
        &format!(
            "  annotations: {{appflow.flowrun.dev/start: '{annotation}'}}\n  finalizers: [appflow.flowrun.dev/cancel-on-delete]"
        ),
        status,
    )
}

#[test]
fn new_flowrun_first_records_its_start_and_the_finalizer_in_one_write_then_proceeds() {
    let transition = reported(decide(
        &flowrun("{}"),
        &observed("2026-11-25T10:00:01Z"),
        &rules(),
    ));

    assert_eq!(
        transition,
        Transition {
            start_record: Some(start_record(
                "2026-11-25T10:00:01Z",
                "eu-west-1",
                OPERATOR_IDENTITY
            )),
            finalizer: Some(FinalizerChange::Add),
            proceed: true,
            ..Transition::default()
        },
        "no status write and no event before StartFlow"
    );
}

#[test]
fn recorded_flowrun_calls_start_flow_and_its_running_status_carries_the_record() {
    let record = start_record("2026-11-25T10:00:01Z", "eu-west-1", OPERATOR_IDENTITY);
    let flowrun = recorded(&record, "{}");
    let observed = observed("2026-11-25T10:00:02Z");

    let call = call(decide(&flowrun, &observed, &rules()));
    let AppFlowCall::StartFlow(StartCall { request, .. }) = &call else {
        panic!("expected StartFlow, got {call:?}");
    };
    assert_eq!(
        *request,
        StartFlowRequest {
            flow: flow_key(None),
            client_token: UID.into(),
        }
    );
    let started = StartedFlow {
        execution_id: Some("exec-1".into()),
        ..StartedFlow::default()
    };
    let transition = reported(after(
        &flowrun,
        &observed,
        &rules(),
        start_answer(&call, Ok(started)),
    ));

    let status = written(&transition);
    assert_eq!(status.phase, Some(Phase::Running));
    assert_eq!(status.client_token.as_deref(), Some(UID));
    assert_eq!(status.region.as_deref(), Some("eu-west-1"));
    assert_eq!(status.identity.as_deref(), Some(OPERATOR_IDENTITY));
    assert_eq!(status.start_time, Some(Time(record.time)));
    assert_eq!(status.execution_status.as_deref(), Some("InProgress"));
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(transition.start_record, None, "written once, before");
    assert!(!transition.proceed);
}

#[test]
fn without_cancel_on_delete_the_start_is_recorded_without_a_finalizer() {
    let flowrun = flowrun_with(", cancelOnDelete: false", "", "{}");

    let transition = reported(decide(
        &flowrun,
        &observed("2026-11-25T10:00:01Z"),
        &rules(),
    ));

    assert!(transition.start_record.is_some());
    assert_eq!(transition.finalizer, None);
}

#[test]
fn hand_edited_start_record_or_running_status_fails_the_flowrun_without_a_call() {
    let garbage = flowrun_with(
        "",
        "  annotations: {appflow.flowrun.dev/start: 'yesterday'}",
        "{}",
    );
    let running_without_run = flowrun("{phase: Running, clientToken: c}");
    let other_region = recorded(
        &start_record("2026-11-25T10:00:00Z", "us-east-1", OPERATOR_IDENTITY),
        "{}",
    );
    for flowrun in [garbage, running_without_run, other_region] {
        let transition = reported(decide(
            &flowrun,
            &observed("2026-11-25T10:00:01Z"),
            &rules(),
        ));
        let status = written(&transition);
        assert_eq!(status.phase, Some(Phase::Failed));
        assert_eq!(
            condition(status, conditions::STALLED),
            ("True", "InvalidObject")
        );
        assert!(
            status
                .message
                .as_deref()
                .unwrap_or_default()
                .contains("create a new FlowRun"),
            "{status:?}"
        );
        assert_eq!(
            transition.event.map(|event| event.type_),
            Some(EventType::Warning)
        );
    }
}

#[test]
fn region_comes_from_the_spec_then_the_operator_default_and_is_required() {
    let mut without_region = flowrun("{}");
    without_region.spec.region = None;

    let defaulted = reported(decide(
        &without_region,
        &observed("2026-11-25T10:00:01Z"),
        &rules(),
    ));
    assert_eq!(
        defaulted.start_record.and_then(|record| record.region),
        Some("us-east-1".into())
    );

    let no_default = Rules {
        default_region: None,
        ..rules()
    };
    let refused = reported(decide(
        &without_region,
        &observed("2026-11-25T10:00:01Z"),
        &no_default,
    ));
    let status = written(&refused);
    assert_eq!(status.phase, Some(Phase::Failed));
    assert_eq!(
        condition(status, conditions::STALLED),
        ("True", "InvalidRequest")
    );
    assert!(
        status
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("spec.region")
    );
}

#[test]
fn starting_flowrun_calls_start_flow_with_its_uid_until_the_token_window_closes() {
    // (first attempt, now, start expected)
    let table = [
        ("2026-11-25T10:00:00Z", "2026-11-25T10:00:01Z", true),
        ("2026-11-25T10:00:00Z", "2026-11-25T17:29:59Z", true),
        // 8 hours less the 30-minute margin.
        ("2026-11-25T10:00:00Z", "2026-11-25T17:30:00Z", false),
        ("2026-11-25T10:00:00Z", "2026-11-26T10:00:00Z", false),
    ];
    for (first_attempt, now, start_expected) in table {
        // Recorded before the first attempt (crash before any answer), or after a failed one.
        let record = start_record(first_attempt, "eu-west-1", OPERATOR_IDENTITY);
        for flowrun in [recorded(&record, "{}"), starting(first_attempt, "")] {
            match decide(&flowrun, &observed(now), &rules()) {
                Decision::Call(AppFlowCall::StartFlow(StartCall { request, .. })) => {
                    assert!(start_expected, "{first_attempt} -> {now}: must not start");
                    assert_eq!(
                        request,
                        StartFlowRequest {
                            flow: flow_key(None),
                            client_token: UID.into(),
                        }
                    );
                }
                Decision::Done(Outcome::Report(transition)) => {
                    assert!(!start_expected, "{first_attempt} -> {now}: must start");
                    let status = written(&transition);
                    assert_eq!(status.phase, Some(Phase::Failed));
                    assert_eq!(
                        condition(status, conditions::STALLED),
                        ("True", "StartOutcomeUnknown")
                    );
                    assert!(
                        status
                            .message
                            .as_deref()
                            .unwrap_or_default()
                            .contains("new FlowRun")
                    );
                }
                other => panic!("{first_attempt} -> {now}: unexpected {other:?}"),
            }
        }
    }
}

#[test]
fn starting_flowrun_without_start_time_measures_the_window_from_creation() {
    let flowrun = flowrun(&format!("{{phase: Starting, clientToken: {UID}}}"));

    let transition = reported(decide(
        &flowrun,
        &observed("2026-11-25T18:00:00Z"),
        &rules(),
    ));

    assert_eq!(
        condition(written(&transition), conditions::STALLED),
        ("True", "StartOutcomeUnknown")
    );
}

#[test]
fn retry_waits_for_next_attempt_time_even_when_reconciled_early() {
    let flowrun = starting(
        "2026-11-25T10:00:00Z",
        ", startAttempts: 3, nextAttemptTime: \"2026-11-25T10:01:00.000000Z\"",
    );

    assert_eq!(
        decide(&flowrun, &observed("2026-11-25T10:00:45Z"), &rules()),
        Decision::Done(Outcome::Wait(Some(Duration::from_secs(15))))
    );
    assert!(matches!(
        decide(&flowrun, &observed("2026-11-25T10:01:00Z"), &rules()),
        Decision::Call(AppFlowCall::StartFlow(_))
    ));
}

#[test]
fn started_execution_moves_the_flowrun_to_running_with_the_run_details() {
    let started = StartedFlow {
        flow_arn: Some("arn:aws:appflow:eu-west-1:123456789012:flow/salesforce-to-s3".into()),
        flow_status: Some("Active".into()),
        execution_id: Some("exec-1".into()),
    };

    let transition = after_start(
        &starting("2026-11-25T10:00:00Z", ""),
        &observed("2026-11-25T10:00:02Z"),
        Ok(started),
    );

    let status = written(&transition);
    assert_eq!(status.phase, Some(Phase::Running));
    assert_eq!(status.execution_id.as_deref(), Some("exec-1"));
    assert_eq!(status.flow_status.as_deref(), Some("Active"));
    assert!(
        status
            .flow_arn
            .as_deref()
            .unwrap_or_default()
            .ends_with("flow/salesforce-to-s3")
    );
    assert_eq!(status.next_attempt_time, None);
    assert_eq!(condition(status, conditions::READY), ("False", "Running"));
    assert_eq!(
        condition(status, conditions::RECONCILING),
        ("True", "Running")
    );
    assert_eq!(
        transition.finalizer, None,
        "kept while the run is in progress"
    );
    assert_eq!(
        transition.requeue,
        Some(Duration::from_secs(5)),
        "first poll"
    );
    let event = transition.event.expect("a Running event");
    assert_eq!(
        (event.type_, event.reason),
        (EventType::Normal, Reason::Running)
    );
    assert!(event.note.contains("exec-1"));
}

#[test]
fn scheduled_flow_without_execution_id_is_activated_ready_and_releases_its_finalizer() {
    let flowrun = flowrun_with(
        "",
        "  finalizers: [appflow.flowrun.dev/cancel-on-delete]",
        &format!(
            "{{phase: Starting, clientToken: {UID}, region: eu-west-1, startTime: \"2026-11-25T10:00:00Z\"}}"
        ),
    );
    let started = StartedFlow {
        flow_status: Some("Active".into()),
        ..StartedFlow::default()
    };

    let transition = after_start(&flowrun, &observed("2026-11-25T10:00:02Z"), Ok(started));

    let status = written(&transition);
    assert_eq!(status.phase, Some(Phase::Activated));
    assert_eq!(status.execution_id, None);
    assert_eq!(condition(status, conditions::READY), ("True", "Activated"));
    assert_eq!(
        condition(status, conditions::FINISHED),
        ("True", "Activated")
    );
    assert_eq!(
        condition(status, conditions::RECONCILING),
        ("False", "Activated")
    );
    assert_eq!(transition.finalizer, Some(FinalizerChange::Remove));
    assert_eq!(transition.requeue, None);
}

#[test]
fn start_errors_are_terminal_or_retried_by_class() {
    // (error, seconds since the first attempt, terminal, reason)
    let table = [
        (FailureKind::InvalidRequest, 1, true, "InvalidRequest"),
        (FailureKind::FlowNotFound, 1, false, "FlowNotFound"),
        (FailureKind::FlowNotFound, 599, false, "FlowNotFound"),
        (FailureKind::FlowNotFound, 600, true, "FlowNotFound"),
        (FailureKind::AccessDenied, 7200, false, "AccessDenied"),
        (FailureKind::QuotaExceeded, 1, false, "QuotaExceeded"),
        (FailureKind::Conflict, 1, false, "Conflict"),
        (FailureKind::Throttled, 1, false, "Throttled"),
        (FailureKind::Unavailable, 1, false, "AppFlowUnavailable"),
    ];
    for (kind, waited, terminal, reason) in table {
        let now = at("2026-11-25T10:00:00Z") + SignedDuration::from_secs(waited);
        let transition = after_start(
            &starting("2026-11-25T10:00:00Z", ", startAttempts: 2"),
            &Observed {
                now,
                ..observed("2026-11-25T10:00:00Z")
            },
            Err(error(kind)),
        );
        let status = written(&transition);
        let event = transition.event.as_ref().expect("every error is an event");
        assert_eq!(event.type_, EventType::Warning, "{kind:?}");
        assert_eq!(event.reason.as_str(), reason, "{kind:?}");
        let expected_message = format!("{kind:?} from AppFlow");
        assert!(
            status
                .message
                .as_deref()
                .unwrap_or_default()
                .contains(&expected_message)
        );
        if terminal {
            assert_eq!(status.phase, Some(Phase::Failed), "{kind:?}");
            assert_eq!(condition(status, conditions::STALLED), ("True", reason));
            assert!(status.completion_time.is_some());
            assert_eq!(transition.requeue, None);
        } else {
            assert_eq!(status.phase, Some(Phase::Retrying), "{kind:?}");
            assert_eq!(status.start_attempts, Some(3), "{kind:?}");
            assert_eq!(condition(status, conditions::READY), ("False", reason));
            assert_eq!(condition(status, conditions::STALLED), ("False", reason));
            // Third attempt: 2 s * 2^2 = 8 s, equal jitter 0.5 -> 6 s.
            assert_eq!(
                status.next_attempt_time,
                Some(MicroTime(now + SignedDuration::from_secs(6)))
            );
            assert_eq!(transition.requeue, Some(Duration::from_secs(6)));
        }
    }
}

#[test]
fn retry_delay_doubles_up_to_the_cap_with_half_of_it_jittered() {
    let rules = rules();
    // (attempts, jitter, expected seconds)
    let table = [
        (1, 0.0, 1.0),
        (1, 0.999, 1.999),
        (2, 0.0, 2.0),
        (3, 1.0, 8.0),
        (8, 0.0, 128.0),
        (9, 0.0, 150.0),
        (9, 1.0, 300.0),
        (200, 1.0, 300.0),
    ];
    for (attempts, jitter, expected) in table {
        let delay = retry_delay(&rules, attempts, jitter).as_secs_f64();
        assert!(
            (delay - expected).abs() < 0.001,
            "attempt {attempts}, jitter {jitter}: {delay}"
        );
    }
}

#[test]
fn poll_interval_starts_short_and_grows_with_the_run_age_to_the_cap() {
    // (run age in seconds, expected interval in seconds)
    let table = [
        (0, 5),
        (10, 5),
        (20, 5),
        (40, 10),
        (120, 30),
        (240, 60),
        (86_400, 60),
    ];
    for (age, expected) in table {
        assert_eq!(
            poll_interval(&rules(), SignedDuration::from_secs(age)),
            Duration::from_secs(expected),
            "age {age} s"
        );
    }
}

#[test]
fn running_flowrun_is_tracked_by_execution_id_from_its_start() {
    let decision = decide(&running(""), &observed("2026-11-25T10:01:00Z"), &rules());

    assert_eq!(
        call(decision),
        AppFlowCall::Track(TrackCall {
            flow: flow_key(None),
            execution_id: "exec-1".into(),
            started: at("2026-11-25T10:00:00Z"),
        })
    );
}

fn tracked(
    flowrun: &FlowRun,
    now: &str,
    result: Result<Option<ExecutionRecord>, AppFlowError>,
) -> Outcome {
    let observed = observed(now);
    let call = call(decide(flowrun, &observed, &rules()));
    after(flowrun, &observed, &rules(), track_answer(&call, result))
}

fn record(status: &str) -> ExecutionRecord {
    ExecutionRecord {
        execution_id: "exec-1".into(),
        status: status.into(),
        started_at: Some(at("2026-11-25T10:00:01Z")),
        last_updated_at: Some(at("2026-11-25T10:04:00Z")),
        records_processed: Some(1200),
        bytes_processed: Some(4096),
        bytes_written: Some(2048),
        error_message: (status == "Error").then(|| "Connector returned 401".into()),
    }
}

#[test]
fn finished_runs_end_the_flowrun_with_counts_times_conditions_and_events() {
    // (execution status, phase, Ready, Stalled, reason, event type)
    let table = [
        (
            "Successful",
            Phase::Succeeded,
            "True",
            "False",
            "Succeeded",
            EventType::Normal,
        ),
        (
            "Error",
            Phase::Failed,
            "False",
            "True",
            "ExecutionFailed",
            EventType::Warning,
        ),
        (
            "Canceled",
            Phase::Canceled,
            "False",
            "True",
            "ExecutionCanceled",
            EventType::Warning,
        ),
    ];
    for (execution_status, phase, ready, stalled, reason, event_type) in table {
        let transition = reported(tracked(
            &running(""),
            "2026-11-25T10:05:00Z",
            Ok(Some(record(execution_status))),
        ));
        let status = written(&transition);
        assert_eq!(status.phase, Some(phase), "{execution_status}");
        assert_eq!(status.execution_status.as_deref(), Some(execution_status));
        assert_eq!(
            status.completion_time,
            Some(Time(at("2026-11-25T10:04:00Z")))
        );
        assert_eq!(
            (
                status.records_processed,
                status.bytes_processed,
                status.bytes_written
            ),
            (Some(1200), Some(4096), Some(2048))
        );
        assert_eq!(condition(status, conditions::READY), (ready, reason));
        assert_eq!(condition(status, conditions::STALLED), (stalled, reason));
        assert_eq!(
            condition(status, conditions::RECONCILING),
            ("False", reason)
        );
        assert_eq!(condition(status, conditions::FINISHED), ("True", reason));
        assert_eq!(
            transition.finalizer,
            Some(FinalizerChange::Remove),
            "{execution_status}"
        );
        let event = transition.event.expect("an event");
        assert_eq!((event.type_, event.reason.as_str()), (event_type, reason));
    }
    let failed = reported(tracked(
        &running(""),
        "2026-11-25T10:05:00Z",
        Ok(Some(record("Error"))),
    ));
    assert!(
        written(&failed)
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("Connector returned 401")
    );
}

#[test]
fn run_in_progress_is_polled_and_written_only_when_something_changed() {
    // Not listed yet: still starting at AppFlow.
    assert_eq!(
        tracked(&running(""), "2026-11-25T10:00:10Z", Ok(None)),
        Outcome::Wait(Some(Duration::from_secs(5)))
    );
    // First seen InProgress: recorded once, and polled again later.
    let first = reported(tracked(
        &running(""),
        "2026-11-25T10:04:00Z",
        Ok(Some(record("InProgress"))),
    ));
    assert_eq!(
        written(&first).execution_status.as_deref(),
        Some("InProgress")
    );
    assert_eq!(written(&first).phase, Some(Phase::Running));
    assert_eq!(first.requeue, Some(Duration::from_secs(60)));

    // Seen again unchanged: no write. A status newer than this operator is kept verbatim.
    let mut seen = running("");
    seen.status = first.status.clone();
    assert_eq!(
        tracked(
            &seen,
            "2026-11-25T10:04:30Z",
            Ok(Some(record("InProgress")))
        ),
        Outcome::Wait(Some(Duration::from_secs(60)))
    );
    let newer = reported(tracked(
        &seen,
        "2026-11-25T10:04:30Z",
        Ok(Some(record("Paused"))),
    ));
    assert_eq!(written(&newer).execution_status.as_deref(), Some("Paused"));
    assert_eq!(written(&newer).phase, Some(Phase::Running));
}

#[test]
fn history_read_errors_are_events_and_a_vanished_flow_fails_the_flowrun() {
    let throttled = reported(tracked(
        &running(""),
        "2026-11-25T10:00:10Z",
        Err(error(FailureKind::Throttled)),
    ));
    assert_eq!(throttled.status, None);
    assert_eq!(throttled.event.map(|e| e.reason), Some(Reason::Throttled));
    assert_eq!(throttled.requeue, Some(Duration::from_secs(5)));

    let vanished = reported(tracked(
        &running(""),
        "2026-11-25T10:00:10Z",
        Err(error(FailureKind::FlowNotFound)),
    ));
    let status = written(&vanished);
    assert_eq!(status.phase, Some(Phase::Failed));
    assert_eq!(
        condition(status, conditions::STALLED),
        ("True", "FlowNotFound")
    );
    assert_eq!(vanished.finalizer, Some(FinalizerChange::Remove));
}

fn deleting(spec: &str, status: &str, finalizer: bool) -> FlowRun {
    let finalizers = if finalizer {
        "  finalizers: [appflow.flowrun.dev/cancel-on-delete]\n"
    } else {
        ""
    };
    flowrun_with(
        spec,
        &format!("{finalizers}  deletionTimestamp: \"2026-11-25T10:02:00Z\""),
        status,
    )
}

#[test]
fn deleting_a_running_flowrun_cancels_exactly_its_execution_then_releases_it() {
    let flowrun = deleting("", RUNNING, true);
    let observed = observed("2026-11-25T10:02:01Z");

    let call = call(decide(&flowrun, &observed, &rules()));
    assert_eq!(
        call,
        AppFlowCall::Cancel(CancelCall {
            flow: flow_key(None),
            execution_id: "exec-1".into(),
            cause: CancelCause::Deleted,
        })
    );
    // Canceled, already finished, or the flow is gone: all release the FlowRun.
    for result in [
        Ok(vec![]),
        Ok(vec!["exec-1".to_owned()]),
        Err(error(FailureKind::FlowNotFound)),
    ] {
        let transition = reported(after(
            &flowrun,
            &observed,
            &rules(),
            cancel_answer(&call, result.clone()),
        ));
        assert_eq!(
            transition.finalizer,
            Some(FinalizerChange::Remove),
            "{result:?}"
        );
        assert_eq!(transition.status, None);
        assert_eq!(
            transition.event.map(|e| e.reason),
            Some(Reason::CanceledOnDelete)
        );
    }
    // Other errors keep the finalizer and retry.
    let retry = reported(after(
        &flowrun,
        &observed,
        &rules(),
        cancel_answer(&call, Err(error(FailureKind::Throttled))),
    ));
    assert_eq!(retry.finalizer, None);
    assert!(retry.requeue.is_some());
}

#[test]
fn deleting_a_flowrun_with_no_run_in_progress_makes_no_aws_call() {
    let table = [
        // Finished: the finalizer was already released; nothing to do.
        (
            deleting("", "{phase: Succeeded, executionId: exec-1}", false),
            None,
        ),
        // A finalizer left behind (e.g. a crash before its removal).
        (
            deleting("", "{phase: Succeeded, executionId: exec-1}", true),
            Some(FinalizerChange::Remove),
        ),
        // Not started yet: no start record, so StartFlow was never called.
        (deleting("", "{}", true), Some(FinalizerChange::Remove)),
        // StartFlow was refused: nothing runs.
        (
            deleting("", &refused_start("AccessDenied"), true),
            Some(FinalizerChange::Remove),
        ),
        // cancelOnDelete: false never holds a FlowRun.
        (
            deleting(", cancelOnDelete: false", RUNNING, true),
            Some(FinalizerChange::Remove),
        ),
    ];
    for (flowrun, finalizer) in table {
        match decide(&flowrun, &observed("2026-11-25T10:02:01Z"), &rules()) {
            Decision::Done(Outcome::Wait(None)) => assert_eq!(finalizer, None),
            Decision::Done(Outcome::Report(transition)) => {
                assert_eq!(transition.finalizer, finalizer);
                assert_eq!(transition.status, None);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// A FlowRun in Starting whose latest StartFlow attempt failed with `reason`.
fn refused_start(reason: &str) -> String {
    format!(
        "{{phase: Starting, clientToken: {UID}, region: eu-west-1, startTime: \"2026-11-25T10:00:00Z\", \
         conditions: [{{type: Ready, status: \"False\", reason: {reason}, message: m, \
         lastTransitionTime: \"2026-11-25T10:00:00Z\"}}]}}"
    )
}

/// Deleted at 10:02 after its start record (first attempt at 10:00, as a role) was written.
fn deleted_after_start_record() -> FlowRun {
    let record = StartRecord {
        external_id: Some("ext-7".into()),
        ..start_record(
            "2026-11-25T10:00:00Z",
            "eu-west-1",
            "arn:aws:iam::111111111111:role/sales",
        )
    };
    let mut flowrun = recorded(&record, "{}");
    flowrun.metadata.deletion_timestamp = Some(Time(at("2026-11-25T10:02:00Z")));
    flowrun
}

#[test]
fn deleting_while_start_flows_outcome_is_unknown_asks_again_with_the_token_then_cancels() {
    let observed = observed("2026-11-25T10:02:01Z");
    let sales_role = Some(AssumedRole {
        role_arn: "arn:aws:iam::111111111111:role/sales".into(),
        external_id: Some("ext-7".into()),
        session_name: "flowrun-team-a".into(),
    });
    // The first call under way or its answer unwritten (Pending with a start record), or an
    // attempt that timed out (Starting after AppFlowUnavailable).
    let table = [
        (deleted_after_start_record(), sales_role),
        (
            deleting("", &refused_start("AppFlowUnavailable"), true),
            None,
        ),
    ];
    for (flowrun, role) in table {
        let replay = call(decide(&flowrun, &observed, &rules()));
        let AppFlowCall::StartFlow(start) = &replay else {
            panic!("expected StartFlow, got {replay:?}");
        };
        assert_eq!(start.request.client_token, UID);
        assert_eq!(start.request.flow, flow_key(role));

        // The run it returns is recorded first, then canceled like any running one.
        let started = StartedFlow {
            execution_id: Some("exec-7".into()),
            ..StartedFlow::default()
        };
        let recorded = reported(after(
            &flowrun,
            &observed,
            &rules(),
            start_answer(&replay, Ok(started)),
        ));
        assert!(recorded.proceed);
        assert_eq!(recorded.finalizer, None);
        let status = written(&recorded);
        assert_eq!(status.phase, Some(Phase::Running));
        assert_eq!(status.execution_id.as_deref(), Some("exec-7"));
        assert_eq!(status.client_token.as_deref(), Some(UID));
        let mut running = flowrun.clone();
        running.status = Some(status.clone());
        let cancel = call(decide(&running, &observed, &rules()));
        assert!(
            matches!(&cancel, AppFlowCall::Cancel(c) if c.execution_id == "exec-7" && c.cause == CancelCause::Deleted),
            "{cancel:?}"
        );
    }
}

#[test]
fn deleting_after_start_flow_was_refused_releases_at_once() {
    let observed = observed("2026-11-25T10:02:01Z");
    // The latest attempt was refused: no AppFlow call at all.
    for reason in [
        "InvalidRequest",
        "FlowNotFound",
        "AccessDenied",
        "QuotaExceeded",
    ] {
        let transition = reported(decide(
            &deleting("", &refused_start(reason), true),
            &observed,
            &rules(),
        ));
        assert_eq!(
            transition,
            Transition {
                finalizer: Some(FinalizerChange::Remove),
                ..Transition::default()
            },
            "{reason}"
        );
    }
    // The replay is refused: nothing runs either.
    let flowrun = deleted_after_start_record();
    let replay = call(decide(&flowrun, &observed, &rules()));
    for kind in [
        FailureKind::InvalidRequest,
        FailureKind::FlowNotFound,
        FailureKind::AccessDenied,
        FailureKind::QuotaExceeded,
    ] {
        let transition = reported(after(
            &flowrun,
            &observed,
            &rules(),
            start_answer(&replay, Err(error(kind))),
        ));
        assert_eq!(
            transition.finalizer,
            Some(FinalizerChange::Remove),
            "{kind:?}"
        );
        assert_eq!(transition.status, None);
    }
    // A scheduled flow has no run to cancel, and the operator does not deactivate it: said.
    let activated = reported(after(
        &flowrun,
        &observed,
        &rules(),
        start_answer(&replay, Ok(StartedFlow::default())),
    ));
    assert_eq!(activated.finalizer, Some(FinalizerChange::Remove));
    let event = activated.event.expect("a warning");
    assert_eq!(
        (event.type_, event.reason),
        (EventType::Warning, Reason::RunAbandoned)
    );
    assert!(event.note.contains("StopFlow"), "{}", event.note);
}

#[test]
fn failing_stops_of_a_deleted_flowrun_back_off_until_the_cancel_timeout_then_release_with_a_warning()
 {
    let mut flowrun = deleting("", RUNNING, true);
    let mut now = at("2026-11-25T10:02:00Z");
    let give_up = at("2026-11-25T10:17:00Z");
    let mut delays = Vec::new();
    let mut attempts = 0;
    loop {
        let observed = Observed {
            now,
            ..observed("2026-11-25T10:02:00Z")
        };
        let decision = decide(&flowrun, &observed, &rules());
        let cancel = match decision {
            Decision::Call(cancel) => cancel,
            Decision::Done(Outcome::Report(transition)) => {
                assert_eq!(now, give_up, "released only at the cancel timeout");
                assert_eq!(transition.finalizer, Some(FinalizerChange::Remove));
                let event = transition.event.expect("a warning");
                assert_eq!(
                    (event.type_, event.reason),
                    (EventType::Warning, Reason::RunAbandoned)
                );
                assert!(
                    event
                        .note
                        .contains("execution exec-1 of flow salesforce-to-s3"),
                    "{}",
                    event.note
                );
                assert!(
                    event.note.contains("AccessDenied from AppFlow"),
                    "{}",
                    event.note
                );
                break;
            }
            other => panic!("unexpected {other:?}"),
        };
        let retry = reported(after(
            &flowrun,
            &observed,
            &rules(),
            cancel_answer(&cancel, Err(error(FailureKind::AccessDenied))),
        ));
        attempts += 1;
        assert_eq!(retry.finalizer, None, "held while retrying");
        let status = written(&retry).clone();
        assert_eq!(status.cancel_attempts, Some(attempts));
        assert_eq!(
            condition(&status, conditions::RECONCILING),
            ("True", "AccessDenied")
        );
        let event = retry.event.expect("a warning per failure");
        assert_eq!(
            (event.type_, event.reason),
            (EventType::Warning, Reason::AccessDenied)
        );
        assert!(
            event
                .note
                .contains("the finalizer is released at 2026-11-25T10:17:00Z"),
            "{}",
            event.note
        );
        let next = status.next_attempt_time.clone().expect("next attempt").0;
        assert!(next <= give_up, "{next}");
        delays.push(next.duration_since(now));
        flowrun.status = Some(status);
        // Nothing is tried before the next attempt is due, however often it is looked at.
        let early = Observed {
            now: now + SignedDuration::from_millis(500),
            ..observed
        };
        assert!(matches!(
            decide(&flowrun, &early, &rules()),
            Decision::Done(Outcome::Wait(Some(_)))
        ));
        now = next;
    }
    // 2 s, 4 s, 8 s ... capped at 5 min, and the last one cut short at the timeout.
    assert!(
        delays.windows(2).take(5).all(|pair| pair[1] > pair[0]),
        "{delays:?}"
    );
    assert!(
        delays
            .iter()
            .all(|delay| *delay <= SignedDuration::from_mins(5)),
        "{delays:?}"
    );
    assert!(attempts > 5 && attempts < 20, "{attempts}: {delays:?}");
}

#[test]
fn a_deleted_flowrun_past_the_token_window_is_not_asked_about_and_is_released_with_a_warning() {
    let mut flowrun = deleted_after_start_record();
    flowrun.metadata.deletion_timestamp = Some(Time(at("2026-11-25T17:40:00Z")));
    let transition = reported(decide(
        &flowrun,
        &observed("2026-11-25T17:40:01Z"),
        &rules(),
    ));
    assert_eq!(transition.finalizer, Some(FinalizerChange::Remove));
    let event = transition.event.expect("a warning");
    assert_eq!(event.reason, Reason::RunAbandoned);
    assert!(
        event.note.contains(&format!("client token {UID}")),
        "{}",
        event.note
    );
}

#[test]
fn run_past_its_deadline_is_canceled_and_the_flowrun_fails() {
    let flowrun = running(", activeDeadlineSeconds: 300");

    assert!(matches!(
        call(decide(
            &flowrun,
            &observed("2026-11-25T10:04:59Z"),
            &rules()
        )),
        AppFlowCall::Track(_)
    ));
    let observed = observed("2026-11-25T10:05:00Z");
    let call = call(decide(&flowrun, &observed, &rules()));
    assert!(
        matches!(
            call,
            AppFlowCall::Cancel(CancelCall {
                cause: CancelCause::Deadline,
                ..
            })
        ),
        "{call:?}"
    );

    let transition = reported(after(
        &flowrun,
        &observed,
        &rules(),
        cancel_answer(&call, Ok(vec![])),
    ));
    let status = written(&transition);
    assert_eq!(status.phase, Some(Phase::Failed));
    assert_eq!(
        condition(status, conditions::STALLED),
        ("True", "DeadlineExceeded")
    );
    assert!(
        status
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("activeDeadlineSeconds=300")
    );
    assert_eq!(transition.finalizer, Some(FinalizerChange::Remove));
    assert_eq!(transition.event.map(|e| e.type_), Some(EventType::Warning));
}

#[test]
fn flowrun_that_cannot_start_before_its_deadline_fails_without_another_attempt() {
    let flowrun = flowrun_with(
        ", activeDeadlineSeconds: 60",
        "",
        &format!(
            "{{phase: Starting, clientToken: {UID}, startTime: \"2026-11-25T10:00:00Z\", startAttempts: 4}}"
        ),
    );

    let transition = reported(decide(
        &flowrun,
        &observed("2026-11-25T10:01:00Z"),
        &rules(),
    ));

    assert_eq!(
        condition(written(&transition), conditions::STALLED),
        ("True", "DeadlineExceeded")
    );
}

#[test]
fn finished_flowrun_is_deleted_once_its_ttl_has_passed() {
    let finished = |spec: &str| {
        flowrun_with(
            spec,
            "",
            "{phase: Succeeded, completionTime: \"2026-11-25T10:05:00Z\"}",
        )
    };

    assert_eq!(
        decide(&finished(""), &observed("2026-11-26T10:05:00Z"), &rules()),
        Decision::Done(Outcome::Wait(None)),
        "no TTL: kept forever"
    );
    assert_eq!(
        decide(
            &finished(", ttlSecondsAfterFinished: 600"),
            &observed("2026-11-25T10:10:00Z"),
            &rules()
        ),
        Decision::Done(Outcome::Wait(Some(Duration::from_secs(300))))
    );
    let expired = reported(decide(
        &finished(", ttlSecondsAfterFinished: 600"),
        &observed("2026-11-25T10:15:00Z"),
        &rules(),
    ));
    assert!(expired.delete);
    assert_eq!(expired.event.map(|e| e.reason), Some(Reason::TtlExpired));
}

#[test]
fn the_cache_copy_of_a_finished_flowrun_decides_like_the_whole_one() {
    const FINALIZER_LINE: &str = "  finalizers: [appflow.flowrun.dev/cancel-on-delete]";
    const DELETING: &str = "  deletionTimestamp: \"2026-11-25T11:00:00Z\"\n  finalizers: [appflow.flowrun.dev/cancel-on-delete]";
    let full = |phase: &str| {
        format!(
            "{{phase: {phase}, clientToken: {UID}, region: eu-west-1, executionId: exec-1, \
             startTime: \"2026-11-25T10:00:00Z\", completionTime: \"2026-11-25T10:05:00Z\", \
             message: done, recordsProcessed: 7, conditions: [{{type: Ready, status: \"True\", \
             reason: Succeeded, message: done, lastTransitionTime: \"2026-11-25T10:05:00Z\"}}]}}"
        )
    };
    // (spec, metadata, status)
    let table = [
        ("", "", full("Succeeded")),
        ("", FINALIZER_LINE, full("Failed")),
        (", ttlSecondsAfterFinished: 600", "", full("Canceled")),
        (", ttlSecondsAfterFinished: 60", "", full("Activated")),
        ("", DELETING, full("Succeeded")),
        // No completion time (written by hand): the TTL counts from the start.
        (
            ", ttlSecondsAfterFinished: 60",
            "",
            "{phase: Failed, message: x, startTime: \"2026-11-25T10:00:00Z\"}".to_owned(),
        ),
    ];
    for (spec, metadata, status) in table {
        let whole = flowrun_with(spec, metadata, &status);
        let mut trimmed = whole.clone();
        trim_finished(&mut trimmed);
        assert_ne!(
            trimmed.status, whole.status,
            "nothing trimmed from {status}"
        );
        for now in ["2026-11-25T10:05:30Z", "2026-11-25T12:00:00Z"] {
            assert_eq!(
                decide(&trimmed, &observed(now), &rules()),
                decide(&whole, &observed(now), &rules()),
                "{spec} {metadata} {status} at {now}"
            );
        }
    }

    let running = running("");
    let mut untouched = running.clone();
    trim_finished(&mut untouched);
    assert_eq!(
        untouched.status, running.status,
        "a run in progress keeps its status"
    );
}

fn tenant_policy(name: &str, flows: &[&str], role: Option<&str>) -> Arc<FlowRunPolicy> {
    let mut policy = FlowRunPolicy::new(
        name,
        flowrun_api::FlowRunPolicySpec {
            flows: flows.iter().map(|f| f.to_string()).collect(),
            regions: vec!["eu-*".into()],
            role_arn: role.map(str::to_owned),
            external_id: role.map(|_| "ext-7".to_owned()),
        },
    );
    policy.metadata.namespace = Some("team-a".into());
    Arc::new(policy)
}

fn with_policies(now: &str, policies: Vec<Arc<FlowRunPolicy>>) -> Observed {
    Observed {
        policies,
        ..observed(now)
    }
}

#[test]
fn flowrun_not_allowed_by_a_policy_fails_before_any_aws_call() {
    let required = Rules {
        require_flowrun_policy: true,
        ..rules()
    };
    // (policies, require, expected identity or None when refused)
    let table = [
        (vec![], false, Some(OPERATOR_IDENTITY)),
        (vec![], true, None),
        (
            vec![tenant_policy("reports", &["reports-*"], None)],
            false,
            None,
        ),
        (
            vec![tenant_policy("sales", &["salesforce-*"], None)],
            true,
            Some(OPERATOR_IDENTITY),
        ),
        (
            vec![tenant_policy(
                "sales",
                &["salesforce-*"],
                Some("arn:aws:iam::111111111111:role/sales"),
            )],
            true,
            Some("arn:aws:iam::111111111111:role/sales"),
        ),
    ];
    for (policies, require, identity) in table {
        let rules = if require { required.clone() } else { rules() };
        let transition = reported(decide(
            &flowrun("{}"),
            &with_policies("2026-11-25T10:00:01Z", policies.clone()),
            &rules,
        ));
        match identity {
            Some(identity) => {
                let record = transition.start_record.expect("a start record");
                assert_eq!(record.identity.as_deref(), Some(identity), "{policies:?}");
            }
            None => {
                let status = written(&transition);
                assert_eq!(status.phase, Some(Phase::Failed), "{policies:?}");
                assert_eq!(
                    condition(status, conditions::STALLED),
                    ("True", "NotPermitted")
                );
                assert!(
                    status
                        .message
                        .as_deref()
                        .unwrap_or_default()
                        .contains("FlowRunPolicy")
                );
                assert_eq!(
                    transition.finalizer, None,
                    "never started, nothing to cancel"
                );
                assert_eq!(transition.start_record, None);
            }
        }
    }
}

#[test]
fn every_attempt_is_checked_against_the_policies_and_never_changes_identity() {
    const ROLE: &str = "arn:aws:iam::111111111111:role/sales";
    let record = start_record("2026-11-25T10:00:01Z", "eu-west-1", ROLE);
    let sales = vec![tenant_policy("sales", &["*"], Some(ROLE))];

    let call = call(decide(
        &recorded(&record, "{}"),
        &with_policies("2026-11-25T10:00:02Z", sales),
        &rules(),
    ));
    let AppFlowCall::StartFlow(StartCall { request, status }) = call else {
        panic!("expected StartFlow, got {call:?}");
    };
    assert_eq!(
        request.flow,
        flow_key(Some(AssumedRole {
            role_arn: ROLE.into(),
            external_id: Some("ext-7".into()),
            session_name: "flowrun-team-a".into(),
        }))
    );
    assert_eq!(status.policy.as_deref(), Some("sales"));
    assert_eq!(status.external_id.as_deref(), Some("ext-7"));

    // (policies now, reason the FlowRun fails with)
    let table = [
        // Gone, and the operator requires none: the operator's own identity, not the role.
        (vec![], "NotPermitted"),
        (
            vec![tenant_policy(
                "sales",
                &["*"],
                Some("arn:aws:iam::222222222222:role/x"),
            )],
            "NotPermitted",
        ),
    ];
    for (policies, reason) in table {
        let transition = reported(decide(
            &recorded(&record, "{}"),
            &with_policies("2026-11-25T10:00:02Z", policies.clone()),
            &rules(),
        ));
        let status = written(&transition);
        assert_eq!(status.phase, Some(Phase::Failed), "{policies:?}");
        assert_eq!(condition(status, conditions::STALLED), ("True", reason));
        assert!(
            status.message.as_deref().unwrap_or_default().contains(ROLE),
            "{status:?}"
        );
    }
}

#[test]
fn a_namespace_with_an_unreadable_policy_starts_nothing_until_it_is_fixed() {
    let unreadable = Observed {
        unreadable_policies: vec![UnreadablePolicy {
            name: "sales".into(),
            error: "spec.flows: invalid type: string, expected a sequence".into(),
        }],
        ..with_policies(
            "2026-11-25T10:00:02Z",
            vec![tenant_policy("ops", &["*"], None)],
        )
    };
    let record = start_record("2026-11-25T10:00:01Z", "eu-west-1", OPERATOR_IDENTITY);
    // New, recorded (first call due), and retrying: none is started, with or without
    // --require-policy, and none fails for good.
    for require_flowrun_policy in [false, true] {
        let rules = Rules {
            require_flowrun_policy,
            ..rules()
        };
        for flowrun in [
            flowrun("{}"),
            recorded(&record, "{}"),
            starting("2026-11-25T10:00:01Z", ", startAttempts: 1"),
        ] {
            let waiting = reported(decide(&flowrun, &unreadable, &rules));
            assert_eq!(waiting.start_record, None, "nothing recorded");
            assert_eq!(waiting.finalizer, None);
            let status = written(&waiting);
            assert_eq!(status.phase, Some(flowrun.phase()), "not failed");
            assert_eq!(
                condition(status, conditions::RECONCILING),
                ("True", "NotPermitted")
            );
            let message = status.message.clone().unwrap_or_default();
            assert!(
                message.contains("FlowRunPolicy sales (spec.flows: invalid type")
                    && message.contains("namespace team-a"),
                "{message}"
            );
            let event = waiting.event.clone().expect("a warning");
            assert_eq!(
                (event.type_, event.reason),
                (EventType::Warning, Reason::NotPermitted)
            );

            // Looked at again while the policy is still unreadable: no write, no call; a change
            // to a policy of the namespace brings it back.
            let mut written = flowrun.clone();
            written.status = Some(status.clone());
            assert_eq!(
                decide(&written, &unreadable, &rules),
                Decision::Done(Outcome::Wait(None))
            );
            // Fixed: it goes on as if nothing had happened.
            let fixed = with_policies(
                "2026-11-25T10:00:03Z",
                vec![tenant_policy("ops", &["*"], None)],
            );
            assert!(
                !matches!(
                    decide(&written, &fixed, &rules),
                    Decision::Done(Outcome::Wait(None))
                ),
                "{:?}",
                written.status
            );
        }
    }
}

/// The write that ends a FlowRun past its deadline (the cancel went through).
fn canceled_at_deadline() -> Transition {
    let flowrun = running(", activeDeadlineSeconds: 300");
    let observed = observed("2026-11-25T10:05:00Z");
    let call = call(decide(&flowrun, &observed, &rules()));
    reported(after(
        &flowrun,
        &observed,
        &rules(),
        cancel_answer(&call, Ok(vec![])),
    ))
}

#[test]
fn finished_is_true_with_a_completion_time_on_every_final_phase_and_false_before() {
    let start = || starting("2026-11-25T10:00:00Z", "");
    let now = || observed("2026-11-25T10:00:02Z");
    let track = |execution_status| {
        reported(tracked(
            &running(""),
            "2026-11-25T10:05:00Z",
            Ok(Some(record(execution_status))),
        ))
    };
    let started = |execution_id: Option<&str>| StartedFlow {
        execution_id: execution_id.map(Into::into),
        ..StartedFlow::default()
    };
    // (case, the write, phase, Finished, its reason)
    let table = [
        (
            "started",
            after_start(&start(), &now(), Ok(started(Some("exec-1")))),
            Phase::Running,
            "False",
            "Running",
        ),
        (
            "retried",
            after_start(&start(), &now(), Err(error(FailureKind::Throttled))),
            Phase::Retrying,
            "False",
            "Throttled",
        ),
        (
            "activated",
            after_start(&start(), &now(), Ok(started(None))),
            Phase::Activated,
            "True",
            "Activated",
        ),
        (
            "refused",
            after_start(&start(), &now(), Err(error(FailureKind::InvalidRequest))),
            Phase::Failed,
            "True",
            "InvalidRequest",
        ),
        (
            "succeeded",
            track("Successful"),
            Phase::Succeeded,
            "True",
            "Succeeded",
        ),
        (
            "failed",
            track("Error"),
            Phase::Failed,
            "True",
            "ExecutionFailed",
        ),
        (
            "canceled",
            track("Canceled"),
            Phase::Canceled,
            "True",
            "ExecutionCanceled",
        ),
        (
            "past the deadline",
            canceled_at_deadline(),
            Phase::Failed,
            "True",
            "DeadlineExceeded",
        ),
    ];
    for (case, transition, phase, finished, reason) in table {
        let status = written(&transition);
        assert_eq!(status.phase, Some(phase), "{case}");
        assert_eq!(
            condition(status, conditions::FINISHED),
            (finished, reason),
            "{case}"
        );
        assert_eq!(
            status.completion_time.is_some(),
            phase.is_final(),
            "{case}: completionTime on final phases only"
        );
    }
}

const DEACTIVATE: &str = ", deactivateOnDelete: true";
const ACTIVATED: &str = "{phase: Activated, clientToken: c, region: eu-west-1, identity: operator default, startTime: \"2026-11-25T10:00:00Z\", completionTime: \"2026-11-25T10:00:01Z\", flowStatus: Active}";

#[test]
fn with_deactivate_on_delete_the_finalizer_is_added_first_and_kept_once_activated() {
    // Added with the start record, even without cancelOnDelete.
    let fresh = flowrun_with(
        ", cancelOnDelete: false, deactivateOnDelete: true",
        "",
        "{}",
    );
    let recorded = reported(decide(&fresh, &observed("2026-11-25T10:00:01Z"), &rules()));
    assert_eq!(recorded.finalizer, Some(FinalizerChange::Add));

    // Activated: kept, since its deletion has a flow to deactivate.
    let starting = flowrun_with(
        DEACTIVATE,
        "  finalizers: [appflow.flowrun.dev/cancel-on-delete]",
        &format!(
            "{{phase: Starting, clientToken: {UID}, region: eu-west-1, startTime: \"2026-11-25T10:00:00Z\"}}"
        ),
    );
    let activated = after_start(
        &starting,
        &observed("2026-11-25T10:00:02Z"),
        Ok(StartedFlow::default()),
    );
    assert_eq!(written(&activated).phase, Some(Phase::Activated));
    assert_eq!(activated.finalizer, None, "kept");

    // And not dropped later as a leftover of a crash.
    let kept = flowrun_with(
        DEACTIVATE,
        "  finalizers: [appflow.flowrun.dev/cancel-on-delete]",
        ACTIVATED,
    );
    assert_eq!(
        decide(&kept, &observed("2026-11-25T11:00:00Z"), &rules()),
        Decision::Done(Outcome::Wait(None))
    );

    // A run of an on-demand flow still lets go of it when it finishes.
    let running = flowrun_with(
        DEACTIVATE,
        "  finalizers: [appflow.flowrun.dev/cancel-on-delete]",
        RUNNING,
    );
    let observed = observed("2026-11-25T10:01:00Z");
    let track = call(decide(&running, &observed, &rules()));
    let done = reported(after(
        &running,
        &observed,
        &rules(),
        track_answer(&track, Ok(Some(record("Successful")))),
    ));
    assert_eq!(done.finalizer, Some(FinalizerChange::Remove));
}

/// Another Activated FlowRun: `extra` replaces fields of the default (same flow, region and
/// identity, in namespace team-b).
fn other_activation(metadata: &str, status: &str) -> FlowRun {
    let yaml = format!(
        r#"
apiVersion: appflow.flowrun.dev/v1alpha1
kind: FlowRun
metadata:
  name: keep-on
  namespace: team-b
  uid: 6f1c2b1e-0000-4000-8000-000000000002
{metadata}
spec: {{flowName: salesforce-to-s3, region: eu-west-1}}
status: {status}
"#
    );
    serde_yaml_ng::from_str(&yaml).expect("fixture parses")
}

#[test]
fn deleting_an_activated_flowrun_deactivates_its_flow_unless_another_activation_keeps_it() {
    let flowrun = deleting(DEACTIVATE, ACTIVATED, true);
    let stop = AppFlowCall::Stop(StopCall {
        flow: flow_key(None),
    });
    let as_role = ACTIVATED.replace("operator default", "arn:aws:iam::111111111111:role/sales");
    let in_us = ACTIVATED.replace("eu-west-1", "us-east-1");
    let failed = ACTIVATED.replace("Activated", "Failed");
    let mut itself = flowrun.clone();
    itself.metadata.deletion_timestamp = None;
    // (the other FlowRuns the cache holds, deactivated?)
    let table = [
        (vec![], true),
        (vec![other_activation("", &in_us)], true),
        (vec![other_activation("", &as_role)], true),
        (vec![other_activation("", &failed)], true),
        // Being deleted too: it does not keep the flow active.
        (
            vec![other_activation(
                "  deletionTimestamp: \"2026-11-25T10:02:00Z\"\n  finalizers: [x]",
                ACTIVATED,
            )],
            true,
        ),
        // The FlowRun itself, in an older cache copy.
        (vec![itself], true),
        (vec![other_activation("", ACTIVATED)], false),
        // The region from the operator's default, like the FlowRun's own.
        (
            vec![other_activation(
                "",
                "{phase: Activated, region: eu-west-1}",
            )],
            false,
        ),
    ];
    for (activations, deactivated) in table {
        let observed = Observed {
            activations: activations.clone(),
            ..observed("2026-11-25T10:02:01Z")
        };
        let decision = decide(&flowrun, &observed, &rules());
        if deactivated {
            assert_eq!(call(decision), stop, "{activations:?}");
            continue;
        }
        let kept = reported(decision);
        assert_eq!(kept.finalizer, Some(FinalizerChange::Remove));
        assert_eq!(kept.status, None);
        let event = kept.event.expect("an event says why");
        assert_eq!(
            (event.type_, event.reason),
            (EventType::Normal, Reason::DeactivationSkipped)
        );
        assert!(
            event.note.contains("FlowRun team-b/keep-on"),
            "{}",
            event.note
        );
    }

    // Without deactivateOnDelete, an Activated FlowRun is just let go.
    let plain = deleting("", ACTIVATED, true);
    assert_eq!(
        reported(decide(&plain, &observed("2026-11-25T10:02:01Z"), &rules())),
        Transition {
            finalizer: Some(FinalizerChange::Remove),
            ..Transition::default()
        }
    );
}

fn stop_answer(call: &AppFlowCall, result: Result<StoppedFlow, AppFlowError>) -> Answer {
    match call {
        AppFlowCall::Stop(call) => Answer::Stopped(call.clone(), result),
        other => panic!("expected StopFlow, got {other:?}"),
    }
}

#[test]
fn stop_flow_answers_release_the_flowrun_or_are_retried_until_the_cancel_timeout() {
    let flowrun = deleting(DEACTIVATE, ACTIVATED, true);
    let observed_at = observed;
    let observed = observed("2026-11-25T10:02:01Z");
    let stop = call(decide(&flowrun, &observed, &rules()));
    let with_code = |kind, code: &str| AppFlowError {
        code: Some(code.into()),
        ..error(kind)
    };
    // Stopped, already gone, on demand now, or refused: released at once.
    let table = [
        (
            Ok(StoppedFlow {
                flow_status: Some("Suspended".into()),
            }),
            EventType::Normal,
            Reason::Deactivated,
            "its status is now Suspended",
        ),
        (
            Err(error(FailureKind::FlowNotFound)),
            EventType::Normal,
            Reason::Deactivated,
            "no longer exists",
        ),
        (
            Err(with_code(
                FailureKind::InvalidRequest,
                "UnsupportedOperationException",
            )),
            EventType::Normal,
            Reason::DeactivationSkipped,
            "runs on demand now",
        ),
        (
            Err(with_code(
                FailureKind::InvalidRequest,
                "ValidationException",
            )),
            EventType::Warning,
            Reason::RunAbandoned,
            "may still be active: StopFlow was refused",
        ),
    ];
    for (result, type_, reason, note) in table {
        let transition = reported(after(
            &flowrun,
            &observed,
            &rules(),
            stop_answer(&stop, result.clone()),
        ));
        assert_eq!(
            transition.finalizer,
            Some(FinalizerChange::Remove),
            "{result:?}"
        );
        assert_eq!(transition.status, None);
        let event = transition.event.expect("an event");
        assert_eq!((event.type_, event.reason), (type_, reason), "{result:?}");
        assert!(event.note.contains(note), "{}", event.note);
    }

    // Throttled: held, counted, retried with backoff; past the cancel timeout released with a
    // warning that the flow may still be active.
    let retry = reported(after(
        &flowrun,
        &observed,
        &rules(),
        stop_answer(&stop, Err(error(FailureKind::Throttled))),
    ));
    assert_eq!(retry.finalizer, None);
    let status = written(&retry).clone();
    assert_eq!(status.cancel_attempts, Some(1));
    assert_eq!(status.phase, Some(Phase::Activated));
    assert_eq!(retry.event.map(|e| e.reason), Some(Reason::Throttled));
    let mut retried = flowrun.clone();
    retried.status = Some(status);
    let late = reported(decide(
        &retried,
        &observed_at("2026-11-25T10:17:00Z"),
        &rules(),
    ));
    assert_eq!(late.finalizer, Some(FinalizerChange::Remove));
    let event = late.event.expect("a warning");
    assert_eq!(event.reason, Reason::RunAbandoned);
    assert!(
        event
            .note
            .contains("flow salesforce-to-s3, which it activated"),
        "{}",
        event.note
    );
}

#[test]
fn deleted_while_start_flows_outcome_is_unknown_an_activation_is_recorded_then_deactivated() {
    let mut flowrun = deleted_after_start_record();
    flowrun.spec.deactivate_on_delete = true;
    let observed = observed("2026-11-25T10:02:01Z");
    let replay = call(decide(&flowrun, &observed, &rules()));
    let recorded = reported(after(
        &flowrun,
        &observed,
        &rules(),
        start_answer(&replay, Ok(StartedFlow::default())),
    ));
    assert!(recorded.proceed);
    assert_eq!(recorded.finalizer, None, "kept to deactivate");
    let status = written(&recorded);
    assert_eq!(status.phase, Some(Phase::Activated));
    let mut activated = flowrun.clone();
    activated.status = Some(status.clone());
    let stop = call(decide(&activated, &observed, &rules()));
    assert!(matches!(stop, AppFlowCall::Stop(_)), "{stop:?}");

    // With only deactivateOnDelete, a run the replay finds is not the operator's to cancel.
    let mut only_deactivate = deleted_after_start_record();
    only_deactivate.spec.deactivate_on_delete = true;
    only_deactivate.spec.cancel_on_delete = false;
    let replay = call(decide(&only_deactivate, &observed, &rules()));
    let started = StartedFlow {
        execution_id: Some("exec-7".into()),
        ..StartedFlow::default()
    };
    assert_eq!(
        reported(after(
            &only_deactivate,
            &observed,
            &rules(),
            start_answer(&replay, Ok(started)),
        )),
        Transition {
            finalizer: Some(FinalizerChange::Remove),
            ..Transition::default()
        }
    );
}

#[test]
fn the_cache_keeps_what_deactivation_reads_of_activated_flowruns() {
    let plain = flowrun_with("", "", ACTIVATED);
    let mut trimmed = plain.clone();
    trim_finished(&mut trimmed);
    let status = trimmed.status.expect("status");
    assert_eq!(status.region.as_deref(), Some("eu-west-1"));
    assert_eq!(status.identity.as_deref(), Some(OPERATOR_IDENTITY));
    assert_eq!(status.flow_status, None, "the rest is trimmed");

    let deactivating = flowrun_with(
        DEACTIVATE,
        "  finalizers: [appflow.flowrun.dev/cancel-on-delete]",
        ACTIVATED,
    );
    let mut untouched = deactivating.clone();
    trim_finished(&mut untouched);
    assert_eq!(untouched.status, deactivating.status);
}
