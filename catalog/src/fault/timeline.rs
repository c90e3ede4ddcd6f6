//! The faults of a run as an ordered list of steps in virtual time: each fault's *do* at
//! `at`, and its *undo* at `at + for`.
//!
//! # Design
//! Steps are sorted once by (virtual time, declaration order, do before undo), so faults
//! written for the same instant apply in the order written. The harness turns each step
//! into an operation of the run engine's schedule.

use std::time::Duration;

use super::model::Fault;

/// Whether a step applies a fault or undoes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Do,
    Undo,
}

/// One step: fault `fault` (an index into [`Timeline::faults`]) at virtual time `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub at: Duration,
    pub fault: usize,
    pub phase: Phase,
}

/// The fault timeline of a run.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    faults: Vec<Fault>,
    steps: Vec<Step>,
}

impl Timeline {
    pub fn new(faults: Vec<Fault>) -> Self {
        let mut steps = Vec::with_capacity(faults.len() * 2);
        for (i, f) in faults.iter().enumerate() {
            steps.push(Step { at: f.at, fault: i, phase: Phase::Do });
            if let Some(d) = f.undo_after {
                steps.push(Step { at: f.at + d, fault: i, phase: Phase::Undo });
            }
        }
        // Stable: equal times keep declaration order; a fault's undo never precedes its do.
        steps.sort_by_key(|s| (s.at, s.fault, s.phase));
        Self { faults, steps }
    }

    pub fn faults(&self) -> &[Fault] {
        &self.faults
    }

    pub fn is_empty(&self) -> bool {
        self.faults.is_empty()
    }

    /// Every step, in order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::Action;
    use super::*;

    fn fault(id: &str, at: u64, undo: Option<u64>, action: Action) -> Fault {
        Fault {
            id: id.into(),
            name: None,
            at: Duration::from_secs(at),
            undo_after: undo.map(Duration::from_secs),
            action,
        }
    }

    #[test]
    fn steps_are_ordered_with_undos_in_between() {
        let t = Timeline::new(vec![
            fault("a", 5, Some(10), Action::Kill(vec!["db".into()])),
            fault("b", 2, None, Action::Pause(vec!["web".into()])),
            fault("c", 15, Some(1), Action::Heal),
            fault("d", 10, None, Action::Resume(vec!["web".into()])),
        ]);
        let order: Vec<(u64, usize, Phase)> = t.steps().iter().map(|s| (s.at.as_secs(), s.fault, s.phase)).collect();
        assert_eq!(
            order,
            [
                (2, 1, Phase::Do),
                (5, 0, Phase::Do),
                (10, 3, Phase::Do),
                (15, 0, Phase::Undo),
                (15, 2, Phase::Do),
                (16, 2, Phase::Undo)
            ]
        );
    }
}
