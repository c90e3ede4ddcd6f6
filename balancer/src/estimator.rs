//! In-band latency estimation from client→server packets alone (the balancer never sees
//! a response under direct server return).
//!
//! - **FIXEDTIMEOUT(T)**: per flow, a packet arriving more than T after the flow's
//!   previous packet starts a new *batch*; the gap between consecutive batch starts is a
//!   response-latency sample for the flow's backend. A request/response client sends a
//!   batch, waits for the response, and sends the next one, so with T between the
//!   intra-batch gaps and the round trip, batch starts are one round trip apart.
//! - **ENSEMBLETIMEOUT**: run FIXEDTIMEOUT for every T of a ladder at once (default
//!   64 µs … 4 ms, doubling), count the samples N_i of each rung in an epoch (default
//!   64 ms), and at the epoch's end pick the rung at the *sample cliff*: the i with the
//!   largest N_i / N_{i+1}. Below the round trip, rungs see about one batch per round
//!   trip; once T exceeds the round trip, batches merge and the count collapses. The
//!   chosen rung's samples feed the per-backend estimates during the next epoch.
//! - **The plateau step** (decision 033): round trips on a real network are not all
//!   alike. When they spread over several rungs (memcached at TDF 10: 0.5 to 2 ms), the
//!   counts fall over those rungs and the largest ratio sits at the *end* of the fall,
//!   where the last, longest round trips merge; that rung's samples span two or more
//!   round trips. So from the cliff the choice steps down while the rung below counted
//!   more than `1 + plateau` times as many samples, to the last rung before the fall.
//!
//! Which packets are timed is [`Timed`]: by default only those that carry payload (and
//! the opening SYN, which starts a flow's timing). A client's kernel acknowledges a
//! response at once early in a connection (quick ACKs) and its application sends the next
//! request later; timed, that pure ACK splits one round trip into two samples (the
//! network's part and the client's turnaround), decision 033.
//!
//! # Invariants
//! Times are virtual nanoseconds and never go backwards per flow (a packet older than
//! the flow's last one is ignored for timing). The ladder is ascending, 2 to
//! [`MAX_RUNGS`] long.
//!
//! # Limitations
//! - The sample is the client's whole turnaround: server latency plus the network round
//!   trip plus the client's own think time. An open-loop client that pauses longer than
//!   the round trip between requests makes every sample its inter-request time.
//! - The cliff ratio uses N_{i+1} + 1 as the denominator, so a rung followed by an empty
//!   one wins by its count rather than by an infinite ratio; ties go to the smaller T.
//! - With every packet timed ([`Timed::All`]), a connection's handshake counts as a batch
//!   too (the SYN→ACK gap is a network-only round trip), which biases estimates low by
//!   about 1/(K+1) for K requests per connection. With [`Timed::Data`] the first sample
//!   runs from the SYN to the first request: the handshake plus the client's time to
//!   write, which is what the client's own first-request latency contains too.

use std::collections::VecDeque;

#[cfg(doc)]
use crate::config::Timed;
use crate::config::{Aggregation, EstimatorConfig};

/// The longest ladder supported (per-flow timing state is a fixed array).
pub const MAX_RUNGS: usize = 16;

/// A configuration the estimator cannot run with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EstimatorError {
    #[error("configure the timeout ladder: {len} rungs, expected 2 to {MAX_RUNGS}")]
    LadderLength { len: usize },
    #[error("configure the timeout ladder: timeouts must be positive and strictly ascending")]
    LadderOrder,
    #[error("configure the estimator: the epoch must be positive")]
    ZeroEpoch,
    #[error("configure the estimator: initial rung {index} is beyond the ladder")]
    InitialIndex { index: usize },
    #[error("configure the estimator: bad aggregation {0:?}")]
    Aggregation(Aggregation),
    #[error("configure the estimator: the plateau tolerance {0} must be a finite number of at least 0")]
    Plateau(f64),
}

