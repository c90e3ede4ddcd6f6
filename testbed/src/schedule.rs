//! The faults of a run as the engine executes them: concrete operations at virtual times.
//!
//! # Design
//! The catalog decides what a fault and its undo mean (the undo of `kill` is a start, of
//! `degrade` a restore); the harness turns that into this schedule of [`Operation`]s, sorted
//! by virtual time. The engine asks for the next step's time to sleep exactly until it
//! (rather than a whole tick past it), then takes every step that is due.

use std::time::Duration;

/// One fault as written, for events and `run.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultInfo {
    /// Where it was written: `faults[3]` (topology) or `scenario.faults[3]`.
    pub id: String,
    pub name: Option<String>,
    /// The fault type as written (`kill`, `link_down`, …; clock faults are `clock`).
    pub kind: &'static str,
    /// Node or link names it acts on.
    pub targets: Vec<String>,
    /// Virtual time since the run's epoch.
    pub at: Duration,
    /// Undo after this long (virtual).
    pub undo_after: Option<Duration>,
}

/// A node's CPU limit while a `cpu` fault holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuLimit {
    pub quota_us: u64,
    pub period_us: u64,
}

/// A link degradation (perceived units).
#[derive(Debug, Clone, PartialEq)]
pub struct Degrade {
    pub links: Vec<String>,
    pub dirs: Vec<netemu::graph::Dir>,
    pub delay: Duration,
    pub jitter: Duration,
    pub loss: f64,
    pub rate_bps: Option<u64>,
}

/// What the engine does at one step.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    /// SIGKILL the nodes.
    Kill(Vec<String>),
    /// SIGTERM the nodes, SIGKILL after the grace period.
    Stop(Vec<String>),
    /// Start the nodes again with their readiness check; `kill_first`: a running node is
    /// killed first (restart), else left alone.
    Start { nodes: Vec<String>, kill_first: bool },
    /// Freeze or thaw the nodes (cgroup freezer).
    Freeze { nodes: Vec<String>, frozen: bool },
    /// Set each node's CPU limit (`None`: back to its planned one). `fraction` is recorded.
    Cpu { limits: Vec<(String, Option<CpuLimit>)>, fraction: Option<f64> },
    /// Step the nodes' virtual clocks.
    ClockStep { nodes: Vec<String>, offset_ns: i64 },
    /// Set the rate of the nodes' clocks relative to the run's.
    ClockRate { nodes: Vec<String>, rate: f64 },
    /// Take links down or bring them up.
    LinkDown { links: Vec<String>, down: bool },
    /// Cut the network between the sides.
    Partition(Vec<Vec<String>>),
    /// Undo the partition.
    Heal,
    /// Worsen links; the old parameters are kept for [`Operation::RestoreLinks`].
    Degrade(Degrade),
    /// Put back the parameters this fault's `Degrade` replaced.
    RestoreLinks,
    /// Add delay to every packet the nodes send (`None`: no extra delay).
    Inflate { nodes: Vec<String>, delay: Option<Duration> },
    /// Set the offered rate of load generator nodes (`loadgen.ctl`).
    Load { nodes: Vec<String>, rate: f64 },
}

/// One step: an operation of fault `fault` (an index into [`FaultSchedule::faults`]).
#[derive(Debug, Clone, PartialEq)]
pub struct FaultStep {
    pub at: Duration,
    pub fault: usize,
    /// Whether it is the fault's undo (`for:`).
    pub undo: bool,
    /// Whether its event is a `recover` (an undo, or a fault that is itself a recovery).
    pub recover: bool,
    /// Parameters for the event record.
    pub params: serde_json::Value,
    pub operation: Operation,
}

/// The fault schedule of a run.
#[derive(Debug, Clone, Default)]
pub struct FaultSchedule {
    faults: Vec<FaultInfo>,
    steps: Vec<FaultStep>,
    next: usize,
}

impl FaultSchedule {
    /// A schedule of `steps`, ordered by time (a stable sort keeps the given order of steps
    /// at the same instant).
    pub fn new(faults: Vec<FaultInfo>, mut steps: Vec<FaultStep>) -> Self {
        steps.sort_by_key(|s| s.at);
        Self { faults, steps, next: 0 }
    }

    pub fn faults(&self) -> &[FaultInfo] {
        &self.faults
    }

    pub fn is_empty(&self) -> bool {
        self.faults.is_empty()
    }

    /// Every step, in order.
    pub fn steps(&self) -> &[FaultStep] {
        &self.steps
    }

    /// Virtual time of the next step not yet taken.
    pub fn next_at(&self) -> Option<Duration> {
        self.steps.get(self.next).map(|s| s.at)
    }

    /// Takes the next step if it is due at virtual time `now`.
    pub fn pop_due(&mut self, now: Duration) -> Option<FaultStep> {
        let s = self.steps.get(self.next).filter(|s| s.at <= now)?.clone();
        self.next += 1;
        Some(s)
    }

    /// Whether a step not yet taken will act on `target` (node or link).
    pub fn pending_for(&self, target: &str) -> bool {
        self.steps[self.next..].iter().any(|s| self.faults[s.fault].targets.iter().any(|t| t == target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str, targets: &[&str]) -> FaultInfo {
        FaultInfo {
            id: id.into(),
            name: None,
            kind: "kill",
            targets: targets.iter().map(|t| (*t).to_owned()).collect(),
            at: Duration::ZERO,
            undo_after: None,
        }
    }

    fn step(at: u64, fault: usize, undo: bool) -> FaultStep {
        FaultStep {
            at: Duration::from_secs(at),
            fault,
            undo,
            recover: undo,
            params: serde_json::Value::Null,
            operation: Operation::Heal,
        }
    }

    #[test]
    fn due_steps_pop_in_order_and_report_pending_targets() {
        let mut t = FaultSchedule::new(vec![info("a", &["db"])], vec![step(3, 0, true), step(1, 0, false)]);
        assert_eq!(t.next_at(), Some(Duration::from_secs(1)));
        assert_eq!(t.pop_due(Duration::from_millis(999)), None);
        assert_eq!(t.pop_due(Duration::from_secs(1)).map(|s| s.undo), Some(false));
        assert!(t.pending_for("db"));
        assert!(!t.pending_for("web"));
        assert_eq!(t.next_at(), Some(Duration::from_secs(3)));
        assert_eq!(t.pop_due(Duration::from_secs(9)).map(|s| s.undo), Some(true));
        assert_eq!(t.pop_due(Duration::from_secs(9)), None);
        assert!(!t.pending_for("db"));
        assert_eq!(t.next_at(), None);
    }
}
