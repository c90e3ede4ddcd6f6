//! Loading catalog files whole: a topology with its own `faults:` checked against it.
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

/// Faults refer to the resolved names, so they are checked last, on a valid model.
fn with_faults(t: Topology) -> Result<Topology, CatalogError> {
    match topology_faults(&t) {
        Ok(_) => Ok(t),
        Err(e) => Err(CatalogError { diagnostics: e.diagnostics }),
    }
}

#[cfg(test)]
mod fault_tests;
