//! Every system call with a timeout or a clock that the syscall trap converts (issue 12),
//! made raw by a static C program (`tests/dilation/timeouts.c`) under `diorama exec --tdf 10`:
//! each wait of 20 ms of virtual time must last 20 ms on the program's own (dilated) clock
//! and TDF times that in real time (timed here from the program's line-buffered output);
//! the times the kernel hands back (remainders, timer read-backs, old timer values) must be
//! virtual. A call this kernel lacks is reported `SKIPPED` with its reason, never passed.
//!
//! The program also makes i386 calls (`int $0x80`) from its 64-bit code: the trap must
//! refuse the clock and timeout ones with `ENOSYS` (it converts x86-64 calls only) and pass
//! the others. A real 32-bit image needs `gcc -m32` (multilib), which CI does not install:
//! its exec path (4-byte auxv, vDSO hidden) is covered by the trap's unit tests only.
//!
//! Wall time: about 18 s (≈ 1.8 s of virtual waits at TDF 10, half of it `alarm`'s 1 s).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use diorama_tests::{artifact, build_static_c, need_root, need_tool, require, skip};

const TEST: &str = "every_timeout_syscall_is_dilated";
const TDF: f64 = 10.0;
/// Virtual time each wait asks for.
const REQ_MS: i64 = 20;
/// The whole run takes ~18 s; past this it hangs.
const DEADLINE: Duration = Duration::from_secs(60);

/// Waits that end by their timeout (`wait` lines).
const TIMEOUTS: &[&str] = &[
    "nanosleep",
    "clock_nanosleep_monotonic",
    "clock_nanosleep_realtime",
    "clock_nanosleep_boottime",
    "clock_nanosleep_monotonic_abstime",
    "clock_nanosleep_realtime_abstime",
    "futex_wait",
    "futex_wait_bitset_monotonic_abstime",
    "futex_wait_bitset_realtime_abstime",
    "futex_lock_pi_realtime_abstime",
    "futex_lock_pi2_monotonic_abstime",
    "futex_wait_requeue_pi_monotonic_abstime",
    "futex_waitv_monotonic_abstime",
    "futex_waitv_realtime_abstime",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "poll",
    "ppoll",
    "select",
    "pselect6",
    "timerfd_settime",
    "timerfd_settime_monotonic_abstime",
    "timerfd_settime_realtime_abstime",
    "timer_settime",
    "timer_settime_monotonic_abstime",
    "timer_settime_realtime_abstime",
    "setitimer",
    "alarm",
    "rt_sigtimedwait",
    "recvmmsg",
    "io_getevents",
    "io_pgetevents",
    "semtimedop",
    "mq_timedreceive_realtime_abstime",
    "mq_timedsend_realtime_abstime",
];

/// Waits that another thread ends halfway (`woken` lines).
const WOKEN: &[&str] =
    &["nanosleep_interrupted", "clock_nanosleep_interrupted", "ppoll_woken", "select_woken", "pselect6_woken"];

/// i386 calls and what the trap must make them return: `None` passes (the kernel's own
/// result, ≥ 0), `Some(-ENOSYS)` is refused.
const FOREIGN: &[(&str, Option<i64>)] = &[
    ("i386_getpid", None),
    ("i386_clock_gettime", Some(-38)),
    ("i386_clock_gettime_cputime", None),
    ("i386_nanosleep", Some(-38)),
    ("i386_gettimeofday", Some(-38)),
    ("i386_time", Some(-38)),
];

#[derive(Debug)]
struct Wait {
    asked: i64,
    elapsed: i64,
    real: Duration,
}

