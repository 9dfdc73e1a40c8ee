//! The decisions for a FlowRunSchedule, as a pure function of the schedule, its FlowRuns and
//! the clock: which FlowRuns to create and delete, the status, the events, when to look again.
//!
//! A slot is due when it lies after `status.slotsHandledUntil` (or the schedule's creation, or
//! the moment a spec change was seen: a change applies from the next slot) and at or before
//! now. Only the most recent due slot may run; the ones before it are missed, counted, never
//! run. Creating a slot's FlowRun is idempotent by its name, so deciding twice on the same
//! slot (a crash, a stale cache) creates nothing twice.

use std::collections::BTreeMap;
use std::time::Duration;

use flowrun_api::conditions::{READY, Reason, STALLED};
use flowrun_api::schedule::{
    ConcurrencyPolicy, FlowRunScheduleStatus, RUN_NOW_ANNOTATION, SCHEDULE_LABEL,
    SCHEDULE_NAME_MAX, SLOT_ANNOTATION, run_now_name, slot_run_name,
};
use flowrun_api::{FlowRun, FlowRunSchedule, Phase};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube_core::{Resource, ResourceExt};

use crate::conditions::{DesiredCondition, merge};
use crate::decide::{EventNote, EventType};
use crate::shard::shard_labels;

pub mod slots;

pub use slots::{InvalidSchedule, MISSED_COUNT_LIMIT, Slots};

#[cfg(test)]
mod tests;

/// The longest wait between two looks at a schedule: a wall clock stepped forward (NTP, a
/// suspended VM) is noticed within it.
pub const MAX_WAIT: Duration = Duration::from_secs(3600);

/// A FlowRun the schedule controls, as the rules need to see it.
#[derive(Clone, Debug, PartialEq)]
pub struct Child {
    pub name: String,
    pub uid: Option<String>,
    pub phase: Phase,
    pub created: Option<Timestamp>,
    pub finished: Option<Timestamp>,
    /// Being deleted: its run is being canceled, it no longer counts as active.
    pub deleting: bool,
}

impl Child {
    /// The parts of a FlowRun the rules read.
    pub fn of(flowrun: &FlowRun) -> Child {
        Child {
            name: flowrun.name_any(),
            uid: flowrun.uid(),
            phase: flowrun.phase(),
            created: flowrun.creation_timestamp().map(|time| time.0),
            finished: flowrun
                .status
                .as_ref()
                .and_then(|status| status.completion_time.as_ref())
                .map(|time| time.0),
            deleting: flowrun.metadata.deletion_timestamp.is_some(),
        }
    }

    fn active(&self) -> bool {
        !self.phase.is_final() && !self.deleting
    }
}

/// True when `flowrun` (whole, or its metadata only) is controlled by the schedule with this
/// UID.
pub fn is_child_of(flowrun: &impl Resource, schedule_uid: &str) -> bool {
    flowrun
        .owner_references()
        .iter()
        .any(|owner| owner.controller == Some(true) && owner.uid == schedule_uid)
}

/// What the reconciler read besides the schedule itself.
#[derive(Clone, Debug)]
pub struct ScheduleObserved {
    pub now: Timestamp,
    /// The FlowRuns the schedule controls.
    pub children: Vec<Child>,
    /// The label keys of this operator's shard selector (none without one): the FlowRuns a
    /// schedule creates carry the schedule's values of them (see [`crate::shard`]).
    pub shard_keys: Vec<String>,
}

/// How the slots of one decision went, for the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotCounts {
    pub started: u32,
    pub skipped: u32,
    pub missed: u32,
}

/// What to do, in this order: delete `replace`, create `create` (AlreadyExists is success),
/// delete `prune`, write `status` (when it changed), publish `events`, look again after
/// `requeue`.
#[derive(Clone, Debug, Default)]
pub struct ScheduleDecision {
    /// Active FlowRuns a Replace slot deletes; their finalizer cancels their runs.
    pub replace: Vec<String>,
    pub create: Vec<FlowRun>,
    /// Finished FlowRuns beyond the history limits.
    pub prune: Vec<String>,
    pub status: FlowRunScheduleStatus,
    pub events: Vec<EventNote>,
    pub requeue: Option<Duration>,
    pub slots: SlotCounts,
}

