//! The balancer: one [`Balancer::route`] call per client→server packet returns the
//! backend the packet goes to.
//!
//! # Design
//! - New connections are placed by the Maglev table; the connection table pins them.
//! - The ENSEMBLETIMEOUT estimator runs under both policies (so static Maglev reports
//!   estimates too); only under [`Policy::Inband`] does the δ-shift controller act on
//!   them.
//! - **Failure detection, in band.** Under DSR the balancer never sees a SYN-ACK, but it
//!   sees the client's reaction: a client that got no SYN-ACK retransmits its SYN on the
//!   same 5-tuple. Each such retransmission counts against the backend; after
//!   `syn_retries_to_fail` of them with no connection to that backend completing its
//!   handshake in between, the backend is marked down, the table is rebuilt without it
//!   (Maglev moves only its slots), and the retransmitting connection is re-placed. After
//!   `down_hold` it is put back and must prove itself again.
//!
//! # Limitations
//! Connections already established on a backend that dies are re-placed only when
//! their next packet arrives (the client then gets a reset from the new backend). The
//! retransmission timer is the client kernel's, which runs in real, not virtual, time.

use crate::config::{BalancerConfig, Policy, Timed};
use crate::conntrack::{Conn, ConnTable};
use crate::controller::{Controller, ControllerConfigError, StepKind};
use crate::estimator::{Ensemble, EstimatorError, FlowTiming, LatencyEstimate};
use crate::flow::{FiveTuple, PacketMeta};
use crate::maglev::{MaglevError, MaglevTable};
use crate::telemetry::{EpochRow, EstimateRow, ShareReason, ShareRow, Telemetry};
use std::collections::VecDeque;

