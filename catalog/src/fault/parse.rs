//! From `faults:` entries (in a topology, or a `--scenario` file) to validated [`Fault`]s.
//!
//! # Design
//! Each entry is typed on its own with `serde_path_to_error` (so a bad unit or an unknown
//! key names its field), then checked against the topology: targets exist, the fault type's
//! parameters are present and only those, network faults have a network, `for` only where
//! an undo exists; finally the whole timeline is replayed in time order so that an explicit
//! undo (`restart`, `start`, `resume`, `link_up`, `heal`) of something not faulted at that
//! moment is refused ("undo before do"). Every problem is reported with file, line, column
//! and field, and all of them are collected before refusing.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_yaml_ng::Value;

use super::model::{Action, Degrade, DirChoice, Fault, FaultDecl, RateValue};
use super::Targets;
use crate::diagnostics::{Diagnostic, Diagnostics};
use crate::one_or_many::OneOrMany;
use crate::source::{Pos, SourceMap};
use crate::units;

/// An invalid fault timeline: every problem found.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct FaultError {
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for FaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::diagnostics::write_problems(f, "fault timeline", &self.diagnostics)
    }
}

/// The fault-type keys, in the order of the docs.
pub const TYPES: [&str; 16] = [
    "kill",
    "restart",
    "stop",
    "start",
    "pause",
    "resume",
    "cpu",
    "clock",
    "link_down",
    "link_up",
    "partition",
    "heal",
    "degrade",
    "inflate",
    "load",
    "",
];

/// Where a list of faults comes from.
pub struct Source<'a> {
    /// The file named in diagnostics.
    pub file: &'a Path,
    /// Positions of that file's fields.
    pub map: &'a SourceMap,
    /// Prefix of fault ids (`""` for the topology, `"scenario."` for a scenario file).
    pub id_prefix: &'a str,
}

/// Validates the faults `items` (`(path, value)`, paths like `faults[2]`) against
/// `topology`. Returns them ordered as written.
pub fn parse(items: &[(String, Value)], topology: &dyn Targets, src: &Source<'_>) -> Result<Vec<Fault>, FaultError> {
    let mut diags = Diagnostics::new(src.file, src.map);
    let mut faults = Vec::new();
    for (path, value) in items {
        if let Some(f) = one(path, value.clone(), topology, src.id_prefix, &mut diags) {
            faults.push(f);
        }
    }
    if diags.list.is_empty() {
        check_order(&faults, src.id_prefix, &mut diags);
    }
    if diags.list.is_empty() {
        Ok(faults)
    } else {
        diags.list.sort_by_key(|d| d.pos);
        Err(FaultError { diagnostics: diags.list })
    }
}

/// Loads a scenario file (`faults:` list) and validates it against `topology`.
pub fn load_scenario(file: &Path, topology: &dyn Targets) -> Result<Vec<Fault>, FaultError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| FaultError { diagnostics: vec![Diagnostic::unreadable(file, &e)] })?;
    load_scenario_str(file, &text, topology)
}

/// [`load_scenario`] of text already read; `file` names it in diagnostics.
pub fn load_scenario_str(file: &Path, text: &str, topology: &dyn Targets) -> Result<Vec<Fault>, FaultError> {
    let fail = |pos: Pos, field: &str, message: String| FaultError {
        diagnostics: vec![Diagnostic { file: file.to_owned(), pos, field: field.to_owned(), message }],
    };
    let map = SourceMap::build(text).map_err(|e| fail(e.pos, "", format!("malformed YAML: {}", e.message)))?;
    let root: Value =
        serde_yaml_ng::from_str(text).map_err(|e| fail(Pos { line: 1, col: 1 }, "", format!("malformed YAML: {e}")))?;
    let Value::Mapping(root) = root else {
        return Err(fail(Pos { line: 1, col: 1 }, "", "expected a mapping with a `faults:` list".into()));
    };
    for key in root.keys() {
        let k = key.as_str().unwrap_or("?");
        if !matches!(k, "faults" | "name" | "description") {
            return Err(fail(
                map.locate(k),
                k,
                format!("unknown field `{k}`, expected `faults`, `name` or `description`"),
            ));
        }
    }
    let items = match root.get("faults") {
        Some(Value::Sequence(items)) => {
            items.iter().enumerate().map(|(i, v)| (format!("faults[{i}]"), v.clone())).collect::<Vec<_>>()
        }
        _ => {
            return Err(fail(
                map.locate("faults"),
                "faults",
                "missing or malformed field `faults`: expected a list of faults".into(),
            ))
        }
    };
    let path: PathBuf = file.to_owned();
    parse(&items, topology, &Source { file: &path, map: &map, id_prefix: "scenario." })
}

