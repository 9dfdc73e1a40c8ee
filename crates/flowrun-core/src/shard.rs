//! Shards: a label selector (`--watch-label-selector`) chooses the FlowRuns and
//! FlowRunSchedules one operator serves, and names its Lease.
//!
//! The selector is parsed here, the way the API server reads a `labelSelector`, for three
//! reasons: a bad selector is refused at start with a message naming it, the Lease name is
//! derived from a normalized spelling (so replicas of one shard agree on it and shards with
//! different selectors never share one), and a schedule's FlowRuns get the schedule's values
//! of the selector's keys, so they land in the schedule's shard (see [`shard_labels`]).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// A parsed label selector: requirements that must all hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Requirement {
    key: String,
    operator: Operator,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Operator {
    Exists,
    DoesNotExist,
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
}

/// A selector the operator refuses, with what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector {selector:?}: {reason}")]
pub struct InvalidSelector {
    selector: String,
    reason: String,
}

/// Hex digits of the selector's hash in the Lease name: 40 bits, so a collision among the
/// handful of shards a cluster runs is out of reach.
const LEASE_HASH_LEN: usize = 10;

impl FromStr for LabelSelector {
    type Err = InvalidSelector;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: String| InvalidSelector {
            selector: text.to_owned(),
            reason,
        };
        let requirements = split_top_level(text)
            .map_err(invalid)?
            .into_iter()
            .map(|part| parse_requirement(part.trim()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;
        Ok(LabelSelector { requirements })
    }
}

/// Splits at the commas outside parentheses; refuses an empty selector or requirement.
fn split_top_level(text: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0u32, 0);
    for (index, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.checked_sub(1).ok_or("unbalanced ')'")?,
            ',' if depth == 0 => {
                parts.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced '('".into());
    }
    parts.push(&text[start..]);
    if parts.iter().any(|part| part.trim().is_empty()) {
        return Err("empty requirement".into());
    }
    Ok(parts)
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    if part.contains(['<', '>']) {
        return Err(format!(
            "{part:?}: the operators < and > are not supported for shards"
        ));
    }
    let (key, operator) = if let Some(key) = part.strip_prefix('!') {
        (key.trim(), Operator::DoesNotExist)
    } else if let Some((key, value)) = part.split_once("!=") {
        (key.trim(), Operator::NotEquals(value_of(value)?))
    } else if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
        (key.trim(), Operator::Equals(value_of(value)?))
    } else if let Some((head, values)) = part.split_once('(') {
        let values = values
            .strip_suffix(')')
            .ok_or_else(|| format!("{part:?}: text after ')'"))?
            .split(',')
            .map(value_of)
            .collect::<Result<Vec<_>, _>>()?;
        match head.split_whitespace().collect::<Vec<_>>()[..] {
            [key, "in"] => (key, Operator::In(values)),
            [key, "notin"] => (key, Operator::NotIn(values)),
            _ => {
                return Err(format!(
                    "{part:?}: expected KEY in (...) or KEY notin (...)"
                ));
            }
        }
    } else {
        (part, Operator::Exists)
    };
    check_key(key)?;
    Ok(Requirement {
        key: key.to_owned(),
        operator,
    })
}

/// A label value: at most 63 characters, empty or alphanumeric at both ends with `-_.` inside.
fn value_of(text: &str) -> Result<String, String> {
    let value = text.trim();
    if value.is_empty() || is_name(value) {
        Ok(value.to_owned())
    } else {
        Err(format!("{value:?} is not a valid label value"))
    }
}

/// A label key: an optional DNS subdomain prefix and '/', then a name of at most 63 characters.
fn check_key(key: &str) -> Result<(), String> {
    let (prefix, name) = key
        .rsplit_once('/')
        .map_or((None, key), |(p, n)| (Some(p), n));
    let prefix_ok = prefix.is_none_or(|prefix| {
        prefix.len() <= 253
            && prefix.split('.').all(|part| {
                !part.is_empty()
                    && part.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && part.ends_with(|c: char| c.is_ascii_alphanumeric())
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            })
    });
    if prefix_ok && is_name(name) {
        Ok(())
    } else {
        Err(format!("{key:?} is not a valid label key"))
    }
}