impl ScheduleDecision {
    fn event(&mut self, type_: EventType, reason: Reason, note: String) {
        self.events.push(EventNote {
            type_,
            reason,
            note,
        });
    }

    /// Creating `flowrun` (one of `create`) met a FlowRun of that name that the schedule does
    /// not control, e.g. one a user made under a slot's name: nothing runs for it. It leaves
    /// the active list, a slot counts as skipped, and a Warning replaces its RunCreated event.
    pub fn name_taken(&mut self, flowrun: &FlowRun) {
        let name = flowrun.name_any();
        self.status
            .active
            .retain(|reference| reference.name.as_deref() != Some(name.as_str()));
        let created_note = created_note(&name, "");
        self.events.retain(|event| {
            !(event.reason == Reason::RunCreated && event.note.starts_with(&created_note))
        });
        self.slots.started = self.slots.started.saturating_sub(1);
        let what = match flowrun.annotations().get(SLOT_ANNOTATION) {
            Some(slot) => {
                self.status.skipped_slots = Some(self.status.skipped_slots.unwrap_or(0) + 1);
                self.slots.skipped += 1;
                format!("the slot at {slot}")
            }
            None => format!(
                "the run-now request {}",
                flowrun
                    .annotations()
                    .get(RUN_NOW_ANNOTATION)
                    .map_or("", String::as_str)
            ),
        };
        self.event(
            EventType::Warning,
            Reason::RunNameTaken,
            format!(
                "FlowRun {name} exists and is not this schedule's, so {what} runs nothing; \
                 rename or delete that FlowRun"
            ),
        );
    }
}

/// Decides on one schedule.
pub fn decide(schedule: &FlowRunSchedule, observed: &ScheduleObserved) -> ScheduleDecision {
    let spec = &schedule.spec;
    let current = schedule.status.clone().unwrap_or_default();
    let now = observed.now;
    let now_time = Time(whole_second(now));
    let generation = schedule.metadata.generation;
    let mut decision = ScheduleDecision::default();
    let mut status = FlowRunScheduleStatus {
        observed_generation: generation,
        ..current.clone()
    };

    let name = schedule.name_any();
    let parsed = if name.len() > SCHEDULE_NAME_MAX {
        Err(InvalidSchedule::Name { name })
    } else {
        Slots::parse(&spec.schedule, &spec.time_zone)
    };
    let ready = match parsed {
        Err(invalid) => {
            let stalled_before = current.conditions.iter().any(|c| {
                c.type_ == STALLED && c.status == "True" && c.message == invalid.to_string()
            });
            if !stalled_before {
                decision.event(
                    EventType::Warning,
                    Reason::InvalidSchedule,
                    invalid.to_string(),
                );
            }
            status.next_schedule_time = None;
            Err(invalid)
        }
        Ok(slots) => {
            let baseline = baseline(schedule, &current, now);
            if spec.suspend {
                status.slots_handled_until = Some(Time(baseline.max(whole_second(now))));
                status.next_schedule_time = None;
                Ok(Reason::Suspended)
            } else {
                let handled = run_due_slot(
                    schedule,
                    &slots,
                    baseline,
                    observed,
                    &mut decision,
                    &mut status,
                );
                let next = slots.next_after(handled.max(now));
                status.slots_handled_until = Some(Time(handled));
                status.next_schedule_time = next.map(Time);
                decision.requeue = next.map(|next| wait_until(now, next));
                Ok(Reason::Scheduled)
            }
        }
    };

    run_now(schedule, &observed.shard_keys, &mut decision, &mut status);
    prune_history(schedule, observed, &mut decision);
    status.last_successful_time =
        last_success(current.last_successful_time.as_ref(), &observed.children);
    status.active = active_refs(schedule, observed, &decision);
    status.conditions = conditions(&current, &ready, &status, generation, &now_time);
    decision.status = status;
    decision
}

