//! Go nodes in a topology (root): `diorama run` gives every etcd member (Debian's etcd, a
//! Go program) and the `sh -c` client that runs etcdctl the syscall trap, records the
//! mechanism in `run.json`, and the leader kill of `topologies/etcd.yaml` yields a new
//! leader in virtual time. A node that no mechanism reaches is refused unless the topology
//! sets `allow_undilated`; a Go program the rule cannot see (behind a script file) is
//! handed to the trap by the shim's exec hook, and runs dilated.
//!
//! `etcd_leader_kill_agrees_at_tdf_1_and_10` is the fidelity experiment (TDF 1, TDF 10 and
//! the naive run, `DIORAMA_ETCD_REPS` kills each): a timing measurement, run only on a quiet
//! host with `DIORAMA_QUIET_HOST=1`.
#![expect(clippy::unwrap_used, reason = "test helpers fail loudly on a broken run")]

use std::path::{Path, PathBuf};

use diorama_tests::{
    diorama, leftovers_of, need_root, need_tool, repo_root, require, run_json, topology, undilatable_topology,
    zap_ts_ns, Outcome,
};
use serde_json::Value;

fn run(topo: &Path, out: &Path, extra: &[&str]) -> Outcome {
    let mut args = vec!["run", topo.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    diorama(&args)
}

/// "became leader" lines of every member, as virtual ns, sorted.
fn elections(results: &Path) -> Vec<i64> {
    let mut all: Vec<i64> = ["etcd1", "etcd2", "etcd3"]
        .iter()
        .flat_map(|m| {
            let log = std::fs::read_to_string(results.join("nodes").join(m).join("stderr")).unwrap_or_default();
            log.lines().filter(|l| l.contains("became leader at term")).filter_map(zap_ts_ns).collect::<Vec<_>>()
        })
        .collect();
    all.sort_unstable();
    all
}

/// The leader kill's virtual instant, from `events.jsonl` and `run.json`'s epoch.
fn kill_ns(results: &Path) -> Result<i64, String> {
    let run = run_json(results);
    let epoch_virt = run.pointer("/epoch/virt_ns").and_then(Value::as_i64).ok_or("no epoch in run.json")?;
    let events = std::fs::read_to_string(results.join("events.jsonl")).map_err(|e| e.to_string())?;
    let kill_s = events
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["kind"] == "fault" && e["fault"] == "kill")
        .and_then(|e| e["t_virtual_s"].as_f64())
        .ok_or("no kill in events.jsonl")?;
    Ok(epoch_virt + (kill_s * 1e9) as i64)
}

/// Virtual seconds from the leader kill to the first "became leader" logged after it by
/// a member (the killed one logs nothing more).
fn time_to_new_leader(results: &Path) -> Result<f64, String> {
    let kill = kill_ns(results)?;
    elections(results)
        .into_iter()
        .find(|&ts| ts > kill)
        .map(|ts| (ts - kill) as f64 / 1e9)
        .ok_or_else(|| "no member became leader after the kill".into())
}

/// Elections nobody asked for: every "became leader" but the first one, the client's
/// leadership transfer (if it made one) and the first after the kill. A cluster that
/// keeps its leader under the load has none.
fn unforced_elections(results: &Path) -> usize {
    let transferred = std::fs::read_to_string(results.join("nodes/client/stdout"))
        .is_ok_and(|o| o.contains("Leadership transferred"));
    let expected = 1 + usize::from(transferred) + usize::from(time_to_new_leader(results).is_ok());
    elections(results).len().saturating_sub(expected)
}

/// The writer's successful puts: median latency in virtual ms, and how many failed.
fn writes(results: &Path) -> (Option<f64>, usize, usize) {
    let text = std::fs::read_to_string(results.join("nodes/writer/requests.csv")).unwrap_or_default();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (Some(lat), Some(status)) = (col("latency_ns"), col("status")) else { return (None, 0, 0) };
    let (mut ok, mut failed) = (Vec::new(), 0);
    for row in lines {
        let f: Vec<&str> = row.split(',').collect();
        match (f.get(status), f.get(lat).and_then(|l| l.parse::<f64>().ok())) {
            (Some(&"200"), Some(ns)) => ok.push(ns / 1e6),
            _ => failed += 1,
        }
    }
    let n = ok.len();
    ((!ok.is_empty()).then(|| median(&mut ok)), n, failed)
}

