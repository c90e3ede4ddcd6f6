//! The vDSO fast path of the syscall trap (decision 022): a Go program's `time.Now` and a
//! static C program's clock reads are dilated by injected code that the vDSO's symbols
//! point at, without a trap per read; a TDF change through the control page is followed
//! at once; where the injection fails the vDSO is hidden and reads are trapped instead.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dilation::control::ControlFile;
use dilation::{Epoch, TimeModel};
use diorama_tests::{artifact, build_go, build_static_c, need_root, need_tool, require, skip};

/// The value of `name=N` in the tracer's counters line.
fn counter(stats: &str, name: &str) -> u64 {
    stats.split_whitespace().find_map(|w| w.strip_prefix(name)?.strip_prefix('=')?.parse().ok()).unwrap_or(0)
}

/// Virtual ns per real ns over the samples `(real since start, virtual mono ns)`.
fn rate(samples: &[(Duration, i64)]) -> f64 {
    let (first, last) = (samples[0], samples[samples.len() - 1]);
    (last.1 - first.1) as f64 / (last.0 - first.0).as_nanos() as f64
}

#[test]
fn go_time_now_is_dilated_through_the_fast_path_and_follows_a_tdf_change() {
    require!("go_time_now_is_dilated_through_the_fast_path_and_follows_a_tdf_change", need_root());
    let tmp = tempfile::tempdir().unwrap();
    let exe = match build_go(tmp.path(), "tests/dilation/clockrate.go", "clockrate-go") {
        Ok(e) => e,
        Err(r) => return skip("go_time_now_is_dilated_through_the_fast_path_and_follows_a_tdf_change", &r),
    };
    let epoch = Epoch::now();
    let control = tmp.path().join("control");
    let cf = ControlFile::create(&control, &TimeModel::new(10.0, epoch).unwrap()).unwrap();
    let mut child = Command::new(artifact("dilation-trap"))
        .args(["--tdf", "10", "--epoch", &format!("{}:{}", epoch.real_ns, epoch.virt_ns), "--stats", "--control"])
        .arg(&control)
        .arg("--")
        .arg(&exe)
        .args(["1000", "10"])
        .env("DILATION_TRAP_VDSO", "fast")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let t0 = Instant::now();
    let reader = std::thread::spawn(move || {
        let mut samples = Vec::new();
        let mut reads = 0u64;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let at = t0.elapsed();
            let f: Vec<i64> = line.split_whitespace().skip(1).filter_map(|w| w.parse().ok()).collect();
            match (line.split_whitespace().next(), f.as_slice()) {
                (Some("t"), [mono, wall, _]) => samples.push((at, *mono, *wall)),
                (Some("reads"), [n]) => reads = *n as u64,
                _ => {}
            }
        }
        (samples, reads)
    });
    // 2 s of real time at TDF 10 (≈ 200 ms virtual), then TDF 2 for the remaining ≈ 800 ms
    // virtual (≈ 1.6 s real).
    std::thread::sleep(Duration::from_secs(2));
    let switched = t0.elapsed();
    cf.set_tdf(2.0).unwrap();
    let out = child.wait_with_output().unwrap();
    let stats = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    eprintln!("{stats}");
    assert!(out.status.success(), "{stats}");
    let (samples, reads) = reader.join().unwrap();
    let before: Vec<(Duration, i64)> = samples
        .iter()
        .filter(|s| s.0 + Duration::from_millis(100) < switched && s.0 > Duration::from_millis(300))
        .map(|s| (s.0, s.1))
        .collect();
    let after: Vec<(Duration, i64)> =
        samples.iter().filter(|s| s.0 > switched + Duration::from_millis(200)).map(|s| (s.0, s.1)).collect();
    assert!(
        before.len() >= 5 && after.len() >= 5,
        "too few samples: {} before, {} after the change",
        before.len(),
        after.len()
    );
    let (r10, r2) = (rate(&before), rate(&after));
    println!("time.Now advanced {r10:.4} virtual/real at TDF 10 and {r2:.4} at TDF 2 ({reads} reads)");
    assert!((r10 - 0.1).abs() < 0.01, "at TDF 10 time.Now advanced {r10} of real time");
    assert!((r2 - 0.5).abs() < 0.05, "after the change to TDF 2 it advanced {r2} of real time");
    let apart: Vec<(i64, i64)> =
        samples.iter().filter(|s| (s.1 - s.2).abs() >= 2_000_000).map(|s| (s.1, s.2)).collect();
    println!("{} of {} samples with wall and monotonic elapsed ≥ 2 ms apart: {apart:?}", apart.len(), samples.len());
    if std::env::var_os("DIORAMA_VDSO_AGREEMENT").is_some() {
        // Not asserted by default: the same Go program disagrees natively too (12–15 ms on
        // this VM, decision 022), so it is not the fast path's doing.
        assert!(apart.is_empty(), "wall and monotonic clocks disagree: {apart:?}");
    }
    // Through the fast path: the tracer served (almost) none of these reads.
    assert!(counter(&stats, "vdso_injected") >= 1, "{stats}");
    assert_eq!(counter(&stats, "vdso_fallbacks"), 0, "{stats}");
    assert_eq!(counter(&stats, "errors"), 0, "{stats}");
    assert!(reads >= 100_000, "the probe read the clock {reads} times");
    assert!(counter(&stats, "clock_reads") <= 20, "trapped clock reads: {stats}");

    // The old path, for contrast and to keep it working: every read is a trapped syscall.
    let out = Command::new(artifact("dilation-trap"))
        .args(["--tdf", "10", "--stats", "--"])
        .arg(&exe)
        .args(["30", "10"])
        .env("DILATION_TRAP_VDSO", "hide")
        .output()
        .unwrap();
    let stats = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert!(out.status.success(), "{stats}");
    let reads: u64 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("reads ")?.trim().parse().ok())
        .unwrap();
    assert_eq!(counter(&stats, "vdso_injected"), 0, "{stats}");
    assert!(counter(&stats, "clock_reads") >= reads, "hidden vDSO: each read trapped: {stats} for {reads} reads");
}