#[test]
fn every_timeout_syscall_is_dilated() {
    require!(TEST, need_root(), need_tool("gcc"));
    let tmp = tempfile::tempdir().unwrap();
    let exe = match build_static_c(tmp.path(), "tests/dilation/timeouts.c", "timeouts") {
        Ok(exe) => exe,
        Err(why) => return skip(TEST, &why),
    };
    let t_run = Instant::now();
    let mut child = Command::new(artifact("diorama"))
        .args(["exec", "--tdf", &TDF.to_string(), "--"])
        .arg(&exe)
        .arg(REQ_MS.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run diorama exec");
    // Each line with the real time it arrived (the program's stdout is line-buffered).
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    loop {
        match rx.recv_timeout(DEADLINE.saturating_sub(t_run.elapsed())) {
            Ok(l) => lines.push(l),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                let last: Vec<&str> = lines.iter().rev().take(3).map(|(_, l): &(Instant, String)| l.as_str()).collect();
                panic!("the program hung after {DEADLINE:?}; its last lines: {last:?}");
            }
        }
    }
    reader.join().unwrap();
    let out = child.wait_with_output().expect("wait for diorama exec");
    let wall = t_run.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let text: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    assert!(out.status.success(), "the program failed: {stderr}\n{}", text.join("\n"));
    assert!(stderr.contains("dilation: syscall trap (dilation-trap)"), "exec names the mechanism: {stderr}");
    assert_eq!(text.last().copied(), Some("done"), "the program ran to its end");
    assert!(!text.iter().any(|l| l.starts_with("error")), "a call failed:\n{}", text.join("\n"));

    let mut begun: BTreeMap<String, Instant> = BTreeMap::new();
    let mut waits: BTreeMap<String, Wait> = BTreeMap::new();
    let mut woken: BTreeMap<String, Wait> = BTreeMap::new();
    let mut values: Vec<(String, i64, i64)> = Vec::new();
    let mut skipped: BTreeMap<String, String> = BTreeMap::new();
    let mut foreign: BTreeMap<String, i64> = BTreeMap::new();
    for (at, line) in &lines {
        let w: Vec<&str> = line.split_whitespace().collect();
        let num =
            |i: usize| -> i64 { w.get(i).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad line {line:?}")) };
        match w.first().copied() {
            Some("begin") => {
                begun.insert(w[1].to_owned(), *at);
            }
            Some(kind @ ("wait" | "woken")) => {
                let name = w[1].to_owned();
                let start = begun.get(&name).unwrap_or_else(|| panic!("{name} ended without a begin"));
                let wait = Wait { asked: num(2), elapsed: num(3), real: at.duration_since(*start) };
                if kind == "wait" {
                    waits.insert(name, wait)
                } else {
                    woken.insert(name, wait)
                };
            }
            Some("value") => values.push((w[1].to_owned(), num(2), num(3))),
            Some("skip") => {
                skipped.insert(w[1].to_owned(), w[2..].join(" "));
            }
            Some("foreign") => {
                foreign.insert(w[1].to_owned(), num(2));
            }
            _ => {}
        }
    }

    // Every call was made or skipped with its reason.
    for (name, why) in &skipped {
        skip(&format!("{TEST}: {name}"), why);
    }
    for name in TIMEOUTS.iter().chain(WOKEN) {
        assert!(
            waits.contains_key(*name) || woken.contains_key(*name) || skipped.contains_key(*name),
            "{name}: neither made nor skipped"
        );
    }

    let req = REQ_MS * 1_000_000;
    let mut bad = Vec::new();
    let mut check = |ok: bool, what: String| {
        println!("{} {what}", if ok { "ok  " } else { "FAIL" });
        if !ok {
            bad.push(what);
        }
    };
    for (name, w) in &waits {
        let asked = w.asked as f64;
        let virt = w.elapsed as f64;
        let real = w.real.as_nanos() as f64;
        // Virtual: never early (1% for the rounding of conversions), at most 25% late (a
        // wake-up that waited 50 ms real for a CPU on a shared host). An unconverted
        // timeout would end after asked/TDF of virtual time; an undilated clock would
        // measure TDF times too long.
        let virt_ok = virt >= 0.99 * asked && virt <= 1.25 * asked;
        // Real: TDF times the virtual time the program measured, within 10% of the asked
        // time plus 30 ms for the delivery of the two lines through the pipe.
        let real_ok = real >= 0.95 * TDF * asked && (real - TDF * virt).abs() <= 0.1 * TDF * asked + 30e6;
        check(
            virt_ok && real_ok,
            format!(
                "{name}: asked {:.1} ms, virtual {:.2} ms, real {:.1} ms (real/TDF {:.2} ms)",
                asked / 1e6,
                virt / 1e6,
                real / 1e6,
                real / TDF / 1e6
            ),
        );
    }
    for (name, w) in &woken {
        // The waker sleeps asked/2 of virtual time; the wait ends then, well before its timeout.
        let (asked, virt, real) = (w.asked as f64, w.elapsed as f64, w.real.as_nanos() as f64);
        let virt_ok = virt >= 0.49 * asked && virt <= 0.75 * asked;
        let real_ok = (real - TDF * virt).abs() <= 0.1 * TDF * asked + 30e6;
        check(
            virt_ok && real_ok,
            format!(
                "{name}: woken after virtual {:.2} ms of {:.1} ms, real {:.1} ms (real/TDF {:.2} ms)",
                virt / 1e6,
                asked / 1e6,
                real / 1e6,
                real / TDF / 1e6
            ),
        );
    }
    for (name, expected, got) in &values {
        // The caller's request is never modified; other values are virtual within 5% of the
        // asked time plus 1 ms (the program's clock read and the kernel's are not the same
        // instant). An undilated value would be TDF times too large.
        let ok = if name.ends_with("_untouched") {
            got == expected
        } else {
            (got - expected).abs() as f64 <= 0.05 * req as f64 + 1e6
        };
        check(ok, format!("{name}: expected {:.3} ms, got {:.3} ms", *expected as f64 / 1e6, *got as f64 / 1e6));
    }
    if !skipped.contains_key("i386_abi") {
        for (name, want) in FOREIGN {
            let got = foreign.get(*name).copied();
            let ok = match want {
                Some(r) => got == Some(*r),
                None => got.is_some_and(|g| g >= 0),
            };
            let want = want.map_or("passed".to_owned(), |r| format!("refused with {r}"));
            check(ok, format!("{name}: {want}, returned {got:?}"));
        }
    }
    println!(
        "{} timeouts, {} woken waits, {} values, {} i386 calls, {} skipped; wall time {:.1} s",
        waits.len(),
        woken.len(),
        values.len(),
        foreign.len(),
        skipped.len(),
        wall.as_secs_f64()
    );
    assert!(bad.is_empty(), "{} checks failed:\n{}", bad.len(), bad.join("\n"));
}
