//! What a switch of the emulated network does to an IPv4 packet's TTL, as a real router
//! would (RFC 791, RFC 1812 §5.3.1): decrement it, and when it runs out drop the packet
//! and answer the sender with ICMP time exceeded, so `traceroute` sees every switch hop.
//!
//! # Invariants
//! - [`forward`] leaves the packet's header checksum valid (incremental update, RFC 1624).
//! - A time-exceeded reply is a complete IPv4 packet with valid IP and ICMP checksums,
//!   from the switch's address to the expired packet's source, quoting the expired
//!   packet's IP header and the first 8 bytes of its payload (RFC 792).
//! - No ICMP error is sent about an ICMP error or about a non-first fragment (RFC 1812
//!   §4.3.2.7), so two emulated switches can never answer each other forever.
//!
//! # Design
//! Pure functions on packet bytes (the IP header first; any TUN virtio header stripped by
//! the caller), so the whole behaviour is tested without a network. The core calls
//! [`forward`] once per switch a packet crosses and, for [`Verdict::Expired`], routes the
//! reply back like any other packet from the switch.
//!
//! # Limitations
//! IPv4 only (the emulated network is IPv4). TSO super-segments carry one header for many
//! wire segments; they expire together, which is what the segments would do.

use std::net::Ipv4Addr;

/// What happens to a packet at a switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Forward it: its TTL was decremented and its checksum updated in place.
    Forward,
    /// Its TTL ran out: drop it, and send `reply` (ICMP time exceeded) if there is one.
    Expired { reply: Option<Vec<u8>> },
    /// Not an IPv4 packet with a sound header: leave it to the caller's malformed count.
    Malformed,
}

/// TTL of the replies a switch originates (Linux's default).
pub const REPLY_TTL: u8 = 64;

const ICMP: u8 = 1;
const TIME_EXCEEDED: u8 = 11;

/// The Internet checksum (RFC 1071) of `bytes`.
pub fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = bytes.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // The fold above leaves at most 16 bits.
    !(u16::try_from(sum).unwrap_or(u16::MAX))
}

fn header_len(packet: &[u8]) -> Option<usize> {
    let first = *packet.first()?;
    let ihl = usize::from(first & 0x0f) * 4;
    (first >> 4 == 4 && ihl >= 20 && packet.len() >= ihl).then_some(ihl)
}

/// Passes `packet` through a switch whose address is `switch`.
pub fn forward(packet: &mut [u8], switch: Ipv4Addr) -> Verdict {
    let Some(ihl) = header_len(packet) else {
        return Verdict::Malformed;
    };
    let ttl = packet[8];
    if ttl <= 1 {
        return Verdict::Expired { reply: time_exceeded(packet, ihl, switch) };
    }
    // RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), on the 16-bit word holding TTL and protocol.
    let old = u16::from_be_bytes([ttl, packet[9]]);
    let new = u16::from_be_bytes([ttl - 1, packet[9]]);
    let hc = u16::from_be_bytes([packet[10], packet[11]]);
    let mut sum = u32::from(!hc) + u32::from(!old) + u32::from(new);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let hc = !(u16::try_from(sum).unwrap_or(u16::MAX));
    packet[8] = ttl - 1;
    packet[10..12].copy_from_slice(&hc.to_be_bytes());
    Verdict::Forward
}

