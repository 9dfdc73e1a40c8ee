//! Fault injection: rules that make matching AppFlow calls fail, slow down or hang. They are
//! judged before the operation runs, so a faulted call changes no state; the one exception,
//! `slowResponse`, lets the operation take effect and then holds its answer (a client that dies
//! meanwhile never learns the outcome).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::errors::{AppFlowError, ErrorKind};
use crate::wire::Operation;

/// The longest a request is held by a hang or latency fault (shutdown releases it sooner).
pub const MAX_HOLD: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum FaultKind {
    Throttling,
    Internal,
    Quota,
    Conflict,
    NotFound,
    AccessDenied,
    Validation,
    Latency,
    SlowResponse,
    Hang,
}

/// How a fired fault replaces the operation; latency only delays it.
#[derive(Debug, PartialEq)]
pub enum Disruption {
    Fail(AppFlowError),
    Hang,
}

impl FaultKind {
    fn disruption(self) -> Option<Disruption> {
        let fail = |kind: ErrorKind, message: &str| {
            Some(Disruption::Fail(AppFlowError::new(
                kind,
                format!("{message} (injected by appflow-local)"),
            )))
        };
        match self {
            FaultKind::Throttling => fail(ErrorKind::Throttling, "Rate exceeded"),
            FaultKind::Internal => fail(ErrorKind::InternalServer, "An internal error occurred"),
            FaultKind::Quota => fail(ErrorKind::ServiceQuotaExceeded, "Service quota exceeded"),
            FaultKind::Conflict => fail(
                ErrorKind::Conflict,
                "There was a conflict when processing the request",
            ),
            FaultKind::NotFound => fail(
                ErrorKind::ResourceNotFound,
                "The requested resource was not found",
            ),
            FaultKind::AccessDenied => fail(
                ErrorKind::AccessDenied,
                "User is not authorized to perform this action",
            ),
            FaultKind::Validation => fail(ErrorKind::Validation, "Request validation failed"),
            FaultKind::Hang => Some(Disruption::Hang),
            FaultKind::Latency | FaultKind::SlowResponse => None,
        }
    }
}

/// `"*"` or an operation name such as `"StartFlow"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum OperationSelector {
    Any,
    Only(Operation),
}

impl TryFrom<String> for OperationSelector {
    type Error = String;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        if name == "*" {
            return Ok(OperationSelector::Any);
        }
        Operation::ALL
            .into_iter()
            .find(|op| op.to_string() == name)
            .map(OperationSelector::Only)
            .ok_or_else(|| {
                format!(
                    "unknown operation {name:?}, expected \"*\" or one of {:?}",
                    Operation::ALL
                )
            })
    }
}

