//! `traceroute -n` output: one line per hop, each with up to `-q` probes.
//!
//! # Design
//! A hop line is `TTL` then, per probe, either `ADDR RTT ms` (the address printed once
//! while it stays the same), `RTT ms` or `*`, with annotations such as `!H` or `!N` after a
//! probe. The trace "reached" its destination when the last hop's address is the target's.

use serde::{Deserialize, Serialize};

use super::ParseError;

/// One TTL's answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hop {
    pub ttl: u32,
    /// The addresses that answered at this TTL (usually one).
    pub addrs: Vec<String>,
    /// Each probe's RTT; `None` for a probe without an answer (`*`).
    pub rtts_ms: Vec<Option<f64>>,
}

/// A parsed trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// The destination's address, from the header line.
    pub target: String,
    pub hops: Vec<Hop>,
    /// Whether the last hop answered from the destination's address.
    pub reached: bool,
}

/// Parses `traceroute -n` output.
pub fn parse_traceroute(text: &str) -> Result<Trace, ParseError> {
    let err = |reason: String| ParseError { tool: "traceroute", reason };
    let mut lines = text.lines();
    let header = lines.next().ok_or_else(|| err("empty output".into()))?;
    // "traceroute to 10.77.2.2 (10.77.2.2), 30 hops max, 60 byte packets"
    let target = header
        .strip_prefix("traceroute to ")
        .and_then(|r| r.split_once('('))
        .and_then(|(_, r)| r.split_once(')'))
        .map(|(addr, _)| addr.to_owned())
        .ok_or_else(|| err(format!("no target in header {header:?}")))?;
    let mut hops = Vec::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let mut words = line.split_whitespace().peekable();
        let ttl: u32 = words
            .next()
            .and_then(|w| w.parse().ok())
            .ok_or_else(|| err(format!("hop line without a TTL: {line:?}")))?;
        let mut hop = Hop { ttl, addrs: Vec::new(), rtts_ms: Vec::new() };
        while let Some(word) = words.next() {
            if word == "*" {
                hop.rtts_ms.push(None);
            } else if word.starts_with('!') {
                // An annotation of the previous probe (!H, !N, !X, !<n>).
            } else if word == "ms" {
                // The unit of the previous number.
            } else if let Ok(rtt) = word.parse::<f64>() {
                if words.peek() == Some(&"ms") {
                    hop.rtts_ms.push(Some(rtt));
                } else {
                    return Err(err(format!("number {word:?} without a unit in {line:?}")));
                }
            } else if word.parse::<std::net::IpAddr>().is_ok() {
                if !hop.addrs.iter().any(|a| a == word) {
                    hop.addrs.push(word.to_owned());
                }
            } else {
                return Err(err(format!("unexpected {word:?} in {line:?} (run traceroute with -n)")));
            }
        }
        hops.push(hop);
    }
    let reached = hops.last().is_some_and(|h| h.addrs.contains(&target));
    Ok(Trace { target, hops, reached })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/probe/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn loopback_is_one_hop() {
        let t = parse_traceroute(&fixture("traceroute_loopback.txt")).unwrap();
        assert_eq!(t.target, "127.0.0.1");
        assert!(t.reached);
        assert_eq!(t.hops.len(), 1);
        assert_eq!(t.hops[0].rtts_ms, [Some(0.062), Some(0.013), Some(0.010)]);
    }

    #[test]
    fn a_router_is_a_hop() {
        let t = parse_traceroute(&fixture("traceroute_routed.txt")).unwrap();
        assert!(t.reached);
        let addrs: Vec<&str> = t.hops.iter().map(|h| h.addrs[0].as_str()).collect();
        assert_eq!(addrs, ["10.77.1.1", "10.77.2.2"]);
        assert_eq!(t.hops[1].rtts_ms.len(), 3);
    }

    #[test]
    fn silent_hops_are_stars() {
        let t = parse_traceroute(&fixture("traceroute_unreachable.txt")).unwrap();
        assert!(!t.reached);
        assert_eq!(t.hops.len(), 4);
        assert_eq!(t.hops[0].addrs, ["10.77.1.1"]);
        for hop in &t.hops[1..] {
            assert!(hop.addrs.is_empty());
            assert_eq!(hop.rtts_ms, [None, None]);
        }
    }

    #[test]
    fn annotations_and_changing_addresses() {
        let text = "traceroute to 10.0.0.9 (10.0.0.9), 30 hops max, 60 byte packets\n 1  10.0.0.1  0.1 ms !H  10.0.0.2  0.2 ms *\n";
        let t = parse_traceroute(text).unwrap();
        assert_eq!(t.hops[0].addrs, ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(t.hops[0].rtts_ms, [Some(0.1), Some(0.2), None]);
    }

    #[test]
    fn names_need_dash_n() {
        let text = "traceroute to h (10.0.0.9), 30 hops max, 60 byte packets\n 1  gw (10.0.0.1)  0.1 ms\n";
        assert!(parse_traceroute(text).is_err());
    }
}
