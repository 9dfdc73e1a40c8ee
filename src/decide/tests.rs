use super::*;

const UID: &str = "6f1c2b1e-0000-4000-8000-000000000001";

fn flowrun(yaml_status: &str) -> FlowRun {
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
spec:
  flowName: salesforce-to-s3
  region: eu-west-1
status: {yaml_status}
"#
    );
    serde_yaml_ng::from_str(&yaml).expect("fixture parses")
}

fn at(rfc3339: &str) -> Timestamp {
    rfc3339.parse().expect("valid timestamp")
}

fn observed(now: &str) -> Observed {
    Observed {
        now: at(now),
        jitter: 0.5,
    }
}

fn policy() -> StartPolicy {
    StartPolicy {
        default_region: Some("us-east-1".into()),
        not_found_grace: SignedDuration::from_mins(10),
        retry_initial_delay: SignedDuration::from_secs(2),
        retry_max_delay: SignedDuration::from_mins(5),
    }
}

fn starting(start_time: &str, extra: &str) -> FlowRun {
    flowrun(&format!(
        "{{phase: Starting, clientToken: {UID}, region: eu-west-1, startTime: \"{start_time}\"{extra}}}"
    ))
}

fn condition<'a>(status: &'a FlowRunStatus, type_: &str) -> (&'a str, &'a str) {
    let condition = status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status:?}"));
    (condition.status.as_str(), condition.reason.as_str())
}

fn report(decision: Decision) -> Transition {
    match decision {
        Decision::Report(transition) => *transition,
        other => panic!("expected a status report, got {other:?}"),
    }
}

#[test]
fn new_flowrun_records_starting_with_its_uid_as_token_before_any_call() {
    let transition = report(decide(
        &flowrun("{}"),
        &observed("2026-11-25T10:00:01Z"),
        &policy(),
    ));

    let status = &transition.status;
    assert_eq!(status.phase, Some(Phase::Starting));
    assert_eq!(status.client_token.as_deref(), Some(UID));
    assert_eq!(status.region.as_deref(), Some("eu-west-1"));
    assert_eq!(status.start_time, Some(Time(at("2026-11-25T10:00:01Z"))));
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(condition(status, conditions::READY), ("False", "Starting"));
    assert_eq!(
        condition(status, conditions::RECONCILING),
        ("True", "Starting")
    );
    assert_eq!(
        condition(status, conditions::STALLED),
        ("False", "Starting")
    );
    let event = transition.event.expect("a Starting event");
    assert_eq!(
        (event.type_, event.reason),
        (EventType::Normal, Reason::Starting)
    );
}

#[test]
fn region_comes_from_the_spec_then_the_operator_default_and_is_required() {
    let mut without_region = flowrun("{}");
    without_region.spec.region = None;

    let defaulted = report(decide(
        &without_region,
        &observed("2026-11-25T10:00:01Z"),
        &policy(),
    ));
    assert_eq!(defaulted.status.region.as_deref(), Some("us-east-1"));

    let no_default = StartPolicy {
        default_region: None,
        ..policy()
    };
    let refused = report(decide(
        &without_region,
        &observed("2026-11-25T10:00:01Z"),
        &no_default,
    ));
    assert_eq!(refused.status.phase, Some(Phase::Failed));
    assert_eq!(
        condition(&refused.status, conditions::STALLED),
        ("True", "InvalidRequest")
    );
    assert!(
        refused
            .status
            .message
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
        let decision = decide(&starting(first_attempt, ""), &observed(now), &policy());
        match decision {
            Decision::StartFlow(request) => {
                assert!(start_expected, "{first_attempt} -> {now}: must not start");
                assert_eq!(
                    request,
                    StartFlowRequest {
                        region: "eu-west-1".into(),
                        flow_name: "salesforce-to-s3".into(),
                        client_token: UID.into(),
                    }
                );
            }
            Decision::Report(transition) => {
                assert!(!start_expected, "{first_attempt} -> {now}: must start");
                assert_eq!(transition.status.phase, Some(Phase::Failed));
                assert_eq!(
                    condition(&transition.status, conditions::STALLED),
                    ("True", "StartOutcomeUnknown")
                );
                assert!(
                    transition
                        .status
                        .message
                        .unwrap_or_default()
                        .contains("new FlowRun")
                );
            }
            Decision::Wait(_) => panic!("{first_attempt} -> {now}: unexpected wait"),
        }
    }
}

