//! How fast this host's caches forget a working set while its owner waits, measured at the
//! start of a dilated run.
//!
//! Time dilation stretches every pause of a node (its pacing sleeps, its waits for other
//! tiers) TDF times in real time. Where the caches decay in real time (a cloud VM whose L3
//! other tenants share), the same work then costs more CPU after each pause at TDF `t` than
//! at TDF 1, and the pacing charges that CPU at the node's stretch: CPU-bound latency reads
//! slow by up to [`CacheDecay::ratio`]. This is a property of the host, not of a node, so it
//! is recorded in `run.json` (`host.cache_decay`) and warned about, not flagged.
//! `bench/cache_decay.sh` measures the whole curve (docs/fidelity.md).

use std::hint::black_box;
use std::time::Duration;

use nix::time::{clock_gettime, ClockId};
use serde::Serialize;

/// The working set walked per unit: beyond the private L2 of current server cores.
const SET_BYTES: usize = 2 << 20;
/// A pause at TDF 1: about a pacing sleep of a small node (tens of µs of CPU, stretch ≈ 10).
const BASE_PAUSE: Duration = Duration::from_micros(300);
/// The longest pause measured (the decay is complete well before).
const MAX_PAUSE: Duration = Duration::from_millis(30);
const REPS: usize = 9;
/// A ratio from which `diorama run` warns.
pub const WARN_RATIO: f64 = 1.3;

/// The CPU of one unit of work after a pause as long as at TDF 1 and after one TDF times
/// longer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CacheDecay {
    pub set_bytes: usize,
    pub base_pause_us: f64,
    pub dilated_pause_us: f64,
    /// Median thread CPU of a unit after the base pause.
    pub base_cpu_us: f64,
    /// Median thread CPU of a unit after the dilated pause.
    pub dilated_cpu_us: f64,
}

impl CacheDecay {
    /// How much more CPU the same work costs at this TDF than at TDF 1.
    pub fn ratio(&self) -> f64 {
        if self.base_cpu_us > 0.0 {
            self.dilated_cpu_us / self.base_cpu_us
        } else {
            1.0
        }
    }

    /// The warning for the log, if the decay is worth one.
    pub fn warning(&self, tdf: f64) -> Option<String> {
        let r = self.ratio();
        (r >= WARN_RATIO).then(|| {
            format!(
                "the host's caches decay in real time: a {} KiB working set costs {r:.2}x the CPU after a {:.1} ms \
                 pause as after a {:.1} ms one (a pause at TDF 1 stretched to TDF {tdf}); CPU-bound latency of paced \
                 nodes may read up to that much slower than at TDF 1 (docs/fidelity.md, \"Cache decay\")",
                self.set_bytes >> 10,
                self.dilated_pause_us / 1e3,
                self.base_pause_us / 1e3,
            )
        })
    }
}

/// The pause that `base` becomes at TDF `tdf`, capped.
fn dilated(base: Duration, tdf: f64) -> Duration {
    base.mul_f64(tdf.clamp(1.0, 1e6)).min(MAX_PAUSE)
}

fn median(v: &mut [f64]) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

fn thread_cpu_ns() -> Option<i64> {
    let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).ok()?;
    Some(t.tv_sec() * 1_000_000_000 + t.tv_nsec())
}

fn unit(set: &[u8]) {
    let mut h = 0xcbf2_9ce4_8422_2325_u64;
    for line in set.iter().step_by(64) {
        h = (h ^ u64::from(*line)).wrapping_mul(0x100_0000_01b3);
    }
    black_box(h);
}

/// Median thread CPU (µs) of a unit after each of `REPS` pauses of `pause`.
fn cpu_after(set: &[u8], pause: Duration) -> Option<f64> {
    unit(set);
    let mut v = Vec::with_capacity(REPS);
    for _ in 0..REPS {
        std::thread::sleep(pause);
        let c0 = thread_cpu_ns()?;
        unit(black_box(set));
        v.push((thread_cpu_ns()? - c0) as f64 / 1e3);
    }
    median(&mut v)
}

/// Measures the decay for TDF `tdf` on this thread (about `REPS` times the dilated pause);
/// `None` below TDF 2 (nothing to compare) or without a thread CPU clock.
pub fn measure(tdf: f64) -> Option<CacheDecay> {
    if tdf.is_nan() || tdf < 2.0 {
        return None;
    }
    let set = vec![1u8; SET_BYTES];
    let long = dilated(BASE_PAUSE, tdf);
    // Interleaved base, long, base: a host whose load changes during the probe shows it in
    // the two base figures, and the lower one is the reference.
    let b1 = cpu_after(&set, BASE_PAUSE)?;
    let d = cpu_after(&set, long)?;
    let b2 = cpu_after(&set, BASE_PAUSE)?;
    Some(CacheDecay {
        set_bytes: SET_BYTES,
        base_pause_us: BASE_PAUSE.as_secs_f64() * 1e6,
        dilated_pause_us: long.as_secs_f64() * 1e6,
        base_cpu_us: b1.min(b2),
        dilated_cpu_us: d,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decay(base: f64, dilated: f64) -> CacheDecay {
        CacheDecay {
            set_bytes: SET_BYTES,
            base_pause_us: 300.0,
            dilated_pause_us: 3000.0,
            base_cpu_us: base,
            dilated_cpu_us: dilated,
        }
    }

    #[test]
    fn the_pause_grows_with_the_tdf_up_to_the_cap() {
        assert_eq!(dilated(BASE_PAUSE, 10.0), Duration::from_millis(3));
        assert_eq!(dilated(BASE_PAUSE, 1000.0), MAX_PAUSE);
        assert_eq!(dilated(BASE_PAUSE, 0.5), BASE_PAUSE);
    }

    #[test]
    fn a_warm_host_is_not_warned_about() {
        assert!(decay(80.0, 90.0).warning(10.0).is_none());
        let w = decay(80.0, 184.0).warning(10.0).unwrap();
        assert!(w.contains("2.30x") && w.contains("2048 KiB") && w.contains("TDF 10"), "{w}");
        assert_eq!(decay(0.0, 5.0).ratio(), 1.0);
    }

    #[test]
    fn nothing_is_measured_at_tdf_1() {
        assert!(measure(1.0).is_none());
        assert!(measure(f64::NAN).is_none());
    }

    #[test]
    fn a_measurement_has_positive_figures() {
        // Figures only (the ratio depends on the host); the test checks the plumbing.
        let d = measure(2.0).unwrap();
        assert!(d.base_cpu_us > 0.0 && d.dilated_cpu_us > 0.0, "{d:?}");
        assert_eq!(d.dilated_pause_us, 600.0);
    }
}
