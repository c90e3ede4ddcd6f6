//! Random: a uniformly random available backend.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{available, BackendView, Policy};

/// Picks uniformly among available backends.
#[derive(Debug)]
pub struct Random {
    rng: StdRng,
}

impl Random {
    pub fn new(seed: u64) -> Self {
        Random { rng: StdRng::seed_from_u64(seed) }
    }
}

impl Policy for Random {
    fn pick(&mut self, _now_ns: i64, backends: &[BackendView]) -> Option<usize> {
        let up = available(backends);
        (!up.is_empty()).then(|| up[self.rng.random_range(0..up.len())])
    }
}

#[cfg(test)]
mod tests {
    use super::super::views;
    use super::*;

    #[test]
    fn uniform_over_available() {
        let mut p = Random::new(3);
        let v = views(&[5, 0, 0, 0], &[3]);
        let mut hits = [0u32; 4];
        for _ in 0..3000 {
            hits[p.pick(0, &v).unwrap()] += 1;
        }
        assert_eq!(hits[3], 0);
        assert!(hits[..3].iter().all(|&h| (900..1100).contains(&h)), "{hits:?}");
    }
}
