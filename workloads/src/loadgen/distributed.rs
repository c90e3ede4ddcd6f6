//! Distributed mode: one controller and N workers, each a node of the topology
//! (Distributed FaaSRunner's design).
//!
//! # Design
//! The controller owns the trace (a file, or one generated from the rate flags with nodeIDs
//! round-robin over the workers). It splits the trace by `nodeID`, ships each worker its
//! part over TCP before the start, and triggers a synchronized start at a scheduled virtual
//! wall-clock instant (`now + --start-delay`): every node of a run reads one shared (virtual)
//! clock, so one timestamp means the same instant everywhere. Each worker dispatches its
//! events `timeAdjustmentMs` early (per node: `--time-adjustment-ms`, or measured by
//! `--calibrate N`: the median of N one-way arrival latencies to the target, from the
//! `Diorama-Received` header of `diorama-loadgen serve`, else half the round trip). Workers
//! run the open-loop dispatcher, keep their own result files, and send their records back;
//! the controller writes the union as its own result files plus `calibration.json`.
//!
//! The wire protocol is one JSON object a line:
//! controller → worker `{"type":"calibrate","target","probes"}`, `{"type":"plan",…}`,
//! `{"type":"start","start_ns"}`, `{"type":"stop"}`;
//! worker → controller `{"type":"calibration",…}`, `{"type":"ready",…}`,
//! `{"type":"results","node","records":[…],"rate_changes"}`, `{"type":"error","message"}`.
//!
//! Mapping of nodeIDs to workers: a nodeID equal to a worker's host name goes there; an
//! integer i goes to worker i mod N; any other string to a stable hash mod N.
//!
//! # Limitations
//! Scheduled times of a worker's records are its adjusted dispatch times (trace time −
//! offset), so its latencies are measured from when it meant to send.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::http::{Http, Target};
use super::record::Record;
use super::trace::Event;
use super::{Protocol, Request};
use crate::runtime::now_unix_ns;

/// Settings a worker receives with its part of the trace.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanConfig {
    pub target: String,
    pub method: Option<String>,
    pub speed: f64,
    pub time_adjustment_ms: f64,
    pub timeout_ms: f64,
}

/// Messages between controller and workers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    Calibrate { target: String, probes: u32 },
    Calibration { node: String, median_ms: f64, method: String, samples: u32 },
    Plan { config: PlanConfig, events: Vec<Event> },
    Ready { node: String, events: u64 },
    Start { start_ns: i64 },
    Stop,
    Results { node: String, records: Vec<Record>, rate_changes: u64 },
    Error { message: String },
}

/// Errors of the controller–worker exchange.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("talk to {peer}")]
    Io {
        peer: String,
        #[source]
        source: std::io::Error,
    },
    #[error("talk to {peer}: connection closed")]
    Closed { peer: String },
    #[error("talk to {peer}: bad message: {reason}")]
    Bad { peer: String, reason: String },
    #[error("worker {peer} failed: {message}")]
    Worker { peer: String, message: String },
}

/// One end of a controller–worker connection.
pub struct Link {
    pub peer: String,
    lines: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
}

impl Link {
    pub fn new(stream: tokio::net::TcpStream, peer: String) -> Link {
        let _ = stream.set_nodelay(true);
        let (r, w) = stream.into_split();
        Link { peer, lines: BufReader::new(r).lines(), write: w }
    }

    pub async fn send(&mut self, m: &Message) -> Result<(), WireError> {
        let mut text =
            serde_json::to_string(m).map_err(|e| WireError::Bad { peer: self.peer.clone(), reason: e.to_string() })?;
        text.push('\n');
        self.write.write_all(text.as_bytes()).await.map_err(|source| WireError::Io { peer: self.peer.clone(), source })
    }

    pub async fn recv(&mut self) -> Result<Message, WireError> {
        let line = self.lines.next_line().await.map_err(|source| WireError::Io { peer: self.peer.clone(), source })?;
        let line = line.ok_or_else(|| WireError::Closed { peer: self.peer.clone() })?;
        let m: Message = serde_json::from_str(&line)
            .map_err(|e| WireError::Bad { peer: self.peer.clone(), reason: e.to_string() })?;
        match m {
            Message::Error { message } => Err(WireError::Worker { peer: self.peer.clone(), message }),
            other => Ok(other),
        }
    }
}

/// The host part of a worker address (`w0:7070` → `w0`).
pub fn worker_name(addr: &str) -> String {
    addr.rsplit_once(':').map_or(addr, |(h, _)| h).to_owned()
}

/// Which worker (index) sends an event of `node_id`.
pub fn assign(node_id: &str, workers: &[String]) -> usize {
    let n = workers.len().max(1);
    if let Some(i) = workers.iter().position(|w| w == node_id) {
        return i;
    }
    if let Ok(i) = node_id.parse::<u64>() {
        return (i % n as u64) as usize;
    }
    // FNV-1a: stable across runs and platforms.
    let h = node_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    (h % n as u64) as usize
}

