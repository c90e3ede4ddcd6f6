//! The balancer's state: backends, their in-flight counts, health and statistics, and the
//! policy. Pure (no I/O, time passed in), so its logic is tested without sockets.

use hdrhistogram::Histogram;

use super::health::{Health, HealthConfig};
use super::policy::{AnyPolicy, BackendView, Policy};

/// Per-backend counters of the current reporting interval.
#[derive(Debug)]
pub struct Interval {
    pub requests: u64,
    pub errors: u64,
    /// Latency of the answers that ended in the interval, µs.
    pub latency_us: Histogram<u64>,
}

impl Default for Interval {
    fn default() -> Self {
        #[expect(clippy::unwrap_used, reason = "3 significant figures is a valid constant setting")]
        let latency_us = Histogram::new(3).unwrap();
        Interval { requests: 0, errors: 0, latency_us }
    }
}

/// One backend.
#[derive(Debug)]
pub struct Backend {
    pub addr: String,
    pub inflight: u32,
    pub health: Health,
    pub interval: Interval,
}

/// One row of `backends.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub backend: String,
    pub requests: u64,
    pub inflight: u32,
    pub errors: u64,
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
    pub ejected: bool,
}

/// Backends plus policy.
#[derive(Debug)]
pub struct Balancer {
    backends: Vec<Backend>,
    policy: AnyPolicy,
    health: HealthConfig,
}

impl Balancer {
    pub fn new(addrs: Vec<String>, policy: AnyPolicy, health: HealthConfig) -> Self {
        let backends = addrs
            .into_iter()
            .map(|addr| Backend { addr, inflight: 0, health: Health::default(), interval: Interval::default() })
            .collect();
        Balancer { backends, policy, health }
    }

    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    /// Chooses a backend for a request at `now_ns` and counts it in flight. When every
    /// backend is ejected all are offered again (Envoy's "panic" routing): sending to a
    /// possibly dead backend beats refusing every request.
    pub fn begin(&mut self, now_ns: i64) -> Option<(usize, String)> {
        let mut views: Vec<BackendView> = self
            .backends
            .iter()
            .map(|b| BackendView { inflight: b.inflight, available: b.health.available(now_ns) })
            .collect();
        if !views.iter().any(|v| v.available) {
            views.iter_mut().for_each(|v| v.available = true);
        }
        let i = self.policy.pick(now_ns, &views)?;
        let b = self.backends.get_mut(i)?;
        b.inflight += 1;
        b.interval.requests += 1;
        self.policy.on_request(now_ns, i);
        Some((i, b.addr.clone()))
    }

    /// Ends the request to backend `i` at `now_ns`.
    pub fn end(&mut self, i: usize, now_ns: i64, latency_ns: u64, ok: bool) {
        let Some(b) = self.backends.get_mut(i) else { return };
        b.inflight = b.inflight.saturating_sub(1);
        if ok {
            let _ = b.interval.latency_us.record((latency_ns / 1000).max(1));
        } else {
            b.interval.errors += 1;
        }
        if b.health.record(&self.health, now_ns, ok) {
            tracing::warn!(backend = %b.addr, ejections = b.health.ejections(), "backend ejected");
        }
        self.policy.on_response(now_ns, i, latency_ns, ok);
    }

    /// The interval's rows at `now_ns`, then a fresh interval.
    pub fn take_rows(&mut self, now_ns: i64) -> Vec<Row> {
        self.backends
            .iter_mut()
            .map(|b| {
                let iv = std::mem::take(&mut b.interval);
                let any = !iv.latency_us.is_empty();
                Row {
                    backend: b.addr.clone(),
                    requests: iv.requests,
                    inflight: b.inflight,
                    errors: iv.errors,
                    p50_us: any.then(|| iv.latency_us.value_at_quantile(0.5)),
                    p99_us: any.then(|| iv.latency_us.value_at_quantile(0.99)),
                    ejected: !b.health.available(now_ns),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::policy::PolicyKind;
    use super::*;
    use std::time::Duration;

    const S: i64 = 1_000_000_000;

    fn lb(kind: PolicyKind, n: usize) -> Balancer {
        let addrs = (0..n).map(|i| format!("b{i}:1")).collect();
        Balancer::new(
            addrs,
            AnyPolicy::new(kind, n, 1, 10e9),
            HealthConfig { failures: 2, backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(8) },
        )
    }

    #[test]
    fn least_conn_follows_in_flight_counts() {
        let mut b = lb(PolicyKind::LeastConn, 3);
        let firsts: Vec<usize> = (0..3).map(|_| b.begin(0).unwrap().0).collect();
        let mut sorted = firsts.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [0, 1, 2]);
        b.end(1, 0, 1000, true);
        assert_eq!(b.begin(0).unwrap().0, 1, "the only idle one");
    }

    #[test]
    fn ejected_backend_gets_nothing_until_readmitted() {
        let mut b = lb(PolicyKind::RoundRobin, 2);
        for _ in 0..2 {
            let (i, _) = b.begin(0).unwrap();
            b.end(i, 0, 1000, i != 0);
            let (i, _) = b.begin(0).unwrap();
            b.end(i, 0, 1000, i != 0);
        }
        for _ in 0..10 {
            let (i, _) = b.begin(S / 2).unwrap();
            assert_eq!(i, 1);
            b.end(i, S / 2, 1000, true);
        }
        let rows = b.take_rows(S / 2);
        assert!(rows[0].ejected && !rows[1].ejected);
        assert_eq!((rows[0].requests, rows[0].errors), (2, 2));
        assert_eq!(rows[1].requests, 12);
        let rows = b.take_rows(S / 2);
        assert_eq!((rows[1].requests, rows[1].p50_us), (0, None), "the interval was reset");
        let picks: Vec<usize> = (0..4).map(|_| b.begin(S).unwrap().0).collect();
        assert!(picks.contains(&0), "re-admitted after the backoff: {picks:?}");
    }

    #[test]
    fn all_ejected_panics_to_all_and_rows_report_latency() {
        let mut b = lb(PolicyKind::P2c, 2);
        for _ in 0..4 {
            let (i, _) = b.begin(0).unwrap();
            b.end(i, 0, 5_000, false);
        }
        assert!(!b.backends().iter().any(|x| x.health.available(1)));
        assert!(b.begin(1).is_some(), "panic routing");
        let (i, _) = b.begin(1).unwrap();
        b.end(i, 2, 3_000_000, true);
        let rows = b.take_rows(2);
        let r = &rows[i];
        assert_eq!(r.p50_us.map(|v| v / 1000), Some(3), "{r:?}");
        assert_eq!(rows.iter().map(|r| r.inflight).sum::<u32>(), 1);
        assert_eq!(rows.iter().map(|r| r.errors).sum::<u64>(), 4);
    }
}
