//! Reading a results directory into one in-memory analysis ([`RunData`]): run.json,
//! events.jsonl, nodes.csv, links.csv, every load generator's outputs, and the workloads'
//! own records (replication, balancers, probes).
//!
//! # Design
//! Only run.json is required. Every other file may be missing (a run without load
//! generators, a crashed run); the parts that need it are then empty, never invented.
//! Series are kept whole here (one row per node per sample: small); plots downsample.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::requests::RequestStats;
use super::{csvio, ReportError};

/// The fidelity verdict of a run, copied from run.json (`unknown` when it has none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fidelity {
    pub verdict: String,
    #[serde(default)]
    pub flags: Vec<Value>,
}

/// What run.json says about the run.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub name: String,
    pub tdf: f64,
    pub success: bool,
    pub virtual_duration_s: f64,
    /// Virtual unix ns of the run's epoch (t_virtual_s = 0).
    pub epoch_virt_ns: u64,
    pub fidelity: Fidelity,
    pub topology_file: Option<String>,
    pub end_reason: Option<String>,
    /// Whether the topology let nodes that no mechanism dilates run undilated.
    pub allow_undilated: bool,
    /// Each node's dilation mechanism (`shim`, `trap`, `undilated`), from run.json.
    pub mechanisms: Vec<(String, String)>,
    /// How much more CPU the same work costs on this host at the run's TDF than at TDF 1
    /// (run.json `host.cache_decay.ratio`; docs/fidelity.md, "Cache decay").
    pub host_cache_decay: Option<f64>,
    /// The run's warning about it (`host.cache_decay.warning`), when it was worth one.
    pub host_cache_warning: Option<String>,
}

/// A fault, with when it was undone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultSummary {
    pub id: String,
    pub name: Option<String>,
    pub fault: String,
    pub targets: Vec<String>,
    pub t_virtual_s: f64,
    pub undone_at_s: Option<f64>,
}

/// A vertical marker on time plots: a fault or its recovery.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub t: f64,
    pub label: String,
    pub recover: bool,
}

/// One node's samples from nodes.csv.
#[derive(Debug, Clone, Default)]
pub struct NodeSeries {
    /// (t_virtual_s, share of the perceived machine in use).
    pub cpu: Vec<(f64, f64)>,
    /// (t_virtual_s, bytes).
    pub memory: Vec<(f64, f64)>,
    pub throttled_ms: f64,
}

/// One link direction's samples from links.csv.
#[derive(Debug, Clone, Default)]
pub struct LinkSeries {
    /// (t_virtual_s, utilization of the perceived rate).
    pub utilization: Vec<(f64, f64)>,
    /// Counters at the last sample (they are cumulative).
    pub bytes: u64,
    pub drops: u64,
}

/// A load generator's directory: its own counts and, when present, its summary.json.
#[derive(Debug, Clone)]
pub struct Loadgen {
    pub node: String,
    pub stats: RequestStats,
    pub has_requests: bool,
    /// The load generator's own summary.json (results schema 1), as written.
    pub own_summary: Option<Value>,
    /// Rows of throughput.csv: (second since load start, started, completed, errors).
    pub throughput: Vec<(u64, u64, u64, u64)>,
}

/// Everything the report and the comparison need of one results directory.
#[derive(Debug, Clone)]
pub struct RunData {
    pub dir: PathBuf,
    pub info: RunInfo,
    pub faults: Vec<FaultSummary>,
    pub markers: Vec<Marker>,
    pub nodes: BTreeMap<String, NodeSeries>,
    pub links: BTreeMap<String, LinkSeries>,
    pub loadgens: Vec<Loadgen>,
    /// All load generators merged; `None` when no node wrote requests.csv.
    pub requests: Option<RequestStats>,
    /// A replicator's and its function platforms' records; `None` when no node wrote any.
    pub replication: Option<super::replication::ReplicationData>,
    /// The L4 balancers' telemetry (empty without balancers).
    pub balancers: Vec<crate::balancers::BalancerSeries>,
    /// Probe servers' exports and their agents' summaries; `None` when no node wrote any.
    pub probes: Option<crate::probes::ProbeData>,
}

/// Reads a results directory.
pub fn analyze(dir: &Path) -> Result<RunData, ReportError> {
    let run_json = dir.join("run.json");
    if !run_json.is_file() {
        return Err(ReportError::NotARun { dir: dir.to_owned() });
    }
    let info = read_run_json(&run_json)?;
    let (faults, markers) = read_events(&dir.join("events.jsonl"))?;
    let nodes = read_nodes(&dir.join("nodes.csv"))?;
    let links = read_links(&dir.join("links.csv"))?;
    let loadgens = read_loadgens(&dir.join("nodes"), info.epoch_virt_ns)?;
    let mut requests: Option<RequestStats> = None;
    for lg in loadgens.iter().filter(|l| l.has_requests) {
        requests.get_or_insert_with(RequestStats::default).merge(&lg.stats);
    }
    let replication = super::replication::read(&dir.join("nodes"))?;
    let balancers = crate::balancers::read(dir, &dir.join("nodes"), info.epoch_virt_ns)?;
    let probes = crate::probes::read(&dir.join("nodes"))?;
    Ok(RunData {
        dir: dir.to_owned(),
        info,
        faults,
        markers,
        nodes,
        links,
        loadgens,
        requests,
        replication,
        balancers,
        probes,
    })
}

