//! The connection table: pins each connection (5-tuple) to the backend chosen for its
//! first packet, so moving Maglev slots or adding a backend never breaks a connection
//! in flight. Entries idle longer than the idle timeout are forgotten.
//!
//! # Design
//! A `HashMap` with the cheap [`FlowHasher`]; expiry is a sweep (`retain`) at most once
//! per quarter of the idle timeout, amortised over packets, so an entry lives between
//! one and 1.25 idle timeouts after its last packet.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use crate::estimator::FlowTiming;
use crate::flow::{FiveTuple, FlowHasher};

/// One tracked connection.
#[derive(Debug, Clone)]
pub struct Conn {
    pub backend: usize,
    pub last_seen_ns: u64,
    /// The client has acknowledged the server's SYN-ACK, so the backend answered.
    pub established: bool,
    /// Retransmitted opening SYNs seen while not established.
    pub syn_retries: u32,
    pub timing: FlowTiming,
}

#[derive(Debug, Clone)]
pub struct ConnTable {
    map: HashMap<FiveTuple, Conn, FlowHasher>,
    idle_ns: u64,
    next_sweep_ns: u64,
}

impl ConnTable {
    #[must_use]
    pub fn new(idle_ns: u64) -> Self {
        Self { map: HashMap::with_hasher(FlowHasher::default()), idle_ns, next_sweep_ns: 0 }
    }

    /// Forgets idle connections if a sweep is due at `now_ns`; returns how many.
    pub fn expire(&mut self, now_ns: u64) -> usize {
        if now_ns < self.next_sweep_ns {
            return 0;
        }
        self.next_sweep_ns = now_ns + (self.idle_ns / 4).max(1);
        let before = self.map.len();
        let idle = self.idle_ns;
        self.map.retain(|_, c| now_ns.saturating_sub(c.last_seen_ns) < idle);
        before - self.map.len()
    }

    pub fn get_mut(&mut self, flow: &FiveTuple) -> Option<&mut Conn> {
        self.map.get_mut(flow)
    }

    /// Inserts (or replaces) a connection and returns it.
    pub fn insert(&mut self, flow: FiveTuple, conn: Conn) -> &mut Conn {
        match self.map.entry(flow) {
            Entry::Occupied(mut e) => {
                e.insert(conn);
                e.into_mut()
            }
            Entry::Vacant(e) => e.insert(conn),
        }
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn flow(port: u16) -> FiveTuple {
        FiveTuple {
            src: IpAddr::V4(Ipv4Addr::LOCALHOST),
            dst: IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9)),
            src_port: port,
            dst_port: 80,
            protocol: 6,
        }
    }

    fn conn(backend: usize, now: u64) -> Conn {
        Conn { backend, last_seen_ns: now, established: false, syn_retries: 0, timing: FlowTiming::new(now) }
    }

    #[test]
    fn idle_connections_expire_active_ones_stay() {
        let mut t = ConnTable::new(1_000);
        t.insert(flow(1), conn(0, 0));
        t.insert(flow(2), conn(1, 0));
        assert_eq!(t.expire(0), 0);
        if let Some(c) = t.get_mut(&flow(2)) {
            c.last_seen_ns = 900;
        }
        assert_eq!(t.expire(1_100), 1);
        assert!(t.get_mut(&flow(1)).is_none());
        assert_eq!(t.get_mut(&flow(2)).map(|c| c.backend), Some(1));
        // Not yet due: no sweep even though flow 2 is idle by now.
        assert_eq!(t.expire(1_300), 0);
        assert_eq!(t.expire(2_000), 1);
        assert!(t.is_empty());
    }
}
