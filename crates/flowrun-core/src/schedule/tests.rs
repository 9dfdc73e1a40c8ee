use super::*;
use flowrun_api::FlowRunSchedule;
use jiff::civil::date;
use jiff::tz::TimeZone;

/// A zone's wall clock time as an instant; the earlier one when it happens twice.
fn at(zone: &str, y: i16, mo: i8, d: i8, h: i8, mi: i8) -> Timestamp {
    let tz = bundled(zone);
    tz.to_ambiguous_zoned(date(y, mo, d).at(h, mi, 0, 0))
        .earlier()
        .expect("a valid time")
        .timestamp()
}

fn bundled(zone: &str) -> TimeZone {
    jiff::tz::TimeZoneDatabase::bundled()
        .get(zone)
        .expect("a bundled zone")
}

fn utc(text: &str) -> Timestamp {
    text.parse().expect("a timestamp")
}

fn schedule_of(yaml_spec: &str) -> FlowRunSchedule {
    let yaml = format!(
        "apiVersion: appflow.flowrun.dev/v1alpha1\nkind: FlowRunSchedule\nmetadata:\n  \
         name: nightly\n  namespace: team-a\n  uid: sched-uid\n  generation: 1\n  \
         creationTimestamp: '2026-01-01T00:00:00Z'\nspec:\n  flowRunTemplate:\n    spec:\n      \
         flowName: sales\n{yaml_spec}"
    );
    serde_yaml_ng::from_str(&yaml).expect("a FlowRunSchedule")
}

fn handled_until(mut schedule: FlowRunSchedule, time: &str) -> FlowRunSchedule {
    schedule.status = Some(FlowRunScheduleStatus {
        slots_handled_until: Some(Time(utc(time))),
        observed_generation: Some(1),
        ..FlowRunScheduleStatus::default()
    });
    schedule
}

fn observed(now: &str, children: Vec<Child>) -> ScheduleObserved {
    ScheduleObserved {
        now: utc(now),
        children,
        shard_keys: vec![],
    }
}

fn child(name: &str, phase: Phase, created: &str) -> Child {
    Child {
        name: name.to_owned(),
        uid: Some(format!("{name}-uid")),
        phase,
        created: Some(utc(created)),
        finished: phase.is_final().then(|| utc(created)),
        deleting: false,
    }
}

fn created_names(decision: &ScheduleDecision) -> Vec<String> {
    decision.create.iter().map(|f| f.name_any()).collect()
}

fn reasons(decision: &ScheduleDecision) -> Vec<&'static str> {
    decision.events.iter().map(|e| e.reason.as_str()).collect()
}

#[test]
fn slots_follow_the_zone_and_the_calendar() {
    // (schedule, zone, after, expected next slot)
    let table: &[(&str, &str, Timestamp, Timestamp)] = &[
        // Spring forward in Berlin, 2026-03-29 02:00 -> 03:00: 02:30 runs once, at 03:00 CEST.
        (
            "30 2 * * *",
            "Europe/Berlin",
            at("Europe/Berlin", 2026, 3, 28, 12, 0),
            utc("2026-03-29T01:00:00Z"),
        ),
        // The day after, 02:30 exists again.
        (
            "30 2 * * *",
            "Europe/Berlin",
            utc("2026-03-29T01:00:00Z"),
            utc("2026-03-30T00:30:00Z"),
        ),
        // Fall back in Berlin, 2026-10-25 03:00 -> 02:00: 02:30 happens twice, runs once.
        (
            "30 2 * * *",
            "Europe/Berlin",
            at("Europe/Berlin", 2026, 10, 24, 12, 0),
            utc("2026-10-25T00:30:00Z"),
        ),
        (
            "30 2 * * *",
            "Europe/Berlin",
            utc("2026-10-25T00:30:00Z"),
            utc("2026-10-26T01:30:00Z"),
        ),
        // A day that short months lack: April is skipped.
        (
            "0 0 31 * *",
            "UTC",
            utc("2026-03-31T00:00:00Z"),
            utc("2026-05-31T00:00:00Z"),
        ),
        // 29 February: the next leap year.
        (
            "0 0 29 2 *",
            "UTC",
            utc("2026-01-01T00:00:00Z"),
            utc("2028-02-29T00:00:00Z"),
        ),
        // Macros.
        (
            "@daily",
            "America/New_York",
            utc("2026-06-01T12:00:00Z"),
            utc("2026-06-02T04:00:00Z"),
        ),
        (
            "@hourly",
            "UTC",
            utc("2026-06-01T12:00:00Z"),
            utc("2026-06-01T13:00:00Z"),
        ),
        (
            "@weekly",
            "UTC",
            utc("2026-06-01T12:00:00Z"),
            utc("2026-06-07T00:00:00Z"),
        ),
        (
            "@monthly",
            "UTC",
            utc("2026-06-01T12:00:00Z"),
            utc("2026-07-01T00:00:00Z"),
        ),
        (
            "@yearly",
            "UTC",
            utc("2026-06-01T12:00:00Z"),
            utc("2027-01-01T00:00:00Z"),
        ),
        // Steps follow real time through the repeated hour: both 02:15s run.
        (
            "15 * * * *",
            "Europe/Berlin",
            utc("2026-10-25T00:15:00Z"),
            utc("2026-10-25T01:15:00Z"),
        ),
    ];
    for (cron, zone, after, expected) in table {
        let slots = Slots::parse(cron, zone).expect("valid");
        assert_eq!(
            slots.next_after(*after),
            Some(*expected),
            "{cron} in {zone} after {after}"
        );
        // Searching backwards from the slot finds the same slot: what a late reconcile runs.
        assert_eq!(
            slots.latest_at_or_before(*expected + SignedDuration::from_secs(59)),
            Some(*expected),
            "{cron} in {zone} back from {expected}"
        );
    }
}

