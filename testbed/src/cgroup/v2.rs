//! cgroup v2: one directory in the unified hierarchy; every ancestor delegates the
//! controllers (`cgroup.subtree_control`) to its children.

use std::path::{Path, PathBuf};

use super::cgroupfs::{ids, read_u64, stat_field, write};
use super::{Cgroup, NodeStats, ResourceError};
use crate::spec::NodeResources;

/// The controllers a node's ancestors delegate to it.
const DELEGATE: &str = "+cpu +memory +pids +io";

/// A node's cgroup `dir` below the unified hierarchy's `root`.
#[derive(Debug, Clone, PartialEq)]
pub struct V2 {
    root: PathBuf,
    rel: PathBuf,
}

impl V2 {
    /// The cgroup at `rel` below the unified hierarchy mounted at `root`.
    pub fn new(root: &Path, rel: &str) -> Self {
        Self { root: root.to_owned(), rel: PathBuf::from(rel) }
    }

    /// The cgroup's directory.
    pub fn dir(&self) -> PathBuf {
        self.root.join(&self.rel)
    }
}

impl Cgroup for V2 {
    /// Creates every ancestor, each delegating the controllers to its children. Delegation
    /// is best effort: a controller that another hierarchy holds cannot be enabled, and the
    /// limit that needs it fails later with its file named.
    fn create(&self) -> Result<(), ResourceError> {
        let mut dir = self.root.clone();
        for part in self.rel.parent().into_iter().flat_map(Path::components) {
            let _ = std::fs::write(dir.join("cgroup.subtree_control"), DELEGATE);
            dir = dir.join(part);
            std::fs::create_dir_all(&dir).map_err(|source| ResourceError::Create { path: dir.clone(), source })?;
        }
        let _ = std::fs::write(dir.join("cgroup.subtree_control"), DELEGATE);
        let own = self.dir();
        std::fs::create_dir_all(&own).map_err(|source| ResourceError::Create { path: own, source })
    }

    fn apply(&self, res: &NodeResources) -> Result<(), ResourceError> {
        let dir = self.dir();
        self.set_cpu(res.cpu_quota_us, res.cpu_period_us)?;
        if let Some(limit) = res.memory_bytes {
            write(&dir.join("memory.max"), &limit.to_string())?;
            let _ = std::fs::write(dir.join("memory.swap.max"), "0");
        }
        if let Some(max) = res.pids_max {
            write(&dir.join("pids.max"), &max.to_string())?;
        }
        for d in &res.io {
            let f = |k: &str, v: Option<u64>| v.map(|v| format!(" {k}={v}")).unwrap_or_default();
            let line = format!(
                "{}:{}{}{}{}{}",
                d.major,
                d.minor,
                f("rbps", d.read_bps),
                f("wbps", d.write_bps),
                f("riops", d.read_iops),
                f("wiops", d.write_iops)
            );
            write(&dir.join("io.max"), &line)?;
        }
        Ok(())
    }

    /// `cpu.max`: `QUOTA PERIOD` (`max` for unlimited), both in one write.
    fn set_cpu(&self, quota_us: Option<u64>, period_us: u64) -> Result<(), ResourceError> {
        let quota = quota_us.map_or("max".to_owned(), |q| q.to_string());
        write(&self.dir().join("cpu.max"), &format!("{quota} {period_us}"))
    }

    /// `cgroup.freeze`: `1` / `0`.
    fn freeze(&self, frozen: bool) -> Result<(), ResourceError> {
        write(&self.dir().join("cgroup.freeze"), if frozen { "1" } else { "0" })
    }

    /// `frozen 1` in `cgroup.events`.
    fn frozen(&self) -> bool {
        stat_field(&self.dir().join("cgroup.events"), "frozen") == Some(1)
    }

    fn stats(&self) -> NodeStats {
        let d = self.dir();
        NodeStats {
            cpu_usage_ns: stat_field(&d.join("cpu.stat"), "usage_usec").unwrap_or(0) * 1000,
            throttled_ns: stat_field(&d.join("cpu.stat"), "throttled_usec").unwrap_or(0) * 1000,
            memory_bytes: read_u64(&d.join("memory.current")).unwrap_or(0),
            pids: read_u64(&d.join("pids.current")).unwrap_or(0),
        }
    }

    /// `cgroup.threads`.
    fn threads(&self) -> Vec<u32> {
        ids(&self.dir().join("cgroup.threads"))
    }

    fn procs_files(&self) -> Vec<PathBuf> {
        vec![self.dir().join("cgroup.procs")]
    }

    fn dirs(&self) -> Vec<PathBuf> {
        vec![self.dir()]
    }
}