impl From<OperationSelector> for String {
    fn from(selector: OperationSelector) -> Self {
        match selector {
            OperationSelector::Any => "*".to_owned(),
            OperationSelector::Only(op) => op.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultRule {
    pub operation: OperationSelector,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_name: Option<String>,
    pub kind: FaultKind,
    #[serde(default = "always")]
    pub probability: f64,
    /// How many more times the rule fires; unlimited when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// For latency and slowResponse faults only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
}

fn always() -> f64 {
    1.0
}

impl FaultRule {
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.probability) {
            return Err(format!("probability {} is not in 0..=1", self.probability));
        }
        if self.flow_name.is_some()
            && self.operation == OperationSelector::Only(Operation::ListFlows)
        {
            return Err("ListFlows names no flow, so a flowName rule cannot match it".to_owned());
        }
        match (self.kind.is_delay(), self.delay_ms) {
            (true, None) => Err("latency and slowResponse faults need delayMs".to_owned()),
            (true, Some(ms)) if Duration::from_millis(ms) > MAX_HOLD => Err(format!(
                "delayMs {ms} is longer than {} ms",
                MAX_HOLD.as_millis()
            )),
            (true, Some(_)) | (false, None) => Ok(()),
            (false, Some(_)) => {
                Err("delayMs is only used by latency and slowResponse faults".to_owned())
            }
        }
    }

    fn matches(&self, op: Operation, flow_name: Option<&str>) -> bool {
        let op_matches = match self.operation {
            OperationSelector::Any => true,
            OperationSelector::Only(only) => only == op,
        };
        let flow_matches = match &self.flow_name {
            None => true,
            Some(name) => flow_name == Some(name.as_str()),
        };
        op_matches && flow_matches && self.count != Some(0)
    }
}

impl FaultKind {
    /// Faults that only delay the answer, before or after the operation takes effect.
    fn is_delay(self) -> bool {
        matches!(self, FaultKind::Latency | FaultKind::SlowResponse)
    }
}

/// What the rules decided for one call.
#[derive(Debug, Default, PartialEq)]
pub struct Verdict {
    /// Fired faults in rule order: any delay faults, then at most one disruptive fault.
    pub fired: Vec<FaultKind>,
    /// Held before the operation runs.
    pub delay: Duration,
    /// Held after the operation took effect, before it is answered.
    pub response_delay: Duration,
}

impl Verdict {
    pub fn disruption(&self) -> Option<Disruption> {
        self.fired.last().and_then(|kind| kind.disruption())
    }
}

pub struct Faults {
    rules: Vec<FaultRule>,
    rng: XorShift,
}

impl Faults {
    pub fn new(seed: u64) -> Self {
        Self {
            rules: Vec::new(),
            rng: XorShift::new(seed),
        }
    }

    pub fn rules(&self) -> &[FaultRule] {
        &self.rules
    }

    pub fn set(&mut self, rules: Vec<FaultRule>) {
        self.rules = rules;
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }

    /// Fires matching rules in order: delay faults add up, the first other fault ends the
    /// search. A fired rule uses up one of its `count`.
    pub fn judge(&mut self, op: Operation, flow_name: Option<&str>) -> Verdict {
        let mut verdict = Verdict::default();
        for rule in self.rules.iter_mut() {
            if !rule.matches(op, flow_name)
                || (rule.probability < 1.0 && self.rng.next_f64() >= rule.probability)
            {
                continue;
            }
            if let Some(count) = rule.count.as_mut() {
                *count -= 1;
            }
            verdict.fired.push(rule.kind);
            let delay = Duration::from_millis(rule.delay_ms.unwrap_or_default());
            match rule.kind {
                FaultKind::Latency => verdict.delay += delay,
                FaultKind::SlowResponse => verdict.response_delay += delay,
                _ => break,
            }
        }
        verdict.delay = verdict.delay.min(MAX_HOLD);
        verdict.response_delay = verdict.response_delay.min(MAX_HOLD);
        verdict
    }
}

/// xorshift64*: enough for fault probabilities, without a dependency.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        // The state must never be zero.
        Self(seed | 1)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(json: &str) -> Vec<FaultRule> {
        let rules: Vec<FaultRule> = serde_json::from_str(json).unwrap();
        for rule in &rules {
            rule.validate().unwrap();
        }
        rules
    }

    fn faults(json: &str) -> Faults {
        let mut faults = Faults::new(42);
        faults.set(rules(json));
        faults
    }

    #[test]
    fn count_limits_how_often_a_rule_fires() {
        let mut faults = faults(r#"[{"operation":"StartFlow","kind":"throttling","count":2}]"#);
        let fired: Vec<Vec<FaultKind>> = (0..3)
            .map(|_| faults.judge(Operation::StartFlow, Some("f")).fired)
            .collect();
        assert_eq!(
            fired,
            [
                vec![FaultKind::Throttling],
                vec![FaultKind::Throttling],
                vec![]
            ]
        );
        assert_eq!(faults.rules()[0].count, Some(0));
    }

    #[test]
    fn rules_match_on_operation_and_flow_name() {
        let json = r#"[{"operation":"StartFlow","flowName":"a","kind":"quota"},
                       {"operation":"*","kind":"internal"}]"#;
        let cases = [
            (Operation::StartFlow, Some("a"), FaultKind::Quota),
            (Operation::StartFlow, Some("b"), FaultKind::Internal),
            (Operation::ListFlows, None, FaultKind::Internal),
        ];
        for (op, flow, expected) in cases {
            assert_eq!(
                faults(json).judge(op, flow).fired,
                [expected],
                "{op} {flow:?}"
            );
        }
        assert!(
            faults(json)
                .judge(Operation::StartFlow, Some("a"))
                .disruption()
                .is_some()
        );
    }

