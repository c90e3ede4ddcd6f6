//! Nothing of a run remains: after a clean run, after Ctrl-C, and after `kill -9` of the
//! harness followed by `diorama clean` or by the next run (root).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diorama_tests::{artifact, diorama, leftovers, need_root, require, topology};

const TOPO: &str = r#"
name: sleepers
tdf: 1
defaults: {cpus: 0.1, memory: 64MiB}
nodes:
  - name: svc[0..3]
    run: {command: "sleep 600"}
  - name: client
    depends_on: [svc]
    run: {command: "sleep 600"}
"#;

/// Starts a run in the background and waits until all its nodes are up.
fn start(dir: &std::path::Path) -> Child {
    let topo = topology(dir, "sleepers", TOPO);
    let mut child = Command::new(artifact("diorama"))
        .args(["run", topo.to_str().expect("utf-8 path"), "--out", dir.join("results").to_str().expect("utf-8 path")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start diorama");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let procs = leftovers().iter().filter(|l| l.starts_with("process") && l.contains("diorama:client")).count();
        if procs > 0 {
            return child;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Stop the harness before failing, so the failure leaves nothing behind.
    let _ = child.kill();
    let _ = child.wait();
    let _ = diorama(&["clean"]);
    panic!("nodes did not come up: {:?}", leftovers());
}

fn wait_gone(timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = leftovers();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ctrl_c_stops_the_run_and_leaves_nothing() {
    require!("ctrl_c_stops_the_run_and_leaves_nothing", need_root());
    let tmp = tempfile::tempdir().unwrap();
    let mut child = start(tmp.path());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "an interrupted run is not a success");
    let left = wait_gone(Duration::from_secs(5));
    assert!(left.is_empty(), "left behind after Ctrl-C: {left:?}");
    let run = diorama_tests::run_json(&tmp.path().join("results"));
    assert_eq!(run["interrupted"], true);
}

#[test]
fn kill_9_then_clean_leaves_nothing() {
    require!("kill_9_then_clean_leaves_nothing", need_root());
    let tmp = tempfile::tempdir().unwrap();
    let mut child = start(tmp.path());
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    // The nodes die with the harness (PR_SET_PDEATHSIG); their cgroups and the state remain.
    let left = wait_gone(Duration::from_secs(5));
    assert!(left.iter().all(|l| !l.starts_with("process")), "node processes survived the harness: {left:?}");
    assert!(!left.is_empty(), "expected cgroups/state to remain for `diorama clean` to find");
    let r = diorama(&["clean"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let left = leftovers();
    assert!(left.is_empty(), "left behind after kill -9 + clean: {left:?}");
    assert_eq!(diorama(&["clean", "--check"]).code, Some(0));
}

#[test]
fn the_next_run_sweeps_what_a_killed_run_left() {
    require!("the_next_run_sweeps_what_a_killed_run_left", need_root());
    let tmp = tempfile::tempdir().unwrap();
    let mut child = start(tmp.path());
    child.kill().unwrap();
    child.wait().unwrap();
    let left = wait_gone(Duration::from_secs(5));
    assert!(!left.is_empty(), "expected cgroups/state of the killed run");
    let topo = topology(
        tmp.path(),
        "short",
        "name: short\ntdf: 1\nduration: 1s\nnodes:\n  - name: a\n    run: {command: \"true\"}\n",
    );
    let r = diorama(&["run", topo.to_str().unwrap(), "--out", tmp.path().join("next").to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let swept = r.stderr.lines().find(|l| l.contains("cleaned what dead runs left:")).unwrap_or_default();
    assert!(swept.split([' ', ',']).any(|w| w == "results"), "the killed run is not named as swept: {r:?}");
    let left = leftovers();
    assert!(left.is_empty(), "left behind after the next run: {left:?}");
}

#[test]
fn a_clean_run_leaves_nothing() {
    require!("a_clean_run_leaves_nothing", need_root());
    let tmp = tempfile::tempdir().unwrap();
    let topo = topology(
        tmp.path(),
        "short",
        "name: short\ntdf: 1\nduration: 1s\ndefaults: {cpus: 0.1}\nnodes:\n  - name: a[0..3]\n    run: {command: \"sleep 600\"}\n",
    );
    let r = diorama(&["run", topo.to_str().unwrap(), "--out", tmp.path().join("results").to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(leftovers().is_empty(), "{:?}", leftovers());
}

#[test]
fn clean_removes_an_empty_parent_cgroup() {
    require!("clean_removes_an_empty_parent_cgroup", need_root());
    // What a run that died between creating `diorama/` and its own directory leaves.
    let parent = std::path::Path::new("/sys/fs/cgroup/pids/diorama");
    if !std::path::Path::new("/sys/fs/cgroup/pids/cgroup.procs").exists() {
        return diorama_tests::skip("clean_removes_an_empty_parent_cgroup", "no cgroup v1 pids hierarchy here");
    }
    assert!(leftovers().is_empty(), "{:?}", leftovers());
    std::fs::create_dir(parent).unwrap();
    let r = diorama(&["clean", "--check"]);
    assert_ne!(r.code, Some(0), "an empty parent is a leftover: {r:?}");
    assert!(r.stderr.contains("empty parent") || r.stdout.contains("empty parent"), "{r:?}");
    assert_eq!(diorama(&["clean"]).code, Some(0));
    assert!(!parent.exists());
    assert!(leftovers().is_empty(), "{:?}", leftovers());
}
