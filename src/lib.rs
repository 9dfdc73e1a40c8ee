//! flowrun-operator: runs Amazon AppFlow flows from `FlowRun` custom resources.
//!
//! The data takes one road: watch -> observe -> decide -> act -> report.
//! - [`controller`]: watch and reconcile; observes the clock and calls the other steps.
//! - [`decide`]: pure decisions (no I/O).
//! - [`appflow`]: act; the only module that calls AWS ([`tracker`] batches its history reads).
//! - [`report`]: status writes and events; the only module that writes to Kubernetes.

pub mod appflow;
pub mod conditions;
pub mod controller;
pub mod decide;
pub mod flowrun;
pub mod report;
pub mod settings;
pub mod tracker;
