//! The checks a frame read from a node's TUN device passes before the userspace core routes
//! it, and the counts of the frames that fail them.
//!
//! A frame is the 10-byte `virtio_net_hdr` (`IFF_VNET_HDR`, [`crate::tun::VNET_HDR_LEN`])
//! followed by the packet, with no link-layer header (`IFF_TUN | IFF_NO_PI`). A node's own
//! stack only hands the device sound IPv4 and IPv6 packets, but any process of the node
//! with `CAP_NET_RAW` (every node runs as root) can write arbitrary bytes to it through a
//! packet socket, and the core must neither panic on them nor forward them: a receiving
//! kernel would drop them anyway, after they took the emulated links' bandwidth.
//!
//! # Invariants
//! [`check`] accepts a frame only if the core can read the IPv4 header it routes by:
//! version 4, a header length of at least 20 bytes that the frame holds, and a total length
//! the frame holds. Everything else is counted once, in exactly one class of [`Bad`].
//!
//! # Design
//! Pure functions on bytes, so every rule is tested without a device; the core keeps one
//! atomic counter per class ([`Counters`]) and reports them as [`BadPackets`].

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::tun::VNET_HDR_LEN as HDR;

/// Why a frame was dropped before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bad {
    /// Shorter than its virtio header plus an IPv4 header, than its own header length,
    /// or than its IPv4 total length.
    Truncated,
    /// An IPv4 header that cannot be: header length under 20 bytes, or a total length
    /// shorter than the header.
    Malformed,
    /// Not IP at all (version neither 4 nor 6).
    NotIp,
    /// IPv6: the emulated network is IPv4 only.
    Ipv6,
}

/// Checks a frame; returns the destination address of a sound IPv4 packet.
pub fn check(frame: &[u8]) -> Result<Ipv4Addr, Bad> {
    let Some(packet) = frame.get(HDR..).filter(|p| !p.is_empty()) else {
        return Err(Bad::Truncated);
    };
    match packet[0] >> 4 {
        4 => {}
        6 => return Err(Bad::Ipv6),
        _ => return Err(Bad::NotIp),
    }
    if packet.len() < 20 {
        return Err(Bad::Truncated);
    }
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    if ihl < 20 {
        return Err(Bad::Malformed);
    }
    if ihl > packet.len() {
        return Err(Bad::Truncated);
    }
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    // A GSO frame (virtio gso_type ≠ 0) may carry total length 0 (IPv4 BIG TCP, over 64 KB).
    let gso = frame[1] & 0x7f != 0;
    if total < ihl && !(gso && total == 0) {
        return Err(Bad::Malformed);
    }
    if total > packet.len() {
        return Err(Bad::Truncated);
    }
    Ok(Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]))
}

/// Frames dropped before or at routing, by reason (totals since the network started).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BadPackets {
    pub malformed: u64,
    pub truncated: u64,
    pub non_ip: u64,
    /// IPv6, a destination address no node has, or no route to it.
    pub unroutable: u64,
    /// Between nodes on different sides of a partition (a fault, not a bad packet).
    pub partitioned: u64,
}

/// The core's counters behind [`BadPackets`].
#[derive(Debug, Default)]
pub struct Counters {
    malformed: AtomicU64,
    truncated: AtomicU64,
    non_ip: AtomicU64,
    unroutable: AtomicU64,
    partitioned: AtomicU64,
}

