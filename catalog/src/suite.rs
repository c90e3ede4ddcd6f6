//! The suite file: scenarios to run in order, each with assertions, parsed and checked with
//! the position (file, line, column, field) of every problem.
//!
//! # Design
//! The document is read twice, like a topology: once by yaml-rust2 for positions
//! ([`SourceMap`]), once by serde for the values. Assertions are small strings
//! (`p99 < 250ms`) or one-key maps (`fidelity: ok`); they are parsed by hand so that every
//! error points at the assertion that has it. Paths (`topology`, `scenario`, `compare_to`)
//! are relative to the suite file's directory.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_yaml_ng::Value;

use crate::diagnostics::{Diagnostic, Diagnostics};
use crate::source::{Pos, SourceMap};
use crate::units;

/// A suite file that could not be loaded: every problem found.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct SuiteError {
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for SuiteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::diagnostics::write_problems(f, "suite", &self.diagnostics)
    }
}

/// A comparison operator of a metric assertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Op {
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
}

impl Op {
    pub fn holds(self, measured: f64, expected: f64) -> bool {
        match self {
            Op::Lt => measured < expected,
            Op::Le => measured <= expected,
            Op::Gt => measured > expected,
            Op::Ge => measured >= expected,
        }
    }
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

/// What a metric assertion measures (summary.json of the run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Corrected latency, a field of `latency_ms` (`p50`, `p99`, `mean`, …), in ms.
    Latency(&'static str),
    /// `requests.error_rate`, a fraction.
    ErrorRate,
    /// `throughput_rps`, completed requests per virtual second.
    Throughput,
    /// `requests.errors`.
    Errors,
    /// `requests.completed`.
    Completed,
}

impl Metric {
    fn parse(name: &str) -> Option<Self> {
        const LATENCY: [&str; 7] = ["min", "p50", "p90", "p99", "p999", "mean", "max"];
        if let Some(f) = LATENCY.iter().find(|f| **f == name) {
            return Some(Metric::Latency(f));
        }
        match name {
            "median" => Some(Metric::Latency("p50")),
            "error_rate" => Some(Metric::ErrorRate),
            "throughput" => Some(Metric::Throughput),
            "errors" => Some(Metric::Errors),
            "completed" => Some(Metric::Completed),
            _ => None,
        }
    }

    /// Parses the right-hand side into the metric's unit (ms, fraction, per second, count).
    fn parse_value(self, text: &str) -> Result<f64, String> {
        match self {
            Metric::Latency(_) => units::Duration::parse(text).map(|d| d.0.as_secs_f64() * 1e3).map_err(|e| e.0),
            Metric::ErrorRate => units::Percent::parse(text).map(|p| p.0).map_err(|e| e.0),
            Metric::Throughput => {
                let t = text.trim();
                let num = t.strip_suffix("/s").or_else(|| t.strip_suffix("rps")).unwrap_or(t).trim();
                num.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| format!("{text:?} is not a rate; write e.g. 900/s"))
            }
            Metric::Errors | Metric::Completed => text
                .trim()
                .parse::<u64>()
                .map(|v| v as f64)
                .map_err(|_| format!("{text:?} is not a count (a whole number)")),
        }
    }

    /// Formats a value of this metric with its unit.
    pub fn show(self, v: f64) -> String {
        match self {
            Metric::Latency(_) => format!("{v:.3} ms"),
            Metric::ErrorRate => format!("{:.3}%", v * 100.0),
            Metric::Throughput => format!("{v:.1}/s"),
            Metric::Errors | Metric::Completed => format!("{v:.0}"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Metric::Latency(f) => f,
            Metric::ErrorRate => "error_rate",
            Metric::Throughput => "throughput",
            Metric::Errors => "errors",
            Metric::Completed => "completed",
        }
    }
}

/// The parameters of the recovery definition (see docs/suites.md).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RecoveryParams {
    /// Per-second completed throughput must be within this fraction of the pre-fault mean.
    pub tolerance: f64,
    /// Per-second error rate may exceed the pre-fault error rate by at most this (absolute).
    pub error_margin: f64,
    /// For this many consecutive virtual seconds.
    pub hold_s: u32,
    /// Seconds after the first completed request that the pre-fault mean ignores.
    pub warmup_s: u32,
}