/// Why a balancer cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BalancerError {
    #[error("build the balancer: no backends")]
    NoBackends,
    #[error("build the balancer: {names} backend names but {weights} weights")]
    WeightCount { names: usize, weights: usize },
    #[error(transparent)]
    Maglev(#[from] MaglevError),
    #[error(transparent)]
    Estimator(#[from] EstimatorError),
    #[error(transparent)]
    Controller(#[from] ControllerConfigError),
}

/// Where one packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub backend: usize,
    /// The packet opened (or re-placed) a connection.
    pub new_connection: bool,
}

#[derive(Debug, Clone)]
struct Health {
    /// SYN retransmissions since a connection to this backend last completed a handshake.
    failures: u32,
    down_until_ns: Option<u64>,
}

pub struct Balancer {
    config: BalancerConfig,
    names: Vec<String>,
    weights: Vec<f64>,
    table: MaglevTable,
    conns: ConnTable,
    ensemble: Ensemble,
    estimates: Vec<LatencyEstimate>,
    controller: Controller,
    health: Vec<Health>,
    telemetry: Telemetry,
    started: bool,
    /// Opening SYNs awaiting their handshake: (deadline, flow, backend, SYN time), by
    /// deadline (every entry gets the same timeout, so push order is deadline order).
    handshakes: VecDeque<(u64, FiveTuple, usize, u64)>,
}

impl Balancer {
    /// # Errors
    /// No backends, mismatched weights, or a bad table size, ladder or controller setting.
    pub fn new(config: BalancerConfig, names: Vec<String>, weights: Vec<f64>) -> Result<Self, BalancerError> {
        if names.is_empty() {
            return Err(BalancerError::NoBackends);
        }
        if names.len() != weights.len() {
            return Err(BalancerError::WeightCount { names: names.len(), weights: weights.len() });
        }
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let table = MaglevTable::build(config.table_size, &refs, &weights)?;
        let ensemble = Ensemble::new(&config.estimator)?;
        let estimates =
            names.iter().map(|_| LatencyEstimate::new(config.estimator.aggregation)).collect::<Result<Vec<_>, _>>()?;
        let controller = Controller::new(config.controller.clone(), weights.clone())?;
        let health = vec![Health { failures: 0, down_until_ns: None }; names.len()];
        Ok(Self {
            conns: ConnTable::new(config.idle_timeout_ns),
            config,
            names,
            weights,
            table,
            ensemble,
            estimates,
            controller,
            health,
            telemetry: Telemetry::default(),
            started: false,
            handshakes: VecDeque::new(),
        })
    }

    #[must_use]
    pub fn names(&self) -> &[String] {
        &self.names
    }

    #[must_use]
    pub fn policy(&self) -> Policy {
        self.config.policy
    }

    #[must_use]
    pub fn table(&self) -> &MaglevTable {
        &self.table
    }

    #[must_use]
    pub fn ladder_ns(&self) -> &[u64] {
        self.ensemble.ladder()
    }

    /// Tracked connections.
    #[must_use]
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// The current latency estimate per backend (virtual ns).
    #[must_use]
    pub fn estimates_ns(&self) -> Vec<Option<f64>> {
        self.estimates.iter().map(LatencyEstimate::value_ns).collect()
    }

    /// Whether backend `i` is in service.
    #[must_use]
    pub fn is_up(&self, i: usize) -> bool {
        self.health.get(i).is_some_and(|h| h.down_until_ns.is_none())
    }

    /// Drains the recorded telemetry.
    pub fn take_telemetry(&mut self) -> Telemetry {
        self.telemetry.take()
    }

    /// Routes one client→server packet.
    ///
    /// # Errors
    /// Only on an internal inconsistency (a table rebuild that finds no live backend is
    /// avoided by never marking the last live backend down).
    pub fn route(&mut self, pkt: &PacketMeta) -> Result<Decision, MaglevError> {
        let now = pkt.now_ns;
        if !self.started {
            self.started = true;
            self.record_shares(now, ShareReason::Start);
        }
        self.conns.expire(now);
        self.abandoned(now)?;
        self.revive(now)?;
        if let Some(report) = self.ensemble.advance(now) {
            self.telemetry.epochs.push(EpochRow {
                end_ns: report.end_ns,
                chosen_timeout_ns: report.chosen_timeout_ns,
                counts: report.counts,
            });
            for (b, e) in self.estimates.iter_mut().enumerate() {
                self.telemetry.estimates.push(EstimateRow {
                    t_ns: report.end_ns,
                    backend: b,
                    estimate_ns: e.value_ns(),
                    samples: e.take_count(),
                });
            }
            self.record_shares(report.end_ns, ShareReason::Epoch);
        }

        let opening = pkt.flags.is_opening_syn();
        let (backend, new_connection) = match self.conns.get_mut(&pkt.flow) {
            Some(conn) if opening && !conn.established => {
                // The client retransmitted its SYN: the backend did not answer.
                conn.syn_retries += 1;
                let b = conn.backend;
                self.health[b].failures += 1;
                if self.health[b].failures >= self.config.syn_retries_to_fail {
                    self.mark_down(b, now)?;
                }
                if self.is_up(b) {
                    self.touch(pkt, b)
                } else {
                    (self.place(pkt, false), true)
                }
            }
            Some(conn) if !opening && self.health[conn.backend].down_until_ns.is_none() => {
                let b = conn.backend;
                if pkt.flags.ack && !conn.established {
                    conn.established = true;
                    self.health[b].failures = 0;
                }
                self.touch(pkt, b)
            }
            // A fresh SYN on an established tuple is a new connection (port reuse); a
            // packet for a down backend is re-placed; an unknown non-SYN packet (table
            // expired or balancer restarted) is placed as established.
            Some(_) | None => (self.place(pkt, !opening), true),
        };
        Ok(Decision { backend, new_connection })
    }

    /// Timing and control for a packet of a known connection.
    fn touch(&mut self, pkt: &PacketMeta, backend: usize) -> (usize, bool) {
        let now = pkt.now_ns;
        let Some(conn) = self.conns.get_mut(&pkt.flow) else {
            return (backend, false);
        };
        conn.last_seen_ns = now;
        if pkt.payload_len == 0 && self.config.estimator.timed == Timed::Data {
            return (backend, false);
        }
        if let Some(sample) = self.ensemble.observe(&mut conn.timing, now) {
            self.estimates[backend].add(sample);
            if self.config.policy == Policy::Inband {
                self.control(now);
            }
        }
        (backend, false)
    }

    fn control(&mut self, now: u64) {
        if !self.controller.due(now) {
            return;
        }
        let estimates = self.estimates_ns();
        let active: Vec<bool> = (0..self.names.len()).map(|i| self.is_up(i)).collect();
        if let Ok(Some(step)) = self.controller.step(now, &estimates, &active, &mut self.table) {
            let reason = match step.kind {
                StepKind::Drain => ShareReason::Drain,
                StepKind::Relax => ShareReason::Relax,
            };
            self.record_shares(now, reason);
        }
    }

    /// Counts the openings whose tuple stayed silent past the handshake timeout (the
    /// backend reset them, see [`BalancerConfig::handshake_timeout_ns`]).
    fn abandoned(&mut self, now: u64) -> Result<(), MaglevError> {
        while self.handshakes.front().is_some_and(|h| h.0 <= now) {
            let Some((_, flow, backend, opened)) = self.handshakes.pop_front() else { break };
            let silent = self
                .conns
                .get_mut(&flow)
                .is_some_and(|c| !c.established && c.backend == backend && c.last_seen_ns == opened);
            if silent && self.is_up(backend) {
                self.health[backend].failures += 1;
                if self.health[backend].failures >= self.config.syn_retries_to_fail {
                    self.mark_down(backend, now)?;
                }
            }
        }
        Ok(())
    }

    /// Places a connection by the Maglev table and starts tracking it.
    fn place(&mut self, pkt: &PacketMeta, established: bool) -> usize {
        let backend = self.table.lookup(pkt.flow.flow_hash());
        if !established {
            let deadline = pkt.now_ns.saturating_add(self.config.handshake_timeout_ns);
            self.handshakes.push_back((deadline, pkt.flow, backend, pkt.now_ns));
        }
        self.conns.insert(
            pkt.flow,
            Conn {
                backend,
                last_seen_ns: pkt.now_ns,
                established,
                syn_retries: 0,
                timing: FlowTiming::new(pkt.now_ns),
            },
        );
        backend
    }

    fn live_weights(&self) -> Vec<f64> {
        self.weights.iter().zip(&self.health).map(|(&w, h)| if h.down_until_ns.is_none() { w } else { 0.0 }).collect()
    }

    fn rebuild(&mut self) -> Result<(), MaglevError> {
        let refs: Vec<&str> = self.names.iter().map(String::as_str).collect();
        self.table = MaglevTable::build(self.table.size(), &refs, &self.live_weights())?;
        Ok(())
    }

    fn mark_down(&mut self, b: usize, now: u64) -> Result<(), MaglevError> {
        let live = (0..self.names.len()).filter(|&i| self.is_up(i)).count();
        // The last live backend is never taken out: there is nowhere else to send.
        if live <= 1 || !self.is_up(b) {
            self.health[b].failures = 0;
            return Ok(());
        }
        self.health[b].down_until_ns = Some(now + self.config.down_hold_ns);
        self.health[b].failures = 0;
        self.estimates[b].reset();
        self.rebuild()?;
        self.record_shares(now, ShareReason::Down);
        Ok(())
    }

    fn revive(&mut self, now: u64) -> Result<(), MaglevError> {
        let due: Vec<usize> =
            (0..self.health.len()).filter(|&i| self.health[i].down_until_ns.is_some_and(|t| now >= t)).collect();
        if due.is_empty() {
            return Ok(());
        }
        for i in due {
            self.health[i].down_until_ns = None;
        }
        self.rebuild()?;
        self.record_shares(now, ShareReason::Up);
        Ok(())
    }

    fn record_shares(&mut self, t_ns: u64, reason: ShareReason) {
        for (backend, share) in self.table.shares().into_iter().enumerate() {
            self.telemetry.shares.push(ShareRow { t_ns, backend, share, reason });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{FiveTuple, TcpFlags};
    use std::net::{IpAddr, Ipv4Addr};

    const US: u64 = 1_000;
    const MS: u64 = 1_000_000;

    fn flow(port: u16) -> FiveTuple {
        FiveTuple {
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 9, 1)),
            src_port: port,
            dst_port: 11211,
            protocol: 6,
        }
    }

    /// A packet; one with PSH carries a 20-byte request.
    fn pkt(port: u16, flags: u8, now_ns: u64) -> PacketMeta {
        let payload_len = if flags & 0x08 != 0 { 20 } else { 0 };
        PacketMeta { flow: flow(port), flags: TcpFlags::from_byte(flags), payload_len, now_ns }
    }

    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;
    const PSH_ACK: u8 = 0x18;

    fn balancer(policy: Policy) -> Balancer {
        Balancer::new(
            BalancerConfig { policy, ..BalancerConfig::default() },
            vec!["s0".into(), "s1".into()],
            vec![1.0, 1.0],
        )
        .unwrap()
    }

    #[test]
    fn connections_stay_pinned() {
        let mut b = balancer(Policy::Maglev);
        let first = b.route(&pkt(5000, SYN, 0)).unwrap();
        assert!(first.new_connection);
        for k in 1..10 {
            let d = b.route(&pkt(5000, PSH_ACK, k * MS)).unwrap();
            assert_eq!(d.backend, first.backend);
            assert!(!d.new_connection);
        }
        assert_eq!(b.connections(), 1);
    }

    /// A closed-loop simulation: `conns` connections each send a request, get the
    /// response after their backend's latency, and send the next one; every `k`
    /// requests they reconnect on a new port. Returns the balancer.
    fn simulate(policy: Policy, inflate_at: u64, until: u64) -> Balancer {
        let mut b = balancer(policy);
        let base = [300 * US, 300 * US];
        let conns = 64u16;
        let k = 10;
        // (next send time, port, requests sent on this connection)
        let mut state: Vec<(u64, u16, u32)> =
            (0..conns).map(|c| (u64::from(c) * 7 * US, 20_000 + c * 100, 0)).collect();
        while let Some((i, _)) = state.iter().enumerate().min_by_key(|(_, s)| s.0) {
            let (t, port, sent) = state[i];
            if t >= until {
                break;
            }
            let flags = if sent == 0 { SYN } else { PSH_ACK };
            let d = b.route(&pkt(port, flags, t)).unwrap();
            let slow = d.backend == 1 && t >= inflate_at;
            let latency = base[d.backend] + if slow { MS } else { 0 };
            state[i] = if sent + 1 >= k { (t + latency, port + 1, 0) } else { (t + latency, port, sent + 1) };
        }
        b
    }

    #[test]
    fn inband_drains_the_slow_backend_within_50ms() {
        let inflate = 300 * MS;
        let mut b = simulate(Policy::Inband, inflate, inflate + 50 * MS);
        let share = b.table().shares()[1];
        assert!(share < 0.10, "slow backend share {share}");
        let t = b.take_telemetry();
        assert!(t.shares.iter().any(|r| r.reason == ShareReason::Drain));
        assert!(!t.epochs.is_empty());
        // Estimates track the true round trips before the fault.
        let pre: Vec<f64> = t
            .estimates
            .iter()
            .filter(|r| r.t_ns < inflate && r.t_ns > 100 * MS)
            .filter_map(|r| r.estimate_ns)
            .collect();
        assert!(!pre.is_empty());
        assert!(pre.iter().all(|e| (e - 300_000.0).abs() < 30_000.0), "{pre:?}");
    }

    /// Closed-loop connections whose client kernel acknowledges each response at once
    /// (a quick ACK, 450 µs after the request) while the application sends the next
    /// request 550 µs later: one round trip of 1 ms as the client sees it.
    fn quick_acks(timed: Timed) -> Vec<f64> {
        let mut config = BalancerConfig::default();
        config.estimator.timed = timed;
        let mut b = Balancer::new(config, vec!["s0".into(), "s1".into()], vec![1.0, 1.0]).unwrap();
        let mut pkts = Vec::new();
        for c in 0..20u16 {
            let mut t = u64::from(c) * 37 * US;
            pkts.push((t, c, SYN));
            pkts.push((t + 400 * US, c, ACK));
            t += 500 * US;
            while t < 300 * MS {
                pkts.push((t, c, PSH_ACK));
                pkts.push((t + 450 * US, c, ACK));
                t += MS;
            }
        }
        pkts.sort_unstable();
        for (t, c, flags) in pkts {
            b.route(&pkt(7000 + c, flags, t)).unwrap();
        }
        b.estimates_ns().into_iter().flatten().collect()
    }

    #[test]
    fn pure_acks_do_not_split_a_round_trip() {
        let data = quick_acks(Timed::Data);
        assert!(data.len() == 2 && data.iter().all(|e| (e - 1e6).abs() < 1e4), "{data:?}");
        // Timing every packet halves it: 450 µs and 550 µs samples alternate.
        let all = quick_acks(Timed::All);
        assert!(all.iter().all(|e| (e - 5e5).abs() < 1e5), "{all:?}");
    }

    #[test]
    fn static_maglev_does_not_move() {
        let b = simulate(Policy::Maglev, 300 * MS, 400 * MS);
        assert!((b.table().shares()[1] - 0.5).abs() < 0.01);
        // But it estimates the slow backend's latency too.
        let est = b.estimates_ns();
        assert!(est[1].unwrap() > est[0].unwrap() * 2.0, "{est:?}");
    }

    #[test]
    fn a_backend_that_never_answers_is_marked_down() {
        let mut b = balancer(Policy::Maglev);
        // Find two ports Maglev puts on backend 1, and let their SYNs go unanswered.
        let ports: Vec<u16> = (1000..2000).filter(|&p| b.table().lookup(flow(p).flow_hash()) == 1).take(2).collect();
        b.route(&pkt(ports[0], SYN, 0)).unwrap();
        b.route(&pkt(ports[1], SYN, MS)).unwrap();
        assert_eq!(b.route(&pkt(ports[0], SYN, 1_000 * MS)).unwrap().backend, 1);
        let d = b.route(&pkt(ports[1], SYN, 1_001 * MS)).unwrap();
        assert!(!b.is_up(1));
        assert_eq!(d.backend, 0, "the retransmitting connection is re-placed");
        assert!(b.table().shares()[1] == 0.0);
        // New connections all go to the live backend; after the hold it is back.
        assert!((3000..3100).all(|p| b.route(&pkt(p, SYN, 1_002 * MS)).unwrap().backend == 0));
        b.route(&pkt(4000, SYN, 12_000 * MS)).unwrap();
        assert!(b.is_up(1));
        assert!((b.table().shares()[1] - 0.5).abs() < 0.01);
    }

    #[test]
    fn a_completed_handshake_clears_failures() {
        let mut b = balancer(Policy::Maglev);
        let p = (1000..2000).find(|&p| b.table().lookup(flow(p).flow_hash()) == 1).unwrap();
        b.route(&pkt(p, SYN, 0)).unwrap();
        b.route(&pkt(p, SYN, 1_000 * MS)).unwrap();
        b.route(&pkt(p, ACK, 1_001 * MS)).unwrap();
        let q = (p + 1..3000).find(|&p| b.table().lookup(flow(p).flow_hash()) == 1).unwrap();
        b.route(&pkt(q, SYN, 1_002 * MS)).unwrap();
        b.route(&pkt(q, SYN, 2_002 * MS)).unwrap();
        assert!(b.is_up(1), "one retry after a success is not two failures in a row");
    }

    #[test]
    fn a_backend_that_resets_is_marked_down() {
        // The backend's host answers SYNs with resets: the client abandons each tuple.
        let mut b = balancer(Policy::Maglev);
        let on1: Vec<u16> = (1000..2000).filter(|&p| b.table().lookup(flow(p).flow_hash()) == 1).take(2).collect();
        let on0 = (1000..2000).find(|&p| b.table().lookup(flow(p).flow_hash()) == 0).unwrap();
        b.route(&pkt(on1[0], SYN, 0)).unwrap();
        b.route(&pkt(on1[1], SYN, MS)).unwrap();
        // A healthy connection on backend 0 completes its handshake.
        b.route(&pkt(on0, SYN, 2 * MS)).unwrap();
        b.route(&pkt(on0, ACK, 3 * MS)).unwrap();
        b.route(&pkt(on0, PSH_ACK, 2_000 * MS)).unwrap();
        assert!(b.is_up(1), "not before the handshake timeout");
        b.route(&pkt(on0, PSH_ACK, 3_002 * MS)).unwrap();
        assert!(!b.is_up(1), "two abandoned openings after 3 s");
        assert!(b.is_up(0), "a completed handshake is no failure");
        assert!((5000..5100).all(|p| b.route(&pkt(p, SYN, 3_003 * MS)).unwrap().backend == 0));
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(matches!(Balancer::new(BalancerConfig::default(), vec![], vec![]), Err(BalancerError::NoBackends)));
        assert!(matches!(
            Balancer::new(BalancerConfig::default(), vec!["a".into()], vec![]),
            Err(BalancerError::WeightCount { .. })
        ));
    }
}
