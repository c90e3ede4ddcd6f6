//! The link model: one direction of an emulated link, and the one place where the
//! time-dilation factor scales link parameters.
//!
//! Under TDF `t` a link of rate `R` and delay `D` is emulated at real rate `R / t` and real
//! delay `D · t`, so that nodes, whose clocks run `t` times slower, perceive `R` and `D`.
//! Loss probabilities and queue limits (bytes or packets) are not scaled: the
//! bandwidth-delay product in bytes is preserved.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Distribution of jitter around the delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum JitterDist {
    #[default]
    Uniform,
    Normal,
    /// netem's "paretonormal": 75% normal, 25% pareto.
    ParetoNormal,
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
    /// Probabilities in [0, 1].
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
            if (0.0..=1.0).contains(&value) { Ok(()) } else { Err(LinkError::Probability { field, value }) }
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

    #[test]
    fn bad_parameters_are_refused() {
        assert!(scale(&link(), 0.0).is_err());
        assert!(LinkParams { loss: Loss::Random(1.5), ..link() }.validate().is_err());
        assert!(LinkParams { rate_bps: Some(0), ..link() }.validate().is_err());
        assert!(link().validate().is_ok());
    }
}
