//! The open-loop schedule: when each request should start, from a target rate and an
//! inter-arrival pattern.
//!
//! # Design
//! The schedule is produced one gap at a time (not precomputed), so that a rate change at run
//! time (`loadgen.ctl`) applies from the next scheduled request on. Gaps are integer
//! nanoseconds added to the previous *scheduled* start, never to the actual one: a dispatcher
//! that falls behind does not shift the plan (wrk2's rule against coordinated omission).
//!
//! With mean interval μ = 1/rate:
//! - `uniform`: every gap is μ;
//! - `poisson`: gaps are exponential with mean μ (a Poisson process);
//! - `random`: gaps are uniform on [0, 2μ];
//! - `sinusoidal`: gap = μ + A·sin(2πt/T), t the offset of the previous start, clamped at 0;
//! - `burst`: k requests at once every P (default P = k·μ, which keeps the mean rate).
//!
//! # Limitations
//! The sinusoid follows its formula literally: requests crowd where gaps are short, so its
//! time-averaged rate is 1/√(μ² − A²), above 1/μ (by 15% at A = μ/2). A sinusoidal gap that would be negative (A > μ) is clamped to 0, which raises the mean
//! rate above the target; keep A below μ.

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp};

/// Inter-arrival patterns of the open-loop mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pattern {
    Uniform,
    Poisson,
    Random,
    Sinusoidal,
    Burst,
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Pattern::Uniform => "uniform",
            Pattern::Poisson => "poisson",
            Pattern::Random => "random",
            Pattern::Sinusoidal => "sinusoidal",
            Pattern::Burst => "burst",
        };
        f.write_str(s)
    }
}

/// The sinusoid's amplitude: a duration, or a share of the mean interval (`50%`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amplitude {
    Ns(u64),
    Fraction(f64),
}

impl Amplitude {
    /// Parses `2ms` or `50%`.
    pub fn parse(text: &str) -> Result<Amplitude, String> {
        match text.trim().strip_suffix('%') {
            Some(p) => p
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .map(|v| Amplitude::Fraction(v / 100.0))
                .ok_or_else(|| format!("parse amplitude {text:?}: not a non-negative percentage")),
            None => super::units::duration_arg(text).map(Amplitude::Ns),
        }
    }

    fn ns(self, mean_ns: f64) -> f64 {
        match self {
            Amplitude::Ns(ns) => ns as f64,
            Amplitude::Fraction(f) => f * mean_ns,
        }
    }
}

/// The shape of the arrivals (everything but the rate, which may change at run time).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    pub pattern: Pattern,
    /// Sinusoidal amplitude A.
    pub amplitude: Amplitude,
    /// Sinusoidal period T, or the burst period P (`None`: T = 10 s, P = k/rate).
    pub period_ns: Option<u64>,
    /// Burst size k.
    pub burst: u32,
}

impl Default for Shape {
    fn default() -> Self {
        Shape { pattern: Pattern::Uniform, amplitude: Amplitude::Fraction(0.5), period_ns: None, burst: 10 }
    }
}

/// A seeded generator of gaps between scheduled starts.
pub struct Arrivals {
    shape: Shape,
    rng: rand::rngs::StdRng,
    /// Requests still to start at the current burst's instant.
    burst_left: u32,
}

const DEFAULT_SINE_PERIOD_NS: u64 = 10_000_000_000;

impl Arrivals {
    pub fn new(shape: Shape, seed: u64) -> Arrivals {
        let burst_left = shape.burst.max(1) - 1;
        Arrivals { shape, rng: rand::rngs::StdRng::seed_from_u64(seed), burst_left }
    }

    /// The gap (ns) from the previous scheduled start, at offset `t_ns` from the load's
    /// start, to the next one, at `rate` requests per second. The first request starts at
    /// offset 0 without asking.
    pub fn next_gap(&mut self, rate: f64, t_ns: u64) -> u64 {
        let mean = 1e9 / rate.max(1e-9);
        let gap = match self.shape.pattern {
            Pattern::Uniform => mean,
            Pattern::Poisson => match Exp::new(1.0 / mean) {
                Ok(exp) => exp.sample(&mut self.rng),
                Err(_) => mean,
            },
            Pattern::Random => self.rng.random_range(0.0..=2.0 * mean),
            Pattern::Sinusoidal => {
                let period = self.shape.period_ns.unwrap_or(DEFAULT_SINE_PERIOD_NS).max(1) as f64;
                let phase = 2.0 * std::f64::consts::PI * (t_ns as f64 / period);
                (mean + self.shape.amplitude.ns(mean) * phase.sin()).max(0.0)
            }
            Pattern::Burst => {
                if self.burst_left > 0 {
                    self.burst_left -= 1;
                    0.0
                } else {
                    let k = self.shape.burst.max(1);
                    self.burst_left = k - 1;
                    self.shape.period_ns.map_or(mean * f64::from(k), |p| p as f64)
                }
            }
        };
        gap.round().min(u64::MAX as f64 / 2.0) as u64
    }
}

/// When to stop generating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Stop at this many requests.
    pub count: Option<u64>,
    /// Stop at the first start at or past this offset (ns).
    pub duration_ns: Option<u64>,
}

impl Limit {
    /// Whether a request number `n` (0-based) at offset `t_ns` is still within the limit.
    pub fn admits(&self, n: u64, t_ns: u64) -> bool {
        self.count.is_none_or(|c| n < c) && self.duration_ns.is_none_or(|d| t_ns < d)
    }
}

