//! The platform's model against real child processes (`sh` stands in for the instance).

use super::*;

const PRICES: Prices =
    Prices { per_invocation: 2e-7, per_gb_second: 1.66667e-5, per_request: 5e-6, per_egress_gb: 0.02 };

fn model(concurrency: usize, time_limit: f64, retries: u32) -> Model {
    Model {
        invoke: Dist::Const(0.05),
        ready: Dist::Const(0.1),
        concurrency,
        time_limit: Duration::from_secs_f64(time_limit),
        retries,
        memory_mb: 512,
        prices: PRICES,
        seed: 1,
        bandwidth: None,
    }
}

fn task(key: &str) -> crate::task::Task {
    crate::task::test_task(key, "lambda")
}

fn sh(script: &str) -> Vec<std::ffi::OsString> {
    vec!["sh".into(), "-c".into(), script.into()]
}

fn lines<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test]
async fn a_successful_attempt_is_billed_with_its_delays_requests_and_egress() {
    let dir = tempfile::tempdir().unwrap();
    let p =
        Platform::new(sh(r#"cat >/dev/null; echo '{"requests":3,"bytes":2000000000}'"#), model(4, 10.0, 2), dir.path());
    let t0 = Instant::now();
    run_with_retries(&p, task("k")).await;
    assert!(t0.elapsed() >= Duration::from_millis(150), "I + D were waited: {:?}", t0.elapsed());
    let inv: Vec<Invocation> = lines(&dir.path().join("invocations.jsonl"));
    assert_eq!(inv.len(), 1);
    let i = &inv[0];
    assert!(i.ok && i.attempt == 1 && i.error.is_none(), "{i:?}");
    assert_eq!((i.invoke_s, i.ready_s, i.requests, i.egress_bytes), (0.05, 0.1, 3, 2_000_000_000));
    assert!(i.duration_s >= 0.1, "billing includes the ready delay: {i:?}");
    assert!((i.gb_seconds - 0.5 * i.duration_s).abs() < 1e-9);
    let want = 2e-7 + 1.66667e-5 * i.gb_seconds + 3.0 * 5e-6 + 2.0 * 0.02;
    assert!((i.cost - want).abs() < 1e-12, "{} vs {want}", i.cost);
    assert!(!dir.path().join("deadletter.jsonl").exists());
}

#[tokio::test]
async fn failures_are_retried_then_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let p = Platform::new(sh("cat >/dev/null; exit 3"), model(4, 10.0, 1), dir.path());
    run_with_retries(&p, task("bad")).await;
    let inv: Vec<Invocation> = lines(&dir.path().join("invocations.jsonl"));
    assert_eq!(inv.iter().map(|i| (i.attempt, i.ok)).collect::<Vec<_>>(), vec![(1, false), (2, false)]);
    assert!(inv[0].error.as_deref().unwrap().contains("exit status: 3"), "{inv:?}");
    let dead: Vec<DeadLetter> = lines(&dir.path().join("deadletter.jsonl"));
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].attempts, dead[0].task.key.as_str()), (2, "bad"));
}

