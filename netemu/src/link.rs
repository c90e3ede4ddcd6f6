//! The link model: one direction of an emulated link, and the one place where the
//! time-dilation factor scales link parameters.
//!
//! Under TDF `t` a link of rate `R` and delay `D` is emulated at real rate `R / t` and real
//! delay `D · t`, so that nodes, whose clocks run `t` times slower, perceive `R` and `D`.
//! Loss probabilities and queue limits (bytes or packets) are not scaled: the
//! bandwidth-delay product in bytes is preserved.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Distribution of jitter around the delay, with netem's semantics: `uniform` draws the
/// delay in `[delay − jitter, delay + jitter)`; `normal` draws it from N(delay, jitter²);
/// `pareto-normal` from iproute2's paretonormal table (¾ normal + ¼ Pareto of shape 3,
/// combined quantile by quantile, scaled by `jitter`). Like netem's tables (values ±4σ at
/// most, `NETEM_DIST_MAX`), draws are clamped to ±4 jitter, and a delay never goes below 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum JitterDist {
    #[default]
    Uniform,
    Normal,
    /// netem's "paretonormal": 75% normal, 25% pareto.
    ParetoNormal,
}

impl JitterDist {
    /// A draw in units of the jitter (σ for `normal`) from a uniform `u` in (0, 1).
    pub fn quantile(self, u: f64) -> f64 {
        let u = u.clamp(1e-12, 1.0 - 1e-12);
        match self {
            JitterDist::Uniform => 2.0 * u - 1.0,
            JitterDist::Normal => normal_quantile(u).clamp(-NETEM_DIST_MAX, NETEM_DIST_MAX),
            JitterDist::ParetoNormal => {
                // iproute2 paretonormal.c: (3·normal + pareto) / 4, each entry clamped.
                let n = normal_quantile(u).clamp(-NETEM_DIST_MAX, NETEM_DIST_MAX);
                let p = ((1.0 / (1.0 - u)).powf(1.0 / 3.0) - 1.5) * (4.0 / 3.0);
                (3.0 * n + p.clamp(-NETEM_DIST_MAX, NETEM_DIST_MAX)) / 4.0
            }
        }
    }

    /// `delay` with this distribution's jitter for the uniform draw `u` in (0, 1).
    pub fn apply(self, delay: Duration, jitter: Duration, u: f64) -> Duration {
        if jitter.is_zero() {
            return delay;
        }
        let ns = delay.as_nanos() as f64 + jitter.as_nanos() as f64 * self.quantile(u);
        Duration::from_nanos(ns.max(0.0) as u64)
    }
}

/// The largest draw of netem's distribution tables, in σ (32767 / `NETEM_DIST_SCALE` 8192).
const NETEM_DIST_MAX: f64 = 32_767.0 / 8_192.0;

/// Φ⁻¹(u), Acklam's rational approximation (relative error < 1.2e-9).
#[expect(clippy::excessive_precision, reason = "Acklam's published coefficients, kept verbatim")]
fn normal_quantile(u: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383577518672690e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] =
        [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if u < 0.02425 {
        tail((-2.0 * u.ln()).sqrt())
    } else if u > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - u).ln()).sqrt())
    } else {
        let q = u - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// How packets are lost.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Each packet independently with probability `p`.
    Random(f64),
    /// Gilbert–Elliott: a good and a bad state with their own loss probabilities.
    GilbertElliott { p_good_to_bad: f64, p_bad_to_good: f64, loss_good: f64, loss_bad: f64 },
}

impl Default for Loss {
    fn default() -> Self {
        Loss::Random(0.0)
    }
}

/// A queue limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueLimit {
    Bytes(u64),
    Packets(u64),
}

/// One direction of a link, in the perceived (original) units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LinkParams {
    /// Bits per second; `None` is unconstrained.
    pub rate_bps: Option<u64>,
    pub delay: Duration,
    pub jitter: Duration,
    pub jitter_dist: JitterDist,
    pub loss: Loss,
    /// Probabilities in [0, 1]. `reorder`, as netem: that share of packets skips the delay
    /// (and jitter), so it overtakes packets still in flight.
    pub reorder: f64,
    pub duplicate: f64,
    pub corrupt: f64,
    pub queue: QueueLimit,
    /// Administratively down: every packet is dropped.
    pub down: bool,
}

/// Default drop-tail limit: 1,000 packets, like Linux's default txqueuelen.
pub const DEFAULT_QUEUE: QueueLimit = QueueLimit::Packets(1_000);

impl Default for LinkParams {
    fn default() -> Self {
        Self {
            rate_bps: None,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            jitter_dist: JitterDist::Uniform,
            loss: Loss::default(),
            reorder: 0.0,
            duplicate: 0.0,
            corrupt: 0.0,
            queue: DEFAULT_QUEUE,
            down: false,
        }
    }
}

/// Errors of link parameters.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LinkError {
    #[error("invalid TDF {0}: it must be a positive number")]
    BadTdf(f64),
    #[error("{field} {value} is not a probability in [0, 1]")]
    Probability { field: &'static str, value: f64 },
    #[error("a rate of 0 bit/s would never deliver anything")]
    ZeroRate,
}

