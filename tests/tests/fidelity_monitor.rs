//! The fidelity monitor neither cries wolf nor sleeps through an overload (issue 10): the same
//! small run on a host left alone reports `fidelity: ok`, and beside a CPU hog that takes
//! every core it is flagged unfaithful, naming the host or the starved node.
#![expect(clippy::unwrap_used, reason = "helpers of a test fail it loudly, like the test itself")]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use diorama_tests::{diorama, need_root, need_tool, require, run_json, topology};

/// A node that wants half a core for 4 s (a paced Python loop), and a client that waits.
const YAML: &str = r#"
name: NAME
tdf: 1
duration: 20s
defaults: {cpus: 0.5, memory: 96MiB}
nodes:
  - name: worker
    main: true
    run: {command: ["python3", "-c", "import time\nt = time.monotonic()\nwhile time.monotonic() - t < 4:\n    sum(range(20000))\n"]}
"#;

fn run(dir: &std::path::Path, name: &str) -> serde_json::Value {
    let topo = topology(dir, name, &YAML.replace("NAME", name));
    let out = dir.join(name);
    let r = diorama(&["run", topo.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{r:?}");
    run_json(&out)["fidelity"].clone()
}

#[test]
fn a_quiet_run_is_ok_and_an_overloaded_one_is_flagged() {
    const T: &str = "a_quiet_run_is_ok_and_an_overloaded_one_is_flagged";
    require!(T, need_root(), need_tool("python3"));
    let dir = tempfile::tempdir().unwrap();

    let quiet = run(dir.path(), "monitor-quiet");
    println!("alone: {quiet}");
    assert_eq!(quiet["verdict"], "ok", "the monitor cried wolf on a run left alone: {quiet}");

    // Two spinning threads per core, in this (unconfined) process: the node's half core
    // competes with four runnable hogs.
    let stop = Arc::new(AtomicBool::new(false));
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let hogs: Vec<_> = (0..2 * cores)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
        })
        .collect();
    let loaded = run(dir.path(), "monitor-hog");
    stop.store(true, Ordering::Relaxed);
    for h in hogs {
        h.join().unwrap();
    }
    println!("beside {} hogs: {loaded}", 2 * cores);
    assert_eq!(loaded["verdict"], "unfaithful", "an overloaded host went unflagged: {loaded}");
    let kinds: Vec<&str> = loaded["flags"].as_array().unwrap().iter().filter_map(|f| f["kind"].as_str()).collect();
    assert!(
        kinds.iter().any(|k| *k == "host_cpu_saturated" || *k == "node_quota_not_met"),
        "the flags name neither the host nor the node: {kinds:?}"
    );
}
