//! Fuzz targets of the catalog's readers (run by `cargo test`, bounded in CI by
//! `scripts/fuzz`; see `fuzzing`): the topology loader with its faults and the planner, the
//! scenario (fault file) parser, and the suite parser. Each must turn any input into a value
//! or diagnostics, never a panic; every diagnostic must name the file and a position.
//! Corpora (seeds and regression inputs) are in `catalog/fuzz/<target>/`.

use std::path::{Path, PathBuf};

use crate::plan::{plan, Inventory, PlanOptions};

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(target)
}

fn diagnostics_are_placed(d: &[crate::Diagnostic], file: &str) {
    assert!(!d.is_empty(), "an error without a diagnostic");
    for d in d {
        assert_eq!(d.file, Path::new(file), "{d}");
    }
}

#[test]
fn fuzz_topology() {
    let hosts = Inventory::uniform(2, 2.0, 24 << 30);
    fuzzing::run("topology", &corpus("topology"), |input| {
        match crate::load::topology_str(Path::new("fuzz.yaml"), &fuzzing::text(input)) {
            Ok(t) => {
                for tdf in [None, Some(1.0), Some(0.5)] {
                    let opts = PlanOptions { tdf, headroom: 0.9, cpu_period_us: 100_000, reserve_cores: 0.25 };
                    // Any outcome but a panic; a plan's display must render too.
                    if let Ok(p) = plan(&t, &hosts, &opts) {
                        let _ = p.to_string();
                    }
                }
            }
            Err(e) => diagnostics_are_placed(&e.diagnostics, "fuzz.yaml"),
        }
    });
}

#[test]
fn fuzz_scenario() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../topologies");
    let topology = crate::load::topology(&dir.join("isaac.yaml")).expect("the bundled isaac topology loads");
    fuzzing::run("scenario", &corpus("scenario"), |input| {
        if let Err(e) = crate::fault::load_scenario_str(Path::new("s.yaml"), &fuzzing::text(input), &topology) {
            diagnostics_are_placed(&e.diagnostics, "s.yaml");
        }
    });
}

#[test]
fn fuzz_suite() {
    // Beside the bundled topologies, so that a suite's `topology:` paths resolve.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../topologies/fuzz-suite.yaml");
    fuzzing::run("suite", &corpus("suite"), |input| {
        if let Err(e) = crate::suite::load_str(&path, &fuzzing::text(input)) {
            // A suite's diagnostics may name the topology files it refers to.
            assert!(!e.diagnostics.is_empty(), "an error without a diagnostic");
            let _ = e.to_string();
        }
    });
}
