//! The README's main job runs and leaves a complete results directory (root).

use diorama_tests::{diorama, leftovers, need_root, repo_root, require, run_json};

#[test]
fn quickstart_runs_and_writes_its_results() {
    require!("quickstart_runs_and_writes_its_results", need_root());
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("qs");
    let topo = repo_root().join("topologies/quickstart.yaml");
    let r = diorama(&["run", topo.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(!r.stderr.contains("NOT dilated"), "false shim warning: {}", r.stderr);
    for file in ["run.json", "plan.json", "events.jsonl", "nodes.csv", "links.csv", "nodes/client/stdout", "nodes/db/stderr"] {
        assert!(out.join(file).exists(), "{file} missing");
    }
    let run = run_json(&out);
    assert_eq!(run["success"], true);
    assert_eq!(run["nodes"].as_array().unwrap().len(), 4);
    let tdf = run["tdf"].as_f64().unwrap();
    assert!(tdf > 1.0, "quickstart needs more than this host's CPU: auto TDF {tdf}");
    for node in run["nodes"].as_array().unwrap() {
        assert_eq!(node["shim_loaded"], true, "clock shim missing in {node}");
    }
    // The client sleeps 3 s of its own time: it perceives 3 s, the host spends TDF × 3 s.
    let said = std::fs::read_to_string(out.join("nodes/client/stdout")).unwrap();
    let perceived: f64 = said.split("says ").nth(1).and_then(|s| s.split(' ').next()).unwrap().parse().unwrap();
    assert!((perceived - 3.0).abs() < 0.05, "{said}");
    // The client reached the database over the emulated network, by name.
    assert_eq!(said.matches("GET http://db:7000/ took").count(), 3, "{said}");
    assert!(run["real_duration_s"].as_f64().unwrap() >= 3.0 * tdf, "{run}");
    assert!(leftovers().is_empty(), "{:?}", leftovers());
}
