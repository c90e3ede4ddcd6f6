//! `diorama exec`: runs a command dilated and reports its exit status.

use std::time::Instant;

use diorama_tests::{artifact, diorama};

#[test]
fn exec_dilates_a_command() {
    let t0 = Instant::now();
    let r = diorama(&[
        "exec",
        "--tdf",
        "4",
        "--",
        "python3",
        "-c",
        "import time; t=time.monotonic(); time.sleep(0.25); print(round(time.monotonic()-t, 3))",
    ]);
    let real = t0.elapsed().as_secs_f64();
    assert_eq!(r.code, Some(0), "{r:?}");
    let perceived: f64 = r.stdout.trim().parse().unwrap();
    assert!((perceived - 0.25).abs() < 0.01, "perceived {perceived}");
    assert!(real >= 1.0, "0.25 s at TDF 4 must take ≥ 1 s real, took {real}");
    assert!(!r.stderr.contains("NOT dilated"), "{}", r.stderr);
}

#[test]
fn exec_passes_the_exit_status_and_shares_an_epoch() {
    let r = diorama(&["exec", "--tdf", "2", "--", "sh", "-c", "exit 7"]);
    assert_eq!(r.code, Some(7));
    // An epoch 100 s in the past at TDF 10: `date` is 90 s behind.
    let now = dilation::realtime_ns();
    let epoch = format!("{}", now - 100_000_000_000);
    let r = diorama(&["exec", "--tdf", "10", "--epoch", &epoch, "--", "date", "+%s"]);
    let shown: i64 = r.stdout.trim().parse().unwrap();
    let expected = (now - 90_000_000_000) / 1_000_000_000;
    assert!((shown - expected).abs() <= 1, "date {shown}, expected {expected}");
}

#[test]
fn exec_refuses_bad_input_clearly() {
    let r = diorama(&["exec", "--tdf", "0", "--", "true"]);
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("--tdf"), "{}", r.stderr);
    let r = diorama(&["exec", "--tdf", "2", "--", "no-such-program-diorama"]);
    assert_eq!(r.code, Some(4), "{r:?}");
    assert!(r.stderr.contains("not found"), "{}", r.stderr);
    assert!(artifact("libdilation.so").exists());
}

/// Receive timestamps (`SO_TIMESTAMP`, `SO_TIMESTAMPNS`) are the kernel's real clock; the
/// shim rewrites them to virtual time, or a program that subtracts a dilated send time from
/// them (traceroute) reads the whole real-minus-virtual offset: 9 s per hop at TDF 10 in the
/// probes topology before the fix. After 0.2 s virtual at TDF 10 the offset is 1.8 s; each
/// stamp must be within 50 ms of the program's own clock.
#[test]
fn receive_timestamps_are_virtual() {
    let script = r#"
import socket, struct, time
time.sleep(0.2)
SO_TIMESTAMP, SO_TIMESTAMPNS = 29, 35
for opt, fmt in ((SO_TIMESTAMP, "qq"), (SO_TIMESTAMPNS, "qq")):
    r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r.bind(("127.0.0.1", 0))
    r.setsockopt(socket.SOL_SOCKET, opt, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"x", r.getsockname())
    _, anc, _, _ = r.recvmsg(16, 256)
    now = time.time()
    sec, frac = struct.unpack(fmt, anc[0][2][:16])
    stamp = sec + frac / (1e6 if opt == SO_TIMESTAMP else 1e9)
    print(opt, round(now - stamp, 4))
"#;
    let r = diorama(&["exec", "--tdf", "10", "--", "python3", "-c", script]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{r:?}");
    for line in lines {
        let (opt, diff) = line.split_once(' ').unwrap_or_else(|| panic!("{line:?}"));
        let diff: f64 = diff.parse().unwrap_or_else(|_| panic!("{line:?}"));
        assert!(
            (0.0..0.05).contains(&diff),
            "option {opt}: the program's clock minus the stamp is {diff} s (want 0 to 0.05)"
        );
    }
}
