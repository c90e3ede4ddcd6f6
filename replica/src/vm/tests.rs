//! The pool's model against real child processes (`sh` stands in for a VM: it answers each
//! task line after 0.2 s).

use super::*;

const VM: &str = r#"while read -r line; do sleep 0.2; echo '{"ok":true,"error":null,"requests":2,"bytes":100}'; done"#;

fn model(max_vms: usize, keep_alive: f64) -> Model {
    Model {
        provision: Dist::Const(0.3),
        keep_alive: Duration::from_secs_f64(keep_alive),
        max_vms,
        price_per_hour: 3600.0, // a dollar a second: the cost records read as seconds
        seed: 1,
    }
}

fn pool(dir: &Path, m: Model) -> Arc<Pool> {
    start(vec!["sh".into(), "-c".into(), VM.into()], m, dir)
}

/// A VM copies with several streams.
fn task(key: &str) -> crate::task::Task {
    crate::task::Task { streams: 4, ..crate::task::test_task(key, "vm") }
}

fn jobs(dir: &Path) -> Vec<JobRecord> {
    let text = std::fs::read_to_string(dir.join("vm-jobs.jsonl")).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The `cost` records' dollars (= billed seconds at a dollar a second).
fn billed(dir: &Path) -> f64 {
    let text = std::fs::read_to_string(dir.join("replication.jsonl")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str::<crate::record::Record>(l).unwrap())
        .map(|r| match r {
            crate::record::Record::Cost { system, usd, .. } => {
                assert_eq!(system, "vm");
                usd
            }
            other => panic!("only cost records: {other:?}"),
        })
        .sum()
}

/// The `size` of each `cost` record, in order.
fn billed_sizes(dir: &Path) -> Vec<Option<u64>> {
    let text = std::fs::read_to_string(dir.join("replication.jsonl")).unwrap_or_default();
    text.lines()
        .map(|l| match serde_json::from_str::<crate::record::Record>(l).unwrap() {
            crate::record::Record::Cost { size, .. } => size,
            other => panic!("only cost records: {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn a_vm_is_provisioned_reused_while_kept_alive_then_shut_down_and_billed_for_its_life() {
    let dir = tempfile::tempdir().unwrap();
    let p = pool(dir.path(), model(4, 0.5));
    job(&p, task("a")).await;
    job(&p, task("b")).await; // within the keep-alive: the same VM, no provisioning
    let j = jobs(dir.path());
    assert_eq!(j.iter().map(|j| (j.vm, j.provisioned, j.ok)).collect::<Vec<_>>(), [(0, true, true), (0, false, true)]);
    assert!(j[0].wait_s >= 0.3 && j[1].wait_s < 0.1, "provisioning is waited once: {j:?}");
    assert!(j[0].duration_s >= 0.2 && (j[0].requests, j[0].bytes) == (2, 100), "{j:?}");
    // Idle past the keep-alive: shut down; the next job provisions a new VM.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(lock(&p.machines).count, 0, "shut down after the keep-alive");
    let lived = billed(dir.path());
    // Provisioning 0.3 + two jobs 0.4 + the keep-alive 0.5 (and the reaper's tick).
    assert!((1.2..1.6).contains(&lived), "billed {lived} s");
    // A delete's time is charged to no object.
    job(&p, crate::task::Task { mode: crate::task::Mode::Delete, ..task("c") }).await;
    let j = jobs(dir.path());
    assert_eq!((j[2].vm, j[2].provisioned), (1, true), "{j:?}");
    // Each job's time is charged to its object's size (the report's size classes); the idle
    // keep-alive before a shutdown to none.
    assert_eq!(billed_sizes(dir.path()), [Some(1), Some(1), None, None]);
}

#[tokio::test]
async fn at_the_vm_limit_a_job_waits_for_a_vm_to_be_free() {
    let dir = tempfile::tempdir().unwrap();
    let p = pool(dir.path(), model(1, 5.0));
    let (a, b) = (p.clone(), p.clone());
    let t0 = Instant::now();
    tokio::join!(job(&a, task("a")), job(&b, task("b")));
    // One VM: provisioning 0.3, then the two jobs one after another.
    assert!(t0.elapsed() >= Duration::from_millis(700), "{:?}", t0.elapsed());
    let j = jobs(dir.path());
    assert_eq!(j.iter().map(|j| j.vm).collect::<Vec<_>>(), [0, 0]);
    assert_eq!(j.iter().filter(|j| j.provisioned).count(), 1, "{j:?}");
    assert!(j[1].wait_s >= 0.5, "the second waited for the first: {j:?}");
}