#[test]
fn the_repeated_hour_runs_a_fixed_slot_once_even_looking_back_from_its_second_pass() {
    let slots = Slots::parse("30 2 * * *", "Europe/Berlin").expect("valid");
    // 02:40 CET, after the second 02:30: the slot of the day is still the first 02:30.
    let second_pass = utc("2026-10-25T01:40:00Z");
    assert_eq!(
        slots.latest_at_or_before(second_pass),
        Some(utc("2026-10-25T00:30:00Z"))
    );
}

#[test]
fn bad_schedules_and_zones_name_the_field() {
    let table = [
        ("* * * *", "UTC", "spec.schedule", "4 fields"),
        ("0 0 * * * *", "UTC", "spec.schedule", "6 fields"),
        ("61 * * * *", "UTC", "spec.schedule", "61"),
        ("@reboot", "UTC", "spec.schedule", "@reboot"),
        ("0 0 30 2 *", "UTC", "spec.schedule", "never fires"),
        (
            "0 2 * * *",
            "Mars/Olympus_Mons",
            "spec.timeZone",
            "Mars/Olympus_Mons",
        ),
    ];
    for (cron, zone, field, says) in table {
        let error = Slots::parse(cron, zone).expect_err(cron);
        assert_eq!(error.field(), field, "{cron}");
        let message = error.to_string();
        assert!(message.starts_with(field), "{message}");
        assert!(message.contains(says), "{cron}: {message}");
    }
}

#[test]
fn counting_missed_slots_is_capped() {
    let slots = Slots::parse("* * * * *", "UTC").expect("valid");
    let from = utc("2026-01-01T00:00:00Z");
    assert_eq!(slots.count_between(from, utc("2026-01-01T00:05:00Z")), 4);
    assert_eq!(
        slots.count_between(from, utc("2026-03-01T00:00:00Z")),
        MISSED_COUNT_LIMIT
    );
}

