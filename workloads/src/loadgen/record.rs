//! Per-request records and the result files of `docs/results.md` ("Workload outputs").
//!
//! # Design
//! A request's record is created when its task starts ([`Pending`]) and pushed to the shared
//! [`Recorder`] when it ends. If the task is dropped first (the load generator stopped with
//! the request still in flight), the guard's `Drop` records it as `cancelled`: no started
//! request ever vanishes from `requests.csv`.
//!
//! Counting: `completed` are requests with a reply below 500 and no transport error; every
//! other request is an error (`error` names its kind). Latency histograms and latency
//! statistics cover completed requests; the dispatch delay covers every request that was
//! sent. `behind` counts requests sent more than the threshold (default 1 ms) after their
//! scheduled start; they keep their scheduled start, so their latency includes the delay.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::{ErrorKind, Reply};
use crate::runtime::now_unix_ns;
use crate::stats::Summary;

/// The header of `requests.csv` (results schema 1; `local_port` was appended later, and
/// readers find columns by name).
pub const REQUESTS_HEADER: &str =
    "id,scheduled_ns,dispatch_ns,complete_ns,latency_ns,uncorrected_ns,status,bytes,error,class,node,timing,local_port";

/// One request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: u64,
    pub scheduled_ns: i64,
    /// When it was handed to its connection; 0 when it never was.
    pub dispatch_ns: i64,
    pub complete_ns: i64,
    /// HTTP status; 0 without a reply.
    pub status: u16,
    pub bytes: u64,
    pub error: Option<ErrorKind>,
    pub class: String,
    pub node: String,
    pub timing: String,
    /// The local port of the connection that carried it, where the protocol keeps it
    /// (memcache): with an L4 balancer's `connections.csv` it names the backend that
    /// served the request.
    #[serde(default)]
    pub local_port: Option<u16>,
}

impl Record {
    pub fn latency_ns(&self) -> i64 {
        self.complete_ns - self.scheduled_ns
    }

    pub fn uncorrected_ns(&self) -> i64 {
        if self.dispatch_ns == 0 {
            0
        } else {
            self.complete_ns - self.dispatch_ns
        }
    }

    pub fn completed(&self) -> bool {
        self.error.is_none() && self.status != 0
    }
}

/// Collects finished records from every task.
#[derive(Debug, Default)]
pub struct Recorder {
    records: Mutex<Vec<Record>>,
}

impl Recorder {
    pub fn push(&self, r: Record) {
        if let Ok(mut v) = self.records.lock() {
            v.push(r);
        }
    }

