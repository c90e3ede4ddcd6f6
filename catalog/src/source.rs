//! Source positions of every field of a YAML document, by path (`nodes[2].link.to`), so
//! that errors found after deserialization still name a file, line and column.
//!
//! # Design
//! serde gives positions only for the first error it meets. The catalog instead walks the
//! document once with yaml-rust2's marked event parser and records, for every mapping key
//! and every value, where it starts. Paths use the same syntax as `serde_path_to_error`.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A position in a file: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// Path → position of the key (for mapping entries) and of the value.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    keys: HashMap<String, Pos>,
    values: HashMap<String, Pos>,
}

/// A YAML syntax error with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

enum Frame {
    Map { path: String, key: Option<(String, Pos)>, expecting_key: bool },
    Seq { path: String, index: usize },
}

struct Builder {
    map: SourceMap,
    stack: Vec<Frame>,
}

fn pos(mark: Marker) -> Pos {
    // yaml-rust2 lines are 1-based and columns 0-based.
    Pos { line: mark.line(), col: mark.col() + 1 }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

impl Builder {
    /// The path of the value about to start, and records its position. Returns `None` when
    /// the event is a mapping key.
    fn value_path(&mut self, at: Pos, scalar: Option<&str>) -> Option<String> {
        match self.stack.last_mut() {
            None => {
                self.map.values.insert(String::new(), at);
                Some(String::new())
            }
            Some(Frame::Seq { path, index }) => {
                let p = format!("{path}[{index}]");
                *index += 1;
                self.map.values.insert(p.clone(), at);
                Some(p)
            }
            Some(Frame::Map { path, key, expecting_key }) => {
                if *expecting_key {
                    let name = scalar.unwrap_or("?").to_owned();
                    let p = join(path, &name);
                    self.map.keys.insert(p, at);
                    *key = Some((name, at));
                    *expecting_key = false;
                    None
                } else {
                    let name = key.take().map_or_else(|| "?".to_owned(), |(k, _)| k);
                    let p = join(path, &name);
                    *expecting_key = true;
                    self.map.values.insert(p.clone(), at);
                    Some(p)
                }
            }
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let at = pos(mark);
        match ev {
            Event::Scalar(text, ..) => {
                self.value_path(at, Some(&text));
            }
            Event::Alias(_) => {
                self.value_path(at, None);
            }
            Event::MappingStart(..) => {
                let path = self.value_path(at, None).unwrap_or_default();
                self.stack.push(Frame::Map { path, key: None, expecting_key: true });
            }
            Event::SequenceStart(..) => {
                let path = self.value_path(at, None).unwrap_or_default();
                self.stack.push(Frame::Seq { path, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

impl SourceMap {
    /// Walks `text`; a syntax error is returned with its position.
    pub fn build(text: &str) -> Result<Self, SyntaxError> {
        let mut builder = Builder { map: SourceMap::default(), stack: Vec::new() };
        let mut parser = Parser::new_from_str(text);
        parser
            .load(&mut builder, false)
            .map_err(|e| SyntaxError { pos: pos(*e.marker()), message: e.info().to_owned() })?;
        Ok(builder.map)
    }

    /// Where `path` is written: its key if it is a mapping entry, else its value; falling
    /// back to the nearest ancestor that exists (a field supplied by `defaults`, say).
    pub fn locate(&self, path: &str) -> Pos {
        let mut p = path.to_owned();
        loop {
            if p.is_empty() {
                // The document itself: its mapping "starts" after the first key.
                return Pos { line: 1, col: 1 };
            }
            if let Some(at) = self.keys.get(&p).or_else(|| self.values.get(&p)) {
                return *at;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p.truncate(i),
                None => p.clear(),
            }
        }
    }

    /// Where the *value* at `path` starts (falls back like [`SourceMap::locate`]).
    pub fn locate_value(&self, path: &str) -> Pos {
        self.values.get(path).copied().unwrap_or_else(|| self.locate(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str =
        "name: x\nnodes:\n  - name: a\n    link: {to: s1, rate: 1Gbit}\n  - name: b\n    depends_on: [a, c]\n";

    #[test]
    fn keys_and_values_have_positions() {
        let map = SourceMap::build(DOC).unwrap();
        assert_eq!(map.locate("name"), Pos { line: 1, col: 1 });
        assert_eq!(map.locate_value("name"), Pos { line: 1, col: 7 });
        assert_eq!(map.locate("nodes[0].name"), Pos { line: 3, col: 5 });
        assert_eq!(map.locate("nodes[0].link.rate"), Pos { line: 4, col: 20 });
        assert_eq!(map.locate_value("nodes[1].depends_on[1]"), Pos { line: 6, col: 21 });
    }

    #[test]
    fn missing_paths_fall_back_to_the_nearest_ancestor() {
        let map = SourceMap::build(DOC).unwrap();
        assert_eq!(map.locate("nodes[1].memory"), map.locate_value("nodes[1]"));
        assert_eq!(map.locate("nowhere.at.all"), Pos { line: 1, col: 1 });
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = SourceMap::build("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.pos.line >= 1, "{err:?}");
        assert!(!err.message.is_empty());
    }
}
