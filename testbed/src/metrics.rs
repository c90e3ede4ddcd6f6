//! `nodes.csv`: per-node resource use from cgroup accounting, sampled on a virtual-time grid.
//!
//! CPU is reported two ways: `cpu_cores_real`, host cores used over the interval, and
//! `cpu_perceived`, the fraction of the node's *perceived* machine (`cpus` original cores)
//! in use. Under dilation a node that used q real core-seconds during r real seconds used
//! q CPU-seconds in r/t virtual seconds, so perceived = (q / (r / t)) / cpus.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::cgroup::NodeCgroup;
use crate::spec::NodeSpec;

/// Header of `nodes.csv` (results schema 1).
pub const HEADER: &str = "t_virtual_s,node,cpu_perceived,cpu_cores_real,throttled_ms,memory_bytes,pids";

/// Previous sample of a node, for rates.
#[derive(Clone, Copy)]
struct Last {
    t_virtual: f64,
    cpu_ns: u64,
    throttled_ns: u64,
}

/// Writes `nodes.csv`.
pub struct NodeSampler {
    out: BufWriter<File>,
    last: HashMap<String, Last>,
}

impl NodeSampler {
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let mut out = BufWriter::new(File::create(path)?);
        writeln!(out, "{HEADER}")?;
        Ok(Self { out, last: HashMap::new() })
    }

    /// Samples one node at virtual time `t` (seconds since the epoch).
    pub fn sample(&mut self, t: f64, node: &NodeSpec, cgroup: &NodeCgroup, tdf: f64) {
        let stats = cgroup.stats();
        let now = Last { t_virtual: t, cpu_ns: stats.cpu_usage_ns, throttled_ns: stats.throttled_ns };
        let previous = self.last.insert(node.name.clone(), now);
        let Some(prev) = previous else { return };
        let (cores, perceived) = rates(prev.t_virtual, prev.cpu_ns, t, stats.cpu_usage_ns, tdf, node.resources.cpus);
        let throttled_ms = now.throttled_ns.saturating_sub(prev.throttled_ns) as f64 / 1e6;
        let line = format!(
            "{t:.3},{},{perceived:.4},{cores:.4},{throttled_ms:.1},{},{}",
            node.name, stats.memory_bytes, stats.pids
        );
        if let Err(err) = writeln!(self.out, "{line}").and_then(|()| self.out.flush()) {
            tracing::warn!(?err, "failed to write nodes.csv");
        }
    }
}

/// (real cores used, fraction of the perceived machine) over a virtual interval.
fn rates(t0: f64, cpu0: u64, t1: f64, cpu1: u64, tdf: f64, cpus: f64) -> (f64, f64) {
    let virt = t1 - t0;
    if virt <= 0.0 {
        return (0.0, 0.0);
    }
    let cpu_s = cpu1.saturating_sub(cpu0) as f64 / 1e9;
    let real = virt * tdf;
    let cores = cpu_s / real;
    let perceived = if cpus > 0.0 { cpu_s / virt / cpus } else { 0.0 };
    (cores, perceived)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_at_its_quota_perceives_a_full_machine() {
        // TDF 10, 1 original core, quota 0.1 core: 1 virtual s = 10 real s → 1 CPU-s used.
        let (cores, perceived) = rates(0.0, 0, 1.0, 1_000_000_000, 10.0, 1.0);
        assert!((cores - 0.1).abs() < 1e-9);
        assert!((perceived - 1.0).abs() < 1e-9);
    }

    #[test]
    fn half_busy_two_core_node() {
        let (cores, perceived) = rates(2.0, 0, 3.0, 1_000_000_000, 1.0, 2.0);
        assert!((cores - 1.0).abs() < 1e-9);
        assert!((perceived - 0.5).abs() < 1e-9);
    }
}

/// Header of `links.csv` (results schema 1).
pub const LINK_HEADER: &str = "t_virtual_s,link,dir,bytes,packets,drops,queue_bytes,utilization,lateness_p99_us";

