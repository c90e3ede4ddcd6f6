//! The diorama harness library. The `diorama` binary is a thin layer over it.

pub mod cli;
pub mod exit;
pub mod container;
pub mod state;
pub mod readiness;
pub mod workload;
pub mod topology;
pub mod plan;
pub mod clean;
pub mod experiment;
pub mod testbed;
pub mod suite;
pub mod validate;
pub mod report;
pub mod compare;
pub mod fault;
