//! The README's main job runs a small Isaac service and leaves a complete results
//! directory (root): requests completed without errors, a latency summary, per-tier timings,
//! the clock shim in every node, dilated time, and nothing left behind.
#![expect(clippy::unwrap_used, reason = "helpers of a test fail it loudly, like the test itself")]

use diorama_tests::{diorama, need_root, repo_root, require, run_json};

#[test]
fn quickstart_runs_and_writes_its_results() {
    require!("quickstart_runs_and_writes_its_results", need_root());
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join(format!("quickstart-{}", std::process::id()));
    let topo = repo_root().join("topologies/quickstart.yaml");
    let r = diorama(&["run", topo.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(!r.stderr.contains("NOT dilated"), "false shim warning: {}", r.stderr);
    for file in [
        "run.json",
        "plan.json",
        "events.jsonl",
        "nodes.csv",
        "links.csv",
        "nodes/client/requests.csv",
        "nodes/client/latency.hdr",
        "nodes/client/summary.json",
        "nodes/db/isaac.sqlite",
    ] {
        assert!(out.join(file).exists(), "{file} missing");
    }
    let run = run_json(&out);
    assert_eq!(run["success"], true);
    assert_eq!(run["nodes"].as_array().unwrap().len(), 5);
    let tdf = run["tdf"].as_f64().unwrap();
    assert!(tdf > 1.0, "quickstart needs more than this host's CPU: auto TDF {tdf}");
    // The host's cache decay, measured before the nodes started (docs/fidelity.md).
    if tdf >= 2.0 {
        let ratio = run["host"]["cache_decay"]["ratio"].as_f64();
        println!("quickstart at TDF {tdf}: host cache decay ratio {ratio:?}");
        assert!(ratio.is_some_and(|r| r > 0.0), "{}", run["host"]);
    }
    for node in run["nodes"].as_array().unwrap() {
        assert_eq!(node["shim_loaded"], true, "clock shim missing in {node}");
        assert_eq!(node["exit"], 0, "every tier flushes and exits 0 on SIGTERM: {node}");
    }

    // The client completed requests, all answered, and summarised their latency.
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("nodes/client/summary.json")).unwrap()).unwrap();
    let completed = summary["completed"].as_u64().unwrap();
    let lat = &summary["latency_us"];
    println!(
        "quickstart at TDF {tdf}: {completed} requests, median {} µs, p99 {} µs (virtual)",
        lat["median"], lat["p99"]
    );
    assert!(completed >= 50, "only {completed} requests completed: {summary}");
    assert_eq!(summary["errors"], 0, "{summary}");
    let (median, p99) = (lat["median"].as_f64().unwrap(), lat["p99"].as_f64().unwrap());
    // Each request crosses at least 12 sequential 4 ms round trips between app server and DB.
    assert!(median > 48_000.0 && p99 >= median, "{lat}");

    // Every answer carried the per-tier breakdown, fs ≥ as ≥ db.
    let requests = std::fs::read_to_string(out.join("nodes/client/requests.csv")).unwrap();
    // Found by name, counted from the end: `class` (a path) may hold a quoted comma.
    let header: Vec<&str> = requests.lines().next().unwrap_or_default().split(',').collect();
    let from_end = header.iter().rev().position(|c| *c == "timing").expect("requests.csv has a timing column");
    let mut timed = 0;
    for row in requests.lines().skip(1) {
        let timing = row.rsplit(',').nth(from_end).unwrap_or_default();
        if let [Some(fs), Some(a), Some(db)] = ["fs=", "as=", "db="]
            .map(|k| timing.split(';').find_map(|kv| kv.strip_prefix(k)).and_then(|v| v.parse::<u64>().ok()))
        {
            assert!(fs >= a && a >= db, "{row}");
            timed += 1;
        }
    }
    assert!(timed as u64 >= completed, "{timed} of {completed} rows carry timing");

    // Every tier counted its requests.
    for node in ["fs", "as0", "as1", "db"] {
        let csv = std::fs::read_to_string(out.join("nodes").join(node).join("isaac.csv")).unwrap();
        let requests: u64 = csv.lines().skip(1).map(|l| l.split(',').nth(2).unwrap().parse::<u64>().unwrap()).sum();
        assert!(requests > 0, "{node}: {csv}");
    }

    // Time was dilated: the client's 5 virtual seconds took TDF times as long in real time.
    let perceived = summary["duration_s"].as_f64().unwrap();
    assert!((perceived - 5.0).abs() < 0.5, "client ran {perceived} virtual s");
    assert!(run["real_duration_s"].as_f64().unwrap() >= 5.0 * tdf, "{run}");
    let left = own_leftovers(&out);
    assert!(left.is_empty(), "{left:?}");
}

/// Leftovers of this test's run only: other engineers' runs may share the machine, so
/// cgroups and state are matched by the run id (the results directory's name) and
/// processes by a working directory under `out`.
fn own_leftovers(out: &std::path::Path) -> Vec<String> {
    let id = out.file_name().unwrap().to_string_lossy().into_owned();
    let mut found: Vec<String> = diorama_tests::leftovers()
        .into_iter()
        .filter(|l| !l.starts_with("process ") && (l.ends_with(&format!("/{id}")) || l.contains(&format!("/{id}/"))))
        .collect();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cwd) = std::fs::read_link(p.path().join("cwd")) {
            if cwd.starts_with(out) {
                found.push(format!("process {} in {}", p.file_name().to_string_lossy(), cwd.display()));
            }
        }
    }
    found
}