/// FIXEDTIMEOUT state of one flow for every rung.
#[derive(Debug, Clone, Copy)]
pub struct FlowTiming {
    last_ns: u64,
    batch_start_ns: [u64; MAX_RUNGS],
}

impl FlowTiming {
    /// State for a flow whose first packet arrived at `now_ns`.
    #[must_use]
    pub fn new(now_ns: u64) -> Self {
        Self { last_ns: now_ns, batch_start_ns: [now_ns; MAX_RUNGS] }
    }
}

/// The outcome of one epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochReport {
    /// Virtual time at which the epoch ended (ns).
    pub end_ns: u64,
    /// Samples counted per rung during the epoch.
    pub counts: Vec<u64>,
    /// The rung chosen for the next epoch.
    pub chosen: usize,
    pub chosen_timeout_ns: u64,
}

/// The ENSEMBLETIMEOUT estimator (ladder counting and the cliff choice).
#[derive(Debug, Clone)]
pub struct Ensemble {
    ladder: Vec<u64>,
    epoch_ns: u64,
    min_epoch_samples: u64,
    plateau: f64,
    chosen: usize,
    epoch_end_ns: Option<u64>,
    counts: Vec<u64>,
}

impl Ensemble {
    /// # Errors
    /// A ladder that is too short, too long, or not ascending; a zero epoch; an initial
    /// rung beyond the ladder.
    pub fn new(config: &EstimatorConfig) -> Result<Self, EstimatorError> {
        let len = config.ladder_ns.len();
        if !(2..=MAX_RUNGS).contains(&len) {
            return Err(EstimatorError::LadderLength { len });
        }
        if config.ladder_ns[0] == 0 || config.ladder_ns.windows(2).any(|w| w[0] >= w[1]) {
            return Err(EstimatorError::LadderOrder);
        }
        if config.epoch_ns == 0 {
            return Err(EstimatorError::ZeroEpoch);
        }
        if config.initial_index >= len {
            return Err(EstimatorError::InitialIndex { index: config.initial_index });
        }
        if !(config.plateau.is_finite() && config.plateau >= 0.0) {
            return Err(EstimatorError::Plateau(config.plateau));
        }
        Ok(Self {
            ladder: config.ladder_ns.clone(),
            epoch_ns: config.epoch_ns,
            min_epoch_samples: config.min_epoch_samples,
            plateau: config.plateau,
            chosen: config.initial_index,
            epoch_end_ns: None,
            counts: vec![0; len],
        })
    }

    /// The rung whose samples are used now.
    #[must_use]
    pub fn chosen(&self) -> usize {
        self.chosen
    }

    #[must_use]
    pub fn ladder(&self) -> &[u64] {
        &self.ladder
    }

    /// Closes every epoch that ended at or before `now_ns`; returns the report of the
    /// last one closed. Call before [`Ensemble::observe`] for each packet.
    pub fn advance(&mut self, now_ns: u64) -> Option<EpochReport> {
        let end = *self.epoch_end_ns.get_or_insert(now_ns + self.epoch_ns);
        if now_ns < end {
            return None;
        }
        let report = self.close_epoch(end);
        // Skip whole idle epochs: nothing was counted in them.
        let behind = (now_ns - end) / self.epoch_ns;
        self.epoch_end_ns = Some(end + (behind + 1) * self.epoch_ns);
        Some(report)
    }

    fn close_epoch(&mut self, end_ns: u64) -> EpochReport {
        if self.counts.iter().any(|&n| n >= self.min_epoch_samples) {
            self.chosen = cliff(&self.counts, self.plateau);
        }
        let report = EpochReport {
            end_ns,
            counts: self.counts.clone(),
            chosen: self.chosen,
            chosen_timeout_ns: self.ladder[self.chosen],
        };
        self.counts.iter_mut().for_each(|n| *n = 0);
        report
    }

