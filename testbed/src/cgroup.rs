//! The engine's view of a node's cgroups: create with limits, join, sample, remove.
//!
//! This is a thin binding over cgroupfs for cgroup v1 (one hierarchy per controller, as on
//! this build host) and v2 (one unified hierarchy), detected from `/proc/self/mounts`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::spec::NodeResources;

/// Errors of node cgroups.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    #[error("find the cgroup hierarchy: {0}")]
    Detect(String),
    #[error("write {value:?} to {path}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: std::io::Error,
    },
    #[error("create cgroup {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("remove cgroup {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// cgroup v1 controllers a node uses, each its own hierarchy.
const V1_CONTROLLERS: [&str; 6] = ["cpu", "cpuacct", "memory", "pids", "blkio", "freezer"];

#[derive(Debug, Clone, PartialEq)]
pub enum Layout {
    /// Controller name → its hierarchy's mount point.
    V1(Vec<(String, PathBuf)>),
    V2(PathBuf),
}

fn detect() -> Result<Layout, ResourceError> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").map_err(|e| ResourceError::Detect(e.to_string()))?;
    detect_from(&mounts, Path::new("/"))
}

/// The layout described by a mount table (`/proc/self/mounts` format), with mount points
/// taken relative to `root` (tests pass a tempdir laid out like cgroupfs).
pub fn detect_from(mounts: &str, root: &Path) -> Result<Layout, ResourceError> {
    let at = |p: &str| root.join(p.trim_start_matches('/'));
    let mut v1 = Vec::new();
    let mut v2 = None;
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 {
            continue;
        }
        match f[2] {
            "cgroup" => {
                for opt in f[3].split(',') {
                    if V1_CONTROLLERS.contains(&opt) && !v1.iter().any(|(c, _): &(String, PathBuf)| c == opt) {
                        v1.push((opt.to_owned(), at(f[1])));
                    }
                }
            }
            "cgroup2" => {
                let path = at(f[1]);
                let controllers = std::fs::read_to_string(path.join("cgroup.controllers")).unwrap_or_default();
                if controllers.split_whitespace().any(|c| c == "cpu") {
                    v2 = Some(path);
                }
            }
            _ => {}
        }
    }
    if let Some(root) = v2 {
        return Ok(Layout::V2(root));
    }
    if v1.iter().any(|(c, _)| c == "cpu") {
        return Ok(Layout::V1(v1));
    }
    Err(ResourceError::Detect("no cgroup v1 cpu hierarchy and no cgroup v2 hierarchy with the cpu controller".into()))
}

fn write(path: &Path, value: &str) -> Result<(), ResourceError> {
    std::fs::write(path, value).map_err(|source| ResourceError::Write {
        path: path.to_owned(),
        value: value.to_owned(),
        source,
    })
}

/// Counters of one node.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeStats {
    pub cpu_usage_ns: u64,
    pub throttled_ns: u64,
    pub memory_bytes: u64,
    pub pids: u64,
}

/// The cgroups of one node (one directory per v1 hierarchy, or one v2 directory).
#[derive(Debug)]
pub struct NodeCgroup {
    layout: Layout,
    rel: String,
}

impl NodeCgroup {
    fn dirs(layout: &Layout, rel: &str) -> Vec<(String, PathBuf)> {
        match layout {
            Layout::V1(ctrls) => ctrls.iter().map(|(c, root)| (c.clone(), root.join(rel))).collect(),
            Layout::V2(root) => vec![("unified".to_owned(), root.join(rel))],
        }
    }

    fn dir_of(&self, controller: &str) -> Option<PathBuf> {
        Self::dirs(&self.layout, &self.rel).into_iter().find(|(c, _)| c == controller || c == "unified").map(|(_, d)| d)
    }

    /// Creates the node's cgroups at `rel` (e.g. `diorama/<run>/<node>`) with its limits.
    pub fn create(rel: &str, res: &NodeResources) -> Result<Self, ResourceError> {
        Self::create_in(detect()?, rel, res)
    }

