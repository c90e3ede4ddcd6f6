//! The probes section: what a measurement server (`diorama-probe server`, docs/probes.md)
//! exported when it stopped, `nodes/<node>/probe-results.json` (every task and result as its
//! API returns them, and its API statistics), and what its agents wrote,
//! `nodes/<node>/agent-summary.json` (runs, time and cost).
//!
//! # Design
//! - The figures are computed here from the results, not copied from the summary the server
//!   exports beside them: the report adds what the server does not compute (min, p99, max,
//!   the runs missed) and reads old exports the same way. Percentiles are nearest-rank, as
//!   the server's, so the medians agree with `GET /v1/summary`.
//! - Only the fields the report uses are read; a result's parsed figures are read by their
//!   `kind` (`ping`: every reply's RTT; `http`: TCP connect time, one RTT), others ignored.
//! - A run the server recorded as failed because no agent took it, or the agent that took
//!   it delivered nothing within the lease, has no `agent_kind`: it is a run **missed**,
//!   like every run of a firing the scheduler skipped under its catch-up policy.
//!
//! # Limitations
//! - The API statistics are those of the last server process (they restart with it).
//! - Nothing is read from a server that was killed (it exports on SIGTERM only).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::replication::pct;
use super::ReportError;

/// The file a probe server exports into its node's directory.
pub const EXPORT: &str = "probe-results.json";
/// The file every agent writes into its node's directory.
pub const AGENT_SUMMARY: &str = "agent-summary.json";

#[derive(Debug, Clone, Deserialize)]
struct Export {
    #[serde(default)]
    exported_at: Option<String>,
    tasks: Vec<TaskIn>,
    results: Vec<ResultIn>,
    #[serde(default)]
    stats: Option<Api>,
}

#[derive(Debug, Clone, Deserialize)]
struct TaskIn {
    id: u64,
    #[serde(rename = "type")]
    kind: String,
    state: String,
    #[serde(default)]
    measurement: Value,
    #[serde(default)]
    locations: Vec<String>,
    #[serde(default)]
    skipped_firings: u64,
    #[serde(default)]
    tally: BTreeMap<String, TallyIn>,
}

#[derive(Debug, Clone, Deserialize)]
struct TallyIn {
    next_seq: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct TimingIn {
    #[serde(default)]
    wait_ms: f64,
    #[serde(default)]
    startup_ms: f64,
    #[serde(default)]
    exec_ms: f64,
    #[serde(default)]
    teardown_ms: f64,
}

#[derive(Debug, Clone, Deserialize)]
struct ResultIn {
    task_id: u64,
    location: String,
    #[serde(default)]
    agent_kind: Option<String>,
    ok: bool,
    #[serde(default)]
    timing: TimingIn,
    #[serde(default)]
    endpoints: Vec<EndpointIn>,
    #[serde(default)]
    response_ms: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
struct EndpointIn {
    endpoint: String,
    ok: bool,
    #[serde(default)]
    figures: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
struct AgentIn {
    kind: String,
    #[serde(default)]
    runs: u64,
    #[serde(default)]
    measurements: u64,
    #[serde(default)]
    delivery_retries: u64,
    #[serde(default)]
    cost: f64,
}

/// What the probe servers exported and their agents wrote, by node.
#[derive(Debug, Clone, Default)]
pub struct ProbeData {
    servers: Vec<(String, Export)>,
    agents: Vec<AgentIn>,
}

/// A distribution's figures (nearest-rank percentiles), in the unit of its name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dist {
    pub count: usize,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Dist {
    /// The figures of `xs`; `None` when it is empty.
    pub fn of(mut xs: Vec<f64>) -> Option<Dist> {
        xs.retain(|x| x.is_finite());
        if xs.is_empty() {
            return None;
        }
        xs.sort_by(f64::total_cmp);
        Some(Dist {
            count: xs.len(),
            min: xs[0],
            p50: pct(&xs, 0.5),
            p90: pct(&xs, 0.9),
            p99: pct(&xs, 0.99),
            max: xs[xs.len() - 1],
            mean: xs.iter().sum::<f64>() / xs.len() as f64,
        })
    }
}

/// The API's statistics as the server saw them when it stopped (`GET /v1/stats`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Api {
    pub requests: u64,
    pub uptime_s: f64,
    pub request_rate_per_s: f64,
    /// API latency in virtual µs (long polls left out).
    pub latency_us: ApiLatency,
}

/// API latency in virtual µs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiLatency {
    pub count: u64,
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

/// Runs of one task, or of all.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Runs {
    /// Runs the scheduler issued (one per firing and location; the sequence numbers taken).
    pub issued: u64,
    /// Runs with a stored result that measured something.
    pub ok: u64,
    /// Runs whose agent delivered a failure (every endpoint failed).
    pub failed: u64,
    /// Runs no agent took, or whose agent delivered nothing, within the lease.
    pub lease_failures: u64,
    /// Issued runs without a stored result when the server stopped.
    pub in_flight: u64,
    /// Firings the scheduler skipped (catch-up policy), summed over tasks.
    pub skipped_firings: u64,
    /// Runs missed: the lease failures, and one run per location of every skipped firing.
    pub missed: u64,
}

impl Runs {
    fn add(&mut self, o: &Runs) {
        self.issued += o.issued;
        self.ok += o.ok;
        self.failed += o.failed;
        self.lease_failures += o.lease_failures;
        self.in_flight += o.in_flight;
        self.skipped_firings += o.skipped_firings;
        self.missed += o.missed;
    }
}

/// One task's schedule and runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeTask {
    pub id: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub state: String,
    pub measurement: String,
    pub locations: usize,
    /// Firings that issued runs.
    pub firings: u64,
    #[serde(flatten)]
    pub runs: Runs,
}