fn typed(value: Value, prefix: &str, diags: &mut Diagnostics<'_>) -> Option<FaultDecl> {
    match serde_path_to_error::deserialize::<_, FaultDecl>(value) {
        Ok(d) => Some(d),
        Err(err) => {
            let inner = err.path().to_string();
            let field = if inner == "." { prefix.to_owned() } else { format!("{prefix}.{inner}") };
            let message = err.into_inner().to_string();
            let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
            let message = if message.starts_with("unknown field") {
                format!("{message} (fault types: {})", TYPES[..15].join(", "))
            } else {
                message
            };
            diags.at(&field, message);
            None
        }
    }
}

/// Node names selected by each reference of `refs`, reported at `field` / `field[j]`.
fn nodes(refs: &OneOrMany<String>, field: &str, topology: &dyn Targets, diags: &mut Diagnostics<'_>) -> Vec<String> {
    let mut out = Vec::new();
    let many = matches!(refs, OneOrMany::Many(_));
    for (j, r) in refs.to_vec().iter().enumerate() {
        let f = if many { format!("{field}[{j}]") } else { field.to_owned() };
        match topology.select(r) {
            Ok(sel) => {
                for s in sel {
                    if !out.contains(&s) {
                        out.push(s);
                    }
                }
            }
            Err(e) => diags.at_value(&f, e),
        }
    }
    if refs.to_vec().is_empty() {
        diags.at_value(field, "no targets");
    }
    out
}

/// Link names, or for `degrade` also nodes (meaning their access links).
fn links(
    refs: &OneOrMany<String>,
    field: &str,
    topology: &dyn Targets,
    or_nodes: bool,
    diags: &mut Diagnostics<'_>,
) -> Vec<String> {
    let mut out = Vec::new();
    let many = matches!(refs, OneOrMany::Many(_));
    for (j, r) in refs.to_vec().iter().enumerate() {
        let f = if many { format!("{field}[{j}]") } else { field.to_owned() };
        if topology.links().any(|(name, _, _)| name == r) {
            if !out.contains(r) {
                out.push(r.clone());
            }
            continue;
        }
        match (or_nodes, topology.select(r)) {
            (true, Ok(sel)) => {
                for n in sel {
                    let access: Vec<&str> =
                        topology.links().filter(|(_, a, b)| *a == n || *b == n).map(|(name, _, _)| name).collect();
                    if access.is_empty() {
                        diags.at_value(&f, format!("node {n} has no links"));
                    }
                    for l in access {
                        if !out.iter().any(|o| o == l) {
                            out.push(l.to_owned());
                        }
                    }
                }
            }
            _ => {
                let known: Vec<&str> = topology.links().map(|(name, _, _)| name).collect();
                let what = if or_nodes { "link or node" } else { "link" };
                diags.at_value(&f, format!("unknown {what} {r:?} (links: {})", known.join(", ")));
            }
        }
    }
    out
}

