//! The planner: places nodes on hosts and picks the time-dilation factor.
//!
//! # Design
//! With TDF t a node of `cpus` original cores needs `cpus / t` host cores; memory is not
//! scaled. A placement is valid when, on every host, `Σ cpus/t ≤ cores · headroom − reserve`
//! and `Σ memory ≤ memory`. The reserve is the CPU of diorama itself on that host: the
//! harness (sampling, readiness checks, the fault timeline) and the userspace network
//! emulator, whose forwarding thread must never wait behind the nodes it serves. It shapes
//! `tdf: auto`; a TDF the user fixes is held to `cores · headroom` alone. Placement is first-fit decreasing by CPU (ties by memory, then
//! name, so plans are deterministic); groups marked `spread` go first, each member to the
//! host with the most free CPU. `tdf: auto` searches the smallest TDF (to 0.01) at which
//! placement succeeds: a binary search between the lower bound `Σcpus / Σ(cores·headroom)`
//! and a feasible upper bound finds a TDF that fits; first-fit decreasing is not monotone in
//! the bins' size, so the steps below it (all of them, within 2 million node placements;
//! a window below the answer for very large topologies) are then scanned from the bound
//! up, and the first that fits is taken.
//!
//! CFS: the topology's `cpu_period` is *virtual* time, like every duration a user writes: the
//! real period is `cpu_period × t` (at most the kernel's 1 s) and the quota `cpus / t` of it.
//! A node then gets the same CPU-milliseconds per period in every leg of a validation, so a
//! burst that fits the original's quota fits the scaled node's too; with a real period fixed
//! at 100 ms a scaled node's quota would be t times smaller in CPU-milliseconds and its
//! bursts throttled where the original's are not (measured: the first requests of a
//! 0.25-cpu Isaac at TDF 10 took 1.7× their TDF-1 time, 1.0× with the period scaled). Fine
//! granularity is the shim's pacing (docs/decisions/060-cpu-pacing.md), not the period's.
//! The kernel refuses quotas under 1 ms, so where that would happen the period is lengthened
//! (up to the kernel's 1 s maximum) rather than the quota rounded up, which would silently
//! give the node more CPU than planned.

mod host;
mod table;

pub use host::{Host, Inventory};

use serde::Serialize;

use crate::topology::model::Placement;
use crate::topology::Topology;

/// Kernel limits of the CFS bandwidth controller.
pub const MIN_QUOTA_US: u64 = 1_000;
pub const MAX_PERIOD_US: u64 = 1_000_000;
/// TDF resolution of `auto`.
const TDF_STEP: f64 = 0.01;

/// The TDF of step `m` (`m / 100`, the nearest double to the decimal: 14.2, not
/// 14.200000000000001). Every TDF the search tries and returns goes through here, so that
/// the plan's own placement and any check of it test exactly the same value.
fn step_tdf(m: u64) -> f64 {
    m as f64 / (1.0 / TDF_STEP).round()
}

/// Errors of planning.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("TDF {tdf} does not fit: {detail}; the smallest TDF that fits is {fits}")]
    TdfTooSmall { tdf: f64, detail: String, fits: String },
    #[error("the nodes' memory does not fit on the hosts at any TDF (memory is not scaled): {detail}")]
    Memory { detail: String },
    #[error("node {node} needs {need:.3} host cores at TDF {tdf}, more than the largest host offers ({cores:.2} cores × headroom)")]
    NodeTooBig { node: String, need: f64, cores: f64, tdf: f64 },
    #[error("node {node}'s CPU share {share:.6} of a core is below the kernel's minimum quota (1 ms per 1 s period); lower the TDF or raise its cpus")]
    QuotaTooSmall { node: String, share: f64 },
    #[error("the inventory has no hosts")]
    NoHosts,
    #[error("invalid TDF {0}: it must be a positive number")]
    BadTdf(f64),
}

/// Options of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanOptions {
    /// Overrides the topology's `tdf`.
    pub tdf: Option<f64>,
    /// Share of each host's cores the plan may use.
    pub headroom: f64,
    /// CFS period in virtual µs (the topology's `cpu_period`); the real period is this times
    /// the TDF, capped at the kernel's maximum, before lengthening.
    pub cpu_period_us: u64,
    /// Host cores set aside on every host for the harness and the network emulator.
    pub reserve_cores: f64,
}