#[test]
fn where_the_injection_fails_the_vdso_is_hidden_and_time_still_dilated() {
    require!(
        "where_the_injection_fails_the_vdso_is_hidden_and_time_still_dilated",
        need_root(),
        need_tool("gcc"),
        need_tool("setpriv")
    );
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let exe = match build_static_c(tmp.path(), "tests/dilation/sleeps.c", "sleeps") {
        Ok(exe) => exe,
        Err(why) => return skip("where_the_injection_fails_the_vdso_is_hidden_and_time_still_dilated", &why),
    };
    // A control file only root may write: the program, run as nobody, cannot map it, so
    // its injection fails (setpriv itself, run as root, gets the fast path).
    let control = tmp.path().join("control");
    ControlFile::create(&control, &TimeModel::new(10.0, Epoch::now()).unwrap()).unwrap();
    std::fs::set_permissions(&control, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let t0 = Instant::now();
    let out = Command::new(artifact("dilation-trap"))
        .args(["--tdf", "10", "--stats", "--control"])
        .arg(&control)
        .args(["--", "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .args(["5", "1"])
        .env("DILATION_TRAP_VDSO", "fast")
        .env("DIORAMA_LOG", "warn")
        .output()
        .unwrap();
    let real = t0.elapsed();
    let stats = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    eprintln!("{stats}");
    assert!(out.status.success(), "{stats}");
    assert!(stats.contains("vDSO fast path failed"), "the fallback is logged: {stats}");
    assert_eq!(counter(&stats, "vdso_injected"), 1, "{stats}");
    assert_eq!(counter(&stats, "vdso_fallbacks"), 1, "{stats}");
    assert!(counter(&stats, "clock_reads") > 0, "the hidden vDSO's reads are trapped: {stats}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (mono, wall) = stdout
        .lines()
        .find_map(|l| {
            let f: Vec<i64> = l.strip_prefix("clock ")?.split_whitespace().filter_map(|w| w.parse().ok()).collect();
            Some((f[0], f[1]))
        })
        .expect("the probe's clock line");
    let expected = real.as_nanos() as f64 / 10.0;
    for v in [mono, wall] {
        let rel = v as f64 / expected;
        assert!((0.7..1.02).contains(&rel), "clocks advanced {v} ns over {expected} ns of real/TDF");
    }
}