/// Writes `links.csv`: per link and direction, counters and utilization of the perceived
/// rate over the last interval, and the core's lateness.
pub struct LinkSampler {
    out: BufWriter<File>,
    last: HashMap<(String, &'static str), (f64, u64)>,
}

impl LinkSampler {
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let mut out = BufWriter::new(File::create(path)?);
        writeln!(out, "{LINK_HEADER}")?;
        Ok(Self { out, last: HashMap::new() })
    }

    pub fn sample(&mut self, t: f64, samples: &[netemu::emulator::LinkSample], lateness: Option<std::time::Duration>) {
        let late = lateness.map_or(String::new(), |d| format!("{:.1}", d.as_secs_f64() * 1e6));
        for s in samples {
            let dir = match s.dir {
                netemu::graph::Dir::Forward => "forward",
                netemu::graph::Dir::Reverse => "reverse",
            };
            let prev = self.last.insert((s.link.clone(), dir), (t, s.bytes));
            let util = match (prev, s.rate_bps) {
                (Some((t0, b0)), Some(rate)) if t > t0 => {
                    ((s.bytes - b0.min(s.bytes)) as f64 * 8.0 / (t - t0)) / rate as f64
                }
                _ => 0.0,
            };
            let line = format!(
                "{t:.3},{},{dir},{},{},{},{},{util:.4},{late}",
                s.link, s.bytes, s.packets, s.drops, s.queue_bytes
            );
            if let Err(err) = writeln!(self.out, "{line}") {
                tracing::warn!(?err, "failed to write links.csv");
                return;
            }
        }
        let _ = self.out.flush();
    }
}

/// Thresholds of the fidelity monitor (docs/faults.md, "Fidelity").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FidelityThresholds {
    /// Host CPU busy share (of all host cores) at or above which an interval counts as saturated.
    pub host_busy: f64,
    /// A node's lost CPU (min of quota − used and run-queue wait) as a share of its quota at
    /// or above which an interval counts as the quota not met.
    pub quota_deficit: f64,
    /// Run-queue wait (cores: seconds per second, summed over the node's threads) below which
    /// a node did not want CPU it was denied: waking up costs tens of µs of run-queue delay
    /// even on an idle host, which against a quota of 1.5% of a core looked like 75–96% of
    /// the quota lost.
    pub min_wait: f64,
    /// The network core's lateness p99 (real) above which it counts as late.
    pub late_p99: std::time::Duration,
}

impl Default for FidelityThresholds {
    fn default() -> Self {
        Self { host_busy: 0.95, quota_deficit: 0.10, min_wait: 0.02, late_p99: std::time::Duration::from_millis(1) }
    }
}

/// One reason a run was not faithful (contract 6).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FidelityFlag {
    /// `host_cpu_saturated`, `node_quota_not_met`, `network_late`, `shim_missing`, `shim_error`,
    /// `undilated` (a process no mechanism dilated), `clock_not_dilated` (the in-node clock check).
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    pub detail: String,
}

/// The verdict in `run.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, Default)]
pub struct Fidelity {
    /// `ok` or `unfaithful`.
    pub verdict: &'static str,
    pub flags: Vec<FidelityFlag>,
}

impl Fidelity {
    pub fn from_flags(flags: Vec<FidelityFlag>) -> Self {
        Self { verdict: if flags.is_empty() { "ok" } else { "unfaithful" }, flags }
    }
}

/// Per-interval counts of one kind of lapse.
#[derive(Debug, Clone, Copy, Default)]
struct Lapse {
    intervals: u32,
    bad: u32,
    worst: f64,
}

impl Lapse {
    fn add(&mut self, bad: bool, value: f64) {
        self.intervals += 1;
        if bad {
            self.bad += 1;
        }
        self.worst = self.worst.max(value);
    }
}

#[derive(Debug, Clone, Copy)]
struct NodeLast {
    at: std::time::Instant,
    cpu_ns: u64,
    wait_ns: u64,
}