    #[test]
    fn latency_adds_up_until_a_disruptive_fault() {
        let mut faults = faults(
            r#"[{"operation":"*","kind":"latency","delayMs":100},
                {"operation":"*","kind":"latency","delayMs":50},
                {"operation":"*","kind":"hang"},
                {"operation":"*","kind":"conflict"}]"#,
        );
        let verdict = faults.judge(Operation::DescribeFlow, Some("f"));
        assert_eq!(
            verdict.fired,
            [FaultKind::Latency, FaultKind::Latency, FaultKind::Hang]
        );
        assert_eq!(verdict.delay, Duration::from_millis(150));
        assert_eq!(verdict.disruption(), Some(Disruption::Hang));
        let latency_only = Verdict {
            fired: vec![FaultKind::Latency],
            ..Verdict::default()
        };
        assert_eq!(latency_only.disruption(), None);
    }

    #[test]
    fn slow_response_delays_the_answer_not_the_operation() {
        let mut faults = faults(
            r#"[{"operation":"StartFlow","kind":"slowResponse","delayMs":300},
                {"operation":"StartFlow","kind":"latency","delayMs":100}]"#,
        );
        let verdict = faults.judge(Operation::StartFlow, Some("f"));
        assert_eq!(verdict.fired, [FaultKind::SlowResponse, FaultKind::Latency]);
        assert_eq!(verdict.delay, Duration::from_millis(100));
        assert_eq!(verdict.response_delay, Duration::from_millis(300));
        assert_eq!(verdict.disruption(), None);
    }

    #[test]
    fn probability_decides_how_often_a_rule_fires() {
        let mut never = faults(r#"[{"operation":"*","kind":"internal","probability":0}]"#);
        assert!((0..1000).all(|_| never.judge(Operation::StopFlow, None).fired.is_empty()));
        let mut half = faults(r#"[{"operation":"*","kind":"internal","probability":0.5}]"#);
        let fired = (0..1000)
            .filter(|_| !half.judge(Operation::StopFlow, None).fired.is_empty())
            .count();
        assert!((400..600).contains(&fired), "{fired}");
    }

    #[test]
    fn malformed_rules_are_refused() {
        let cases = [
            (
                r#"{"operation":"Start","kind":"internal"}"#,
                "unknown operation",
            ),
            (r#"{"operation":"*","kind":"boom"}"#, "unknown variant"),
            (
                r#"{"operation":"*","kind":"internal","probability":1.5}"#,
                "probability",
            ),
            (r#"{"operation":"*","kind":"latency"}"#, "need delayMs"),
            (r#"{"operation":"*","kind":"slowResponse"}"#, "need delayMs"),
            (
                r#"{"operation":"*","kind":"internal","delayMs":5}"#,
                "only used by latency",
            ),
            (
                r#"{"operation":"*","kind":"latency","delayMs":600001}"#,
                "longer than",
            ),
            (
                r#"{"operation":"ListFlows","flowName":"f","kind":"internal"}"#,
                "cannot match",
            ),
            (
                r#"{"operation":"*","kind":"internal","flow":"f"}"#,
                "unknown field",
            ),
        ];
        for (json, expected) in cases {
            let err = match serde_json::from_str::<FaultRule>(json) {
                Ok(rule) => rule.validate().unwrap_err(),
                Err(err) => err.to_string(),
            };
            assert!(err.contains(expected), "{json}: {err}");
        }
    }
}