fn read_text(path: &Path) -> Result<String, ReportError> {
    std::fs::read_to_string(path).map_err(|source| ReportError::Read { path: path.to_owned(), source })
}

fn read_run_json(path: &Path) -> Result<RunInfo, ReportError> {
    let text = read_text(path)?;
    let v: Value = serde_json::from_str(&text).map_err(|e| ReportError::Json {
        path: path.to_owned(),
        line: e.line() as u64,
        message: e.to_string(),
    })?;
    let bad = |field: &str, what: &str| ReportError::JsonField {
        path: path.to_owned(),
        field: field.to_owned(),
        message: format!("expected {what}"),
    };
    let name = match v.get("name") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(bad("name", "a string")),
    };
    let num = |field: &str| v.get(field).and_then(Value::as_f64);
    let fidelity = match v.get("fidelity") {
        None | Some(Value::Null) => Fidelity { verdict: "unknown".into(), flags: Vec::new() },
        Some(f) => {
            serde_json::from_value(f.clone()).map_err(|e| bad("fidelity", &format!("{{verdict, flags}} ({e})")))?
        }
    };
    Ok(RunInfo {
        name,
        tdf: num("tdf").unwrap_or(1.0),
        success: v.get("success").and_then(Value::as_bool).unwrap_or(false),
        virtual_duration_s: num("virtual_duration_s").unwrap_or(0.0),
        epoch_virt_ns: v.pointer("/epoch/virt_ns").and_then(Value::as_u64).unwrap_or(0),
        fidelity,
        topology_file: v.get("topology_file").and_then(Value::as_str).map(str::to_owned),
        end_reason: v.get("end_reason").and_then(Value::as_str).map(str::to_owned),
        allow_undilated: v.get("allow_undilated").and_then(Value::as_bool).unwrap_or(false),
        mechanisms: v
            .get("nodes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|n| {
                let name = n.get("name")?.as_str()?;
                let mechanism = n.pointer("/dilation/mechanism")?.as_str()?;
                Some((name.to_owned(), mechanism.to_owned()))
            })
            .collect(),
        host_cache_decay: v.pointer("/host/cache_decay/ratio").and_then(Value::as_f64),
        host_cache_warning: v.pointer("/host/cache_decay/warning").and_then(Value::as_str).map(str::to_owned),
    })
}

/// Faults (with their undo time) and plot markers from events.jsonl.
fn read_events(path: &Path) -> Result<(Vec<FaultSummary>, Vec<Marker>), ReportError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(source) => return Err(ReportError::Read { path: path.to_owned(), source }),
    };
    let lines: Vec<String> = BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()
        .map_err(|source| ReportError::Read { path: path.to_owned(), source })?;
    let mut faults: Vec<FaultSummary> = Vec::new();
    let mut markers = Vec::new();
    let last = lines.len();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            // A run killed mid-write leaves a partial last line: skip it, keep the rest.
            Err(_) if i + 1 == last => {
                tracing::warn!(path = %path.display(), line = i + 1, "skipping a partial last line");
                continue;
            }
            Err(e) => {
                return Err(ReportError::Json { path: path.to_owned(), line: i as u64 + 1, message: e.to_string() })
            }
        };
        let kind = v.get("kind").and_then(Value::as_str).unwrap_or("");
        if kind != "fault" && kind != "recover" {
            continue;
        }
        let field = |f: &str| ReportError::Json {
            path: path.to_owned(),
            line: i as u64 + 1,
            message: format!("field `{f}`: missing or of the wrong type in a `{kind}` event"),
        };
        let t = v.get("t_virtual_s").and_then(Value::as_f64).ok_or_else(|| field("t_virtual_s"))?;
        let id = v.get("id").and_then(Value::as_str).ok_or_else(|| field("id"))?.to_owned();
        let fault = v.get("fault").and_then(Value::as_str).unwrap_or("?").to_owned();
        let name = v.get("name").and_then(Value::as_str).map(str::to_owned);
        let targets: Vec<String> = v
            .get("targets")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        let label = name.clone().unwrap_or_else(|| format!("{fault} {}", targets.join(",")));
        if kind == "fault" {
            markers.push(Marker { t, label, recover: false });
            faults.push(FaultSummary { id, name, fault, targets, t_virtual_s: t, undone_at_s: None });
        } else {
            markers.push(Marker { t, label: format!("{label} undone"), recover: true });
            // The latest still-active fault with this id is the one undone.
            if let Some(f) = faults.iter_mut().rev().find(|f| f.id == id && f.undone_at_s.is_none()) {
                f.undone_at_s = Some(t);
            }
        }
    }
    Ok((faults, markers))
}