#[test]
fn a_shards_schedule_gives_its_flowruns_its_own_shard_labels() {
    let mut schedule = handled_until(
        schedule_of("  schedule: '*/5 * * * *'\n"),
        "2026-06-01T10:00:00Z",
    );
    schedule.spec.flow_run_template.metadata = Some(flowrun_api::schedule::TemplateMetadata {
        labels: [("team", "b"), ("app", "crm")]
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .into(),
        annotations: BTreeMap::new(),
    });
    schedule
        .annotations_mut()
        .insert(RUN_NOW_ANNOTATION.to_owned(), "now-1".to_owned());
    let at = |labels: &[(&str, &str)], shard_keys: &[&str]| {
        let mut schedule = schedule.clone();
        *schedule.labels_mut() = labels
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        let mut observed = observed("2026-06-01T10:05:00Z", vec![]);
        observed.shard_keys = shard_keys.iter().map(|key| (*key).to_owned()).collect();
        let decision = decide(&schedule, &observed);
        assert_eq!(decision.create.len(), 2, "a slot and a run-now");
        decision
            .create
            .iter()
            .map(|flowrun| {
                let labels = flowrun.labels();
                (labels.get("team").cloned(), labels["app"].clone())
            })
            .collect::<Vec<_>>()
    };
    let team = |value: Option<&str>| vec![(value.map(str::to_owned), "crm".to_owned()); 2];
    // The schedule's value of the shard key wins over the template's.
    assert_eq!(at(&[("team", "a")], &["team"]), team(Some("a")));
    // A catch-all schedule (no shard label) makes FlowRuns without one.
    assert_eq!(at(&[], &["team"]), team(None));
    // Not sharded: the template as written.
    assert_eq!(at(&[("team", "a")], &[]), team(Some("b")));
}

#[test]
fn a_due_slot_creates_its_flowrun_owned_by_the_schedule_and_waits_for_the_next() {
    let schedule = handled_until(
        schedule_of("  schedule: '*/5 * * * *'\n"),
        "2026-06-01T10:00:00Z",
    );
    let decision = decide(&schedule, &observed("2026-06-01T10:05:00.300Z", vec![]));

    let slot = utc("2026-06-01T10:05:00Z");
    assert_eq!(
        created_names(&decision),
        [slot_run_name("nightly", slot.as_second())]
    );
    let flowrun = &decision.create[0];
    let owner = &flowrun.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
        ("FlowRunSchedule", "nightly", "sched-uid")
    );
    assert_eq!(owner.controller, Some(true));
    assert_eq!(flowrun.labels()[SCHEDULE_LABEL], "nightly");
    assert_eq!(
        flowrun.annotations()[SLOT_ANNOTATION],
        "2026-06-01T10:05:00Z"
    );
    assert_eq!(flowrun.namespace().as_deref(), Some("team-a"));
    assert_eq!(flowrun.spec.flow_name, "sales");

    let status = &decision.status;
    assert_eq!(status.last_schedule_time, Some(Time(slot)));
    assert_eq!(status.slots_handled_until, Some(Time(slot)));
    assert_eq!(
        status.next_schedule_time,
        Some(Time(utc("2026-06-01T10:10:00Z")))
    );
    assert_eq!(status.active.len(), 1);
    assert_eq!(decision.requeue, Some(Duration::from_millis(299_700)));
    assert_eq!(reasons(&decision), ["RunCreated"]);
    assert_eq!(
        decision.slots,
        SlotCounts {
            started: 1,
            ..SlotCounts::default()
        }
    );
}

#[test]
fn nothing_is_due_before_the_first_slot_after_creation() {
    let schedule = schedule_of("  schedule: '0 * * * *'\n");
    // Created at 00:00:00: that very slot is not run, the next one is.
    let decision = decide(&schedule, &observed("2026-01-01T00:30:00Z", vec![]));
    assert!(decision.create.is_empty());
    assert_eq!(decision.requeue, Some(Duration::from_secs(1800)));
    let decision = decide(&schedule, &observed("2026-01-01T01:00:00Z", vec![]));
    assert_eq!(created_names(&decision), ["nightly-29453820"]);
}

#[test]
fn a_slot_whose_flowrun_exists_is_done_and_not_replaced() {
    let mut schedule = handled_until(
        schedule_of("  schedule: '* * * * *'\n  concurrencyPolicy: Replace\n"),
        "2026-06-01T10:00:00Z",
    );
    schedule.spec.concurrency_policy = ConcurrencyPolicy::Replace;
    let name = slot_run_name("nightly", utc("2026-06-01T10:01:00Z").as_second());
    let decision = decide(
        &schedule,
        &observed(
            "2026-06-01T10:01:01Z",
            vec![child(&name, Phase::Running, "2026-06-01T10:01:00Z")],
        ),
    );
    assert!(decision.create.is_empty());
    assert!(decision.replace.is_empty());
    assert_eq!(
        decision.status.last_schedule_time,
        Some(Time(utc("2026-06-01T10:01:00Z")))
    );
}

