//! The time model of diorama: environment variable names, the control file layout, and the
//! virtual/real time maths. The harness links this library; the LD_PRELOAD shim
//! (`dilation/shim`, built as `libdilation.so`) implements the same maths on the hot path.
//!
//! With time-dilation factor `t` and epoch `(E_r, E_v)`, a process sees virtual time
//! `v = E_v + (r − E_r) / t` where `r` is the real clock. A wait of `d` virtual lasts `d·t`
//! real. See `docs/dilation.md`.
#![forbid(unsafe_code)]

pub mod control;
pub mod coverage;
pub mod elf;
pub mod probe;
pub mod program;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use dilation_abi::env::{
    CONTROL as ENV_CONTROL, CPU_CORES as ENV_CPU_CORES, CPU_QUANTUM_US as ENV_CPU_QUANTUM_US,
    CPU_SPEED as ENV_CPU_SPEED, DILATE_STAT as ENV_DILATE_STAT, EPOCH_REAL_NS as ENV_EPOCH_REAL_NS,
    EPOCH_VIRT_NS as ENV_EPOCH_VIRT_NS, TDF as ENV_TDF, TRAP as ENV_TRAP, TRAP_PROGRAM as ENV_TRAP_PROGRAM,
};

/// Errors of the time model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    #[error("TDF {0} is not a positive finite number")]
    BadTdf(f64),
    #[error("environment variable {name}={value:?} is not {expected}")]
    BadEnv { name: &'static str, value: String, expected: &'static str },
}

/// The instant at which a run's virtual clock starts, in real and virtual time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Epoch {
    /// CLOCK_REALTIME ns.
    pub real_ns: i64,
    /// Virtual CLOCK_REALTIME ns.
    pub virt_ns: i64,
}

impl Epoch {
    /// Now, with virtual = real at this instant.
    pub fn now() -> Epoch {
        let ns = realtime_ns();
        Epoch { real_ns: ns, virt_ns: ns }
    }
}

/// A TDF for people: at most 3 decimals, no trailing zeros (`2.78`, not `2.7800000000000002`).
pub fn tdf_text(tdf: f64) -> String {
    let text = format!("{tdf:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    text.to_owned()
}

/// CLOCK_REALTIME in ns since the Unix epoch.
pub fn realtime_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// A TDF and an epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimeModel {
    pub tdf: f64,
    pub epoch: Epoch,
}

impl TimeModel {
    pub fn new(tdf: f64, epoch: Epoch) -> Result<Self, ModelError> {
        if !(tdf.is_finite() && tdf > 0.0) {
            return Err(ModelError::BadTdf(tdf));
        }
        Ok(Self { tdf, epoch })
    }

    /// Virtual ns at real ns `real_ns`.
    pub fn virtual_ns(&self, real_ns: i64) -> i64 {
        let dr = (real_ns - self.epoch.real_ns) as f64;
        self.epoch.virt_ns + (dr / self.tdf).round() as i64
    }

    /// Real ns at which virtual time reaches `virt_ns`.
    pub fn real_ns(&self, virt_ns: i64) -> i64 {
        let dv = (virt_ns - self.epoch.virt_ns) as f64;
        self.epoch.real_ns + (dv * self.tdf).round() as i64
    }

    /// Real duration of a virtual one.
    pub fn real_duration(&self, virt: Duration) -> Duration {
        virt.mul_f64(self.tdf)
    }

    /// Virtual duration of a real one.
    pub fn virtual_duration(&self, real: Duration) -> Duration {
        real.div_f64(self.tdf)
    }

    /// The `DILATION_*` variables that give a process this model (not `LD_PRELOAD`).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (ENV_TDF.to_owned(), format!("{}", self.tdf)),
            (ENV_EPOCH_REAL_NS.to_owned(), self.epoch.real_ns.to_string()),
            (ENV_EPOCH_VIRT_NS.to_owned(), self.epoch.virt_ns.to_string()),
        ]
    }

    /// The model of this process's environment; `None` when `DILATION_TDF` is unset.
    pub fn from_env() -> Result<Option<Self>, ModelError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// As [`TimeModel::from_env`], reading variables through `get`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, ModelError> {
        let Some(tdf_text) = get(ENV_TDF) else { return Ok(None) };
        let tdf: f64 = tdf_text.trim().parse().map_err(|_| ModelError::BadEnv {
            name: ENV_TDF,
            value: tdf_text.clone(),
            expected: "a positive number",
        })?;
        let int = |name: &'static str| -> Result<Option<i64>, ModelError> {
            get(name)
                .map(|v| {
                    v.trim().parse().map_err(|_| ModelError::BadEnv {
                        name,
                        value: v.clone(),
                        expected: "an integer of ns",
                    })
                })
                .transpose()
        };
        let real = int(ENV_EPOCH_REAL_NS)?;
        let virt = int(ENV_EPOCH_VIRT_NS)?;
        let epoch = match (real, virt) {
            (Some(r), Some(v)) => Epoch { real_ns: r, virt_ns: v },
            (Some(r), None) => Epoch { real_ns: r, virt_ns: r },
            _ => Epoch::now(),
        };
        Self::new(tdf, epoch).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_and_real_invert() {
        let m = TimeModel::new(10.0, Epoch { real_ns: 1_000, virt_ns: 500 }).unwrap();
        assert_eq!(m.virtual_ns(1_000), 500);
        assert_eq!(m.virtual_ns(11_000), 1_500);
        assert_eq!(m.real_ns(1_500), 11_000);
        assert_eq!(m.real_duration(Duration::from_millis(10)), Duration::from_millis(100));
        assert_eq!(m.virtual_duration(Duration::from_secs(10)), Duration::from_secs(1));
        for r in [-5_000_000_007i64, 0, 123_456_789_012] {
            assert!((m.real_ns(m.virtual_ns(r)) - r).abs() <= 10);
        }
    }

    #[test]
    fn tdfs_print_with_at_most_three_decimals() {
        assert_eq!(tdf_text(2.7800000000000002), "2.78");
        assert_eq!(tdf_text(10.0), "10");
        assert_eq!(tdf_text(1.23456), "1.235");
        assert_eq!(tdf_text(0.5), "0.5");
    }

    #[test]
    fn tdf_below_one_speeds_time_up() {
        let m = TimeModel::new(0.5, Epoch { real_ns: 0, virt_ns: 0 }).unwrap();
        assert_eq!(m.virtual_ns(1_000), 2_000);
    }

    #[test]
    fn bad_tdfs_are_refused() {
        for t in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(TimeModel::new(t, Epoch::now()).is_err());
        }
    }

    #[test]
    fn env_round_trips() {
        let m = TimeModel::new(4.0, Epoch { real_ns: 7, virt_ns: 9 }).unwrap();
        let env = m.env();
        let got = TimeModel::from_lookup(|k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())).unwrap();
        assert_eq!(got, Some(m));
        assert_eq!(TimeModel::from_lookup(|_| None).unwrap(), None);
        let bad = TimeModel::from_lookup(|k| (k == ENV_TDF).then(|| "fast".to_owned())).unwrap_err();
        assert!(bad.to_string().contains("DILATION_TDF"));
    }
}
