//! FlowRunSchedules on a real API server and the local AppFlow endpoint: a slot that fires in
//! real time, catch-up after downtime, Forbid and Replace, suspend, history limits, run-now,
//! invalid schedules, and a SIGKILL at a slot.
//!
//! Slots other than the real-time one are made due without waiting for the clock: the test
//! writes `status.slotsHandledUntil` minutes into the past (what an operator that was down
//! would have left), so the operator's own clock finds the slots since then due at once.
//! Every wait is bounded; none sleeps for luck.

mod support;

use std::time::Duration;

use flowrun_api::conditions::{READY, STALLED};
use flowrun_api::flowrun::{FlowRun, Phase};
use flowrun_api::schedule::{
    FlowRunSchedule, RUN_NOW_ANNOTATION, SCHEDULE_LABEL, SLOT_ANNOTATION, run_now_name,
    slot_run_name,
};
use jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::flowruns::{World, uid};
use support::operator::Operator;

const FLOWS: &str = r#"
flows:
  - name: quick
    runSeconds: 0.3
  - name: endless
    runSeconds: 3600
    cancelSeconds: 0.3
"#;

const WAIT: Duration = Duration::from_secs(30);

fn schedules(world: &World) -> Api<FlowRunSchedule> {
    Api::namespaced(world.client.clone(), &world.namespace)
}

async fn create_schedule(world: &World, name: &str, spec: Value, annotations: Value) {
    let schedule: FlowRunSchedule = serde_json::from_value(json!({
        "apiVersion": "appflow.flowrun.dev/v1alpha1",
        "kind": "FlowRunSchedule",
        "metadata": {"name": name, "annotations": annotations},
        "spec": spec,
    }))
    .expect("a FlowRunSchedule");
    schedules(world)
        .create(&PostParams::default(), &schedule)
        .await
        .unwrap_or_else(|error| panic!("create schedule {name}: {error}"));
}

/// Marks every slot up to `until` as dealt with, as a status left by an operator that then
/// went down.
async fn handled_until(world: &World, name: &str, until: Timestamp) {
    schedules(world)
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"slotsHandledUntil": until}})),
        )
        .await
        .expect("write slotsHandledUntil");
}

/// The start of the current minute, minus `minutes`.
fn minutes_ago(minutes: i64) -> Timestamp {
    let now = Timestamp::now().as_second();
    Timestamp::from_second(now - now.rem_euclid(60) - 60 * minutes).expect("a time")
}

/// The schedule's FlowRuns, by the label it sets.
async fn children(world: &World, schedule: &str) -> Vec<FlowRun> {
    let mut list = world
        .flowruns
        .list(&ListParams::default().labels(&format!("{SCHEDULE_LABEL}={schedule}")))
        .await
        .expect("list FlowRuns")
        .items;
    list.sort_by_key(ResourceExt::name_any);
    list
}

