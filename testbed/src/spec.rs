//! What the run engine needs to know about an experiment, independent of the catalog's
//! surface syntax: the harness's experiment adapter builds it from a topology and
//! its plan.

use std::path::PathBuf;
use std::time::Duration;

/// A readiness check; durations are virtual.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadyCheck {
    /// A TCP socket listening on the port in the node's network namespace.
    Tcp { port: u16, timeout: Duration },
    /// A command, run inside the node, that exits 0 (retried until the timeout).
    Command { argv: Vec<String>, timeout: Duration },
    /// A fixed wait.
    Delay(Duration),
}

/// A disk throttle on one block device (already divided by the TDF).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DiskLimit {
    pub major: u64,
    pub minor: u64,
    pub read_bps: Option<u64>,
    pub write_bps: Option<u64>,
    pub read_iops: Option<u64>,
    pub write_iops: Option<u64>,
}

/// Resource limits of one node, already divided by the TDF where that applies.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeResources {
    pub cpu_quota_us: Option<u64>,
    pub cpu_period_us: u64,
    pub memory_bytes: Option<u64>,
    pub pids_max: Option<u64>,
    /// Disk throttles per device.
    pub io: Vec<DiskLimit>,
    /// The node's `cpus` in cores of the original machine (perceived).
    pub cpus: f64,
    /// The speed of one of the node's threads, in host cores *as perceived* (`min(1, cpus)`
    /// for a faithful run): the shim (or the trap's tracer) paces every thread so that its CPU bursts take as long
    /// in virtual time as on a core of that speed. `None`: not paced.
    pub pace_speed: Option<f64>,
    /// The perceived cores the node's threads share (`cpus` for a faithful run): the shims
    /// and tracers of the node pay into one ledger, so threads computing at once share them. `None`:
    /// each thread is paced alone and only the CFS quota bounds their sum.
    pub pace_cores: Option<f64>,
}

/// One node of the experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSpec {
    pub name: String,
    /// The group it was declared in (`web` for `web3`), if any.
    pub group: Option<String>,
    pub argv: Vec<String>,
    /// The user's environment additions (the harness adds PATH, dilation and DIORAMA_*).
    pub env: Vec<(String, String)>,
    pub workdir: Option<PathBuf>,
    pub user: Option<String>,
    pub main: bool,
    pub ready: Option<ReadyCheck>,
    pub resources: NodeResources,
    /// The topology's additions to the node's view of the host's files, if any.
    pub filesystem: Option<FilesystemView>,
}

/// What a topology adds to a node's filesystem view (`docs/security.md`); every node sees the
/// run's results directory and the state read-only except its own directory and control
/// file, with or without it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FilesystemView {
    /// Directories that get a fresh, empty tmpfs only this node sees.
    pub private: Vec<PathBuf>,
    /// Host paths the node sees read-only.
    pub read_only: Vec<PathBuf>,
}

/// The whole experiment.
#[derive(Debug, Clone)]
pub struct TestbedSpec {
    pub name: String,
    pub topology_file: PathBuf,
    pub tdf: f64,
    /// Virtual duration after which the run ends.
    pub duration: Option<Duration>,
    pub nodes: Vec<NodeSpec>,
    /// Start order: indices into `nodes`, level by level (a level depends only on earlier ones).
    pub levels: Vec<Vec<usize>>,
    /// Virtual time between SIGTERM and SIGKILL at shutdown.
    pub grace: Duration,
    /// Virtual interval of metric samples.
    pub sample_every: Duration,
    /// The emulated network (perceived parameters), if the topology has links.
    pub network: Option<netemu::graph::NetSpec>,
    /// Which network backend carries the links (`--net`).
    pub net_backend: NetBackend,
    /// Run a node whose program no dilation mechanism reaches, undilated, instead of
    /// refusing to start it (the topology's `allow_undilated`; recorded in `run.json`).
    pub allow_undilated: bool,
    /// L4 balancers in the data path (userspace backend only; `telemetry_dir` is set by
    /// the run engine to the results directory).
    pub balancers: Vec<netemu::l4::VipSpec>,
    /// The plan and the topology as JSON, for `run.json`.
    pub plan: serde_json::Value,
    pub topology: serde_json::Value,
}

/// The network backend choice (`diorama run --net`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetBackend {
    /// The kernel backend where `sch_netem` is available, else the userspace core.
    #[default]
    Auto,
    /// The userspace core (TUN devices, one forwarding thread).
    Userspace,
    /// Kernel queueing disciplines (netem, htb) on veth pairs between namespaces.
    Kernel,
}

impl NetBackend {
    /// The name as written on the command line and in `run.json`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Userspace => "userspace",
            Self::Kernel => "kernel",
        }
    }
}

/// How much CFS quota a paced node gets beyond its planned share, by default (see
/// [`NodeResources::cgroup_quota_us`]); `DIORAMA_PACED_QUOTA_MARGIN` overrides it.
pub const PACED_QUOTA_MARGIN: f64 = 3.0;

