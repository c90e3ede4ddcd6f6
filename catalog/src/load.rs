//! Loading catalog files whole: a topology with its own `faults:` checked against it, and
//! telling a topology file from a suite file.
//!
//! # Design
//! Faults name the resolved topology's nodes and links, so they are checked after the
//! topology resolves, here, above both [`crate::topology`] and [`crate::fault`] (neither
//! imports the other's loader).

use std::path::Path;

use crate::fault::{self, Fault, FaultError, Source};
use crate::topology::{self, CatalogError, Topology};

/// Loads and validates a topology file, its `faults:` included.
pub fn topology(path: &Path) -> Result<Topology, CatalogError> {
    with_faults(topology::read(path)?)
}

/// Loads a topology from text, its `faults:` included; `path` names it and resolves
/// relative paths.
pub fn topology_str(path: &Path, text: &str) -> Result<Topology, CatalogError> {
    with_faults(topology::read_str(path, text)?)
}

/// Validates a topology's own `faults:` list.
pub fn topology_faults(topology: &Topology) -> Result<Vec<Fault>, FaultError> {
    fault::parse(&topology.faults, topology, &Source { file: &topology.file, map: &topology.source, id_prefix: "" })
}

/// The two kinds of catalog file a user hands to `diorama check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Topology,
    /// A suite: a top-level `scenarios:` list.
    Suite,
}

/// Which kind of file `text` is. Anything that is not a mapping with `scenarios:` is
/// taken for a topology, whose loader then reports what is wrong with it.
pub fn kind_of(text: &str) -> Kind {
    match serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) {
        Ok(serde_yaml_ng::Value::Mapping(m)) if m.contains_key("scenarios") => Kind::Suite,
        _ => Kind::Topology,
    }
}

/// Faults refer to the resolved names, so they are checked last, on a valid model.
fn with_faults(t: Topology) -> Result<Topology, CatalogError> {
    match topology_faults(&t) {
        Ok(_) => Ok(t),
        Err(e) => Err(CatalogError { diagnostics: e.diagnostics }),
    }
}

#[cfg(test)]
mod fault_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suites_are_told_from_topologies() {
        assert_eq!(kind_of("name: s\nscenarios:\n  - {name: a, topology: t.yaml}\n"), Kind::Suite);
        assert_eq!(kind_of("name: t\nnodes: []\n"), Kind::Topology);
        assert_eq!(kind_of("[not, a, mapping]"), Kind::Topology);
        assert_eq!(kind_of("name: [unclosed"), Kind::Topology);
    }

    #[test]
    fn the_repository_suites_are_suites() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../topologies");
        for (file, kind) in
            [("nightly.yaml", Kind::Suite), ("ci-suite.yaml", Kind::Suite), ("quickstart.yaml", Kind::Topology)]
        {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            assert_eq!(kind_of(&text), kind, "{file}");
        }
    }
}