#[test]
fn concurrency_policies_decide_what_an_active_run_means() {
    let running = || vec![child("nightly-old", Phase::Running, "2026-06-01T09:00:00Z")];
    // (policy, creates, replaces, skipped)
    let table = [
        ("Forbid", 0, 0, Some(1)),
        ("Allow", 1, 0, None),
        ("Replace", 1, 1, None),
    ];
    for (policy, creates, replaces, skipped) in table {
        let schedule = handled_until(
            schedule_of(&format!(
                "  schedule: '0 * * * *'\n  concurrencyPolicy: {policy}\n"
            )),
            "2026-06-01T09:00:00Z",
        );
        let decision = decide(&schedule, &observed("2026-06-01T10:00:00Z", running()));
        assert_eq!(decision.create.len(), creates, "{policy}");
        assert_eq!(decision.replace.len(), replaces, "{policy}");
        assert_eq!(decision.status.skipped_slots, skipped, "{policy}");
        assert_eq!(
            decision.status.slots_handled_until,
            Some(Time(utc("2026-06-01T10:00:00Z"))),
            "{policy}: the slot is dealt with either way"
        );
        let active: Vec<_> = decision
            .status
            .active
            .iter()
            .filter_map(|r| r.name.clone())
            .collect();
        let expected_active = match policy {
            "Forbid" => vec!["nightly-old"],
            "Allow" => vec!["nightly-29671800", "nightly-old"],
            _ => vec!["nightly-29671800"],
        };
        assert_eq!(active, expected_active, "{policy}");
    }
    // A finished or deleted run is not active.
    let schedule = handled_until(
        schedule_of("  schedule: '0 * * * *'\n"),
        "2026-06-01T09:00:00Z",
    );
    let mut deleting = child("nightly-gone", Phase::Running, "2026-06-01T08:00:00Z");
    deleting.deleting = true;
    let decision = decide(
        &schedule,
        &observed(
            "2026-06-01T10:00:00Z",
            vec![
                child("nightly-done", Phase::Succeeded, "2026-06-01T09:00:00Z"),
                deleting,
            ],
        ),
    );
    assert_eq!(decision.create.len(), 1);
}

#[test]
fn downtime_runs_only_the_latest_slot_and_counts_the_rest_as_missed() {
    let schedule = handled_until(
        schedule_of("  schedule: '* * * * *'\n"),
        "2026-06-01T10:00:00Z",
    );
    let decision = decide(&schedule, &observed("2026-06-01T10:07:30Z", vec![]));
    assert_eq!(
        created_names(&decision),
        [slot_run_name(
            "nightly",
            utc("2026-06-01T10:07:00Z").as_second()
        )]
    );
    assert_eq!(decision.status.missed_slots, Some(6));
    assert_eq!(reasons(&decision), ["RunCreated", "MissedSchedule"]);
    let warning = &decision.events[1];
    assert_eq!(warning.type_, EventType::Warning);
    assert!(warning.note.contains("Missed 6 slots"), "{}", warning.note);
}