fn one(
    path: &str,
    value: Value,
    topology: &dyn Targets,
    id_prefix: &str,
    diags: &mut Diagnostics<'_>,
) -> Option<Fault> {
    if !matches!(value, Value::Mapping(_)) {
        diags.at_value(path, "expected a mapping such as {at: 10s, kill: db}");
        return None;
    }
    let d = typed(value, path, diags)?;
    let before = diags.list.len();
    let field = |k: &str| format!("{path}.{k}");
    let present: Vec<&str> = [
        ("kill", d.kill.is_some()),
        ("restart", d.restart.is_some()),
        ("stop", d.stop.is_some()),
        ("start", d.start.is_some()),
        ("pause", d.pause.is_some()),
        ("resume", d.resume.is_some()),
        ("cpu", d.cpu.is_some()),
        ("clock", d.clock.is_some()),
        ("link_down", d.link_down.is_some()),
        ("link_up", d.link_up.is_some()),
        ("partition", d.partition.is_some()),
        ("heal", d.heal.is_some()),
        ("degrade", d.degrade.is_some()),
        ("inflate", d.inflate.is_some()),
        ("load", d.load.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, p)| p.then_some(k))
    .collect();
    let kind = match present.as_slice() {
        [k] => *k,
        [] => {
            diags.at(path, format!("missing fault type: expected one of {}", TYPES[..15].join(", ")));
            return None;
        }
        [_, second, ..] => {
            diags.at(&field(second), format!("one fault has one type; found {}", present.join(" and ")));
            return None;
        }
    };
    let Some(at) = d.at else {
        diags.at(path, "missing field `at` (virtual time of the fault, e.g. 10s)");
        return None;
    };
    if let Some(end) = topology.duration() {
        // The run ends at its duration: a fault at or after it would never fire.
        if at.0 >= end {
            diags.at_value(
                &field("at"),
                format!("at {:?} is not before the run's duration {end:?}: the fault would never fire", at.0),
            );
        }
    }
    if let Some(f) = d.for_ {
        if f.0.is_zero() {
            diags.at_value(&field("for"), "`for` must be positive");
        }
    }
    // Parameters: which ones each type takes.
    let allowed: &[&str] = match kind {
        "cpu" => &["fraction"],
        "clock" => &["step", "skew"],
        "degrade" => &["delay", "jitter", "loss", "rate", "dir"],
        "inflate" => &["delay"],
        "load" => &["rate"],
        _ => &[],
    };
    for (p, set) in [
        ("fraction", d.fraction.is_some()),
        ("step", d.step.is_some()),
        ("skew", d.skew.is_some()),
        ("delay", d.delay.is_some()),
        ("jitter", d.jitter.is_some()),
        ("loss", d.loss.is_some()),
        ("rate", d.rate.is_some()),
        ("dir", d.dir.is_some()),
    ] {
        if set && !allowed.contains(&p) {
            diags.at(&field(p), format!("`{p}` does not apply to a `{kind}` fault"));
        }
    }
    let t = field(kind);
    let needs_net = matches!(kind, "link_down" | "link_up" | "partition" | "heal" | "degrade" | "inflate");
    if needs_net && topology.links().next().is_none() {
        diags.at(&t, format!("`{kind}` needs the emulated network, and this topology has no links"));
        return None;
    }
    let action = match kind {
        "kill" => Action::Kill(nodes(d.kill.as_ref()?, &t, topology, diags)),
        "restart" => Action::Restart(nodes(d.restart.as_ref()?, &t, topology, diags)),
        "stop" => Action::Stop(nodes(d.stop.as_ref()?, &t, topology, diags)),
        "start" => Action::Start(nodes(d.start.as_ref()?, &t, topology, diags)),
        "pause" => Action::Pause(nodes(d.pause.as_ref()?, &t, topology, diags)),
        "resume" => Action::Resume(nodes(d.resume.as_ref()?, &t, topology, diags)),
        "cpu" => {
            let n = nodes(d.cpu.as_ref()?, &t, topology, diags);
            match d.fraction {
                Some(f) if f > 0.0 && f <= 1.0 => Action::Cpu { nodes: n, fraction: f },
                Some(f) => {
                    diags.at_value(&field("fraction"), format!("fraction {f} must be in (0, 1]"));
                    return None;
                }
                None => {
                    diags.at(path, "a `cpu` fault needs `fraction` (0, 1] of the planned quota");
                    return None;
                }
            }
        }
        "clock" => {
            let n = nodes(d.clock.as_ref()?, &t, topology, diags);
            match (d.step, d.skew) {
                (Some(s), None) => Action::ClockStep { nodes: n, offset_ns: s.0 },
                (None, Some(r)) if r.is_finite() && r > 0.0 => Action::ClockSkew { nodes: n, rate: r },
                (None, Some(r)) => {
                    diags.at_value(&field("skew"), format!("skew {r} must be a positive rate (1 = normal)"));
                    return None;
                }
                _ => {
                    diags
                        .at(path, "a `clock` fault needs exactly one of `step` (e.g. 2s, -500ms) or `skew` (e.g. 1.5)");
                    return None;
                }
            }
        }
        "link_down" => Action::LinkDown(links(d.link_down.as_ref()?, &t, topology, false, diags)),
        "link_up" => Action::LinkUp(links(d.link_up.as_ref()?, &t, topology, false, diags)),
        "partition" => {
            let sides_decl = d.partition.as_ref()?;
            let mut sides: Vec<Vec<String>> = Vec::new();
            for (j, side) in sides_decl.iter().enumerate() {
                sides.push(nodes(side, &format!("{t}[{j}]"), topology, diags));
            }
            if sides.len() < 2 {
                diags.at_value(&t, "a partition needs at least two sides, e.g. [[db0], [web0, web1]]");
            }
            let mut seen = HashSet::new();
            for (j, side) in sides.iter().enumerate() {
                for n in side {
                    if !seen.insert(n.clone()) {
                        diags.at_value(&format!("{t}[{j}]"), format!("node {n} is on more than one side"));
                    }
                }
            }
            Action::Partition(sides)
        }
        "heal" => {
            if d.heal != Some(true) {
                diags.at_value(&t, "write `heal: true`");
            }
            Action::Heal
        }
        "degrade" => {
            let l = links(d.degrade.as_ref()?, &t, topology, true, diags);
            let rate_bps = match &d.rate {
                None => None,
                Some(RateValue::Text(s)) => match units::Rate::parse(s) {
                    Ok(r) => Some(r.0),
                    Err(e) => {
                        diags.at_value(&field("rate"), e.0);
                        None
                    }
                },
                Some(RateValue::Number(n)) => {
                    diags.at_value(&field("rate"), format!("{n} needs a unit: a link rate such as 1Mbit"));
                    None
                }
            };
            if d.delay.is_none() && d.jitter.is_none() && d.loss.is_none() && d.rate.is_none() {
                diags.at(path, "a `degrade` fault needs at least one of `delay`, `jitter`, `loss` or `rate`");
            }
            Action::Degrade(Degrade {
                links: l,
                dir: d.dir.unwrap_or(DirChoice::Both),
                delay: d.delay.map_or(Duration::ZERO, |x| x.0),
                jitter: d.jitter.map_or(Duration::ZERO, |x| x.0),
                loss: d.loss.map_or(0.0, |p| p.0),
                rate_bps,
            })
        }
        "inflate" => {
            let n = nodes(d.inflate.as_ref()?, &t, topology, diags);
            match d.delay {
                Some(x) if !x.0.is_zero() => Action::Inflate { nodes: n, delay: x.0 },
                Some(_) => {
                    diags.at_value(&field("delay"), "the inflation must be positive");
                    return None;
                }
                None => {
                    diags.at(path, "an `inflate` fault needs `delay` (e.g. 1ms)");
                    return None;
                }
            }
        }
        "load" => {
            let n = nodes(d.load.as_ref()?, &t, topology, diags);
            match &d.rate {
                Some(RateValue::Number(r)) if r.is_finite() && *r >= 0.0 => Action::Load { nodes: n, rate: *r },
                Some(other) => {
                    diags.at_value(
                        &field("rate"),
                        format!("{other:?}: expected requests per virtual second, a number ≥ 0"),
                    );
                    return None;
                }
                None => {
                    diags.at(path, "a `load` fault needs `rate` (requests per virtual second)");
                    return None;
                }
            }
        }
        _ => return None,
    };
    if d.for_.is_some() && !action.undoable() {
        let why = if action.is_recovery() { "it is itself an undo" } else { "the previous rate is not known" };
        diags.at(&field("for"), format!("`for` cannot apply to a `{kind}` fault: {why}"));
    }
    if diags.list.len() > before {
        return None;
    }
    Some(Fault { id: format!("{id_prefix}{path}"), name: d.name, at: at.0, undo_after: d.for_.map(|f| f.0), action })
}