impl Default for RecoveryParams {
    fn default() -> Self {
        Self { tolerance: 0.10, error_margin: 0.01, hold_s: 5, warmup_s: 2 }
    }
}

/// Where the recovery clock starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryFrom {
    /// When the fault is injected.
    Injection,
    /// When the fault is undone (`for:` elapsed, or its explicit undo).
    End,
}

/// One assertion about a scenario's run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Assertion {
    Metric { metric: Metric, op: Op, value: f64 },
    Fidelity { verdict: String },
    Recovers { within_s: f64, fault: String, from: RecoveryFrom, params: RecoveryParams },
    CompareTo { baseline: PathBuf, thresholds: Option<Value> },
}

/// An assertion with the text it was written as (its name in reports).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub text: String,
    /// Field path in the suite file (`scenarios[0].assert[2]`).
    pub field: String,
    pub line: usize,
    #[serde(flatten)]
    pub assertion: Assertion,
}

/// One scenario: a topology run with optional scenario file, TDF and duration.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    pub name: String,
    pub topology: PathBuf,
    pub scenario: Option<PathBuf>,
    pub tdf: Option<f64>,
    pub duration: Option<String>,
    pub headroom: Option<f64>,
    pub checks: Vec<Check>,
    /// Field path (`scenarios[1]`).
    pub field: String,
}