/// Waits (bounded) until the schedule satisfies `done`; fails with its last state.
async fn wait_schedule(
    world: &World,
    name: &str,
    operator: &Operator,
    done: impl Fn(&FlowRunSchedule) -> bool,
) -> FlowRunSchedule {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let schedule = schedules(world).get(name).await.expect("get schedule");
        if done(&schedule) {
            return schedule;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "schedule {name} not as expected within {WAIT:?}: {:#?}; operator log: {}",
            schedule.status,
            operator.log_path().display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (bounded) until the schedule has exactly `count` FlowRuns; returns them.
async fn wait_children(
    world: &World,
    schedule: &str,
    operator: &Operator,
    done: impl Fn(&[FlowRun]) -> bool,
) -> Vec<FlowRun> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let list = children(world, schedule).await;
        if done(&list) {
            return list;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "FlowRuns of {schedule} not as expected within {WAIT:?}: {:?}; operator log: {}",
            list.iter()
                .map(|f| (f.name_any(), f.status.as_ref().and_then(|s| s.phase)))
                .collect::<Vec<_>>(),
            operator.log_path().display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn condition(schedule: &FlowRunSchedule, type_: &str) -> Option<(String, String, String)> {
    schedule
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

fn phase(flowrun: &FlowRun) -> Phase {
    flowrun.phase()
}

fn every_minute(flow: &str, extra: Value) -> Value {
    let mut spec = json!({
        "schedule": "* * * * *",
        "flowRunTemplate": {
            "metadata": {"labels": {"team": "sales"}},
            "spec": {"flowName": flow},
        },
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    spec
}

/// A `* * * * *` schedule fires at the next minute while the test watches: its FlowRun is named
/// after the slot, owned by the schedule (controller), labelled and annotated with the slot,
/// created at or after the slot and seen within 1 s of it, and runs to Succeeded; the status
/// names the slot and the next one. Bounds: up to 61 s for the minute to come, then 30 s.
#[tokio::test]
async fn an_every_minute_schedule_fires_at_the_next_minute() {
    let world = World::new("sched-realtime", FLOWS).await;
    let operator = world.operator(&[]);
    create_schedule(
        &world,
        "minutely",
        every_minute("quick", json!({})),
        json!({}),
    )
    .await;
    let created = schedules(&world).get("minutely").await.expect("get");
    let ready = wait_schedule(&world, "minutely", &operator, |s| {
        condition(s, READY)
            .is_some_and(|(status, reason, _)| status == "True" && reason == "Scheduled")
    })
    .await;
    let next = ready
        .status
        .and_then(|s| s.next_schedule_time)
        .expect("nextScheduleTime")
        .0;
    assert_eq!(next.as_second() % 60, 0, "{next}");
    let name = slot_run_name("minutely", next.as_second());

    let deadline = tokio::time::Instant::now() + Duration::from_secs(61) + WAIT;
    let (flowrun, seen_at) = loop {
        if let Ok(flowrun) = world.flowruns.get(&name).await {
            break (flowrun, Timestamp::now());
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no FlowRun {name}; log: {}",
            operator.log_path().display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Not before the slot (creationTimestamp has whole seconds), and seen by this test's
    // 50 ms polling within 1 s of it.
    let created_at = flowrun.creation_timestamp().expect("created").0;
    assert!(
        created_at >= next,
        "created at {created_at}, before the slot {next}"
    );
    let latency = seen_at.duration_since(next);
    assert!(
        latency <= SignedDuration::from_secs(1),
        "seen {latency:#} after the slot"
    );
    let owner = &flowrun.owner_references()[0];
    assert_eq!(owner.kind, "FlowRunSchedule");
    assert_eq!(owner.uid, created.uid().expect("uid"));
    assert_eq!(owner.controller, Some(true));
    assert_eq!(flowrun.labels()[SCHEDULE_LABEL], "minutely");
    assert_eq!(flowrun.labels()["team"], "sales");
    assert_eq!(flowrun.annotations()[SLOT_ANNOTATION], next.to_string());
    world
        .wait_until(&name, WAIT, Some(&operator), |f| {
            phase(f) == Phase::Succeeded
        })
        .await;
    let after = wait_schedule(&world, "minutely", &operator, |s| {
        s.status
            .as_ref()
            .is_some_and(|st| st.last_successful_time.is_some() && st.active.is_empty())
    })
    .await;
    let status = after.status.expect("status");
    assert_eq!(status.last_schedule_time.map(|t| t.0), Some(next));
    assert_eq!(
        status.next_schedule_time.map(|t| t.0),
        Some(next + SignedDuration::from_mins(1))
    );
    let stats = world.appflow.stats().await;
    assert_eq!(stats.token(&uid(&flowrun)).executions, 1);
}

/// After downtime across several slots, one catch-up run (the latest slot) and the missed
/// count in the status and in a MissedSchedule Warning. Bounds: 30 s.
#[tokio::test]
async fn downtime_gives_one_catch_up_run_and_the_missed_count() {
    let world = World::new("sched-downtime", FLOWS).await;
    create_schedule(
        &world,
        "catchup",
        every_minute("quick", json!({})),
        json!({}),
    )
    .await;
    let handled = minutes_ago(5);
    handled_until(&world, "catchup", handled).await;
    let operator = world.operator(&[]);

    let runs = wait_children(&world, "catchup", &operator, |list| !list.is_empty()).await;
    let schedule = wait_schedule(&world, "catchup", &operator, |s| {
        s.status
            .as_ref()
            .is_some_and(|st| st.missed_slots.is_some())
    })
    .await;
    assert_eq!(runs.len(), 1, "one catch-up run");
    let slot: Timestamp = runs[0].annotations()[SLOT_ANNOTATION]
        .parse()
        .expect("slot");
    let expected_missed = slot.duration_since(handled).as_mins() - 1;
    assert!(expected_missed >= 4, "{expected_missed}");
    let status = schedule.status.expect("status");
    assert_eq!(status.missed_slots, Some(expected_missed));
    assert_eq!(status.last_schedule_time.map(|t| t.0), Some(slot));
    let event = world.wait_for_event("catchup", "MissedSchedule").await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert!(
        event
            .note
            .unwrap_or_default()
            .contains(&format!("Missed {expected_missed} slots")),
        "the count is in the note"
    );
    world
        .wait_until(&runs[0].name_any(), WAIT, Some(&operator), |f| {
            phase(f) == Phase::Succeeded
        })
        .await;
    assert_eq!(children(&world, "catchup").await.len(), 1, "still one");
}

/// Forbid: a due slot while a run is active is skipped and counted; Replace: the active run is
/// deleted (its AppFlow run canceled) and the slot's run starts. The active run is a run-now
/// of an endless flow. Bounds: 30 s per wait.
#[tokio::test]
async fn forbid_skips_and_replace_cancels_while_a_run_is_active() {
    let world = World::new("sched-concurrency", FLOWS).await;
    let operator = world.operator(&[]);
    for (name, policy) in [("forbid", "Forbid"), ("replace", "Replace")] {
        create_schedule(
            &world,
            name,
            every_minute("endless", json!({"concurrencyPolicy": policy})),
            json!({RUN_NOW_ANNOTATION: "first"}),
        )
        .await;
    }
    for name in ["forbid", "replace"] {
        let first = run_now_name(name, "first");
        world
            .wait_until(&first, WAIT, Some(&operator), |f| {
                phase(f) == Phase::Running
            })
            .await;
        handled_until(&world, name, minutes_ago(0) - SignedDuration::from_mins(1)).await;
    }

    let forbid = wait_schedule(&world, "forbid", &operator, |s| {
        s.status
            .as_ref()
            .is_some_and(|st| st.skipped_slots.is_some())
    })
    .await;
    let runs = children(&world, "forbid").await;
    assert_eq!(
        runs.iter().map(ResourceExt::name_any).collect::<Vec<_>>(),
        [run_now_name("forbid", "first")],
        "no run for the skipped slot"
    );
    assert_eq!(forbid.status.expect("status").active.len(), 1);
    world.wait_for_event("forbid", "SlotSkipped").await;

    let replaced = run_now_name("replace", "first");
    let runs = wait_children(&world, "replace", &operator, |list| {
        list.len() == 1 && list[0].name_any() != replaced
    })
    .await;
    world
        .wait_until(&runs[0].name_any(), WAIT, Some(&operator), |f| {
            phase(f) == Phase::Running
        })
        .await;
    world.wait_for_calls("CancelFlowExecutions", 1, WAIT).await;
    world.wait_for_event("replace", "RunReplaced").await;
}

/// A suspended schedule runs no slot, even ones due since long; its Ready condition says
/// Suspended. Run-now still works, exactly once per value: touching the schedule again makes
/// no second FlowRun. Bounds: 30 s per wait.
#[tokio::test]
async fn suspend_runs_no_slot_and_run_now_runs_exactly_once() {
    let world = World::new("sched-suspend", FLOWS).await;
    create_schedule(
        &world,
        "paused",
        every_minute("quick", json!({"suspend": true})),
        json!({}),
    )
    .await;
    handled_until(&world, "paused", minutes_ago(10)).await;
    let operator = world.operator(&[]);
    let schedule = wait_schedule(&world, "paused", &operator, |s| {
        condition(s, READY).is_some_and(|(_, reason, _)| reason == "Suspended")
    })
    .await;
    assert_eq!(schedule.status.and_then(|s| s.next_schedule_time), None);
    assert!(
        children(&world, "paused").await.is_empty(),
        "suspended: no run"
    );

    schedules(&world)
        .patch(
            "paused",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {RUN_NOW_ANNOTATION: "adhoc"}}})),
        )
        .await
        .expect("annotate");
    let name = run_now_name("paused", "adhoc");
    world
        .wait_until(&name, WAIT, Some(&operator), |f| {
            phase(f) == Phase::Succeeded
        })
        .await;
    // Changed again (a spec change the status must acknowledge): the value already handled
    // makes no second FlowRun.
    schedules(&world)
        .patch(
            "paused",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"successfulRunsHistoryLimit": 5}})),
        )
        .await
        .expect("change the spec");
    wait_schedule(&world, "paused", &operator, |s| {
        s.status.as_ref().and_then(|st| st.observed_generation) == Some(2)
    })
    .await;
    let runs = children(&world, "paused").await;
    assert_eq!(
        runs.len(),
        1,
        "{:?}",
        runs.iter().map(ResourceExt::name_any).collect::<Vec<_>>()
    );
    assert_eq!(world.appflow.stats().await.executions("quick"), 1);
}

