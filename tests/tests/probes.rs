//! Measurement probes under `diorama run` (root): agents in emulated regions ping endpoints
//! with the real `ping`, and the medians the results API reports match the RTTs the
//! topology implies, at TDF 1 and TDF 10, while a cron task fires on virtual seconds; a
//! killed agent's location records failures and a task whose every location failed becomes
//! FAILED; the run's report shows the RTT tables.
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

/// A driver node that creates, through the CLI, a cron task firing every 2 virtual seconds
/// from the next second on: an `exec true` at eu (no RTT, so it leaves the RTT cells alone).
const CRON_DRIVER: &str = r#"  - name: driver
    depends_on: [server]
    run: {command: "diorama-probe cli --server http://server:8080 --json task create --type RECURRING-SCHEDULED --cron '*/2 * * * * *' --start-time $(date -u -d '+1 sec' +%Y-%m-%dT%H:%M:%SZ) --stop-time $(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ) --measurement exec --endpoint ep-eu --location eu -- true > cron.json && exec sleep 100000"}
    link: {to: core, rate: 100Mbit, delay: 100us}
"#;

/// The cron task of [`CRON_DRIVER`] fired on even virtual seconds, every 2 virtual seconds
/// and no more often: its whole schedule lies inside the run's virtual duration, which at
/// TDF 10 took ten times as long in real time.
fn check_cron(export: &Value, duration_s: i128) {
    let tasks = export["tasks"].as_array().unwrap();
    let cron = tasks.iter().find(|t| t["type"] == "RECURRING-SCHEDULED").expect("the driver created its cron task");
    let mut fires: Vec<i128> = export["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["task_id"] == cron["id"])
        .map(|r| ns_of(&r["fire_time"]))
        .collect();
    fires.sort_unstable();
    let span_ns = ns_of(&export["exported_at"]) - ns_of(&cron["created_at"]);
    println!("cron */2 s: {} firings, {} ms from creation to export (virtual)", fires.len(), span_ns / 1_000_000);
    assert!(fires.len() >= 2, "{fires:?}");
    assert!(fires.iter().all(|f| f.rem_euclid(2_000_000_000) == 0), "off the even seconds: {fires:?}");
    assert!(fires.windows(2).all(|w| w[1] - w[0] == 2_000_000_000), "every 2 s: {fires:?}");
    assert_eq!(cron["skipped_firings"], 0);
    assert!(span_ns < duration_s * 1_000_000_000, "the server's clock ran {span_ns} ns in a {duration_s} s run");
}

fn check_rtts(tdf: &str, duration_s: i128) {
    let test = &format!("probes_match_the_topology_tdf{tdf}");
    require!(test, need_root(), need_tool("ping"), need_tool("sh"), need_tool("date"));
    let dir = tempfile::tempdir().unwrap();
    // A round (five pings 0.2 s apart to each endpoint) takes about 2 s; three rounds give 15
    // replies a cell.
    let tasks = r#"[{type: RECURRING, interval: 2s, measurement: {kind: ping, count: 5}, endpoints: [ep-eu, ep-us], locations: [eu, us]}]"#;
    let duration = format!("{duration_s}s");
    let yaml = two_regions("probes-rtt", &duration, tasks, "20s", CRON_DRIVER, "");
    let (outcome, results) = run(dir.path(), "probes-rtt", &yaml, tdf);
    assert_eq!(outcome.code, Some(0), "{}\n{}", outcome.stdout, outcome.stderr);
    let export = export(&results);
    let cells = export["summary"]["rtt"].as_array().unwrap();
    // The run's report: the same medians in summary.json, and a table of them in report.html.
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(results.join("summary.json")).unwrap()).unwrap();
    let rows = summary["probes"]["servers"]["server"]["rtt"].as_array().unwrap();
    let html = std::fs::read_to_string(results.join("report.html")).unwrap();
    assert!(html.contains("Median RTT (ms), ping"));
    let mut checked = 0;
    for cell in cells.iter().filter(|c| c["measurement"] == "ping") {
        let location = cell["location"].as_str().unwrap();
        let endpoint = cell["endpoint"].as_str().unwrap();
        let region = endpoint.trim_start_matches("ep-");
        let want = implied_rtt_ms(location, region);
        let got = cell["median_ms"].as_f64().unwrap();
        let row = rows
            .iter()
            .find(|r| r["location"] == location && r["endpoint"] == endpoint && r["measurement"] == "ping")
            .unwrap_or_else(|| panic!("no report row {location} -> {endpoint}: {rows:?}"));
        assert_eq!(row["rtt_ms"]["p50"].as_f64(), Some(got), "{row}");
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
    check_cron(&export, duration_s);
}

#[test]
fn probes_match_the_topology_tdf1() {
    check_rtts("1", 10);
}

#[test]
fn probes_match_the_topology_tdf10() {
    // 5 s virtual (50 s real): three rounds, 15 replies a cell; the suite's time is tight.
    check_rtts("10", 5);
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

/// The address of switch `j` (declaration order) under the network's rule
/// (`netemu::graph`): from the top of the default prefix 10.77.0.0/16 down.
fn switch_addr(j: u8) -> String {
    format!("10.77.255.{}", 254 - j)
}

#[test]
fn probes_trace_every_switch() {
    let test = "probes_trace_every_switch";
    require!(test, need_root(), need_tool("traceroute"), need_tool("ping"), need_tool("curl"));
    let dir = tempfile::tempdir().unwrap();
    // Switches [core, eu, us]: core 10.77.255.254, eu .253, us .252.
    let tasks = r#"[{type: ONE-OFF, measurement: {kind: traceroute, max_hops: 8}, endpoints: [ep-eu, server, ep-us], locations: [eu]},
           {type: ONE-OFF, measurement: {kind: ping, count: 3}, endpoints: [ep-us], locations: [eu]},
           {type: ONE-OFF, measurement: {kind: http, path: /v1/stats, port: 8080}, endpoints: [server], locations: [us]}]"#;
    let yaml = two_regions("probes-trace", "16s", tasks, "14s", "", "");
    let (outcome, results) = run(dir.path(), "probes-trace", &yaml, "1");
    assert_eq!(outcome.code, Some(0), "{}\n{}", outcome.stdout, outcome.stderr);
    let export = export(&results);
    let tasks = export["tasks"].as_array().unwrap();
    let task_of = |kind: &str| tasks.iter().find(|t| t["measurement"]["kind"] == kind).unwrap()["id"].clone();
    let results = export["results"].as_array().unwrap();
    let result_of = |kind: &str| {
        let id = task_of(kind);
        let r = results.iter().find(|r| r["task_id"] == id).unwrap_or_else(|| panic!("no {kind} result: {results:?}"));
        r["endpoints"].as_array().unwrap().clone()
    };
    // agent-eu hangs off eu: ep-eu is one switch away, the server (on core) two, ep-us three.
    let paths =
        [("ep-eu", "10.77.0.2", vec![1u8]), ("server", "10.77.0.1", vec![1, 0]), ("ep-us", "10.77.0.3", vec![1, 0, 2])];
    let traces = result_of("traceroute");
    for (endpoint, addr, switches) in &paths {
        let e = traces.iter().find(|e| e["endpoint"] == *endpoint).unwrap();
        println!("traceroute eu -> {endpoint}:\n{}", e["raw"].as_str().unwrap_or(""));
        let trace = &e["figures"];
        assert_eq!(trace["reached"], true, "{e}");
        let hops = trace["hops"].as_array().unwrap();
        // One hop per switch on the path, then the destination itself.
        assert_eq!(hops.len(), switches.len() + 1, "{endpoint}: {hops:?}");
        for (hop, &j) in hops.iter().zip(switches) {
            assert_eq!(hop["addrs"], serde_json::json!([switch_addr(j)]), "{endpoint}: {hop}");
        }
        assert_eq!(hops[switches.len()]["addrs"][0], *addr, "{endpoint}: {hops:?}");
    }
    // ping (ICMP) and HTTP (TCP, curl) still cross the switches, TTL and all.
    let ping = &result_of("ping")[0];
    assert_eq!(ping["ok"], true, "{ping}");
    let rtts = ping["figures"]["rtts_ms"].as_array().unwrap();
    assert_eq!(rtts.len(), 3, "{ping}");
    let want = implied_rtt_ms("eu", "us");
    let min = ping["figures"]["rtt_min_ms"].as_f64().unwrap();
    println!("ping eu -> ep-us: min {min} ms, topology {want} ms (load {})", load_average());
    assert!(min >= want - 0.05, "faster than the topology allows: {ping}");
    let http = &result_of("http")[0];
    assert_eq!(http["ok"], true, "{http}");
    assert_eq!(http["figures"]["status"], 200, "{http}");
}

/// The virtual time of an RFC 3339 timestamp, in nanoseconds since the Unix epoch.
fn ns_of(v: &Value) -> i128 {
    let t = chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    i128::from(t.timestamp()) * 1_000_000_000 + i128::from(t.timestamp_subsec_nanos())
}

/// Checks one task's runs across the server's downtime: every run it issued has exactly one
/// result and every result is a success (none lost, none failed by the restart); the
/// firings stay on the task's grid of `step_ns` from `origin_ns`, advancing one step at a
/// time except once, across the downtime, where the skipped firings are exactly the
/// task's `skipped_firings` (coalesced: the latest missed firing ran once).
fn check_catch_up(export: &Value, task: &Value, step_ns: i128, origin_ns: i128) -> u64 {
    let id = &task["id"];
    let issued = task["tally"]["eu"]["next_seq"].as_u64().unwrap() - 1;
    let mut runs: Vec<&Value> = export["results"].as_array().unwrap().iter().filter(|r| r["task_id"] == *id).collect();
    runs.sort_by_key(|r| r["seq"].as_u64());
    let seqs: Vec<u64> = runs.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    // The last run may still be out when the run ends and the server exports.
    assert!(seqs.len() as u64 >= issued.saturating_sub(1), "task {id}: {issued} runs issued, results for {seqs:?}");
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "task {id}: sequence numbers");
    for r in &runs {
        assert_eq!(r["ok"], true, "task {id}: {r}");
    }
    let fires: Vec<i128> = runs.iter().map(|r| ns_of(&r["fire_time"])).collect();
    for f in &fires {
        assert_eq!((f - origin_ns).rem_euclid(step_ns), 0, "task {id}: firing off the grid: {fires:?}");
    }
    let gaps: Vec<i128> = fires.windows(2).map(|w| (w[1] - w[0]) / step_ns).collect();
    let jumps: Vec<&i128> = gaps.iter().filter(|&&g| g != 1).collect();
    let skipped = task["skipped_firings"].as_u64().unwrap();
    println!("task {id} ({}): {} runs, gaps in steps {gaps:?}, skipped_firings {skipped}", task["type"], runs.len());
    assert_eq!(jumps.len(), 1, "task {id}: one jump across the downtime: {gaps:?}");
    assert_eq!(*jumps[0] - 1, i128::from(skipped), "task {id}: the jump skips exactly skipped_firings: {gaps:?}");
    skipped
}

