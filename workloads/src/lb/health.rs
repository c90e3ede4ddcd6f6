//! Passive health checking: a backend that fails `failures` requests in a row is ejected
//! for a backoff of virtual time, then re-admitted; each ejection that follows another
//! without a success in between doubles the backoff, up to a maximum.
//!
//! A failure is a transport error, a timeout or a 5xx answer. A success resets both the
//! failure count and the backoff.

use std::time::Duration;

/// Settings of passive health checking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthConfig {
    /// Consecutive failures that eject a backend (0 disables ejection).
    pub failures: u32,
    /// First ejection's length.
    pub backoff: Duration,
    /// Longest ejection.
    pub max_backoff: Duration,
}

/// One backend's health.
#[derive(Debug, Clone, Default)]
pub struct Health {
    consecutive: u32,
    streak: u32,
    ejected_until_ns: Option<i64>,
    ejections: u64,
}

impl Health {
    /// Whether the backend may take requests at `now_ns`.
    pub fn available(&self, now_ns: i64) -> bool {
        self.ejected_until_ns.is_none_or(|u| now_ns >= u)
    }

    /// Total ejections so far.
    pub fn ejections(&self) -> u64 {
        self.ejections
    }

    /// Records a request's outcome at `now_ns`; returns true if it ejected the backend.
    pub fn record(&mut self, cfg: &HealthConfig, now_ns: i64, ok: bool) -> bool {
        if ok {
            *self = Health { ejections: self.ejections, ..Health::default() };
            return false;
        }
        if !self.available(now_ns) {
            // Late failures of requests sent before the ejection change nothing.
            return false;
        }
        self.consecutive += 1;
        if cfg.failures == 0 || self.consecutive < cfg.failures {
            return false;
        }
        let factor = 1u32.checked_shl(self.streak).unwrap_or(u32::MAX);
        let backoff = cfg.backoff.saturating_mul(factor).min(cfg.max_backoff);
        self.ejected_until_ns = Some(now_ns.saturating_add(i64::try_from(backoff.as_nanos()).unwrap_or(i64::MAX)));
        self.streak = self.streak.saturating_add(1);
        self.consecutive = 0;
        self.ejections += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;
    const CFG: HealthConfig =
        HealthConfig { failures: 3, backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(3) };

    #[test]
    fn ejects_after_consecutive_failures_and_readmits_after_backoff() {
        let mut h = Health::default();
        assert!(!h.record(&CFG, 0, false));
        assert!(!h.record(&CFG, 0, false));
        assert!(!h.record(&CFG, 0, true), "a success resets the count");
        assert!(!h.record(&CFG, 0, false));
        assert!(!h.record(&CFG, 0, false));
        assert!(h.record(&CFG, 0, false));
        assert!(!h.available(S - 1));
        assert!(h.available(S), "re-admitted after 1 s");
        // Failing again right after re-admission doubles the backoff, capped at 3 s.
        for _ in 0..3 {
            h.record(&CFG, S, false);
        }
        assert!(!h.available(3 * S - 1) && h.available(3 * S));
        for _ in 0..3 {
            h.record(&CFG, 3 * S, false);
        }
        assert!(!h.available(6 * S - 1) && h.available(6 * S), "capped at max_backoff");
        assert_eq!(h.ejections(), 3);
        // A success ends the streak: the next ejection is short again.
        h.record(&CFG, 6 * S, true);
        for _ in 0..3 {
            h.record(&CFG, 6 * S, false);
        }
        assert!(h.available(7 * S));
    }

    #[test]
    fn failures_while_ejected_do_not_extend_it_and_zero_disables() {
        let mut h = Health::default();
        for _ in 0..3 {
            h.record(&CFG, 0, false);
        }
        for _ in 0..10 {
            assert!(!h.record(&CFG, S / 2, false));
        }
        assert!(h.available(S));
        let off = HealthConfig { failures: 0, ..CFG };
        let mut h = Health::default();
        for _ in 0..100 {
            assert!(!h.record(&off, 0, false));
        }
        assert!(h.available(0));
    }
}