/// Slots after this time are due: the last one dealt with, or the schedule's creation; a spec
/// change the operator has not seen yet moves it to now, so that a change applies from the
/// next slot and never runs a slot of the new schedule that passed before the change.
fn baseline(
    schedule: &FlowRunSchedule,
    current: &FlowRunScheduleStatus,
    now: Timestamp,
) -> Timestamp {
    let created = schedule.creation_timestamp().map_or(now, |time| time.0);
    let handled = current
        .slots_handled_until
        .as_ref()
        .map_or(created, |time| time.0);
    let changed = current.observed_generation.is_some()
        && current.observed_generation != schedule.metadata.generation;
    if changed {
        handled.max(whole_second(now))
    } else {
        handled
    }
}

/// Deals with the most recent due slot, if any; returns the time up to which slots are dealt
/// with.
fn run_due_slot(
    schedule: &FlowRunSchedule,
    slots: &Slots,
    baseline: Timestamp,
    observed: &ScheduleObserved,
    decision: &mut ScheduleDecision,
    status: &mut FlowRunScheduleStatus,
) -> Timestamp {
    let spec = &schedule.spec;
    let now = observed.now;
    let Some(due) = slots
        .latest_at_or_before(now)
        .filter(|slot| *slot > baseline)
    else {
        return baseline;
    };
    let mut missed = slots.count_between(baseline, due);
    let late = now.duration_since(due);
    let too_late = spec
        .starting_deadline_seconds
        .is_some_and(|deadline| late > SignedDuration::from_secs(deadline));
    let name = slot_run_name(&schedule.name_any(), due.as_second());
    if too_late {
        missed += 1;
    } else if observed.children.iter().any(|child| child.name == name) {
        // Created before (the status write after it was lost, or the cache is behind).
        status.last_schedule_time = Some(Time(due));
    } else {
        let active: Vec<&Child> = observed.children.iter().filter(|c| c.active()).collect();
        match spec.concurrency_policy {
            ConcurrencyPolicy::Forbid if !active.is_empty() => {
                status.skipped_slots = Some(status.skipped_slots.unwrap_or(0) + 1);
                decision.slots.skipped += 1;
                decision.event(
                    EventType::Normal,
                    Reason::SlotSkipped,
                    format!(
                        "Skipped the slot at {due}: {} is still running (concurrencyPolicy Forbid)",
                        names(&active)
                    ),
                );
            }
            policy => {
                if policy == ConcurrencyPolicy::Replace && !active.is_empty() {
                    decision.replace = active.iter().map(|child| child.name.clone()).collect();
                    decision.event(
                        EventType::Normal,
                        Reason::RunReplaced,
                        format!(
                            "Deleted {} for the slot at {due} (concurrencyPolicy Replace); its run is canceled",
                            names(&active)
                        ),
                    );
                }
                decision.create.push(child_flowrun(
                    schedule,
                    &name,
                    Some(due),
                    None,
                    &observed.shard_keys,
                ));
                decision.slots.started += 1;
                status.last_schedule_time = Some(Time(due));
                decision.event(
                    EventType::Normal,
                    Reason::RunCreated,
                    created_note(&name, &format!("for the slot at {due}")),
                );
            }
        }
    }
    if missed > 0 {
        status.missed_slots = Some(status.missed_slots.unwrap_or(0) + i64::from(missed));
        decision.slots.missed += missed;
        let count = if missed >= MISSED_COUNT_LIMIT {
            format!("at least {missed}")
        } else {
            missed.to_string()
        };
        let latest = if too_late {
            format!(
                "; the latest, at {due}, was seen {} s late, past startingDeadlineSeconds",
                late.as_secs()
            )
        } else {
            format!("; only the latest, at {due}, is run")
        };
        decision.event(
            EventType::Warning,
            Reason::MissedSchedule,
            format!("Missed {count} slots{latest}"),
        );
    }
    due
}

