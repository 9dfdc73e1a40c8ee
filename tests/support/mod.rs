//! Shared helpers for the integration tests: each test binary includes this module and uses only
//! part of it, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod appflow_local;
pub mod chart;
pub mod cluster;
pub mod flowruns;
pub mod operator;
pub mod own_cluster;
pub mod prometheus;
pub mod workspace;
