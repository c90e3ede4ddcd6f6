//! The diorama run engine: prepares, starts, supervises, stops and tears down one experiment
//! described by its own spec types ([`TestbedSpec`], [`FaultSchedule`]), never by the
//! catalog's files, so that a host agent can drive it alone.
//!
//! # Design
//! - [`engine`] owns every object of a run (state record, cgroups, containers, network,
//!   metrics) and tears them down in `Drop`; it applies the [`FaultSchedule`] from its loop
//!   and writes `run.json` at its end.
//! - [`container`] runs one node in its namespaces; [`cgroup`] limits and measures it;
//!   [`network`] builds the emulated network; [`state`] records what exists for
//!   [`clean`].

/// Writes a line to stderr, ignoring failure: a harness whose stderr reader went away (a
/// closed pipe) must still stop and tear its run down, where `eprintln!` would panic and a
/// second panic in the teardown's own messages would abort with cgroups left behind.
/// The line is formatted whole and written in one call through [`progress::Stderr`], so it
/// never lands in the middle of the live progress line or of another thread's line.
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut line = format!($($arg)*);
        line.push('\n');
        let _ = $crate::progress::Stderr.write_all(line.as_bytes());
    }};
}

pub mod awake;
pub mod cache_decay;
pub mod cgroup;
pub mod clean;
pub mod container;
mod dilation_choice;
mod engine;
mod events;
mod metrics;
mod network;
mod parallel;
pub mod progress;
pub mod readiness;
mod schedule;
mod spec;
pub mod state;

pub use cgroup::{remove_run_parent, NodeCgroup, ResourceError};
pub use dilation_choice::refusal as dilation_refusal;
pub use engine::{host_facts, run, tail, NodeOutcome, RunOptions, RunOutcome, TestbedError};
pub use metrics::{Fidelity, FidelityFlag, FidelityThresholds, LinkSampler};
pub use schedule::{CpuLimit, Degrade, FaultInfo, FaultSchedule, FaultStep, Operation};
pub use spec::{DiskLimit, FilesystemView, NetBackend, NodeResources, NodeSpec, ReadyCheck, TestbedSpec};
