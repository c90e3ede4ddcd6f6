//! Reading what the balancer needs from a raw IPv4 packet (as the userspace network
//! emulator holds it: an IP datagram, possibly behind a fixed-size device header), and
//! the conversion of the emulator's real time to the nodes' virtual time.
//!
//! # Invariants
//! Nothing here writes the packet: under DSR the balancer forwards client→server packets
//! unchanged (the backend holds the VIP), so no checksum is touched.

use std::net::{IpAddr, Ipv4Addr};

use crate::flow::{FiveTuple, TcpFlags};

/// IP protocol number of TCP.
pub const TCP: u8 = 6;
/// IP protocol number of UDP.
pub const UDP: u8 = 17;

/// The 5-tuple, TCP flags and payload length of an IPv4 TCP or UDP packet starting at
/// `offset` of `buf`; `None` for anything else (other protocols, IPv6, truncated headers,
/// non-first fragments, whose ports are not in the packet). The payload length is the IP
/// total length less the IP and transport headers (the buffer's length where the total
/// length field is 0, as in a segmentation-offload packet).
#[must_use]
pub fn parse_ipv4(buf: &[u8], offset: usize) -> Option<(FiveTuple, TcpFlags, u32)> {
    let ip = buf.get(offset..)?;
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let frag_offset = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
    if ihl < 20 || frag_offset != 0 {
        return None;
    }
    let protocol = ip[9];
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let l4 = ip.get(ihl..)?;
    let (ports_len, flags, header_len) = match protocol {
        TCP => (14, TcpFlags::from_byte(*l4.get(13)?), usize::from(*l4.get(12)? >> 4) * 4),
        UDP => (4, TcpFlags::default(), 8),
        _ => return None,
    };
    if l4.len() < ports_len {
        return None;
    }
    let total = match usize::from(u16::from_be_bytes([ip[2], ip[3]])) {
        0 => ip.len(),
        n => n,
    };
    let payload_len = u32::try_from(total.saturating_sub(ihl + header_len)).unwrap_or(u32::MAX);
    let flow = FiveTuple {
        src: IpAddr::V4(src),
        dst: IpAddr::V4(dst),
        src_port: u16::from_be_bytes([l4[0], l4[1]]),
        dst_port: u16::from_be_bytes([l4[2], l4[3]]),
        protocol,
    };
    Some((flow, flags, payload_len))
}

/// Virtual nanoseconds since the run's epoch from real nanoseconds since it, at a
/// time-dilation factor `tdf` (virtual time runs `tdf` times slower than real time).
#[must_use]
pub fn virtual_ns(real_since_epoch_ns: u64, tdf: f64) -> u64 {
    if !(tdf.is_finite() && tdf > 0.0) {
        return real_since_epoch_ns;
    }
    // Both sides are below 2^63 ns (292 years); the rounding error is below 1 ns per
    // 2^53 ns (104 days).
    #[expect(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let v = (real_since_epoch_ns as f64 / tdf) as u64;
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp_packet(flags: u8) -> Vec<u8> {
        let mut p = vec![0u8; 4 + 20 + 20];
        let ip = &mut p[4..];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&40u16.to_be_bytes());
        ip[32] = 5 << 4;
        ip[9] = TCP;
        ip[12..16].copy_from_slice(&[10, 0, 0, 2]);
        ip[16..20].copy_from_slice(&[10, 0, 255, 1]);
        ip[20..22].copy_from_slice(&40000u16.to_be_bytes());
        ip[22..24].copy_from_slice(&11211u16.to_be_bytes());
        ip[33] = flags;
        p
    }

    #[test]
    fn parses_tcp_behind_a_device_header() {
        let (f, fl, len) = parse_ipv4(&tcp_packet(0x02), 4).unwrap();
        assert_eq!(f.src, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(f.dst, IpAddr::V4(Ipv4Addr::new(10, 0, 255, 1)));
        assert_eq!((f.src_port, f.dst_port, f.protocol), (40000, 11211, TCP));
        assert!(fl.is_opening_syn());
        assert_eq!(len, 0, "a bare SYN carries nothing");
    }

    #[test]
    fn payload_length_is_read_from_the_headers() {
        // 17 bytes of request behind a TCP header with 12 bytes of options (data offset 8).
        let mut p = tcp_packet(0x18);
        p.resize(4 + 20 + 32 + 17, 0);
        p[4 + 2..4 + 4].copy_from_slice(&(20u16 + 32 + 17).to_be_bytes());
        p[4 + 32] = 8 << 4;
        assert_eq!(parse_ipv4(&p, 4).unwrap().2, 17);
        // A segmentation-offload packet whose total length is 0: the buffer's length.
        p[4 + 2..4 + 4].copy_from_slice(&0u16.to_be_bytes());
        assert_eq!(parse_ipv4(&p, 4).unwrap().2, 17);
    }

    #[test]
    fn refuses_what_it_cannot_balance() {
        let p = tcp_packet(0x10);
        assert!(parse_ipv4(&p[..4 + 20 + 10], 4).is_none(), "truncated TCP header");
        let mut frag = p.clone();
        frag[4 + 7] = 1;
        assert!(parse_ipv4(&frag, 4).is_none(), "non-first fragment");
        let mut icmp = p.clone();
        icmp[4 + 9] = 1;
        assert!(parse_ipv4(&icmp, 4).is_none());
        let mut v6 = p;
        v6[4] = 0x60;
        assert!(parse_ipv4(&v6, 4).is_none());
        assert!(parse_ipv4(&[], 0).is_none());
    }

    #[test]
    fn virtual_time_is_real_over_tdf() {
        assert_eq!(virtual_ns(10_000_000, 10.0), 1_000_000);
        assert_eq!(virtual_ns(10_000_000, 1.0), 10_000_000);
        assert_eq!(virtual_ns(5, 0.0), 5);
    }
}