/// Watches, while a run goes, for the ways it can stop being a faithful scale model: the
/// host's CPU saturated, a node that wanted CPU getting less than its quota, a late network
/// core. Shim problems are added at the end ([`FidelityMonitor::finish`]).
///
/// # Design
/// "Wanted CPU" is measured as run-queue delay: the sum over the node's threads of
/// `/proc/<tid>/schedstat`'s second field (ns spent runnable but not running). A node whose
/// threads waited for a significant share of the interval (at least
/// [`FidelityThresholds::min_wait`] cores), and which used less than its quota over the same
/// interval, was denied CPU the plan promised it; the deficit is `min(quota − used, waited)`
/// in cores. Throttling by the node's own quota is not a lapse: a throttled node got its
/// quota. Time a paced thread sleeps is not run-queue delay: pacing is the model, not a lapse.
#[derive(Debug)]
pub struct FidelityMonitor {
    th: FidelityThresholds,
    proc_root: PathBuf,
    host_last: Option<(u64, u64)>,
    psi_last: Option<(u64, std::time::Instant)>,
    host: Lapse,
    psi_worst: f64,
    planned_cores: f64,
    host_cores: f64,
    nodes: HashMap<String, NodeLast>,
    node_lapses: BTreeMap<String, Lapse>,
    late: Lapse,
    /// The idle-class spinners' CPU (see [`crate::awake`]): discounted from the host's busy share.
    spinners: Option<(crate::awake::SpinnerCpu, u64)>,
    /// Clock ticks per second of `/proc/stat`.
    ticks_per_s: u64,
}

use std::collections::BTreeMap;
use std::path::PathBuf;

impl FidelityMonitor {
    /// `planned_cores`: the sum of every node's quota in host cores.
    pub fn new(th: FidelityThresholds, proc_root: &Path, planned_cores: f64) -> Self {
        let host_cores = std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
        Self {
            th,
            proc_root: proc_root.to_owned(),
            host_last: None,
            spinners: None,
            ticks_per_s: nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
                .ok()
                .flatten()
                .and_then(|t| u64::try_from(t).ok())
                .filter(|t| *t > 0)
                .unwrap_or(100),
            psi_last: None,
            host: Lapse::default(),
            psi_worst: 0.0,
            planned_cores,
            host_cores,
            nodes: HashMap::new(),
            node_lapses: BTreeMap::new(),
            late: Lapse::default(),
        }
    }

    /// Discounts the CPU of the spinners that keep the host awake from the host's busy share:
    /// they run only when nothing else wants the CPU.
    pub fn discount_spinners(&mut self, cpu: crate::awake::SpinnerCpu) {
        let now = cpu.ns();
        self.spinners = Some((cpu, now));
    }

    /// Samples host-wide CPU: `/proc/stat` busy share and PSI `some` stall share.
    pub fn sample_host(&mut self) {
        // Spinner CPU since the last sample, in /proc/stat ticks.
        let spun = self.spinners.as_mut().map_or(0, |(cpu, last)| {
            let now = cpu.ns();
            let ticks = now.saturating_sub(*last) * self.ticks_per_s / 1_000_000_000;
            *last = now;
            ticks
        });
        if let Some((busy, total)) =
            std::fs::read_to_string(self.proc_root.join("stat")).ok().as_deref().and_then(parse_stat)
        {
            if let Some((b0, t0)) = self.host_last {
                let dt = total.saturating_sub(t0);
                if dt > 0 {
                    let share = busy.saturating_sub(b0).saturating_sub(spun) as f64 / dt as f64;
                    self.host.add(share >= self.th.host_busy, share);
                }
            }
            self.host_last = Some((busy, total));
        }
        let now = std::time::Instant::now();
        if let Some(total) =
            std::fs::read_to_string(self.proc_root.join("pressure/cpu")).ok().as_deref().and_then(parse_psi_some)
        {
            if let Some((t0, at)) = self.psi_last {
                let dt = now.duration_since(at).as_secs_f64();
                if dt > 0.0 {
                    self.psi_worst = self.psi_worst.max(total.saturating_sub(t0) as f64 / 1e6 / dt);
                }
            }
            self.psi_last = Some((total, now));
        }
    }

