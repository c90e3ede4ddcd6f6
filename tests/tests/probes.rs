//! Measurement probes under `diorama run` (root): agents in emulated regions ping endpoints
//! with the real `ping`, and the medians the results API reports match the RTTs the
//! topology implies, at TDF 1 and TDF 10; a killed agent's location records failures and a
//! task whose every location failed becomes FAILED.
#![expect(clippy::unwrap_used, reason = "test helpers fail loudly on a broken run")]

use std::path::{Path, PathBuf};

use diorama_tests::{artifact, need_root, need_tool, require, topology, Outcome};
use serde_json::Value;

/// One-way delays of the two regions' access links (ms), and of every node's own link.
const EU_MS: f64 = 5.0;
const US_MS: f64 = 25.0;
const NODE_MS: f64 = 0.1;

/// The RTT the topology implies between a node in region `a` and one in region `b`.
fn implied_rtt_ms(a: &str, b: &str) -> f64 {
    let region = |r: &str| if r == "eu" { EU_MS } else { US_MS };
    if a == b {
        2.0 * (2.0 * NODE_MS)
    } else {
        2.0 * (2.0 * NODE_MS + region(a) + region(b))
    }
}

/// Two regions, an agent and an endpoint in each, a recurring ping task from both regions
/// to both endpoints; `extra_nodes` and `faults` are appended.
/// The agents turn CPU pacing off (`DILATION_CPU_SPEED` far above one core): these tests
/// compare ping's RTT with the emulated network's, and ping's own CPU, paced at the agents'
/// fraction of a core, would add about half a millisecond a round trip in both legs.
fn two_regions(name: &str, duration: &str, tasks: &str, lease: &str, extra_nodes: &str, faults: &str) -> String {
    format!(
        r#"name: {name}
tdf: 1
duration: {duration}
defaults: {{cpus: 0.1, memory: 96MiB}}
switches: [core, eu, us]
nodes:
  - name: server
    cpus: 0.2
    run:
      workload: probe
      args:
        role: server
        location: eu,us
        lease: {lease}
        task: {tasks}
    ready: {{tcp: 8080}}
    link: {{to: core, rate: 100Mbit, delay: 100us}}
  - name: ep-eu
    run: {{command: "exec sleep 100000"}}
    link: {{to: eu, rate: 100Mbit, delay: 100us}}
  - name: ep-us
    run: {{command: "exec sleep 100000"}}
    link: {{to: us, rate: 100Mbit, delay: 100us}}
  - name: agent-eu
    depends_on: [server]
    run: {{workload: probe, args: {{role: agent, server: "http://server:8080", location: eu}}, env: {{DILATION_CPU_SPEED: "1000"}}}}
    link: {{to: eu, rate: 100Mbit, delay: 100us}}
  - name: agent-us
    depends_on: [server]
    run: {{workload: probe, args: {{role: agent, server: "http://server:8080", location: us}}, env: {{DILATION_CPU_SPEED: "1000"}}}}
    link: {{to: us, rate: 100Mbit, delay: 100us}}
{extra_nodes}links:
  - {{between: [eu, core], rate: 1Gbit, delay: {EU_MS}ms}}
  - {{between: [us, core], rate: 1Gbit, delay: {US_MS}ms}}
{faults}"#
    )
}

