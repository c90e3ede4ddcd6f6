//! Load-balancing policies behind one trait, selected by an enum.
//!
//! # Design
//! A policy sees every event of the balancer with its virtual timestamp: a request sent to
//! a backend ([`Policy::on_request`]), its answer or failure ([`Policy::on_response`]),
//! and the choice itself ([`Policy::pick`]), given a view of each backend's in-flight count
//! and health. That is all an in-band feedback controller needs as well, so one can be
//! added as a sibling file without touching the balancer. Policies are deterministic given
//! their seed.

mod least_conn;
mod p2c;
mod peak_ewma;
mod random;
mod round_robin;

pub use least_conn::LeastConn;
pub use p2c::PowerOfTwo;
pub use peak_ewma::PeakEwma;
pub use random::Random;
pub use round_robin::RoundRobin;

use rand::rngs::StdRng;
use rand::Rng;

/// What a policy knows of one backend when it picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendView {
    /// Requests sent and not yet answered.
    pub inflight: u32,
    /// False while passive health checking has ejected the backend.
    pub available: bool,
}

/// A load-balancing policy.
pub trait Policy: Send {
    /// The backend for the next request, among those `available`; `None` if none is.
    fn pick(&mut self, now_ns: i64, backends: &[BackendView]) -> Option<usize>;
    /// A request was sent to `backend` at `now_ns` (virtual unix ns).
    fn on_request(&mut self, _now_ns: i64, _backend: usize) {}
    /// The request to `backend` ended at `now_ns` after `latency_ns`; `ok` is false for a
    /// transport failure, a timeout or a 5xx answer.
    fn on_response(&mut self, _now_ns: i64, _backend: usize, _latency_ns: u64, _ok: bool) {}
}

/// The policies `diorama-lb --policy` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PolicyKind {
    RoundRobin,
    Random,
    #[value(alias = "least-connections")]
    LeastConn,
    #[value(alias = "power-of-two")]
    P2c,
    PeakEwma,
}

/// A policy chosen at run time.
#[derive(Debug)]
pub enum AnyPolicy {
    RoundRobin(RoundRobin),
    Random(Random),
    LeastConn(LeastConn),
    P2c(PowerOfTwo),
    PeakEwma(PeakEwma),
}

impl AnyPolicy {
    /// A policy of `kind` for `n` backends; `decay_ns` is peak-EWMA's time constant.
    pub fn new(kind: PolicyKind, n: usize, seed: u64, decay_ns: f64) -> Self {
        match kind {
            PolicyKind::RoundRobin => AnyPolicy::RoundRobin(RoundRobin::default()),
            PolicyKind::Random => AnyPolicy::Random(Random::new(seed)),
            PolicyKind::LeastConn => AnyPolicy::LeastConn(LeastConn::default()),
            PolicyKind::P2c => AnyPolicy::P2c(PowerOfTwo::new(seed)),
            PolicyKind::PeakEwma => AnyPolicy::PeakEwma(PeakEwma::new(n, seed, decay_ns)),
        }
    }
}

impl Policy for AnyPolicy {
    fn pick(&mut self, now_ns: i64, backends: &[BackendView]) -> Option<usize> {
        match self {
            AnyPolicy::RoundRobin(p) => p.pick(now_ns, backends),
            AnyPolicy::Random(p) => p.pick(now_ns, backends),
            AnyPolicy::LeastConn(p) => p.pick(now_ns, backends),
            AnyPolicy::P2c(p) => p.pick(now_ns, backends),
            AnyPolicy::PeakEwma(p) => p.pick(now_ns, backends),
        }
    }
    fn on_request(&mut self, now_ns: i64, backend: usize) {
        match self {
            AnyPolicy::RoundRobin(p) => p.on_request(now_ns, backend),
            AnyPolicy::Random(p) => p.on_request(now_ns, backend),
            AnyPolicy::LeastConn(p) => p.on_request(now_ns, backend),
            AnyPolicy::P2c(p) => p.on_request(now_ns, backend),
            AnyPolicy::PeakEwma(p) => p.on_request(now_ns, backend),
        }
    }
    fn on_response(&mut self, now_ns: i64, backend: usize, latency_ns: u64, ok: bool) {
        match self {
            AnyPolicy::RoundRobin(p) => p.on_response(now_ns, backend, latency_ns, ok),
            AnyPolicy::Random(p) => p.on_response(now_ns, backend, latency_ns, ok),
            AnyPolicy::LeastConn(p) => p.on_response(now_ns, backend, latency_ns, ok),
            AnyPolicy::P2c(p) => p.on_response(now_ns, backend, latency_ns, ok),
            AnyPolicy::PeakEwma(p) => p.on_response(now_ns, backend, latency_ns, ok),
        }
    }
}

/// Indices of the available backends.
fn available(backends: &[BackendView]) -> Vec<usize> {
    backends.iter().enumerate().filter(|(_, b)| b.available).map(|(i, _)| i).collect()
}

/// Two distinct available backends drawn at random (one if only one is available).
fn two_choices(rng: &mut StdRng, backends: &[BackendView]) -> Option<(usize, usize)> {
    let up = available(backends);
    match up.len() {
        0 => None,
        1 => Some((up[0], up[0])),
        n => {
            let a = rng.random_range(0..n);
            let mut b = rng.random_range(0..n - 1);
            if b >= a {
                b += 1;
            }
            Some((up[a], up[b]))
        }
    }
}

#[cfg(test)]
pub(crate) fn views(inflight: &[u32], ejected: &[usize]) -> Vec<BackendView> {
    inflight.iter().enumerate().map(|(i, &n)| BackendView { inflight: n, available: !ejected.contains(&i) }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn two_choices_are_distinct_and_available() {
        let mut rng = StdRng::seed_from_u64(1);
        let v = views(&[0, 0, 0, 0], &[1]);
        for _ in 0..100 {
            let (a, b) = two_choices(&mut rng, &v).unwrap();
            assert_ne!(a, b);
            assert!(a != 1 && b != 1);
        }
        assert_eq!(two_choices(&mut rng, &views(&[0, 0], &[0])), Some((1, 1)));
        assert_eq!(two_choices(&mut rng, &views(&[0], &[0])), None);
    }

    #[test]
    fn every_policy_skips_ejected_and_gives_up_when_none_is_left() {
        for kind in
            [PolicyKind::RoundRobin, PolicyKind::Random, PolicyKind::LeastConn, PolicyKind::P2c, PolicyKind::PeakEwma]
        {
            let mut p = AnyPolicy::new(kind, 3, 7, 1e10);
            for _ in 0..50 {
                assert_eq!(p.pick(0, &views(&[0, 0, 0], &[0, 2])), Some(1), "{kind:?}");
            }
            assert_eq!(p.pick(0, &views(&[0, 0, 0], &[0, 1, 2])), None, "{kind:?}");
        }
    }
}
