//! Recovery after a fault, measured on a run's per-second throughput series.
//!
//! # Definition
//! Let the series be `(t, completed, errors)` per virtual second `[t, t+1)` since the run's
//! epoch, and the fault start the clock at `t0` (its injection, or its undo for
//! `… ends`). The *reference* is the pre-fault window: the whole seconds from `warmup`
//! seconds after the first second with a completed request up to, not including, the
//! second that holds the fault's injection. Its mean completed throughput is `m` and its
//! error rate `e = Σerrors / Σ(completed + errors)`.
//!
//! A second is *healthy* when `|completed − m| ≤ band` and
//! `errors / (completed + errors) ≤ e + error_margin` (a second with no request at all is
//! not healthy), where `band = max(tolerance · m, d)` and `d` is the largest deviation of a
//! reference second from `m`: a band narrower than the steady state's own second-to-second
//! spread cannot tell recovery from noise (a paced 40/s service completes 33 to 48 requests in
//! its healthy seconds). The run has *recovered* at `r`: the first whole second `r ≥ t0` that
//! starts `hold` consecutive healthy seconds. The recovery time is `r − t0` (virtual).
//!
//! # Limitations
//! Needs at least three pre-fault seconds; a fault at the very start has no reference.

use serde::Serialize;

use catalog::suite::RecoveryParams;

/// What the recovery measurement found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recovery {
    /// Pre-fault mean completed requests per second.
    pub reference_rps: f64,
    /// Pre-fault error rate.
    pub reference_error_rate: f64,
    /// The pre-fault window `[from, to)` in virtual seconds.
    pub window: (f64, f64),
    /// Completed requests per second a healthy second may differ from the reference by.
    pub band_rps: f64,
    /// Start of the first of `hold` healthy seconds, if any.
    pub recovered_at_s: Option<f64>,
    /// `recovered_at_s − t0`.
    pub recovery_s: Option<f64>,
    /// The last second of the series (to say how long we looked).
    pub series_end_s: f64,
}

/// Why recovery could not be measured.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecoveryError {
    #[error("the run has no throughput series (no load generator output?)")]
    NoSeries,
    #[error("only {have} pre-fault second(s) in [{from}, {to}) after the warm-up; the reference needs at least 3")]
    ShortReference { have: usize, from: f64, to: f64 },
    #[error("no request completed before the fault, so there is no reference throughput")]
    NoReference,
}