#[test]
fn probes_survive_a_server_restart() {
    let test = "probes_survive_a_server_restart";
    require!(test, need_root(), need_tool("ping"), need_tool("sh"), need_tool("date"));
    let dir = tempfile::tempdir().unwrap();
    // A recurring task created at the server's start-up (every 3 s from its creation) …
    let tasks = r#"[{type: RECURRING, interval: 3s, measurement: {kind: ping, count: 1}, endpoints: [ep-eu], locations: [eu]}]"#;
    // … and, from a CLI in a driver node: a one-off run that is still measuring (10 s) when
    // the server is killed, then a cron task every 2 virtual seconds from the next second on.
    let driver = r#"  - name: driver
    depends_on: [server]
    run: {command: "diorama-probe cli --server http://server:8080 --json task create --type ONE-OFF --measurement exec --endpoint ep-eu --location eu -- sleep 10 > slow.json && diorama-probe cli --server http://server:8080 --json task create --type RECURRING-SCHEDULED --cron '*/2 * * * * *' --start-time $(date -u -d '+1 sec' +%Y-%m-%dT%H:%M:%SZ) --stop-time $(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ) --measurement ping --count 1 --endpoint ep-eu --location eu > cron.json && exec sleep 100000"}
    link: {to: core, rate: 100Mbit, delay: 100us}
"#;
    let faults = "faults:\n  - {at: 8s, kill: server, for: 8s}\n";
    let yaml = two_regions("probes-restart", "30s", tasks, "30s", driver, faults);
    let (outcome, results) = run(dir.path(), "probes-restart", &yaml, "1");
    assert_eq!(outcome.code, Some(0), "{}\n{}", outcome.stdout, outcome.stderr);
    println!("load average {}", load_average());
    let export = export(&results);
    let tasks = export["tasks"].as_array().unwrap();
    let of =
        |kind: &str| tasks.iter().find(|t| t["type"] == kind).unwrap_or_else(|| panic!("no {kind} task: {tasks:?}"));
    let recurring = of("RECURRING");
    let cron = of("RECURRING-SCHEDULED");
    let skipped = check_catch_up(&export, recurring, 3_000_000_000, ns_of(&recurring["created_at"]));
    // Cron boundaries: every even second.
    let skipped_cron = check_catch_up(&export, cron, 2_000_000_000, 0);
    // Down for 8 s at least: at least two 3 s firings and three 2 s firings fell inside.
    assert!(skipped >= 1 && skipped_cron >= 2, "recurring skipped {skipped}, cron skipped {skipped_cron}");
    // The run measuring through the downtime was spooled by its agent and stored after
    // the restart: finished while the server was down, received seconds later.
    let slow = of("ONE-OFF");
    assert_eq!(slow["state"], "FINISHED", "{slow}");
    let run = export["results"].as_array().unwrap().iter().find(|r| r["task_id"] == slow["id"]).unwrap();
    assert_eq!(run["ok"], true, "{run}");
    let held_ms = (ns_of(&run["received_at"]) - ns_of(&run["finished_at"])) / 1_000_000;
    println!("the slow run waited {held_ms} ms in the agent's spool");
    assert!(held_ms >= 1000, "delivered {held_ms} ms after it finished: {run}");
}

