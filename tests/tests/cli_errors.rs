//! Bad input gets a clear error naming the file, the line and the field, and the documented
//! exit code; nothing is left behind (these need no root: they fail before any set-up).

use diorama_tests::{diorama, topology};

#[test]
fn malformed_yaml_names_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let t = topology(tmp.path(), "bad", "name: bad\nnodes:\n  - name: a\n    run: {command: [x, y}\n");
    let r = diorama(&["check", t.to_str().unwrap()]);
    assert_eq!(r.code, Some(3), "{r:?}");
    assert!(r.stderr.contains(&format!("{}:4:", t.display())), "{}", r.stderr);
    assert!(r.stderr.contains("malformed YAML"), "{}", r.stderr);
}

#[test]
fn unknown_field_and_bad_unit_are_both_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let t = topology(
        tmp.path(),
        "bad",
        "name: bad\nnodes:\n  - name: a\n    colour: red\n    run: {command: x}\n  - name: b\n    memory: 3 bushels\n    run: {command: x}\n",
    );
    let r = diorama(&["check", t.to_str().unwrap()]);
    assert_eq!(r.code, Some(3));
    assert!(r.stderr.contains(":4:5: nodes[0].colour: unknown field `colour`"), "{}", r.stderr);
    assert!(r.stderr.contains(":7:") && r.stderr.contains("nodes[1].memory"), "{}", r.stderr);
}

#[test]
fn impossible_plan_says_which_tdf_fits() {
    let tmp = tempfile::tempdir().unwrap();
    let t = topology(
        tmp.path(),
        "big",
        "name: big\ntdf: 1\nnodes:\n  - name: n[0..64]\n    memory: 1MiB\n    run: {command: [\"true\"]}\n",
    );
    let r = diorama(&["plan", t.to_str().unwrap(), "--out", tmp.path().join("p.json").to_str().unwrap()]);
    assert_eq!(r.code, Some(3), "{r:?}");
    assert!(
        r.stderr.contains("TDF 1 does not fit") && r.stderr.contains("the smallest TDF that fits is"),
        "{}",
        r.stderr
    );
}

#[test]
fn missing_binary_is_refused_before_anything_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let t = topology(
        tmp.path(),
        "nobin",
        "name: nobin\nnodes:\n  - name: a\n    run: {command: [\"no-such-binary-diorama\"]}\n",
    );
    let out = tmp.path().join("out");
    let r = diorama(&["run", t.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(r.code, Some(3), "{r:?}");
    assert!(r.stderr.contains(":4:") && r.stderr.contains("nodes[0].run.command"), "{}", r.stderr);
    assert!(r.stderr.contains("\"no-such-binary-diorama\" of node a not found"), "{}", r.stderr);
    assert!(!out.exists(), "a refused run must leave nothing behind");
}

#[test]
fn schema_is_json() {
    let r = diorama(&["schema"]);
    assert_eq!(r.code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(v["properties"]["nodes"].is_object(), "{v}");
}

#[test]
fn a_bad_type_and_a_dangling_reference_are_reported_together() {
    let tmp = tempfile::tempdir().unwrap();
    let t = topology(
        tmp.path(),
        "bad",
        "name: bad\nnodes:\n  - name: db\n    cpus: lots\n    run: {command: x}\n  - name: web\n    depends_on: [cache]\n    run: {command: x}\n",
    );
    let r = diorama(&["check", t.to_str().unwrap()]);
    assert_eq!(r.code, Some(3), "{r:?}");
    assert!(r.stderr.contains("invalid topology (2 problems)"), "{}", r.stderr);
    let cpus = r.stderr.find(":4:").expect("the cpus problem");
    let cache = r.stderr.find("nodes[1].depends_on[0]").expect("the dangling reference");
    assert!(cpus < cache, "not sorted by position: {}", r.stderr);
}

#[test]
fn check_knows_suites_and_checks_their_scenarios_topologies() {
    let tmp = tempfile::tempdir().unwrap();
    topology(tmp.path(), "good", "name: good\nnodes:\n  - name: a\n    run: {command: x}\n");
    topology(tmp.path(), "bad", "name: bad\nnodes:\n  - name: a\n    memory: 3 bushels\n    run: {command: x}\n");
    let ok = topology(tmp.path(), "ok-suite", "name: s\nscenarios:\n  - {name: one, topology: good.yaml}\n");
    let r = diorama(&["check", ok.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.contains("ok (suite s, 1 scenarios)"), "{}", r.stdout);
    let bad = topology(
        tmp.path(),
        "bad-suite",
        "name: s\nscenarios:\n  - {name: one, topology: good.yaml}\n  - {name: two, topology: bad.yaml}\n",
    );
    let r = diorama(&["check", bad.to_str().unwrap()]);
    assert_eq!(r.code, Some(3), "{r:?}");
    assert!(r.stderr.contains("bad.yaml:4:") && r.stderr.contains("nodes[0].memory"), "{}", r.stderr);
    assert!(r.stderr.contains("1 of 1 files are invalid"), "{}", r.stderr);
}

#[test]
fn the_repository_topologies_and_suites_check() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../topologies");
    for file in ["quickstart.yaml", "isaac.yaml", "nightly.yaml", "ci-suite.yaml"] {
        let r = diorama(&["check", root.join(file).to_str().unwrap()]);
        assert_eq!(r.code, Some(0), "{file}: {r:?}");
    }
}