/// Host cores diorama itself needs on a host, by default: the harness's sampling and
/// control (measured at 2–4% of a core on the bundled topologies) and, with an emulated
/// network, the userspace emulator's forwarding thread (one core at its 770 Mbit/s
/// saturation; a tenth to a fifth of a core at the few tens of Mbit/s of the bundled
/// validations at TDF 10).
pub fn default_reserve(has_network: bool) -> f64 {
    if has_network {
        0.25
    } else {
        0.05
    }
}

/// One node's placement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Placed {
    pub node: String,
    pub host: String,
    /// Cores of the original machine (perceived).
    pub cpus: f64,
    /// Host cores: `cpus / tdf`.
    pub real_cpus: f64,
    pub cpu_quota_us: u64,
    pub cpu_period_us: u64,
    pub memory: u64,
}

/// Per-host totals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostLoad {
    pub host: String,
    pub cores: f64,
    pub memory: u64,
    pub real_cpus: f64,
    pub memory_used: u64,
    pub nodes: usize,
}

/// A plan: the TDF and where every node runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub schema: u32,
    pub tdf: f64,
    pub tdf_auto: bool,
    pub headroom: f64,
    /// Host cores set aside on every host for the harness and the network emulator.
    pub reserve_cores: f64,
    pub nodes: Vec<Placed>,
    pub hosts: Vec<HostLoad>,
}

struct Item<'a> {
    idx: usize,
    name: &'a str,
    cpus: f64,
    memory: u64,
    spread_group: Option<&'a str>,
}

/// Places items at `tdf`; `Err` names the host and resource that overflowed first.
fn place(items: &[Item<'_>], hosts: &[Host], cap: &dyn Fn(&Host) -> f64, tdf: f64) -> Result<Vec<usize>, String> {
    let mut cpu_free: Vec<f64> = hosts.iter().map(cap).collect();
    let mut mem_free: Vec<u64> = hosts.iter().map(|h| h.memory).collect();
    let mut at = vec![usize::MAX; items.len()];
    // Tolerance for float sums at the exact boundary.
    const EPS: f64 = 1e-9;
    for (k, item) in items.iter().enumerate() {
        let need = item.cpus / tdf;
        let fits =
            |h: usize, cpu_free: &[f64], mem_free: &[u64]| need <= cpu_free[h] + EPS && item.memory <= mem_free[h];
        let chosen = if item.spread_group.is_some() {
            (0..hosts.len())
                .filter(|&h| fits(h, &cpu_free, &mem_free))
                .max_by(|&a, &b| cpu_free[a].total_cmp(&cpu_free[b]).then(b.cmp(&a)))
        } else {
            (0..hosts.len()).find(|&h| fits(h, &cpu_free, &mem_free))
        };
        let Some(h) = chosen else {
            let best = (0..hosts.len()).max_by(|&a, &b| cpu_free[a].total_cmp(&cpu_free[b])).unwrap_or(0);
            return Err(if item.memory > mem_free.iter().copied().max().unwrap_or(0) {
                format!("node {} needs {} MiB of memory, no host has that much left", item.name, item.memory >> 20)
            } else {
                format!(
                    "node {} needs {need:.3} host cores, host {} has {:.3} of {:.2} left",
                    item.name,
                    hosts[best].name,
                    cpu_free[best].max(0.0),
                    cap(&hosts[best])
                )
            });
        };
        cpu_free[h] -= need;
        mem_free[h] -= item.memory;
        at[k] = h;
    }
    Ok(at)
}

/// The real CFS period (µs) for a virtual period at TDF `tdf`: the kernel's clock is real, so
/// a period of the original machine lasts `tdf` times longer; capped at [`MAX_PERIOD_US`].
#[must_use]
pub fn real_period_us(virtual_period_us: u64, tdf: f64) -> u64 {
    let real = (virtual_period_us as f64 * tdf).round();
    if real.is_finite() && real >= 1.0 {
        (real as u64).clamp(MIN_QUOTA_US, MAX_PERIOD_US)
    } else {
        virtual_period_us.clamp(MIN_QUOTA_US, MAX_PERIOD_US)
    }
}

/// CFS quota and period for a share of `real_cpus` host cores.
pub fn cfs(real_cpus: f64, period_us: u64) -> Option<(u64, u64)> {
    let mut period = period_us.clamp(MIN_QUOTA_US, MAX_PERIOD_US);
    let mut quota = (real_cpus * period as f64).round() as u64;
    if quota < MIN_QUOTA_US {
        period = ((MIN_QUOTA_US as f64 / real_cpus).ceil() as u64).min(MAX_PERIOD_US);
        quota = (real_cpus * period as f64).round() as u64;
        if quota < MIN_QUOTA_US {
            return None;
        }
    }
    Some((quota, period))
}

/// The nodes in placement order: spread groups first (by group, then member order), then
/// first-fit decreasing.
fn items_of(topology: &Topology) -> Vec<Item<'_>> {
    let mut items: Vec<Item<'_>> = topology
        .nodes
        .iter()
        .enumerate()
        .map(|(idx, n)| Item {
            idx,
            name: &n.name,
            cpus: n.cpus,
            memory: n.memory,
            spread_group: (n.placement == Placement::Spread).then(|| n.group.as_deref().unwrap_or(&n.name)),
        })
        .collect();
    items.sort_by(|a, b| {
        b.spread_group.is_some().cmp(&a.spread_group.is_some()).then_with(|| match (a.spread_group, b.spread_group) {
            (Some(x), Some(y)) => x.cmp(y).then(a.idx.cmp(&b.idx)),
            _ => b.cpus.total_cmp(&a.cpus).then(b.memory.cmp(&a.memory)).then(a.name.cmp(b.name)),
        })
    });
    items
}

