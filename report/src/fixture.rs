//! Synthetic results directories for unit tests (of the report and the comparison).

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

/// What to put into a synthetic run.
pub struct Fixture<'a> {
    pub name: &'a str,
    pub tdf: f64,
    /// Latency of each request, ns; requests are scheduled every `interval_ns`.
    pub latencies_ns: &'a [u64],
    pub interval_ns: u64,
    /// Mean CPU share of the nodes `a` and `b`, and link utilization of `l0`.
    pub cpu: f64,
    pub util: f64,
    /// Node directory of the load generator.
    pub loadgen: &'a str,
    pub fault_name: &'a str,
}

impl Default for Fixture<'_> {
    fn default() -> Self {
        Self {
            name: "fixture",
            tdf: 1.0,
            latencies_ns: &[],
            interval_ns: 10_000_000,
            cpu: 0.5,
            util: 0.25,
            loadgen: "client",
            fault_name: "db-down",
        }
    }
}

/// The virtual epoch of fixtures (ns).
pub const EPOCH: u64 = 1_700_000_000_000_000_000;

/// Writes a complete results directory into `dir`.
pub fn write(dir: &Path, f: &Fixture<'_>) {
    let run = serde_json::json!({
        "schema": 1, "name": f.name, "tdf": f.tdf, "epoch": {"real_ns": 1, "virt_ns": EPOCH},
        "success": true, "virtual_duration_s": 10.0, "end_reason": "the duration passed",
        "fidelity": {"verdict": "ok", "flags": []},
    });
    std::fs::write(dir.join("run.json"), run.to_string()).unwrap();
    std::fs::write(
        dir.join("events.jsonl"),
        format!(
            "{}\n{}\n{}\n",
            serde_json::json!({"t_virtual_s": 0.1, "t_real": "x", "kind": "node_start", "node": "a"}),
            serde_json::json!({"t_virtual_s": 3.0, "t_real": "x", "kind": "fault", "fault": "kill", "id": "faults[0]", "name": f.fault_name, "targets": ["b"]}),
            serde_json::json!({"t_virtual_s": 6.0, "t_real": "x", "kind": "recover", "fault": "kill", "id": "faults[0]", "name": f.fault_name, "targets": ["b"]}),
        ),
    )
    .unwrap();
    let mut nodes = String::from("t_virtual_s,node,cpu_perceived,cpu_cores_real,throttled_ms,memory_bytes,pids\n");
    let mut links = String::from("t_virtual_s,link,dir,bytes,packets,drops,queue_bytes,utilization,lateness_p99_us\n");
    for t in 1..=10 {
        let wobble = if t % 2 == 0 { 1.1 } else { 0.9 };
        for node in ["a", "b"] {
            let _ = writeln!(nodes, "{t}.001,{node},{:.4},0.1,1.0,{},3", f.cpu * wobble, 1_048_576 * t);
        }
        for dir in ["forward", "reverse"] {
            let _ = writeln!(links, "{t}.002,l0,{dir},{},{t},0,0,{:.4},", 1000 * t, f.util * wobble);
        }
    }
    std::fs::write(dir.join("nodes.csv"), nodes).unwrap();
    std::fs::write(dir.join("links.csv"), links).unwrap();
    if f.latencies_ns.is_empty() {
        return;
    }
    let lg = dir.join("nodes").join(f.loadgen);
    std::fs::create_dir_all(&lg).unwrap();
    let mut rows = String::from(
        "id,scheduled_ns,dispatch_ns,complete_ns,latency_ns,uncorrected_ns,status,bytes,error,class,node,timing\n",
    );
    for (i, &lat) in f.latencies_ns.iter().enumerate() {
        let s = EPOCH + 1_000_000_000 + i as u64 * f.interval_ns;
        let _ =
            writeln!(rows, "{i},{s},{s},{},{lat},{lat},200,100,,get,srv,fs={};db={}", s + lat, lat / 2000, lat / 4000);
    }
    std::fs::write(lg.join("requests.csv"), rows).unwrap();
    std::fs::write(lg.join("throughput.csv"), "second,started,completed,errors\n0,100,100,0\n").unwrap();
    std::fs::write(
        lg.join("summary.json"),
        serde_json::json!({"schema": 1, "requests": f.latencies_ns.len(), "completed": f.latencies_ns.len(), "errors": 0,
            "behind": 0, "duration_s": 1.0, "throughput_rps": 100.0, "latency_us": {"p99": 1000.0}})
        .to_string(),
    )
    .unwrap();
}

/// Writes `text` into `dir/node/file`, making the node's directory.
pub fn node_file(dir: &Path, node: &str, file: &str, text: &str) {
    std::fs::create_dir_all(dir.join(node)).unwrap();
    std::fs::write(dir.join(node).join(file), text).unwrap();
}

/// A ping result of `task` at `location` with the reply RTTs `rtts` (none: every reply lost).
pub fn ping(task: u64, location: &str, seq: u64, endpoint: &str, rtts: &[f64]) -> Value {
    let ok = !rtts.is_empty();
    serde_json::json!({
        "task_id": task, "location": location, "seq": seq, "agent": format!("agent-{location}"),
        "agent_kind": "always-on", "fire_time": "2026-01-01T00:00:00Z", "ok": ok,
        "timing": {"wait_ms": 2.0 * seq as f64, "startup_ms": 0.0, "exec_ms": 400.0, "teardown_ms": 0.0},
        "endpoints": [{"endpoint": endpoint, "ok": ok, "raw": "…", "duration_ms": 400.0,
            "figures": {"kind": "ping", "transmitted": 3, "received": rtts.len(), "loss_pct": 0.0, "rtts_ms": rtts}}],
        "finished_at": "2026-01-01T00:00:00.4Z", "received_at": "2026-01-01T00:00:00.5Z", "response_ms": 500.0 + seq as f64,
    })
}

/// A run the server failed when its lease ran out.
pub fn lease_failure(task: u64, location: &str, seq: u64) -> Value {
    serde_json::json!({
        "task_id": task, "location": location, "seq": seq, "agent": null, "agent_kind": null,
        "fire_time": "2026-01-01T00:00:00Z", "ok": false,
        "error": format!("no agent of location {location} took the run within the lease (30s)"),
        "timing": {"wait_ms": 0.0, "startup_ms": 0.0, "exec_ms": 0.0, "teardown_ms": 0.0},
        "endpoints": [], "finished_at": "2026-01-01T00:00:30Z", "received_at": "2026-01-01T00:00:30Z",
    })
}

/// A probe server's export (`probe-results.json`) of `tasks` and `results`, with API statistics.
pub fn export(tasks: Value, results: Vec<Value>) -> String {
    serde_json::json!({
        "schema": 1, "exported_at": "2026-01-01T00:05:00Z", "tasks": tasks, "results": results,
        "summary": {"runs": 0, "failed_runs": 0, "rtt": [], "kinds": []},
        "stats": {"requests": 3000, "uptime_s": 300.0, "request_rate_per_s": 10.0,
                  "latency_us": {"count": 500, "p50": 180, "p99": 2400, "max": 9000}, "skipped_firings": 2},
    })
    .to_string()
}
