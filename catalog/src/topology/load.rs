//! Passes 1 and 2: syntax and shape.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;

use super::model::{LinkDecl, NodeDecl, TopologyDecl};
use super::{resolve, CatalogError, Topology};
use crate::diagnostics::{Diagnostic, Diagnostics};
use crate::source::{Pos, SourceMap};

/// Reads and validates a topology file, except its `faults:` (see `crate::load::topology`).
pub fn read(path: &Path) -> Result<Topology, CatalogError> {
    let text = std::fs::read_to_string(path).map_err(|e| CatalogError { diagnostics: vec![Diagnostic::unreadable(path, &e)] })?;
    read_str(path, &text)
}

/// Deserializes `value` as `T`, reporting a failure at `prefix` + the inner path.
fn typed<T: DeserializeOwned>(value: Value, prefix: &str, diags: &mut Diagnostics<'_>) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(t) => Some(t),
        Err(err) => {
            let inner = err.path().to_string();
            let field = match (prefix.is_empty(), inner.as_str()) {
                (_, ".") => prefix.to_owned(),
                (true, _) => inner,
                (false, i) if i.starts_with('[') => format!("{prefix}{i}"),
                (false, i) => format!("{prefix}.{i}"),
            };
            let message = err.into_inner().to_string();
            // serde_yaml_ng appends " at line X column Y" for its own positions; ours are better.
            let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
            diags.at(&field, message);
            None
        }
    }
}

/// Reads a topology from text, except its `faults:`; `path` names it in diagnostics and
/// resolves relative paths.
pub fn read_str(path: &Path, text: &str) -> Result<Topology, CatalogError> {
    let source = match SourceMap::build(text) {
        Ok(map) => map,
        Err(e) => {
            return Err(CatalogError {
                diagnostics: vec![Diagnostic {
                    file: path.to_owned(),
                    pos: e.pos,
                    field: String::new(),
                    message: format!("malformed YAML: {}", e.message),
                }],
            })
        }
    };
    let mut diags = Diagnostics::new(path, &source);
    let mut root: Value = match serde_yaml_ng::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let pos = e.location().map_or(Pos { line: 1, col: 1 }, |l| Pos { line: l.line(), col: l.column() });
            return Err(CatalogError {
                diagnostics: vec![Diagnostic { file: path.to_owned(), pos, field: String::new(), message: format!("malformed YAML: {e}") }],
            });
        }
    };
    let Value::Mapping(map) = &mut root else {
        diags.at("", "expected a mapping with `name` and `nodes` at the top level");
        return Err(CatalogError { diagnostics: diags.list });
    };
    // Nodes and links are typed one by one, so that each bad one is reported.
    let nodes = map.remove("nodes");
    let links = map.remove("links");
    map.insert(Value::from("nodes"), Value::Sequence(Vec::new()));
    let top: Option<TopologyDecl> = typed(root, "", &mut diags);
    let mut node_decls = Vec::new();
    match nodes {
        Some(Value::Sequence(items)) => {
            for (i, item) in items.into_iter().enumerate() {
                node_decls.push(typed::<NodeDecl>(item, &format!("nodes[{i}]"), &mut diags));
            }
        }
        Some(Value::Null) | None => diags.at("nodes", "missing field `nodes`: a topology needs at least one node"),
        Some(_) => diags.at("nodes", "expected a list of nodes"),
    }
    let mut link_decls = Vec::new();
    match links {
        Some(Value::Sequence(items)) => {
            for (i, item) in items.into_iter().enumerate() {
                link_decls.push(typed::<LinkDecl>(item, &format!("links[{i}]"), &mut diags));
            }
        }
        Some(Value::Null) | None => {}
        Some(_) => diags.at("links", "expected a list of links"),
    }
    let Some(mut top) = top else {
        return Err(CatalogError { diagnostics: diags.list });
    };
    top.nodes = node_decls.iter().map(|n| n.clone().unwrap_or_default()).collect();
    top.links = link_decls.iter().flatten().cloned().collect();
    if node_decls.iter().any(Option::is_none) || link_decls.iter().any(Option::is_none) {
        // Semantic checks on a partial model would report noise (dangling references to
        // the nodes that failed to parse); report the shape errors first.
        return Err(CatalogError { diagnostics: diags.list });
    }
    match resolve::resolve(path, top, &source, &mut diags) {
        Some(t) if diags.is_empty() => Ok(t),
        _ => Err(CatalogError { diagnostics: diags.into_sorted() }),
    }
}