/// A loaded suite.
#[derive(Debug, Clone, Serialize)]
pub struct Suite {
    pub file: PathBuf,
    pub name: String,
    pub scenarios: Vec<Scenario>,
    #[serde(skip)]
    pub source: SourceMap,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuiteDecl {
    name: String,
    #[serde(default)]
    #[expect(dead_code, reason = "free text for people; accepted and ignored")]
    description: Option<String>,
    #[serde(default)]
    recovery: Option<RecoveryDecl>,
    scenarios: Vec<ScenarioDecl>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecoveryDecl {
    tolerance: Option<String>,
    error_margin: Option<String>,
    hold: Option<String>,
    warmup: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioDecl {
    name: String,
    topology: PathBuf,
    #[serde(default)]
    scenario: Option<PathBuf>,
    #[serde(default)]
    tdf: Option<f64>,
    #[serde(default)]
    duration: Option<String>,
    #[serde(default)]
    headroom: Option<f64>,
    #[serde(default, rename = "assert")]
    asserts: Vec<Value>,
}

/// Loads and checks a suite file (syntax, shape, assertions, referenced files exist).
pub fn load(path: &Path) -> Result<Suite, SuiteError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| SuiteError { diagnostics: vec![Diagnostic::unreadable(path, &e)] })?;
    load_str(path, &text)
}

fn one(file: &Path, pos: Pos, field: &str, message: String) -> SuiteError {
    SuiteError { diagnostics: vec![Diagnostic { file: file.to_owned(), pos, field: field.to_owned(), message }] }
}

/// Loads a suite from text; `path` names it and anchors relative paths.
pub fn load_str(path: &Path, text: &str) -> Result<Suite, SuiteError> {
    let source = SourceMap::build(text).map_err(|e| one(path, e.pos, "", format!("malformed YAML: {}", e.message)))?;
    let mut diags = Diagnostics::new(path, &source);
    let decl: SuiteDecl = match serde_yaml_ng::from_str::<Value>(text) {
        Err(e) => {
            let pos = e.location().map_or(Pos { line: 1, col: 1 }, |l| Pos { line: l.line(), col: l.column() });
            return Err(one(path, pos, "", format!("malformed YAML: {e}")));
        }
        Ok(value) => match serde_path_to_error::deserialize::<_, SuiteDecl>(value) {
            Ok(d) => d,
            Err(err) => {
                let field = err.path().to_string();
                let field = if field == "." { String::new() } else { field };
                let message = err.into_inner().to_string();
                let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
                diags.at(&field, message);
                return Err(SuiteError { diagnostics: diags.list });
            }
        },
    };
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let params = recovery_params(decl.recovery.unwrap_or_default(), "recovery", RecoveryParams::default(), &mut diags);
    if decl.scenarios.is_empty() {
        diags.at("scenarios", "a suite needs at least one scenario");
    }
    let mut scenarios = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, s) in decl.scenarios.into_iter().enumerate() {
        let field = format!("scenarios[{i}]");
        if !names.insert(s.name.clone()) {
            diags.at(&format!("{field}.name"), format!("duplicate scenario name {:?}", s.name));
        }
        if s.name.is_empty() || !s.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            diags.at(
                &format!("{field}.name"),
                "a scenario name is its results directory: use letters, digits, '-', '_', '.'",
            );
        }
        let topology = base.join(&s.topology);
        if !topology.is_file() {
            diags.at(&format!("{field}.topology"), format!("topology file {} not found", topology.display()));
        }
        let scenario = s.scenario.map(|p| base.join(p));
        if let Some(p) = scenario.as_ref().filter(|p| !p.is_file()) {
            diags.at(&format!("{field}.scenario"), format!("scenario file {} not found", p.display()));
        }
        if let Some(t) = s.tdf.filter(|t| !(t.is_finite() && *t > 0.0)) {
            diags.at(&format!("{field}.tdf"), format!("TDF {t} must be a positive number"));
        }
        if let Some(d) = &s.duration {
            if let Err(e) = units::Duration::parse(d) {
                diags.at(&format!("{field}.duration"), e.0);
            }
        }
        if let Some(h) = s.headroom.filter(|h| !(*h > 0.0 && *h <= 1.0)) {
            diags.at(&format!("{field}.headroom"), format!("headroom {h} must be in (0, 1]"));
        }
        let mut checks = Vec::new();
        for (j, v) in s.asserts.iter().enumerate() {
            let afield = format!("{field}.assert[{j}]");
            match parse_assertion(v, &base, params, &afield, &mut diags) {
                Some((text, assertion)) => {
                    // A map assertion is located by its key (its mapping has no position of its own).
                    let afield = match (&assertion, v) {
                        (Assertion::Metric { .. }, _) | (_, Value::String(_)) => afield,
                        (Assertion::Fidelity { .. }, _) => format!("{afield}.fidelity"),
                        (Assertion::Recovers { .. }, _) => format!("{afield}.recovers_within"),
                        (Assertion::CompareTo { .. }, _) => format!("{afield}.compare_to"),
                    };
                    let line = source.locate(&afield).line;
                    checks.push(Check { text, field: afield, line, assertion });
                }
                None => continue,
            }
        }
        scenarios.push(Scenario {
            name: s.name,
            topology,
            scenario,
            tdf: s.tdf,
            duration: s.duration,
            headroom: s.headroom,
            checks,
            field,
        });
    }
    if !diags.list.is_empty() {
        diags.list.sort_by_key(|d| d.pos);
        return Err(SuiteError { diagnostics: diags.list });
    }
    Ok(Suite { file: path.to_owned(), name: decl.name, scenarios, source })
}

fn fraction(text: &str) -> Result<f64, String> {
    units::Percent::parse(text).map(|p| p.0).map_err(|e| e.0)
}

fn whole_seconds(text: &str) -> Result<u32, String> {
    let d = units::Duration::parse(text).map_err(|e| e.0)?;
    let s = d.0.as_secs_f64();
    if s.fract() != 0.0 || s > f64::from(u32::MAX) {
        return Err(format!("{text:?}: recovery works on whole virtual seconds"));
    }
    Ok(s as u32)
}

