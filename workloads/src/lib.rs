//! Workload programs of diorama. Each binary runs inside a node or stand-alone.
//!
//! Workloads never link the harness: they talk to it through their command line, their
//! environment and the files they write into their working directory (`docs/results.md`).
#![forbid(unsafe_code)]

pub mod isaac;
pub mod lb;
pub mod loadgen;
pub mod memcache;
pub mod probe;
pub mod runtime;
pub mod stats;
