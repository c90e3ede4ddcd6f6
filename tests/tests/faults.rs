//! Faults under `diorama run` (root): every fault type acts on real nodes and links, its
//! events are recorded, and the run still succeeds. Short runs of a few virtual seconds,
//! mostly at TDF 1; pause/resume and the clock faults also run at TDF 4 to show that fault
//! times and effects are virtual.
#![expect(clippy::unwrap_used, reason = "test helpers fail loudly on a broken run")]

use std::path::{Path, PathBuf};

use diorama_tests::{diorama, leftovers, need_root, need_tool, require, run_json, topology, Outcome};
use serde_json::Value;

/// Writes a node program into `dir` and returns its path.
fn script(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// A node that appends its clock reading (`time.time()`, dilated) to `ticks` every 20 ms of
/// its own time; with a port, it also listens there (for a TCP readiness check).
const TICKER: &str = r#"
import socket, sys, time
if len(sys.argv) > 1:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(8)
while True:
    with open("ticks", "a") as f:
        f.write(f"{time.time()}\n")
    time.sleep(0.02)
"#;

/// UDP echo server, and a watcher that pings it every 50 ms of its time and prints
/// `T ok RTT_ms` or `T lost` (T: its clock, virtual unix seconds).
const UDP: &str = r#"
import socket, sys, time
if sys.argv[1] == "echo":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 9000))
    while True:
        d, a = s.recvfrom(2048); s.sendto(d, a)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.15)
seq = 0
while True:
    seq += 1; t = time.time(); s.sendto(str(seq).encode(), (sys.argv[2], 9000))
    try:
        while True:
            d, _ = s.recvfrom(2048)
            if int(d) == seq:
                break
        print(f"{t:.4f} ok {(time.time() - t) * 1000:.3f}", flush=True)
    except socket.timeout:
        print(f"{t:.4f} lost", flush=True)
    time.sleep(max(0.0, 0.05 - (time.time() - t)))
"#;

/// Runs a topology; returns the outcome and the results directory.
fn run(dir: &Path, name: &str, yaml: &str, extra: &[&str]) -> (Outcome, PathBuf) {
    let topo = topology(dir, name, yaml);
    let out = dir.join(format!("{name}-out"));
    let mut args = vec!["run", topo.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let r = diorama(&args);
    assert_nothing_left(&out);
    (r, out)
}

/// Nothing of the run whose results directory is `out` is left (other runs on a shared
/// host may be under way, so only this run's cgroups, state and processes count).
fn assert_nothing_left(out: &Path) {
    let id = out.file_name().unwrap().to_string_lossy().into_owned();
    let mine: Vec<String> = leftovers().into_iter().filter(|l| l.contains(&id)).collect();
    assert!(mine.is_empty(), "left behind: {mine:?}");
}

fn events(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The first event of `kind` whose `key` is `value`.
fn find<'a>(ev: &'a [Value], kind: &str, key: &str, value: &str) -> &'a Value {
    ev.iter()
        .find(|e| e["kind"] == kind && e[key] == value)
        .unwrap_or_else(|| panic!("no {kind} event with {key}={value} in {ev:#?}"))
}

fn t(e: &Value) -> f64 {
    e["t_virtual_s"].as_f64().unwrap()
}

