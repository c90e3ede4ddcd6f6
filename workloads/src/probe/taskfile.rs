//! Task files: YAML with a `tasks:` list of task specs, for `cli task create --file`.
//!
//! ```yaml
//! tasks:
//!   - type: RECURRING
//!     measurement: {kind: ping, count: 5}
//!     endpoints: [ep0, ep1]
//!     locations: [eu, us]
//!     interval: 30s
//! ```
//!
//! # Invariants
//! Every problem is reported as `file:line:column: field: message`, with the line of the
//! field (or of its nearest enclosing entry): shape errors from the parser, semantic ones
//! from [`super::spec::validate`], and the server's 400 answers mapped back onto the file.
//!
//! # Design
//! serde reports only the first shape error and no position for semantic ones, so the file
//! is also walked once with yaml-rust2's marked event parser, recording where every key
//! starts by path (`tasks[1].stop_time`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use super::spec::{validate, FieldError, TaskSpec};

/// One problem in a task file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}: {}: {}", self.file.display(), self.line, self.col, self.field, self.message)
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskFile {
    tasks: Vec<TaskSpec>,
}

/// Where each path of a YAML document starts (1-based line and column).
#[derive(Debug, Clone, Default)]
pub struct Positions {
    at: HashMap<String, (usize, usize)>,
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

struct Walker {
    positions: Positions,
    stack: Vec<Frame>,
}

impl Walker {
    /// Records a node starting at `at`; returns its path unless it is a mapping key.
    fn node(&mut self, at: (usize, usize), scalar: Option<&str>) -> Option<String> {
        let path = match self.stack.last_mut() {
            None => String::new(),
            Some(Frame::Seq { path, next }) => {
                *next += 1;
                format!("{path}[{}]", *next - 1)
            }
            Some(Frame::Map { path, key }) => match key.take() {
                None => {
                    let name = scalar.unwrap_or("?").to_owned();
                    let full = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
                    self.positions.at.entry(full).or_insert(at);
                    *key = Some(name);
                    return None;
                }
                Some(name) => {
                    if path.is_empty() {
                        name
                    } else {
                        format!("{path}.{name}")
                    }
                }
            },
        };
        self.positions.at.entry(path.clone()).or_insert(at);
        Some(path)
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        // yaml-rust2: lines 1-based, columns 0-based.
        let at = (mark.line(), mark.col() + 1);
        match ev {
            Event::Scalar(text, ..) => {
                self.node(at, Some(&text));
            }
            Event::Alias(_) => {
                self.node(at, None);
            }
            Event::MappingStart(..) => {
                let path = self.node(at, None).unwrap_or_default();
                self.stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.node(at, None).unwrap_or_default();
                self.stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

impl Positions {
    /// Walks `text`; `Err((line, col, message))` on a syntax error.
    pub fn of(text: &str) -> Result<Self, (usize, usize, String)> {
        let mut walker = Walker { positions: Positions::default(), stack: Vec::new() };
        Parser::new_from_str(text)
            .load(&mut walker, false)
            .map_err(|e| (e.marker().line(), e.marker().col() + 1, e.info().to_owned()))?;
        Ok(walker.positions)
    }

    /// The position of `path`, or of its nearest recorded ancestor.
    pub fn locate(&self, path: &str) -> (usize, usize) {
        let mut p = path.to_owned();
        loop {
            if let Some(at) = self.at.get(&p) {
                return *at;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p.truncate(i),
                None => return self.at.get("").copied().unwrap_or((1, 1)),
            }
        }
    }
}

/// A task file read and checked as far as the CLI can without the server.
#[derive(Debug, Clone)]
pub struct LoadedFile {
    pub path: PathBuf,
    pub specs: Vec<TaskSpec>,
    pub positions: Positions,
}

impl LoadedFile {
    /// Maps field errors of task `index` (as the API reports them) onto the file.
    pub fn locate(&self, index: usize, errors: &[FieldError]) -> Vec<FileError> {
        errors
            .iter()
            .map(|e| {
                let field = format!("tasks[{index}].{}", e.field);
                let (line, col) = self.positions.locate(&field);
                FileError { file: self.path.clone(), line, col, field, message: e.message.clone() }
            })
            .collect()
    }
}

/// serde_yaml_ng's message without the path before it and the position after it (both
/// are reported in their own fields).
fn bare_message(text: &str) -> String {
    let text = text.rfind(" at line ").map_or(text, |i| &text[..i]);
    match text.split_once(": ") {
        Some((head, rest)) if !head.contains(' ') => rest.to_owned(),
        _ => text.to_owned(),
    }
}

/// Reads and checks a task file: shape and every semantic rule except the locations'
/// existence, which only the server knows.
pub fn load(path: &Path, text: &str) -> Result<LoadedFile, Vec<FileError>> {
    let error = |line, col, field: &str, message: String| FileError {
        file: path.to_owned(),
        line,
        col,
        field: field.to_owned(),
        message,
    };
    let positions = Positions::of(text).map_err(|(line, col, message)| vec![error(line, col, "(syntax)", message)])?;
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let file: TaskFile = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let (line, col) = match e.inner().location() {
            Some(l) => (l.line(), l.column()),
            None => positions.locate(&field),
        };
        vec![error(line, col, &field, bare_message(&e.inner().to_string()))]
    })?;
    let loaded = LoadedFile { path: path.to_owned(), specs: file.tasks, positions };
    let mut errors = Vec::new();
    for (i, spec) in loaded.specs.iter().enumerate() {
        // Every location counts as known here; the server checks them.
        if let Err(e) = validate(spec, 0, &spec.locations, super::server::now()) {
            errors.extend(loaded.locate(i, &e));
        }
    }
    if errors.is_empty() {
        Ok(loaded)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_file() {
        let text = "tasks:\n  - type: ONE-OFF\n    measurement: {kind: ping, count: 2}\n    endpoints: [a]\n    locations: [eu]\n";
        let f = load(Path::new("t.yaml"), text).unwrap();
        assert_eq!(f.specs.len(), 1);
    }

    #[test]
    fn semantic_errors_name_file_line_and_field() {
        let text = "\
tasks:
  - type: ONE-OFF
    measurement: {kind: dns}
    endpoints: [a]
    locations: [eu]
  - type: RECURRING-SCHEDULED
    measurement: {kind: ping}
    endpoints: []
    locations: [eu]
    start_time: 2030-01-01T01:00:00Z
    stop_time: 2030-01-01T00:00:00Z
    cron: '99 * * * *'
";
        let errors = load(Path::new("t.yaml"), text).unwrap_err();
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 3, "{shown:?}");
        assert!(shown[0].starts_with("t.yaml:8:5: tasks[1].endpoints: must list"), "{shown:?}");
        assert!(shown[1].starts_with("t.yaml:12:5: tasks[1].cron: invalid cron expression"), "{shown:?}");
        assert!(shown[2].starts_with("t.yaml:11:5: tasks[1].stop_time: "), "{shown:?}");
    }

    #[test]
    fn shape_errors_name_the_line() {
        let text = "tasks:\n  - type: ONE-OFF\n    measurement: {kind: ping}\n    endpoints: [a]\n    locations: [eu]\n    colour: red\n";
        let errors = load(Path::new("t.yaml"), text).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].to_string().split(": unknown field").next(),
            Some("t.yaml:6:5: tasks[0].colour"),
            "{errors:?}"
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let errors = load(Path::new("t.yaml"), "tasks:\n  - type: [ONE-OFF\n").unwrap_err();
        assert_eq!(errors[0].field, "(syntax)");
        assert!(errors[0].line >= 2, "{errors:?}");
    }

    #[test]
    fn server_errors_map_onto_the_file() {
        let text =
            "tasks:\n  - type: ONE-OFF\n    measurement: {kind: dns}\n    endpoints: [a]\n    locations: [eu, mars]\n";
        let f = load(Path::new("t.yaml"), text).unwrap();
        let mapped = f.locate(0, &[FieldError::new("locations[1]", "unknown location \"mars\"")]);
        assert_eq!(mapped[0].to_string(), "t.yaml:5:21: tasks[0].locations[1]: unknown location \"mars\"");
    }
}
