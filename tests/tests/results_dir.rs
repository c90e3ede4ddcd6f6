//! Results directories are safe: one run per directory (a second is refused with exit 2
//! while the first runs), the lock ends with the harness on Ctrl-C and on `kill -9`, a used
//! directory is refused unless `--force` moves its content aside, and `clean --check` after
//! a `kill -9` lists each cgroup once; a run that fails during its setup leaves a finished,
//! failed run, not one that looks in progress. Needs root.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diorama_tests::{artifact, diorama, leftovers_of, need_root, run_json, skip, topology, undilatable_topology};

fn start(t: &Path, out: &Path) -> Child {
    Command::new(artifact("diorama"))
        .arg("run")
        .arg(t)
        .arg("--out")
        .arg(out)
        .env("DIORAMA_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start diorama run")
}

/// Waits until `path` exists (the run has claimed its directory, or its nodes are up).
fn wait_for(path: &Path, within: Duration) {
    let deadline = Instant::now() + within;
    while !path.exists() {
        assert!(Instant::now() < deadline, "{} did not appear", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

const SLEEPER: &str =
    "name: sleeper\ntdf: 1\nduration: 30s\nnodes:\n  - name: a\n    cpus: 0.1\n    memory: 32MiB\n    run: {command: [sleep, \"60\"]}\n";

#[test]
fn a_second_run_is_refused_and_ctrl_c_releases_the_directory() {
    if let Err(reason) = need_root() {
        return skip("a_second_run_is_refused_and_ctrl_c_releases_the_directory", &reason);
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = topology(tmp.path(), "sleeper", SLEEPER);
    let out = tmp.path().join("shared");
    let mut first = start(&t, &out);
    wait_for(&out.join("run.json"), Duration::from_secs(20));
    let r = diorama(&["run", t.to_str().unwrap(), "--out", out.to_str().unwrap(), "--force"]);
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("another diorama is writing into this directory"), "{}", r.stderr);
    assert!(r.stderr.contains(&format!("(pid {})", first.id())), "{}", r.stderr);
    // Ctrl-C: the first run stops in order and its lock goes with it.
    wait_for(&out.join("nodes"), Duration::from_secs(20));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let status = first.wait().unwrap();
    assert_eq!(status.code(), Some(1), "an interrupted run fails");
    let r = diorama(&["run", t.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("already holds a run") && r.stderr.contains("--force"), "{}", r.stderr);
    // --force: the old run is moved aside whole, the new one starts from nothing.
    let r = diorama(&["run", t.to_str().unwrap(), "--out", out.to_str().unwrap(), "--force", "--duration", "1s"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let aside = moved_aside(tmp.path(), "shared");
    assert_eq!(aside.len(), 1, "{:?}", std::fs::read_dir(tmp.path()).unwrap().collect::<Vec<_>>());
    assert!(aside[0].join("run.json").is_file());
    for line in std::fs::read_to_string(out.join("events.jsonl")).unwrap().lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    let run = run_json(&out);
    assert_eq!(run["status"], "succeeded", "the stub was not replaced: {run}");
    assert!(run.get("pid").is_none(), "the stub was not replaced: {run}");
    assert!(leftovers_of(&out).is_empty(), "{:?}", leftovers_of(&out));
}

#[test]
fn kill_9_frees_the_directory_and_clean_lists_each_cgroup_once() {
    if let Err(reason) = need_root() {
        return skip("kill_9_frees_the_directory_and_clean_lists_each_cgroup_once", &reason);
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = topology(tmp.path(), "sleeper", SLEEPER);
    let out = tmp.path().join("killed");
    let mut harness = start(&t, &out);
    wait_for(&out.join("nodes"), Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(1));
    harness.kill().unwrap();
    harness.wait().unwrap();
    // The node still runs, but holds no lock: the directory is refused as used, not busy.
    let r = diorama(&["run", t.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(!r.stderr.contains("another diorama"), "{}", r.stderr);
    let id = "killed";
    let r = diorama(&["clean", "--check", id]);
    assert_eq!(r.code, Some(1), "{r:?}");
    // The cgroup's path alone: an orphan is listed with a " (no state)" suffix.
    let listed: Vec<&str> = r
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("left behind: cgroup "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(!listed.is_empty(), "{}", r.stderr);
    let mut unique = listed.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), listed.len(), "a cgroup listed twice: {}", r.stderr);
    let r = diorama(&["clean", id]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(leftovers_of(&out).is_empty(), "{:?}", leftovers_of(&out));
}

/// A moved-aside copy of `out` (`out.replaced-…`) in `dir`.
fn moved_aside(dir: &Path, out: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .expect("read the test's directory")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("{out}.replaced-")))
        .map(|e| e.path())
        .collect()
}

#[test]
fn a_run_that_fails_during_setup_ends_as_a_failed_run() {
    let test = "a_run_that_fails_during_setup_ends_as_a_failed_run";
    if let Err(reason) = need_root() {
        return skip(test, &reason);
    }
    let tmp = tempfile::tempdir().unwrap();
    // A node that no dilation mechanism reaches: the run refuses it while it sets up, after
    // it has claimed its directory and written the stub.
    let refused = undilatable_topology(tmp.path(), "undilatable", false);
    let out = tmp.path().join("failed-setup");
    let o = out.to_str().unwrap();
    let r = diorama(&["run", refused.to_str().unwrap(), "--out", o]);
    assert_eq!(r.code, Some(5), "setup failed (docs/cli.md): {r:?}");
    assert!(r.stderr.contains("node old cannot be dilated"), "{}", r.stderr);
    let run = run_json(&out);
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["success"], false, "{run}");
    let error = run["error"].as_str().unwrap_or_default();
    assert!(error.contains("node old cannot be dilated") && error.contains("another architecture"), "{run}");
    assert!(leftovers_of(&out).is_empty(), "{:?}", leftovers_of(&out));

    // The directory holds a finished run: refused as used (not as busy) without --force ...
    let sleeper = topology(tmp.path(), "sleeper", SLEEPER);
    let s = sleeper.to_str().unwrap();
    let r = diorama(&["run", s, "--out", o, "--duration", "1s"]);
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("already holds a run") && !r.stderr.contains("another diorama"), "{}", r.stderr);
    // ... and moved aside whole with it.
    let r = diorama(&["run", s, "--out", o, "--duration", "1s", "--force"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(run_json(&out)["status"], "succeeded");
    let aside = moved_aside(tmp.path(), "failed-setup");
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(run_json(&aside[0])["status"], "failed");
    assert!(leftovers_of(&out).is_empty(), "{:?}", leftovers_of(&out));
}