fn ticks(out: &Path, node: &str) -> Vec<f64> {
    std::fs::read_to_string(out.join("nodes").join(node).join("ticks"))
        .unwrap()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

/// The epoch of a run in virtual unix seconds (what nodes' clocks read at t_virtual_s 0).
fn epoch_s(out: &Path) -> f64 {
    run_json(out)["epoch"]["virt_ns"].as_f64().unwrap() / 1e9
}

/// The largest gap between consecutive ticks, and where it starts (virtual s since the epoch).
fn largest_gap(ticks: &[f64], epoch: f64) -> (f64, f64) {
    ticks.windows(2).map(|w| (w[1] - w[0], w[0] - epoch)).fold((0.0, 0.0), |a, b| if b.0 > a.0 { b } else { a })
}

/// The undo of a kill that comes before the engine has seen the node exit (here in the same
/// pass of its loop) still starts the node again: it once logged "the node is running;
/// nothing to do" and left it down for the rest of the run.
#[test]
fn a_kill_undone_at_once_still_restarts_the_node() {
    require!("a_kill_undone_at_once_still_restarts_the_node", need_root());
    let tmp = tempfile::tempdir().unwrap();
    let yaml = r#"
name: kill-brief
tdf: 1
duration: 3s
defaults: {cpus: 0.2, memory: 32MiB}
nodes:
  - name: a
    run: {command: "exec sleep 600"}
faults:
  - {at: 1s, kill: a, for: 1ms}
"#;
    let (r, out) = run(tmp.path(), "kill-brief", yaml, &[]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let ev = events(&out);
    let starts = ev.iter().filter(|e| e["kind"] == "node_start").count();
    let exit = find(&ev, "node_exit", "node", "a");
    assert_eq!((exit["code"].as_i64(), exit["faulted"].as_bool()), (Some(137), Some(true)));
    assert_eq!(starts, 2, "killed, then started again: {ev:#?}");
    let run = run_json(&out);
    assert_eq!(run["nodes"][0]["restarts"], 1, "{}", run["nodes"]);
}

#[test]
fn kill_and_restart_bring_a_node_back() {
    require!("kill_and_restart_bring_a_node_back", need_root(), need_tool("python3"));
    let tmp = tempfile::tempdir().unwrap();
    let p = script(tmp.path(), "ticker.py", TICKER);
    let yaml = format!(
        r#"
name: kill
tdf: 1
duration: 5s
defaults: {{cpus: 0.5, memory: 64MiB}}
nodes:
  - name: db
    run: {{command: [python3, "{p}", "7000"]}}
    ready: {{tcp: 7000, timeout: 20s}}
faults:
  - {{at: 2s, kill: db, for: 1s, name: db-down}}
"#
    );
    let (r, out) = run(tmp.path(), "kill", &yaml, &[]);
    assert_eq!(r.code, Some(0), "a killed node must not fail the run: {r:?}");
    let ev = events(&out);
    let fault = find(&ev, "fault", "fault", "kill");
    assert_eq!(fault["id"], "faults[0]");
    assert_eq!(fault["name"], "db-down");
    assert_eq!(fault["targets"], serde_json::json!(["db"]));
    let exit = find(&ev, "node_exit", "node", "db");
    assert_eq!((exit["code"].as_i64(), exit["faulted"].as_bool()), (Some(137), Some(true)));
    let recover = find(&ev, "recover", "fault", "kill");
    let starts: Vec<&Value> = ev.iter().filter(|e| e["kind"] == "node_start").collect();
    let readies: Vec<&Value> = ev.iter().filter(|e| e["kind"] == "node_ready").collect();
    assert_eq!((starts.len(), readies.len()), (2, 2), "{ev:#?}");
    println!(
        "kill: fault at {:.4} s, exit at {:.4} s, recover at {:.4} s, ready again at {:.4} s (virtual)",
        t(fault),
        t(exit),
        t(recover),
        t(readies[1])
    );
    // Fired within a few ms of its virtual time (the engine sleeps to the deadline).
    assert!((t(fault) - 2.0).abs() < 0.05 && (t(recover) - 3.0).abs() < 0.05, "{fault} {recover}");
    assert!(t(readies[1]) > t(starts[1]) && t(starts[1]) >= t(recover));
    let run = run_json(&out);
    assert_eq!(run["nodes"][0]["restarts"], 1);
    assert_eq!(run["success"], true);
    // The node was down for the fault's second, then ticked again.
    let ticks = ticks(&out, "db");
    let (gap, at) = largest_gap(&ticks, epoch_s(&out));
    println!("kill: ticker silent for {gap:.3} s from {at:.3} s (includes the restarted interpreter's start-up)");
    assert!((at - 2.0).abs() < 0.1 && at + gap >= 3.0 && at + gap < 4.5, "gap {gap} at {at}");
    assert!(ticks.last().unwrap() - epoch_s(&out) > 4.5, "the restarted node kept ticking");
    // Sampling goes on across the restart (the cgroup is the node's, not the process's).
    let csv = std::fs::read_to_string(out.join("nodes.csv")).unwrap();
    let late_rows = csv.lines().skip(1).filter(|l| l.split(',').next().unwrap().parse::<f64>().unwrap() > 3.5).count();
    assert!(late_rows >= 1, "{csv}");
}

#[test]
fn stop_and_start() {
    require!("stop_and_start", need_root(), need_tool("python3"));
    let tmp = tempfile::tempdir().unwrap();
    let p = script(tmp.path(), "ticker.py", TICKER);
    let yaml = format!(
        r#"
name: stop
tdf: 1
duration: 5s
defaults: {{cpus: 0.5, memory: 64MiB}}
nodes:
  - name: app
    run: {{command: [python3, "{p}"]}}
    ready: {{command: [test, -s, ticks], timeout: 20s}}
faults:
  - {{at: 2s, stop: app}}
  - {{at: 3s, start: app}}
"#
    );
    let (r, out) = run(tmp.path(), "stop", &yaml, &[]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let ev = events(&out);
    let exit = find(&ev, "node_exit", "node", "app");
    // SIGTERM, relayed by __init: 128 + 15.
    assert_eq!(exit["code"], 143, "{exit}");
    assert!((t(exit) - 2.0).abs() < 0.2, "{exit}");
    let start = find(&ev, "recover", "fault", "start");
    assert!((t(start) - 3.0).abs() < 0.05);
    let (gap, at) = largest_gap(&ticks(&out, "app"), epoch_s(&out));
    println!("stop/start: silent for {gap:.3} s from {at:.3} s (includes the interpreter's start-up)");
    assert!((at - 2.0).abs() < 0.1 && at + gap >= 3.0 && at + gap < 4.5, "gap {gap} at {at}");
    assert_eq!(run_json(&out)["nodes"][0]["restarts"], 1);
}

#[test]
fn pause_freezes_a_node_in_virtual_time() {
    require!("pause_freezes_a_node_in_virtual_time", need_root(), need_tool("python3"));
    let tmp = tempfile::tempdir().unwrap();
    let p = script(tmp.path(), "ticker.py", TICKER);
    for tdf in [1.0, 4.0] {
        let yaml = format!(
            r#"
name: pause
tdf: {tdf}
duration: 4s
defaults: {{cpus: 0.5, memory: 64MiB}}
nodes:
  - name: app
    run: {{command: [python3, "{p}"]}}
    ready: {{command: [test, -s, ticks], timeout: 20s}}
faults:
  - {{at: 2s, pause: app}}
  - {{at: 3s, resume: app}}
"#
        );
        let (r, out) = run(tmp.path(), &format!("pause{tdf}"), &yaml, &[]);
        assert_eq!(r.code, Some(0), "{r:?}");
        let ev = events(&out);
        let paused = find(&ev, "node_state", "state", "paused");
        assert_eq!(paused["frozen"], true, "{paused}");
        find(&ev, "recover", "fault", "resume");
        let ticks = ticks(&out, "app");
        let (gap, at) = largest_gap(&ticks, epoch_s(&out));
        println!("pause at TDF {tdf}: counter stopped for {gap:.3} s virtual from {at:.3} s");
        // The counter stops for the pause's virtual second, then advances again.
        assert!((gap - 1.0).abs() < 0.1 && (at - 2.0).abs() < 0.1, "TDF {tdf}: gap {gap} at {at}");
        assert!(ticks.last().unwrap() - epoch_s(&out) > 3.7);
    }
}

#[test]
fn cpu_fault_cuts_the_measured_cpu() {
    require!("cpu_fault_cuts_the_measured_cpu", need_root());
    let tmp = tempfile::tempdir().unwrap();
    let yaml = r#"
name: cpu
tdf: 1
duration: 7s
nodes:
  - name: spin
    cpus: 0.4
    memory: 64MiB
    run: {command: "while :; do :; done"}
faults:
  - {at: 3s, cpu: spin, fraction: 0.25, for: 3s}
"#;
    let (r, out) = run(tmp.path(), "cpu", yaml, &[]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let csv = std::fs::read_to_string(out.join("nodes.csv")).unwrap();
    let rows: Vec<(f64, f64)> = csv
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse().unwrap(), f[2].parse().unwrap())
        })
        .collect();
    let mean = |lo: f64, hi: f64| {
        let v: Vec<f64> = rows.iter().filter(|(t, _)| *t > lo && *t <= hi).map(|r| r.1).collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    // Rows are the interval ending at t; skip the intervals the switch falls into.
    let (before, during, after) = (mean(1.5, 3.0), mean(4.5, 6.0), mean(6.5, 7.5));
    println!("cpu: perceived CPU {before:.3} before, {during:.3} at fraction 0.25, {after:.3} after");
    let ev = events(&out);
    let set = find(&ev, "node_state", "state", "cpu");
    assert_eq!(set["quota_us"], 10_000, "{set}");
    assert!(during <= 0.25 * 1.15, "during {during}");
    assert!(before >= 2.0 * during, "before {before} vs during {during} (host busy?)");
}

#[test]
fn clock_step_and_skew_move_a_nodes_clock() {
    require!("clock_step_and_skew_move_a_nodes_clock", need_root(), need_tool("python3"));
    let tmp = tempfile::tempdir().unwrap();
    let p = script(tmp.path(), "ticker.py", TICKER);
    for tdf in [1.0, 4.0] {
        let yaml = format!(
            r#"
name: clock
tdf: {tdf}
duration: 4s
defaults: {{cpus: 0.3, memory: 64MiB, ready: {{command: [test, -s, ticks], timeout: 30s}}}}
nodes:
  - name: ref
    run: {{command: [python3, "{p}"]}}
  - name: stepped
    run: {{command: [python3, "{p}"]}}
  - name: skewed
    run: {{command: [python3, "{p}"]}}
faults:
  - {{at: 2s, clock: stepped, step: 5s}}
  - {{at: 2s, clock: skewed, skew: 2, for: 1s}}
"#
        );
        let (r, out) = run(tmp.path(), &format!("clock{tdf}"), &yaml, &[]);
        assert_eq!(r.code, Some(0), "{r:?}");
        let last = |n: &str| *ticks(&out, n).last().unwrap();
        let (step, skew) = (last("stepped") - last("ref"), last("skewed") - last("ref"));
        let (gap, at) = largest_gap(&ticks(&out, "stepped"), epoch_s(&out));
        println!("clock at TDF {tdf}: stepped node ahead by {step:.3} s (jump of {gap:.3} s at {at:.3}), skewed node ahead by {skew:.3} s after 1 s at rate 2");
        assert!((step - 5.0).abs() < 0.15, "TDF {tdf}: step {step}");
        assert!((gap - 5.0).abs() < 0.15 && (at - 2.0).abs() < 0.1, "TDF {tdf}: jump {gap} at {at}");
        assert!((skew - 1.0).abs() < 0.15, "TDF {tdf}: skew drift {skew}");
        let ev = events(&out);
        let st = ev.iter().find(|e| e["kind"] == "node_state" && e["node"] == "skewed").unwrap();
        assert!((st["tdf"].as_f64().unwrap() - tdf / 2.0).abs() < 1e-9, "{st}");
    }
}

/// A client and a server on one switch, pinging every 50 ms; returns the results directory.
fn network_run(tmp: &Path, name: &str, faults: &str, extra: &[&str]) -> PathBuf {
    let p = script(tmp, "udp.py", UDP);
    let yaml = format!(
        r#"
name: {name}
tdf: 1
duration: 8s
defaults: {{cpus: 0.3, memory: 64MiB}}
switches: [sw]
nodes:
  - name: server
    run: {{command: [python3, "{p}", echo]}}
    link: {{to: sw, delay: 2ms}}
  - name: client
    depends_on: [server]
    run: {{command: [python3, "{p}", watch, server]}}
    ready: {{command: [grep, -q, ok, stdout], timeout: 30s}}
    link: {{to: sw, delay: 2ms}}
faults:
{faults}
"#
    );
    let (r, out) = run(tmp, name, &yaml, extra);
    assert_eq!(r.code, Some(0), "{r:?}");
    out
}

/// `(t_virtual_s since the epoch, Some(rtt_ms) | None)` per ping.
fn pings(out: &Path) -> Vec<(f64, Option<f64>)> {
    let epoch = epoch_s(out);
    std::fs::read_to_string(out.join("nodes/client/stdout"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let t = f.first()?.parse::<f64>().ok()? - epoch;
            Some((t, if f.get(1) == Some(&"ok") { f.get(2)?.parse().ok() } else { None }))
        })
        .collect()
}

/// (answered, lost) pings with send time in (lo, hi).
fn count(p: &[(f64, Option<f64>)], lo: f64, hi: f64) -> (usize, usize) {
    let w: Vec<_> = p.iter().filter(|(t, _)| *t > lo && *t < hi).collect();
    (w.iter().filter(|x| x.1.is_some()).count(), w.iter().filter(|x| x.1.is_none()).count())
}

fn median_rtt(p: &[(f64, Option<f64>)], lo: f64, hi: f64) -> f64 {
    let mut v: Vec<f64> = p.iter().filter(|(t, _)| *t > lo && *t < hi).filter_map(|x| x.1).collect();
    assert!(!v.is_empty(), "no answered pings in ({lo}, {hi})");
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn link_down_and_partition_cut_then_restore_traffic() {
    require!("link_down_and_partition_cut_then_restore_traffic", need_root(), need_tool("python3"));
    let tmp = tempfile::tempdir().unwrap();
    let out = network_run(
        tmp.path(),
        "cut",
        "  - {at: 2s, link_down: server--sw, for: 1s}\n  - {at: 4s, partition: [[client], [server]]}\n  - {at: 5s, heal: true}\n  - {at: 6s, kill: server, for: 0.2s}\n",
        // Fidelity: an impossible lateness threshold must flag the run.
        &["--late-threshold", "1ns"],
    );
    let p = pings(&out);
    let windows = [(1.3, 1.95), (2.1, 2.85), (3.2, 3.9), (4.1, 4.85), (5.2, 5.9)];
    let c: Vec<(usize, usize)> = windows.iter().map(|(a, b)| count(&p, *a, *b)).collect();
    println!("link/partition: (answered, lost) per window up, down, up, partitioned, healed: {c:?}");
    for (i, (ok, lost)) in c.iter().enumerate() {
        if i % 2 == 0 {
            // A reply slower than the 150 ms timeout on a busy host counts as lost.
            assert!(*ok >= 5 && *lost <= 2, "window {i} should pass: {c:?}");
        } else {
            assert!(*ok == 0 && *lost >= 3, "window {i} should be cut: {c:?}");
        }
    }
    // A restarted node keeps its network namespace (its TUN device and address): the echo
    // server answers again once its interpreter is up.
    let (ok_down, lost_down) = count(&p, 6.0, 6.2);
    let (ok_back, _) = count(&p, 7.4, 8.0);
    println!("link/partition: server killed at 6 s: ({ok_down}, {lost_down}) answered/lost while down, {ok_back} answered in (7.4, 8.0)");
    assert!(ok_down == 0 && lost_down >= 1 && ok_back >= 5, "{p:?}");
    let ev = events(&out);
    assert!(ev.iter().any(|e| e["kind"] == "link_state" && e["link"] == "server--sw" && e["state"] == "down"));
    assert!(ev.iter().any(|e| e["kind"] == "link_state" && e["link"] == "server--sw" && e["state"] == "up"));
    assert!(ev.iter().any(|e| e["kind"] == "link_state" && e["state"] == "partitioned"));
    let heal = find(&ev, "recover", "fault", "heal");
    assert!((t(heal) - 5.0).abs() < 0.05);
    let fidelity = &run_json(&out)["fidelity"];
    assert_eq!(fidelity["verdict"], "unfaithful", "{fidelity}");
    assert!(fidelity["flags"].as_array().unwrap().iter().any(|f| f["kind"] == "network_late"), "{fidelity}");
}

#[test]
fn degrade_and_inflate_add_delay() {
    require!("degrade_and_inflate_add_delay", need_root(), need_tool("python3"));
    let tmp = tempfile::tempdir().unwrap();
    let out = network_run(
        tmp.path(),
        "delay",
        "  - {at: 2s, degrade: server--sw, delay: 20ms, for: 1s}\n  - {at: 4s, inflate: server, delay: 10ms, for: 1s}\n",
        &[],
    );
    let p = pings(&out);
    let first = median_rtt(&p, 1.3, 1.95);
    let degraded = median_rtt(&p, 2.1, 2.9);
    let between = median_rtt(&p, 3.2, 3.9);
    let inflated = median_rtt(&p, 4.1, 4.9);
    let after = median_rtt(&p, 5.2, 5.9);
    println!(
        "degrade/inflate: median RTT {first:.2} ms before, {degraded:.2} degraded (+20 ms each way), {between:.2} restored, {inflated:.2} inflated (+10 ms), {after:.2} restored"
    );
    // The base is the undegraded RTT after each undo (the first window, right after the
    // client starts, is the noisiest on a busy host): 2 links × 2 ms each way = 8 ms, plus
    // the Python pinger's and echo server's own CPU on their paced 0.3-cpu nodes (1–3 ms;
    // 9.2–11.1 ms measured). The faults are judged by what they add to it.
    let base = (between + after) / 2.0;
    assert!((7.0..13.0).contains(&base), "base {base}");
    assert!((degraded - base - 40.0).abs() < 4.0, "degraded {degraded} vs {base}");
    assert!((inflated - base - 10.0).abs() < 3.0, "inflated {inflated} vs {base}");
    let ev = events(&out);
    assert!(ev.iter().any(|e| e["kind"] == "link_state" && e["state"] == "degraded" && e["link"] == "server--sw"));
    assert!(ev.iter().any(|e| e["kind"] == "link_state" && e["state"] == "restored"));
}

#[test]
fn load_fault_writes_the_control_file_at_its_time() {
    require!("load_fault_writes_the_control_file_at_its_time", need_root());
    let tmp = tempfile::tempdir().unwrap();
    let yaml = r#"
name: load
tdf: 2
duration: 2s
nodes:
  - name: client
    cpus: 0.2
    memory: 64MiB
    run: {command: [sleep, "100"]}
"#;
    let scenario = tmp.path().join("load.yaml");
    std::fs::write(&scenario, "faults:\n  - {at: 1s, load: client, rate: 250, name: surge}\n").unwrap();
    let (r, out) = run(tmp.path(), "loadrun", yaml, &["--scenario", scenario.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let ctl: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("nodes/client/loadgen.ctl")).unwrap()).unwrap();
    assert_eq!(ctl, serde_json::json!({"rate": 250.0}));
    let ev = events(&out);
    let f = find(&ev, "fault", "fault", "load");
    assert_eq!(
        (f["id"].as_str(), f["name"].as_str(), f["rate"].as_f64()),
        (Some("scenario.faults[0]"), Some("surge"), Some(250.0))
    );
    println!("load: loadgen.ctl written at {:.4} s virtual (TDF 2)", t(f));
    assert!((t(f) - 1.0).abs() < 0.03, "{f}");
}

#[test]
fn an_invalid_scenario_is_refused_before_anything_starts() {
    require!("an_invalid_scenario_is_refused_before_anything_starts", need_root());
    let tmp = tempfile::tempdir().unwrap();
    let topo = topology(tmp.path(), "t", "name: t\nnodes:\n  - name: a\n    run: {command: [sleep, '1']}\n");
    let scenario = tmp.path().join("bad.yaml");
    std::fs::write(&scenario, "faults:\n  - at: 1s\n    kill: ghost\n  - {at: 1s, link_down: x}\n").unwrap();
    let out = tmp.path().join("never");
    let r = diorama(&[
        "run",
        topo.to_str().unwrap(),
        "--scenario",
        scenario.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    println!("invalid scenario: {}", r.stderr.trim());
    assert_eq!(r.code, Some(3), "{r:?}");
    let s = scenario.display();
    assert!(r.stderr.contains(&format!("{s}:3:11: faults[0].kill: unknown node or group \"ghost\"")), "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("{s}:4:14: faults[1].link_down: `link_down` needs the emulated network")),
        "{}",
        r.stderr
    );
    assert!(!out.exists(), "nothing is created for a refused scenario");
    assert_nothing_left(&out);
    // The same faults inside a topology are refused by `diorama check` too.
    let bad = topology(
        tmp.path(),
        "b",
        "name: b\nnodes:\n  - name: a\n    run: {command: [sleep, '1']}\nfaults:\n  - {at: 2s, resume: a}\n",
    );
    let r = diorama(&["check", bad.to_str().unwrap()]);
    assert_eq!(r.code, Some(3), "{r:?}");
    assert!(r.stderr.contains("b.yaml:6:14: faults[0].resume: undo before do"), "{}", r.stderr);
}

#[test]
fn fidelity_flags_a_node_without_the_clock_shim() {
    require!("fidelity_flags_a_node_without_the_clock_shim", need_root(), need_tool("gcc"));
    let tmp = tempfile::tempdir().unwrap();
    // A statically linked program: LD_PRELOAD cannot load the shim into it.
    let src = tmp.path().join("static.c");
    std::fs::write(&src, "#include <unistd.h>\nint main(void) { sleep(30); return 0; }\n").unwrap();
    let exe = tmp.path().join("static-sleep");
    let cc = std::process::Command::new("gcc").args(["-static", "-O2", "-o"]).arg(&exe).arg(&src).status().unwrap();
    if !cc.success() {
        diorama_tests::skip(
            "fidelity_flags_a_node_without_the_clock_shim",
            "gcc cannot link statically (libc.a missing)",
        );
        return;
    }
    // Run directly, the static program gets the syscall trap (`etcd_topology` tests that);
    // behind a script file the rule sees only the script's interpreter (the shim), whose
    // exec hook hands the static program to the trap — unless the environment names no trap,
    // as here: it runs undilated, and the monitor must flag it.
    let wrapper = tmp.path().join("start");
    std::fs::write(&wrapper, format!("#!/bin/sh\nexec env -u DILATION_TRAP {}\n", exe.display())).unwrap();
    std::process::Command::new("chmod").args(["755", wrapper.to_str().unwrap()]).status().unwrap();
    let yaml = format!(
        "name: static\ntdf: 1\nduration: 3s\nnodes:\n  - name: frozen-clock\n    cpus: 0.2\n    memory: 64MiB\n    run: {{command: [\"{}\"]}}\n",
        wrapper.display()
    );
    let (r, out) = run(tmp.path(), "static", &yaml, &[]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let run = run_json(&out);
    assert_eq!(run["nodes"][0]["shim_loaded"], false, "{}", run["nodes"]);
    let f = &run["fidelity"];
    assert_eq!(f["verdict"], "unfaithful");
    let flag =
        f["flags"].as_array().unwrap().iter().find(|x| x["kind"] == "shim_missing").expect("a shim_missing flag");
    assert_eq!(flag["node"], "frozen-clock");
    let undilated =
        f["flags"].as_array().unwrap().iter().find(|x| x["kind"] == "undilated").expect("an undilated flag");
    assert_eq!(undilated["node"], "frozen-clock");
    assert!(undilated["detail"].as_str().unwrap().contains("static-sleep"), "{undilated}");
    assert!(
        r.stderr.contains("fidelity: UNFAITHFUL") && r.stderr.contains("shim_missing frozen-clock"),
        "{}",
        r.stderr
    );
    println!("fidelity: {}", serde_json::to_string(f).unwrap());
}
