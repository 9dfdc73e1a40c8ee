//! The pure rules of flowrun-operator: given a FlowRun and what was observed (the clock, the
//! policies, AppFlow's answers), what to do. No Kubernetes client, no async runtime, no AWS SDK:
//! every rule is tested as a row in a table.
//!
//! - [`decide`]: the pipeline's decide step.
//! - [`appflow`]: AppFlow's calls and answers as data, and what its errors mean.
//! - [`permit`]: a FlowRun checked against its namespace's FlowRunPolicies.
//! - [`conditions`]: kstatus conditions merged; [`backoff`]: retry and poll delays.
//! - [`schedule`]: what a FlowRunSchedule does at a slot, and when its slots are.
//! - [`trim`]: what the watch cache may drop because the rules never read it.
//! - [`shard`]: the label selector of a shard, its Lease name, its schedules' FlowRun labels.

pub mod appflow;
pub mod backoff;
pub mod conditions;
pub mod decide;
pub mod permit;
pub mod schedule;
pub mod shard;
pub mod trim;
