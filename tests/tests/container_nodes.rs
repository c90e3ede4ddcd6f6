//! System tests of node containers through `diorama run` (root): isolation, CPU quota,
//! memory limit, start order and readiness.

use diorama_tests::{diorama, leftovers, need_root, require, run_json, topology};

fn results(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join("results")
}

#[test]
fn node_sees_only_itself() {
    require!("node_sees_only_itself", need_root());
    let tmp = tempfile::tempdir().unwrap();
    let topo = topology(
        tmp.path(),
        "iso",
        r#"
name: iso
tdf: 1
nodes:
  - name: lonely
    main: true
    run:
      command: "hostname; echo PIDS $(ls /proc | grep -c '^[0-9]'); echo NETNS $(readlink /proc/self/ns/net); cat /etc/hosts"
"#,
    );
    let out = results(tmp.path());
    let r = diorama(&["run", topo.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let stdout = std::fs::read_to_string(out.join("nodes/lonely/stdout")).unwrap();
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("lonely"), "hostname: {stdout}");
    // PID 1 (__init), the shell, and the `ls` pipeline: a handful, never the host's hundreds.
    let pids: usize = stdout.lines().find_map(|l| l.strip_prefix("PIDS ")).unwrap().trim().parse().unwrap();
    assert!(pids <= 5, "node sees {pids} processes: {stdout}");
    let host_ns = std::fs::read_link("/proc/self/ns/net").unwrap();
    let node_ns = stdout.lines().find_map(|l| l.strip_prefix("NETNS ")).unwrap();
    assert_ne!(node_ns, host_ns.to_str().unwrap(), "node shares the host's network namespace");
    assert!(stdout.contains("localhost"), "{stdout}");
    assert!(leftovers().is_empty(), "{:?}", leftovers());
}

#[test]
fn cpu_quota_is_a_tenth_at_tdf_10() {
    require!("cpu_quota_is_a_tenth_at_tdf_10", need_root());
    let tmp = tempfile::tempdir().unwrap();
    let topo = topology(
        tmp.path(),
        "cpu",
        r#"
name: cpu
duration: 500ms
nodes:
  - name: burner
    cpus: 1
    run: {command: "while :; do :; done"}
"#,
    );
    let out = results(tmp.path());
    let r = diorama(&[
        "run",
        topo.to_str().unwrap(),
        "--tdf",
        "10",
        "--out",
        out.to_str().unwrap(),
        "--sample-every",
        "50ms",
    ]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let csv = std::fs::read_to_string(out.join("nodes.csv")).unwrap();
    let shares: Vec<f64> = csv
        .lines()
        .skip(1)
        .filter(|l| l.split(',').nth(1) == Some("burner"))
        .map(|l| l.split(',').nth(3).unwrap().parse().unwrap())
        .collect();
    assert!(shares.len() >= 5, "too few samples: {csv}");
    // The first interval includes the start-up; judge the steady state.
    let steady = &shares[1..];
    let mean = steady.iter().sum::<f64>() / steady.len() as f64;
    assert!((mean - 0.10).abs() <= 0.02, "CPU share {mean:.3} of a core, expected 0.10 ± 0.02: {shares:?}");
}

#[test]
fn memory_limit_kills_a_hog() {
    require!("memory_limit_kills_a_hog", need_root());
    let tmp = tempfile::tempdir().unwrap();
    let topo = topology(
        tmp.path(),
        "mem",
        r#"
name: mem
tdf: 1
nodes:
  - name: hog
    main: true
    memory: 64MiB
    run: {command: ["python3", "-c", "x = bytearray(256 * 1024 * 1024); print('survived')"]}
"#,
    );
    let out = results(tmp.path());
    let r = diorama(&["run", topo.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_ne!(r.code, Some(0), "a node past its memory limit must fail the run: {r:?}");
    let run = run_json(&out);
    let hog = &run["nodes"][0];
    assert_eq!(hog["exit"], 137, "expected SIGKILL by the OOM killer: {run}");
    let stdout = std::fs::read_to_string(out.join("nodes/hog/stdout")).unwrap_or_default();
    assert!(!stdout.contains("survived"));
    assert!(leftovers().is_empty(), "{:?}", leftovers());
}

#[test]
fn nodes_start_in_dependency_order_after_readiness() {
    require!("nodes_start_in_dependency_order_after_readiness", need_root());
    let tmp = tempfile::tempdir().unwrap();
    let topo = topology(
        tmp.path(),
        "order",
        r#"
name: order
tdf: 1
defaults: {cpus: 0.2}
nodes:
  - name: db
    run: {command: "sleep 0.5; exec python3 -m http.server 7000 --bind 127.0.0.1"}
    ready: {tcp: 7000}
  - name: app
    depends_on: [db]
    run: {command: "sleep 0.3; touch ready-flag; sleep 30"}
    ready: {command: "test -e ready-flag"}
  - name: client
    main: true
    depends_on: [app]
    run: {command: "echo started"}
"#,
    );
    let out = results(tmp.path());
    let r = diorama(&["run", topo.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let events = std::fs::read_to_string(out.join("events.jsonl")).unwrap();
    let order: Vec<(String, String)> = events
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["kind"] == "node_start" || e["kind"] == "node_ready")
        .map(|e| (e["kind"].as_str().unwrap().to_owned(), e["node"].as_str().unwrap().to_owned()))
        .collect();
    let pos = |kind: &str, node: &str| {
        order
            .iter()
            .position(|(k, n)| k == kind && n == node)
            .unwrap_or_else(|| panic!("{kind} {node} missing: {order:?}"))
    };
    assert!(pos("node_ready", "db") < pos("node_start", "app"), "{order:?}");
    assert!(pos("node_ready", "app") < pos("node_start", "client"), "{order:?}");
    assert_eq!(std::fs::read_to_string(out.join("nodes/client/stdout")).unwrap().trim(), "started");
    assert!(leftovers().is_empty(), "{:?}", leftovers());
}

#[test]
fn a_node_that_fails_to_start_names_itself_and_its_stderr() {
    require!("a_node_that_fails_to_start_names_itself_and_its_stderr", need_root());
    let tmp = tempfile::tempdir().unwrap();
    let topo = topology(
        tmp.path(),
        "fail",
        r#"
name: fail
tdf: 1
defaults: {cpus: 0.2}
nodes:
  - name: broken
    run: {command: "echo 'cannot open config: /etc/broken.conf' >&2; exit 3"}
    ready: {tcp: 9}
  - name: after
    depends_on: [broken]
    run: {command: "sleep 10"}
"#,
    );
    let out = results(tmp.path());
    let r = diorama(&["run", topo.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_ne!(r.code, Some(0));
    assert!(r.stderr.contains("broken"), "{}", r.stderr);
    assert!(r.stderr.contains("cannot open config"), "stderr tail missing: {}", r.stderr);
    assert!(leftovers().is_empty(), "{:?}", leftovers());
}

/// A node's own command finds diorama's tools beside the `diorama` that runs it (a driver
/// node calling `diorama-probe cli …`), even when they are not on the caller's PATH; the
/// host's PATH comes first.
#[test]
fn node_commands_find_diorama_s_tools() {
    require!("node_commands_find_diorama_s_tools", need_root());
    let tmp = tempfile::tempdir().unwrap();
    let topo = topology(
        tmp.path(),
        "tools",
        "name: tools\ntdf: 1\nnodes:\n  - name: a\n    main: true\n    run: {command: \"command -v diorama-probe; command -v sh\"}\n",
    );
    let out = results(tmp.path());
    let r = std::process::Command::new(diorama_tests::artifact("diorama"))
        .args(["run", topo.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let stdout = std::fs::read_to_string(out.join("nodes/a/stdout")).unwrap();
    let beside = diorama_tests::artifact("diorama-probe");
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some(beside.to_str().unwrap()), "{stdout}");
    assert!(lines.next().is_some_and(|l| l.starts_with("/usr/bin/") || l.starts_with("/bin/")), "{stdout}");
}