    /// Everything recorded so far (the recorder is left empty).
    pub fn take(&self) -> Vec<Record> {
        self.records.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.records.lock().map(|v| v.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A request in flight; records itself as `cancelled` if dropped unfinished.
pub struct Pending {
    rec: Option<Record>,
    sink: Arc<Recorder>,
}

impl Pending {
    pub fn new(sink: Arc<Recorder>, id: u64, scheduled_ns: i64, class: String, node: String) -> Pending {
        let rec = Record {
            id,
            scheduled_ns,
            dispatch_ns: 0,
            complete_ns: 0,
            status: 0,
            bytes: 0,
            error: None,
            class,
            node,
            timing: String::new(),
            local_port: None,
        };
        Pending { rec: Some(rec), sink }
    }

    /// Marks the request as handed to its connection now.
    pub fn dispatched(&mut self, at_ns: i64) {
        if let Some(r) = self.rec.as_mut() {
            r.dispatch_ns = at_ns;
        }
    }

    /// Notes the local port of the connection carrying the request.
    pub fn connection(&mut self, local_port: Option<u16>) {
        if let Some(r) = self.rec.as_mut() {
            r.local_port = local_port;
        }
    }

    /// Records the outcome, completed now.
    pub fn finish(mut self, result: Result<Reply, ErrorKind>) {
        if let Some(mut r) = self.rec.take() {
            r.complete_ns = now_unix_ns();
            match result {
                Ok(reply) => {
                    r.status = reply.status;
                    r.bytes = reply.bytes;
                    r.timing = reply.timing.unwrap_or_default();
                    if reply.status >= 500 {
                        r.error = Some(ErrorKind::Http5xx);
                    }
                }
                Err(kind) => r.error = Some(kind),
            }
            self.sink.push(r);
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(mut r) = self.rec.take() {
            r.complete_ns = now_unix_ns();
            r.error = Some(ErrorKind::Cancelled);
            self.sink.push(r);
        }
    }
}

/// Facts about the run that go into `summary.json` beside the figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunInfo {
    pub mode: String,
    pub role: String,
    pub node: String,
    /// The target rate (requests/s virtual) at the start, when there is one.
    pub target_rps: Option<f64>,
    pub pattern: Option<String>,
    pub seed: Option<u64>,
    /// Rate changes applied from `loadgen.ctl`.
    pub rate_changes: u64,
    /// Threshold of `behind`, ns.
    pub behind_threshold_ns: u64,
    /// The load's start (virtual unix ns): second 0 of `throughput.csv`.
    pub start_ns: i64,
}

/// `summary.json` of a load generator (results schema 1).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadSummary {
    pub schema: u32,
    pub mode: String,
    pub role: String,
    pub node: String,
    pub requests: u64,
    pub completed: u64,
    pub errors: u64,
    pub errors_by_kind: std::collections::BTreeMap<String, u64>,
    pub behind: u64,
    pub behind_threshold_us: f64,
    pub rate_changes: u64,
    pub duration_s: f64,
    pub throughput_rps: f64,
    pub target_rps: Option<f64>,
    /// (sent − 1) / (last dispatch − first dispatch): the rate actually issued.
    pub dispatch_rps: Option<f64>,
    /// (requests − 1) / (last scheduled − first scheduled): the plan's own rate.
    pub scheduled_rps: Option<f64>,
    pub pattern: Option<String>,
    pub seed: Option<u64>,
    pub start_ns: i64,
    pub latency_us: Option<Summary>,
    pub uncorrected_us: Option<Summary>,
    pub dispatch_delay_us: Option<Summary>,
    /// Latency of completed requests per class (the request path, or the memcache
    /// operation `get`/`set`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub latency_by_class_us: std::collections::BTreeMap<String, Summary>,
}

/// Errors of writing the result files.
#[derive(Debug, thiserror::Error)]
#[error("write {}", path.display())]
pub struct OutputError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

fn span_rate(mut ts: Vec<i64>) -> Option<f64> {
    ts.sort_unstable();
    let (first, last) = (*ts.first()?, *ts.last()?);
    (ts.len() > 1 && last > first).then(|| (ts.len() - 1) as f64 / ((last - first) as f64 / 1e9))
}

/// Computes the summary of `records` (any order).
pub fn summarize(records: &[Record], info: &RunInfo) -> LoadSummary {
    let completed: Vec<&Record> = records.iter().filter(|r| r.completed()).collect();
    let us = |ns: i64| ns as f64 / 1e3;
    let latency: Vec<f64> = completed.iter().map(|r| us(r.latency_ns())).collect();
    let uncorrected: Vec<f64> = completed.iter().map(|r| us(r.uncorrected_ns())).collect();
    let sent: Vec<&Record> = records.iter().filter(|r| r.dispatch_ns != 0).collect();
    let delay: Vec<f64> = sent.iter().map(|r| us(r.dispatch_ns - r.scheduled_ns)).collect();
    let behind =
        sent.iter().filter(|r| r.dispatch_ns - r.scheduled_ns > info.behind_threshold_ns as i64).count() as u64;
    let mut errors_by_kind = std::collections::BTreeMap::new();
    for r in records {
        if let Some(e) = r.error {
            *errors_by_kind.entry(e.as_str().to_owned()).or_insert(0) += 1;
        }
    }
    let end = records.iter().map(|r| r.complete_ns.max(r.scheduled_ns)).max().unwrap_or(info.start_ns);
    let duration_s = ((end - info.start_ns) as f64 / 1e9).max(0.0);
    LoadSummary {
        schema: 1,
        mode: info.mode.clone(),
        role: info.role.clone(),
        node: info.node.clone(),
        requests: records.len() as u64,
        completed: completed.len() as u64,
        errors: (records.len() - completed.len()) as u64,
        errors_by_kind,
        behind,
        behind_threshold_us: info.behind_threshold_ns as f64 / 1e3,
        rate_changes: info.rate_changes,
        duration_s,
        throughput_rps: if duration_s > 0.0 { completed.len() as f64 / duration_s } else { 0.0 },
        target_rps: info.target_rps,
        dispatch_rps: span_rate(sent.iter().map(|r| r.dispatch_ns).collect()),
        scheduled_rps: span_rate(records.iter().map(|r| r.scheduled_ns).collect()),
        pattern: info.pattern.clone(),
        seed: info.seed,
        start_ns: info.start_ns,
        latency_us: Summary::of(&latency),
        uncorrected_us: Summary::of(&uncorrected),
        dispatch_delay_us: Summary::of(&delay),
        latency_by_class_us: by_class(&completed),
    }
}

fn by_class(completed: &[&Record]) -> std::collections::BTreeMap<String, Summary> {
    let mut groups: std::collections::BTreeMap<String, Vec<f64>> = std::collections::BTreeMap::new();
    for r in completed {
        groups.entry(r.class.clone()).or_default().push(r.latency_ns() as f64 / 1e3);
    }
    groups.into_iter().filter_map(|(c, v)| Summary::of(&v).map(|s| (c, s))).collect()
}

/// The header of `latency_series.csv`.
pub const SERIES_HEADER: &str = "t_virtual_ms,class,completed,p50_us,p95_us,p99_us";

/// Rows of `latency_series.csv`: per window of `interval_ns` (virtual, from `start_ns`, by
/// scheduled start) and per class plus `all`, the completed count and latency p50/p95/p99.
pub fn series_rows(records: &[Record], start_ns: i64, interval_ns: u64) -> Vec<(f64, String, u64, f64, f64, f64)> {
    let interval = interval_ns.max(1) as i64;
    let mut windows: std::collections::BTreeMap<(i64, String), Vec<f64>> = std::collections::BTreeMap::new();
    for r in records.iter().filter(|r| r.completed() && r.scheduled_ns >= start_ns) {
        let w = (r.scheduled_ns - start_ns) / interval;
        let us = r.latency_ns() as f64 / 1e3;
        windows.entry((w, r.class.clone())).or_default().push(us);
        windows.entry((w, "all".to_owned())).or_default().push(us);
    }
    windows
        .into_iter()
        .filter_map(|((w, class), v)| {
            let q = |p| crate::stats::quantile(&v, p);
            Some(((w * interval) as f64 / 1e6, class, v.len() as u64, q(0.5)?, q(0.95)?, q(0.99)?))
        })
        .collect()
}

/// Writes `latency_series.csv` into `dir`.
pub fn write_series(dir: &Path, records: &[Record], start_ns: i64, interval_ns: u64) -> Result<(), OutputError> {
    use std::fmt::Write as _;
    let mut out = String::from(SERIES_HEADER);
    out.push('\n');
    for (t, class, n, p50, p95, p99) in series_rows(records, start_ns, interval_ns) {
        let _ = writeln!(out, "{t:.3},{},{n},{p50:.1},{p95:.1},{p99:.1}", csv_field(&class));
    }
    write_file(dir.join("latency_series.csv"), out.as_bytes())
}

/// An HDR histogram of µs values, V2-serialized and base64-encoded.
pub fn hdr_base64(values_us: impl Iterator<Item = u64>) -> String {
    use base64::Engine;
    use hdrhistogram::serialization::Serializer;
    let mut buf = Vec::new();
    if let Ok(mut h) = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3) {
        for v in values_us {
            h.saturating_record(v.max(1));
        }
        let _ = hdrhistogram::serialization::V2Serializer::new().serialize(&h, &mut buf);
    }
    base64::engine::general_purpose::STANDARD.encode(buf)
}

/// Rows of `throughput.csv`: per virtual second since `start_ns`: started, completed, errors.
pub fn throughput_rows(records: &[Record], start_ns: i64) -> Vec<(u64, u64, u64, u64)> {
    let sec = |t: i64| ((t - start_ns).max(0) / 1_000_000_000) as usize;
    let last = records.iter().map(|r| sec(r.complete_ns.max(r.dispatch_ns))).max();
    let Some(last) = last else { return Vec::new() };
    let mut rows: Vec<(u64, u64, u64, u64)> = (0..=last).map(|s| (s as u64, 0, 0, 0)).collect();
    for r in records {
        if r.dispatch_ns != 0 {
            rows[sec(r.dispatch_ns)].1 += 1;
        }
        if r.completed() {
            rows[sec(r.complete_ns)].2 += 1;
        } else {
            rows[sec(r.complete_ns)].3 += 1;
        }
    }
    rows
}

fn write_file(path: PathBuf, content: &[u8]) -> Result<(), OutputError> {
    std::fs::File::create(&path).and_then(|mut f| f.write_all(content)).map_err(|source| OutputError { path, source })
}

/// Writes `requests.csv`, `latency.hdr`, `latency_uncorrected.hdr`, `throughput.csv` and
/// `summary.json` into `dir`; returns the summary.
pub fn write_results(dir: &Path, records: &mut [Record], info: &RunInfo) -> Result<LoadSummary, OutputError> {
    std::fs::create_dir_all(dir).map_err(|source| OutputError { path: dir.to_owned(), source })?;
    records.sort_by_key(|r| (r.scheduled_ns, r.id));
    let mut csv = String::with_capacity(records.len() * 96 + 128);
    csv.push_str(REQUESTS_HEADER);
    csv.push('\n');
    for r in records.iter() {
        use std::fmt::Write as _;
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{},{},{},{},{}",
            r.id,
            r.scheduled_ns,
            r.dispatch_ns,
            r.complete_ns,
            r.latency_ns(),
            r.uncorrected_ns(),
            r.status,
            r.bytes,
            r.error.map_or("", ErrorKind::as_str),
            csv_field(&r.class),
            csv_field(&r.node),
            csv_field(&r.timing),
            r.local_port.map(|p| p.to_string()).unwrap_or_default()
        );
    }
    write_file(dir.join("requests.csv"), csv.as_bytes())?;
    let done = || records.iter().filter(|r| r.completed());
    let to_us = |ns: i64| u64::try_from(ns / 1000).unwrap_or(0);
    write_file(dir.join("latency.hdr"), (hdr_base64(done().map(|r| to_us(r.latency_ns()))) + "\n").as_bytes())?;
    write_file(
        dir.join("latency_uncorrected.hdr"),
        (hdr_base64(done().map(|r| to_us(r.uncorrected_ns()))) + "\n").as_bytes(),
    )?;
    let mut tp = String::from("second,started,completed,errors\n");
    for (s, a, c, e) in throughput_rows(records, info.start_ns) {
        tp.push_str(&format!("{s},{a},{c},{e}\n"));
    }
    write_file(dir.join("throughput.csv"), tp.as_bytes())?;
    let summary = summarize(records, info);
    let json = serde_json::to_string_pretty(&summary).unwrap_or_default() + "\n";
    write_file(dir.join("summary.json"), json.as_bytes())?;
    Ok(summary)
}