/// Runs `diorama run` with the build's directory on PATH (node commands find
/// `diorama-probe` there); returns the outcome and the results directory.
fn run(dir: &Path, name: &str, yaml: &str, tdf: &str) -> (Outcome, PathBuf) {
    let topo = topology(dir, name, yaml);
    let out = dir.join(format!("{name}-out"));
    let bin = artifact("diorama-probe");
    let bin_dir = bin.parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let output = std::process::Command::new(artifact("diorama"))
        .args(["run", topo.to_str().unwrap(), "--out", out.to_str().unwrap(), "--tdf", tdf])
        .env("DIORAMA_LOG", "info")
        .env("PATH", path)
        .output()
        .unwrap();
    let outcome = Outcome {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    (outcome, out)
}

/// The server's export: every task and result as the API returns them.
fn export(results: &Path) -> Value {
    let path = results.join("nodes/server/probe-results.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn check_rtts(tdf: &str, duration: &str) {
    let test = &format!("probes_match_the_topology_tdf{tdf}");
    require!(test, need_root(), need_tool("ping"));
    let dir = tempfile::tempdir().unwrap();
    let tasks = r#"[{type: RECURRING, interval: 4s, measurement: {kind: ping, count: 5}, endpoints: [ep-eu, ep-us], locations: [eu, us]}]"#;
    let yaml = two_regions("probes-rtt", duration, tasks, "20s", "", "");
    let (outcome, results) = run(dir.path(), "probes-rtt", &yaml, tdf);
    assert_eq!(outcome.code, Some(0), "{}\n{}", outcome.stdout, outcome.stderr);
    let export = export(&results);
    let cells = export["summary"]["rtt"].as_array().unwrap();
    let mut checked = 0;
    for cell in cells.iter().filter(|c| c["measurement"] == "ping") {
        let location = cell["location"].as_str().unwrap();
        let endpoint = cell["endpoint"].as_str().unwrap();
        let region = endpoint.trim_start_matches("ep-");
        let want = implied_rtt_ms(location, region);
        let got = cell["median_ms"].as_f64().unwrap();
        let samples = cell["samples"].as_u64().unwrap();
        println!(
            "TDF {tdf}: {location} -> {endpoint}: median RTT {got:.3} ms over {samples} replies, topology {want:.3} ms (load {})",
            load_average()
        );
        assert!(samples >= 10, "{location} -> {endpoint}: only {samples} replies");
        let tolerance = (want * 0.05).max(0.5);
        assert!(
            (got - want).abs() <= tolerance,
            "{location} -> {endpoint}: median {got} ms, topology {want} ms (±{tolerance})"
        );
        checked += 1;
    }
    assert_eq!(checked, 4, "every (region, endpoint) pair measured: {cells:?}");
}

#[test]
fn probes_match_the_topology_tdf1() {
    check_rtts("1", "30s");
}

#[test]
fn probes_match_the_topology_tdf10() {
    check_rtts("10", "14s");
}

#[test]
fn probes_record_a_killed_agent() {
    let test = "probes_record_a_killed_agent";
    require!(test, need_root(), need_tool("ping"), need_tool("sh"));
    let dir = tempfile::tempdir().unwrap();
    let tasks = r#"[{type: RECURRING, interval: 3s, measurement: {kind: ping, count: 2}, endpoints: [ep-eu], locations: [eu, us]}]"#;
    // A client creates a one-off task for the killed region only, while it is down.
    let driver = r#"  - name: driver
    depends_on: [server]
    run: {command: "sleep 8 && diorama-probe cli --server http://server:8080 --json task create --type ONE-OFF --measurement ping --count 2 --endpoint ep-eu --location us > created.json && sleep 100000"}
    link: {to: core, rate: 100Mbit, delay: 100us}
"#;
    let faults = "faults:\n  - {at: 4s, kill: agent-us, for: 20s}\n";
    let yaml = two_regions("probes-kill", "36s", tasks, "6s", driver, faults);
    let (outcome, results) = run(dir.path(), "probes-kill", &yaml, "1");
    assert_eq!(outcome.code, Some(0), "{}\n{}", outcome.stdout, outcome.stderr);
    let export = export(&results);
    let tasks = export["tasks"].as_array().unwrap();
    let recurring = tasks.iter().find(|t| t["type"] == "RECURRING").unwrap();
    let one_off = tasks.iter().find(|t| t["type"] == "ONE-OFF").expect("the driver created its task");
    println!("recurring tally {}, one-off {} ({})", recurring["tally"], one_off["state"], one_off["reason"]);
    // The killed region's runs failed while it was down, and it recovered after.
    let us = &recurring["tally"]["us"];
    assert!(us["failed_runs"].as_u64().unwrap() >= 2, "{us}");
    assert!(us["ok_runs"].as_u64().unwrap() >= 1, "agent-us came back: {us}");
    assert_eq!(recurring["tally"]["eu"]["failed_runs"], 0, "{}", recurring["tally"]);
    assert_eq!(recurring["state"], "RUNNING");
    // The one-off ran only where every agent was dead: FAILED, with the reason recorded.
    assert_eq!(one_off["state"], "FAILED", "{one_off}");
    let failures: Vec<&Value> =
        export["results"].as_array().unwrap().iter().filter(|r| r["task_id"] == one_off["id"]).collect();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["ok"], false);
    assert!(failures[0]["error"].as_str().unwrap().contains("no agent of location us"), "{}", failures[0]);
}
