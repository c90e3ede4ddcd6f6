//! `diorama test`: the CI suite passes for real; an assertion that must fail exits 6 with
//! the measured value in the JUnit XML; a bad suite file is refused with its position
//! before anything runs.

use diorama_tests::{diorama, leftovers, need_root, repo_root, require};

fn read_json(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("suite.json is JSON")
}

#[test]
fn invalid_suites_are_refused_with_file_line_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let topo = repo_root().join("topologies/validation/isaac-small.yaml");
    let suite = tmp.path().join("bad.yaml");
    std::fs::write(
        &suite,
        format!(
            "name: bad\nscenarios:\n  - name: a\n    topology: {}\n    assert:\n      - p99 < 3 parsecs\n      - recovers_within: 5s after fault nosuch\n",
            topo.display()
        ),
    )
    .unwrap();
    let r = diorama(&["test", suite.to_str().unwrap(), "--out", tmp.path().join("out").to_str().unwrap()]);
    assert_eq!(r.code, Some(3), "{r:?}");
    assert!(r.stderr.contains("bad.yaml:6:9: scenarios[0].assert[0]: unknown duration unit"), "{}", r.stderr);
    assert!(!tmp.path().join("out").exists(), "nothing may run for an invalid suite");
    // Semantic problems (an unknown fault) are found by planning before anything runs too.
    std::fs::write(
        &suite,
        format!("name: bad\nscenarios:\n  - name: a\n    topology: {}\n    assert:\n      - recovers_within: 5s after fault nosuch\n", topo.display()),
    )
    .unwrap();
    let r = diorama(&["test", suite.to_str().unwrap(), "--out", tmp.path().join("out").to_str().unwrap()]);
    assert_eq!(r.code, Some(3), "{r:?}");
    assert!(
        r.stderr.contains("bad.yaml:6:9: scenarios[0].assert[0].recovers_within: no fault \"nosuch\""),
        "{}",
        r.stderr
    );
    assert!(!tmp.path().join("out").exists());
}

#[test]
fn ci_suite_passes_and_failing_assertions_exit_6_with_the_measured_value() {
    require!("ci_suite_passes_and_failing_assertions_exit_6_with_the_measured_value", need_root());
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("ci");
    let suite = repo_root().join("topologies/ci-suite.yaml");
    let r = diorama(&["test", suite.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let junit = std::fs::read_to_string(out.join("junit.xml")).unwrap_or_default();
    assert_eq!(r.code, Some(0), "{}\n{}\n{junit}", r.stdout, r.stderr);
    let summary = read_json(&out.join("suite.json"));
    assert_eq!(summary["schema"], 1);
    assert_eq!(summary["passed"], true, "{summary}");
    let verdicts = summary["scenarios"][0]["verdicts"].as_array().unwrap();
    assert_eq!(verdicts.len(), 5);
    assert!(verdicts.iter().all(|v| v["status"] == "pass"), "{summary}");
    // The recovery was measured, not assumed: a finite time after the app server came back.
    let recovery = verdicts[4]["measured"].as_str().unwrap();
    assert!(recovery.ends_with('s') && recovery.trim_end_matches('s').parse::<f64>().is_ok(), "{recovery}");
    assert!(junit.contains(r#"<testsuite name="ci.isaac-as-kill" tests="6" failures="0" errors="0""#), "{junit}");
    assert!(r.stdout.contains("suite ci: passed"), "{}", r.stdout);
    let run_dir = out.join("isaac-as-kill");
    assert!(run_dir.join("summary.json").is_file() && run_dir.join("report.html").is_file());

    // A second suite against the first run: assertions that must fail, and a comparison
    // with a zero threshold on the mean latency (two runs never agree exactly). (A zero `ks` no longer
    // fails a comparison: the plain KS distance is informational since the tolerant
    // distance decides; this passed only while the distance also happened to fail.)
    let failing = tmp.path().join("failing.yaml");
    std::fs::write(
        &failing,
        format!(
            "name: must-fail\nscenarios:\n  - name: short\n    topology: {}\n    tdf: 1\n    duration: 10s\n    assert:\n      - p50 < 1us\n      - throughput > 1000000/s\n      - error_rate < 100%\n      - {{compare_to: {}, thresholds: {{mean: 0.0}}}}\n",
            repo_root().join("topologies/validation/isaac-small.yaml").display(),
            run_dir.display()
        ),
    )
    .unwrap();
    let out2 = tmp.path().join("fail");
    let r = diorama(&["test", failing.to_str().unwrap(), "--out", out2.to_str().unwrap()]);
    assert_eq!(r.code, Some(6), "{}\n{}", r.stdout, r.stderr);
    let junit = std::fs::read_to_string(out2.join("junit.xml")).unwrap();
    let summary = read_json(&out2.join("suite.json"));
    let v = &summary["scenarios"][0]["verdicts"];
    assert_eq!(v[0]["status"], "fail", "{summary}");
    let p50 = v[0]["measured"].as_str().unwrap();
    assert!(p50.ends_with(" ms"), "{p50}");
    // The measured value is in the failure message, beside the expected one.
    assert!(junit.contains(&format!("p50 &lt; 1us: measured {p50}, expected &lt; 0.001 ms")), "{junit}");
    assert_eq!(v[1]["status"], "fail");
    assert_eq!(v[2]["status"], "pass");
    assert_eq!(v[3]["status"], "fail", "{summary}");
    assert!(v[3]["measured"].as_str().unwrap().contains("mean latency: relative error"), "{summary}");
    assert!(out2.join("short/compare.json").is_file());
    assert!(junit.contains(r#"failures="3""#), "{junit}");
    assert!(r.stdout.contains("FAIL"), "{}", r.stdout);
    assert!(leftovers().is_empty(), "{:?}", leftovers());
}