/// The ICMP time-exceeded reply to `packet`, or `None` where RFC 1812 forbids one.
fn time_exceeded(packet: &[u8], ihl: usize, switch: Ipv4Addr) -> Option<Vec<u8>> {
    let fragment_offset = u16::from_be_bytes([packet[6], packet[7]]) & 0x1fff;
    if fragment_offset != 0 {
        return None;
    }
    if packet[9] == ICMP {
        // Only queries (echo request 8, echo reply 0, timestamp 13/14, …) get an answer.
        let icmp_type = *packet.get(ihl)?;
        if matches!(icmp_type, 3 | 4 | 5 | 11 | 12) {
            return None;
        }
    }
    let quoted = &packet[..(ihl + 8).min(packet.len())];
    let total = 20 + 8 + quoted.len();
    let mut reply = vec![0u8; total];
    reply[0] = 0x45;
    reply[1] = 0xc0; // internetwork control, as routers mark their ICMP
    reply[2..4].copy_from_slice(&u16::try_from(total).unwrap_or(u16::MAX).to_be_bytes());
    reply[8] = REPLY_TTL;
    reply[9] = ICMP;
    reply[12..16].copy_from_slice(&switch.octets());
    reply[16..20].copy_from_slice(&packet[12..16]);
    let ip_sum = checksum(&reply[..20]);
    reply[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    reply[20] = TIME_EXCEEDED;
    reply[21] = 0; // TTL exceeded in transit
    reply[28..].copy_from_slice(quoted);
    let icmp_sum = checksum(&reply[20..]);
    reply[22..24].copy_from_slice(&icmp_sum.to_be_bytes());
    Some(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A UDP probe as traceroute sends it: 10.0.0.1:40000 → 10.0.0.9:33434, 32 bytes of data.
    fn probe(ttl: u8) -> Vec<u8> {
        let mut p = vec![0u8; 20 + 8 + 32];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&60u16.to_be_bytes());
        p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        p[8] = ttl;
        p[9] = 17;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[10, 0, 0, 9]);
        p[20..22].copy_from_slice(&40000u16.to_be_bytes());
        p[22..24].copy_from_slice(&33434u16.to_be_bytes());
        p[24..26].copy_from_slice(&40u16.to_be_bytes());
        let sum = checksum(&p[..20]);
        p[10..12].copy_from_slice(&sum.to_be_bytes());
        p
    }

    fn icmp(ttl: u8, icmp_type: u8) -> Vec<u8> {
        let mut p = probe(ttl);
        p[9] = ICMP;
        p[20] = icmp_type;
        p[10..12].copy_from_slice(&[0, 0]);
        let sum = checksum(&p[..20]);
        p[10..12].copy_from_slice(&sum.to_be_bytes());
        p
    }

    const SWITCH: Ipv4Addr = Ipv4Addr::new(10, 0, 255, 1);

    #[test]
    fn checksum_of_a_known_header() {
        // The example header of RFC 1071's folklore (Wikipedia's IPv4 header checksum).
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8,
            0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
        let mut h = h;
        h[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(checksum(&h), 0);
    }

    #[test]
    fn forwarding_decrements_the_ttl_and_keeps_the_checksum_valid() {
        for ttl in [2u8, 3, 64, 128, 255] {
            let mut p = probe(ttl);
            assert_eq!(forward(&mut p, SWITCH), Verdict::Forward);
            assert_eq!(p[8], ttl - 1);
            assert_eq!(checksum(&p[..20]), 0, "ttl {ttl}");
            // Everything else is untouched.
            let mut want = probe(ttl - 1);
            want[10..12].copy_from_slice(&p[10..12]);
            assert_eq!(p, want);
        }
    }

    #[test]
    fn each_switch_costs_one_ttl() {
        // Three switches: a probe with TTL 3 expires at the third, TTL 4 gets through.
        let mut p = probe(3);
        assert_eq!(forward(&mut p, SWITCH), Verdict::Forward);
        assert_eq!(forward(&mut p, SWITCH), Verdict::Forward);
        assert!(matches!(forward(&mut p, SWITCH), Verdict::Expired { reply: Some(_) }));
        let mut p = probe(4);
        for _ in 0..3 {
            assert_eq!(forward(&mut p, SWITCH), Verdict::Forward);
        }
        assert_eq!(p[8], 1);
    }

    #[test]
    fn an_expired_probe_gets_time_exceeded_from_the_switch() {
        let original = probe(1);
        let mut p = original.clone();
        let Verdict::Expired { reply: Some(r) } = forward(&mut p, SWITCH) else { panic!("expected a reply") };
        assert_eq!(r.len(), 20 + 8 + 28);
        assert_eq!(checksum(&r[..20]), 0, "IP checksum");
        assert_eq!(checksum(&r[20..]), 0, "ICMP checksum");
        assert_eq!((r[0], r[8], r[9]), (0x45, REPLY_TTL, ICMP));
        assert_eq!(u16::from_be_bytes([r[2], r[3]]) as usize, r.len());
        assert_eq!(&r[12..16], &SWITCH.octets());
        assert_eq!(&r[16..20], &[10, 0, 0, 1]);
        assert_eq!((r[20], r[21]), (11, 0));
        // The quote: the expired packet's header and its first 8 payload bytes (the UDP
        // ports, which is how traceroute matches the answer to its probe).
        assert_eq!(&r[28..], &original[..28]);
    }

    #[test]
    fn an_expired_ping_is_answered_but_not_an_expired_icmp_error() {
        assert!(matches!(forward(&mut icmp(1, 8), SWITCH), Verdict::Expired { reply: Some(_) }));
        for error in [3u8, 11] {
            assert_eq!(forward(&mut icmp(1, error), SWITCH), Verdict::Expired { reply: None });
        }
    }

    #[test]
    fn non_first_fragments_expire_silently() {
        let mut p = probe(1);
        p[6..8].copy_from_slice(&0x0010u16.to_be_bytes());
        assert_eq!(forward(&mut p, SWITCH), Verdict::Expired { reply: None });
    }

    #[test]
    fn ttl_zero_expires_too() {
        assert!(matches!(forward(&mut probe(0), SWITCH), Verdict::Expired { reply: Some(_) }));
    }

    #[test]
    fn malformed_packets_are_left_alone() {
        assert_eq!(forward(&mut [], SWITCH), Verdict::Malformed);
        assert_eq!(forward(&mut [0x45, 0, 0], SWITCH), Verdict::Malformed);
        let mut v6 = probe(5);
        v6[0] = 0x60;
        assert_eq!(forward(&mut v6, SWITCH), Verdict::Malformed);
        let mut short_ihl = probe(5);
        short_ihl[0] = 0x44;
        assert_eq!(forward(&mut short_ihl, SWITCH), Verdict::Malformed);
    }
}
