//! How fast this host's caches forget a working set while its owner waits, measured before a
//! dilated run's nodes start and then throughout the run.
//!
//! Time dilation stretches every pause of a node (its pacing sleeps, its waits for other
//! tiers) TDF times in real time. Where the caches decay in real time (a cloud VM whose L3
//! other tenants share), the same work then costs more CPU after each pause at TDF `t` than
//! at TDF 1, and the pacing charges that CPU at the node's stretch: CPU-bound latency reads
//! slow by up to [`CacheDecay::ratio`]. This is a property of the host, not of a node, so it
//! is recorded in `run.json` (`host.cache_decay`) and warned about, not flagged.
//! `bench/cache_decay.sh` measures the whole curve (docs/fidelity.md).
//!
//! # Design
//! Two pauses of a node at TDF 1 are compared with the same pauses stretched by the TDF: a
//! small node's pacing sleep (0.3 ms) and a wait between requests (3 ms); the ratio is the
//! larger of the two. The host's decay changes with its other tenants' load within minutes
//! (the same VM measured ×1.0 and ×2 for a 30 ms pause on one day), so [`Watch`] measures
//! again every [`WATCH_EVERY`] on a thread of its own, unpinned like the nodes' threads, while
//! the nodes run: what the run reports is the median over the run, not the first reading.
//!
//! # Limitations
//! A proxy: a 2 MiB walk, not the nodes' own working sets. Each reading costs about 2 ms of
//! CPU and, at TDF 10, 0.4 s of real time (mostly sleeping).

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::time::{clock_gettime, ClockId};
use serde::Serialize;

/// The working set walked per unit: beyond the private L2 of current server cores.
const SET_BYTES: usize = 2 << 20;
/// Pauses of a node at TDF 1: a small node's pacing sleep (tens of µs of CPU at stretch ≈
/// 10) and a wait between two requests of a service.
const BASE_PAUSES: [Duration; 2] = [Duration::from_micros(300), Duration::from_millis(3)];
/// The longest pause measured (the decay is complete well before).
const MAX_PAUSE: Duration = Duration::from_millis(100);
const REPS: usize = 9;
/// A ratio from which `diorama run` warns.
pub const WARN_RATIO: f64 = 1.3;
/// How often [`Watch`] measures during a run (real time).
pub const WATCH_EVERY: Duration = Duration::from_secs(10);

/// The CPU of one unit of work after a pause as long as at TDF 1 and after one TDF times
/// longer, for one pause.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PauseDecay {
    pub base_pause_us: f64,
    pub dilated_pause_us: f64,
    /// Median thread CPU of a unit after the base pause.
    pub base_cpu_us: f64,
    /// Median thread CPU of a unit after the dilated pause.
    pub dilated_cpu_us: f64,
}

impl PauseDecay {
    fn ratio(&self) -> f64 {
        if self.base_cpu_us > 0.0 {
            self.dilated_cpu_us / self.base_cpu_us
        } else {
            1.0
        }
    }
}

/// One reading: every pause of [`BASE_PAUSES`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheDecay {
    pub set_bytes: usize,
    pub pauses: Vec<PauseDecay>,
}

impl CacheDecay {
    /// How much more CPU the same work costs at this TDF than at TDF 1: the largest ratio of
    /// the pauses measured.
    pub fn ratio(&self) -> f64 {
        self.pauses.iter().map(PauseDecay::ratio).fold(1.0, f64::max)
    }
}

/// The readings of a run: the first (before any node) and those taken while it ran.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DecayRecord {
    /// Seconds of real time since the first reading, and the reading.
    pub readings: Vec<(f64, CacheDecay)>,
}

impl DecayRecord {
    /// The median ratio over the run; `None` without readings.
    pub fn ratio(&self) -> Option<f64> {
        let mut r: Vec<f64> = self.readings.iter().map(|(_, d)| d.ratio()).collect();
        median(&mut r)
    }

    /// The largest ratio of any reading.
    pub fn max_ratio(&self) -> Option<f64> {
        self.readings.iter().map(|(_, d)| d.ratio()).reduce(f64::max)
    }