fn is_name(name: &str) -> bool {
    name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The normalized spelling the Lease name is derived from: no spaces but the one between a
/// key and `in`/`notin`, `==` as `=`, the requirements and values in the order written. The
/// chart derives the same name with Helm's own functions (`flowrun-operator.leaseName`), which
/// is why the normalization is no more than that: its RBAC grants the Lease by name.
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, requirement) in self.requirements.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            let key = &requirement.key;
            match &requirement.operator {
                Operator::Exists => write!(f, "{key}")?,
                Operator::DoesNotExist => write!(f, "!{key}")?,
                Operator::Equals(value) => write!(f, "{key}={value}")?,
                Operator::NotEquals(value) => write!(f, "{key}!={value}")?,
                Operator::In(values) => write!(f, "{key} in({})", values.join(","))?,
                Operator::NotIn(values) => write!(f, "{key} notin({})", values.join(","))?,
            }
        }
        Ok(())
    }
}

impl LabelSelector {
    /// True when an object with these labels is selected, by the API server's rules (`!=` and
    /// `notin` hold for an object without the key).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|requirement| {
            let value = labels.get(&requirement.key);
            match &requirement.operator {
                Operator::Exists => value.is_some(),
                Operator::DoesNotExist => value.is_none(),
                Operator::Equals(wanted) => value == Some(wanted),
                Operator::NotEquals(unwanted) => value != Some(unwanted),
                Operator::In(values) => value.is_some_and(|value| values.contains(value)),
                Operator::NotIn(values) => value.is_none_or(|value| !values.contains(value)),
            }
        })
    }

    /// The label keys the selector reads, each once, in the order written.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        for requirement in &self.requirements {
            if !keys.contains(&requirement.key) {
                keys.push(requirement.key.clone());
            }
        }
        keys
    }
}

/// The Lease of a shard: `base` without a selector, else `base-<10 hex digits of the SHA-256
/// of the normalized selector>`, so each shard has its own Lease and its own standby.
pub fn lease_name(base: &str, selector: Option<&LabelSelector>) -> Result<String, String> {
    let Some(selector) = selector else {
        return Ok(base.to_owned());
    };
    let digest = Sha256::digest(selector.to_string().as_bytes());
    let hash: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    let name = format!("{base}-{}", &hash[..LEASE_HASH_LEN]);
    if name.len() > 253 {
        return Err(format!(
            "the Lease name {name:?} is longer than 253 characters; shorten --leader-election-lease-name"
        ));
    }
    Ok(name)
}