/// RTTs from one location (region or agent) to one endpoint, by one measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RttRow {
    pub location: String,
    pub endpoint: String,
    /// `ping` (every reply) or `http` (TCP connect time: one round trip).
    pub measurement: String,
    /// Measurements of this endpoint from this location, and how many failed.
    pub measured: usize,
    pub failed: usize,
    /// Over the samples (ping replies, connects); `None` when none succeeded.
    pub rtt_ms: Option<Dist>,
}

/// Where an agent kind's runs spent their time (virtual ms).
///
/// Not the server's own `KindBreakdown` (workloads' `probe::summary`): this row carries the
/// whole [`Dist`] of response times, and `report` reads results directories only, with no
/// dependency on `workloads` (nor `workloads` on it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindRow {
    pub kind: String,
    pub runs: usize,
    pub wait_ms_mean: f64,
    pub startup_ms_mean: f64,
    pub exec_ms_mean: f64,
    pub teardown_ms_mean: f64,
    /// Firing → stored, end to end.
    pub response_ms: Option<Dist>,
}

/// One probe server's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeServer {
    pub exported_at: Option<String>,
    pub api: Option<Api>,
    pub runs: Runs,
    /// Firing → taken by an agent, over the runs agents delivered: how late runs started.
    pub wait_ms: Option<Dist>,
    pub tasks: Vec<ProbeTask>,
    pub rtt: Vec<RttRow>,
    pub kinds: Vec<KindRow>,
}

/// What the agents of one kind did and cost (from their `agent-summary.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentCost {
    pub agents: usize,
    pub runs: u64,
    pub measurements: u64,
    pub delivery_retries: u64,
    pub cost: f64,
    /// 0 when no measurement was made.
    pub cost_per_1000_measurements: f64,
}

/// The probes section of summary.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeSummary {
    /// By the server's node.
    pub servers: BTreeMap<String, ProbeServer>,
    /// By agent kind (`always-on`, `on-demand`).
    pub agents: BTreeMap<String, AgentCost>,
}

fn json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, ReportError> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|source| ReportError::Read { path: path.to_owned(), source })?;
    serde_json::from_str(&text).map(Some).map_err(|e| ReportError::Json {
        path: path.to_owned(),
        line: e.line() as u64,
        message: e.to_string(),
    })
}