fn recovery_params(
    decl: RecoveryDecl,
    field: &str,
    mut p: RecoveryParams,
    diags: &mut Diagnostics<'_>,
) -> RecoveryParams {
    if let Some(t) = &decl.tolerance {
        match fraction(t) {
            Ok(v) => p.tolerance = v,
            Err(e) => diags.at(&format!("{field}.tolerance"), e),
        }
    }
    if let Some(t) = &decl.error_margin {
        match fraction(t) {
            Ok(v) => p.error_margin = v,
            Err(e) => diags.at(&format!("{field}.error_margin"), e),
        }
    }
    if let Some(t) = &decl.hold {
        match whole_seconds(t) {
            Ok(0) => diags.at(&format!("{field}.hold"), "hold must be at least 1s"),
            Ok(v) => p.hold_s = v,
            Err(e) => diags.at(&format!("{field}.hold"), e),
        }
    }
    if let Some(t) = &decl.warmup {
        match whole_seconds(t) {
            Ok(v) => p.warmup_s = v,
            Err(e) => diags.at(&format!("{field}.warmup"), e),
        }
    }
    p
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `20s after fault db-down` or `20s after fault db-down ends`.
fn parse_recovers(text: &str) -> Result<(f64, String, RecoveryFrom), String> {
    let usage = "expected `recovers_within: DURATION after fault NAME` (or `... after fault NAME ends`)";
    let (within, rest) = text.split_once(" after ").ok_or_else(|| format!("{text:?}: {usage}"))?;
    let within = units::Duration::parse(within).map_err(|e| e.0)?.0.as_secs_f64();
    let rest = rest.trim();
    let name = rest.strip_prefix("fault ").ok_or_else(|| format!("{text:?}: {usage}"))?.trim();
    let (name, from) = match name.strip_suffix(" ends") {
        Some(n) => (n.trim(), RecoveryFrom::End),
        None => (name, RecoveryFrom::Injection),
    };
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(format!("{text:?}: the fault is named by its `name` or its id (faults[2])"));
    }
    Ok((within, name.to_owned(), from))
}

fn parse_metric(text: &str) -> Result<Assertion, String> {
    let t = text.trim();
    let ops = [("<=", Op::Le), (">=", Op::Ge), ("<", Op::Lt), (">", Op::Gt)];
    let (at, sym, op) = ops
        .iter()
        .filter_map(|(s, op)| t.find(s).map(|i| (i, *s, *op)))
        .min_by_key(|(i, s, _)| (*i, std::cmp::Reverse(s.len())))
        .ok_or_else(|| format!("{text:?}: expected `METRIC OP VALUE`, e.g. `p99 < 250ms` (OP is <, <=, > or >=)"))?;
    let name = t[..at].trim();
    let value = t[at + sym.len()..].trim();
    let metric = Metric::parse(name).ok_or_else(|| {
        format!("unknown metric {name:?}; expected one of min, p50, p90, p99, p999, mean, max, error_rate, throughput, errors, completed")
    })?;
    let value = metric.parse_value(value)?;
    Ok(Assertion::Metric { metric, op, value })
}