    /// As [`NodeCgroup::create`], in a given layout.
    pub fn create_in(layout: Layout, rel: &str, res: &NodeResources) -> Result<Self, ResourceError> {
        if let Layout::V2(root) = &layout {
            // Every ancestor must delegate the controllers to its children.
            let mut dir = root.clone();
            for part in Path::new(rel).parent().into_iter().flat_map(|p| p.components()) {
                let _ = std::fs::write(dir.join("cgroup.subtree_control"), "+cpu +memory +pids +io");
                dir = dir.join(part);
                std::fs::create_dir_all(&dir).map_err(|source| ResourceError::Create { path: dir.clone(), source })?;
            }
            let _ = std::fs::write(dir.join("cgroup.subtree_control"), "+cpu +memory +pids +io");
        }
        for (_, dir) in Self::dirs(&layout, rel) {
            std::fs::create_dir_all(&dir).map_err(|source| ResourceError::Create { path: dir.clone(), source })?;
        }
        let cg = Self { layout, rel: rel.to_owned() };
        cg.apply(res)?;
        Ok(cg)
    }

    fn apply(&self, res: &NodeResources) -> Result<(), ResourceError> {
        match &self.layout {
            Layout::V1(_) => {
                if let Some(cpu) = self.dir_of("cpu") {
                    write(&cpu.join("cpu.cfs_period_us"), &res.cpu_period_us.to_string())?;
                    let quota = res.cpu_quota_us.map_or("-1".to_owned(), |q| q.to_string());
                    write(&cpu.join("cpu.cfs_quota_us"), &quota)?;
                }
                if let (Some(mem), Some(limit)) = (self.dir_of("memory"), res.memory_bytes) {
                    // No swapping around the limit: a node gets what its machine had.
                    let _ = std::fs::write(mem.join("memory.swappiness"), "0");
                    write(&mem.join("memory.limit_in_bytes"), &limit.to_string())?;
                    if mem.join("memory.memsw.limit_in_bytes").exists() {
                        write(&mem.join("memory.memsw.limit_in_bytes"), &limit.to_string())?;
                    }
                }
                if let (Some(pids), Some(max)) = (self.dir_of("pids"), res.pids_max) {
                    write(&pids.join("pids.max"), &max.to_string())?;
                }
                if let Some(blkio) = self.dir_of("blkio") {
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
            }
            Layout::V2(_) => {
                let dir = self.dir_of("unified").unwrap_or_default();
                let quota = res.cpu_quota_us.map_or("max".to_owned(), |q| q.to_string());
                write(&dir.join("cpu.max"), &format!("{quota} {}", res.cpu_period_us))?;
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
            }
        }
        Ok(())
    }

    /// The `cgroup.procs` files of the node; writing `0` into each moves the writer in.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        Self::dirs(&self.layout, &self.rel).into_iter().map(|(_, d)| d.join("cgroup.procs")).collect()
    }

    fn read_u64(path: &Path) -> Option<u64> {
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    }

