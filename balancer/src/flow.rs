//! A connection's 5-tuple, the packet facts the balancer needs, and the flow hash.
//!
//! # Design
//! The hash is a 64-bit multiply-xorshift mix (the finaliser of MurmurHash3/SplitMix64)
//! over the tuple's words: a few nanoseconds, deterministic across runs and builds, so a
//! given flow lands on the same Maglev slot in every run (see decision 030 for why it is
//! hand-written). It is not keyed: the balancer serves emulated clients, not an
//! adversarial Internet.

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;

/// A transport connection as the balancer sees it on a client→server packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FiveTuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    /// IP protocol number (6 = TCP, 17 = UDP).
    pub protocol: u8,
}

impl FiveTuple {
    /// The flow hash used to pick a Maglev slot.
    #[must_use]
    pub fn flow_hash(&self) -> u64 {
        let mut h = FlowHasher::default();
        self.hash_into(&mut h);
        h.finish()
    }

    fn hash_into(&self, h: &mut FlowHasher) {
        write_ip(h, self.src);
        write_ip(h, self.dst);
        h.write_u64(u64::from(self.src_port) << 24 | u64::from(self.dst_port) << 8 | u64::from(self.protocol));
    }
}

fn write_ip(h: &mut FlowHasher, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => h.write_u64(u64::from(u32::from(v4))),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            // Truncation is the intent: the two halves are hashed separately.
            #[expect(clippy::cast_possible_truncation)]
            {
                h.write_u64((bits >> 64) as u64);
                h.write_u64(bits as u64);
            }
        }
    }
}

/// TCP flags the balancer acts on. Non-TCP packets have none set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpFlags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
}

impl TcpFlags {
    /// Parses the flag byte of a TCP header (offset 13).
    #[must_use]
    pub fn from_byte(b: u8) -> Self {
        Self { fin: b & 0x01 != 0, syn: b & 0x02 != 0, rst: b & 0x04 != 0, ack: b & 0x10 != 0 }
    }

    /// A connection-opening SYN (not the server's SYN-ACK, which DSR never shows us).
    #[must_use]
    pub fn is_opening_syn(&self) -> bool {
        self.syn && !self.ack
    }
}

/// One client→server packet, as handed to [`crate::Balancer::route`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketMeta {
    pub flow: FiveTuple,
    pub flags: TcpFlags,
    /// Bytes of transport payload (0 for a pure ACK, a bare SYN or FIN): from the IP and
    /// TCP headers' lengths, never from the payload itself.
    pub payload_len: u32,
    /// Arrival time at the balancer, in virtual nanoseconds since the run's epoch.
    pub now_ns: u64,
}

/// Mixes 64-bit words; also the hasher of the connection table.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlowHasher {
    state: u64,
}

const MIX_K: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Hasher for FlowHasher {
    fn finish(&self) -> u64 {
        mix(self.state)
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, i: u64) {
        self.state = mix(self.state.wrapping_add(MIX_K) ^ i);
    }
}

impl BuildHasher for FlowHasher {
    type Hasher = FlowHasher;

    fn build_hasher(&self) -> FlowHasher {
        FlowHasher::default()
    }
}

/// Hashes a byte string (a backend's name) with a seed; Maglev derives a backend's
/// offset and skip from two seeds.
#[must_use]
pub fn name_hash(name: &str, seed: u64) -> u64 {
    let mut h = FlowHasher { state: seed };
    h.write(name.as_bytes());
    h.write_u64(name.len() as u64);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn tuple(port: u16) -> FiveTuple {
        FiveTuple {
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 9, 9)),
            src_port: port,
            dst_port: 11211,
            protocol: 6,
        }
    }

    #[test]
    fn hash_is_deterministic_and_spreads_ports() {
        assert_eq!(tuple(40000).flow_hash(), tuple(40000).flow_hash());
        let m = 65_537u64;
        let mut buckets = [0u32; 16];
        for p in 0..16_000u16 {
            let slot = tuple(30000 + p).flow_hash() % m;
            buckets[(slot * 16 / m) as usize] += 1;
        }
        // 1000 expected per bucket; a poor mix of sequential ports would cluster.
        assert!(buckets.iter().all(|&b| (850..1150).contains(&b)), "{buckets:?}");
    }

    #[test]
    fn flags_parse() {
        let f = TcpFlags::from_byte(0x02);
        assert!(f.is_opening_syn());
        let f = TcpFlags::from_byte(0x12);
        assert!(f.syn && f.ack && !f.is_opening_syn());
        assert!(TcpFlags::from_byte(0x11).fin);
    }
}