/// The scale experiment in miniature (`topologies/probes-scale.yaml` has 500 agents in 20
/// regions): agents that are locations of their own, a recurring ping per region, long polls
/// of 5 s; the run's report computes what the experiment reports (request rate, API latency
/// p99, runs missed) and `diorama run` prints it.
#[test]
fn probes_scale_in_miniature_reports_its_figures() {
    let test = "probes_scale_in_miniature_reports_its_figures";
    require!(test, need_root(), need_tool("ping"));
    let dir = tempfile::tempdir().unwrap();
    let agents = |r: u8| (0..3).map(|a| format!("r{r}a{a}")).collect::<Vec<_>>().join(", ");
    let yaml = format!(
        r#"name: probes-mini-scale
tdf: 1
duration: 12s
defaults: {{cpus: 0.1, memory: 64MiB}}
switches: [core, r0, r1]
nodes:
  - name: server
    cpus: 0.3
    run:
      workload: probe
      args:
        role: server
        lease: 4s
        task_delay: 2s
        location: "{all}"
        task:
          - {{type: RECURRING, interval: 4s, measurement: {{kind: ping, count: 1}}, endpoints: [ep-r0], locations: [{r0}]}}
          - {{type: RECURRING, interval: 4s, measurement: {{kind: ping, count: 1}}, endpoints: [ep-r1], locations: [{r1}]}}
    ready: {{tcp: 8080}}
    link: {{to: core, rate: 100Mbit, delay: 100us}}
  - name: ep-r0
    run: {{command: "exec sleep 100000"}}
    link: {{to: r0, rate: 100Mbit, delay: 100us}}
  - name: ep-r1
    run: {{command: "exec sleep 100000"}}
    link: {{to: r1, rate: 100Mbit, delay: 100us}}
  - name: r0a[0..3]
    depends_on: [server]
    run: {{workload: probe, args: {{role: agent, server: "http://server:8080", poll_wait: 5s}}}}
    link: {{to: r0, rate: 100Mbit, delay: 100us}}
  - name: r1a[0..3]
    depends_on: [server]
    run: {{workload: probe, args: {{role: agent, server: "http://server:8080", poll_wait: 5s}}}}
    link: {{to: r1, rate: 100Mbit, delay: 100us}}
links:
  - {{between: [r0, core], rate: 1Gbit, delay: 2ms}}
  - {{between: [r1, core], rate: 1Gbit, delay: 7ms}}
"#,
        all = [agents(0), agents(1)].join(", ").replace(' ', ""),
        r0 = agents(0),
        r1 = agents(1),
    );
    let (outcome, results) = run(dir.path(), "probes-mini-scale", &yaml, "1");
    assert_eq!(outcome.code, Some(0), "{}\n{}", outcome.stdout, outcome.stderr);
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(results.join("summary.json")).unwrap()).unwrap();
    let server = &summary["probes"]["servers"]["server"];
    let runs = &server["runs"];
    let api = &server["api"];
    println!("runs {runs}\napi {api}\nstart lag {}", server["wait_ms"]);
    // Tasks created at 2 s fire at 2, 6 and 10 s: six runs each time, one per agent.
    for task in server["tasks"].as_array().unwrap() {
        assert!(task["firings"].as_u64().unwrap() >= 2, "{task}");
    }
    let issued = runs["issued"].as_u64().unwrap();
    assert!(issued >= 12 && issued % 6 == 0, "{runs}");
    assert_eq!((runs["missed"].as_u64(), runs["skipped_firings"].as_u64()), (Some(0), Some(0)), "{runs}");
    let export = export(&results);
    for r in export["results"].as_array().unwrap().iter().filter(|r| r["ok"] == false) {
        println!("a failed run (measured, not missed): {r}");
    }
    assert!(api["requests"].as_u64().unwrap() > 0 && api["request_rate_per_s"].as_f64().unwrap() > 0.0, "{api}");
    assert!(
        api["latency_us"]["count"].as_u64().unwrap() >= runs["ok"].as_u64().unwrap(),
        "each delivery is timed: {api}"
    );
    // One RTT row per agent: each is a location of its own.
    let rows = server["rtt"].as_array().unwrap();
    assert_eq!(rows.len(), 6, "{rows:?}");
    // `diorama run` prints the figures with the report's path.
    let printed = format!("{}{}", outcome.stdout, outcome.stderr);
    assert!(printed.contains(&format!("probes (server): {issued} runs, 0 missed, API ")), "{printed}");
}