/// History limits: with successfulRunsHistoryLimit 1, only the newest successful FlowRun is
/// kept. (Run-now FlowRuns created in the same second are told apart by their finishing time,
/// then by name: the values sort in their order.) Bounds: 30 s per wait.
#[tokio::test]
async fn history_limits_delete_the_oldest_finished_runs() {
    let world = World::new("sched-history", FLOWS).await;
    create_schedule(
        &world,
        "tidy",
        json!({
            "schedule": "@yearly",
            "successfulRunsHistoryLimit": 1,
            "flowRunTemplate": {"spec": {"flowName": "quick"}},
        }),
        json!({}),
    )
    .await;
    let operator = world.operator(&[]);
    for value in ["run-1", "run-2", "run-3"] {
        schedules(&world)
            .patch(
                "tidy",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {RUN_NOW_ANNOTATION: value}}})),
            )
            .await
            .expect("annotate");
        world
            .wait_until(&run_now_name("tidy", value), WAIT, Some(&operator), |f| {
                phase(f) == Phase::Succeeded
            })
            .await;
    }
    let kept = wait_children(&world, "tidy", &operator, |list| list.len() == 1).await;
    assert_eq!(kept[0].name_any(), run_now_name("tidy", "run-3"));
}

/// An unparsable schedule and an unknown zone get past admission's pattern but are reported:
/// Stalled=True, reason InvalidSchedule, the message naming the field; a 4-field schedule is
/// refused at admission. Bounds: 30 s per wait.
#[tokio::test]
async fn invalid_schedules_and_zones_are_reported_or_refused() {
    let world = World::new("sched-invalid", FLOWS).await;
    let operator = world.operator(&[]);
    for (name, schedule, zone, field) in [
        ("never", "0 0 30 2 *", "UTC", "spec.schedule"),
        ("range", "61 * * * *", "UTC", "spec.schedule"),
        ("nowhere", "0 2 * * *", "Mars/Olympus_Mons", "spec.timeZone"),
    ] {
        create_schedule(
            &world,
            name,
            json!({"schedule": schedule, "timeZone": zone, "flowRunTemplate": {"spec": {"flowName": "quick"}}}),
            json!({}),
        )
        .await;
        let stalled =
            wait_schedule(&world, name, &operator, |s| condition(s, STALLED).is_some()).await;
        let (status, reason, message) = condition(&stalled, STALLED).expect("Stalled");
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("True", "InvalidSchedule"),
            "{name}"
        );
        assert!(message.starts_with(field), "{name}: {message}");
        world.wait_for_event(name, "InvalidSchedule").await;
    }
    let refused = schedules(&world)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "appflow.flowrun.dev/v1alpha1",
                "kind": "FlowRunSchedule",
                "metadata": {"name": "short"},
                "spec": {"schedule": "* * * *", "flowRunTemplate": {"spec": {"flowName": "quick"}}},
            }))
            .expect("object"),
        )
        .await;
    match refused {
        Err(kube::Error::Api(status)) => assert!(
            status.message.contains("spec.schedule"),
            "{}",
            status.message
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A schedule `name` of `quick` every minute, its latest slot due at once (slots handled until a
/// minute ago), with `Allow`: a second FlowRun for a slot is not held back by the first one
/// being active, so only the slot's name can prevent it.
async fn slot_due_allowing_overlap(world: &World, name: &str) {
    create_schedule(
        world,
        name,
        every_minute("quick", json!({"concurrencyPolicy": "Allow"})),
        json!({}),
    )
    .await;
    handled_until(world, name, minutes_ago(1)).await;
}

/// The FlowRun the operator would create for the schedule's one due slot (the same pure
/// `decide`), not created.
async fn due_slot_run(world: &World, name: &str) -> FlowRun {
    let schedule = schedules(world).get(name).await.expect("read the schedule");
    let decision = flowrun_core::schedule::decide(
        &schedule,
        &flowrun_core::schedule::ScheduleObserved {
            now: Timestamp::now(),
            children: Vec::new(),
            shard_keys: Vec::new(),
        },
    );
    let [slot_run] = decision.create.as_slice() else {
        panic!("one slot due: {:?}", decision.create);
    };
    slot_run.clone()
}

/// One StartFlow call and one AppFlow execution for `flowrun`'s token.
async fn assert_started_once(world: &World, flowrun: &FlowRun) {
    let token = world.appflow.stats().await.token(&uid(flowrun));
    assert_eq!(
        (token.start_flow_calls, token.executions),
        (1, 1),
        "StartFlow calls and executions of {}",
        flowrun.name_any()
    );
}

/// The schedule's FlowRuns for `slot` (by their slot annotation, whatever their names): one.
/// A later minute may have started its own slot meanwhile.
async fn assert_one_flowrun_for(world: &World, schedule: &str, slot: Timestamp) {
    let slot_runs: Vec<String> = children(world, schedule)
        .await
        .iter()
        .filter(|flowrun| flowrun.annotations().get(SLOT_ANNOTATION) == Some(&slot.to_string()))
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(
        slot_runs.len(),
        1,
        "FlowRuns for the slot at {slot}: {slot_runs:?}"
    );
}

/// SIGKILL of the operator the moment a slot's FlowRun exists (before, or just as, its
/// schedule's status is written): after a restart, exactly one FlowRun for the slot and one
/// AppFlow execution. Bounds: 30 s per wait. The kill mostly lands just after the status write
/// (the test sees the FlowRun a few milliseconds after the operator does): the exact state a
/// kill inside that window leaves is the next test's.
#[tokio::test]
async fn sigkill_at_a_slot_leaves_one_flowrun_and_one_execution() {
    let world = World::new("sched-sigkill", FLOWS).await;
    slot_due_allowing_overlap(&world, "killed").await;
    let mut operator = world.operator(&[]);
    let runs = wait_children(&world, "killed", &operator, |list| !list.is_empty()).await;
    operator.kill();
    let slot_name = runs[0].name_any();

    let operator = world.operator(&[]);
    let flowrun = world
        .wait_until(&slot_name, WAIT, Some(&operator), |f| {
            phase(f) == Phase::Succeeded
        })
        .await;
    let schedule = wait_schedule(&world, "killed", &operator, |s| {
        s.status
            .as_ref()
            .and_then(|st| st.last_schedule_time.as_ref())
            .is_some()
    })
    .await;
    let slot: Timestamp = flowrun.annotations()[SLOT_ANNOTATION]
        .parse()
        .expect("slot");
    assert_eq!(
        schedule
            .status
            .and_then(|s| s.last_schedule_time)
            .map(|t| t.0),
        Some(slot)
    );
    assert_one_flowrun_for(&world, "killed", slot).await;
    assert_started_once(&world, &flowrun).await;
}

/// The state a SIGKILL between a slot's create and its status write leaves, made exactly: the
/// test creates the slot's FlowRun as the operator decides it (the same pure `decide`), and
/// leaves the schedule's status as it was. The operator then finds it, records the slot and
/// makes no second FlowRun for it (the name is the slot's, so a restart cannot choose another).
#[tokio::test]
async fn a_slots_flowrun_left_by_a_crash_before_the_status_write_is_adopted_not_made_again() {
    let world = World::new("sched-adopt", FLOWS).await;
    slot_due_allowing_overlap(&world, "crashed").await;
    let left = world
        .flowruns
        .create(
            &PostParams::default(),
            &due_slot_run(&world, "crashed").await,
        )
        .await
        .expect("create the slot's FlowRun");
    let slot: Timestamp = left.annotations()[SLOT_ANNOTATION].parse().expect("slot");

    let operator = world.operator(&[]);
    wait_schedule(&world, "crashed", &operator, |s| {
        s.status
            .as_ref()
            .and_then(|st| st.last_schedule_time.as_ref())
            .is_some_and(|time| time.0 >= slot)
    })
    .await;
    world
        .wait_until(&left.name_any(), WAIT, Some(&operator), |f| {
            phase(f) == Phase::Succeeded
        })
        .await;

    assert_one_flowrun_for(&world, "crashed", slot).await;
    assert_started_once(&world, &left).await;
}

/// A FlowRun of a user's, not controlled by the schedule, under the name of the schedule's due
/// slot: the slot runs nothing, is counted as skipped with a Warning naming that FlowRun, and
/// the schedule neither lists it as active nor takes it over.
#[tokio::test]
async fn a_foreign_flowrun_under_a_slots_name_is_reported_not_taken_for_the_slots_run() {
    let world = World::new("sched-taken", FLOWS).await;
    // A yearly slot: this year's stays the latest all year, so no minute can pass while the
    // test and the operator decide (with an every-minute one the operator may meet the next).
    create_schedule(
        &world,
        "taken",
        every_minute(
            "quick",
            json!({"schedule": "0 0 1 1 *", "concurrencyPolicy": "Allow"}),
        ),
        json!({}),
    )
    .await;
    let year = Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).year();
    let new_year = jiff::civil::date(year, 1, 1)
        .at(0, 0, 0, 0)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .expect("a time")
        .timestamp();
    handled_until(&world, "taken", new_year - SignedDuration::from_mins(1)).await;
    let slot_run = due_slot_run(&world, "taken").await;
    let slot: Timestamp = slot_run.annotations()[SLOT_ANNOTATION]
        .parse()
        .expect("slot");
    // The user's: the same name and spec, no owner, no schedule label or slot annotation.
    let mut foreign = FlowRun::new(&slot_run.name_any(), slot_run.spec.clone());
    foreign.metadata.namespace = Some(world.namespace.clone());
    let foreign = world
        .flowruns
        .create(&PostParams::default(), &foreign)
        .await
        .expect("create the user's FlowRun");

    let operator = world.operator(&[]);
    let schedule = wait_schedule(&world, "taken", &operator, |s| {
        s.status
            .as_ref()
            .and_then(|st| st.last_schedule_time.as_ref())
            .is_some_and(|time| time.0 >= slot)
    })
    .await;
    let status = schedule.status.expect("status");
    assert_eq!(status.skipped_slots, Some(1), "{status:?}");
    assert!(status.active.is_empty(), "{:?}", status.active);
    let warning = world.wait_for_event("taken", "RunNameTaken").await;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    assert!(
        warning
            .note
            .as_deref()
            .is_some_and(|note| note.contains(&foreign.name_any())),
        "{warning:?}"
    );
    assert!(
        children(&world, "taken").await.is_empty(),
        "the schedule made no FlowRun for the slot"
    );
    let untouched = world
        .flowruns
        .get(&foreign.name_any())
        .await
        .expect("the user's FlowRun");
    assert_eq!(untouched.uid(), foreign.uid());
    assert!(untouched.owner_references().is_empty());
}
