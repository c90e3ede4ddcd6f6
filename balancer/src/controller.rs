//! The δ-shift controller: moves Maglev slots away from the backend with the highest
//! in-band latency estimate.
//!
//! On a latency sample (at most once per `min_interval`), with the active backends'
//! estimates:
//! - **drain**: if the slowest backend's estimate exceeds the mean of the others' by more
//!   than `tolerance`, move δ·M slots (δ of the total share) from it, split equally
//!   among the other active backends — but never below `floor`·M slots;
//! - **relax**: otherwise, move up to δ·M slots from the backend furthest above its
//!   weighted share to the one furthest below, so shares return to the configured
//!   weights once latencies are even again.
//!
//! # Floor
//! A drained backend keeps `floor` of the slots (2 % by default), so it still receives
//! new connections, its estimate keeps being refreshed, and when it recovers the relax
//! step gives its share back. Without a floor a drained backend would be measured
//! never again and stay drained for good.
//!
//! # Limitations
//! Only new connections follow moved slots (existing ones stay pinned). The comparison
//! is against the *mean* of the others, so with many backends one slow backend is found
//! quickly but two equally slow ones are drained one after the other.

use crate::config::ControllerConfig;
use crate::maglev::{MaglevError, MaglevTable};

/// What one controller step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub kind: StepKind,
    pub from: usize,
    /// (recipient, slots moved to it)
    pub to: Vec<(usize, u32)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    Drain,
    Relax,
}

/// A controller configuration that cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("configure the controller: {what}")]
pub struct ControllerConfigError {
    pub what: &'static str,
}

#[derive(Debug, Clone)]
pub struct Controller {
    config: ControllerConfig,
    weights: Vec<f64>,
    last_step_ns: Option<u64>,
}

impl Controller {
    /// `weights` are the configured relative weights, the shares relax towards.
    ///
    /// # Errors
    /// δ outside (0, 1], a floor outside [0, 1), a tolerance below 1.
    pub fn new(config: ControllerConfig, weights: Vec<f64>) -> Result<Self, ControllerConfigError> {
        if !(config.delta > 0.0 && config.delta <= 1.0) {
            return Err(ControllerConfigError { what: "delta must be in (0, 1]" });
        }
        if !(config.floor >= 0.0 && config.floor < 1.0) {
            return Err(ControllerConfigError { what: "floor must be in [0, 1)" });
        }
        if !config.tolerance.is_finite() || config.tolerance < 1.0 {
            return Err(ControllerConfigError { what: "tolerance must be at least 1" });
        }
        Ok(Self { config, weights, last_step_ns: None })
    }

    /// Whether a step may act at `now_ns` (the rate limit), so callers can skip gathering
    /// estimates on the per-packet path.
    #[must_use]
    pub fn due(&self, now_ns: u64) -> bool {
        self.last_step_ns.is_none_or(|last| now_ns.saturating_sub(last) >= self.config.min_interval_ns)
    }

    /// One control decision at `now_ns`. `estimates[i]` is backend i's latency estimate;
    /// `active[i]` is false for a backend that is down (it neither gives nor takes slots).
    ///
    /// # Errors
    /// Only if `table` has fewer backends than `estimates` (a caller bug).
    pub fn step(
        &mut self,
        now_ns: u64,
        estimates: &[Option<f64>],
        active: &[bool],
        table: &mut MaglevTable,
    ) -> Result<Option<Step>, MaglevError> {
        if !self.due(now_ns) {
            return Ok(None);
        }
        let live: Vec<usize> = (0..estimates.len()).filter(|&i| active[i]).collect();
        if live.len() < 2 {
            return Ok(None);
        }
        let size = f64::from(table.size());
        // Slot counts are at most the table size (u32), so these conversions are exact.
        #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let delta_slots = (self.config.delta * size).round() as u32;
        let step = match self.slowest(estimates, &live) {
            Some(slow) => {
                #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let floor_slots = (self.config.floor * size).ceil() as u32;
                let spare = table.counts()[slow].saturating_sub(floor_slots);
                let moving = delta_slots.min(spare);
                let others: Vec<usize> = live.iter().copied().filter(|&i| i != slow).collect();
                drain(table, slow, &others, moving)?.map(|to| Step { kind: StepKind::Drain, from: slow, to })
            }
            None => self.relax(table, &live, delta_slots)?,
        };
        if step.is_some() {
            self.last_step_ns = Some(now_ns);
        }
        Ok(step)
    }

    /// The backend to drain: the highest estimate, if it exceeds the others' mean by more
    /// than the tolerance.
    fn slowest(&self, estimates: &[Option<f64>], live: &[usize]) -> Option<usize> {
        let known: Vec<(usize, f64)> = live.iter().filter_map(|&i| estimates[i].map(|e| (i, e))).collect();
        let &(slow, worst) = known.iter().max_by(|a, b| a.1.total_cmp(&b.1))?;
        let others: Vec<f64> = known.iter().filter(|(i, _)| *i != slow).map(|(_, e)| *e).collect();
        if others.is_empty() {
            return None;
        }
        #[expect(clippy::cast_precision_loss)]
        let mean = others.iter().sum::<f64>() / others.len() as f64;
        (worst > mean * self.config.tolerance).then_some(slow)
    }

