//! Cross-region replication for real (docs/replica.md): `topologies/replica-small.yaml` under
//! `diorama run`, two S3-protocol stores in two regions joined by an emulated WAN, the
//! replicator and a function platform per region. The writer (main) writes, then waits for
//! the destination to hold every latest version (bytes and ETags through the S3 client);
//! its verdict decides. Once as it is, once with the replicator killed mid-run and restarted.
#![expect(clippy::unwrap_used, reason = "helpers of a test fail it loudly, like the test itself")]

use diorama_tests::{diorama, leftovers, need_root, require, topology};

fn run(name: &str, faults: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../topologies/replica-small.yaml");
    let base = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let yaml = base.replace("name: replica-small", &format!("name: {name}")) + faults;
    let topo = topology(tmp.path(), name, &yaml);
    let out = tmp.path().join("out");
    let started = std::time::Instant::now();
    let r = diorama(&["run", topo.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let verdict = std::fs::read_to_string(out.join("nodes/writer/verdict.json")).unwrap_or_default();
    println!("{name}: {:.1} s wall, verdict {verdict}", started.elapsed().as_secs_f64());
    assert_eq!(r.code, Some(0), "{r:?}");
    let v: serde_json::Value = serde_json::from_str(&verdict).unwrap();
    assert_eq!(v["verdict"]["mismatched"], serde_json::json!([]), "{v}");
    assert!(v["verdict"]["source_objects"].as_u64().unwrap() > 0, "{v}");
    assert!(v["written"]["multipart"].as_u64().unwrap() > 0, "{v}");
    // The replication section of summary.json: copies with delays, and the platforms' bill.
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let rep = &summary["replication"];
    println!("{name}: replication {rep}");
    assert!(rep["objects_replicated"].as_u64().unwrap() > 0, "{rep}");
    assert!(rep["delay_s"]["p50"].as_f64().unwrap() > 0.0, "{rep}");
    assert!(rep["cost"]["invocations"].as_u64().unwrap() > 0, "{rep}");
    assert!(rep["cost"]["total_usd"].as_f64().unwrap() > 0.0, "{rep}");
    let mine: Vec<String> = leftovers().into_iter().filter(|l| l.contains(name)).collect();
    assert!(mine.is_empty(), "{mine:?}");
}

#[test]
fn every_object_matches_after_the_run() {
    require!("every_object_matches_after_the_run", need_root());
    run("replica-plain", "");
}

#[test]
#[ignore = "PARKED 2026-12-02: after the replicator's restart the destination sometimes never converges (4 of 7 runs on 2026-12-02: objects still mismatched, 3 with the 30 s wait and 1 of 3 with a 60 s one), seen since CPU pacing's node-wide ledger and first-quantum fix slowed the paced stores; a replicator bug to find (issue 15). Run with --ignored."]
fn every_object_matches_after_the_replicator_is_killed_mid_run() {
    require!("every_object_matches_after_the_replicator_is_killed_mid_run", need_root());
    run("replica-kill", "faults:\n  - {at: 2s, kill: replicator, for: 2s}\n");
}