    /// Feeds one packet of a flow; returns the chosen rung's sample (ns), if this packet
    /// started a new batch at that rung.
    pub fn observe(&mut self, timing: &mut FlowTiming, now_ns: u64) -> Option<u64> {
        if now_ns < timing.last_ns {
            return None;
        }
        let gap = now_ns - timing.last_ns;
        timing.last_ns = now_ns;
        let mut sample = None;
        // Ascending ladder: once a rung's timeout is not exceeded, no larger one is.
        for (i, &t) in self.ladder.iter().enumerate() {
            if gap <= t {
                break;
            }
            let s = now_ns - timing.batch_start_ns[i];
            timing.batch_start_ns[i] = now_ns;
            self.counts[i] += 1;
            if i == self.chosen {
                sample = Some(s);
            }
        }
        sample
    }
}

/// The sample cliff: the rung i with the largest N_i / (N_{i+1} + 1), then stepped down
/// while the rung below counted more than `1 + plateau` times as many samples.
#[must_use]
pub fn cliff(counts: &[u64], plateau: f64) -> usize {
    let mut best = 0;
    let mut best_ratio = f64::NEG_INFINITY;
    for (i, w) in counts.windows(2).enumerate() {
        // Counts stay far below 2^52, so the conversion is exact.
        #[expect(clippy::cast_precision_loss)]
        let ratio = w[0] as f64 / (w[1] as f64 + 1.0);
        if ratio > best_ratio {
            best_ratio = ratio;
            best = i;
        }
    }
    // Counts stay far below 2^52, so the conversions are exact.
    #[expect(clippy::cast_precision_loss)]
    let falls = |below: u64, at: u64| below as f64 > (1.0 + plateau) * at as f64;
    while best > 0 && falls(counts[best - 1], counts[best]) {
        best -= 1;
    }
    best
}

/// A backend's latency estimate from its samples.
#[derive(Debug, Clone)]
pub struct LatencyEstimate {
    aggregation: Aggregation,
    value_ns: Option<f64>,
    window: VecDeque<u64>,
    /// Samples since the last [`LatencyEstimate::take_count`].
    count: u64,
}

impl LatencyEstimate {
    /// # Errors
    /// An EWMA weight outside (0, 1] or an empty median window.
    pub fn new(aggregation: Aggregation) -> Result<Self, EstimatorError> {
        match aggregation {
            Aggregation::Ewma { alpha } if !(alpha > 0.0 && alpha <= 1.0) => {
                return Err(EstimatorError::Aggregation(aggregation))
            }
            Aggregation::WindowMedian { window: 0 } => return Err(EstimatorError::Aggregation(aggregation)),
            _ => {}
        }
        Ok(Self { aggregation, value_ns: None, window: VecDeque::new(), count: 0 })
    }

    pub fn add(&mut self, sample_ns: u64) {
        self.count += 1;
        // Samples are below 2^52 ns (52 days).
        #[expect(clippy::cast_precision_loss)]
        let s = sample_ns as f64;
        match self.aggregation {
            Aggregation::Ewma { alpha } => {
                self.value_ns = Some(self.value_ns.map_or(s, |v| v + alpha * (s - v)));
            }
            Aggregation::WindowMedian { window } => {
                if self.window.len() == window {
                    self.window.pop_front();
                }
                self.window.push_back(sample_ns);
                let mut sorted: Vec<u64> = self.window.iter().copied().collect();
                sorted.sort_unstable();
                #[expect(clippy::cast_precision_loss)]
                let median = sorted[sorted.len() / 2] as f64;
                self.value_ns = Some(median);
            }
        }
    }

    /// The estimate (ns), once there has been a sample.
    #[must_use]
    pub fn value_ns(&self) -> Option<f64> {
        self.value_ns
    }

    /// Samples since the previous call.
    pub fn take_count(&mut self) -> u64 {
        std::mem::take(&mut self.count)
    }