    fn stat_field(path: &Path, key: &str) -> Option<u64> {
        let text = std::fs::read_to_string(path).ok()?;
        text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// Current counters.
    pub fn stats(&self) -> std::io::Result<NodeStats> {
        Ok(match &self.layout {
            Layout::V1(_) => NodeStats {
                cpu_usage_ns: self.dir_of("cpuacct").and_then(|d| Self::read_u64(&d.join("cpuacct.usage"))).unwrap_or(0),
                throttled_ns: self.dir_of("cpu").and_then(|d| Self::stat_field(&d.join("cpu.stat"), "throttled_time")).unwrap_or(0),
                memory_bytes: self.dir_of("memory").and_then(|d| Self::read_u64(&d.join("memory.usage_in_bytes"))).unwrap_or(0),
                pids: self.dir_of("pids").and_then(|d| Self::read_u64(&d.join("pids.current"))).unwrap_or(0),
            },
            Layout::V2(_) => {
                let d = self.dir_of("unified").unwrap_or_default();
                NodeStats {
                    cpu_usage_ns: Self::stat_field(&d.join("cpu.stat"), "usage_usec").unwrap_or(0) * 1000,
                    throttled_ns: Self::stat_field(&d.join("cpu.stat"), "throttled_usec").unwrap_or(0) * 1000,
                    memory_bytes: Self::read_u64(&d.join("memory.current")).unwrap_or(0),
                    pids: Self::read_u64(&d.join("pids.current")).unwrap_or(0),
                }
            }
        })
    }

    /// Freezes (`true`) or thaws the node's processes: v1 `freezer.state`
    /// (`FROZEN`/`THAWED`), v2 `cgroup.freeze` (`1`/`0`). Freezing completes asynchronously
    /// in the kernel; [`NodeCgroup::frozen`] tells when it has.
    pub fn freeze(&self, frozen: bool) -> Result<(), ResourceError> {
        match &self.layout {
            Layout::V1(_) => {
                let dir = self.dir_of("freezer").ok_or_else(|| ResourceError::Detect("no cgroup v1 freezer hierarchy".into()))?;
                write(&dir.join("freezer.state"), if frozen { "FROZEN" } else { "THAWED" })
            }
            Layout::V2(_) => {
                let dir = self.dir_of("unified").unwrap_or_default();
                write(&dir.join("cgroup.freeze"), if frozen { "1" } else { "0" })
            }
        }
    }

    /// Whether the kernel reports the node frozen (v1 `FROZEN`, v2 `frozen 1` in `cgroup.events`).
    pub fn frozen(&self) -> bool {
        match &self.layout {
            Layout::V1(_) => self
                .dir_of("freezer")
                .and_then(|d| std::fs::read_to_string(d.join("freezer.state")).ok())
                .is_some_and(|s| s.trim() == "FROZEN"),
            Layout::V2(_) => self.dir_of("unified").is_some_and(|d| Self::stat_field(&d.join("cgroup.events"), "frozen") == Some(1)),
        }
    }

    /// Sets the CFS quota and period (µs); `None` is unlimited.
    pub fn set_cpu(&self, quota_us: Option<u64>, period_us: u64) -> Result<(), ResourceError> {
        match &self.layout {
            Layout::V1(_) => {
                let Some(cpu) = self.dir_of("cpu") else { return Ok(()) };
                // The kernel checks quota against period: shrink the quota first when the
                // period shrinks, and lengthen the period first when it grows.
                let quota = quota_us.map_or("-1".to_owned(), |q| q.to_string());
                let old_period = Self::read_u64(&cpu.join("cpu.cfs_period_us")).unwrap_or(period_us);
                if period_us >= old_period {
                    write(&cpu.join("cpu.cfs_period_us"), &period_us.to_string())?;
                    write(&cpu.join("cpu.cfs_quota_us"), &quota)
                } else {
                    write(&cpu.join("cpu.cfs_quota_us"), &quota)?;
                    write(&cpu.join("cpu.cfs_period_us"), &period_us.to_string())
                }
            }
            Layout::V2(_) => {
                let dir = self.dir_of("unified").unwrap_or_default();
                let quota = quota_us.map_or("max".to_owned(), |q| q.to_string());
                write(&dir.join("cpu.max"), &format!("{quota} {period_us}"))
            }
        }
    }

    /// Thread ids of the node (v1 `tasks` of the cpu hierarchy, v2 `cgroup.threads`).
    pub fn threads(&self) -> Vec<u32> {
        let file = match &self.layout {
            Layout::V1(_) => self.dir_of("cpu").map(|d| d.join("tasks")),
            Layout::V2(_) => self.dir_of("unified").map(|d| d.join("cgroup.threads")),
        };
        file.and_then(|f| std::fs::read_to_string(f).ok())
            .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Kills every process in the node's cgroups and removes them. Returns how many
    /// processes were killed. A frozen node is thawed first (frozen tasks cannot die).
    pub fn destroy(self) -> Result<usize, ResourceError> {
        let _ = self.freeze(false);
        Self::remove_rel(&self.layout, &self.rel)
    }

    fn remove_rel(layout: &Layout, rel: &str) -> Result<usize, ResourceError> {
        let mut killed = 0;
        for (_, dir) in Self::dirs(layout, rel) {
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
    use crate::spec::DiskLimit;

    fn resources() -> NodeResources {
        NodeResources {
            cpu_quota_us: Some(10_000),
            cpu_period_us: 100_000,
            memory_bytes: Some(64 << 20),
            pids_max: Some(100),
            io: vec![DiskLimit { major: 8, minor: 0, read_bps: Some(1_000_000), write_bps: None, read_iops: Some(50), write_iops: Some(50) }],
            cpus: 1.0,
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
        let st = cg.stats().unwrap();
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
