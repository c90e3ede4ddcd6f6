//! Least connections: the available backend with the fewest requests in flight.

use super::{BackendView, Policy};

/// Picks the fewest in-flight requests; ties go round-robin so equal backends share load.
#[derive(Debug, Default)]
pub struct LeastConn {
    offset: usize,
}

impl Policy for LeastConn {
    fn pick(&mut self, _now_ns: i64, backends: &[BackendView]) -> Option<usize> {
        let n = backends.len();
        let best = (0..n)
            .map(|k| (self.offset + k) % n)
            .filter(|&i| backends[i].available)
            .min_by_key(|&i| backends[i].inflight)?;
        self.offset = (best + 1) % n.max(1);
        Some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::super::views;
    use super::*;

    #[test]
    fn fewest_in_flight_ties_rotate() {
        let mut p = LeastConn::default();
        assert_eq!(p.pick(0, &views(&[3, 1, 2], &[])), Some(1));
        assert_eq!(p.pick(0, &views(&[3, 1, 2], &[1])), Some(2));
        let tie = views(&[1, 1, 1], &[]);
        let picks: Vec<_> = (0..3).map(|_| p.pick(0, &tie).unwrap()).collect();
        let mut sorted = picks.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [0, 1, 2], "ties rotate: {picks:?}");
    }
}
