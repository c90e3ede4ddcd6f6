//! The cgroup of this host's version, chosen at run time.

use std::path::PathBuf;

use super::v1::V1;
use super::v2::V2;
use super::{Cgroup, Layout, NodeStats, ResourceError};
use crate::spec::NodeResources;

/// A v1 or v2 cgroup; every call goes to the version the host's [`Layout`] has.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyCgroup {
    V1(V1),
    V2(V2),
}

impl AnyCgroup {
    /// The cgroup at `rel` (e.g. `diorama/<run>/<node>`) in `layout`.
    pub fn new(layout: &Layout, rel: &str) -> Self {
        match layout {
            Layout::V1(hierarchies) => Self::V1(V1::new(hierarchies, rel)),
            Layout::V2(root) => Self::V2(V2::new(root, rel)),
        }
    }

    fn inner(&self) -> &dyn Cgroup {
        match self {
            Self::V1(c) => c,
            Self::V2(c) => c,
        }
    }
}

impl Cgroup for AnyCgroup {
    fn create(&self) -> Result<(), ResourceError> {
        self.inner().create()
    }
    fn apply(&self, res: &NodeResources) -> Result<(), ResourceError> {
        self.inner().apply(res)
    }
    fn set_cpu(&self, quota_us: Option<u64>, period_us: u64) -> Result<(), ResourceError> {
        self.inner().set_cpu(quota_us, period_us)
    }
    fn freeze(&self, frozen: bool) -> Result<(), ResourceError> {
        self.inner().freeze(frozen)
    }
    fn frozen(&self) -> bool {
        self.inner().frozen()
    }
    fn stats(&self) -> NodeStats {
        self.inner().stats()
    }
    fn threads(&self) -> Vec<u32> {
        self.inner().threads()
    }
    fn procs_files(&self) -> Vec<PathBuf> {
        self.inner().procs_files()
    }
    fn dirs(&self) -> Vec<PathBuf> {
        self.inner().dirs()
    }
}
