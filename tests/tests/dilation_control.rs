//! The control file changes a running process's time: a TDF change takes effect without
//! restarting it (virtual time stays continuous) and a clock step moves only the wall clock.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use dilation::control::ControlFile;
use diorama_tests::artifact;

const SCRIPT: &str = r#"
import sys, time
for line in sys.stdin:
    if line.startswith("sleep"):
        time.sleep(0.1)
    print(repr(time.time()), repr(time.monotonic()), flush=True)
"#;

#[test]
fn tdf_changes_and_clock_steps_reach_a_running_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clock");
    let model = dilation::TimeModel::new(10.0, dilation::Epoch::now()).unwrap();
    let control = ControlFile::create(&path, &model).unwrap();
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .envs(model.env())
        .env(dilation::ENV_CONTROL, &path)
        .env("LD_PRELOAD", artifact("libdilation.so"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut ask = |cmd: &str| -> (f64, f64, f64) {
        let t0 = Instant::now();
        writeln!(stdin, "{cmd}").unwrap();
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let v: Vec<f64> = line.split_whitespace().map(|x| x.parse().unwrap()).collect();
        (v[0], v[1], t0.elapsed().as_secs_f64())
    };
    // The first answer waits for the interpreter to start: measure only after it.
    ask("now");
    let (_, _, real10) = ask("sleep");
    assert!((0.95..1.3).contains(&real10), "0.1 s virtual at TDF 10 took {real10} s real");
    // python3 may be a wrapper script that execs the interpreter: each process attaches.
    assert!(control.stats().unwrap().attached >= 1, "the shim did not map the control file");
    control.set_tdf(2.0).unwrap();
    let (w1, m1, real2) = ask("sleep");
    assert!((0.18..0.4).contains(&real2), "after set_tdf(2), 0.1 s virtual took {real2} s real");
    control.step(1_000_000_000_000).unwrap(); // +1000 s on the wall clock
    let (w2, m2, _) = ask("now");
    assert!((w2 - w1 - 1000.0).abs() < 1.0, "wall clock stepped by {} s, expected 1000", w2 - w1);
    assert!(m2 >= m1 && m2 - m1 < 1.0, "monotonic must not step: {m1} → {m2}");
    drop(stdin);
    assert!(child.wait().unwrap().success());
    assert_eq!(control.stats().unwrap().errors, 0);
}