    /// Samples one node against its current quota (host cores; `None`: unlimited).
    /// `active`: false while it is paused or down (its interval is then skipped).
    pub fn sample_node(&mut self, name: &str, cgroup: &NodeCgroup, quota_cores: Option<f64>, active: bool) {
        let now = std::time::Instant::now();
        let stats = cgroup.stats();
        let wait_ns: u64 = cgroup.threads().iter().filter_map(|t| run_delay_ns(&self.proc_root, *t)).sum();
        let cur = NodeLast { at: now, cpu_ns: stats.cpu_usage_ns, wait_ns };
        let prev = self.nodes.insert(name.to_owned(), cur);
        let (Some(prev), Some(quota), true) = (prev, quota_cores, active) else { return };
        let dt = now.duration_since(prev.at).as_secs_f64();
        if dt <= 0.0 || quota <= 0.0 {
            return;
        }
        let used = cur.cpu_ns.saturating_sub(prev.cpu_ns) as f64 / 1e9 / dt;
        let waited = cur.wait_ns.saturating_sub(prev.wait_ns) as f64 / 1e9 / dt;
        let deficit = lapse(&self.th, quota, used, waited);
        self.node_lapses.entry(name.to_owned()).or_default().add(deficit >= self.th.quota_deficit, deficit);
    }

    /// Forgets a node's counters (its processes were replaced, e.g. by a restart).
    pub fn reset_node(&mut self, name: &str) {
        self.nodes.remove(name);
    }

    /// Samples the network core's lateness p99.
    pub fn sample_network(&mut self, p99: Option<std::time::Duration>) {
        if let Some(late) = p99 {
            self.late.add(late > self.th.late_p99, late.as_secs_f64());
        }
    }

    /// The flags found while sampling, plus `extra` (shim problems).
    pub fn finish(&self, extra: Vec<FidelityFlag>) -> Fidelity {
        let mut flags = Vec::new();
        if self.host.bad > 0 {
            flags.push(FidelityFlag {
                kind: "host_cpu_saturated",
                node: None,
                link: None,
                detail: format!(
                    "host CPU busy >= {:.0}% in {} of {} intervals (max {:.1}%); planned quotas sum to {:.2} of {} cores; PSI cpu some max {:.0}%",
                    self.th.host_busy * 100.0,
                    self.host.bad,
                    self.host.intervals,
                    self.host.worst * 100.0,
                    self.planned_cores,
                    self.host_cores,
                    self.psi_worst * 100.0
                ),
            });
        }
        for (node, l) in &self.node_lapses {
            if l.bad > 0 {
                flags.push(FidelityFlag {
                    kind: "node_quota_not_met",
                    node: Some(node.clone()),
                    link: None,
                    detail: format!(
                        "waited for a CPU and got less than its quota in {} of {} intervals (worst: {:.0}% of the quota lost; threshold {:.0}%)",
                        l.bad,
                        l.intervals,
                        l.worst * 100.0,
                        self.th.quota_deficit * 100.0
                    ),
                });
            }
        }
        if self.late.bad > 0 {
            flags.push(FidelityFlag {
                kind: "network_late",
                node: None,
                link: None,
                detail: format!(
                    "network core lateness p99 above {:.3} ms in {} of {} samples (max {:.3} ms real)",
                    self.th.late_p99.as_secs_f64() * 1e3,
                    self.late.bad,
                    self.late.intervals,
                    self.late.worst * 1e3
                ),
            });
        }
        flags.extend(extra);
        Fidelity::from_flags(flags)
    }
}

/// The share of its quota a node was denied in an interval: 0 unless it wanted CPU (waited
/// at least `min_wait` cores).
fn lapse(th: &FidelityThresholds, quota: f64, used: f64, waited: f64) -> f64 {
    if waited < th.min_wait {
        return 0.0;
    }
    quota_deficit(quota, used, waited)
}

