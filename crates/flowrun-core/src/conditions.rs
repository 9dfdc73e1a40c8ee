//! Conditions as kstatus wants them: the desired ones merged into the current list, keeping
//! each condition's `lastTransitionTime` while its status holds.

use flowrun_api::conditions::Reason;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The desired state of one condition, before timestamps are filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredCondition {
    pub type_: &'static str,
    pub status: bool,
    pub reason: Reason,
    pub message: String,
}

/// Merges desired conditions into the current list. A condition whose status does not change
/// keeps its `lastTransitionTime`; conditions of other types are kept as they are.
pub fn merge(
    current: &[Condition],
    desired: &[DesiredCondition],
    observed_generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let mut merged: Vec<Condition> = current
        .iter()
        .filter(|condition| !desired.iter().any(|d| d.type_ == condition.type_))
        .cloned()
        .collect();
    for want in desired {
        let status = if want.status { "True" } else { "False" };
        let last_transition_time = current
            .iter()
            .find(|c| c.type_ == want.type_ && c.status == status)
            .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
        merged.push(Condition {
            type_: want.type_.to_owned(),
            status: status.to_owned(),
            reason: want.reason.as_str().to_owned(),
            message: want.message.clone(),
            observed_generation,
            last_transition_time,
        });
    }
    merged.sort_by(|a, b| a.type_.cmp(&b.type_));
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowrun_api::conditions::{READY, RECONCILING, STALLED};

    fn time(seconds: i64) -> Time {
        Time(jiff::Timestamp::from_second(seconds).expect("valid timestamp"))
    }

    fn desired(type_: &'static str, status: bool, reason: Reason) -> DesiredCondition {
        DesiredCondition {
            type_,
            status,
            reason,
            message: format!("{reason:?}"),
        }
    }

    #[test]
    fn unchanged_status_keeps_its_transition_time_while_reason_and_message_update() {
        let first = merge(
            &[],
            &[desired(READY, false, Reason::Throttled)],
            Some(1),
            &time(100),
        );
        let second = merge(
            &first,
            &[desired(READY, false, Reason::Throttled)],
            Some(1),
            &time(200),
        );

        assert_eq!(second.len(), 1);
        assert_eq!(second[0].last_transition_time, time(100));
        assert_eq!(second[0].reason, "Throttled");
        assert_eq!(second[0].message, "Throttled");
    }

    #[test]
    fn changed_status_takes_the_new_transition_time() {
        let first = merge(
            &[],
            &[desired(READY, false, Reason::Throttled)],
            Some(1),
            &time(100),
        );
        let second = merge(
            &first,
            &[desired(READY, true, Reason::Running)],
            Some(2),
            &time(200),
        );

        assert_eq!(second[0].status, "True");
        assert_eq!(second[0].last_transition_time, time(200));
        assert_eq!(second[0].observed_generation, Some(2));
    }

    #[test]
    fn conditions_not_mentioned_are_kept_and_the_list_is_sorted_by_type() {
        let first = merge(
            &[],
            &[
                desired(STALLED, false, Reason::Throttled),
                desired(READY, false, Reason::Throttled),
            ],
            Some(1),
            &time(100),
        );
        let second = merge(
            &first,
            &[desired(RECONCILING, true, Reason::Throttled)],
            Some(1),
            &time(200),
        );

        let types: Vec<&str> = second.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [READY, RECONCILING, STALLED]);
    }
}