/// Measures recovery of `series` after a fault injected at `injected` whose clock starts at `t0`.
pub fn measure(
    series: &[(f64, f64, f64)],
    injected: f64,
    t0: f64,
    p: &RecoveryParams,
) -> Result<Recovery, RecoveryError> {
    if series.is_empty() {
        return Err(RecoveryError::NoSeries);
    }
    let first = series.iter().find(|s| s.1 > 0.0).map(|s| s.0).ok_or(RecoveryError::NoReference)?;
    let from = first + f64::from(p.warmup_s);
    let to = injected.floor();
    let reference: Vec<_> = series.iter().filter(|s| s.0 >= from && s.0 < to).collect();
    if reference.len() < 3 {
        return Err(RecoveryError::ShortReference { have: reference.len(), from, to });
    }
    let m = reference.iter().map(|s| s.1).sum::<f64>() / reference.len() as f64;
    if m <= 0.0 {
        return Err(RecoveryError::NoReference);
    }
    let (c, e): (f64, f64) = reference.iter().fold((0.0, 0.0), |(c, e), s| (c + s.1, e + s.2));
    let e_ref = if c + e > 0.0 { e / (c + e) } else { 0.0 };
    let spread = reference.iter().map(|s| (s.1 - m).abs()).fold(0.0, f64::max);
    let band = (p.tolerance * m).max(spread);
    let healthy = |s: &(f64, f64, f64)| {
        let total = s.1 + s.2;
        total > 0.0 && (s.1 - m).abs() <= band && s.2 / total <= e_ref + p.error_margin
    };
    let after: Vec<_> = series.iter().filter(|s| s.0 >= t0.ceil()).collect();
    let hold = p.hold_s as usize;
    let mut recovered_at = None;
    for (i, s) in after.iter().enumerate() {
        let run = &after[i..];
        // Consecutive: the series' seconds must follow one another without gaps.
        if run.len() >= hold
            && run[..hold].iter().enumerate().all(|(k, x)| (x.0 - s.0 - k as f64).abs() < 1e-6 && healthy(x))
        {
            recovered_at = Some(s.0);
            break;
        }
    }
    Ok(Recovery {
        reference_rps: m,
        reference_error_rate: e_ref,
        window: (from, to),
        band_rps: band,
        recovered_at_s: recovered_at,
        recovery_s: recovered_at.map(|r| r - t0),
        series_end_s: series.last().map_or(0.0, |s| s.0 + 1.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 100/s for 30 s, a dip to 40/s with errors during [30, 45), then back to 100/s.
    fn dip() -> Vec<(f64, f64, f64)> {
        (0..80)
            .map(|t| {
                let t = f64::from(t);
                if (30.0..45.0).contains(&t) {
                    (t, 40.0, 10.0)
                } else {
                    (t, 100.0 + (t % 3.0), 0.0)
                }
            })
            .collect()
    }

    #[test]
    fn recovery_is_the_first_of_hold_healthy_seconds() {
        let p = RecoveryParams::default();
        let r = measure(&dip(), 30.2, 30.2, &p).unwrap();
        assert_eq!(r.recovered_at_s, Some(45.0));
        assert!((r.recovery_s.unwrap() - 14.8).abs() < 1e-9);
        assert!((r.reference_rps - 101.0).abs() < 0.1, "{r:?}");
        assert_eq!(r.reference_error_rate, 0.0);
        assert_eq!(r.window, (2.0, 30.0));
        // From the fault's end: measured from t0.
        let r = measure(&dip(), 30.2, 44.0, &p).unwrap();
        assert_eq!(r.recovery_s, Some(1.0));
    }

    #[test]
    fn the_band_is_at_least_the_reference_seconds_own_spread() {
        // A steady state that itself swings 33..48 around 40/s, a 4 s outage, then the same
        // swing: recovered at once, although single seconds leave ±10%.
        let swing = [40.0, 33.0, 48.0, 39.0, 40.0, 35.0, 45.0];
        let s: Vec<_> = (0..40)
            .map(|t| {
                let c = swing[t % swing.len()];
                let t = t as f64;
                if (20.0..24.0).contains(&t) {
                    (t, 0.0, 40.0)
                } else {
                    (t, c, 0.0)
                }
            })
            .collect();
        let r = measure(&s, 20.0, 24.0, &RecoveryParams::default()).unwrap();
        assert!(r.band_rps > 0.1 * r.reference_rps, "{r:?}");
        assert_eq!(r.recovery_s, Some(0.0), "{r:?}");
        // A service that comes back at half its rate still never recovers.
        let half: Vec<_> = s.iter().map(|&(t, c, e)| if t >= 24.0 { (t, c / 2.0, e) } else { (t, c, e) }).collect();
        assert_eq!(measure(&half, 20.0, 24.0, &RecoveryParams::default()).unwrap().recovered_at_s, None);
    }

    #[test]
    fn a_short_healthy_blip_is_not_recovery() {
        let mut s = dip();
        s[35] = (35.0, 100.0, 0.0);
        s[36] = (36.0, 100.0, 0.0);
        let r = measure(&s, 30.0, 30.0, &RecoveryParams { hold_s: 3, ..Default::default() }).unwrap();
        assert_eq!(r.recovered_at_s, Some(45.0));
        // A gap in the series breaks the run of healthy seconds.
        let mut s = dip();
        s.remove(47);
        let r = measure(&s, 30.0, 30.0, &RecoveryParams { hold_s: 5, ..Default::default() }).unwrap();
        assert_eq!(r.recovered_at_s, Some(48.0));
    }

    #[test]
    fn never_recovering_and_missing_reference() {
        let s: Vec<_> = (0..60).map(|t| (f64::from(t), if t < 30 { 100.0 } else { 50.0 }, 0.0)).collect();
        let r = measure(&s, 30.0, 30.0, &RecoveryParams::default()).unwrap();
        assert_eq!(r.recovered_at_s, None);
        assert_eq!(r.series_end_s, 60.0);
        assert!(matches!(measure(&s, 3.0, 3.0, &RecoveryParams::default()), Err(RecoveryError::ShortReference { .. })));
        assert_eq!(measure(&[], 3.0, 3.0, &RecoveryParams::default()), Err(RecoveryError::NoSeries));
    }

    #[test]
    fn errors_above_the_reference_are_unhealthy() {
        let s: Vec<_> = (0..60).map(|t| (f64::from(t), 100.0, if t < 30 { 0.0 } else { 5.0 })).collect();
        let r = measure(&s, 30.0, 30.0, &RecoveryParams::default()).unwrap();
        assert_eq!(r.recovered_at_s, None, "5% errors > 0% + 1% margin");
        let r = measure(&s, 30.0, 30.0, &RecoveryParams { error_margin: 0.05, ..Default::default() }).unwrap();
        assert_eq!(r.recovered_at_s, Some(30.0));
    }
}
