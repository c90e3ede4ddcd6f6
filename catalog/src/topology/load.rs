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
    let text = std::fs::read_to_string(path)
        .map_err(|e| CatalogError { diagnostics: vec![Diagnostic::unreadable(path, &e)] })?;
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
                diagnostics: vec![Diagnostic {
                    file: path.to_owned(),
                    pos,
                    field: String::new(),
                    message: format!("malformed YAML: {e}"),
                }],
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
                let name = item.get("name").and_then(Value::as_str).map(str::to_owned);
                let decl = typed::<NodeDecl>(item, &format!("nodes[{i}]"), &mut diags);
                node_decls.push(decl.ok_or(name));
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
    // A node that failed to type stays declared under its name (if it has one), so that
    // references to it are not reported as dangling; its own fields were reported already,
    // so what the semantic checks say about them is dropped.
    let failed: Vec<String> =
        (0..node_decls.len()).filter(|i| node_decls[*i].is_err()).map(|i| format!("nodes[{i}]")).collect();
    top.nodes =
        node_decls.into_iter().map(|n| n.unwrap_or_else(|name| NodeDecl { name, ..NodeDecl::default() })).collect();
    top.links = link_decls.into_iter().flatten().collect();
    let shape_errors = diags.list.len();
    let resolved = resolve::resolve(path, top, &source, &mut diags);
    let within = |field: &str, node: &str| {
        field.strip_prefix(node).is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
    };
    let mut i = shape_errors;
    while i < diags.list.len() {
        if failed.iter().any(|n| within(&diags.list[i].field, n)) {
            diags.list.remove(i);
        } else {
            i += 1;
        }
    }
    match resolved {
        Some(t) if diags.is_empty() => Ok(t),
        _ => Err(CatalogError { diagnostics: diags.into_sorted() }),
    }
}
