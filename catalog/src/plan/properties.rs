//! Property tests of the planner over random topologies and inventories (bolero; run by
//! `cargo test`, bounded in CI by `scripts/fuzz`): a plan never over-commits a host, and
//! `tdf: auto` is minimal to 0.01.

use std::fmt::Write as _;
use std::path::Path;

use super::*;

/// A random case: nodes (cpus in hundredths, memory in MiB, spread), hosts (half-cores,
/// GiB), headroom and reserve (in hundredths).
type Case = (Vec<(u16, u16, bool)>, Vec<(u8, u8)>, u8, u8);

struct Built {
    topology: Topology,
    hosts: Inventory,
    opts: PlanOptions,
}

fn build((nodes, hosts, headroom, reserve): &Case) -> Option<Built> {
    if nodes.is_empty() || hosts.is_empty() {
        return None;
    }
    let mut yaml = String::from("name: p\nnodes:\n");
    for (i, (cpus, mem, spread)) in nodes.iter().take(12).enumerate() {
        let cpus = f64::from(cpus % 800 + 5) / 100.0;
        let mem = mem % 4096 + 16;
        let placement = if *spread { "spread" } else { "pack" };
        let _ = write!(yaml, "  - name: n{i}\n    cpus: {cpus}\n    memory: {mem}MiB\n    placement: {placement}\n    run: {{command: x}}\n");
    }
    let topology = crate::load::topology_str(Path::new("p.yaml"), &yaml).expect("generated topologies are valid");
    let hosts = Inventory {
        hosts: hosts
            .iter()
            .take(4)
            .enumerate()
            .map(|(i, (half_cores, gib))| Host {
                name: format!("h{i}"),
                cores: f64::from(half_cores % 32 + 1) / 2.0,
                memory: u64::from(gib % 64 + 1) << 30,
            })
            .collect(),
    };
    let opts = PlanOptions {
        tdf: None,
        headroom: f64::from(headroom % 51 + 50) / 100.0,
        cpu_period_us: 100_000,
        reserve_cores: f64::from(reserve % 51) / 100.0,
    };
    Some(Built { topology, hosts, opts })
}

/// What the nodes of `host` may use: the headroom's share less the reserve (auto), or the
/// headroom's share alone (a fixed TDF).
fn cap(host: &Host, opts: &PlanOptions, auto: bool) -> f64 {
    let share = host.cores * opts.headroom;
    if auto {
        (share - opts.reserve_cores).max(0.0)
    } else {
        share
    }
}

fn assert_within_hosts(p: &Plan, b: &Built) {
    assert_eq!(p.nodes.len(), b.topology.nodes.len(), "every node placed once");
    for host in &b.hosts.hosts {
        let mine: Vec<&Placed> = p.nodes.iter().filter(|n| n.host == host.name).collect();
        let cpu: f64 = mine.iter().map(|n| n.real_cpus).sum();
        let mem: u64 = mine.iter().map(|n| n.memory).sum();
        let limit = cap(host, &b.opts, p.tdf_auto);
        assert!(cpu <= limit + 1e-6, "host {} over-committed: {cpu} > {limit} cores\n{p}", host.name);
        assert!(mem <= host.memory, "host {} over-committed: {mem} > {} bytes\n{p}", host.name, host.memory);
        for n in mine {
            assert!((n.real_cpus - n.cpus / p.tdf).abs() < 1e-9, "{n:?}");
            // The quota grants the planned share, rounded to a microsecond of its period.
            let granted = n.cpu_quota_us as f64 / n.cpu_period_us as f64;
            assert!((granted - n.real_cpus).abs() <= 0.5 / n.cpu_period_us as f64 + 1e-12, "{n:?}");
        }
    }
}

#[test]
fn no_plan_over_commits_a_host() {
    bolero::check!().with_type::<Case>().for_each(|case| {
        let Some(mut b) = build(case) else { return };
        for tdf in [None, Some(1.0), Some(3.7)] {
            b.opts.tdf = tdf;
            if let Ok(p) = plan(&b.topology, &b.hosts, &b.opts) {
                assert_within_hosts(&p, &b);
            }
        }
    });
}

#[test]
fn auto_is_minimal_to_a_hundredth() {
    bolero::check!().with_type::<Case>().for_each(|case| {
        let Some(b) = build(case) else { return };
        let Ok(p) = plan(&b.topology, &b.hosts, &b.opts) else { return };
        assert!(p.tdf_auto);
        assert!(p.tdf >= 1.0, "auto never speeds time up: {}", p.tdf);
        let m = (p.tdf * 100.0).round() as u64;
        assert_eq!(p.tdf, step_tdf(m), "a multiple of 0.01: {}", p.tdf);
        // The planner's own placement at auto's capacity answers "does t fit?": rebuilding
        // that capacity another way (hosts shrunk by the reserve) differs by float rounding
        // exactly at the boundary.
        let items = items_of(&b.topology);
        let fits = |t: f64| place(&items, &b.hosts.hosts, &|h: &Host| auto_cap(h, &b.opts), t).is_ok();
        assert!(fits(p.tdf), "auto's own TDF {} fits", p.tdf);
        if m > 100 {
            assert!(!fits(step_tdf(m - 1)), "TDF {} fits, yet auto chose {}", step_tdf(m - 1), p.tdf);
        }
    });
}