#[test]
fn starting_flowrun_without_start_time_measures_the_window_from_creation() {
    let flowrun = flowrun(&format!("{{phase: Starting, clientToken: {UID}}}"));

    let decision = decide(&flowrun, &observed("2026-11-25T18:00:00Z"), &policy());

    let transition = report(decision);
    assert_eq!(
        condition(&transition.status, conditions::STALLED),
        ("True", "StartOutcomeUnknown")
    );
}

#[test]
fn retry_waits_for_next_attempt_time_even_when_reconciled_early() {
    let flowrun = starting(
        "2026-11-25T10:00:00Z",
        ", startAttempts: 3, nextAttemptTime: \"2026-11-25T10:01:00Z\"",
    );

    assert_eq!(
        decide(&flowrun, &observed("2026-11-25T10:00:45Z"), &policy()),
        Decision::Wait(Some(Duration::from_secs(15)))
    );
    assert!(matches!(
        decide(&flowrun, &observed("2026-11-25T10:01:00Z"), &policy()),
        Decision::StartFlow(_)
    ));
}

#[test]
fn started_run_does_not_call_start_flow_again() {
    for phase in ["Running", "Succeeded", "Failed", "Activated"] {
        let flowrun = flowrun(&format!(
            "{{phase: {phase}, clientToken: {UID}, executionId: exec-1, startTime: \"2026-11-25T10:00:00Z\"}}"
        ));
        assert_eq!(
            decide(&flowrun, &observed("2026-11-25T10:05:00Z"), &policy()),
            Decision::Wait(None),
            "{phase}"
        );
    }
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
        &policy(),
        Ok(started),
    );

    let status = &transition.status;
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
    let event = transition.event.expect("a Running event");
    assert_eq!(
        (event.type_, event.reason),
        (EventType::Normal, Reason::Running)
    );
    assert!(event.note.contains("exec-1"));
}

#[test]
fn scheduled_flow_without_execution_id_is_activated_and_ready() {
    let started = StartedFlow {
        flow_status: Some("Active".into()),
        ..StartedFlow::default()
    };

    let transition = after_start(
        &starting("2026-11-25T10:00:00Z", ""),
        &observed("2026-11-25T10:00:02Z"),
        &policy(),
        Ok(started),
    );

    assert_eq!(transition.status.phase, Some(Phase::Activated));
    assert_eq!(transition.status.execution_id, None);
    assert_eq!(
        condition(&transition.status, conditions::READY),
        ("True", "Activated")
    );
    assert_eq!(
        condition(&transition.status, conditions::RECONCILING),
        ("False", "Activated")
    );
    assert_eq!(transition.requeue, None);
}

fn error(kind: FailureKind) -> AppFlowError {
    AppFlowError {
        kind,
        code: None,
        message: format!("{kind:?} from AppFlow"),
    }
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
            &Observed { now, jitter: 0.5 },
            &policy(),
            Err(error(kind)),
        );
        let status = &transition.status;
        let event = transition.event.as_ref().expect("every error is an event");
        assert_eq!(event.type_, EventType::Warning, "{kind:?}");
        assert_eq!(event.reason.as_str(), reason, "{kind:?}");
        assert!(
            status
                .message
                .as_deref()
                .unwrap_or_default()
                .contains(&format!("{kind:?} from AppFlow"))
        );
        if terminal {
            assert_eq!(status.phase, Some(Phase::Failed), "{kind:?}");
            assert_eq!(condition(status, conditions::STALLED), ("True", reason));
            assert_eq!(transition.requeue, None);
        } else {
            assert_eq!(status.phase, Some(Phase::Starting), "{kind:?}");
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
    let policy = policy();
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
        let delay = retry_delay(&policy, attempts, jitter).as_secs_f64();
        assert!(
            (delay - expected).abs() < 0.001,
            "attempt {attempts}, jitter {jitter}: {delay}"
        );
    }
}