    /// The warning for the log, if the decay over the run is worth one.
    pub fn warning(&self, tdf: f64) -> Option<String> {
        let r = self.ratio()?;
        let (_, first) = self.readings.first()?;
        let worst = first.pauses.iter().max_by(|a, b| a.ratio().total_cmp(&b.ratio()))?;
        (r >= WARN_RATIO).then(|| {
            format!(
                "the host's caches decay in real time: a {} KiB working set costs {r:.2}x the CPU after a pause \
                 stretched to TDF {} as after the same pause at TDF 1 (median of {} readings over the run; \
                 e.g. {:.1} ms against {:.1} ms); CPU-bound latency of paced nodes may read up to that much slower \
                 than at TDF 1 (docs/fidelity.md, \"Cache decay\")",
                first.set_bytes >> 10,
                dilation::tdf_text(tdf),
                self.readings.len(),
                worst.dilated_pause_us / 1e3,
                worst.base_pause_us / 1e3,
            )
        })
    }

    /// `run.json`'s `host.cache_decay`.
    pub fn to_json(&self, tdf: f64) -> Option<serde_json::Value> {
        let (_, first) = self.readings.first()?;
        Some(serde_json::json!({
            "ratio": self.ratio(),
            "max_ratio": self.max_ratio(),
            "warning": self.warning(tdf),
            "measured": first,
            "readings": self.readings.iter().map(|(t, d)| serde_json::json!({"t_real_s": t, "ratio": d.ratio()})).collect::<Vec<_>>(),
        }))
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

/// Measures the decay for TDF `tdf` on this thread (about `REPS` times the dilated pauses);
/// `None` below TDF 2 (nothing to compare) or without a thread CPU clock.
pub fn measure(tdf: f64) -> Option<CacheDecay> {
    if tdf.is_nan() || tdf < 2.0 {
        return None;
    }
    let set = vec![1u8; SET_BYTES];
    let mut pauses = Vec::with_capacity(BASE_PAUSES.len());
    for base in BASE_PAUSES {
        let long = dilated(base, tdf);
        // Interleaved base, long, base: a host whose load changes during the probe shows it in
        // the two base figures, and the lower one is the reference.
        let b1 = cpu_after(&set, base)?;
        let d = cpu_after(&set, long)?;
        let b2 = cpu_after(&set, base)?;
        pauses.push(PauseDecay {
            base_pause_us: base.as_secs_f64() * 1e6,
            dilated_pause_us: long.as_secs_f64() * 1e6,
            base_cpu_us: b1.min(b2),
            dilated_cpu_us: d,
        });
    }
    Some(CacheDecay { set_bytes: SET_BYTES, pauses })
}

/// Measures the decay once now (before the nodes), then every [`WATCH_EVERY`] on a thread
/// of its own until [`Watch::finish`].
pub struct Watch {
    record: Arc<Mutex<DecayRecord>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watch {
    /// `None` below TDF 2; the first reading is taken on the calling thread.
    pub fn start(tdf: f64) -> Option<Watch> {
        let first = measure(tdf)?;
        let t0 = Instant::now();
        let record = Arc::new(Mutex::new(DecayRecord { readings: vec![(0.0, first)] }));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (record.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("diorama-cache".into())
            .spawn(move || {
                let mut next = t0 + WATCH_EVERY;
                while !s.load(Ordering::Relaxed) {
                    // Short naps, so that finishing never waits a whole interval.
                    if Instant::now() < next {
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                    next += WATCH_EVERY;
                    if let Some(d) = measure(tdf) {
                        if let Ok(mut rec) = r.lock() {
                            rec.readings.push((t0.elapsed().as_secs_f64(), d));
                        }
                    }
                }
            })
            .inspect_err(|err| tracing::warn!(%err, "the host's cache decay is measured once only"))
            .ok();
        Some(Watch { record, stop, thread })
    }

    /// The first reading (taken before the nodes).
    pub fn first(&self) -> Option<CacheDecay> {
        self.record.lock().ok()?.readings.first().map(|(_, d)| d.clone())
    }

    /// Stops the thread and answers every reading.
    pub fn finish(mut self) -> DecayRecord {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.record.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decay(base: f64, dilated: f64) -> CacheDecay {
        CacheDecay {
            set_bytes: SET_BYTES,
            pauses: vec![
                PauseDecay { base_pause_us: 300.0, dilated_pause_us: 3000.0, base_cpu_us: 80.0, dilated_cpu_us: 80.0 },
                PauseDecay {
                    base_pause_us: 3000.0,
                    dilated_pause_us: 30000.0,
                    base_cpu_us: base,
                    dilated_cpu_us: dilated,
                },
            ],
        }
    }

    fn record(ratios: &[(f64, f64)]) -> DecayRecord {
        DecayRecord { readings: ratios.iter().enumerate().map(|(i, &(b, d))| (i as f64 * 10.0, decay(b, d))).collect() }
    }

    #[test]
    fn the_pause_grows_with_the_tdf_up_to_the_cap() {
        assert_eq!(dilated(BASE_PAUSES[0], 10.0), Duration::from_millis(3));
        assert_eq!(dilated(BASE_PAUSES[1], 10.0), Duration::from_millis(30));
        assert_eq!(dilated(BASE_PAUSES[1], 1000.0), MAX_PAUSE);
        assert_eq!(dilated(BASE_PAUSES[0], 0.5), BASE_PAUSES[0]);
    }

    #[test]
    fn a_reading_s_ratio_is_its_worst_pause() {
        assert!((decay(80.0, 184.0).ratio() - 2.3).abs() < 1e-9);
        assert_eq!(decay(80.0, 40.0).ratio(), 1.0, "a pause that came out faster is no decay");
        assert_eq!(decay(0.0, 5.0).ratio(), 1.0);
    }

    #[test]
    fn the_run_is_judged_by_its_median_reading_not_its_first() {
        // Warm at the start, decaying for most of the run.
        let r = record(&[(80.0, 84.0), (80.0, 160.0), (80.0, 176.0), (80.0, 168.0)]);
        assert!((r.ratio().unwrap() - 2.1).abs() < 1e-9);
        assert!((r.max_ratio().unwrap() - 2.2).abs() < 1e-9);
        let w = r.warning(10.0).unwrap();
        assert!(
            w.contains("2.10x") && w.contains("2048 KiB") && w.contains("TDF 10") && w.contains("4 readings"),
            "{w}"
        );
        let j = r.to_json(10.0).unwrap();
        assert_eq!(j["readings"].as_array().unwrap().len(), 4);
        assert!(j["measured"]["pauses"][1]["dilated_pause_us"].as_f64() == Some(30000.0), "{j}");
        // A warm run is not warned about, even with one cold reading.
        let warm = record(&[(80.0, 84.0), (80.0, 200.0), (80.0, 82.0)]);
        assert!(warm.warning(10.0).is_none());
        assert!(DecayRecord::default().to_json(10.0).is_none());
    }

    #[test]
    fn nothing_is_measured_at_tdf_1() {
        assert!(measure(1.0).is_none());
        assert!(measure(f64::NAN).is_none());
        assert!(Watch::start(1.0).is_none());
    }

    #[test]
    fn a_measurement_has_positive_figures() {
        // Figures only (the ratio depends on the host); the test checks the plumbing.
        let d = measure(2.0).unwrap();
        assert!(d.pauses.iter().all(|p| p.base_cpu_us > 0.0 && p.dilated_cpu_us > 0.0), "{d:?}");
        assert_eq!(d.pauses[0].dilated_pause_us, 600.0);
        assert_eq!(d.pauses[1].dilated_pause_us, 6000.0);
    }

    #[test]
    fn a_watch_keeps_its_first_reading_and_stops_at_once() {
        let w = Watch::start(2.0).unwrap();
        assert!(w.first().is_some());
        let t = Instant::now();
        let rec = w.finish();
        assert!(t.elapsed() < Duration::from_secs(2));
        assert_eq!(rec.readings.len(), 1);
    }
}
