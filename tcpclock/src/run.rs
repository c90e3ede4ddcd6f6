//! The TCP clock of one run: what a harness calls.
//!
//! [`RunClock::start`] registers the dilated CUBIC for the run's TDF; [`RunClock::add_node`]
//! makes (or adopts) the node's cgroup2 directory `<cgroup2>/diorama/<run>/<node>` and
//! attaches the sock_ops program there; the node's processes join it through
//! [`NodeClock::procs`]. [`RunClock::report`] is what goes into `run.json`; [`clean`] removes
//! what a killed run left.
//!
//! # Invariants
//! Nothing here fails a run: a hook that does not work is recorded as a gap (the caller's
//! sysctl scaling still applies). BPF objects live only as long as this value's process.
//! The cgroup2 directories are the only state that can outlive a `kill -9`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::probe::{self, Coverage, Probe};
use crate::{cgroup2, DilatedCubic, NodeCgroup, Outcomes, SockClock};

/// One node's directory and attachment.
#[derive(Debug)]
pub struct NodeClock {
    name: String,
    cgroup: NodeCgroup,
    sock: Result<SockClock, String>,
}

impl NodeClock {
    /// The `cgroup.procs` file a node's first process writes `0` into to join.
    pub fn procs(&self) -> PathBuf {
        self.cgroup.path().join("cgroup.procs")
    }

    pub fn cgroup(&self) -> &Path {
        self.cgroup.path()
    }
}

/// The run's TCP clock.
#[derive(Debug)]
pub struct RunClock {
    tdf: f64,
    run_dir: Option<PathBuf>,
    cubic: Result<DilatedCubic, String>,
    nodes: Vec<NodeClock>,
}

/// A node's line in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeReport {
    pub node: String,
    pub cgroup: String,
    /// What the sock_ops program did, or why it is not attached.
    pub sock_ops: Result<Outcomes, String>,
}

/// `run.json` → `network.tcp_clock`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClockReport {
    pub tdf: f64,
    /// The namespaces' default congestion control, or why the dilated CUBIC is missing.
    pub congestion_control: Result<String, String>,
    pub nodes: Vec<NodeReport>,
    /// Per kernel timer: BPF, sysctl, or unscaled (a gap).
    pub coverage: Vec<Coverage>,
}

impl RunClock {
    /// Registers the dilated CUBIC for `tdf`; `cgroup2_root` is the cgroup2 mount (found on
    /// the host when `None`).
    pub fn start(run_id: &str, tdf: f64, cgroup2_root: Option<&Path>) -> Self {
        let root = cgroup2_root.map(Path::to_path_buf).or_else(|| cgroup2::host_cgroup2_mount().ok());
        let run_dir = root.map(|r| r.join("diorama").join(run_id));
        let cubic = DilatedCubic::register(tdf).map_err(|e| e.to_string());
        if let Err(e) = &cubic {
            tracing::warn!(error = %e, "dilated CUBIC unavailable: nodes keep the kernel's congestion control on real time");
        }
        Self { tdf, run_dir, cubic, nodes: Vec::new() }
    }

    /// The congestion-control name to make each node namespace's default, if registered.
    pub fn congestion_control(&self) -> Option<&str> {
        self.cubic.as_ref().ok().map(DilatedCubic::name)
    }

    /// Makes (or adopts) `node`'s cgroup2 directory and attaches the sock_ops program.
    pub fn add_node(&mut self, node: &str) -> Result<&NodeClock, crate::Error> {
        let dir = self.run_dir.as_ref().ok_or(crate::Error::NoCgroup2)?.join(node);
        let cgroup = NodeCgroup::create(&dir)?;
        let sock = SockClock::attach(&dir, self.tdf).map_err(|e| e.to_string());
        if let Err(e) = &sock {
            tracing::warn!(node, error = %e, "sock_ops not attached: the initial RTO stays 1 s real");
        }
        self.nodes.push(NodeClock { name: node.to_string(), cgroup, sock });
        let last = self.nodes.len() - 1;
        Ok(&self.nodes[last])
    }

