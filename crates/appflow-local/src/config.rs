//! The YAML configuration: which flows exist and how their runs behave. The same `FlowSpec` schema
//! is accepted by `PUT /_local/flows`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use jiff::SignedDuration;
use serde::{Deserialize, Serialize};

pub use flowrun_api::flowrun::{FLOW_NAME_MAX, FLOW_NAME_RULE, is_valid_flow_name};
/// ExecutionMessage: max 2048 (its pattern is not enforced: real messages do not follow it either).
const EXECUTION_MESSAGE_MAX: usize = 2048;
/// Run and cancel durations are capped so timestamp arithmetic can never overflow.
const MAX_SECONDS: f64 = 366.0 * 24.0 * 3600.0;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to read config {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to parse config {}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_yaml_ng::Error,
    },
    #[error("invalid config {}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub flows: Vec<FlowSpec>,
    /// IAM roles the local STS lets callers assume.
    #[serde(default)]
    pub roles: Vec<crate::sts::RoleSpec>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config: Config =
            serde_yaml_ng::from_str(&text).map_err(|source| ConfigError::Parse {
                path: path.to_owned(),
                source,
            })?;
        config.validate().map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        let mut names = BTreeSet::new();
        for (index, flow) in self.flows.iter().enumerate() {
            flow.validate()
                .map_err(|message| format!("flows[{index}]: {message}"))?;
            if !names.insert(flow.name.as_str()) {
                return Err(format!(
                    "flows[{index}]: duplicate flow name {:?}",
                    flow.name
                ));
            }
        }
        Ok(())
    }
}

/// One flow and the behaviour of every run started from it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FlowSpec {
    pub name: String,
    #[serde(default)]
    pub trigger_type: TriggerType,
    #[serde(default)]
    pub status: FlowStatus,
    /// How long a run stays InProgress.
    #[serde(default = "default_run_seconds")]
    pub run_seconds: Seconds,
    #[serde(default)]
    pub outcome: Outcome,
    /// The run's `errorInfo.executionMessage` when `outcome` is Error.
    pub error_message: Option<String>,
    #[serde(default)]
    pub records_processed: u64,
    #[serde(default)]
    pub bytes_processed: u64,
    #[serde(default)]
    pub bytes_written: u64,
    /// The run's `errorInfo.putFailuresCount` when `outcome` is Error.
    #[serde(default)]
    pub put_failures_count: u64,
    /// How long a cancelled run stays CancelStarted before it is Canceled.
    #[serde(default = "default_cancel_seconds")]
    pub cancel_seconds: Seconds,
}

const DEFAULT_ERROR_MESSAGE: &str = "Flow execution failed";

impl FlowSpec {
    pub fn validate(&self) -> Result<(), String> {
        if !is_valid_flow_name(&self.name) {
            return Err(format!(
                "flow name {:?} must be at most {FLOW_NAME_MAX} characters matching {FLOW_NAME_RULE}",
                self.name
            ));
        }
        match (&self.error_message, self.outcome) {
            (Some(_), Outcome::Successful) => {
                Err("errorMessage is only used with outcome: Error".to_owned())
            }
            (Some(message), Outcome::Error) if message.chars().count() > EXECUTION_MESSAGE_MAX => {
                Err(format!(
                    "errorMessage is longer than {EXECUTION_MESSAGE_MAX} characters"
                ))
            }
            _ => Ok(()),
        }
    }

    pub fn error_message(&self) -> &str {
        self.error_message
            .as_deref()
            .unwrap_or(DEFAULT_ERROR_MESSAGE)
    }
}

/// A non-negative duration written as (fractional) seconds.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "f64")]
pub struct Seconds(pub SignedDuration);

impl TryFrom<f64> for Seconds {
    type Error = String;

    fn try_from(seconds: f64) -> Result<Self, Self::Error> {
        if !(0.0..=MAX_SECONDS).contains(&seconds) {
            return Err(format!(
                "{seconds} is not a number of seconds in 0..={MAX_SECONDS}"
            ));
        }
        SignedDuration::try_from_secs_f64(seconds)
            .map(Seconds)
            .map_err(|err| err.to_string())
    }
}

fn default_run_seconds() -> Seconds {
    Seconds(SignedDuration::from_secs(5))
}

fn default_cancel_seconds() -> Seconds {
    Seconds(SignedDuration::from_secs(1))
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum TriggerType {
    #[default]
    OnDemand,
    Scheduled,
    Event,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum FlowStatus {
    #[default]
    Active,
    Deprecated,
    Deleted,
    Draft,
    Errored,
    Suspended,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Outcome {
    #[default]
    Successful,
    Error,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Config, String> {
        let config: Config = serde_yaml_ng::from_str(yaml).map_err(|err| err.to_string())?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn example_config_is_valid() {
        let config = parse(include_str!("../../../examples/appflow-local/flows.yaml")).unwrap();
        let triggers: Vec<TriggerType> =
            config.flows.iter().map(|flow| flow.trigger_type).collect();
        assert_eq!(
            triggers,
            [
                TriggerType::OnDemand,
                TriggerType::OnDemand,
                TriggerType::Scheduled,
                TriggerType::Event
            ]
        );
    }

    #[test]
    fn minimal_flow_gets_sane_defaults() {
        let config = parse("flows:\n  - name: demo\n").unwrap();
        let flow = &config.flows[0];
        assert_eq!(flow.trigger_type, TriggerType::OnDemand);
        assert_eq!(flow.status, FlowStatus::Active);
        assert_eq!(flow.outcome, Outcome::Successful);
        assert_eq!(flow.run_seconds, Seconds(SignedDuration::from_secs(5)));
        assert_eq!(flow.cancel_seconds, Seconds(SignedDuration::from_secs(1)));
        assert_eq!(flow.error_message(), DEFAULT_ERROR_MESSAGE);
    }

    #[test]
    fn fractional_seconds_are_accepted() {
        let config = parse("flows:\n  - name: demo\n    runSeconds: 0.25\n").unwrap();
        assert_eq!(
            config.flows[0].run_seconds,
            Seconds(SignedDuration::from_millis(250))
        );
    }

    #[test]
    fn bad_configs_are_refused_with_a_pointed_message() {
        let cases = [
            (
                "flows:\n  - name: demo\n    triggerTyp: Event\n",
                "unknown field `triggerTyp`",
            ),
            (
                "flows:\n  - name: demo\n    triggerType: Cron\n",
                "unknown variant `Cron`",
            ),
            (
                "flows:\n  - name: has space\n",
                "flows[0]: flow name \"has space\"",
            ),
            ("flows:\n  - name: a\n", "flows[0]: flow name \"a\""),
            (
                "flows:\n  - name: demo\n    runSeconds: -1\n",
                "is not a number of seconds",
            ),
            (
                "flows:\n  - name: demo\n    recordsProcessed: -5\n",
                "flows[0].recordsProcessed: invalid type",
            ),
            (
                "flows:\n  - name: demo\n    errorMessage: boom\n",
                "only used with outcome: Error",
            ),
            (
                "flows:\n  - name: demo\n  - name: demo\n",
                "flows[1]: duplicate flow name",
            ),
            ("flow: []\n", "unknown field `flow`"),
        ];
        for (yaml, expected) in cases {
            let err = parse(yaml).unwrap_err();
            assert!(
                err.contains(expected),
                "{yaml:?}: {err:?} lacks {expected:?}"
            );
        }
    }
}
