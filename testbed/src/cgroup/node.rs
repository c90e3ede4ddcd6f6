//! The engine's handle on a node's cgroup: created with its limits at
//! `diorama/<run>/<node>`, sampled, frozen, and removed with every process in it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{detect, AnyCgroup, Cgroup, Layout, NodeStats, ResourceError};
use crate::spec::NodeResources;

/// The cgroups of one node (one directory per v1 hierarchy, or one v2 directory).
#[derive(Debug)]
pub struct NodeCgroup {
    layout: Layout,
    rel: String,
    cgroup: AnyCgroup,
}

impl NodeCgroup {
    /// Creates the node's cgroups at `rel` (e.g. `diorama/<run>/<node>`) with its limits.
    pub fn create(rel: &str, res: &NodeResources) -> Result<Self, ResourceError> {
        Self::create_in(detect()?, rel, res)
    }

    /// As [`NodeCgroup::create`], in a given layout.
    pub fn create_in(layout: Layout, rel: &str, res: &NodeResources) -> Result<Self, ResourceError> {
        let cgroup = AnyCgroup::new(&layout, rel);
        cgroup.create()?;
        cgroup.apply(res)?;
        Ok(Self { layout, rel: rel.to_owned(), cgroup })
    }

    /// The `cgroup.procs` files of the node; writing `0` into each moves the writer in.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.cgroup.procs_files()
    }

    /// Current counters.
    pub fn stats(&self) -> NodeStats {
        self.cgroup.stats()
    }

    /// Freezes (`true`) or thaws the node's processes: v1 `freezer.state`
    /// (`FROZEN`/`THAWED`), v2 `cgroup.freeze` (`1`/`0`). Freezing completes asynchronously
    /// in the kernel; [`NodeCgroup::frozen`] tells when it has.
    pub fn freeze(&self, frozen: bool) -> Result<(), ResourceError> {
        self.cgroup.freeze(frozen)
    }

    /// Whether the kernel reports the node frozen (v1 `FROZEN`, v2 `frozen 1` in `cgroup.events`).
    pub fn frozen(&self) -> bool {
        self.cgroup.frozen()
    }

    /// Sets the CFS quota and period (µs); `None` is unlimited.
    pub fn set_cpu(&self, quota_us: Option<u64>, period_us: u64) -> Result<(), ResourceError> {
        self.cgroup.set_cpu(quota_us, period_us)
    }

    /// Thread ids of the node (v1 `tasks` of the cpu hierarchy, v2 `cgroup.threads`).
    pub fn threads(&self) -> Vec<u32> {
        self.cgroup.threads()
    }

    /// Kills every process in the node's cgroups and removes them. Returns how many
    /// processes were killed. A frozen node is thawed first (frozen tasks cannot die).
    pub fn destroy(self) -> Result<usize, ResourceError> {
        let _ = self.freeze(false);
        Self::remove_rel(&self.layout, &self.rel)
    }

    fn remove_rel(layout: &Layout, rel: &str) -> Result<usize, ResourceError> {
        let mut killed = 0;
        for dir in AnyCgroup::new(layout, rel).dirs() {
            if !dir.exists() {
                continue;
            }
            killed += kill_all(&dir);
            // Exiting processes hold the cgroup busy for a moment.
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match std::fs::remove_dir(&dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) if Instant::now() < deadline && e.raw_os_error() == Some(libc::EBUSY) => {
                        killed += kill_all(&dir);
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(source) => return Err(ResourceError::Remove { path: dir, source }),
                }
            }
        }
        Ok(killed)
    }

    /// Removes the cgroup at `rel` in every hierarchy, killing what is inside.
    pub fn remove_path(rel: &str) -> Result<usize, ResourceError> {
        Self::remove_rel(&detect()?, rel)
    }

    /// Every run with cgroups under `diorama/`: (run id, node cgroup paths).
    pub fn list_runs() -> Result<Vec<(String, Vec<String>)>, ResourceError> {
        let layout = detect()?;
        let roots: Vec<PathBuf> = match &layout {
            Layout::V1(ctrls) => ctrls.iter().map(|(_, r)| r.join("diorama")).collect(),
            Layout::V2(root) => vec![root.join("diorama")],
        };
        let mut runs: Vec<(String, Vec<String>)> = Vec::new();
        for root in roots {
            let Ok(entries) = std::fs::read_dir(&root) else { continue };
            for run in entries.flatten().filter(|e| e.path().is_dir()) {
                let id = run.file_name().to_string_lossy().into_owned();
                let nodes: Vec<String> = std::fs::read_dir(run.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| format!("diorama/{id}/{}", e.file_name().to_string_lossy()))
                    .collect();
                match runs.iter_mut().find(|(r, _)| *r == id) {
                    Some((_, all)) => {
                        for n in nodes {
                            if !all.contains(&n) {
                                all.push(n);
                            }
                        }
                    }
                    None => runs.push((id, nodes)),
                }
            }
        }
        Ok(runs)
    }
}