fn flags(run: &Value) -> Vec<Value> {
    run.pointer("/fidelity/flags").and_then(Value::as_array).cloned().unwrap_or_default()
}

#[test]
fn etcd_topology_traps_go_nodes_and_elects_a_new_leader() {
    let test = "etcd_topology_traps_go_nodes_and_elects_a_new_leader";
    require!(test, need_root(), need_tool("etcd"), need_tool("etcdctl"));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("etcd-out");
    let topo = repo_root().join("topologies/etcd.yaml");
    // TDF 5 keeps the test near a minute of wall time; the TDF 10 figures come from the
    // experiment below.
    let o = run(&topo, &out, &["--tdf", "5"]);
    assert_eq!(o.code, Some(0), "diorama run failed:\n{}", o.stderr);
    assert!(o.stderr.contains("dilation: trap for etcd1, etcd2, etcd3"), "the log names the mechanism:\n{}", o.stderr);
    let run = run_json(&out);
    for node in run["nodes"].as_array().unwrap() {
        // The Go programs get the trap; the writer (`sh` then diorama-loadgen) the shim.
        let expected = if node["name"] == "writer" { "shim" } else { "trap" };
        assert_eq!(node.pointer("/dilation/mechanism"), Some(&Value::from(expected)), "{node}");
        if let Some(check) = node.pointer("/dilation/clock_check").filter(|c| !c.is_null()) {
            assert_eq!(check["ok"], Value::Bool(true), "in-node clock check of {}: {check}", node["name"]);
        }
    }
    let checked =
        run["nodes"].as_array().unwrap().iter().filter(|n| n.pointer("/dilation/clock_check/ok").is_some()).count();
    assert!(checked >= 1, "the in-node clock check read at least one node: {}", run["nodes"]);
    let bad: Vec<Value> = flags(&run)
        .into_iter()
        .filter(|f| f["kind"] == "undilated" || f["kind"] == "clock_not_dilated" || f["kind"] == "shim_missing")
        .collect();
    assert!(bad.is_empty(), "every process of every node is dilated: {bad:?}");
    assert_eq!(run["allow_undilated"], Value::Bool(false));
    let t = time_to_new_leader(&out).unwrap();
    println!("etcd topology at TDF 5: new leader {t:.3} s virtual after the kill");
    // Election timeout 1000 ms randomized up to 2x, counted from the last heartbeat; a split
    // vote adds a round.
    assert!((0.85..=4.5).contains(&t), "time to a new leader {t:.3} s virtual");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("trap: etcd1, etcd2, etcd3, client"), "report.html shows the mechanisms");
    assert!(leftovers_of(&out).is_empty(), "{:?}", leftovers_of(&out));
}

#[test]
fn an_undilatable_node_is_refused_unless_the_topology_allows_it() {
    let test = "an_undilatable_node_is_refused_unless_the_topology_allows_it";
    require!(test, need_root());
    let dir = tempfile::tempdir().unwrap();
    let topo = undilatable_topology(dir.path(), "refused", false);
    let out = dir.path().join("refused-out");
    let o = run(&topo, &out, &[]);
    assert_ne!(o.code, Some(0));
    assert!(
        o.stderr.contains("node old cannot be dilated") && o.stderr.contains("another architecture"),
        "the refusal names the node and the reason:\n{}",
        o.stderr
    );
    assert!(leftovers_of(&out).is_empty(), "{:?}", leftovers_of(&out));

    // Allowed: the run gets past the refusal and records it; the fake binary then fails to
    // execute, which is the node's own failure.
    let topo = undilatable_topology(dir.path(), "allowed", true);
    let out = dir.path().join("allowed-out");
    let o = run(&topo, &out, &[]);
    assert!(!o.stderr.contains("cannot be dilated"), "{}", o.stderr);
    assert!(o.stderr.contains("dilation: undilated for old"), "{}", o.stderr);
    let run = run_json(&out);
    assert_eq!(run["allow_undilated"], Value::Bool(true));
    assert_eq!(run.pointer("/nodes/0/dilation/mechanism"), Some(&Value::from("undilated")));
    assert!(
        flags(&run).iter().any(|f| f["kind"] == "undilated" && f["node"] == "old"),
        "the verdict flags the node: {:?}",
        flags(&run)
    );
    assert!(leftovers_of(&out).is_empty(), "{:?}", leftovers_of(&out));
}

