//! An experiment's fault timeline in the run engine's terms: each catalog fault's *do* and
//! *undo* step becomes a [`testbed::Operation`].
//!
//! # Design
//! The meaning of an undo lives here, in one `match`: the undo of `kill` or `stop` is a start,
//! of `pause` a thaw, of `cpu` the planned limit, of a clock step the opposite step, of
//! `degrade` the saved link parameters. CPU limits are computed here by the planner's one
//! quota rule ([`catalog::plan::cfs`]).

use catalog::fault::{Action, DirChoice, Fault, Phase, Timeline};
use catalog::plan::{cfs, MAX_PERIOD_US, MIN_QUOTA_US};
use netemu::graph::Dir;
use testbed::{CpuLimit, Degrade, FaultInfo, FaultSchedule, FaultStep, NodeSpec, Operation};

/// The schedule of `faults` for a run of `nodes` at `tdf`.
pub fn schedule(faults: &[Fault], nodes: &[NodeSpec], tdf: f64) -> FaultSchedule {
    let infos = faults
        .iter()
        .map(|f| FaultInfo {
            id: f.id.clone(),
            name: f.name.clone(),
            kind: f.action.kind(),
            targets: f.action.targets(),
            at: f.at,
            undo_after: f.undo_after,
        })
        .collect();
    let timeline = Timeline::new(faults.to_vec());
    let steps = timeline
        .steps()
        .iter()
        .map(|s| {
            let fault = &faults[s.fault];
            let undo = s.phase == Phase::Undo;
            FaultStep {
                at: s.at,
                fault: s.fault,
                undo,
                recover: undo || fault.action.is_recovery(),
                params: fault.action.params(),
                operation: operation(&fault.action, undo, nodes, tdf),
            }
        })
        .collect();
    FaultSchedule::new(infos, steps)
}

/// What the engine does for an action's do (`undo == false`) or undo.
fn operation(action: &Action, undo: bool, nodes: &[NodeSpec], tdf: f64) -> Operation {
    match (action, undo) {
        (Action::Kill(n), false) => Operation::Kill(n.clone()),
        (Action::Stop(n), false) => Operation::Stop(n.clone()),
        (Action::Kill(n) | Action::Stop(n), true) | (Action::Start(n), _) => {
            Operation::Start { nodes: n.clone(), kill_first: false }
        }
        (Action::Restart(n), _) => Operation::Start { nodes: n.clone(), kill_first: true },
        (Action::Pause(n), u) => Operation::Freeze { nodes: n.clone(), frozen: !u },
        (Action::Resume(n), _) => Operation::Freeze { nodes: n.clone(), frozen: false },
        (Action::Cpu { nodes: n, fraction }, u) => {
            let fraction = (!u).then_some(*fraction);
            let limits = n
                .iter()
                .map(|name| {
                    let limit =
                        fraction.and_then(|f| nodes.iter().find(|s| &s.name == name).map(|s| cpu_limit(s, f, tdf)));
                    (name.clone(), limit)
                })
                .collect();
            Operation::Cpu { limits, fraction }
        }
        (Action::ClockStep { nodes, offset_ns }, u) => {
            Operation::ClockStep { nodes: nodes.clone(), offset_ns: if u { -offset_ns } else { *offset_ns } }
        }
        (Action::ClockSkew { nodes, rate }, u) => {
            Operation::ClockRate { nodes: nodes.clone(), rate: if u { 1.0 } else { *rate } }
        }
        (Action::LinkDown(links), u) => Operation::LinkDown { links: links.clone(), down: !u },
        (Action::LinkUp(links), _) => Operation::LinkDown { links: links.clone(), down: false },
        (Action::Partition(sides), false) => Operation::Partition(sides.clone()),
        (Action::Partition(_), true) | (Action::Heal, _) => Operation::Heal,
        (Action::Degrade(d), false) => Operation::Degrade(Degrade {
            links: d.links.clone(),
            dirs: match d.dir {
                DirChoice::Both => vec![Dir::Forward, Dir::Reverse],
                DirChoice::Forward => vec![Dir::Forward],
                DirChoice::Reverse => vec![Dir::Reverse],
            },
            delay: d.delay,
            jitter: d.jitter,
            loss: d.loss,
            rate_bps: d.rate_bps,
        }),
        (Action::Degrade(_), true) => Operation::RestoreLinks,
        (Action::Inflate { nodes, delay }, u) => {
            Operation::Inflate { nodes: nodes.clone(), delay: (!u).then_some(*delay) }
        }
        (Action::Load { nodes, rate }, _) => Operation::Load { nodes: nodes.clone(), rate: *rate },
    }
}