fn parse_assertion(
    v: &Value,
    base: &Path,
    params: RecoveryParams,
    field: &str,
    diags: &mut Diagnostics<'_>,
) -> Option<(String, Assertion)> {
    match v {
        Value::String(s) => match parse_metric(s) {
            Ok(a) => Some((s.trim().to_owned(), a)),
            Err(e) => {
                diags.at(field, e);
                None
            }
        },
        Value::Mapping(m) => {
            let keys: Vec<String> = m.keys().filter_map(scalar_text).collect();
            let kind = ["fidelity", "recovers_within", "compare_to"].into_iter().find(|k| keys.iter().any(|x| x == k));
            let Some(kind) = kind else {
                diags.at(field, format!("unknown assertion {keys:?}; expected `fidelity`, `recovers_within` or `compare_to` (or a string like `p99 < 250ms`)"));
                return None;
            };
            let allowed: &[&str] = match kind {
                "fidelity" => &["fidelity"],
                "recovers_within" => &["recovers_within", "tolerance", "error_margin", "hold", "warmup"],
                _ => &["compare_to", "thresholds"],
            };
            for k in &keys {
                if !allowed.contains(&k.as_str()) {
                    diags.at(
                        &format!("{field}.{k}"),
                        format!("unknown field {k:?} of a `{kind}` assertion; expected one of {allowed:?}"),
                    );
                    return None;
                }
            }
            let get = |k: &str| m.get(k).and_then(scalar_text);
            let kfield = format!("{field}.{kind}");
            let Some(main) = get(kind) else {
                diags.at(&kfield, format!("`{kind}` needs a value"));
                return None;
            };
            match kind {
                "fidelity" => {
                    if main != "ok" && main != "unfaithful" {
                        diags.at(&kfield, format!("expected `ok` or `unfaithful`, not {main:?}"));
                        return None;
                    }
                    Some((format!("fidelity: {main}"), Assertion::Fidelity { verdict: main }))
                }
                "recovers_within" => {
                    let (within_s, fault, from) = match parse_recovers(&main) {
                        Ok(x) => x,
                        Err(e) => {
                            diags.at(&kfield, e);
                            return None;
                        }
                    };
                    let decl = RecoveryDecl {
                        tolerance: get("tolerance"),
                        error_margin: get("error_margin"),
                        hold: get("hold"),
                        warmup: get("warmup"),
                    };
                    let before = diags.list.len();
                    let params = recovery_params(decl, field, params, diags);
                    (diags.list.len() == before).then(|| {
                        (format!("recovers_within: {main}"), Assertion::Recovers { within_s, fault, from, params })
                    })
                }
                _ => {
                    let baseline = base.join(&main);
                    if !baseline.join("summary.json").is_file() && !baseline.join("run.json").is_file() {
                        diags.at(
                            &kfield,
                            format!("baseline {} is not a results directory (no run.json)", baseline.display()),
                        );
                        return None;
                    }
                    let thresholds = match m.get("thresholds") {
                        None => None,
                        Some(Value::String(f)) => {
                            let p = base.join(f);
                            match std::fs::read_to_string(&p)
                                .map_err(|e| e.to_string())
                                .and_then(|t| serde_yaml_ng::from_str::<Value>(&t).map_err(|e| e.to_string()))
                            {
                                Ok(v) => Some(v),
                                Err(e) => {
                                    diags.at(&format!("{field}.thresholds"), format!("{}: {e}", p.display()));
                                    return None;
                                }
                            }
                        }
                        Some(v @ Value::Mapping(_)) => Some(v.clone()),
                        Some(_) => {
                            diags.at(&format!("{field}.thresholds"), "expected a map of thresholds or a file name");
                            return None;
                        }
                    };
                    Some((format!("compare_to: {main}"), Assertion::CompareTo { baseline, thresholds }))
                }
            }
        }
        other => {
            let what = scalar_text(other).unwrap_or_else(|| "this".into());
            diags.at(
                field,
                format!("{what:?} is not an assertion; write a string like `p99 < 250ms` or a map like `fidelity: ok`"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suite_in(dir: &Path, text: &str) -> Result<Suite, SuiteError> {
        std::fs::write(dir.join("t.yaml"), "name: t\nnodes: [{name: a, run: {command: true}}]\n").unwrap();
        let path = dir.join("suite.yaml");
        std::fs::write(&path, text).unwrap();
        load(&path)
    }

    #[test]
    fn parses_every_assertion_kind() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("base")).unwrap();
        std::fs::write(dir.path().join("base/run.json"), "{}").unwrap();
        let s = suite_in(
            dir.path(),
            "name: n\nrecovery: {hold: 3s}\nscenarios:\n  - name: a\n    topology: t.yaml\n    tdf: 10\n    duration: 30s\n    assert:\n      - p99 < 250ms\n      - error_rate <= 1%\n      - throughput > 900/s\n      - fidelity: ok\n      - recovers_within: 20s after fault db-down\n      - {recovers_within: \"5s after fault faults[1] ends\", tolerance: 20%}\n      - {compare_to: base, thresholds: {p99: 0.2}}\n",
        )
        .unwrap();
        let c = &s.scenarios[0].checks;
        assert_eq!(c.len(), 7);
        assert_eq!(c[0].assertion, Assertion::Metric { metric: Metric::Latency("p99"), op: Op::Lt, value: 250.0 });
        assert_eq!(c[0].line, 9);
        assert_eq!(c[1].assertion, Assertion::Metric { metric: Metric::ErrorRate, op: Op::Le, value: 0.01 });
        assert_eq!(c[2].assertion, Assertion::Metric { metric: Metric::Throughput, op: Op::Gt, value: 900.0 });
        assert_eq!(c[3].assertion, Assertion::Fidelity { verdict: "ok".into() });
        let Assertion::Recovers { within_s, fault, from, params } = &c[4].assertion else { panic!() };
        assert_eq!((*within_s, fault.as_str(), *from, params.hold_s), (20.0, "db-down", RecoveryFrom::Injection, 3));
        let Assertion::Recovers { fault, from, params, .. } = &c[5].assertion else { panic!() };
        assert_eq!((fault.as_str(), *from, params.tolerance, params.hold_s), ("faults[1]", RecoveryFrom::End, 0.2, 3));
        assert!(matches!(&c[6].assertion, Assertion::CompareTo { thresholds: Some(_), .. }));
    }

    #[test]
    fn errors_name_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let err = suite_in(
            dir.path(),
            "name: n\nscenarios:\n  - name: a\n    topology: t.yaml\n    assert:\n      - p99 < 250 parsecs\n      - latency < 3ms\n      - fidelity: great\n  - name: b\n    topology: missing.yaml\n    tdf: -1\n",
        )
        .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.diagnostics.len(), 5, "{text}");
        assert!(text.contains("suite.yaml:6:9: scenarios[0].assert[0]: "), "{text}");
        assert!(text.contains("unknown duration unit"), "{text}");
        assert!(text.contains(":7:9: scenarios[0].assert[1]: unknown metric \"latency\""), "{text}");
        assert!(text.contains(":8:9: scenarios[0].assert[2].fidelity: expected `ok`"), "{text}");
        assert!(text.contains(":10:5: scenarios[1].topology: topology file"), "{text}");
        assert!(text.contains(":11:5: scenarios[1].tdf: TDF -1"), "{text}");
    }

    #[test]
    fn shape_errors_have_positions() {
        let dir = tempfile::tempdir().unwrap();
        let err = suite_in(dir.path(), "name: n\nscenarios:\n  - name: a\n    topolgy: t.yaml\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("suite.yaml:4:5: scenarios[0].topolgy: unknown field"), "{text}");
        let err = suite_in(dir.path(), "name: n\nscenarios: [\n").unwrap_err();
        assert!(err.to_string().contains("malformed YAML"), "{err}");
    }

    #[test]
    fn operators_and_recovery_text() {
        assert!(matches!(parse_metric("p50>=2ms"), Ok(Assertion::Metric { op: Op::Ge, .. })));
        assert!(parse_metric("p50 2ms").is_err());
        assert!(parse_recovers("20s after db").is_err());
        assert_eq!(parse_recovers("1m after fault x ends").unwrap(), (60.0, "x".into(), RecoveryFrom::End));
        assert!(Op::Lt.holds(1.0, 2.0) && !Op::Gt.holds(1.0, 2.0));
    }
}