/// Quotes a CSV field when it needs it.
fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: u64, sched: i64, disp: i64, done: i64, status: u16, error: Option<ErrorKind>) -> Record {
        Record {
            id,
            scheduled_ns: sched,
            dispatch_ns: disp,
            complete_ns: done,
            status,
            bytes: 2,
            error,
            class: "/".into(),
            node: "n".into(),
            timing: String::new(),
            local_port: None,
        }
    }

    #[test]
    fn summary_counts_and_rates() {
        let s0 = 1_000_000_000_000;
        let records = vec![
            rec(0, s0, s0 + 50_000, s0 + 1_050_000, 200, None),
            rec(1, s0 + 500_000_000, s0 + 502_000_000, s0 + 503_000_000, 200, None),
            rec(2, s0 + 1_000_000_000, s0 + 1_000_010_000, s0 + 1_100_000_000, 0, Some(ErrorKind::Timeout)),
            rec(3, s0 + 1_500_000_000, 0, s0 + 1_600_000_000, 0, Some(ErrorKind::Connect)),
        ];
        let info = RunInfo { start_ns: s0, behind_threshold_ns: 1_000_000, ..RunInfo::default() };
        let s = summarize(&records, &info);
        assert_eq!((s.requests, s.completed, s.errors, s.behind), (4, 2, 2, 1));
        assert_eq!(s.errors_by_kind["timeout"], 1);
        assert_eq!(s.latency_us.unwrap().min, 1050.0);
        assert_eq!(s.latency_us.unwrap().max, 3000.0);
        assert_eq!(s.uncorrected_us.unwrap().min, 1000.0);
        assert_eq!(s.dispatch_delay_us.unwrap().count, 3);
        assert!((s.scheduled_rps.unwrap() - 2.0).abs() < 1e-9);
        assert!((s.duration_s - 1.6).abs() < 1e-9);
        let rows = throughput_rows(&records, s0);
        assert_eq!(rows, vec![(0, 2, 2, 0), (1, 1, 0, 2)]);
    }

    #[test]
    fn pending_records_cancellation() {
        let sink = Arc::new(Recorder::default());
        let mut p = Pending::new(sink.clone(), 7, 1, "/".into(), "n".into());
        p.dispatched(2);
        drop(p);
        Pending::new(sink.clone(), 8, 1, "/".into(), "n".into()).finish(Ok(Reply { status: 503, ..Reply::default() }));
        let r = sink.take();
        assert_eq!(r[0].error, Some(ErrorKind::Cancelled));
        assert_eq!(r[1].error, Some(ErrorKind::Http5xx));
    }

    #[test]
    fn files_follow_the_contract() {
        use base64::Engine;
        use hdrhistogram::serialization::Deserializer;
        let dir = tempfile::tempdir().unwrap();
        let mut records = vec![rec(0, 10, 20, 2_000_010, 200, None)];
        records[0].timing = "fs=1;as=2".into();
        records[0].class = "/a,b".into();
        records[0].local_port = Some(40_001);
        let info = RunInfo { start_ns: 10, behind_threshold_ns: 1_000_000, ..RunInfo::default() };
        write_results(dir.path(), &mut records, &info).unwrap();
        let csv = std::fs::read_to_string(dir.path().join("requests.csv")).unwrap();
        assert_eq!(
            csv,
            format!("{REQUESTS_HEADER}\n0,10,20,2000010,2000000,1999990,200,2,,\"/a,b\",n,fs=1;as=2,40001\n")
        );
        let hdr = std::fs::read_to_string(dir.path().join("latency.hdr")).unwrap();
        let bytes = base64::engine::general_purpose::STANDARD.decode(hdr.trim()).unwrap();
        let h: hdrhistogram::Histogram<u64> = Deserializer::new().deserialize(&mut bytes.as_slice()).unwrap();
        assert_eq!(h.len(), 1);
        assert!((h.value_at_quantile(0.5) as i64 - 2000).abs() <= 2);
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json")).unwrap()).unwrap();
        assert_eq!(s["schema"], 1);
        assert_eq!(s["latency_us"]["median"], 2000.0);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("throughput.csv")).unwrap(),
            "second,started,completed,errors\n0,1,1,0\n"
        );
    }
}