/// Splits `events` into one list per worker.
pub fn split(events: &[Event], workers: &[String]) -> Vec<Vec<Event>> {
    let mut parts = vec![Vec::new(); workers.len().max(1)];
    for e in events {
        parts[assign(&e.node_id, workers)].push(e.clone());
    }
    parts
}

/// Measures the median arrival latency (ms) from here to `target`: `probes` sequential GETs
/// on one connection after a warm-up. One-way from the server's `Diorama-Received` header
/// when it has one; else half the round trip.
pub async fn calibrate(target: &Target, probes: u32) -> Result<(f64, &'static str, u32), String> {
    let http = Http;
    let mut conn = http
        .connect(&target.authority)
        .await
        .map_err(|e| format!("calibrate: connect to {}: {}", target.authority, e.as_str()))?;
    let req = Request {
        method: "GET".into(),
        authority: target.authority.clone(),
        path: target.path.clone(),
        body: bytes::Bytes::new(),
    };
    let _ = http.send(&mut conn, &req).await;
    let (mut one_way, mut half_rtt) = (Vec::new(), Vec::new());
    for _ in 0..probes.max(1) {
        let t0 = now_unix_ns();
        let reply = http
            .send(&mut conn, &req)
            .await
            .map_err(|e| format!("calibrate: probe {}: {}", target.authority, e.as_str()))?;
        let t1 = now_unix_ns();
        if let Some(rx) = reply.received_ns {
            one_way.push((rx - t0) as f64 / 1e6);
        }
        half_rtt.push((t1 - t0) as f64 / 2e6);
    }
    let (values, method) = if one_way.len() == half_rtt.len() { (one_way, "one_way") } else { (half_rtt, "rtt_half") };
    let median = crate::stats::quantile(&values, 0.5).unwrap_or(0.0).max(0.0);
    Ok((median, method, values.len() as u32))
}

/// `calibration.json` of the controller.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CalibrationFile {
    pub schema: u32,
    pub probes: u32,
    /// Per worker: the offset used (ms), how it was measured, samples.
    pub workers: BTreeMap<String, CalibrationEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CalibrationEntry {
    pub time_adjustment_ms: f64,
    pub method: String,
    pub samples: u32,
}

/// Parses `--time-adjustment-ms` values: `NODE=MS` (repeatable) or a JSON object `{"w0": 1.5}`.
pub fn parse_adjustments(values: &[String]) -> Result<BTreeMap<String, f64>, String> {
    let mut out = BTreeMap::new();
    for v in values {
        let v = v.trim();
        if v.starts_with('{') {
            let map: BTreeMap<String, f64> =
                serde_json::from_str(v).map_err(|e| format!("parse --time-adjustment-ms {v:?}: {e}"))?;
            out.extend(map);
        } else {
            let (node, ms) =
                v.split_once('=').ok_or_else(|| format!("parse --time-adjustment-ms {v:?}: want NODE=MS"))?;
            let ms: f64 = ms
                .trim()
                .parse()
                .ok()
                .filter(|x: &f64| x.is_finite())
                .ok_or_else(|| format!("parse --time-adjustment-ms {v:?}: MS is not a number"))?;
            out.insert(node.trim().to_owned(), ms);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: u64, node: &str) -> Event {
        Event {
            event_id: id,
            time: id as f64,
            node_id: node.into(),
            endpoint: "/".into(),
            payload: String::new(),
            method: None,
        }
    }

    #[test]
    fn events_split_by_node() {
        let workers: Vec<String> = ["w0", "w1", "w2"].map(String::from).to_vec();
        assert_eq!(assign("w1", &workers), 1);
        assert_eq!(assign("4", &workers), 1);
        assert_eq!(assign("client-a", &workers), assign("client-a", &workers));
        let parts = split(&[ev(0, "0"), ev(1, "1"), ev(2, "2"), ev(3, "0"), ev(4, "w2")], &workers);
        assert_eq!(parts.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1, 2]);
        assert_eq!(worker_name("w0:7070"), "w0");
    }

    #[test]
    fn adjustments_parse_both_forms() {
        let m = parse_adjustments(&["w0=1.5".into(), r#"{"w1": 2}"#.into()]).unwrap();
        assert_eq!((m["w0"], m["w1"]), (1.5, 2.0));
        assert!(parse_adjustments(&["w0".into()]).is_err());
        assert!(parse_adjustments(&["w0=x".into()]).is_err());
    }

    #[test]
    fn messages_round_trip() {
        let m = Message::Start { start_ns: 5 };
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(text, r#"{"type":"start","start_ns":5}"#);
        assert!(matches!(serde_json::from_str(&text).unwrap(), Message::Start { start_ns: 5 }));
    }

    #[tokio::test]
    async fn calibration_measures_one_way() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let server =
            tokio::spawn(crate::loadgen::http::serve(addr, bytes::Bytes::from_static(b"ok"), std::future::pending()));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let t = Target { authority: addr.to_string(), path: "/".into() };
        let (ms, method, n) = calibrate(&t, 5).await.unwrap();
        assert_eq!((method, n), ("one_way", 5));
        assert!((0.0..50.0).contains(&ms), "{ms}");
        server.abort();
    }
}
