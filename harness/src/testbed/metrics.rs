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

use super::resources::NodeCgroup;
use super::spec::NodeSpec;

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
        let Ok(stats) = cgroup.stats() else { return };
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

    pub fn sample(&mut self, t: f64, samples: &[netem::core::LinkSample], lateness: Option<std::time::Duration>) {
        let late = lateness.map_or(String::new(), |d| format!("{:.1}", d.as_secs_f64() * 1e6));
        for s in samples {
            let dir = match s.dir {
                netem::graph::Dir::Forward => "forward",
                netem::graph::Dir::Reverse => "reverse",
            };
            let prev = self.last.insert((s.link.clone(), dir), (t, s.bytes));
            let util = match (prev, s.rate_bps) {
                (Some((t0, b0)), Some(rate)) if t > t0 => ((s.bytes - b0.min(s.bytes)) as f64 * 8.0 / (t - t0)) / rate as f64,
                _ => 0.0,
            };
            let line = format!("{t:.3},{},{dir},{},{},{},{},{util:.4},{late}", s.link, s.bytes, s.packets, s.drops, s.queue_bytes);
            if let Err(err) = writeln!(self.out, "{line}") {
                tracing::warn!(?err, "failed to write links.csv");
                return;
            }
        }
        let _ = self.out.flush();
    }
}