/// Lost CPU as a share of the quota: what the node both waited for and did not get.
fn quota_deficit(quota: f64, used: f64, waited: f64) -> f64 {
    ((quota - used).max(0.0).min(waited)) / quota
}

/// (busy, total) jiffies from `/proc/stat`'s `cpu` line (idle and iowait are not busy).
fn parse_stat(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    if v.len() < 5 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest is already in user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v[4];
    Some((total - idle, total))
}

/// `total=` of the `some` line of `/proc/pressure/cpu` (µs).
fn parse_psi_some(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("some "))?;
    line.split_whitespace().find_map(|f| f.strip_prefix("total=")?.parse().ok())
}

/// Run-queue delay of a thread (ns), `/proc/<tid>/schedstat` field 2.
fn run_delay_ns(proc_root: &Path, tid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(proc_root.join(tid.to_string()).join("schedstat")).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod fidelity_tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        assert_eq!(parse_stat("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4 5\n"), Some((150, 1000)));
        assert_eq!(
            parse_psi_some("some avg10=1.00 avg60=0.50 avg300=0.10 total=12345\nfull avg10=0 total=0\n"),
            Some(12345)
        );
    }

    #[test]
    fn deficit_is_what_was_both_wanted_and_missing() {
        // Quota 0.5 core, used 0.5: met whatever the wait.
        assert_eq!(quota_deficit(0.5, 0.5, 1.0), 0.0);
        // Used 0.3, waited 0.1: lost 0.1 of 0.5 = 20%.
        assert!((quota_deficit(0.5, 0.3, 0.1) - 0.2).abs() < 1e-9);
        // Used 0.1 without waiting: it did not want more.
        assert_eq!(quota_deficit(0.5, 0.1, 0.0), 0.0);
    }

    #[test]
    fn wake_up_delays_of_an_idle_node_are_not_a_lapse() {
        let th = FidelityThresholds::default();
        // Quota 1.5% of a core, used 0.1%, 12 ms of wake-up delays per second: 80% of the
        // quota "lost" by the old rule, but the node never wanted more than it got.
        assert!(quota_deficit(0.015, 0.001, 0.012) > 0.75);
        assert_eq!(lapse(&th, 0.015, 0.001, 0.012), 0.0);
        // Waited 300 ms per second and got half its quota: denied half of it.
        assert!((lapse(&th, 0.1, 0.05, 0.3) - 0.5).abs() < 1e-9);
        // Waited a lot but used its whole quota (throttled): not a lapse.
        assert_eq!(lapse(&th, 0.1, 0.1, 0.5), 0.0);
    }

    #[test]
    fn saturated_host_and_late_network_are_flagged() {
        let dir = tempfile::tempdir().unwrap();
        let stat = dir.path().join("stat");
        let th = FidelityThresholds::default();
        let mut m = FidelityMonitor::new(th, dir.path(), 1.0);
        std::fs::write(&stat, "cpu  0 0 0 0 0 0 0 0\n").unwrap();
        m.sample_host();
        std::fs::write(&stat, "cpu  99 0 0 1 0 0 0 0\n").unwrap();
        m.sample_host();
        m.sample_network(Some(std::time::Duration::from_micros(200)));
        m.sample_network(Some(std::time::Duration::from_millis(3)));
        let f = m.finish(vec![]);
        assert_eq!(f.verdict, "unfaithful");
        let kinds: Vec<&str> = f.flags.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, ["host_cpu_saturated", "network_late"]);
        assert!(f.flags[0].detail.contains("in 1 of 1 intervals (max 99.0%)"), "{}", f.flags[0].detail);
        assert!(f.flags[1].detail.contains("1 of 2 samples (max 3.000 ms"), "{}", f.flags[1].detail);
        let ok = FidelityMonitor::new(th, dir.path(), 1.0).finish(vec![]);
        assert_eq!((ok.verdict, ok.flags.len()), ("ok", 0));
    }
}