/// Reads every node's probe export and agent summary under `nodes_dir`; `None` when no node
/// has either.
pub fn read(nodes_dir: &Path) -> Result<Option<ProbeData>, ReportError> {
    let Ok(entries) = std::fs::read_dir(nodes_dir) else { return Ok(None) };
    let mut dirs: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    let mut data = ProbeData::default();
    for dir in dirs {
        let node = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if let Some(export) = json::<Export>(&dir.join(EXPORT))? {
            data.servers.push((node, export));
        }
        if let Some(agent) = json::<AgentIn>(&dir.join(AGENT_SUMMARY))? {
            data.agents.push(agent);
        }
    }
    Ok((!data.servers.is_empty() || !data.agents.is_empty()).then_some(data))
}

/// The RTT samples of one endpoint's measurement: `(measurement, values)`, or `None` for a
/// measurement without RTTs.
fn samples(e: &EndpointIn) -> Option<(&'static str, Vec<f64>)> {
    let f = e.figures.as_ref()?;
    match f.get("kind")?.as_str()? {
        "ping" => Some(("ping", f.get("rtts_ms")?.as_array()?.iter().filter_map(Value::as_f64).collect())),
        "http" if e.ok => {
            let ms = |k: &str| f.get(k).and_then(Value::as_f64);
            Some(("http", vec![ms("connect_ms")? - ms("namelookup_ms").unwrap_or(0.0)]))
        }
        "http" => Some(("http", Vec::new())),
        _ => None,
    }
}

fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = xs.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

impl ProbeServer {
    fn of(export: &Export) -> ProbeServer {
        let mut by_task: BTreeMap<u64, Vec<&ResultIn>> = BTreeMap::new();
        for r in &export.results {
            by_task.entry(r.task_id).or_default().push(r);
        }
        let mut total = Runs::default();
        let tasks: Vec<ProbeTask> = export
            .tasks
            .iter()
            .map(|t| {
                let results = by_task.get(&t.id).map_or(&[][..], Vec::as_slice);
                let issued_at = |l: &TallyIn| l.next_seq.saturating_sub(1);
                let issued: u64 = t.tally.values().map(issued_at).sum();
                let lease_failures = results.iter().filter(|r| !r.ok && r.agent_kind.is_none()).count() as u64;
                let runs = Runs {
                    issued,
                    ok: results.iter().filter(|r| r.ok).count() as u64,
                    failed: results.iter().filter(|r| !r.ok && r.agent_kind.is_some()).count() as u64,
                    lease_failures,
                    in_flight: issued.saturating_sub(results.len() as u64),
                    skipped_firings: t.skipped_firings,
                    missed: lease_failures + t.skipped_firings * t.locations.len() as u64,
                };
                total.add(&runs);
                ProbeTask {
                    id: t.id,
                    kind: t.kind.clone(),
                    state: t.state.clone(),
                    measurement: t.measurement.get("kind").and_then(Value::as_str).unwrap_or("?").to_owned(),
                    locations: t.locations.len(),
                    firings: t.tally.values().map(issued_at).max().unwrap_or(0),
                    runs,
                }
            })
            .collect();
        let delivered = || export.results.iter().filter(|r| r.agent_kind.is_some());
        ProbeServer {
            exported_at: export.exported_at.clone(),
            api: export.stats.clone(),
            runs: total,
            wait_ms: Dist::of(delivered().map(|r| r.timing.wait_ms).collect()),
            tasks,
            rtt: rtt_rows(&export.results),
            kinds: kind_rows(&export.results),
        }
    }
}

/// One (location, endpoint, measurement) cell while it is filled.
#[derive(Default)]
struct Cell {
    samples: Vec<f64>,
    measured: usize,
    failed: usize,
}

fn rtt_rows(results: &[ResultIn]) -> Vec<RttRow> {
    let mut cells: BTreeMap<(&str, &str, &str), Cell> = BTreeMap::new();
    for r in results {
        for e in &r.endpoints {
            let Some((measurement, values)) = samples(e) else { continue };
            let cell = cells.entry((&r.location, &e.endpoint, measurement)).or_default();
            cell.samples.extend(values);
            cell.measured += 1;
            cell.failed += usize::from(!e.ok);
        }
    }
    cells
        .into_iter()
        .map(|((location, endpoint, measurement), cell)| RttRow {
            location: location.to_owned(),
            endpoint: endpoint.to_owned(),
            measurement: measurement.to_owned(),
            measured: cell.measured,
            failed: cell.failed,
            rtt_ms: Dist::of(cell.samples),
        })
        .collect()
}

