//! System tests of CPU pacing (root): a node's CPU bursts take, in virtual time, as long
//! as on the original machine's core, burst by burst, not only on average.
//!
//! A calibrated burst (`tests/dilation/burst.c`, built here) of `w` ms of one host core runs
//! in a node; the node times it with its (dilated) monotonic clock. A CFS quota alone would
//! let a burst shorter than the quota run TDF times too fast (ratio 0.1 at TDF 10). The
//! bounds are generous (the host may be shared); `bench/cpu.sh` prints the precise figures.
//! The same probe linked statically runs under the syscall trap, whose tracer paces it
//! (`bench/cpu_trap.sh`).

use std::path::{Path, PathBuf};

use diorama_tests::{
    build_static_c, diorama, leftovers_of, need_root, need_tool, repo_root, require, run_json, skip, topology,
};

/// Builds the burst probe into `dir`.
fn build_probe(dir: &Path) -> PathBuf {
    let exe = dir.join("burst");
    let src = repo_root().join("tests/dilation/burst.c");
    let st = std::process::Command::new("gcc")
        .args(["-O2", "-pthread", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .expect("run gcc");
    assert!(st.success(), "gcc failed on {}", src.display());
    exe
}

/// Iterations of `w_ms` of CPU on this host, measured without dilation.
fn calibrate(probe: &Path, w_ms: f64) -> u64 {
    let out = std::process::Command::new(probe).args(["calibrate", &w_ms.to_string()]).output().expect("calibrate");
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("calibration prints a count")
}

/// Runs bursts of each of `widths` in one node (`cpus`, TDF `tdf`) and returns, per width,
/// the median virtual duration divided by the width.
fn burst_ratios(test: &str, tdf: &str, cpus: &str, widths: &[f64]) -> Vec<(f64, f64)> {
    ratios_of("run", test, tdf, cpus, widths)
}

/// As [`burst_ratios`], with `mode` `run` (one thread) or `pair` (two threads at once, the
/// duration until both are done).
fn ratios_of(mode: &str, test: &str, tdf: &str, cpus: &str, widths: &[f64]) -> Vec<(f64, f64)> {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let probe = build_probe(tmp.path());
    ratios_with(&probe, tmp.path(), mode, test, tdf, cpus, widths).0
}

/// As [`ratios_of`] with a given `probe` built in `dir`; also returns the node's mechanism
/// as `run.json` records it.
fn ratios_with(
    probe: &Path,
    dir: &Path,
    mode: &str,
    test: &str,
    tdf: &str,
    cpus: &str,
    widths: &[f64],
) -> (Vec<(f64, f64)>, String) {
    let script: Vec<String> =
        widths.iter().map(|w| format!("{} {mode} {} {w} 9 2", probe.display(), calibrate(probe, *w))).collect();
    let topo = topology(
        dir,
        test,
        &format!(
            "name: {test}\nduration: 600s\nnodes:\n  - name: cruncher\n    cpus: {cpus}\n    main: true\n    run: {{command: \"{}\"}}\n",
            script.join(" && ")
        ),
    );
    let out = dir.join("results");
    let r = diorama(&["run", &topo.to_string_lossy(), "--tdf", tdf, "--out", &out.to_string_lossy()]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(leftovers_of(&out).is_empty(), "{:?}", leftovers_of(&out));
    let stdout = std::fs::read_to_string(out.join("nodes/cruncher/stdout")).expect("the node's stdout");
    let mechanism =
        run_json(&out)["nodes"][0].pointer("/dilation/mechanism").and_then(|m| m.as_str()).map(str::to_owned);
    let ratios = widths
        .iter()
        .map(|w| {
            let mut v: Vec<f64> = stdout
                .lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    let tag = if mode == "pair" { "pair" } else { "burst" };
                    (f.len() >= 3 && f[0] == tag && f[1].parse::<f64>().ok() == Some(*w))
                        .then(|| f[2].parse().ok())
                        .flatten()
                })
                .collect();
            assert_eq!(v.len(), 9, "bursts of {w} ms in: {stdout}");
            v.sort_by(f64::total_cmp);
            (*w, v[4] / w)
        })
        .collect();
    (ratios, mechanism.unwrap_or_default())
}

#[test]
fn bursts_take_their_original_time_at_tdf_10() {
    require!("bursts_take_their_original_time_at_tdf_10", need_root(), need_tool("gcc"));
    let ratios = burst_ratios("pace10", "10", "1", &[0.1, 1.0, 10.0]);
    println!("TDF 10, cpus 1: virtual/expected at p50 {ratios:?}");
    for (w, r) in ratios {
        // Unpaced, a burst that fits in the quota takes 1/10 of its time.
        assert!((0.75..=1.4).contains(&r), "a {w} ms burst took {r:.3} of its original time at TDF 10");
    }
}

#[test]
fn a_half_core_node_runs_bursts_at_half_speed_at_tdf_1() {
    require!("a_half_core_node_runs_bursts_at_half_speed_at_tdf_1", need_root(), need_tool("gcc"));
    let ratios = burst_ratios("pacehalf", "1", "0.5", &[1.0, 10.0]);
    println!("TDF 1, cpus 0.5: virtual/expected at p50 {ratios:?}");
    for (w, r) in ratios {
        // cpus: 0.5 is a core of half the speed: a burst of w ms of a host core takes 2w.
        assert!((1.6..=2.6).contains(&r), "a {w} ms burst took {r:.3} of a host core's time, expected about 2");
    }
}

#[test]
fn two_threads_share_a_small_node_s_one_core() {
    require!("two_threads_share_a_small_node_s_one_core", need_root(), need_tool("gcc"));
    // cpus 0.5 is one core of half the speed: two threads computing w ms of a host core each
    // at once need 4w of it. Paced alone (before the node's ledger), each took 2w, since a
    // short burst fits in a CFS quota whatever the number of threads.
    let small = ratios_of("pair", "pairhalf", "10", "0.5", &[2.0, 10.0]);
    println!("TDF 10, cpus 0.5, two threads: virtual/expected-alone at p50 {small:?}");
    for (w, r) in small {
        assert!((3.2..=5.2).contains(&r), "two {w} ms bursts at once took {r:.3} w, expected about 4");
    }
    // cpus 2: each thread has a core of its own, the pair takes one burst's time.
    let big = ratios_of("pair", "pairtwo", "10", "2", &[2.0, 10.0]);
    println!("TDF 10, cpus 2, two threads: virtual/expected at p50 {big:?}");
    for (w, r) in big {
        assert!((0.75..=1.5).contains(&r), "two {w} ms bursts on two cores took {r:.3} w, expected about 1");
    }
}

#[test]
fn trapped_bursts_take_their_original_time_at_tdf_10() {
    const TEST: &str = "trapped_bursts_take_their_original_time_at_tdf_10";
    require!(TEST, need_root(), need_tool("gcc"));
    // Linked statically, the probe runs under the syscall trap, whose tracer paces it: the
    // shim cannot. Unpaced (before the tracer paced, or with DILATION_CPU_SPEED=1000 in the
    // node) the bursts took about a tenth of their time.
    let tmp = tempfile::tempdir().expect("temporary directory");
    let probe = match build_static_c(tmp.path(), "tests/dilation/burst.c", "burst-static") {
        Ok(p) => p,
        Err(why) => return skip(TEST, &why),
    };
    let (ratios, mechanism) = ratios_with(&probe, tmp.path(), "run", "pacetrap", "10", "1", &[1.0, 10.0]);
    println!("TDF 10, cpus 1, trapped: virtual/expected at p50 {ratios:?}");
    assert_eq!(mechanism, "trap", "the static probe runs under the trap");
    for (w, r) in ratios {
        // The trap's quantum (200 µs) leaves the tail of each burst unpaced: a 1 ms burst
        // takes 0.8–1 w plus the stops' lateness.
        assert!((0.6..=2.0).contains(&r), "a trapped {w} ms burst took {r:.3} of its original time at TDF 10");
    }
}