#[derive(Deserialize)]
struct NodeRow {
    t_virtual_s: f64,
    node: String,
    cpu_perceived: Option<f64>,
    throttled_ms: Option<f64>,
    memory_bytes: Option<u64>,
}

fn read_nodes(path: &Path) -> Result<BTreeMap<String, NodeSeries>, ReportError> {
    let mut nodes: BTreeMap<String, NodeSeries> = BTreeMap::new();
    csvio::for_each(path, &["t_virtual_s", "node", "cpu_perceived", "throttled_ms", "memory_bytes"], |r: NodeRow| {
        let n = nodes.entry(r.node).or_default();
        if let Some(c) = r.cpu_perceived {
            n.cpu.push((r.t_virtual_s, c));
        }
        if let Some(m) = r.memory_bytes {
            n.memory.push((r.t_virtual_s, m as f64));
        }
        n.throttled_ms += r.throttled_ms.unwrap_or(0.0);
    })?;
    Ok(nodes)
}

#[derive(Deserialize)]
struct LinkRow {
    t_virtual_s: f64,
    link: String,
    dir: String,
    bytes: Option<u64>,
    drops: Option<u64>,
    utilization: Option<f64>,
}

fn read_links(path: &Path) -> Result<BTreeMap<String, LinkSeries>, ReportError> {
    let mut links: BTreeMap<String, LinkSeries> = BTreeMap::new();
    csvio::for_each(path, &["t_virtual_s", "link", "dir", "bytes", "drops", "utilization"], |r: LinkRow| {
        let l = links.entry(format!("{}/{}", r.link, r.dir)).or_default();
        if let Some(u) = r.utilization {
            l.utilization.push((r.t_virtual_s, u));
        }
        l.bytes = l.bytes.max(r.bytes.unwrap_or(0));
        l.drops = l.drops.max(r.drops.unwrap_or(0));
    })?;
    // The first sample of a direction has no interval behind it (utilization 0 by
    // construction), so it is not a measurement.
    for l in links.values_mut() {
        if l.utilization.len() > 1 {
            l.utilization.remove(0);
        }
    }
    Ok(links)
}

#[derive(Deserialize)]
struct ThroughputRow {
    second: u64,
    started: u64,
    completed: u64,
    errors: u64,
}

