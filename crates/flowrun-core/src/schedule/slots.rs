//! Slots: when a schedule's cron expression fires, in its time zone.
//!
//! Parsing and evaluation are croner's (the OCPS and Vixie cron rules): in a daylight saving
//! gap a fixed-time slot fires at the first minute after the gap, in a repeated hour it fires
//! once (the first time); wildcard and step fields follow real time, so `*/15 * * * *` fires
//! every 15 real minutes through both. Searches go straight to the nearest match, forwards or
//! backwards, so the most recent slot is found without stepping through the missed ones.
//! Zones come from the database compiled into the binary, never from the host.

use croner::Cron;
use croner::errors::CronError;
use croner::parser::{CronParser, Seconds};
use jiff::Timestamp;
use jiff::tz::{TimeZone, TimeZoneDatabase};

/// Counting missed slots stops here: the count is for people, and a `* * * * *` schedule
/// down for a month must not cost 43,200 steps.
pub const MISSED_COUNT_LIMIT: u32 = 10_000;

/// A schedule that parsed: its cron expression and its zone.
#[derive(Clone, Debug)]
pub struct Slots {
    cron: Cron,
    zone: TimeZone,
}

/// Why a schedule cannot be used; says which field, for the status message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSchedule {
    #[error("metadata.name {name:?} is longer than {max} characters, too long for the names and labels of its FlowRuns", max = flowrun_api::schedule::SCHEDULE_NAME_MAX)]
    Name { name: String },
    #[error("spec.schedule {schedule:?} is not a valid cron expression: {reason}")]
    Schedule { schedule: String, reason: String },
    #[error("spec.schedule {schedule:?} never fires")]
    NeverFires { schedule: String },
    #[error("spec.timeZone {zone:?} is not a known IANA time zone")]
    TimeZone { zone: String },
}

impl InvalidSchedule {
    /// The field at fault, as `kubectl explain` names it.
    pub fn field(&self) -> &'static str {
        match self {
            InvalidSchedule::Schedule { .. } | InvalidSchedule::NeverFires { .. } => {
                "spec.schedule"
            }
            InvalidSchedule::TimeZone { .. } => "spec.timeZone",
            InvalidSchedule::Name { .. } => "metadata.name",
        }
    }
}

impl Slots {
    /// Parses five cron fields (or a macro such as @daily) read in the IANA zone `zone`.
    pub fn parse(schedule: &str, zone: &str) -> Result<Slots, InvalidSchedule> {
        let invalid = |reason: String| InvalidSchedule::Schedule {
            schedule: schedule.to_owned(),
            reason,
        };
        let trimmed = schedule.trim();
        let fields = trimmed.split_whitespace().count();
        if !trimmed.starts_with('@') && fields != 5 {
            return Err(invalid(format!(
                "it has {fields} fields, expected 5 (minute hour day-of-month month day-of-week)"
            )));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .build()
            .parse(trimmed)
            .map_err(|error| invalid(describe(&error)))?;
        let zone =
            TimeZoneDatabase::bundled()
                .get(zone)
                .map_err(|_| InvalidSchedule::TimeZone {
                    zone: zone.to_owned(),
                })?;
        let slots = Slots { cron, zone };
        // `0 0 30 2 *` parses but never fires; croner's search gives up, and so do we, here
        // rather than at every reconcile.
        if slots.next_after(Timestamp::UNIX_EPOCH).is_none() {
            return Err(InvalidSchedule::NeverFires {
                schedule: schedule.to_owned(),
            });
        }
        Ok(slots)
    }

    /// The latest slot at or before `time`.
    pub fn latest_at_or_before(&self, time: Timestamp) -> Option<Timestamp> {
        self.cron
            .find_previous_occurrence(&time.to_zoned(self.zone.clone()), true)
            .ok()
            .map(|zoned| zoned.timestamp())
    }

    /// The first slot after `time`.
    pub fn next_after(&self, time: Timestamp) -> Option<Timestamp> {
        self.cron
            .find_next_occurrence(&time.to_zoned(self.zone.clone()), false)
            .ok()
            .map(|zoned| zoned.timestamp())
    }

    /// Slots strictly between `after` and `before`, counted up to [`MISSED_COUNT_LIMIT`].
    pub fn count_between(&self, after: Timestamp, before: Timestamp) -> u32 {
        let mut count = 0;
        let mut cursor = after;
        while count < MISSED_COUNT_LIMIT {
            match self.next_after(cursor) {
                Some(slot) if slot < before => {
                    count += 1;
                    cursor = slot;
                }
                _ => break,
            }
        }
        count
    }
}

/// croner's error, in words a user can act on.
fn describe(error: &CronError) -> String {
    match error {
        CronError::EmptyPattern => "it is empty".to_owned(),
        CronError::InvalidPattern(detail)
        | CronError::IllegalCharacters(detail)
        | CronError::ComponentError(detail) => detail.clone(),
        other => other.to_string(),
    }
}
