//! Power of two choices over in-flight requests (Mitzenmacher): draw two available
//! backends at random and take the one with fewer requests in flight.

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::{two_choices, BackendView, Policy};

/// P2C over in-flight counts.
#[derive(Debug)]
pub struct PowerOfTwo {
    rng: StdRng,
}

impl PowerOfTwo {
    pub fn new(seed: u64) -> Self {
        PowerOfTwo { rng: StdRng::seed_from_u64(seed) }
    }
}

impl Policy for PowerOfTwo {
    fn pick(&mut self, _now_ns: i64, backends: &[BackendView]) -> Option<usize> {
        let (a, b) = two_choices(&mut self.rng, backends)?;
        Some(if backends[b].inflight < backends[a].inflight { b } else { a })
    }
}

#[cfg(test)]
mod tests {
    use super::super::views;
    use super::*;

    #[test]
    fn never_picks_the_most_loaded_of_three() {
        let mut p = PowerOfTwo::new(5);
        let v = views(&[0, 9, 4], &[]);
        let mut hits = [0u32; 3];
        for _ in 0..3000 {
            hits[p.pick(0, &v).unwrap()] += 1;
        }
        // Backend 1 loses every pair it is in; backend 0 wins both of its pairs (2/3).
        assert_eq!(hits[1], 0, "{hits:?}");
        assert!((1850..2150).contains(&hits[0]), "{hits:?}");
    }
}