/// The run-now annotation: one FlowRun per new value, whatever the schedule says.
fn run_now(
    schedule: &FlowRunSchedule,
    shard_keys: &[String],
    decision: &mut ScheduleDecision,
    status: &mut FlowRunScheduleStatus,
) {
    let Some(value) = schedule.annotations().get(RUN_NOW_ANNOTATION) else {
        return;
    };
    if status.last_run_now.as_ref() == Some(value) {
        return;
    }
    status.last_run_now = Some(value.clone());
    let name = run_now_name(&schedule.name_any(), value);
    if !is_dns_subdomain(&name) {
        decision.event(
            EventType::Warning,
            Reason::InvalidRunNow,
            format!(
                "Cannot run now: {name:?} (from the annotation {RUN_NOW_ANNOTATION}) is not a valid \
                 FlowRun name; use lowercase letters, digits and '-'"
            ),
        );
        return;
    }
    decision.create.push(child_flowrun(
        schedule,
        &name,
        None,
        Some(value),
        shard_keys,
    ));
    decision.slots.started += 1;
    decision.event(
        EventType::Normal,
        Reason::RunCreated,
        created_note(&name, &format!("(annotation {RUN_NOW_ANNOTATION}={value})")),
    );
}

/// A RunCreated event's note: the FlowRun's name, then `detail`. [`ScheduleDecision::name_taken`]
/// finds a FlowRun's by the start (`detail` empty).
fn created_note(name: &str, detail: &str) -> String {
    format!("Created FlowRun {name} {detail}")
}

/// The oldest finished FlowRuns beyond the history limits, successful and failed separately.
fn prune_history(
    schedule: &FlowRunSchedule,
    observed: &ScheduleObserved,
    decision: &mut ScheduleDecision,
) {
    let spec = &schedule.spec;
    let limits = [
        (true, spec.successful_runs_history_limit),
        (false, spec.failed_runs_history_limit),
    ];
    for (successful, limit) in limits {
        let mut finished: Vec<&Child> = observed
            .children
            .iter()
            .filter(|child| child.phase.is_final() && !child.deleting)
            .filter(|child| succeeded(child.phase) == successful)
            .collect();
        // Newest first. Creation times have whole seconds: the finishing time, then the name,
        // break ties (slots are a minute apart; run-now FlowRuns may share a second).
        finished.sort_by(|a, b| {
            (b.created, b.finished, &b.name).cmp(&(a.created, a.finished, &a.name))
        });
        let keep = usize::try_from(limit).unwrap_or(0);
        decision
            .prune
            .extend(finished.iter().skip(keep).map(|child| child.name.clone()));
    }
}

fn succeeded(phase: Phase) -> bool {
    matches!(phase, Phase::Succeeded | Phase::Activated)
}

fn last_success(before: Option<&Time>, children: &[Child]) -> Option<Time> {
    children
        .iter()
        .filter(|child| child.phase == Phase::Succeeded)
        .filter_map(|child| child.finished)
        .chain(before.map(|time| time.0))
        .max()
        .map(Time)
}

/// The FlowRuns still going after this decision: the active ones not replaced, and the new.
fn active_refs(
    schedule: &FlowRunSchedule,
    observed: &ScheduleObserved,
    decision: &ScheduleDecision,
) -> Vec<ObjectReference> {
    let reference = |name: &str, uid: Option<String>| ObjectReference {
        api_version: Some(FlowRun::api_version(&()).into_owned()),
        kind: Some(FlowRun::kind(&()).into_owned()),
        name: Some(name.to_owned()),
        namespace: schedule.namespace(),
        uid,
        ..ObjectReference::default()
    };
    let mut active: Vec<ObjectReference> = observed
        .children
        .iter()
        .filter(|child| child.active() && !decision.replace.contains(&child.name))
        .map(|child| reference(&child.name, child.uid.clone()))
        .collect();
    for created in &decision.create {
        if !active
            .iter()
            .any(|r| r.name.as_deref() == created.metadata.name.as_deref())
        {
            active.push(reference(&created.name_any(), None));
        }
    }
    active.sort_by(|a, b| a.name.cmp(&b.name));
    active
}