#[test]
fn a_month_of_downtime_costs_one_search_and_a_capped_count() {
    let schedule = handled_until(
        schedule_of("  schedule: '* * * * *'\n"),
        "2026-01-01T00:00:00Z",
    );
    let started = std::time::Instant::now();
    let decision = decide(&schedule, &observed("2026-02-01T00:00:30Z", vec![]));
    assert_eq!(decision.create.len(), 1);
    assert_eq!(
        decision.status.missed_slots,
        Some(i64::from(MISSED_COUNT_LIMIT))
    );
    assert!(
        decision.events[1].note.contains("at least"),
        "{:?}",
        decision.events
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn starting_deadline_skips_a_slot_seen_too_late() {
    // (seconds late, deadline, runs)
    let table = [
        (30, None, true),
        (30, Some(60), true),
        (90, Some(60), false),
        (60, Some(60), true),
        (1, Some(0), false),
    ];
    for (late, deadline, runs) in table {
        let extra = deadline.map_or(String::new(), |d| {
            format!("  startingDeadlineSeconds: {d}\n")
        });
        let schedule = handled_until(
            schedule_of(&format!("  schedule: '0 * * * *'\n{extra}")),
            "2026-06-01T09:00:00Z",
        );
        let now = utc("2026-06-01T10:00:00Z") + SignedDuration::from_secs(late);
        let decision = decide(
            &schedule,
            &ScheduleObserved {
                now,
                children: vec![],
                shard_keys: vec![],
            },
        );
        assert_eq!(
            decision.create.len(),
            usize::from(runs),
            "{late} s late, deadline {deadline:?}"
        );
        assert_eq!(
            decision.status.missed_slots,
            (!runs).then_some(1),
            "{late} s late, deadline {deadline:?}"
        );
        assert_eq!(
            decision.status.slots_handled_until,
            Some(Time(utc("2026-06-01T10:00:00Z")))
        );
    }
}

#[test]
fn suspended_schedules_run_nothing_and_do_not_catch_up_afterwards() {
    let mut schedule = handled_until(
        schedule_of("  schedule: '* * * * *'\n  suspend: true\n"),
        "2026-06-01T10:00:00Z",
    );
    let decision = decide(&schedule, &observed("2026-06-01T10:30:00Z", vec![]));
    assert!(decision.create.is_empty());
    assert_eq!(decision.requeue, None);
    assert_eq!(decision.status.next_schedule_time, None);
    let ready = decision
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == READY)
        .expect("Ready");
    assert_eq!(ready.reason, "Suspended");
    // Resumed (a spec change): the slots that passed are not run, nor counted as missed.
    schedule.status = Some(decision.status);
    schedule.spec.suspend = false;
    schedule.metadata.generation = Some(2);
    let decision = decide(&schedule, &observed("2026-06-01T10:40:10Z", vec![]));
    assert!(decision.create.is_empty());
    assert_eq!(decision.status.missed_slots, None);
    assert_eq!(
        decision.status.next_schedule_time,
        Some(Time(utc("2026-06-01T10:41:00Z")))
    );
}

#[test]
fn a_spec_change_applies_from_the_next_slot() {
    let mut schedule = handled_until(
        schedule_of("  schedule: '0 2 * * *'\n"),
        "2026-06-01T02:00:00Z",
    );
    schedule.spec.schedule = "0 * * * *".into();
    schedule.metadata.generation = Some(2);
    let decision = decide(&schedule, &observed("2026-06-01T10:30:00Z", vec![]));
    assert!(
        decision.create.is_empty(),
        "10:00 passed before the change was seen"
    );
    assert_eq!(decision.status.missed_slots, None);
    assert_eq!(decision.status.observed_generation, Some(2));
    assert_eq!(
        decision.status.next_schedule_time,
        Some(Time(utc("2026-06-01T11:00:00Z")))
    );
}

#[test]
fn invalid_schedules_stall_with_the_field_named_and_warn_once() {
    let schedule = schedule_of("  schedule: '0 0 30 2 *'\n");
    let decision = decide(&schedule, &observed("2026-06-01T10:00:00Z", vec![]));
    let stalled = decision
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == STALLED)
        .expect("Stalled");
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "InvalidSchedule")
    );
    assert!(
        stalled.message.contains("spec.schedule"),
        "{}",
        stalled.message
    );
    let ready = decision
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == READY)
        .expect("Ready");
    assert_eq!(ready.status, "False");
    assert_eq!(decision.requeue, None);
    assert_eq!(reasons(&decision), ["InvalidSchedule"]);

    let mut again = schedule.clone();
    again.status = Some(decision.status.clone());
    let second = decide(&again, &observed("2026-06-01T10:01:00Z", vec![]));
    assert!(second.events.is_empty(), "warned once: {:?}", second.events);
    assert_eq!(second.status, decision.status, "nothing new to write");

    let zone = decide(
        &schedule_with_zone("Europe/Berlinn"),
        &observed("2026-06-01T10:00:00Z", vec![]),
    );
    let stalled = zone
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == STALLED)
        .expect("Stalled");
    assert!(
        stalled.message.starts_with("spec.timeZone"),
        "{}",
        stalled.message
    );
}

fn schedule_with_zone(zone: &str) -> FlowRunSchedule {
    schedule_of(&format!("  schedule: '0 2 * * *'\n  timeZone: {zone}\n"))
}

#[test]
fn a_steady_schedule_writes_nothing_new() {
    let schedule = handled_until(
        schedule_of("  schedule: '0 * * * *'\n"),
        "2026-06-01T10:00:00Z",
    );
    let first = decide(&schedule, &observed("2026-06-01T10:20:00Z", vec![]));
    let mut settled = schedule.clone();
    settled.status = Some(first.status.clone());
    let second = decide(&settled, &observed("2026-06-01T10:40:00Z", vec![]));
    assert_eq!(second.status, first.status);
    assert!(second.events.is_empty());
}

