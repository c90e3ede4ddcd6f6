//! Faults on a virtual-time timeline: the model, parsing and validation with source
//! positions, and the ordered steps the run engine executes (`crate::testbed` applies them).
//!
//! # Design
//! Faults come from a topology's `faults:` list or from a `--scenario` file (same syntax,
//! kept apart from the topology so one service can be run under several fault loads). They
//! are validated entirely before a run creates anything, so an invalid scenario leaves
//! nothing behind. See docs/faults.md.
//!
//! # Limitations
//! A `load` fault cannot be undone by `for` (the previous rate belongs to the load
//! generator's own arguments); write a second `load` fault instead.

pub mod model;
mod parse;
pub mod timeline;

pub use model::{Action, Degrade, DirChoice, Fault, FaultDecl};
pub use parse::{load_scenario, parse, FaultError, Source};
pub use timeline::{Phase, Step, Timeline};

/// Validates a topology's own `faults:` list.
pub fn from_topology(topology: &crate::topology::Topology) -> Result<Vec<Fault>, FaultError> {
    parse(&topology.faults, topology, &Source { file: &topology.file, map: &topology.source, id_prefix: "" })
}
