//! Peak EWMA (Finagle's `PeakEwma`, Linkerd's default): each backend's cost is an
//! exponentially weighted moving average of its latency that jumps to any latency above
//! it (the peak) and decays with time constant τ otherwise; load is
//! `cost × (in-flight + 1)`. The pick is power-of-two-choices over that load, as in both.
//!
//! A backend with no latency yet but requests in flight gets a large penalty plus its
//! in-flight count, so an unknown backend is tried, but not flooded.

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::{two_choices, BackendView, Policy};

/// Load of a backend with no latency sample but requests in flight (ns).
pub const PENALTY_NS: f64 = 1e12;

#[derive(Debug, Clone, Copy, Default)]
struct Ewma {
    cost_ns: f64,
    stamp_ns: i64,
}

impl Ewma {
    /// Folds in an observation at `now_ns` (Finagle's `observe`).
    fn observe(&mut self, now_ns: i64, rtt_ns: f64, tau_ns: f64) {
        let td = (now_ns - self.stamp_ns).max(0) as f64;
        let w = (-td / tau_ns).exp();
        self.cost_ns = if rtt_ns > self.cost_ns { rtt_ns } else { self.cost_ns * w + rtt_ns * (1.0 - w) };
        self.stamp_ns = now_ns.max(self.stamp_ns);
    }

    /// The cost decayed to `now_ns` (Finagle's `get`: observe a zero).
    fn cost(&self, now_ns: i64, tau_ns: f64) -> f64 {
        let mut e = *self;
        e.observe(now_ns, 0.0, tau_ns);
        e.cost_ns
    }
}

/// P2C over peak-EWMA load.
#[derive(Debug)]
pub struct PeakEwma {
    rng: StdRng,
    tau_ns: f64,
    ewma: Vec<Ewma>,
}

impl PeakEwma {
    /// `n` backends, decay time constant `tau_ns` (Finagle's default is 10 s).
    pub fn new(n: usize, seed: u64, tau_ns: f64) -> Self {
        PeakEwma { rng: StdRng::seed_from_u64(seed), tau_ns: tau_ns.max(1.0), ewma: vec![Ewma::default(); n] }
    }

    /// Load of backend `i` at `now_ns`.
    pub fn load(&self, now_ns: i64, i: usize, inflight: u32) -> f64 {
        let cost = self.ewma.get(i).map_or(0.0, |e| e.cost(now_ns, self.tau_ns));
        if cost == 0.0 && inflight != 0 {
            PENALTY_NS + f64::from(inflight)
        } else {
            cost * (f64::from(inflight) + 1.0)
        }
    }
}

impl Policy for PeakEwma {
    fn pick(&mut self, now_ns: i64, backends: &[BackendView]) -> Option<usize> {
        let (a, b) = two_choices(&mut self.rng, backends)?;
        let (la, lb) = (self.load(now_ns, a, backends[a].inflight), self.load(now_ns, b, backends[b].inflight));
        Some(if lb < la { b } else { a })
    }

    fn on_response(&mut self, now_ns: i64, backend: usize, latency_ns: u64, _ok: bool) {
        let tau = self.tau_ns;
        if let Some(e) = self.ewma.get_mut(backend) {
            e.observe(now_ns, latency_ns as f64, tau);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::views;
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn peaks_jump_and_decay() {
        let mut p = PeakEwma::new(2, 1, 10e9);
        p.on_response(0, 0, 1_000_000, true);
        assert_eq!(p.load(0, 0, 0), 1e6);
        p.on_response(0, 0, 50_000_000, true);
        assert_eq!(p.load(0, 0, 0), 50e6, "a peak is taken at once");
        // One time constant later the peak has decayed to 1/e.
        let l = p.load(10 * S, 0, 0);
        assert!((l - 50e6 / std::f64::consts::E).abs() < 1e3, "{l}");
        // A low sample right after the peak moves the average only a little.
        p.on_response(S / 100, 0, 1_000_000, true);
        assert!(p.load(S / 100, 0, 0) > 49e6);
        assert_eq!(p.load(0, 0, 3), 4.0 * p.load(0, 0, 0), "load scales with in-flight + 1");
    }

    #[test]
    fn prefers_the_faster_backend_and_penalises_the_unknown_busy_one() {
        let mut p = PeakEwma::new(2, 2, 10e9);
        p.on_response(0, 0, 2_000_000, true);
        p.on_response(0, 1, 20_000_000, true);
        for _ in 0..20 {
            assert_eq!(p.pick(0, &views(&[0, 0], &[])), Some(0));
        }
        // Ten in flight on the fast one make it costlier than one idle slow one.
        assert_eq!(p.pick(0, &views(&[10, 0], &[])), Some(1));
        let q = PeakEwma::new(2, 2, 10e9);
        assert!(q.load(0, 0, 1) >= PENALTY_NS);
        assert_eq!(q.load(0, 0, 0), 0.0);
    }
}