    /// Forgets the estimate (a backend taken out and put back is measured afresh).
    pub fn reset(&mut self) {
        self.value_ns = None;
        self.window.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: u64 = 1_000;
    const MS: u64 = 1_000_000;

    /// A synthetic trace of `flows` request/response flows: each round trip a flow sends
    /// a batch of `window` packets `spacing` apart, then waits for the response, so the
    /// next batch starts `rtt` after this one started. Flows are staggered.
    fn trace(flows: u64, rtt: u64, window: u64, spacing: u64, duration: u64) -> Vec<(u64, u64)> {
        let mut pkts = Vec::new();
        for f in 0..flows {
            let mut start = f * 37 * US % rtt;
            while start < duration {
                for k in 0..window {
                    pkts.push((start + k * spacing, f));
                }
                start += rtt;
            }
        }
        pkts.sort_unstable();
        pkts
    }

    fn run(pkts: &[(u64, u64)], flows: u64) -> (Ensemble, Vec<EpochReport>, Vec<u64>) {
        let mut e = Ensemble::new(&EstimatorConfig::default()).unwrap();
        let mut timing: Vec<Option<FlowTiming>> = vec![None; flows as usize];
        let mut reports = Vec::new();
        let mut samples = Vec::new();
        for &(t, f) in pkts {
            if let Some(r) = e.advance(t) {
                reports.push(r);
            }
            match &mut timing[f as usize] {
                Some(ft) => {
                    if let Some(s) = e.observe(ft, t) {
                        if !reports.is_empty() {
                            samples.push(s);
                        }
                    }
                }
                slot @ None => *slot = Some(FlowTiming::new(t)),
            }
        }
        (e, reports, samples)
    }

    /// The ideal rung: the largest timeout below the round trip (and above the batch's
    /// own spread).
    fn ideal(ladder: &[u64], rtt: u64) -> usize {
        ladder.iter().rposition(|&t| t < rtt).unwrap()
    }

    #[test]
    fn fixed_timeout_samples_the_round_trip() {
        let mut e = Ensemble::new(&EstimatorConfig {
            ladder_ns: vec![100 * US, 200 * US],
            initial_index: 0,
            ..EstimatorConfig::default()
        })
        .unwrap();
        let mut ft = FlowTiming::new(0);
        // Batch of three packets 10 µs apart, round trip 500 µs.
        assert_eq!(e.observe(&mut ft, 10 * US), None);
        assert_eq!(e.observe(&mut ft, 20 * US), None);
        assert_eq!(e.observe(&mut ft, 500 * US), Some(500 * US));
        assert_eq!(e.observe(&mut ft, 510 * US), None);
        assert_eq!(e.observe(&mut ft, 1000 * US), Some(500 * US));
        // An out-of-order timestamp is ignored.
        assert_eq!(e.observe(&mut ft, 900 * US), None);
    }

    #[test]
    fn ensemble_cliff_is_within_one_rung_of_ideal() {
        let ladder = EstimatorConfig::default().ladder_ns;
        for (rtt, window, spacing) in [
            (300 * US, 2, 5 * US),
            (700 * US, 4, 20 * US),
            (1_500 * US, 8, 10 * US),
            (3_000 * US, 3, 40 * US),
            (1_100 * US, 1, 0),
        ] {
            let pkts = trace(50, rtt, window, spacing, 400 * MS);
            let (_, reports, samples) = run(&pkts, 50);
            assert!(reports.len() >= 5, "{reports:?}");
            let want = ideal(&ladder, rtt);
            for r in &reports[1..] {
                assert!(r.chosen.abs_diff(want) <= 1, "rtt {rtt}: chose {} ({:?}), ideal {want}", r.chosen, r.counts);
            }
            // With the chosen rung the samples are the round trip.
            let mut sorted = samples.clone();
            sorted.sort_unstable();
            let median = sorted[sorted.len() / 2];
            assert!(median.abs_diff(rtt) <= rtt / 20, "rtt {rtt}: median sample {median}");
        }
    }

    #[test]
    fn cliff_prefers_the_collapse() {
        assert_eq!(cliff(&[100, 50, 50, 50, 0, 0, 0], 0.1), 3);
        assert_eq!(cliff(&[400, 100, 100, 90, 80, 70, 60], 0.1), 0);
    }

    /// Counts of one 64 ms epoch of the memcached experiment at TDF 10 (every packet
    /// timed; round trips of 0.5 to 2 ms): the largest ratio is 436 / (1 + 1) at 1,024 µs,
    /// whose samples merge most round trips; the plateau ends at 256 µs.
    #[test]
    fn the_plateau_step_leaves_the_fall_of_a_spread_of_round_trips() {
        let counts = [1154, 1154, 1149, 882, 436, 1, 0];
        assert_eq!(cliff(&counts, f64::INFINITY), 4, "the ratio alone");
        assert_eq!(cliff(&counts, 0.1), 2);
    }

    /// Round trips spread uniformly over 0.5–2 ms (four rungs), one packet per batch: the
    /// chosen rung is at most one step above the ideal (the largest timeout below the
    /// shortest round trip), and the median sample is the median round trip.
    #[test]
    fn a_spread_of_round_trips_is_sampled_whole() {
        let mut pkts = Vec::new();
        let mut state = 7u64;
        for f in 0..50u64 {
            let mut t = f * 37 * US;
            while t < 400 * MS {
                pkts.push((t, f));
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                t += 500 * US + (state >> 33) % (1_500 * US);
            }
        }
        pkts.sort_unstable();
        let (_, reports, samples) = run(&pkts, 50);
        let ladder = EstimatorConfig::default().ladder_ns;
        let want = ideal(&ladder, 500 * US);
        for r in &reports[1..] {
            assert!(r.chosen.abs_diff(want) <= 1, "chose {} ({:?}), ideal {want}", r.chosen, r.counts);
        }
        let mut sorted = samples;
        sorted.sort_unstable();
        let median = sorted[sorted.len() / 2];
        assert!(median.abs_diff(1_250 * US) <= 100 * US, "median sample {median}");
    }

    #[test]
    fn quiet_epochs_keep_the_choice() {
        let mut e = Ensemble::new(&EstimatorConfig::default()).unwrap();
        assert!(e.advance(0).is_none());
        let r = e.advance(65 * MS).unwrap();
        assert_eq!(r.chosen, 3);
        // Long idle: one report, and the next epoch is aligned after now.
        let r = e.advance(1_000 * MS).unwrap();
        assert_eq!(r.end_ns, 128 * MS);
        assert!(e.advance(1_010 * MS).is_none());
    }

    #[test]
    fn bad_configs_are_refused() {
        let bad = |c: EstimatorConfig| Ensemble::new(&c).is_err();
        assert!(bad(EstimatorConfig { ladder_ns: vec![1], ..Default::default() }));
        assert!(bad(EstimatorConfig { ladder_ns: vec![2, 1], ..Default::default() }));
        assert!(bad(EstimatorConfig { epoch_ns: 0, ..Default::default() }));
        assert!(bad(EstimatorConfig { initial_index: 7, ..Default::default() }));
        assert!(bad(EstimatorConfig { plateau: -0.1, ..Default::default() }));
        assert!(bad(EstimatorConfig { plateau: f64::NAN, ..Default::default() }));
        assert!(LatencyEstimate::new(Aggregation::Ewma { alpha: 0.0 }).is_err());
        assert!(LatencyEstimate::new(Aggregation::WindowMedian { window: 0 }).is_err());
    }

    #[test]
    fn aggregations() {
        let mut e = LatencyEstimate::new(Aggregation::Ewma { alpha: 0.5 }).unwrap();
        e.add(100);
        e.add(200);
        assert_eq!(e.value_ns(), Some(150.0));
        let mut m = LatencyEstimate::new(Aggregation::WindowMedian { window: 3 }).unwrap();
        for s in [10, 1000, 20, 30] {
            m.add(s);
        }
        assert_eq!(m.value_ns(), Some(30.0));
        assert_eq!(m.take_count(), 4);
        assert_eq!(m.take_count(), 0);
    }
}
