//! Fuzz target of the results readers (see the `fuzzing` crate): a results directory made
//! of arbitrary bytes is read ([`crate::analyze`]), summarized and rendered, or rejected
//! with an error, never a panic. An input is the directory's files joined by NUL bytes, in
//! the order of [`FILES`] (fewer parts: the later files are absent). Corpus:
//! `report/fuzz/results/`.

use std::path::Path;

/// The files of a results directory an input fills, in order.
const FILES: &[&str] = &[
    "run.json",
    "events.jsonl",
    "nodes.csv",
    "links.csv",
    "nodes/client/requests.csv",
    "nodes/client/throughput.csv",
    "nodes/client/summary.json",
    "nodes/server/probe-results.json",
];

#[test]
fn fuzz_results() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/results");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let root = dir.path().join("run");
    fuzzing::run("results", &corpus, |input| {
        let _ = std::fs::remove_dir_all(&root);
        for node in ["nodes/client", "nodes/server"] {
            std::fs::create_dir_all(root.join(node)).expect("create the results directory");
        }
        for (file, part) in FILES.iter().zip(input.split(|&b| b == 0)) {
            std::fs::write(root.join(file), part).expect("write a results file");
        }
        match crate::analyze(&root) {
            Ok(run) => {
                let summary = crate::Summary::of(&run);
                serde_json::to_string(&summary).expect("a summary serializes");
                let _ = crate::html::render(&run, &summary);
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    });
}
