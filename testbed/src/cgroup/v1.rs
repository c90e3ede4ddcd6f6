//! cgroup v1: one directory per controller hierarchy (`cpu`, `cpuacct`, `memory`, `pids`,
//! `blkio`, `freezer`), each under its own mount point.

use std::path::{Path, PathBuf};

use super::cgroupfs::{ids, read_u64, stat_field, write};
use super::{Cgroup, NodeStats, ResourceError};
use crate::spec::NodeResources;

/// A node's cgroup in each v1 hierarchy: (controller, directory).
#[derive(Debug, Clone, PartialEq)]
pub struct V1 {
    dirs: Vec<(String, PathBuf)>,
}

impl V1 {
    /// The cgroup at `rel` below each hierarchy's root, given as (controller, mount point).
    pub fn new(hierarchies: &[(String, PathBuf)], rel: &str) -> Self {
        Self { dirs: hierarchies.iter().map(|(c, root)| (c.clone(), root.join(rel))).collect() }
    }

    fn dir(&self, controller: &str) -> Option<&Path> {
        self.dirs.iter().find(|(c, _)| c == controller).map(|(_, d)| d.as_path())
    }
}

impl Cgroup for V1 {
    fn create(&self) -> Result<(), ResourceError> {
        for (_, dir) in &self.dirs {
            std::fs::create_dir_all(dir).map_err(|source| ResourceError::Create { path: dir.clone(), source })?;
        }
        Ok(())
    }

    fn apply(&self, res: &NodeResources) -> Result<(), ResourceError> {
        if let Some(cpu) = self.dir("cpu") {
            write(&cpu.join("cpu.cfs_period_us"), &res.cpu_period_us.to_string())?;
            let quota = res.cpu_quota_us.map_or("-1".to_owned(), |q| q.to_string());
            write(&cpu.join("cpu.cfs_quota_us"), &quota)?;
        }
        if let (Some(mem), Some(limit)) = (self.dir("memory"), res.memory_bytes) {
            // No swapping around the limit: a node gets what its machine had.
            let _ = std::fs::write(mem.join("memory.swappiness"), "0");
            write(&mem.join("memory.limit_in_bytes"), &limit.to_string())?;
            if mem.join("memory.memsw.limit_in_bytes").exists() {
                write(&mem.join("memory.memsw.limit_in_bytes"), &limit.to_string())?;
            }
        }
        if let (Some(pids), Some(max)) = (self.dir("pids"), res.pids_max) {
            write(&pids.join("pids.max"), &max.to_string())?;
        }
        if let Some(blkio) = self.dir("blkio") {
            for d in &res.io {
                let (major, minor) = (d.major, d.minor);
                for (file, value) in [
                    ("blkio.throttle.read_bps_device", d.read_bps),
                    ("blkio.throttle.write_bps_device", d.write_bps),
                    ("blkio.throttle.read_iops_device", d.read_iops),
                    ("blkio.throttle.write_iops_device", d.write_iops),
                ] {
                    if let Some(v) = value {
                        write(&blkio.join(file), &format!("{major}:{minor} {v}"))?;
                    }
                }
            }
        }
        Ok(())
    }

    fn set_cpu(&self, quota_us: Option<u64>, period_us: u64) -> Result<(), ResourceError> {
        let Some(cpu) = self.dir("cpu") else { return Ok(()) };
        // The kernel checks quota against period: shrink the quota first when the period
        // shrinks, and lengthen the period first when it grows.
        let quota = quota_us.map_or("-1".to_owned(), |q| q.to_string());
        let old_period = read_u64(&cpu.join("cpu.cfs_period_us")).unwrap_or(period_us);
        if period_us >= old_period {
            write(&cpu.join("cpu.cfs_period_us"), &period_us.to_string())?;
            write(&cpu.join("cpu.cfs_quota_us"), &quota)
        } else {
            write(&cpu.join("cpu.cfs_quota_us"), &quota)?;
            write(&cpu.join("cpu.cfs_period_us"), &period_us.to_string())
        }
    }

    /// `freezer.state`: `FROZEN` / `THAWED`.
    fn freeze(&self, frozen: bool) -> Result<(), ResourceError> {
        let dir = self.dir("freezer").ok_or_else(|| ResourceError::Detect("no cgroup v1 freezer hierarchy".into()))?;
        write(&dir.join("freezer.state"), if frozen { "FROZEN" } else { "THAWED" })
    }

    fn frozen(&self) -> bool {
        self.dir("freezer")
            .and_then(|d| std::fs::read_to_string(d.join("freezer.state")).ok())
            .is_some_and(|s| s.trim() == "FROZEN")
    }

    fn stats(&self) -> NodeStats {
        NodeStats {
            cpu_usage_ns: self.dir("cpuacct").and_then(|d| read_u64(&d.join("cpuacct.usage"))).unwrap_or(0),
            throttled_ns: self.dir("cpu").and_then(|d| stat_field(&d.join("cpu.stat"), "throttled_time")).unwrap_or(0),
            memory_bytes: self.dir("memory").and_then(|d| read_u64(&d.join("memory.usage_in_bytes"))).unwrap_or(0),
            pids: self.dir("pids").and_then(|d| read_u64(&d.join("pids.current"))).unwrap_or(0),
        }
    }

    /// `tasks` of the cpu hierarchy.
    fn threads(&self) -> Vec<u32> {
        self.dir("cpu").map(|d| ids(&d.join("tasks"))).unwrap_or_default()
    }

    fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|(_, d)| d.join("cgroup.procs")).collect()
    }

    fn dirs(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|(_, d)| d.clone()).collect()
    }
}
