//! `ping` (iputils) output: per-reply RTTs and the statistics block.
//!
//! # Design
//! Loss and counts come from the `N packets transmitted, M received` line; min/avg/max/mdev
//! from the `rtt` line, which iputils omits when nothing came back (then they are `None`).
//! Per-reply `time=` values are kept too, so a median over replies needs no re-run.

use serde::{Deserialize, Serialize};

use super::ParseError;

/// What one `ping` run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PingStats {
    pub transmitted: u32,
    pub received: u32,
    pub loss_pct: f64,
    pub rtt_min_ms: Option<f64>,
    pub rtt_avg_ms: Option<f64>,
    pub rtt_max_ms: Option<f64>,
    pub rtt_mdev_ms: Option<f64>,
    /// Each reply's RTT in order of arrival.
    pub rtts_ms: Vec<f64>,
}

/// Parses iputils `ping` output.
pub fn parse_ping(text: &str) -> Result<PingStats, ParseError> {
    let err = |reason: String| ParseError { tool: "ping", reason };
    let mut rtts = Vec::new();
    let mut counts = None;
    let mut rtt = None;
    for line in text.lines() {
        let line = line.trim();
        if line.contains(" bytes from ") {
            if let Some(t) = line.split_whitespace().find_map(|w| w.strip_prefix("time=")) {
                rtts.push(t.parse::<f64>().map_err(|e| err(format!("reply time {t:?}: {e}")))?);
            }
        } else if line.contains("packets transmitted") {
            // "5 packets transmitted, 5 received, [+N errors, ]0% packet loss, time 816ms"
            let parts: Vec<&str> = line.split(',').map(str::trim).collect();
            let number = |part: Option<&&str>, what: &str| -> Result<u32, ParseError> {
                part.and_then(|p| p.split_whitespace().next())
                    .ok_or_else(|| err(format!("no {what} count in {line:?}")))?
                    .parse()
                    .map_err(|e| err(format!("{what} count in {line:?}: {e}")))
            };
            let tx = number(parts.first(), "transmitted")?;
            let rx = number(parts.get(1), "received")?;
            let loss = parts
                .iter()
                .find(|p| p.ends_with("packet loss"))
                .and_then(|p| p.split('%').next())
                .ok_or_else(|| err(format!("no loss in {line:?}")))?
                .parse::<f64>()
                .map_err(|e| err(format!("loss in {line:?}: {e}")))?;
            counts = Some((tx, rx, loss));
        } else if let Some(rest) = line
            .strip_prefix("rtt min/avg/max/mdev = ")
            .or_else(|| line.strip_prefix("round-trip min/avg/max/stddev = "))
        {
            let values = rest.split_whitespace().next().unwrap_or("");
            let v: Vec<f64> = values
                .split('/')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .map_err(|e| err(format!("rtt line {line:?}: {e}")))?;
            if v.len() != 4 {
                return Err(err(format!("rtt line {line:?} has {} values, not 4", v.len())));
            }
            rtt = Some((v[0], v[1], v[2], v[3]));
        }
    }
    let (transmitted, received, loss_pct) = counts.ok_or_else(|| err("no statistics line".into()))?;
    Ok(PingStats {
        transmitted,
        received,
        loss_pct,
        rtt_min_ms: rtt.map(|r| r.0),
        rtt_avg_ms: rtt.map(|r| r.1),
        rtt_max_ms: rtt.map(|r| r.2),
        rtt_mdev_ms: rtt.map(|r| r.3),
        rtts_ms: rtts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/probe/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn loopback() {
        let s = parse_ping(&fixture("ping_loopback.txt")).unwrap();
        assert_eq!((s.transmitted, s.received, s.loss_pct), (5, 5, 0.0));
        assert_eq!(
            (s.rtt_min_ms, s.rtt_avg_ms, s.rtt_max_ms, s.rtt_mdev_ms),
            (Some(0.035), Some(0.047), Some(0.082), Some(0.017))
        );
        assert_eq!(s.rtts_ms, [0.082, 0.035, 0.045, 0.039, 0.036]);
    }

    #[test]
    fn through_a_router() {
        let s = parse_ping(&fixture("ping_routed.txt")).unwrap();
        assert_eq!((s.transmitted, s.received), (5, 5));
        assert_eq!(s.rtt_avg_ms, Some(0.068));
        assert_eq!(s.rtts_ms.len(), 5);
    }

    #[test]
    fn all_lost() {
        let s = parse_ping(&fixture("ping_unreachable.txt")).unwrap();
        assert_eq!((s.transmitted, s.received, s.loss_pct), (4, 0, 100.0));
        assert_eq!(s.rtt_avg_ms, None);
        assert!(s.rtts_ms.is_empty());
    }

    #[test]
    fn not_ping_output() {
        let e = parse_ping("ping: unknown host nowhere\n").unwrap_err();
        assert_eq!(e.to_string(), "parse ping output: no statistics line");
    }
}
