//! A reader of classic pcap files (what `tcpdump -w` writes), enough to replay a capture
//! into the L4 balancer's estimator: each record's timestamp (real ns) and its IPv4
//! packet. Micro- and nanosecond pcap, Ethernet, raw IP and Linux cooked (SLL, SLL2)
//! link types. A truncated last record (a capture killed mid-write) is ignored.

use std::path::Path;

/// One captured packet: when (real unix ns) and the bytes from the IPv4 header on.
pub struct Captured {
    pub real_ns: i64,
    pub ip: Vec<u8>,
}

fn u32_at(b: &[u8], at: usize, big: bool) -> Option<u32> {
    let w: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(if big { u32::from_be_bytes(w) } else { u32::from_le_bytes(w) })
}

/// Reads every packet of `path`; `Err` for an unreadable file or unknown format.
pub fn read(path: &Path) -> Result<Vec<Captured>, String> {
    let b = std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let magic = u32_at(&b, 0, false).ok_or("no pcap header")?;
    let (big, nano) = match magic {
        0xa1b2_c3d4 => (false, false),
        0xa1b2_3c4d => (false, true),
        0xd4c3_b2a1 => (true, false),
        0x4d3c_b2a1 => (true, true),
        m => return Err(format!("{}: not a pcap file (magic {m:#x})", path.display())),
    };
    let linktype = u32_at(&b, 20, big).ok_or("short pcap header")?;
    let l2 = match linktype {
        1 => 14,
        12 | 101 => 0,
        113 => 16,
        276 => 20,
        other => return Err(format!("{}: link type {other} not supported", path.display())),
    };
    let mut out = Vec::new();
    let mut at = 24;
    while let (Some(sec), Some(frac), Some(incl)) =
        (u32_at(&b, at, big), u32_at(&b, at + 4, big), u32_at(&b, at + 8, big))
    {
        let start = at + 16;
        let end = start + incl as usize;
        let Some(data) = b.get(start..end) else { break };
        let real_ns = i64::from(sec) * 1_000_000_000 + i64::from(frac) * if nano { 1 } else { 1_000 };
        if let Some(ip) = data.get(l2..) {
            out.push(Captured { real_ns, ip: ip.to_vec() });
        }
        at = end;
    }
    Ok(out)
}