#[test]
fn run_now_creates_one_flowrun_per_new_value_whatever_the_policy() {
    let mut schedule = handled_until(
        schedule_of("  schedule: '0 * * * *'\n  suspend: true\n"),
        "2026-06-01T10:00:00Z",
    );
    schedule
        .annotations_mut()
        .insert(RUN_NOW_ANNOTATION.into(), "backfill-1".into());
    let running = vec![child("nightly-old", Phase::Running, "2026-06-01T09:00:00Z")];
    let decision = decide(
        &schedule,
        &observed("2026-06-01T10:20:00Z", running.clone()),
    );
    assert_eq!(created_names(&decision), ["nightly-now-backfill-1"]);
    assert_eq!(
        decision.create[0].annotations()[RUN_NOW_ANNOTATION],
        "backfill-1"
    );
    assert_eq!(decision.status.last_run_now.as_deref(), Some("backfill-1"));

    schedule.status = Some(decision.status);
    let again = decide(&schedule, &observed("2026-06-01T10:21:00Z", running));
    assert!(again.create.is_empty(), "once per value");

    schedule
        .annotations_mut()
        .insert(RUN_NOW_ANNOTATION.into(), "Not A Name".into());
    let invalid = decide(&schedule, &observed("2026-06-01T10:22:00Z", vec![]));
    assert!(invalid.create.is_empty());
    assert_eq!(reasons(&invalid), ["InvalidRunNow"]);
    assert_eq!(
        invalid.status.last_run_now.as_deref(),
        Some("Not A Name"),
        "reported once"
    );
}

#[test]
fn history_keeps_the_newest_finished_runs_within_the_limits() {
    let schedule = handled_until(
        schedule_of(
            "  schedule: '0 * * * *'\n  successfulRunsHistoryLimit: 2\n  failedRunsHistoryLimit: 1\n",
        ),
        "2026-06-01T10:00:00Z",
    );
    let children = vec![
        child("s1", Phase::Succeeded, "2026-06-01T01:00:00Z"),
        child("s2", Phase::Succeeded, "2026-06-01T02:00:00Z"),
        child("s3", Phase::Succeeded, "2026-06-01T03:00:00Z"),
        child("a4", Phase::Activated, "2026-06-01T04:00:00Z"),
        child("f1", Phase::Failed, "2026-06-01T01:30:00Z"),
        child("c2", Phase::Canceled, "2026-06-01T02:30:00Z"),
        child("r5", Phase::Running, "2026-06-01T00:00:00Z"),
    ];
    let decision = decide(
        &schedule,
        &observed("2026-06-01T10:10:00Z", children.clone()),
    );
    assert_eq!(decision.prune, ["s2", "s1", "f1"]);
    assert_eq!(
        decision.status.last_successful_time,
        Some(Time(utc("2026-06-01T03:00:00Z")))
    );

    let zero = handled_until(
        schedule_of(
            "  schedule: '0 * * * *'\n  successfulRunsHistoryLimit: 0\n  failedRunsHistoryLimit: 0\n",
        ),
        "2026-06-01T10:00:00Z",
    );
    let decision = decide(&zero, &observed("2026-06-01T10:10:00Z", children));
    assert_eq!(
        decision.prune.len(),
        6,
        "all but the running one: {:?}",
        decision.prune
    );
}

#[test]
fn a_name_too_long_for_its_flowruns_stalls_naming_metadata_name() {
    let mut schedule = schedule_of("  schedule: '0 * * * *'\n");
    schedule.metadata.name = Some("n".repeat(SCHEDULE_NAME_MAX + 1));
    let decision = decide(&schedule, &observed("2026-06-01T10:00:00Z", vec![]));
    let stalled = decision
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == STALLED)
        .expect("Stalled");
    assert_eq!(stalled.reason, "InvalidSchedule");
    assert!(
        stalled.message.starts_with("metadata.name"),
        "{}",
        stalled.message
    );
    assert!(decision.create.is_empty());

    schedule.metadata.name = Some("n".repeat(SCHEDULE_NAME_MAX));
    let decision = decide(&schedule, &observed("2026-06-01T10:00:00Z", vec![]));
    assert!(
        decision
            .status
            .conditions
            .iter()
            .all(|c| c.reason != "InvalidSchedule")
    );
}