#[test]
fn a_go_program_behind_a_script_file_is_handed_to_the_trap() {
    let test = "a_go_program_behind_a_script_file_is_handed_to_the_trap";
    require!(test, need_root(), need_tool("etcd"));
    let dir = tempfile::tempdir().unwrap();
    // The rule classifies the script by its interpreter (/bin/sh: the shim); the etcd it
    // executes bypasses libc, so the shim's exec hook hands it to the trap.
    let script = dir.path().join("start-etcd");
    std::fs::write(&script, "#!/bin/sh\nexec etcd --data-dir data --logger zap --log-outputs stderr --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379\n").unwrap();
    std::process::Command::new("chmod").args(["755", script.to_str().unwrap()]).status().unwrap();
    let yaml = format!(
        "name: hidden-go\ntdf: 4\nduration: 3s\nnodes:\n  - name: kv\n    cpus: 0.4\n    memory: 256MiB\n    run: {{command: [\"{}\"]}}\n",
        script.display()
    );
    let topo = topology(dir.path(), "hidden-go", &yaml);
    let out = dir.path().join("hidden-go-out");
    let t0 = std::time::Instant::now();
    let o = run(&topo, &out, &[]);
    let real_s = t0.elapsed().as_secs_f64();
    assert!(o.stderr.contains("dilation: shim for kv"), "{}", o.stderr);
    let run = run_json(&out);
    let bad: Vec<Value> = flags(&run)
        .into_iter()
        .filter(|f| f["kind"] == "undilated" || f["kind"] == "clock_not_dilated" || f["kind"] == "shim_missing")
        .collect();
    assert!(bad.is_empty(), "etcd behind the script is dilated, not flagged: {bad:?}");
    // The harness's SIGTERM at the end (3 s virtual; sent to the node's process group, so
    // to the launcher and etcd) stopped etcd, which logged it in virtual time: 3 s after the
    // epoch and at most the run's real length ÷ TDF, where an undilated etcd would log the
    // real time since the epoch (~4 times more).
    let epoch_virt = run.pointer("/epoch/virt_ns").and_then(Value::as_i64).unwrap();
    let log = std::fs::read_to_string(out.join("nodes/kv/stderr")).unwrap();
    let stop = log
        .lines()
        .filter(|l| l.contains("received signal; shutting down"))
        .find_map(zap_ts_ns)
        .unwrap_or_else(|| panic!("etcd logged no SIGTERM:\n{log}"));
    let since_epoch = (stop - epoch_virt) as f64 / 1e9;
    println!("etcd stopped {since_epoch:.2} s virtual after the epoch, in a run of {real_s:.1} s real at TDF 4");
    assert!(
        (2.5..=real_s / 4.0 + 0.5).contains(&since_epoch),
        "etcd logged its stop {since_epoch:.2} s after the epoch in a run of {real_s:.1} s real"
    );
    assert!(leftovers_of(&out).is_empty(), "{:?}", leftovers_of(&out));
}