    pub fn report(&self, rto_min_sysctl: bool) -> ClockReport {
        let nodes: Vec<NodeReport> = self
            .nodes
            .iter()
            .map(|n| NodeReport {
                node: n.name.clone(),
                cgroup: n.cgroup.path().display().to_string(),
                sock_ops: match &n.sock {
                    Ok(s) => s.outcomes().map_err(|e| e.to_string()),
                    Err(e) => Err(e.clone()),
                },
            })
            .collect();
        let first_sock = self.nodes.iter().find_map(|n| n.sock.as_ref().ok());
        let probe = Probe {
            btf: Path::new("/sys/kernel/btf/vmlinux").exists(),
            cgroup2: self.run_dir.clone(),
            sock_ops: match (first_sock, self.nodes.first()) {
                (Some(_), _) => Ok(()),
                (None, Some(n)) => n.sock.as_ref().map(drop).map_err(Clone::clone),
                (None, None) => Err("no node attached".into()),
            },
            hz: first_sock.map_or(0, SockClock::hz),
            struct_ops_cc: self.cubic.as_ref().map(drop).map_err(Clone::clone),
        };
        ClockReport {
            tdf: self.tdf,
            congestion_control: self.cubic.as_ref().map(|c| c.name().to_string()).map_err(Clone::clone),
            nodes,
            coverage: probe::coverage(&probe, rto_min_sysctl),
        }
    }

    /// Detaches everything and removes the run's cgroup2 directories, killing what is still
    /// inside (the node processes are normally gone by now).
    pub fn finish(self) -> Result<(), crate::Error> {
        let Self { run_dir, nodes, cubic, .. } = self;
        for n in nodes {
            drop(n.sock);
            n.cgroup.kill_all(Duration::from_secs(5))?;
            n.cgroup.remove()?;
        }
        drop(cubic);
        let Some(dir) = run_dir else { return Ok(()) };
        cgroup2::remove_tree(&dir)?;
        // The shared `diorama` parent goes too once the last run has left (another run's
        // directory keeps it: rmdir refuses a non-empty one, which is not an error here).
        if let Some(parent) = dir.parent() {
            let _ = std::fs::remove_dir(parent);
        }
        Ok(())
    }
}

/// Removes the run directories a killed harness left under `<cgroup2_root>/diorama`
/// (`run_ids`, or all when `None`), SIGKILLing what is still inside; returns what it removed.
pub fn clean(cgroup2_root: &Path, run_ids: Option<&[&str]>) -> Result<Vec<PathBuf>, crate::Error> {
    let base = cgroup2_root.join("diorama");
    let Ok(entries) = std::fs::read_dir(&base) else {
        return Ok(Vec::new());
    };
    let mut removed = Vec::new();
    for run in entries.flatten().filter(|e| e.path().is_dir()) {
        let name = run.file_name().to_string_lossy().into_owned();
        if run_ids.is_some_and(|ids| !ids.contains(&name.as_str())) {
            continue;
        }
        for node in std::fs::read_dir(run.path()).into_iter().flatten().flatten().filter(|e| e.path().is_dir()) {
            let procs = node.path().join("cgroup.procs");
            if std::fs::read_to_string(&procs).is_ok_and(|p| !p.trim().is_empty()) {
                let kill = node.path().join("cgroup.kill");
                std::fs::write(&kill, "1").map_err(|e| crate::Error::Io(kill, e))?;
            }
        }
        remove_when_empty(&run.path())?;
        removed.push(run.path());
    }
    Ok(removed)
}

/// `rmdir` fails with EBUSY until killed processes are reaped: retry for a while.
fn remove_when_empty(dir: &Path) -> Result<(), crate::Error> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match cgroup2::remove_tree(dir) {
            Ok(()) => return Ok(()),
            Err(e) if std::time::Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_removes_only_the_named_runs() {
        let root = tempfile::tempdir().unwrap();
        for run in ["r1", "r2"] {
            std::fs::create_dir_all(root.path().join("diorama").join(run).join("node")).unwrap();
        }
        let removed = clean(root.path(), Some(&["r1"])).unwrap();
        assert_eq!(removed, vec![root.path().join("diorama/r1")]);
        assert!(root.path().join("diorama/r2/node").exists());
        clean(root.path(), None).unwrap();
        assert!(!root.path().join("diorama/r2").exists());
        assert!(clean(&root.path().join("absent"), None).unwrap().is_empty());
    }
}
