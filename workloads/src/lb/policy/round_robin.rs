//! Round-robin: each available backend in turn.

use super::{BackendView, Policy};

/// Cycles through the backends, skipping unavailable ones.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: usize,
}

impl Policy for RoundRobin {
    fn pick(&mut self, _now_ns: i64, backends: &[BackendView]) -> Option<usize> {
        let n = backends.len();
        let i = (0..n).map(|k| (self.next + k) % n).find(|&i| backends[i].available)?;
        self.next = (i + 1) % n;
        Some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::super::views;
    use super::*;

    #[test]
    fn cycles_and_skips() {
        let mut p = RoundRobin::default();
        let all = views(&[0, 0, 0], &[]);
        let picks: Vec<_> = (0..6).map(|_| p.pick(0, &all).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        let no1 = views(&[0, 0, 0], &[1]);
        let picks: Vec<_> = (0..4).map(|_| p.pick(0, &no1).unwrap()).collect();
        assert_eq!(picks, [0, 2, 0, 2]);
    }
}