/// `topologies/etcd.yaml` as the naive run sees it: TDF 1, every CPU share and link rate
/// divided by `tdf` (what `diorama validate`'s naive leg does to a plan).
fn naive_topology(dir: &Path, tdf: f64) -> PathBuf {
    let text = std::fs::read_to_string(repo_root().join("topologies/etcd.yaml")).unwrap();
    let scaled: Vec<String> = text
        .lines()
        .map(|l| {
            let l = l.replace("tdf: 10", "tdf: 1").replace("rate: 1Gbit", &format!("rate: {}Mbit", 1000.0 / tdf));
            match (l.find("cpus: "), l.trim_start().starts_with('#')) {
                (Some(at), false) => {
                    let rest = &l[at + 6..];
                    let end = rest.find([',', '}']).unwrap_or(rest.len());
                    let cpus: f64 = rest[..end].trim().parse().unwrap();
                    format!("{}cpus: {}{}", &l[..at], cpus / tdf, &rest[end..])
                }
                _ => l,
            }
        })
        .collect();
    topology(dir, "etcd-naive", &scaled.join("\n"))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The experiment: time to a new leader after the leader kill, in virtual time,
/// at TDF 1 and TDF 10 (medians within 10 %) and in the naive run (TDF 1, resources ÷ 10).
/// A timing measurement: only with `DIORAMA_QUIET_HOST=1` (16 runs per leg by default, about
/// 32 minutes: a TDF 10 run takes about 85 s; the medians of fewer runs move by 10 % or more).
#[test]
fn etcd_leader_kill_agrees_at_tdf_1_and_10() {
    let test = "etcd_leader_kill_agrees_at_tdf_1_and_10";
    let quiet = || match std::env::var("DIORAMA_QUIET_HOST").as_deref() {
        Ok("1") => Ok(()),
        _ => Err("a fidelity measurement: set DIORAMA_QUIET_HOST=1 on a quiet host".to_owned()),
    };
    require!(test, quiet(), need_root(), need_tool("etcd"), need_tool("etcdctl"));
    let reps: usize = std::env::var("DIORAMA_ETCD_REPS").ok().and_then(|r| r.parse().ok()).unwrap_or(16);
    let dir = tempfile::tempdir().unwrap();
    let topo = repo_root().join("topologies/etcd.yaml");
    let naive = naive_topology(dir.path(), 10.0);
    let legs: [(&str, &Path, &str); 3] = [("tdf1", &topo, "1"), ("tdf10", &topo, "10"), ("naive", &naive, "1")];
    let mut results: Vec<(&str, Vec<f64>, usize)> = Vec::new();
    let (mut unforced, mut put_med) = (Vec::new(), Vec::new());
    for (leg, file, tdf) in legs {
        let mut times = Vec::new();
        let (mut failed, mut extra, mut puts) = (0, 0, Vec::new());
        for i in 0..reps {
            let out = dir.path().join(format!("{leg}-{i}"));
            let o = run(file, &out, &["--tdf", tdf]);
            // A run that ends at the safety-net duration (its client never saw a new
            // leader in time) fails, but a leader it logged still counts as a time.
            let t = time_to_new_leader(&out);
            let (p50, ok, bad) = writes(&out);
            let spurious = unforced_elections(&out);
            extra += spurious;
            println!(
                "{leg} #{i}: exit {:?}, new leader {t:?}, unforced elections {spurious}, puts {ok} ok / {bad} failed, p50 {p50:?} ms",
                o.code
            );
            if o.code != Some(0) {
                failed += 1;
            }
            if let Ok(t) = t {
                times.push(t);
            }
            puts.extend(p50);
        }
        let put_p50 = if puts.is_empty() { f64::NAN } else { median(&mut puts) };
        println!(
            "{leg}: {} kills timed, {failed} runs failed, {extra} unforced elections, put p50 (median of runs) {put_p50:.2} ms, times {times:?}",
            times.len()
        );
        results.push((leg, times, failed));
        unforced.push(extra);
        put_med.push(put_p50);
    }
    let med: Vec<f64> = results.iter_mut().map(|(_, t, _)| if t.is_empty() { f64::NAN } else { median(t) }).collect();
    println!(
        "time to a new leader (virtual s, median): TDF 1 {:.3}, TDF 10 {:.3}, naive {:.3}",
        med[0], med[1], med[2]
    );
    let scaled_err = (med[1] - med[0]) / med[0];
    let naive_err = (med[2] - med[0]) / med[0];
    println!("scaled vs TDF 1: {:+.1} %; naive vs TDF 1: {:+.1} %", scaled_err * 100.0, naive_err * 100.0);
    println!(
        "put p50 (virtual ms): TDF 1 {:.2}, TDF 10 {:.2}, naive {:.2}; unforced elections {unforced:?}",
        put_med[0], put_med[1], put_med[2]
    );
    assert!(results[0].2 == 0 && results[1].2 == 0, "every TDF 1 and TDF 10 run elects a new leader");
    assert!(unforced[0] == 0 && unforced[1] == 0, "TDF 1 and TDF 10 keep their leader under the load: {unforced:?}");
    assert!(scaled_err.abs() <= 0.10, "TDF 10 within 10 % of TDF 1: {:+.1} %", scaled_err * 100.0);
    assert!(
        results[2].2 > 0 || unforced[2] > 0 || naive_err.abs() > 0.10,
        "the naive run shows the difference (failed runs, unforced elections or > 10 % off): {:+.1} %",
        naive_err * 100.0
    );
}