/// The labels of a FlowRun a schedule creates: its template's, with the schedule's own value
/// of every shard key (or none where the schedule has none). A FlowRun's shard then depends
/// only on labels the schedule has too, so the FlowRun is selected exactly when its schedule
/// is: it lands in the schedule's shard, whose cache is where the schedule looks for it.
pub fn shard_labels(
    mut template: BTreeMap<String, String>,
    schedule: &BTreeMap<String, String>,
    shard_keys: &[String],
) -> BTreeMap<String, String> {
    for key in shard_keys {
        match schedule.get(key) {
            Some(value) => template.insert(key.clone(), value.clone()),
            None => template.remove(key),
        };
    }
    template
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn selector(text: &str) -> LabelSelector {
        text.parse()
            .unwrap_or_else(|error| panic!("{text}: {error}"))
    }

    #[test]
    fn selectors_match_as_the_api_server_matches_them() {
        let team_a = labels(&[("team", "a")]);
        let team_b = labels(&[("team", "b"), ("tier", "gold")]);
        let none = labels(&[]);
        let table: &[(&str, [bool; 3])] = &[
            // (selector, [team=a, team=b tier=gold, no labels])
            ("team=a", [true, false, false]),
            ("team==a", [true, false, false]),
            ("team!=a", [false, true, true]),
            ("team", [true, true, false]),
            ("!team", [false, false, true]),
            ("team in (a, b)", [true, true, false]),
            ("team notin (a)", [false, true, true]),
            ("team=b,tier=gold", [false, true, false]),
            ("team in (a,b), !tier", [true, false, false]),
            ("example.com/team=a", [false, false, false]),
        ];
        for (text, expected) in table {
            let parsed = selector(text);
            let seen = [&team_a, &team_b, &none].map(|l| parsed.matches(l));
            assert_eq!(&seen, expected, "{text}");
        }
    }

    #[test]
    fn bad_selectors_are_refused_naming_what_is_wrong() {
        for (text, reason) in [
            ("", "empty requirement"),
            ("team=a,", "empty requirement"),
            ("team in (a", "unbalanced '('"),
            ("team in a)", "unbalanced ')'"),
            ("team=a b", "not a valid label value"),
            ("Team!/x=a", "not a valid label key"),
            ("-team", "not a valid label key"),
            ("team in (a) x", "text after ')'"),
            ("team within (a)", "expected KEY in (...)"),
            ("replicas>3", "not supported"),
        ] {
            let error = text.parse::<LabelSelector>().expect_err(text).to_string();
            assert!(error.contains(reason), "{text}: {error}");
        }
    }

    #[test]
    fn the_normalized_spelling_ignores_spaces_but_keeps_the_order_written() {
        assert_eq!(
            selector(" team in ( a , b ) ,tier == gold, ! legacy,x != y ").to_string(),
            "team in(a,b),tier=gold,!legacy,x!=y"
        );
        assert_eq!(selector("team notin (a)").to_string(), "team notin(a)");
        assert_eq!(selector("team").keys(), ["team"]);
        assert_eq!(selector("team=a,!team,tier").keys(), ["team", "tier"]);
    }

    #[test]
    fn each_selector_has_its_own_lease_and_spaces_do_not_change_it() {
        assert_eq!(
            lease_name("flowrun-operator", None).as_deref(),
            Ok("flowrun-operator")
        );
        let a = lease_name("flowrun-operator", Some(&selector("team=a")));
        // The chart's helper renders these same names (tests/chart/test_chart.py checks them).
        assert_eq!(a.as_deref(), Ok("flowrun-operator-289b4946fe"));
        assert_eq!(
            lease_name("flowrun-operator", Some(&selector(" team == a "))),
            a
        );
        assert_eq!(
            lease_name("flowrun-operator", Some(&selector("team in (b, c)"))).as_deref(),
            Ok("flowrun-operator-db05b97f49")
        );
        let names: std::collections::HashSet<String> = ["team=a", "team=b", "!team", "team"]
            .iter()
            .map(|text| lease_name("x", Some(&selector(text))).expect("fits"))
            .collect();
        assert_eq!(names.len(), 4, "{names:?}");
        assert!(lease_name(&"x".repeat(243), Some(&selector("team=a"))).is_err());
    }

    #[test]
    fn a_schedules_flowruns_carry_its_shard_labels_and_land_in_its_shard() {
        let keys = vec!["team".to_owned()];
        let template = labels(&[("team", "b"), ("app", "crm")]);
        // The schedule's value wins over the template's.
        assert_eq!(
            shard_labels(template.clone(), &labels(&[("team", "a")]), &keys),
            labels(&[("team", "a"), ("app", "crm")])
        );
        // A schedule without the key (the catch-all's) has FlowRuns without it.
        assert_eq!(
            shard_labels(template.clone(), &labels(&[]), &keys),
            labels(&[("app", "crm")])
        );
        // Without shards the template is kept as it is.
        assert_eq!(shard_labels(template.clone(), &labels(&[]), &[]), template);
        // Whatever the selector over these keys, the FlowRun is selected when its schedule is.
        for text in [
            "team=a",
            "!team",
            "team in (a,c)",
            "team notin (a)",
            "team!=b",
        ] {
            let selector = selector(text);
            for schedule in [
                labels(&[("team", "a")]),
                labels(&[("team", "b")]),
                labels(&[]),
            ] {
                let child = shard_labels(template.clone(), &schedule, &selector.keys());
                assert_eq!(
                    selector.matches(&child),
                    selector.matches(&schedule),
                    "{text}: {schedule:?}"
                );
            }
        }
    }
}