fn kind_rows(results: &[ResultIn]) -> Vec<KindRow> {
    let mut kinds: BTreeMap<&str, Vec<&ResultIn>> = BTreeMap::new();
    for r in results {
        if let Some(kind) = &r.agent_kind {
            kinds.entry(kind).or_default().push(r);
        }
    }
    kinds
        .into_iter()
        .map(|(kind, rs)| KindRow {
            kind: kind.to_owned(),
            runs: rs.len(),
            wait_ms_mean: mean(rs.iter().map(|r| r.timing.wait_ms)),
            startup_ms_mean: mean(rs.iter().map(|r| r.timing.startup_ms)),
            exec_ms_mean: mean(rs.iter().map(|r| r.timing.exec_ms)),
            teardown_ms_mean: mean(rs.iter().map(|r| r.timing.teardown_ms)),
            response_ms: Dist::of(rs.iter().filter_map(|r| r.response_ms).collect()),
        })
        .collect()
}

impl ProbeSummary {
    /// The section's figures.
    pub fn of(d: &ProbeData) -> ProbeSummary {
        let mut agents: BTreeMap<String, AgentCost> = BTreeMap::new();
        for a in &d.agents {
            let c = agents.entry(a.kind.clone()).or_default();
            c.agents += 1;
            c.runs += a.runs;
            c.measurements += a.measurements;
            c.delivery_retries += a.delivery_retries;
            c.cost += a.cost;
        }
        for c in agents.values_mut() {
            if c.measurements > 0 {
                c.cost_per_1000_measurements = c.cost / c.measurements as f64 * 1000.0;
            }
        }
        ProbeSummary { servers: d.servers.iter().map(|(node, e)| (node.clone(), ProbeServer::of(e))).collect(), agents }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::{export, lease_failure, node_file as write, ping};

    #[test]
    fn rtt_tables_runs_and_costs_are_computed_from_the_results() {
        let dir = tempfile::tempdir().unwrap();
        let tasks = serde_json::json!([
            {"id": 1, "type": "RECURRING", "state": "RUNNING", "measurement": {"kind": "ping", "count": 3},
             "endpoints": ["ep-eu", "ep-us"], "locations": ["eu", "us"], "interval_s": 60.0,
             "created_at": "2026-01-01T00:00:00Z", "skipped_firings": 2,
             "tally": {"eu": {"next_seq": 4, "ok_runs": 3, "failed_runs": 0}, "us": {"next_seq": 4, "ok_runs": 1, "failed_runs": 2}}},
            {"id": 2, "type": "ONE-OFF", "state": "FAILED", "measurement": {"kind": "dns"}, "endpoints": ["x"],
             "locations": ["us"], "created_at": "2026-01-01T00:00:00Z", "skipped_firings": 0,
             "tally": {"us": {"next_seq": 2, "ok_runs": 0, "failed_runs": 1}}}
        ]);
        let results = vec![
            ping(1, "eu", 1, "ep-eu", &[0.4, 0.5, 0.6]),
            ping(1, "eu", 2, "ep-eu", &[0.45, 0.55, 0.65]),
            ping(1, "eu", 3, "ep-eu", &[0.5, 0.5, 9.0]),
            ping(1, "us", 1, "ep-eu", &[60.4, 60.6, 60.5]),
            ping(1, "us", 2, "ep-eu", &[]),
            lease_failure(1, "us", 3),
            lease_failure(2, "us", 1),
        ];
        write(dir.path(), "server", EXPORT, &export(tasks, results));
        for (node, kind, measurements, cost) in
            [("vm0", "always-on", 30, 0.02), ("vm1", "always-on", 10, 0.02), ("fn0", "on-demand", 40, 0.004)]
        {
            let text = serde_json::json!({"schema": 1, "agent": node, "location": "eu", "kind": kind, "uptime_s": 60.0,
                "runs": 10, "measurements": measurements, "delivered": 10, "delivery_retries": 1,
                "startup_ms_total": 0.0, "exec_ms_total": 0.0, "teardown_ms_total": 0.0, "cost": cost,
                "cost_per_1000_measurements": 0.0});
            write(dir.path(), node, AGENT_SUMMARY, &text.to_string());
        }
        write(dir.path(), "ep-eu", "stdout", "");
        let s = ProbeSummary::of(&read(dir.path()).unwrap().unwrap());

        let server = &s.servers["server"];
        let rows: Vec<(&str, &str, usize, usize)> =
            server.rtt.iter().map(|r| (r.location.as_str(), r.endpoint.as_str(), r.measured, r.failed)).collect();
        assert_eq!(rows, [("eu", "ep-eu", 3, 0), ("us", "ep-eu", 2, 1)]);
        let eu = server.rtt[0].rtt_ms.as_ref().unwrap();
        assert_eq!(
            (eu.count, eu.min, eu.p50, eu.p90, eu.max),
            (9, 0.4, 0.5, 9.0, 9.0),
            "nearest rank: p90 of 9 is the 9th"
        );
        let us = server.rtt[1].rtt_ms.as_ref().unwrap();
        assert_eq!((us.count, us.p50), (3, 60.5));
        assert_eq!(server.rtt[0].measurement, "ping");

        // Task 1: 3 firings at 2 locations; us lost one run to its lease, and the two firings
        // skipped cost a run at each location. Task 2 was never taken.
        let t1 = &server.tasks[0];
        assert_eq!((t1.firings, t1.locations, t1.measurement.as_str()), (3, 2, "ping"));
        assert_eq!(
            t1.runs,
            Runs {
                issued: 6,
                ok: 4,
                failed: 1,
                lease_failures: 1,
                in_flight: 0,
                skipped_firings: 2,
                missed: 1 + 2 * 2
            }
        );
        assert_eq!((server.tasks[1].state.as_str(), server.tasks[1].runs.missed), ("FAILED", 1));
        assert_eq!((server.runs.issued, server.runs.missed, server.runs.lease_failures), (7, 6, 2));
        let api = server.api.as_ref().unwrap();
        assert_eq!((api.requests, api.latency_us.p99), (3000, 2400));
        assert_eq!(server.wait_ms.as_ref().unwrap().max, 6.0, "delivered runs only");

        let k = &server.kinds[0];
        assert_eq!((k.kind.as_str(), k.runs, k.exec_ms_mean), ("always-on", 5, 400.0));
        assert_eq!(k.response_ms.as_ref().unwrap().p50, 502.0);

        let vm = &s.agents["always-on"];
        assert_eq!((vm.agents, vm.runs, vm.measurements, vm.delivery_retries), (2, 20, 40, 2));
        assert!((vm.cost_per_1000_measurements - 1.0).abs() < 1e-12, "{vm:?}");
        assert!((s.agents["on-demand"].cost_per_1000_measurements - 0.1).abs() < 1e-12);
    }

    #[test]
    fn http_connect_is_one_round_trip_and_other_measurements_have_no_rtt() {
        let result = |endpoint: &str, figures: Value, ok: bool| {
            serde_json::json!({"task_id": 1, "location": "eu", "agent_kind": "on-demand", "ok": ok,
                "endpoints": [{"endpoint": endpoint, "ok": ok, "figures": figures}]})
        };
        let http = serde_json::json!({"kind": "http", "status": 200, "namelookup_ms": 0.5, "connect_ms": 61.0});
        let refused =
            serde_json::json!({"kind": "http", "status": 0, "exit_code": 7, "namelookup_ms": 0.5, "connect_ms": 0.0});
        let trace = serde_json::json!({"kind": "traceroute", "hops": [], "reached": true});
        let tasks = serde_json::json!([]);
        let text =
            export(tasks, vec![result("web", http, true), result("web", refused, false), result("ep", trace, true)]);
        let export: Export = serde_json::from_str(&text).unwrap();
        let rows = rtt_rows(&export.results);
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!((rows[0].measurement.as_str(), rows[0].measured, rows[0].failed), ("http", 2, 1));
        assert_eq!(rows[0].rtt_ms.as_ref().unwrap().p50, 60.5);
    }

    #[test]
    fn nothing_to_read_no_section_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "client", "summary.json", "{}");
        assert!(read(dir.path()).unwrap().is_none());
        write(dir.path(), "server", EXPORT, "{\"tasks\": [],\n \"results\": 7}");
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("server/probe-results.json:2"), "{err}");
    }
}
