//! Problems found in a catalog file, with their positions, and the one collector every loader
//! (topology, fault timeline, suite) uses to gather them.
//!
//! # Design
//! Loaders do not stop at the first problem: they push each one into a [`Diagnostics`] and
//! report the list, sorted by position, in one error. The errors of the loaders
//! (`CatalogError`, `FaultError`, `SuiteError`) print the same form through
//! [`write_problems`].

use std::fmt;
use std::path::{Path, PathBuf};

use crate::source::{Pos, SourceMap};

/// One problem in a catalog file.
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
        // A file that could not be read has no position (and no field): never `:0:0`.
        if self.pos.line == 0 {
            return write!(f, "{}: {}", self.file.display(), self.message);
        }
        let field = if self.field.is_empty() { "(document)" } else { &self.field };
        write!(f, "{}:{}:{}: {}: {}", self.file.display(), self.pos.line, self.pos.col, field, self.message)
    }
}

impl Diagnostic {
    /// A problem at `pos` of `file`.
    pub fn new(file: &Path, pos: Pos, field: &str, message: impl Into<String>) -> Self {
        Self { file: file.to_owned(), pos, field: field.to_owned(), message: message.into() }
    }

    /// A file that could not be read at all, or is not text; it has no position.
    pub fn unreadable(file: &Path, err: &std::io::Error) -> Self {
        let message = match err.kind() {
            std::io::ErrorKind::InvalidData => {
                "not a text file (it is not UTF-8; catalog files are YAML text)".to_owned()
            }
            std::io::ErrorKind::NotFound => "cannot read the file: no such file".to_owned(),
            std::io::ErrorKind::PermissionDenied => "cannot read the file: permission denied".to_owned(),
            _ => format!("cannot read the file: {err}"),
        };
        Self::new(file, Pos { line: 0, col: 0 }, "", message)
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

/// Collects diagnostics against one file, located through its [`SourceMap`].
pub struct Diagnostics<'a> {
    pub file: &'a Path,
    pub source: &'a SourceMap,
    pub list: Vec<Diagnostic>,
}

impl<'a> Diagnostics<'a> {
    pub fn new(file: &'a Path, source: &'a SourceMap) -> Self {
        Self { file, source, list: Vec::new() }
    }

    /// A problem located at the key of `field`.
    pub fn at(&mut self, field: &str, message: impl Into<String>) {
        let pos = self.source.locate(field);
        self.list.push(Diagnostic::new(self.file, pos, field, message));
    }

    /// A problem located at the value of `field`.
    pub fn at_value(&mut self, field: &str, message: impl Into<String>) {
        let pos = self.source.locate_value(field);
        self.list.push(Diagnostic::new(self.file, pos, field, message));
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The problems found, in file order (stable: equal positions keep the order found).
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.list.sort_by_key(|d| d.pos);
        self.list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_and_binary_files_have_no_position() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("missing.yaml");
        let err = std::fs::read_to_string(&missing).unwrap_err();
        let text = Diagnostic::unreadable(&missing, &err).to_string();
        assert_eq!(text, format!("{}: cannot read the file: no such file", missing.display()));
        let binary = tmp.path().join("binary.yaml");
        std::fs::write(&binary, [0x7f, b'E', b'L', b'F', 0xff, 0xfe, 0]).unwrap();
        let err = std::fs::read_to_string(&binary).unwrap_err();
        let text = Diagnostic::unreadable(&binary, &err).to_string();
        assert!(text.ends_with("not a text file (it is not UTF-8; catalog files are YAML text)"), "{text}");
        assert!(!text.contains(":0:0"), "{text}");
    }
}
