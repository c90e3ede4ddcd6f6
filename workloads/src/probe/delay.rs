//! Delay distributions of on-demand agents (start-up and teardown), from a flag's text.
//!
//! Syntax: `0`, `fixed:20ms`, `uniform:10ms..50ms`, `normal:mean=20ms,sd=5ms` (truncated at
//! 0), `lognormal:median=20ms,sigma=0.5`, `exp:mean=20ms`. Durations need a unit; draws are
//! virtual time under the clock shim.

use std::str::FromStr;
use std::time::Duration;

use rand::Rng;
use rand_distr::{Distribution, Exp, LogNormal, Normal};

use crate::loadgen::units::parse_duration_ns;

/// A distribution of delays.
#[derive(Debug, Clone, PartialEq)]
pub enum Delay {
    Fixed(Duration),
    Uniform(Duration, Duration),
    Normal { mean: Duration, sd: Duration },
    LogNormal { median: Duration, sigma: f64 },
    Exp { mean: Duration },
}

/// A delay text that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("delay {text:?}: {reason} (e.g. fixed:20ms, uniform:10ms..50ms, normal:mean=20ms,sd=5ms, lognormal:median=20ms,sigma=0.5, exp:mean=20ms)")]
pub struct DelayError {
    pub text: String,
    pub reason: String,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl Delay {
    /// Draws one delay.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Duration {
        let s = match self {
            Delay::Fixed(d) => return *d,
            Delay::Uniform(lo, hi) => {
                if hi <= lo {
                    return *lo;
                }
                rng.random_range(secs(*lo)..secs(*hi))
            }
            Delay::Normal { mean, sd } => Normal::new(secs(*mean), secs(*sd)).map_or(secs(*mean), |n| n.sample(rng)),
            Delay::LogNormal { median, sigma } => {
                LogNormal::new(secs(*median).ln(), *sigma).map_or(secs(*median), |n| n.sample(rng))
            }
            Delay::Exp { mean } => {
                if mean.is_zero() {
                    return Duration::ZERO;
                }
                Exp::new(1.0 / secs(*mean)).map_or(secs(*mean), |e| e.sample(rng))
            }
        };
        Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::ZERO)
    }
}

impl FromStr for Delay {
    type Err = DelayError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| DelayError { text: text.to_owned(), reason: reason.to_owned() };
        let dur = |s: &str| parse_duration_ns(s.trim()).map(Duration::from_nanos).map_err(|e| err(&e.to_string()));
        if text.trim() == "0" {
            return Ok(Delay::Fixed(Duration::ZERO));
        }
        let (kind, rest) = text.split_once(':').ok_or_else(|| err("expected KIND:PARAMETERS"))?;
        let params = |names: &[&str]| -> Result<Vec<String>, DelayError> {
            let mut values = vec![String::new(); names.len()];
            for pair in rest.split(',') {
                let (k, v) = pair.split_once('=').ok_or_else(|| err(&format!("expected NAME=VALUE, got {pair:?}")))?;
                let i = names
                    .iter()
                    .position(|n| *n == k.trim())
                    .ok_or_else(|| err(&format!("unknown parameter {k:?}")))?;
                values[i] = v.trim().to_owned();
            }
            if let Some(i) = values.iter().position(String::is_empty) {
                return Err(err(&format!("missing parameter {}", names[i])));
            }
            Ok(values)
        };
        match kind.trim() {
            "fixed" => Ok(Delay::Fixed(dur(rest)?)),
            "uniform" => {
                let (lo, hi) = rest.split_once("..").ok_or_else(|| err("expected LOW..HIGH"))?;
                let (lo, hi) = (dur(lo)?, dur(hi)?);
                if hi < lo {
                    return Err(err("HIGH is below LOW"));
                }
                Ok(Delay::Uniform(lo, hi))
            }
            "normal" => {
                let v = params(&["mean", "sd"])?;
                Ok(Delay::Normal { mean: dur(&v[0])?, sd: dur(&v[1])? })
            }
            "lognormal" => {
                let v = params(&["median", "sigma"])?;
                let sigma: f64 = v[1].parse().map_err(|_| err("sigma must be a number"))?;
                if !(sigma.is_finite() && sigma >= 0.0) {
                    return Err(err("sigma must be a non-negative number"));
                }
                let median = dur(&v[0])?;
                if median.is_zero() {
                    return Err(err("median must be positive"));
                }
                Ok(Delay::LogNormal { median, sigma })
            }
            "exp" => Ok(Delay::Exp { mean: dur(&params(&["mean"])?[0])? }),
            other => Err(err(&format!("unknown kind {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn parses_every_kind() {
        assert_eq!("0".parse(), Ok(Delay::Fixed(Duration::ZERO)));
        assert_eq!("fixed:20ms".parse(), Ok(Delay::Fixed(Duration::from_millis(20))));
        assert_eq!(
            "uniform:10ms..50ms".parse(),
            Ok(Delay::Uniform(Duration::from_millis(10), Duration::from_millis(50)))
        );
        assert_eq!(
            "normal:mean=20ms,sd=5ms".parse(),
            Ok(Delay::Normal { mean: Duration::from_millis(20), sd: Duration::from_millis(5) })
        );
        assert_eq!(
            "lognormal:median=20ms,sigma=0.5".parse(),
            Ok(Delay::LogNormal { median: Duration::from_millis(20), sigma: 0.5 })
        );
        assert_eq!("exp:mean=1s".parse(), Ok(Delay::Exp { mean: Duration::from_secs(1) }));
    }

    #[test]
    fn refuses_bad_text() {
        for bad in
            ["20ms", "fixed:20", "uniform:50ms..10ms", "normal:mean=1ms", "lognormal:median=1ms,sigma=x", "gamma:k=1"]
        {
            assert!(bad.parse::<Delay>().is_err(), "{bad}");
        }
    }

    #[test]
    fn draws_follow_the_distribution() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let d: Delay = "uniform:10ms..20ms".parse().unwrap();
        for _ in 0..1000 {
            let x = d.sample(&mut rng);
            assert!(x >= Duration::from_millis(10) && x < Duration::from_millis(20));
        }
        let d: Delay = "lognormal:median=20ms,sigma=0.5".parse().unwrap();
        let mut xs: Vec<Duration> = (0..4001).map(|_| d.sample(&mut rng)).collect();
        xs.sort();
        let median = xs[2000].as_secs_f64();
        assert!((median - 0.020).abs() < 0.002, "median {median}");
        let d: Delay = "normal:mean=1ms,sd=10ms".parse().unwrap();
        assert!((0..1000).all(|_| d.sample(&mut rng) >= Duration::ZERO));
    }
}
