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
