//! The two-sample Kolmogorov–Smirnov distance: the largest vertical gap between two
//! empirical CDFs (0 = identical distributions, 1 = disjoint).

use hdrhistogram::Histogram;

/// Exact KS distance of two samples; `None` when either is empty. NaNs are ignored.
pub fn ks_samples(a: &[f64], b: &[f64]) -> Option<f64> {
    let sorted = |s: &[f64]| {
        let mut v: Vec<f64> = s.iter().copied().filter(|x| !x.is_nan()).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let (a, b) = (sorted(a), sorted(b));
    walk(a.iter().map(|&x| (x, 1)), b.iter().map(|&x| (x, 1)), a.len() as u64, b.len() as u64)
}

/// KS distance of two HDR histograms of the same bounds: exact over the samples as the
/// histograms quantize them (within their precision, e.g. 0.1 % at 3 significant digits).
pub fn ks_histograms(a: &Histogram<u64>, b: &Histogram<u64>) -> Option<f64> {
    let buckets = |h: &Histogram<u64>| -> Vec<(u64, u64)> {
        h.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect()
    };
    walk(buckets(a).into_iter(), buckets(b).into_iter(), a.len(), b.len())
}

/// Walks two ascending lists of (value, count) and returns the largest CDF gap.
fn walk<T: PartialOrd + Copy>(
    a: impl Iterator<Item = (T, u64)>,
    b: impl Iterator<Item = (T, u64)>,
    na: u64,
    nb: u64,
) -> Option<f64> {
    if na == 0 || nb == 0 {
        return None;
    }
    let (mut a, mut b) = (a.peekable(), b.peekable());
    let (mut ca, mut cb) = (0u64, 0u64);
    let mut d: f64 = 0.0;
    loop {
        // The next distinct value of either sample; both CDFs are stepped past it together.
        let x = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(p), None) => p.0,
            (None, Some(q)) => q.0,
            (Some(p), Some(q)) => {
                if p.0 <= q.0 {
                    p.0
                } else {
                    q.0
                }
            }
        };
        while let Some(p) = a.peek().filter(|p| p.0 <= x) {
            ca += p.1;
            a.next();
        }
        while let Some(q) = b.peek().filter(|q| q.0 <= x) {
            cb += q.1;
            b.next();
        }
        d = d.max((ca as f64 / na as f64 - cb as f64 / nb as f64).abs());
    }
    Some(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requests::latency_histogram;

    fn hist(values: &[f64]) -> Histogram<u64> {
        let mut h = latency_histogram();
        for v in values {
            h.record(*v as u64).unwrap();
        }
        h
    }

    #[test]
    fn identical_samples_are_at_distance_zero() {
        let a: Vec<f64> = (0..1000).map(|i| (i * 7 % 13) as f64).collect();
        assert_eq!(ks_samples(&a, &a), Some(0.0));
        let ms: Vec<f64> = (1..=1000).map(|i| i as f64 * 1e6).collect();
        assert_eq!(ks_histograms(&hist(&ms), &hist(&ms)), Some(0.0));
    }

    #[test]
    fn disjoint_samples_are_at_distance_one() {
        let a = [1.0, 2.0, 3.0];
        let b = [10.0, 11.0];
        assert_eq!(ks_samples(&a, &b), Some(1.0));
        assert_eq!(ks_samples(&b, &a), Some(1.0));
        assert_eq!(ks_histograms(&hist(&[1e6, 2e6, 3e6]), &hist(&[1e7, 1.1e7])), Some(1.0));
    }

    #[test]
    fn known_values() {
        // scipy.stats.ks_2samp([1,2,3,4,5], [3,4,5,6,7]).statistic == 0.4
        assert!((ks_samples(&[1.0, 2.0, 3.0, 4.0, 5.0], &[3.0, 4.0, 5.0, 6.0, 7.0]).unwrap() - 0.4).abs() < 1e-12);
        // Ties across samples: ks_2samp([1,1,2,2], [1,2,2,2]).statistic == 0.25
        assert!((ks_samples(&[1.0, 1.0, 2.0, 2.0], &[1.0, 2.0, 2.0, 2.0]).unwrap() - 0.25).abs() < 1e-12);
        // Unequal sizes: ks_2samp([0.5, 1.5], [1, 2, 3, 4]).statistic == 0.75
        assert!((ks_samples(&[0.5, 1.5], &[1.0, 2.0, 3.0, 4.0]).unwrap() - 0.75).abs() < 1e-12);
    }

    #[test]
    fn a_shift_of_a_tenth_of_a_uniform_range_is_a_tenth() {
        let a: Vec<f64> = (0..10_000).map(|i| 1e6 + i as f64 * 1e3).collect();
        let b: Vec<f64> = a.iter().map(|x| x + 1e6).collect();
        let exact = ks_samples(&a, &b).unwrap();
        assert!((exact - 0.1).abs() < 1e-9, "{exact}");
        let binned = ks_histograms(&hist(&a), &hist(&b)).unwrap();
        assert!((binned - exact).abs() < 0.005, "{binned} vs {exact}");
    }

    #[test]
    fn empty_samples_have_no_distance() {
        assert_eq!(ks_samples(&[], &[1.0]), None);
        assert_eq!(ks_histograms(&latency_histogram(), &hist(&[5.0])), None);
    }
}