fn conditions(
    current: &FlowRunScheduleStatus,
    ready: &Result<Reason, InvalidSchedule>,
    status: &FlowRunScheduleStatus,
    generation: Option<i64>,
    now: &Time,
) -> Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    let desired = match ready {
        Err(invalid) => vec![
            DesiredCondition {
                type_: READY,
                status: false,
                reason: Reason::InvalidSchedule,
                message: invalid.to_string(),
            },
            DesiredCondition {
                type_: STALLED,
                status: true,
                reason: Reason::InvalidSchedule,
                message: invalid.to_string(),
            },
        ],
        Ok(reason) => {
            let message = match (reason, &status.next_schedule_time) {
                (Reason::Suspended, _) => {
                    "Suspended: no slot runs until spec.suspend is false".to_owned()
                }
                (_, Some(next)) => format!("Next slot at {}", next.0),
                (_, None) => "No further slot".to_owned(),
            };
            vec![
                DesiredCondition {
                    type_: READY,
                    status: true,
                    reason: *reason,
                    message,
                },
                DesiredCondition {
                    type_: STALLED,
                    status: false,
                    reason: *reason,
                    message: String::new(),
                },
            ]
        }
    };
    merge(&current.conditions, &desired, generation, now)
}

/// A FlowRun from the schedule's template now, outside its slots (`kubectl flowrun run
/// --from=flowrunschedule/NAME`), as `kubectl create job --from=cronjob/NAME` makes a Job. It
/// is controlled by the schedule like a slot's FlowRun, so it counts as active for the
/// concurrency policy and is kept in (and pruned from) the history. Without a `name` the API
/// server names it from `<schedule>-manual-`. The caller cannot know the operators' shard keys,
/// so every label of the schedule counts as one: the FlowRun lands in the schedule's shard.
pub fn manual_flowrun(schedule: &FlowRunSchedule, name: Option<&str>) -> FlowRun {
    let schedule_keys: Vec<String> = schedule.labels().keys().cloned().collect();
    let mut flowrun = child_flowrun(
        schedule,
        name.unwrap_or_default(),
        None,
        None,
        &schedule_keys,
    );
    if name.is_none() {
        flowrun.metadata.name = None;
        flowrun.metadata.generate_name = Some(format!("{}-manual-", schedule.name_any()));
    }
    flowrun
}

/// The FlowRun of a slot (`slot`) or of a run-now request (`run_now`), from the template, with
/// the schedule's shard labels.
fn child_flowrun(
    schedule: &FlowRunSchedule,
    name: &str,
    slot: Option<Timestamp>,
    run_now: Option<&str>,
    shard_keys: &[String],
) -> FlowRun {
    let template = &schedule.spec.flow_run_template;
    let metadata = template.metadata.clone().unwrap_or_default();
    let mut labels = shard_labels(metadata.labels, schedule.labels(), shard_keys);
    labels.insert(SCHEDULE_LABEL.to_owned(), schedule.name_any());
    let mut annotations: BTreeMap<String, String> = metadata.annotations;
    if let Some(slot) = slot {
        annotations.insert(SLOT_ANNOTATION.to_owned(), slot.to_string());
    }
    if let Some(value) = run_now {
        annotations.insert(RUN_NOW_ANNOTATION.to_owned(), value.to_owned());
    }
    let owner = OwnerReference {
        api_version: FlowRunSchedule::api_version(&()).into_owned(),
        kind: FlowRunSchedule::kind(&()).into_owned(),
        name: schedule.name_any(),
        uid: schedule.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    };
    FlowRun {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: schedule.namespace(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

fn names(children: &[&Child]) -> String {
    children
        .iter()
        .map(|child| child.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// How long to wait for `next`, at most [`MAX_WAIT`].
fn wait_until(now: Timestamp, next: Timestamp) -> Duration {
    Duration::try_from(next.duration_since(now))
        .unwrap_or(Duration::ZERO)
        .min(MAX_WAIT)
}

/// Status times have whole seconds.
fn whole_second(time: Timestamp) -> Timestamp {
    Timestamp::from_second(time.as_second()).unwrap_or(time)
}

/// A Kubernetes object name: at most 253 lowercase letters, digits, '-' and '.', starting and
/// ending with a letter or digit.
fn is_dns_subdomain(name: &str) -> bool {
    let alphanumeric = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    name.len() <= 253
        && name.starts_with(alphanumeric)
        && name.ends_with(alphanumeric)
        && name
            .chars()
            .all(|c| alphanumeric(c) || c == '-' || c == '.')
}
