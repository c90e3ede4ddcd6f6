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

mod load;
pub mod model;
pub mod names;
mod resolve;
pub mod source;
pub mod units;

pub use load::{load, load_str};
pub use resolve::{Link, LinkParams, Node, ReadySpec, RunSpec, Topology};
pub use source::{Pos, SourceMap};

use std::fmt;
use std::path::PathBuf;

/// One problem in a topology file.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub pos: Pos,
    /// The field path, e.g. `nodes[2].link.rate`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = if self.field.is_empty() { "(document)" } else { &self.field };
        write!(f, "{}:{}:{}: {}: {}", self.file.display(), self.pos.line, self.pos.col, field, self.message)
    }
}

/// A topology that could not be loaded: every problem found.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct CatalogError {
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_problems(f, "topology", &self.diagnostics)
    }
}

/// Writes `invalid WHAT (N problems):` and one indented line per diagnostic: the one form
/// of every "all problems found" error (topologies, fault timelines, suites).
pub fn write_problems(f: &mut fmt::Formatter<'_>, what: &str, diagnostics: &[Diagnostic]) -> fmt::Result {
    let n = diagnostics.len();
    writeln!(f, "invalid {what} ({n} problem{}):", if n == 1 { "" } else { "s" })?;
    for (i, d) in diagnostics.iter().enumerate() {
        if i > 0 {
            writeln!(f)?;
        }
        write!(f, "  {d}")?;
    }
    Ok(())
}

impl Diagnostic {
    /// A file that could not be read at all.
    pub fn unreadable(file: &std::path::Path, err: &std::io::Error) -> Self {
        Self { file: file.to_owned(), pos: Pos { line: 0, col: 0 }, field: String::new(), message: format!("cannot read the file: {err}") }
    }
}

/// The JSON Schema of the topology format.
pub fn schema() -> serde_json::Value {
    let schema = schemars::schema_for!(model::TopologyDecl);
    serde_json::to_value(schema).unwrap_or_default()
}

#[cfg(test)]
mod tests;