/// Replays the timeline: an explicit undo must find its target faulted.
fn check_order(faults: &[Fault], id_prefix: &str, diags: &mut Diagnostics<'_>) {
    // (time, order, fault index, is auto-undo)
    let mut steps: Vec<(Duration, usize, usize, bool)> = Vec::new();
    for (i, f) in faults.iter().enumerate() {
        steps.push((f.at, 2 * i, i, false));
        if let Some(d) = f.undo_after {
            steps.push((f.at + d, 2 * i + 1, i, true));
        }
    }
    steps.sort();
    let mut down: HashSet<String> = HashSet::new();
    let mut paused: HashSet<String> = HashSet::new();
    let mut links_down: HashSet<String> = HashSet::new();
    let mut partitioned = false;
    for (_, _, i, auto) in steps {
        let f = &faults[i];
        let path = f.id.strip_prefix(id_prefix).unwrap_or(&f.id);
        let field = format!("{path}.{}", f.action.kind());
        let mut require = |set: &mut HashSet<String>, targets: &[String], what: &str| {
            for t in targets {
                if !set.remove(t) {
                    diags.at(&field, format!("undo before do: {t} is not {what} at {:?}", f.at));
                }
            }
        };
        match (&f.action, auto) {
            (Action::Kill(n) | Action::Stop(n), false) => down.extend(n.iter().cloned()),
            (Action::Kill(n) | Action::Stop(n), true) => n.iter().for_each(|x| {
                down.remove(x);
            }),
            (Action::Restart(n), _) => {
                // A restart of a running node kills it first; only refuse one that follows
                // nothing at all (a `restart` with no `kill`/`stop` before it is most likely
                // a mistake of order).
                let ever: Vec<&String> = n.iter().filter(|x| !down.contains(*x)).collect();
                for x in &ever {
                    let killed_earlier = faults.iter().any(|g| {
                        g.at <= f.at
                            && !std::ptr::eq(g, f)
                            && matches!(&g.action, Action::Kill(m) | Action::Stop(m) if m.contains(x))
                    });
                    if !killed_earlier {
                        diags.at(
                            &field,
                            format!(
                                "undo before do: {x} is restarted at {:?} but never killed or stopped before",
                                f.at
                            ),
                        );
                    }
                }
                n.iter().for_each(|x| {
                    down.remove(x);
                });
            }
            (Action::Start(n), _) => require(&mut down, n, "stopped or killed"),
            (Action::Pause(n), false) => paused.extend(n.iter().cloned()),
            (Action::Pause(n), true) => n.iter().for_each(|x| {
                paused.remove(x);
            }),
            (Action::Resume(n), _) => require(&mut paused, n, "paused"),
            (Action::LinkDown(l), false) => links_down.extend(l.iter().cloned()),
            (Action::LinkDown(l), true) => l.iter().for_each(|x| {
                links_down.remove(x);
            }),
            (Action::LinkUp(l), _) => require(&mut links_down, l, "down"),
            (Action::Partition(_), a) => partitioned = !a,
            (Action::Heal, _) => {
                if !partitioned {
                    diags.at(&field, format!("undo before do: no partition is in place at {:?}", f.at));
                }
                partitioned = false;
            }
            _ => {}
        }
    }
}