/// SIGKILLs every process listed in `dir/cgroup.procs`, repeatedly until none is left
/// (a fork may race the first pass). Returns how many were signalled.
fn kill_all(dir: &Path) -> usize {
    let mut killed = 0;
    for _ in 0..50 {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        let pids: Vec<i32> = procs.lines().filter_map(|l| l.trim().parse().ok()).collect();
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).is_ok() {
                killed += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    killed
}

/// The `diorama` parents of every hierarchy that hold no run: what a run's own
/// [`remove_run_parent`] leaves when it loses a race or dies between creating the parent
/// and its run directory. With v1 the cgroup2 mount beside the controllers counts too
/// (the TCP-clock programs' directories live there).
pub fn empty_parents() -> Result<Vec<PathBuf>, ResourceError> {
    let mut roots: Vec<PathBuf> = match detect()? {
        Layout::V1(ctrls) => ctrls.into_iter().map(|(_, r)| r).collect(),
        Layout::V2(root) => vec![root],
    };
    let unified = PathBuf::from("/sys/fs/cgroup/unified");
    if !roots.contains(&unified) && unified.join("cgroup.procs").exists() {
        roots.push(unified);
    }
    let mut empty = Vec::new();
    for root in roots {
        let parent = root.join("diorama");
        let Ok(entries) = std::fs::read_dir(&parent) else { continue };
        if !entries.flatten().any(|e| e.path().is_dir()) && !empty.contains(&parent) {
            empty.push(parent);
        }
    }
    Ok(empty)
}

/// Removes the `diorama` parents that hold no run ([`empty_parents`]); the ones removed.
/// A run starting meanwhile makes its removal fail with `EBUSY`, which is left alone.
pub fn remove_empty_parents() -> Result<Vec<PathBuf>, ResourceError> {
    Ok(empty_parents()?.into_iter().filter(|p| std::fs::remove_dir(p).is_ok()).collect())
}

/// Removes the run's parent cgroups `diorama/<run>` (and `diorama` when empty).
pub fn remove_run_parent(run_id: &str) -> Result<(), ResourceError> {
    let layout = detect()?;
    let roots: Vec<PathBuf> = match &layout {
        Layout::V1(ctrls) => ctrls.iter().map(|(_, r)| r.clone()).collect(),
        Layout::V2(root) => vec![root.clone()],
    };
    for root in roots {
        let run = root.join("diorama").join(run_id);
        match std::fs::remove_dir(&run) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(ResourceError::Remove { path: run, source }),
        }
        // Shared by concurrent runs: removed only when empty, and losing that race is fine.
        let _ = std::fs::remove_dir(root.join("diorama"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::detect_from;
    use crate::spec::DiskLimit;

    fn resources() -> NodeResources {
        NodeResources {
            cpu_quota_us: Some(10_000),
            cpu_period_us: 100_000,
            memory_bytes: Some(64 << 20),
            pids_max: Some(100),
            io: vec![DiskLimit {
                major: 8,
                minor: 0,
                read_bps: Some(1_000_000),
                write_bps: None,
                read_iops: Some(50),
                write_iops: Some(50),
            }],
            cpus: 1.0,
            pace_speed: Some(1.0),
            pace_cores: Some(1.0),
        }
    }

    const V1_MOUNTS: &str = "cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0
cgroup /sys/fs/cgroup/blkio cgroup rw,relatime,blkio 0 0
cgroup /sys/fs/cgroup/freezer cgroup rw,relatime,freezer 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
";

    #[test]
    fn v1_limits_land_in_each_hierarchy() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("sys/fs/cgroup/unified")).unwrap();
        std::fs::write(root.path().join("sys/fs/cgroup/unified/cgroup.controllers"), "").unwrap();
        let layout = detect_from(V1_MOUNTS, root.path()).unwrap();
        assert!(matches!(&layout, Layout::V1(c) if c.len() == 6), "{layout:?}");
        let cg = NodeCgroup::create_in(layout, "diorama/r/web0", &resources()).unwrap();
        let read = |f: &str| std::fs::read_to_string(root.path().join("sys/fs/cgroup").join(f)).unwrap();
        assert_eq!(read("cpu/diorama/r/web0/cpu.cfs_quota_us"), "10000");
        assert_eq!(read("cpu/diorama/r/web0/cpu.cfs_period_us"), "100000");
        assert_eq!(read("memory/diorama/r/web0/memory.limit_in_bytes"), (64u64 << 20).to_string());
        assert_eq!(read("pids/diorama/r/web0/pids.max"), "100");
        assert_eq!(read("blkio/diorama/r/web0/blkio.throttle.read_bps_device"), "8:0 1000000");
        assert_eq!(read("blkio/diorama/r/web0/blkio.throttle.write_iops_device"), "8:0 50");
        assert_eq!(cg.procs_files().len(), 6);
    }

    #[test]
    fn v2_limits_and_delegation() {
        let root = tempfile::tempdir().unwrap();
        let base = root.path().join("sys/fs/cgroup");
        std::fs::create_dir_all(&base).unwrap();
        std::fs::write(base.join("cgroup.controllers"), "cpuset cpu io memory pids").unwrap();
        let layout = detect_from("cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0\n", root.path()).unwrap();
        assert_eq!(layout, Layout::V2(base.clone()));
        let cg = NodeCgroup::create_in(layout, "diorama/r/db0", &resources()).unwrap();
        let read = |f: &str| std::fs::read_to_string(base.join(f)).unwrap();
        assert_eq!(read("diorama/r/db0/cpu.max"), "10000 100000");
        assert_eq!(read("diorama/r/db0/memory.max"), (64u64 << 20).to_string());
        assert_eq!(read("diorama/r/db0/memory.swap.max"), "0");
        assert_eq!(read("diorama/r/db0/pids.max"), "100");
        assert_eq!(read("diorama/r/db0/io.max"), "8:0 rbps=1000000 riops=50 wiops=50");
        // Every ancestor delegates the controllers to its children.
        assert_eq!(read("cgroup.subtree_control"), "+cpu +memory +pids +io");
        assert_eq!(read("diorama/r/cgroup.subtree_control"), "+cpu +memory +pids +io");
        assert_eq!(cg.procs_files(), vec![base.join("diorama/r/db0/cgroup.procs")]);
        // Stats parse v2's files.
        std::fs::write(base.join("diorama/r/db0/cpu.stat"), "usage_usec 1500\nthrottled_usec 20\n").unwrap();
        std::fs::write(base.join("diorama/r/db0/memory.current"), "4096\n").unwrap();
        std::fs::write(base.join("diorama/r/db0/pids.current"), "3\n").unwrap();
        let st = cg.stats();
        assert_eq!((st.cpu_usage_ns, st.throttled_ns, st.memory_bytes, st.pids), (1_500_000, 20_000, 4096, 3));
    }

    #[test]
    fn v1_freezer_and_quota_changes_write_their_files() {
        let root = tempfile::tempdir().unwrap();
        let layout = detect_from(V1_MOUNTS, root.path()).unwrap();
        let cg = NodeCgroup::create_in(layout, "diorama/r/app0", &resources()).unwrap();
        let base = root.path().join("sys/fs/cgroup");
        let read = |f: &str| std::fs::read_to_string(base.join(f)).unwrap();
        cg.freeze(true).unwrap();
        assert_eq!(read("freezer/diorama/r/app0/freezer.state"), "FROZEN");
        assert!(cg.frozen());
        cg.freeze(false).unwrap();
        assert_eq!(read("freezer/diorama/r/app0/freezer.state"), "THAWED");
        assert!(!cg.frozen());
        cg.set_cpu(Some(5_000), 100_000).unwrap();
        assert_eq!(read("cpu/diorama/r/app0/cpu.cfs_quota_us"), "5000");
        cg.set_cpu(Some(1_000), 200_000).unwrap();
        assert_eq!(read("cpu/diorama/r/app0/cpu.cfs_period_us"), "200000");
        assert_eq!(read("cpu/diorama/r/app0/cpu.cfs_quota_us"), "1000");
        cg.set_cpu(None, 100_000).unwrap();
        assert_eq!(read("cpu/diorama/r/app0/cpu.cfs_quota_us"), "-1");
        std::fs::write(base.join("cpu/diorama/r/app0/tasks"), "12\n13\n").unwrap();
        assert_eq!(cg.threads(), [12, 13]);
    }

    #[test]
    fn v2_freezer_and_quota_changes_write_their_files() {
        let root = tempfile::tempdir().unwrap();
        let base = root.path().join("sys/fs/cgroup");
        std::fs::create_dir_all(&base).unwrap();
        std::fs::write(base.join("cgroup.controllers"), "cpu memory pids").unwrap();
        let layout = detect_from("cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n", root.path()).unwrap();
        let cg = NodeCgroup::create_in(layout, "diorama/r/app0", &resources()).unwrap();
        let read = |f: &str| std::fs::read_to_string(base.join(f)).unwrap();
        cg.freeze(true).unwrap();
        assert_eq!(read("diorama/r/app0/cgroup.freeze"), "1");
        std::fs::write(base.join("diorama/r/app0/cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
        assert!(cg.frozen());
        cg.freeze(false).unwrap();
        assert_eq!(read("diorama/r/app0/cgroup.freeze"), "0");
        cg.set_cpu(Some(5_000), 100_000).unwrap();
        assert_eq!(read("diorama/r/app0/cpu.max"), "5000 100000");
        cg.set_cpu(None, 100_000).unwrap();
        assert_eq!(read("diorama/r/app0/cpu.max"), "max 100000");
    }

    #[test]
    fn a_hierarchy_without_cpu_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let err = detect_from("proc /proc proc rw 0 0\n", root.path()).unwrap_err();
        assert!(err.to_string().contains("cpu"), "{err}");
    }
}