/// `fraction` of a node's planned CPU limit. An unlimited node is cut to a fraction of the
/// cores it may perceive. Below the kernel's minimum quota at the longest period, the
/// minimum holds.
fn cpu_limit(node: &NodeSpec, fraction: f64, tdf: f64) -> CpuLimit {
    let r = &node.resources;
    let period = r.cpu_period_us.max(1);
    let quota = r.cpu_quota_us.map_or((r.cpus / tdf) * period as f64, |q| q as f64);
    let (quota_us, period_us) = cfs(quota * fraction / period as f64, period).unwrap_or((MIN_QUOTA_US, MAX_PERIOD_US));
    CpuLimit { quota_us, period_us }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn node(quota: u64, period: u64) -> NodeSpec {
        NodeSpec {
            name: "db".into(),
            group: None,
            argv: vec!["true".into()],
            env: Vec::new(),
            workdir: None,
            filesystem: None,
            user: None,
            main: false,
            ready: None,
            resources: testbed::NodeResources {
                cpu_quota_us: Some(quota),
                cpu_period_us: period,
                cpus: 1.0,
                ..Default::default()
            },
        }
    }

    #[test]
    fn quotas_scale_and_respect_the_kernel_minimum() {
        assert_eq!(cpu_limit(&node(50_000, 100_000), 0.5, 1.0), CpuLimit { quota_us: 25_000, period_us: 100_000 });
        // 0.5 ms would be under the 1 ms minimum: 0.5% of a core over a 200 ms period.
        assert_eq!(cpu_limit(&node(1_000, 100_000), 0.5, 1.0), CpuLimit { quota_us: 1_000, period_us: 200_000 });
        // Below the minimum even at the longest period: the minimum.
        assert_eq!(cpu_limit(&node(1_000, 1_000_000), 0.5, 1.0), CpuLimit { quota_us: 1_000, period_us: 1_000_000 });
    }

    #[test]
    fn undos_are_the_inverse_operations() {
        let nodes = [node(50_000, 100_000)];
        let kill = Action::Kill(vec!["db".into()]);
        assert_eq!(
            operation(&kill, true, &nodes, 1.0),
            Operation::Start { nodes: vec!["db".into()], kill_first: false }
        );
        let cpu = Action::Cpu { nodes: vec!["db".into()], fraction: 0.5 };
        assert_eq!(
            operation(&cpu, false, &nodes, 1.0),
            Operation::Cpu {
                limits: vec![("db".into(), Some(CpuLimit { quota_us: 25_000, period_us: 100_000 }))],
                fraction: Some(0.5)
            }
        );
        assert_eq!(
            operation(&cpu, true, &nodes, 1.0),
            Operation::Cpu { limits: vec![("db".into(), None)], fraction: None }
        );
        let step = Action::ClockStep { nodes: vec!["db".into()], offset_ns: 5 };
        assert_eq!(
            operation(&step, true, &nodes, 1.0),
            Operation::ClockStep { nodes: vec!["db".into()], offset_ns: -5 }
        );
        let inflate = Action::Inflate { nodes: vec!["db".into()], delay: Duration::from_millis(3) };
        assert_eq!(
            operation(&inflate, true, &nodes, 1.0),
            Operation::Inflate { nodes: vec!["db".into()], delay: None }
        );
    }
}
