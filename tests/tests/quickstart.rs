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
    for file in ["run.json", "plan.json", "events.jsonl", "nodes.csv", "nodes/client/stdout", "nodes/db/stderr"] {
        assert!(out.join(file).exists(), "{file} missing");
    }
    let run = run_json(&out);
    assert_eq!(run["success"], true);
    assert_eq!(run["nodes"].as_array().unwrap().len(), 4);
    let tdf = run["tdf"].as_f64().unwrap();
    assert!(tdf > 1.0, "quickstart needs more than this host's CPU: auto TDF {tdf}");
    assert!(leftovers().is_empty(), "{:?}", leftovers());
}