    fn relax(&self, table: &mut MaglevTable, live: &[usize], delta_slots: u32) -> Result<Option<Step>, MaglevError> {
        let total_w: f64 = live.iter().map(|&i| self.weights[i]).sum();
        if total_w <= 0.0 {
            return Ok(None);
        }
        let size = f64::from(table.size());
        let excess: Vec<(usize, f64)> =
            live.iter().map(|&i| (i, f64::from(table.counts()[i]) - self.weights[i] / total_w * size)).collect();
        let Some(&(over, ex_over)) = excess.iter().max_by(|a, b| a.1.total_cmp(&b.1)) else {
            return Ok(None);
        };
        let Some(&(under, ex_under)) = excess.iter().min_by(|a, b| a.1.total_cmp(&b.1)) else {
            return Ok(None);
        };
        #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let amount = ex_over.min(-ex_under).min(f64::from(delta_slots)).floor().max(0.0) as u32;
        // Rounding leaves each backend within a slot of its weight: nothing to do.
        if amount <= 1 {
            return Ok(None);
        }
        let moved = table.move_slots(over, under, amount)?;
        Ok((moved > 0).then(|| Step { kind: StepKind::Relax, from: over, to: vec![(under, moved)] }))
    }
}

/// Moves `moving` slots from `from` split equally over `to` (the remainder to the first).
fn drain(
    table: &mut MaglevTable,
    from: usize,
    to: &[usize],
    moving: u32,
) -> Result<Option<Vec<(usize, u32)>>, MaglevError> {
    if moving == 0 || to.is_empty() {
        return Ok(None);
    }
    // At most 65,534 backends.
    #[expect(clippy::cast_possible_truncation)]
    let k = to.len() as u32;
    let mut moved = Vec::with_capacity(to.len());
    for (n, &dst) in to.iter().enumerate() {
        let share = moving / k + u32::from((n as u32) < moving % k);
        let got = table.move_slots(from, dst, share)?;
        moved.push((dst, got));
    }
    Ok(Some(moved))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maglev::DEFAULT_TABLE_SIZE;

    const MS: u64 = 1_000_000;

    fn table(n: usize) -> MaglevTable {
        let names: Vec<String> = (0..n).map(|i| format!("b{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        MaglevTable::build(DEFAULT_TABLE_SIZE, &refs, &vec![1.0; n]).unwrap()
    }

    fn controller(n: usize) -> Controller {
        Controller::new(ControllerConfig::default(), vec![1.0; n]).unwrap()
    }

    #[test]
    fn a_drain_moves_delta_split_equally() {
        let mut t = table(3);
        let mut c = controller(3);
        let before = t.counts().to_vec();
        let est = [Some(300_000.0), Some(1_300_000.0), Some(310_000.0)];
        let step = c.step(0, &est, &[true; 3], &mut t).unwrap().unwrap();
        assert_eq!(step.kind, StepKind::Drain);
        assert_eq!(step.from, 1);
        let delta = (0.1 * f64::from(DEFAULT_TABLE_SIZE)).round() as u32;
        assert_eq!(before[1] - t.counts()[1], delta);
        assert_eq!(step.to.iter().map(|x| x.1).sum::<u32>(), delta);
        assert!(step.to[0].1.abs_diff(step.to[1].1) <= 1);
        // Rate limit: no second step within min_interval.
        assert!(c.step(MS / 2, &est, &[true; 3], &mut t).unwrap().is_none());
        assert!(c.step(MS, &est, &[true; 3], &mut t).unwrap().is_some());
    }

    #[test]
    fn floor_holds_and_equal_latencies_do_not_move() {
        let mut t = table(2);
        let mut c = controller(2);
        let est = [Some(1_000.0), Some(5_000.0)];
        for k in 0..20 {
            c.step(k * MS, &est, &[true; 2], &mut t).unwrap();
        }
        let floor = (0.02 * f64::from(DEFAULT_TABLE_SIZE)).ceil() as u32;
        assert_eq!(t.counts()[1], floor);
        // Within tolerance and at the weights: nothing moves.
        let mut t = table(2);
        let even = [Some(1_000.0), Some(1_200.0)];
        for k in 0..20 {
            assert!(c.step(100 * MS + k * MS, &even, &[true; 2], &mut t).unwrap().is_none());
        }
    }

    /// A closed-loop model: backend latency is base + inflation; the controller sees
    /// the true latency. The slow backend converges to the floor in ceil((0.5-0.02)/δ)
    /// steps, then after recovery the shares relax back to equal.
    #[test]
    fn converges_to_floor_and_back() {
        let mut t = table(2);
        let mut c = controller(2);
        let mut now = 0;
        let mut steps = 0;
        let inflated = [Some(300_000.0), Some(1_300_000.0)];
        while c.step(now, &inflated, &[true; 2], &mut t).unwrap().is_some() {
            steps += 1;
            now += MS;
        }
        assert_eq!(steps, 5, "0.5 → 0.02 at 0.1 per step");
        assert!(t.shares()[1] < 0.03);
        let recovered = [Some(300_000.0), Some(320_000.0)];
        let mut relax = 0;
        while c.step(now, &recovered, &[true; 2], &mut t).unwrap().is_some() {
            relax += 1;
            now += MS;
            assert!(relax < 10, "relax must converge");
        }
        assert!((t.shares()[1] - 0.5).abs() < 1e-4, "{:?}", t.shares());
    }

    #[test]
    fn down_backends_are_left_alone() {
        let mut t = table(3);
        let mut c = controller(3);
        let est = [Some(1.0), None, Some(9.0)];
        let before = t.counts()[1];
        let step = c.step(0, &est, &[true, false, true], &mut t).unwrap().unwrap();
        assert_eq!(step.to, vec![(0, 6554)]);
        assert_eq!(t.counts()[1], before);
    }

    #[test]
    fn bad_configs_are_refused() {
        let mk = |c| Controller::new(c, vec![1.0]);
        assert!(mk(ControllerConfig { delta: 0.0, ..Default::default() }).is_err());
        assert!(mk(ControllerConfig { floor: 1.0, ..Default::default() }).is_err());
        assert!(mk(ControllerConfig { tolerance: 0.5, ..Default::default() }).is_err());
    }
}