#[test]
fn a_manual_flowrun_is_the_schedules_child_from_its_template_named_or_generated() {
    let schedule = schedule_of(
        "    metadata: {labels: {team: sales}, annotations: {note: x}}\n  schedule: '0 2 * * *'\n",
    );
    // (name asked for, metadata.name, metadata.generateName)
    let table = [
        (None, None, Some("nightly-manual-")),
        (Some("backfill"), Some("backfill"), None),
    ];
    for (asked, name, generate_name) in table {
        let flowrun = manual_flowrun(&schedule, asked);
        assert_eq!(flowrun.metadata.name.as_deref(), name, "{asked:?}");
        assert_eq!(
            flowrun.metadata.generate_name.as_deref(),
            generate_name,
            "{asked:?}"
        );
        assert_eq!(flowrun.spec, schedule.spec.flow_run_template.spec);
        assert_eq!(flowrun.labels()["team"], "sales");
        assert_eq!(flowrun.labels()[SCHEDULE_LABEL], "nightly");
        assert_eq!(flowrun.annotations()["note"], "x");
        assert!(!flowrun.annotations().contains_key(SLOT_ANNOTATION));
        assert!(is_child_of(&flowrun, "sched-uid"), "{asked:?}");
        assert_eq!(flowrun.metadata.namespace.as_deref(), Some("team-a"));
    }
}

#[test]
fn a_name_taken_by_a_foreign_flowrun_runs_nothing_counts_a_skipped_slot_and_warns() {
    let mut schedule = handled_until(
        schedule_of("  schedule: '*/5 * * * *'\n"),
        "2026-06-01T10:00:00Z",
    );
    schedule
        .annotations_mut()
        .insert(RUN_NOW_ANNOTATION.to_owned(), "now-1".to_owned());
    let decided = decide(&schedule, &observed("2026-06-01T10:05:00.300Z", vec![]));
    assert_eq!(
        created_names(&decided),
        ["nightly-29671805", "nightly-now-now-1"]
    );
    assert_eq!(reasons(&decided), ["RunCreated", "RunCreated"]);
    let active = |decision: &ScheduleDecision| -> Vec<String> {
        decision
            .status
            .active
            .iter()
            .filter_map(|reference| reference.name.clone())
            .collect()
    };
    // (which creation met a foreign FlowRun, skipped slots, started, skipped, the other's event)
    let table = [
        (0, Some(1), 1, 1, "Created FlowRun nightly-now-now-1 "),
        (1, None, 1, 0, "Created FlowRun nightly-29671805 "),
    ];
    for (taken, skipped_slots, started, skipped, kept) in table {
        let mut decision = decided.clone();
        let flowrun = decision.create[taken].clone();
        let name = flowrun.name_any();
        decision.name_taken(&flowrun);
        assert!(!active(&decision).contains(&name), "{name} left active");
        assert_eq!(active(&decision).len(), 1, "{name}: the other stays active");
        assert_eq!(decision.status.skipped_slots, skipped_slots, "{name}");
        assert_eq!(
            (decision.slots.started, decision.slots.skipped),
            (started, skipped),
            "{name}"
        );
        assert_eq!(reasons(&decision), ["RunCreated", "RunNameTaken"], "{name}");
        assert!(decision.events[0].note.starts_with(kept), "{name}");
        let warning = &decision.events[1];
        assert_eq!(warning.type_, EventType::Warning);
        assert!(
            warning
                .note
                .starts_with(&format!("FlowRun {name} exists and is not this schedule's")),
            "{}",
            warning.note
        );
    }
    // The slot's time is named, for the slot; the value, for run-now.
    let mut decision = decided.clone();
    let slot_run = decision.create[0].clone();
    decision.name_taken(&slot_run);
    assert!(
        decision.events[1]
            .note
            .contains("the slot at 2026-06-01T10:05:00Z")
    );
    let mut decision = decided;
    let run_now = decision.create[1].clone();
    decision.name_taken(&run_now);
    assert!(
        decision.events[1]
            .note
            .contains("the run-now request now-1")
    );
}
