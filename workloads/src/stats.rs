//! Summary statistics of a sample, shared by every workload that reports figures.
//!
//! # Design
//! Figures are exact (computed from the sorted sample, not from a histogram): a load
//! generator keeps every request anyway, and exact quantiles make runs comparable without
//! bucket error. Quantiles use linear interpolation between closest ranks (R's type 7, the
//! default of NumPy and of most spreadsheets), so Q1/median/Q3 match what users compute by
//! hand. The standard deviation is the sample one (n − 1).

use serde::{Deserialize, Serialize};

/// The summary of one sample: the five-number summary, moments and tail percentiles.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: u64,
    pub min: f64,
    pub q1: f64,
    pub median: f64,
    pub q3: f64,
    pub max: f64,
    pub mean: f64,
    /// Sample standard deviation (n − 1); 0 for a single value.
    pub sd: f64,
    /// Coefficient of variation, `sd / mean · 100`; 0 when the mean is 0.
    pub cv_pct: f64,
    pub p90: f64,
    /// Added after schema 1's first files; absent (0) in older ones.
    #[serde(default)]
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
}

/// The `q`-quantile (0 ≤ q ≤ 1) of an ascending, non-empty sample (type 7 interpolation).
fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

impl Summary {
    /// Summarizes `values`; `None` when there is no finite value. Non-finite values are ignored.
    pub fn of(values: &[f64]) -> Option<Summary> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let sd = if v.len() > 1 { (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() } else { 0.0 };
        let q = |p| quantile_sorted(&v, p);
        Some(Summary {
            count: v.len() as u64,
            min: v[0],
            q1: q(0.25),
            median: q(0.5),
            q3: q(0.75),
            max: v[v.len() - 1],
            mean,
            sd,
            cv_pct: if mean == 0.0 { 0.0 } else { sd / mean.abs() * 100.0 },
            p90: q(0.90),
            p95: q(0.95),
            p99: q(0.99),
            p999: q(0.999),
        })
    }
}

/// The `q`-quantile of an unsorted sample; `None` when it is empty.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(quantile_sorted(&v, q))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    #[test]
    fn five_number_summary_and_moments() {
        // 1..=10: R's quantile(type=7) gives Q1 3.25, median 5.5, Q3 7.75, p90 9.1.
        let v: Vec<f64> = (1..=10).rev().map(f64::from).collect();
        let s = Summary::of(&v).unwrap();
        assert_eq!(s.count, 10);
        close(s.min, 1.0);
        close(s.max, 10.0);
        close(s.q1, 3.25);
        close(s.median, 5.5);
        close(s.q3, 7.75);
        close(s.p90, 9.1);
        close(s.p99, 9.91);
        close(s.p999, 9.991);
        close(s.mean, 5.5);
        close(s.sd, 3.027_650_354_097_491_7); // sd(1:10) in R
        close(s.cv_pct, 3.027_650_354_097_491_7 / 5.5 * 100.0);
    }

    #[test]
    fn single_value_and_empty() {
        let s = Summary::of(&[4.0]).unwrap();
        assert_eq!((s.min, s.median, s.max, s.sd, s.cv_pct), (4.0, 4.0, 4.0, 0.0, 0.0));
        assert!(Summary::of(&[]).is_none());
        assert!(Summary::of(&[f64::NAN]).is_none());
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), Some(2.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn zero_mean_has_zero_cv() {
        let s = Summary::of(&[-1.0, 1.0]).unwrap();
        assert_eq!(s.mean, 0.0);
        assert_eq!(s.cv_pct, 0.0);
    }
}