/// Every `nodes/<node>/` holding requests.csv or a load generator's summary.json.
fn read_loadgens(nodes_dir: &Path, epoch_ns: u64) -> Result<Vec<Loadgen>, ReportError> {
    let entries = match std::fs::read_dir(nodes_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ReportError::Read { path: nodes_dir.to_owned(), source }),
    };
    let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    let mut out = Vec::new();
    for dir in dirs {
        let node = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let summary_path = dir.join("summary.json");
        let own_summary = if summary_path.is_file() {
            let text = read_text(&summary_path)?;
            let v: Value = serde_json::from_str(&text).map_err(|e| ReportError::Json {
                path: summary_path.clone(),
                line: e.line() as u64,
                message: e.to_string(),
            })?;
            // Other workloads may write a summary.json of their own; only a load
            // generator's has request counts.
            v.get("latency_us").is_some().then_some(v)
        } else {
            None
        };
        // A distributed run's workers keep their own records, and the controller writes the
        // union of them: count each request once, at the controller.
        if own_summary.as_ref().and_then(|v| v.get("role")).and_then(Value::as_str) == Some("worker") {
            continue;
        }
        let mut stats = RequestStats::default();
        let has_requests = stats.add_file(&dir.join("requests.csv"), epoch_ns)?;
        if !has_requests && own_summary.is_none() {
            continue;
        }
        let mut throughput = Vec::new();
        csvio::for_each(
            &dir.join("throughput.csv"),
            &["second", "started", "completed", "errors"],
            |r: ThroughputRow| {
                throughput.push((r.second, r.started, r.completed, r.errors));
            },
        )?;
        out.push(Loadgen { node, stats, has_requests, own_summary, throughput });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("run.json"),
            r#"{"schema":1,"name":"t","tdf":4.0,"epoch":{"real_ns":1,"virt_ns":1000000000000},"success":true,"virtual_duration_s":12.5}"#,
        )
        .unwrap();
        dir
    }

    #[test]
    fn only_run_json_is_required() {
        let dir = run_dir();
        let run = analyze(dir.path()).unwrap();
        assert_eq!(run.info.name, "t");
        assert_eq!(run.info.fidelity.verdict, "unknown");
        assert!(run.requests.is_none() && run.nodes.is_empty() && run.links.is_empty() && run.faults.is_empty());
        assert_eq!(run.info.epoch_virt_ns, 1_000_000_000_000);
    }

    #[test]
    fn a_bad_run_json_names_the_field() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("run.json"), r#"{"name": 5}"#).unwrap();
        let err = analyze(dir.path()).unwrap_err().to_string();
        assert!(err.ends_with("run.json: field `name`: expected a string"), "{err}");
        std::fs::write(dir.path().join("run.json"), "{\n\"name\": \"x\",\n oops}").unwrap();
        let err = analyze(dir.path()).unwrap_err().to_string();
        assert!(err.contains("run.json:3: "), "{err}");
    }

    #[test]
    fn distributed_workers_are_counted_once_at_the_controller() {
        let dir = run_dir();
        let header =
            "id,scheduled_ns,dispatch_ns,complete_ns,latency_ns,uncorrected_ns,status,bytes,error,class,node,timing\n";
        let row = "1,1000000000000,1000000000000,1000001000000,1000000,1000000,200,10,,,w,\n";
        for (node, role) in [("ctl", "controller"), ("w0", "worker")] {
            let d = dir.path().join("nodes").join(node);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("requests.csv"), format!("{header}{row}")).unwrap();
            std::fs::write(d.join("summary.json"), format!(r#"{{"schema":1,"role":"{role}","latency_us":{{}}}}"#))
                .unwrap();
        }
        let run = analyze(dir.path()).unwrap();
        assert_eq!(run.requests.map(|r| r.total), Some(1));
    }

    #[test]
    fn not_a_run() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(analyze(dir.path()), Err(ReportError::NotARun { .. })));
    }

    #[test]
    fn faults_are_paired_with_their_recovery() {
        let dir = run_dir();
        std::fs::write(
            dir.path().join("events.jsonl"),
            concat!(
                r#"{"t_virtual_s":0.5,"t_real":"x","kind":"node_start","node":"a"}"#, "\n",
                r#"{"t_virtual_s":2.0,"t_real":"x","kind":"fault","fault":"kill","id":"faults[0]","name":"db-down","targets":["db0"]}"#, "\n",
                r#"{"t_virtual_s":3.0,"t_real":"x","kind":"fault","fault":"partition","id":"faults[1]","name":null,"targets":["a","b"]}"#, "\n",
                r#"{"t_virtual_s":5.0,"t_real":"x","kind":"recover","fault":"kill","id":"faults[0]","name":"db-down","targets":["db0"]}"#, "\n",
                r#"{"t_virtual_s":6.0,"t_real""#,
            ),
        )
        .unwrap();
        let run = analyze(dir.path()).unwrap();
        assert_eq!(run.faults.len(), 2);
        assert_eq!(run.faults[0].undone_at_s, Some(5.0));
        assert_eq!(run.faults[1].undone_at_s, None);
        assert_eq!(run.markers.len(), 3);
        assert_eq!(run.markers[1].label, "partition a,b");
        assert!(run.markers[2].recover);
    }

    #[test]
    fn a_malformed_event_line_is_named() {
        let dir = run_dir();
        std::fs::write(dir.path().join("events.jsonl"), "{oops\n{\"t_virtual_s\":1,\"kind\":\"run_end\"}\n").unwrap();
        let err = analyze(dir.path()).unwrap_err().to_string();
        assert!(err.contains("events.jsonl:1:"), "{err}");
    }

    #[test]
    fn nodes_and_links() {
        let dir = run_dir();
        std::fs::write(
            dir.path().join("nodes.csv"),
            "t_virtual_s,node,cpu_perceived,cpu_cores_real,throttled_ms,memory_bytes,pids\n1.0,a,0.5,0.1,2.0,100,1\n2.0,a,0.7,0.1,3.0,300,1\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("links.csv"),
            "t_virtual_s,link,dir,bytes,packets,drops,queue_bytes,utilization,lateness_p99_us\n0.0,l0,forward,0,0,0,0,0.0,\n1.0,l0,forward,10,1,1,0,0.25,3.0\n2.0,l0,forward,30,2,2,0,0.5,\n",
        )
        .unwrap();
        let run = analyze(dir.path()).unwrap();
        assert_eq!(run.nodes["a"].cpu, vec![(1.0, 0.5), (2.0, 0.7)]);
        assert!((run.nodes["a"].throttled_ms - 5.0).abs() < 1e-9);
        let l = &run.links["l0/forward"];
        assert_eq!(l.utilization, vec![(1.0, 0.25), (2.0, 0.5)]);
        assert_eq!((l.bytes, l.drops), (30, 2));
    }
}