impl NodeResources {
    /// The CFS quota of the node's cgroup. A node whose threads are paced (by the shim or
    /// the trap's tracer, and whose ledger keeps their sum to `pace_cores`) gets `margin` times its planned quota: the
    /// pacing's own CPU (sleeps, wake-ups and clock reads, tens of µs per payment on a VM)
    /// counts against a CFS quota though the original machine would not spend it, and with
    /// the quota at exactly the planned share a small node at a high TDF was throttled
    /// into doing a fraction of its work (issue 10). The quota then only bounds what the
    /// pacing does not see (for a trapped node, also the tracer's own CPU). Unpaced nodes
    /// (a full core at TDF 1, or no dilation) keep the planned quota.
    #[must_use]
    pub fn cgroup_quota_us(&self, paced: bool, margin: f64) -> Option<u64> {
        let q = self.cpu_quota_us?;
        if !paced || self.pace_cores.is_none() || !(margin.is_finite() && margin > 1.0) {
            return Some(q);
        }
        Some((q as f64 * margin).round() as u64)
    }

    /// Whether the shim paces this node's threads at `tdf` (a thread of speed `s` owes
    /// waiting only when `s / tdf < 1`).
    #[must_use]
    pub fn paced_at(&self, tdf: f64) -> bool {
        self.pace_speed.is_some_and(|s| s > 0.0 && tdf > 0.0 && s / tdf < 1.0 - 1e-9)
    }
}

/// The margin the host can give: at most `margin`, and no more than what keeps every
/// node's quota together within the host's cores less `reserve` (diorama's own and its
/// network emulator's). With six 0.25-cpu nodes at TDF 1 a margin of 3 let them take 4.5
/// of 2 cores; the harness then ran its fault timeline seconds late.
#[must_use]
pub fn host_margin(margin: f64, planned_cores: f64, host_cores: f64, reserve: f64) -> f64 {
    if !(planned_cores > 0.0 && host_cores.is_finite() && margin.is_finite()) {
        return margin.max(1.0);
    }
    ((host_cores - reserve) / planned_cores).clamp(1.0, margin.max(1.0))
}

/// The margin of [`PACED_QUOTA_MARGIN`], or the environment's when it is a number ≥ 1.
#[must_use]
pub fn paced_quota_margin() -> f64 {
    std::env::var("DIORAMA_PACED_QUOTA_MARGIN")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|m| m.is_finite() && *m >= 1.0)
        .unwrap_or(PACED_QUOTA_MARGIN)
}

#[cfg(test)]
mod quota_tests {
    use super::*;

    fn paced(cpus: f64) -> NodeResources {
        NodeResources {
            cpu_quota_us: Some(10_000),
            cpu_period_us: 1_000_000,
            cpus,
            pace_speed: Some(cpus.min(1.0)),
            pace_cores: Some(cpus),
            ..NodeResources::default()
        }
    }

    #[test]
    fn a_paced_node_gets_the_margin_and_an_unpaced_one_its_plan() {
        assert_eq!(paced(0.1).cgroup_quota_us(true, 3.0), Some(30_000));
        assert_eq!(paced(0.1).cgroup_quota_us(false, 3.0), Some(10_000), "an unpaced node");
        let alone = NodeResources { pace_cores: None, ..paced(0.1) };
        assert_eq!(alone.cgroup_quota_us(true, 3.0), Some(10_000), "without the ledger the quota is the only sum");
        assert_eq!(paced(0.1).cgroup_quota_us(true, f64::NAN), Some(10_000));
        assert_eq!(NodeResources::default().cgroup_quota_us(true, 3.0), None);
    }

    #[test]
    fn the_margin_never_oversubscribes_the_host() {
        // isaac-cpu at TDF 10: 0.11 cores planned on 2: the whole margin.
        assert_eq!(host_margin(3.0, 0.11, 2.0, 0.25), 3.0);
        // Six 0.25-cpu nodes at TDF 1: 1.5 planned, 1.75 free.
        assert!((host_margin(3.0, 1.5, 2.0, 0.25) - 1.75 / 1.5).abs() < 1e-12);
        // A full host keeps the plan.
        assert_eq!(host_margin(3.0, 1.9, 2.0, 0.25), 1.0);
        assert_eq!(host_margin(3.0, 0.0, 2.0, 0.25), 3.0);
    }

    #[test]
    fn pacing_applies_only_below_a_host_core() {
        assert!(paced(0.5).paced_at(1.0));
        assert!(paced(1.0).paced_at(10.0));
        assert!(!paced(1.0).paced_at(1.0), "a full core at TDF 1 runs unpaced");
        assert!(!paced(4.0).paced_at(1.0));
        assert!(!NodeResources::default().paced_at(10.0));
    }
}
