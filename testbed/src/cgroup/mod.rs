//! A node's cgroups: create with limits, join, sample, freeze, remove.
//!
//! # Design
//! [`Cgroup`] is the one interface; [`v1::V1`] (one directory per controller hierarchy) and
//! [`v2::V2`] (one directory in the unified hierarchy) implement it, and [`AnyCgroup`]
//! selects between them at run time by `match` on the [`Layout`] detected from
//! `/proc/self/mounts`. Each implementation holds only paths and keeps no state of its own,
//! so unit tests run them on a tempdir laid out like cgroupfs. [`NodeCgroup`] is the
//! engine's handle: a node's cgroup at `diorama/<run>/<node>`, removed with what is in it.
//! Why this is hand-written rather than `cgroups-rs`: docs/decisions/010-cgroup-interface.md.

mod any;
mod cgroupfs;
mod error;
mod layout;
mod node;
pub mod v1;
pub mod v2;

use std::path::PathBuf;

use crate::spec::NodeResources;

pub use any::AnyCgroup;
pub use error::ResourceError;
pub use layout::{detect, detect_from, Layout};
pub use node::{empty_parents, remove_empty_parents, remove_run_parent, NodeCgroup};

/// Counters of one node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeStats {
    pub cpu_usage_ns: u64,
    pub throttled_ns: u64,
    pub memory_bytes: u64,
    pub pids: u64,
}

/// One node's cgroup in one cgroup version's files.
pub trait Cgroup {
    /// Creates the cgroup's directories (and, in v2, delegates the controllers down to it).
    fn create(&self) -> Result<(), ResourceError>;
    /// Applies a node's limits.
    fn apply(&self, res: &NodeResources) -> Result<(), ResourceError>;
    /// Sets the CFS quota and period (µs); `None` is unlimited.
    fn set_cpu(&self, quota_us: Option<u64>, period_us: u64) -> Result<(), ResourceError>;
    /// Freezes (`true`) or thaws the node's processes; freezing completes asynchronously.
    fn freeze(&self, frozen: bool) -> Result<(), ResourceError>;
    /// Whether the kernel reports the node frozen.
    fn frozen(&self) -> bool;
    /// Current counters (zero where a file is missing).
    fn stats(&self) -> NodeStats;
    /// Thread ids of the node.
    fn threads(&self) -> Vec<u32>;
    /// The `cgroup.procs` files; writing `0` into each moves the writer in.
    fn procs_files(&self) -> Vec<PathBuf>;
    /// Every directory of the cgroup, for removal.
    fn dirs(&self) -> Vec<PathBuf>;
}
