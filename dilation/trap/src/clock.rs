//! The virtual clock as the tracer computes it: the shim's model ([`crate::model`]) fed
//! from the environment and, when the node has one, the control page.
//!
//! # Invariants
//! The formulas, the initial offset `d0` and the per-clock offsets are those of the shim,
//! so a trapped process and a preloaded one with the same epoch agree on every clock. The
//! control page is re-read only when its seqlock counter changed (one `pread` per trap).

use dilation::control::ControlFile;
use dilation::TimeModel;
use nix::time::{clock_gettime, ClockId};

use crate::model::{self, Kind, Params};

/// Errors of the clock.
#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    #[error("read a clock")]
    Clock(#[source] nix::Error),
}

/// Virtual time for one node.
#[derive(Debug)]
pub struct VirtualClock {
    params: Params,
    control: Option<ControlFile>,
    generation: u64,
    /// `clock − CLOCK_REALTIME` for each clock id, sampled at start-up.
    offsets: [i64; model::MAX_CLOCK + 1],
    /// The environment's parameters (before any control-page read).
    initial: Params,
    /// Control-page reads that failed (the last good parameters were used).
    pub errors: u64,
}

fn real_ns(clock: i32) -> Result<i64, ClockError> {
    let ts = clock_gettime(ClockId::from_raw(clock)).map_err(ClockError::Clock)?;
    Ok(model::ts_ns(ts.tv_sec(), ts.tv_nsec()))
}

fn params_of(m: &TimeModel, steps: i64, d0: i64) -> Params {
    Params {
        tdf: m.tdf,
        mult: model::mult_of(m.tdf),
        epoch_real: m.epoch.real_ns,
        epoch_virt: m.epoch.virt_ns,
        steps,
        d0,
    }
}

impl VirtualClock {
    /// `initial` is the model of the environment (its epoch defines `d0`); `control` the
    /// node's control page, which takes precedence once read.
    pub fn new(initial: &TimeModel, control: Option<ControlFile>) -> Result<Self, ClockError> {
        let d0 = initial.epoch.virt_ns - initial.epoch.real_ns;
        let mut offsets = [0i64; model::MAX_CLOCK + 1];
        for (id, off) in offsets.iter_mut().enumerate() {
            let id = id as i32;
            // The alarm clocks fail without an RTC; calls on them then fail the same way.
            if let (Kind::Steady, Ok(c), Ok(r)) = (model::kind(id), real_ns(id), real_ns(model::CLOCK_REALTIME)) {
                *off = c - r;
            }
        }
        let startup = params_of(initial, 0, d0);
        let mut clock = Self { params: startup, control, generation: u64::MAX, offsets, initial: startup, errors: 0 };
        clock.refresh();
        Ok(clock)
    }

    fn refresh(&mut self) {
        let Some(cf) = &self.control else { return };
        match cf.generation() {
            Ok(g) if g == self.generation => {}
            Ok(g) => match cf.state() {
                Ok((m, steps)) => {
                    self.params = params_of(&m, steps, self.params.d0);
                    self.generation = g;
                }
                Err(_) => self.errors += 1,
            },
            Err(_) => self.errors += 1,
        }
    }

    /// Current parameters (re-read from the control page if it changed).
    pub fn params(&mut self) -> Params {
        self.refresh();
        self.params
    }

    /// The environment's parameters, as a shim would take them at start-up.
    pub fn initial(&self) -> Params {
        self.initial
    }

    /// `clock − CLOCK_REALTIME` per clock id, sampled at start-up.
    pub fn offsets(&self) -> [i64; model::MAX_CLOCK + 1] {
        self.offsets
    }

    fn offset(&self, clock: i32) -> i64 {
        usize::try_from(clock).ok().and_then(|i| self.offsets.get(i)).copied().unwrap_or(0)
    }

    /// Virtual ns on `clock`, `None` for clocks that are not dilated (CPU time).
    pub fn now(&mut self, clock: i32) -> Result<Option<i64>, ClockError> {
        let kind = model::kind(clock);
        if kind == Kind::Passthrough {
            return Ok(None);
        }
        let p = self.params();
        let x = real_ns(clock)?;
        Ok(Some(model::to_virtual(&p, kind, self.offset(clock), x)))
    }

    /// The real instant on `clock` at which it reads virtual `v` (absolute deadlines).
    pub fn deadline(&mut self, clock: i32, v: i64) -> i64 {
        let p = self.params();
        model::to_real(&p, model::kind(clock), self.offset(clock), v).max(0)
    }

    pub fn tdf(&mut self) -> f64 {
        self.params().tdf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dilation::Epoch;

    #[test]
    fn realtime_and_monotonic_run_slower() {
        let now = dilation::realtime_ns();
        let m = TimeModel::new(10.0, Epoch { real_ns: now - 10_000_000_000, virt_ns: now - 10_000_000_000 }).unwrap();
        let mut c = VirtualClock::new(&m, None).unwrap();
        let v = c.now(model::CLOCK_REALTIME).unwrap().unwrap();
        // 10 s of real time since the epoch are 1 s of virtual time.
        assert!((v - (now - 9_000_000_000)).abs() < 100_000_000, "{v} vs {now}");
        assert_eq!(c.now(2).unwrap(), None, "CPU time is not dilated");
        let mono = c.now(model::CLOCK_MONOTONIC).unwrap().unwrap();
        let real_mono = real_ns(model::CLOCK_MONOTONIC).unwrap();
        assert!(mono < real_mono - 8_000_000_000, "monotonic is dilated too: {mono} vs {real_mono}");
        // Deadlines invert the model.
        let d = c.deadline(model::CLOCK_REALTIME, v + 1_000_000);
        assert!((d - now - 10_000_000).abs() < 100_000_000);
    }

    #[test]
    fn the_control_page_takes_over() {
        let dir = std::env::temp_dir().join(format!("trap-clock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let m = TimeModel::new(10.0, Epoch::now()).unwrap();
        let cf = ControlFile::create(&dir.join("c"), &m).unwrap();
        let mut c = VirtualClock::new(&m, Some(ControlFile::open(&dir.join("c")).unwrap())).unwrap();
        assert_eq!(c.tdf(), 10.0);
        cf.set_tdf(2.0).unwrap();
        assert_eq!(c.tdf(), 2.0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