/// What the nodes of a host may use under `tdf: auto`: the headroom's share of its cores,
/// less the reserve.
fn auto_cap(h: &Host, opts: &PlanOptions) -> f64 {
    (h.cores * opts.headroom - opts.reserve_cores).max(0.0)
}

/// Plans `topology` on `inventory`.
pub fn plan(topology: &Topology, inventory: &Inventory, opts: &PlanOptions) -> Result<Plan, PlanError> {
    let hosts = &inventory.hosts;
    if hosts.is_empty() {
        return Err(PlanError::NoHosts);
    }
    let items = items_of(topology);
    let cap = |h: &Host| auto_cap(h, opts);
    // Memory does not scale: check it alone first (at an "infinite" TDF).
    if let Err(detail) = place(&items, hosts, &cap, f64::MAX) {
        return Err(PlanError::Memory { detail });
    }
    let max_cores = hosts.iter().map(cap).fold(0.0, f64::max);
    let auto_tdf = || -> f64 {
        let total_cpu: f64 = items.iter().map(|i| i.cpus).sum();
        let total_cap: f64 = hosts.iter().map(cap).sum();
        let biggest = items.iter().map(|i| i.cpus).fold(0.0, f64::max);
        let mut lo = (total_cpu / total_cap).max(biggest / max_cores).max(1.0);
        lo = (lo / TDF_STEP).floor() * TDF_STEP;
        let mut hi = lo.max(1.0);
        while place(&items, hosts, &cap, hi).is_err() {
            hi *= 2.0;
        }
        // Invariant: hi fits; find the smallest multiple of the step that fits.
        let (mut l, mut h) = ((lo / TDF_STEP).floor() as u64, (hi / TDF_STEP).ceil() as u64);
        if place(&items, hosts, &cap, step_tdf(l).max(1.0)).is_ok() {
            return step_tdf(l).max(1.0);
        }
        let l0 = l;
        while h - l > 1 {
            // Not (l + h) / 2: for an astronomical `cpus` both ends sit near u64::MAX.
            let m = l + (h - l) / 2;
            if place(&items, hosts, &cap, step_tdf(m)).is_ok() {
                h = m;
            } else {
                l = m;
            }
        }
        // First-fit decreasing is not monotone in the bins' size (a bin-packing anomaly):
        // a TDF below the binary search's answer can fit (found by the planner's property
        // test: 10.95 fit where the search returned 10.96). Scan the steps below it from the
        // lower bound up, within 2 million node placements in all (every step of any
        // topology of up to a few hundred nodes; a window below the answer for larger ones).
        // Saturating: for an astronomical `cpus` the steps saturate at u64::MAX, where `+ 1`
        // wrapped to 0 and made this scan endless (found by the fuzzer).
        let scan = (2_000_000 / items.len().max(1) as u64).max(1);
        if let Some(m) = (l0.max(h.saturating_sub(scan)).saturating_add(1)..h)
            .find(|&m| place(&items, hosts, &cap, step_tdf(m)).is_ok())
        {
            h = m;
        }
        step_tdf(h)
    };
    let fixed = opts.tdf.or(topology.tdf.fixed());
    let (tdf, tdf_auto) = match fixed {
        Some(t) if !(t > 0.0 && t.is_finite()) => return Err(PlanError::BadTdf(t)),
        Some(t) => (t, false),
        None => (auto_tdf(), true),
    };
    // A TDF the user fixed is held to the headroom alone: the reserve shapes the automatic
    // choice, and the fidelity monitor flags a run whose host then saturates.
    let fixed_cap = |h: &Host| h.cores * opts.headroom;
    let cap_at: &dyn Fn(&Host) -> f64 = if tdf_auto { &cap } else { &fixed_cap };
    let at = match place(&items, hosts, cap_at, tdf) {
        Ok(at) => at,
        Err(detail) => {
            let max_cores = hosts.iter().map(cap_at).fold(0.0, f64::max);
            let biggest = items.iter().find(|i| i.cpus / tdf > max_cores + 1e-9);
            if let Some(big) = biggest {
                return Err(PlanError::NodeTooBig {
                    node: big.name.to_owned(),
                    need: big.cpus / tdf,
                    cores: max_cores,
                    tdf,
                });
            }
            let total_cpu: f64 = items.iter().map(|i| i.cpus).sum::<f64>() / tdf;
            let total_cap: f64 = hosts.iter().map(cap_at).sum();
            let over = (total_cpu / total_cap - 1.0) * 100.0;
            let detail = if over > 0.0 {
                format!(
                    "the nodes need {total_cpu:.2} host cores, {over:.0}% over the {total_cap:.2} available (cores × headroom {}); {detail}",
                    opts.headroom
                )
            } else {
                detail
            };
            return Err(PlanError::TdfTooSmall { tdf, detail, fits: format!("{:.2}", auto_tdf()) });
        }
    };
    let mut placed: Vec<Option<Placed>> = vec![None; topology.nodes.len()];
    for (k, item) in items.iter().enumerate() {
        let real = item.cpus / tdf;
        let (quota, period) = cfs(real, real_period_us(opts.cpu_period_us, tdf))
            .ok_or_else(|| PlanError::QuotaTooSmall { node: item.name.to_owned(), share: real })?;
        placed[item.idx] = Some(Placed {
            node: item.name.to_owned(),
            host: hosts[at[k]].name.clone(),
            cpus: item.cpus,
            real_cpus: real,
            cpu_quota_us: quota,
            cpu_period_us: period,
            memory: item.memory,
        });
    }
    let nodes: Vec<Placed> = placed.into_iter().flatten().collect();
    let loads = hosts
        .iter()
        .map(|h| {
            let mine = nodes.iter().filter(|p| p.host == h.name);
            HostLoad {
                host: h.name.clone(),
                cores: h.cores,
                memory: h.memory,
                real_cpus: mine.clone().map(|p| p.real_cpus).sum(),
                memory_used: mine.clone().map(|p| p.memory).sum(),
                nodes: mine.count(),
            }
        })
        .collect();
    Ok(Plan {
        schema: 1,
        tdf,
        tdf_auto,
        headroom: opts.headroom,
        reserve_cores: opts.reserve_cores,
        nodes,
        hosts: loads,
    })
}

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