impl LinkParams {
    /// Checks probabilities and rates.
    pub fn validate(&self) -> Result<(), LinkError> {
        let prob = |field, value: f64| {
            if (0.0..=1.0).contains(&value) {
                Ok(())
            } else {
                Err(LinkError::Probability { field, value })
            }
        };
        match self.loss {
            Loss::Random(p) => prob("loss", p)?,
            Loss::GilbertElliott { p_good_to_bad, p_bad_to_good, loss_good, loss_bad } => {
                prob("p_good_to_bad", p_good_to_bad)?;
                prob("p_bad_to_good", p_bad_to_good)?;
                prob("loss_good", loss_good)?;
                prob("loss_bad", loss_bad)?;
            }
        }
        prob("reorder", self.reorder)?;
        prob("duplicate", self.duplicate)?;
        prob("corrupt", self.corrupt)?;
        if self.rate_bps == Some(0) {
            return Err(LinkError::ZeroRate);
        }
        Ok(())
    }

    /// Time to serialize `bytes` at this link's rate (zero when unconstrained).
    pub fn serialization(&self, bytes: usize) -> Duration {
        match self.rate_bps {
            Some(r) if r > 0 => Duration::from_nanos(((bytes as u128 * 8 * 1_000_000_000) / u128::from(r)) as u64),
            _ => Duration::ZERO,
        }
    }
}

/// The emulated (real-time) parameters of a link whose nodes run at TDF `tdf`:
/// rate ÷ t, delay and jitter × t; loss, reorder, duplicate, corrupt and queue limits
/// unchanged. This is the only place link parameters meet the TDF.
pub fn scale(params: &LinkParams, tdf: f64) -> Result<LinkParams, LinkError> {
    if !(tdf.is_finite() && tdf > 0.0) {
        return Err(LinkError::BadTdf(tdf));
    }
    Ok(LinkParams {
        rate_bps: params.rate_bps.map(|r| ((r as f64 / tdf).round() as u64).max(1)),
        delay: params.delay.mul_f64(tdf),
        jitter: params.jitter.mul_f64(tdf),
        ..*params
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> LinkParams {
        LinkParams {
            rate_bps: Some(10_000_000),
            delay: Duration::from_millis(10),
            jitter: Duration::from_millis(1),
            loss: Loss::Random(0.01),
            queue: QueueLimit::Bytes(100_000),
            ..LinkParams::default()
        }
    }

    #[test]
    fn scaling_divides_rate_and_multiplies_delay() {
        let s = scale(&link(), 10.0).unwrap();
        assert_eq!(s.rate_bps, Some(1_000_000));
        assert_eq!(s.delay, Duration::from_millis(100));
        assert_eq!(s.jitter, Duration::from_millis(10));
        assert_eq!(s.loss, Loss::Random(0.01));
        assert_eq!(s.queue, QueueLimit::Bytes(100_000));
    }

    #[test]
    fn the_bandwidth_delay_product_in_bytes_is_preserved() {
        for tdf in [0.5, 1.0, 4.0, 10.0] {
            let p = link();
            let s = scale(&p, tdf).unwrap();
            let bdp = |l: &LinkParams| l.rate_bps.unwrap() as f64 * l.delay.as_secs_f64() / 8.0;
            assert!((bdp(&p) - bdp(&s)).abs() < 1.0, "tdf {tdf}");
        }
    }

    #[test]
    fn serialization_time_follows_the_rate() {
        let p = link();
        assert_eq!(p.serialization(1250), Duration::from_millis(1));
        assert_eq!(LinkParams::default().serialization(1500), Duration::ZERO);
    }

    fn moments(dist: JitterDist) -> (f64, f64) {
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|i| dist.quantile((f64::from(i) + 0.5) / f64::from(n))).collect();
        let mean = xs.iter().sum::<f64>() / f64::from(n);
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / f64::from(n);
        (mean, var.sqrt())
    }

    #[test]
    fn jitter_distributions_have_netem_shapes() {
        let (m, sd) = moments(JitterDist::Uniform);
        assert!(m.abs() < 1e-3 && (sd - 1.0 / 3f64.sqrt()).abs() < 1e-3, "uniform {m} {sd}");
        let (m, sd) = moments(JitterDist::Normal);
        assert!(m.abs() < 1e-3 && (sd - 1.0).abs() < 0.01, "normal {m} {sd}");
        assert!((JitterDist::Normal.quantile(0.841_344_7) - 1.0).abs() < 1e-6);
        // Pareto-normal: right-skewed (a long tail of late packets), mean near zero.
        let (m, sd) = moments(JitterDist::ParetoNormal);
        assert!(m.abs() < 0.05 && sd > 0.7 && sd < 1.1, "paretonormal {m} {sd}");
        assert!(JitterDist::ParetoNormal.quantile(0.999) > -JitterDist::ParetoNormal.quantile(0.001));
        // Clamped like netem's tables, and never a negative delay.
        assert!(JitterDist::Normal.quantile(1e-15) >= -NETEM_DIST_MAX);
        let d = JitterDist::Normal.apply(Duration::from_millis(1), Duration::from_millis(10), 0.001);
        assert_eq!(d, Duration::ZERO);
        assert_eq!(
            JitterDist::Uniform.apply(Duration::from_millis(5), Duration::from_millis(1), 0.5),
            Duration::from_millis(5)
        );
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert!(scale(&link(), 0.0).is_err());
        assert!(LinkParams { loss: Loss::Random(1.5), ..link() }.validate().is_err());
        assert!(LinkParams { rate_bps: Some(0), ..link() }.validate().is_err());
        assert!(link().validate().is_ok());
    }
}