impl Counters {
    /// Counts a frame [`check`] rejected.
    pub fn reject(&self, bad: Bad) {
        let c = match bad {
            Bad::Truncated => &self.truncated,
            Bad::Malformed => &self.malformed,
            Bad::NotIp => &self.non_ip,
            Bad::Ipv6 => &self.unroutable,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a packet to an address or node the network cannot reach.
    pub fn unroutable(&self) {
        self.unroutable.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a packet dropped by a partition.
    pub fn partitioned(&self) {
        self.partitioned.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> BadPackets {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BadPackets {
            malformed: get(&self.malformed),
            truncated: get(&self.truncated),
            non_ip: get(&self.non_ip),
            unroutable: get(&self.unroutable),
            partitioned: get(&self.partitioned),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame: zero virtio header, then an IPv4 header of `ihl` words, `total` bytes long,
    /// to 10.0.0.2, padded to `len` packet bytes.
    fn frame(ihl: u8, total: u16, len: usize) -> Vec<u8> {
        let mut f = vec![0u8; HDR + len];
        let p = &mut f[HDR..];
        if !p.is_empty() {
            p[0] = 0x40 | ihl;
        }
        if p.len() >= 20 {
            p[2..4].copy_from_slice(&total.to_be_bytes());
            p[16..20].copy_from_slice(&[10, 0, 0, 2]);
        }
        f
    }

    #[test]
    fn sound_ipv4_packets_pass_with_their_destination() {
        assert_eq!(check(&frame(5, 20, 20)), Ok(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(check(&frame(5, 1500, 1500)), Ok(Ipv4Addr::new(10, 0, 0, 2)));
        // Options (ihl 6), and trailing bytes past the total length.
        assert!(check(&frame(6, 40, 60)).is_ok());
    }

    #[test]
    fn short_frames_are_truncated() {
        assert_eq!(check(&[]), Err(Bad::Truncated));
        assert_eq!(check(&[0; HDR]), Err(Bad::Truncated));
        assert_eq!(check(&frame(5, 20, 19)), Err(Bad::Truncated));
        // Header length past the frame; total length past the frame.
        assert_eq!(check(&frame(15, 60, 40)), Err(Bad::Truncated));
        assert_eq!(check(&frame(5, 1500, 100)), Err(Bad::Truncated));
    }

    #[test]
    fn impossible_headers_are_malformed() {
        assert_eq!(check(&frame(4, 20, 20)), Err(Bad::Malformed));
        assert_eq!(check(&frame(0, 20, 20)), Err(Bad::Malformed));
        assert_eq!(check(&frame(5, 19, 20)), Err(Bad::Malformed));
        assert_eq!(check(&frame(5, 0, 20)), Err(Bad::Malformed));
        // Total length 0 is allowed in a GSO frame only.
        let mut gso = frame(5, 0, 20);
        gso[1] = 1;
        assert!(check(&gso).is_ok());
    }

    #[test]
    fn other_versions_are_not_ip_or_ipv6() {
        let mut f = frame(5, 20, 20);
        f[HDR] = 0x65;
        assert_eq!(check(&f), Err(Bad::Ipv6));
        for v in [0x00, 0x15, 0x85, 0xf5] {
            f[HDR] = v;
            assert_eq!(check(&f), Err(Bad::NotIp), "{v:#x}");
        }
        // A one-byte non-IP frame is not IP, not truncated IPv4.
        assert_eq!(check(&[&[0u8; HDR][..], &[0x08]].concat()), Err(Bad::NotIp));
    }

    #[test]
    fn every_rejection_counts_in_one_class() {
        let c = Counters::default();
        for b in [Bad::Truncated, Bad::Malformed, Bad::Malformed, Bad::NotIp, Bad::Ipv6] {
            c.reject(b);
        }
        c.unroutable();
        c.partitioned();
        assert_eq!(c.snapshot(), BadPackets { malformed: 2, truncated: 1, non_ip: 1, unroutable: 2, partitioned: 1 });
    }

    #[test]
    fn no_frame_panics() {
        // Every frame of up to 3 packet bytes, and every first byte of a 20-byte header.
        for len in 0..=3usize {
            for v in 0..=255u8 {
                let mut f = vec![0u8; HDR + len];
                if len > 0 {
                    f[HDR] = v;
                }
                let _ = check(&f);
            }
        }
        for v in 0..=255u8 {
            let mut f = frame(5, 20, 20);
            f[HDR] = v;
            let _ = check(&f);
        }
    }
}