#[tokio::test]
async fn an_attempt_over_the_time_limit_is_killed_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let p = Platform::new(sh("cat >/dev/null; exec sleep 30"), model(4, 0.5, 0), dir.path());
    let t0 = Instant::now();
    run_with_retries(&p, task("slow")).await;
    assert!(t0.elapsed() < Duration::from_secs(10), "killed at the limit: {:?}", t0.elapsed());
    let inv: Vec<Invocation> = lines(&dir.path().join("invocations.jsonl"));
    assert!(!inv[0].ok && inv[0].error.as_deref().unwrap().contains("time limit"), "{inv:?}");
    assert!(inv[0].duration_s >= 0.5);
    assert_eq!(lines::<DeadLetter>(&dir.path().join("deadletter.jsonl")).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concurrency_limit_queues_invocations() {
    // Three 0.4 s functions through one slot take at least 1.2 s; through three, far less.
    let dir = tempfile::tempdir().unwrap();
    let mut m = model(1, 10.0, 0);
    m.invoke = Dist::Const(0.0);
    m.ready = Dist::Const(0.0);
    let script = sh("cat >/dev/null; sleep 0.4");
    let one = Arc::new(Platform::new(script.clone(), m.clone(), dir.path()));
    let t0 = Instant::now();
    let runs: Vec<_> = (0..3)
        .map(|i| {
            tokio::spawn({
                let p = one.clone();
                async move { run_with_retries(&p, task(&format!("k{i}"))).await }
            })
        })
        .collect();
    for r in runs {
        r.await.unwrap();
    }
    let serial = t0.elapsed();
    assert!(serial >= Duration::from_millis(1200), "{serial:?}");
    // Each attempt's billed time is its own 0.4 s, not its wait for the slot.
    let inv: Vec<Invocation> = lines(&dir.path().join("invocations.jsonl"));
    assert!(inv.iter().all(|i| i.ok && i.duration_s < 1.1), "{inv:?}");
    m.concurrency = 3;
    let three = Arc::new(Platform::new(script, m, dir.path()));
    let t0 = Instant::now();
    let runs: Vec<_> = (0..3)
        .map(|i| {
            tokio::spawn({
                let p = three.clone();
                async move { run_with_retries(&p, task(&format!("k{i}"))).await }
            })
        })
        .collect();
    for r in runs {
        r.await.unwrap();
    }
    assert!(t0.elapsed() < serial, "{:?} vs {serial:?}", t0.elapsed());
}

#[tokio::test]
async fn drawn_delays_follow_the_configured_distribution() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = model(4, 10.0, 0);
    m.ready = "normal:0.2,0.05".parse().unwrap();
    let p = Platform::new(sh("true"), m, dir.path());
    let xs: Vec<f64> = (0..2000).map(|_| draw(&p, &p.model.ready)).collect();
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    assert!((mean - 0.2).abs() < 0.01, "{mean}");
    assert!(xs.iter().any(|x| *x < 0.15) && xs.iter().any(|x| *x > 0.25), "it varies");
}

#[tokio::test]
async fn a_failure_its_coordinator_took_is_not_retried() {
    // Exit status 4: the instance told its coordinator, which copies the key again after a
    // backoff; a platform retry would only be fenced.
    let dir = tempfile::tempdir().unwrap();
    let p = Platform::new(sh("cat >/dev/null; exit 4"), model(4, 10.0, 2), dir.path());
    run_with_retries(&p, task("refused")).await;
    let inv: Vec<Invocation> = lines(&dir.path().join("invocations.jsonl"));
    assert_eq!(inv.len(), 1, "{inv:?}");
    assert!(!inv[0].ok && inv[0].error.as_deref().unwrap().contains("coordinator retries"), "{inv:?}");
    assert!(!dir.path().join("deadletter.jsonl").exists());
}

#[tokio::test]
async fn each_attempt_gets_its_own_bandwidth_and_the_instance_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("tasks.jsonl");
    let mut m = model(4, 10.0, 0);
    m.ready = Dist::Const(0.0);
    m.bandwidth = Some(Dist::Normal { mean: 2e6, sd: 1e6 });
    let script = format!("cat >> '{}'; echo >> '{}'", seen.display(), seen.display());
    let p = Platform::new(sh(&script), m, dir.path());
    // One after the other, so the lines the instances append do not interleave.
    for i in 0..8 {
        run_with_retries(&p, task(&format!("k{i}"))).await;
    }
    let inv: Vec<Invocation> = lines(&dir.path().join("invocations.jsonl"));
    let tasks: Vec<crate::task::Task> = lines(&seen);
    assert_eq!((inv.len(), tasks.len()), (8, 8));
    let drawn: Vec<f64> = inv.iter().map(|i| i.bandwidth.unwrap()).collect();
    for (i, t) in inv.iter().zip(&tasks) {
        assert_eq!((i.bandwidth, i.size, i.system.as_str()), (t.bandwidth, Some(1), "lambda"), "{i:?} {t:?}");
    }
    let (lo, hi) = drawn.iter().fold((f64::MAX, 0.0f64), |(lo, hi), b| (lo.min(*b), hi.max(*b)));
    assert!(lo >= 1.0 && hi >= 2.0 * lo, "instances differ by 2× or more: {drawn:?}");
}