/// The whole schedule at a fixed rate, as offsets (ns) from the start. Needs a limit.
pub fn offsets(shape: Shape, rate: f64, seed: u64, limit: Limit) -> Vec<u64> {
    let mut arrivals = Arrivals::new(shape, seed);
    let mut out = Vec::new();
    let mut t = 0u64;
    if limit.count.is_none() && limit.duration_ns.is_none() {
        return out;
    }
    while limit.admits(out.len() as u64, t) {
        out.push(t);
        t = t.saturating_add(arrivals.next_gap(rate, t));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaps(pattern: Pattern, rate: f64, n: usize) -> Vec<f64> {
        let mut a = Arrivals::new(Shape { pattern, ..Shape::default() }, 42);
        let mut t = 0;
        (0..n)
            .map(|_| {
                let g = a.next_gap(rate, t);
                t += g;
                g as f64
            })
            .collect()
    }

    /// Kolmogorov–Smirnov distance between a sample and a CDF.
    fn ks(sample: &[f64], cdf: impl Fn(f64) -> f64) -> f64 {
        let mut s = sample.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len() as f64;
        s.iter()
            .enumerate()
            .map(|(i, &x)| {
                let f = cdf(x);
                (f - i as f64 / n).abs().max(((i + 1) as f64 / n - f).abs())
            })
            .fold(0.0, f64::max)
    }

    /// The KS critical value at α = 0.01 for n samples.
    fn ks_critical(n: usize) -> f64 {
        1.628 / (n as f64).sqrt()
    }

    #[test]
    fn every_pattern_keeps_the_mean_rate() {
        for pattern in [Pattern::Uniform, Pattern::Poisson, Pattern::Random, Pattern::Sinusoidal, Pattern::Burst] {
            // 200/s for 50 virtual seconds (five sinusoid periods).
            let o = offsets(
                Shape { pattern, ..Shape::default() },
                200.0,
                7,
                Limit { count: None, duration_ns: Some(50_000_000_000) },
            );
            let rate = o.len() as f64 / 50.0;
            // A sinusoid's requests crowd where gaps are short: its time-averaged rate is
            // 1/√(μ² − A²), with A = μ/2 here.
            let want = if pattern == Pattern::Sinusoidal { 200.0 / 0.75f64.sqrt() } else { 200.0 };
            assert!((rate - want).abs() / want < 0.02, "{pattern}: {rate}/s, want {want}");
        }
    }

    #[test]
    fn poisson_gaps_are_exponential() {
        let g = gaps(Pattern::Poisson, 100.0, 20_000);
        let mean = 1e7;
        let d = ks(&g, |x| 1.0 - (-x / mean).exp());
        assert!(d < ks_critical(g.len()), "KS {d}");
        // The test can fail: uniform gaps are far from exponential.
        let u = gaps(Pattern::Random, 100.0, 20_000);
        assert!(ks(&u, |x| 1.0 - (-x / mean).exp()) > ks_critical(u.len()));
    }

    #[test]
    fn random_gaps_are_uniform_on_zero_to_two_means() {
        let g = gaps(Pattern::Random, 100.0, 20_000);
        let d = ks(&g, |x| (x / 2e7).clamp(0.0, 1.0));
        assert!(d < ks_critical(g.len()), "KS {d}");
        let p = gaps(Pattern::Poisson, 100.0, 20_000);
        assert!(ks(&p, |x| (x / 2e7).clamp(0.0, 1.0)) > ks_critical(p.len()));
    }

    #[test]
    fn uniform_is_exact_and_seeds_reproduce() {
        assert!(gaps(Pattern::Uniform, 1000.0, 100).iter().all(|&g| g == 1e6));
        assert_eq!(gaps(Pattern::Poisson, 50.0, 100), gaps(Pattern::Poisson, 50.0, 100));
        let mut other = Arrivals::new(Shape { pattern: Pattern::Poisson, ..Shape::default() }, 43);
        assert_ne!(gaps(Pattern::Poisson, 50.0, 1)[0], other.next_gap(50.0, 0) as f64);
    }

    #[test]
    fn sinusoid_follows_its_formula() {
        let shape = Shape {
            pattern: Pattern::Sinusoidal,
            amplitude: Amplitude::Ns(2_000_000),
            period_ns: Some(1_000_000_000),
            burst: 1,
        };
        let mut a = Arrivals::new(shape, 1);
        // μ = 10 ms; at t = T/4 the sine is 1: gap = 12 ms; at 3T/4: 8 ms.
        assert_eq!(a.next_gap(100.0, 250_000_000), 12_000_000);
        assert_eq!(a.next_gap(100.0, 750_000_000), 8_000_000);
        assert_eq!(Amplitude::parse("50%"), Ok(Amplitude::Fraction(0.5)));
        assert_eq!(Amplitude::parse("2ms"), Ok(Amplitude::Ns(2_000_000)));
    }

    #[test]
    fn bursts_start_together() {
        let shape = Shape { pattern: Pattern::Burst, burst: 4, ..Shape::default() };
        let o = offsets(shape, 100.0, 1, Limit { count: Some(8), duration_ns: None });
        // k = 4 at 100/s: P = 40 ms.
        assert_eq!(o, [0, 0, 0, 0, 40_000_000, 40_000_000, 40_000_000, 40_000_000]);
    }

    #[test]
    fn limits() {
        let o = offsets(Shape::default(), 10.0, 1, Limit { count: None, duration_ns: Some(1_000_000_000) });
        assert_eq!(o.len(), 10);
        assert_eq!(offsets(Shape::default(), 10.0, 1, Limit { count: Some(3), duration_ns: None }).len(), 3);
    }
}
