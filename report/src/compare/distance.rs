//! Distances between latency distributions that tolerate a small horizontal shift.
//!
//! The Kolmogorov–Smirnov distance is the largest *vertical* gap between two CDFs. For a
//! narrow distribution a sub-percent shift of every sample moves the whole CDF across the
//! gap, so KS calls two runs whose percentiles agree within 1% completely different (the
//! dumbbell at TDF 10: KS 0.92 with p50 within 0.9%). The decisive check is therefore the
//! **tolerant KS** (a Lévy-style distance): the largest vertical gap that remains after
//! either CDF may move sideways by up to `h`,
//!
//! ```text
//! D_h(F, G) = sup_x max( F(x) − G(x + h),  G(x) − F(x + h) )
//! ```
//!
//! with `h = max(rel · median(baseline), floor)`. A shift within `h` gives 0; a larger shift
//! or a different shape (a bimodal distribution against a unimodal one with the same
//! median) still gives a large gap. The Wasserstein-1 distance (the mean absolute
//! difference of matched quantiles), relative to the baseline median, is reported beside it.

/// A sample as ascending `(value, count)` pairs.
pub type Weighted = [(f64, u64)];

/// Sorts plain samples into ascending `(value, 1)` pairs, dropping NaNs.
pub fn weighted(samples: &[f64]) -> Vec<(f64, u64)> {
    let mut v: Vec<f64> = samples.iter().copied().filter(|x| !x.is_nan()).collect();
    v.sort_by(f64::total_cmp);
    v.into_iter().map(|x| (x, 1)).collect()
}

/// The empirical CDF of an ascending weighted sample.
struct Cdf<'a> {
    points: &'a Weighted,
    /// `cum[i]`: samples at or below `points[i].0`.
    cum: Vec<u64>,
    total: u64,
}

impl<'a> Cdf<'a> {
    fn new(points: &'a Weighted) -> Option<Self> {
        let mut cum = Vec::with_capacity(points.len());
        let mut total = 0u64;
        for &(_, c) in points {
            total += c;
            cum.push(total);
        }
        (total > 0).then_some(Self { points, cum, total })
    }

    /// F(x): the fraction of samples ≤ x.
    fn at(&self, x: f64) -> f64 {
        let i = self.points.partition_point(|p| p.0 <= x);
        if i == 0 {
            0.0
        } else {
            self.cum[i - 1] as f64 / self.total as f64
        }
    }

    /// The q-quantile (smallest value whose CDF reaches q).
    fn quantile(&self, q: f64) -> f64 {
        let rank = (q * self.total as f64).ceil().max(1.0) as u64;
        let i = self.cum.partition_point(|&c| c < rank).min(self.points.len() - 1);
        self.points[i].0
    }
}

/// The tolerant KS distance `D_h` of two ascending weighted samples; `None` if either is
/// empty. `h = 0` gives the plain KS distance.
pub fn tolerant_ks(a: &Weighted, b: &Weighted, h: f64) -> Option<f64> {
    let (fa, fb) = (Cdf::new(a)?, Cdf::new(b)?);
    let h = h.max(0.0);
    // The sup of F(x) − G(x + h) is reached at a jump of F (G(· + h) only grows).
    let one_way = |f: &Cdf, g: &Cdf| f.points.iter().map(|&(x, _)| f.at(x) - g.at(x + h)).fold(0.0f64, f64::max);
    Some(one_way(&fa, &fb).max(one_way(&fb, &fa)))
}

/// The median of an ascending weighted sample.
pub fn median(a: &Weighted) -> Option<f64> {
    Cdf::new(a).map(|c| c.quantile(0.5))
}

/// The Wasserstein-1 distance (mean absolute difference of matched quantiles, on a grid of
/// 1,000 quantiles); `None` if either sample is empty.
pub fn wasserstein1(a: &Weighted, b: &Weighted) -> Option<f64> {
    let (fa, fb) = (Cdf::new(a)?, Cdf::new(b)?);
    const N: usize = 1000;
    let sum: f64 = (0..N)
        .map(|i| {
            let q = (i as f64 + 0.5) / N as f64;
            (fa.quantile(q) - fb.quantile(q)).abs()
        })
        .sum();
    Some(sum / N as f64)
}

/// The horizontal tolerance for a baseline: `rel` of its median, at least `floor`.
pub fn tolerance(baseline: &Weighted, rel: f64, floor: f64) -> Option<f64> {
    median(baseline).map(|m| (rel * m).max(floor))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A narrow distribution around 100 (±0.5), deterministic.
    fn narrow(center: f64, n: usize) -> Vec<(f64, u64)> {
        weighted(&(0..n).map(|i| center + (i as f64 / n as f64 - 0.5)).collect::<Vec<_>>())
    }

    #[test]
    fn a_one_percent_shift_of_a_narrow_distribution_passes() {
        let (a, b) = (narrow(100.0, 1000), narrow(101.0, 1000));
        assert!(tolerant_ks(&a, &b, 0.0).unwrap() > 0.9, "plain KS sees them as disjoint");
        let h = tolerance(&a, 0.02, 0.05).unwrap();
        assert!(tolerant_ks(&a, &b, h).unwrap() < 1e-9);
    }

    #[test]
    fn a_ten_percent_shift_fails() {
        let (a, b) = (narrow(100.0, 1000), narrow(110.0, 1000));
        let h = tolerance(&a, 0.02, 0.05).unwrap();
        assert!(tolerant_ks(&a, &b, h).unwrap() > 0.9);
    }

    #[test]
    fn a_bimodal_distribution_against_a_unimodal_one_with_the_same_median_fails() {
        let uni = narrow(100.0, 1000);
        let mut bi: Vec<f64> = (0..499).map(|i| 50.0 + i as f64 * 0.01).collect();
        bi.push(100.0);
        bi.push(100.0);
        bi.extend((0..499).map(|i| 150.0 + i as f64 * 0.01));
        let bi = weighted(&bi);
        assert!((median(&bi).unwrap() - 100.0).abs() < 1.0);
        let h = tolerance(&uni, 0.02, 0.05).unwrap();
        assert!(tolerant_ks(&uni, &bi, h).unwrap() > 0.4);
        assert!(wasserstein1(&uni, &bi).unwrap() > 40.0);
    }

    #[test]
    fn identical_samples_are_at_distance_zero_and_empty_ones_have_none() {
        let a = narrow(5.0, 100);
        assert_eq!(tolerant_ks(&a, &a, 0.0), Some(0.0));
        assert_eq!(wasserstein1(&a, &a), Some(0.0));
        assert_eq!(tolerant_ks(&a, &[], 1.0), None);
    }

    #[test]
    fn wasserstein_of_a_shift_is_the_shift() {
        let (a, b) = (narrow(100.0, 1000), narrow(103.0, 1000));
        assert!((wasserstein1(&a, &b).unwrap() - 3.0).abs() < 0.01);
    }

    #[test]
    fn weights_count_like_repeated_samples() {
        let a = [(1.0, 3), (2.0, 1)];
        let b = weighted(&[1.0, 1.0, 1.0, 2.0]);
        assert_eq!(tolerant_ks(&a, &b, 0.0), Some(0.0));
        assert_eq!(median(&a), Some(1.0));
    }
}
