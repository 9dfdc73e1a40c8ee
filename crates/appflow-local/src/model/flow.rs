//! One flow and its runs: how a run moves from InProgress to its outcome as time passes, and
//! how a cancel plays out.

use jiff::Timestamp;
use serde::Serialize;

use crate::config::{FlowSpec, FlowStatus, Outcome, Seconds, TriggerType};
use crate::errors::{AppFlowError, ErrorKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ExecutionStatus {
    InProgress,
    Successful,
    Error,
    CancelStarted,
    Canceled,
}

pub struct Flow {
    pub spec: FlowSpec,
    pub status: FlowStatus,
    pub created_at: Timestamp,
    pub last_updated_at: Timestamp,
    // Oldest first and append-only, so a records page cursor can be an index.
    pub(super) runs: Vec<Run>,
}

/// What DescribeFlow and ListFlows report about the latest run.
pub struct LastRun {
    pub status: ExecutionStatus,
    pub time: Timestamp,
    pub message: Option<String>,
}

impl Flow {
    pub(super) fn new(spec: FlowSpec, now: Timestamp) -> Self {
        Self {
            status: spec.status,
            spec,
            created_at: now,
            last_updated_at: now,
            runs: Vec::new(),
        }
    }

    pub fn last_run(&self, now: Timestamp) -> Option<LastRun> {
        self.runs.last().map(|run| {
            let state = run.state(now);
            LastRun {
                status: state.status,
                time: run.started_at,
                message: state
                    .result
                    .and_then(|result| result.error)
                    .map(|error| error.message),
            }
        })
    }

    pub(super) fn start(
        &mut self,
        now: Timestamp,
        execution_id: String,
    ) -> Result<Started, AppFlowError> {
        let execution_id = match self.spec.trigger_type {
            TriggerType::OnDemand if self.status != FlowStatus::Active => {
                return Err(AppFlowError::new(
                    ErrorKind::Conflict,
                    format!(
                        "Flow {} is {:?} and cannot run",
                        self.spec.name, self.status
                    ),
                ));
            }
            TriggerType::OnDemand => {
                self.runs.push(Run {
                    id: execution_id.clone(),
                    started_at: now,
                    plan: self.spec.clone(),
                    cancel_requested_at: None,
                });
                Some(execution_id)
            }
            // Starting a scheduled or event flow activates it; its runs are not simulated.
            TriggerType::Scheduled | TriggerType::Event => {
                self.set_status(FlowStatus::Active, now);
                None
            }
        };
        Ok(Started {
            flow_name: self.spec.name.clone(),
            flow_status: self.status,
            execution_id,
        })
    }

    pub(super) fn set_status(&mut self, status: FlowStatus, now: Timestamp) {
        if self.status != status {
            self.status = status;
            self.last_updated_at = now;
        }
    }
}

#[derive(Debug, Clone)]
pub struct Run {
    pub id: String,
    pub started_at: Timestamp,
    // The flow's behaviour when the run started; a later upsert does not change a running run.
    plan: FlowSpec,
    pub(super) cancel_requested_at: Option<Timestamp>,
}

/// A run as seen at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct RunState {
    pub status: ExecutionStatus,
    pub last_updated_at: Timestamp,
    pub data_pull_end_time: Option<Timestamp>,
    pub result: Option<RunResult>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunResult {
    pub records_processed: u64,
    pub bytes_processed: u64,
    pub bytes_written: u64,
    pub error: Option<RunError>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunError {
    pub put_failures_count: u64,
    pub message: String,
}

impl Run {
    pub fn in_progress(&self, now: Timestamp) -> bool {
        self.state(now).status == ExecutionStatus::InProgress
    }

    /// Makes the run end at `now` instead of when its plan said.
    pub(super) fn finish_at(&mut self, now: Timestamp) {
        self.plan.run_seconds = Seconds(now.duration_since(self.started_at));
    }

    pub fn state(&self, now: Timestamp) -> RunState {
        if let Some(cancel_requested_at) = self.cancel_requested_at {
            let canceled_at = cancel_requested_at + self.plan.cancel_seconds.0;
            let (status, last_updated_at) = if now >= canceled_at {
                (ExecutionStatus::Canceled, canceled_at)
            } else {
                (ExecutionStatus::CancelStarted, cancel_requested_at)
            };
            return RunState {
                status,
                last_updated_at,
                data_pull_end_time: None,
                result: None,
            };
        }
        let finished_at = self.started_at + self.plan.run_seconds.0;
        if now < finished_at {
            return RunState {
                status: ExecutionStatus::InProgress,
                last_updated_at: self.started_at,
                data_pull_end_time: None,
                result: None,
            };
        }
        let error = (self.plan.outcome == Outcome::Error).then(|| RunError {
            put_failures_count: self.plan.put_failures_count,
            message: self.plan.error_message().to_owned(),
        });
        RunState {
            status: match error {
                Some(_) => ExecutionStatus::Error,
                None => ExecutionStatus::Successful,
            },
            last_updated_at: finished_at,
            data_pull_end_time: Some(finished_at),
            result: Some(RunResult {
                records_processed: self.plan.records_processed,
                bytes_processed: self.plan.bytes_processed,
                bytes_written: self.plan.bytes_written,
                error,
            }),
        }
    }
}

/// A StartFlow answer, kept per clientToken so a replay gets the very same one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub flow_name: String,
    pub flow_status: FlowStatus,
    pub execution_id: Option<String>,
}
