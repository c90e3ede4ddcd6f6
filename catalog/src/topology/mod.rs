//! The topology catalog: a YAML description of a service, parsed into a typed, validated,
//! resolved model.
//!
//! # Design
//! Loading runs in three passes so that one `diorama check` reports as many errors as it can:
//! 1. syntax: yaml-rust2 builds a [`SourceMap`] (or reports the syntax error's position);
//! 2. shape: serde (`serde_yaml_ng` + `serde_path_to_error`) types the document, each node
//!    and each link separately, so a bad unit in one node does not hide another's;
//! 3. meaning: names, ranges, references, cycles and links are checked on the typed model.
//!
//! Every [`Diagnostic`] names the file, line, column and field path.

pub mod balancers;
mod load;
pub mod model;
pub mod names;
mod resolve;

pub use crate::diagnostics::Diagnostic;
pub use crate::source::{Pos, SourceMap};
pub use crate::units;
pub use load::{read, read_str};
pub use resolve::{Link, LinkParams, Node, ReadySpec, RunSpec, Topology};

use std::fmt;

/// A topology that could not be loaded: every problem found.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct CatalogError {
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::diagnostics::write_problems(f, "topology", &self.diagnostics)
    }
}

/// The JSON Schema of the topology format.
pub fn schema() -> serde_json::Value {
    let schema = schemars::schema_for!(model::TopologyDecl);
    serde_json::to_value(schema).unwrap_or_default()
}

#[cfg(test)]
mod tests;
