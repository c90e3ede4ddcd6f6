//! Evaluating a scenario's assertions against its run: `summary.json` (contract 7) for the
//! figures, `harness::compare` for `compare_to`.
//!
//! # Design
//! The suite reads the summary file, not the report's Rust type, through [`RunView`]: only
//! the fields assertions use, each optional, so a figure the run did not produce (no load
//! generator, no latency) is reported as "not measured" rather than failing to parse.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::recovery;
use catalog::suite::{Assertion, Check, RecoveryFrom};

/// The figures of a run that assertions read (a view of `summary.json`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunView {
    #[serde(default)]
    pub run: RunInfo,
    #[serde(default)]
    pub fidelity: Option<FidelityView>,
    #[serde(default)]
    pub requests: Option<RequestsView>,
    #[serde(default)]
    pub throughput_rps: Option<f64>,
    #[serde(default)]
    pub latency_ms: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub throughput_series: Vec<(f64, f64, f64)>,
    #[serde(default)]
    pub faults: Vec<FaultView>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunInfo {
    #[serde(default)]
    pub success: Option<bool>,
    #[serde(default)]
    pub tdf: Option<f64>,
    #[serde(default)]
    pub virtual_duration_s: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct FidelityView {
    pub verdict: String,
    #[serde(default)]
    pub flags: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RequestsView {
    #[serde(default)]
    pub total: Option<f64>,
    #[serde(default)]
    pub completed: Option<f64>,
    #[serde(default)]
    pub errors: Option<f64>,
    #[serde(default)]
    pub error_rate: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct FaultView {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub fault: Option<String>,
    pub t_virtual_s: f64,
    #[serde(default)]
    pub undone_at_s: Option<f64>,
}

impl RunView {
    pub fn read(dir: &Path) -> Result<Self, String> {
        let path = dir.join("summary.json");
        let text = std::fs::read_to_string(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("parse {}: {e}", path.display()))
    }

    fn latency(&self, field: &str) -> Option<f64> {
        self.latency_ms.as_ref()?.get(field)?.as_f64()
    }
}

/// The verdict on one assertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Fail,
    /// It could not be evaluated (the figure is missing, the comparison failed to run).
    Error,
}

/// One assertion's result: what was expected and what was measured.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub text: String,
    pub field: String,
    pub line: usize,
    pub status: Status,
    pub expected: String,
    pub measured: String,
    /// Extra facts (the recovery reference, the comparison's failures).
    pub detail: String,
}

impl Verdict {
    fn new(check: &Check, status: Status, expected: String, measured: String, detail: String) -> Self {
        Self {
            text: check.text.clone(),
            field: check.field.clone(),
            line: check.line,
            status,
            expected,
            measured,
            detail,
        }
    }
    /// `measured X, expected Y` (for failure messages).
    pub fn message(&self) -> String {
        let mut m = format!("{}: measured {}, expected {}", self.text, self.measured, self.expected);
        if !self.detail.is_empty() {
            m.push_str(&format!(" ({})", self.detail));
        }
        m
    }
}

/// Runs a comparison of `baseline` against `run` with thresholds given as YAML (or the
/// defaults); returns `(pass, failures, compare.json written in out)`.
pub type CompareFn<'a> =
    dyn Fn(&Path, &Path, Option<&serde_yaml_ng::Value>, &Path) -> Result<(bool, Vec<String>), String> + 'a;

/// Evaluates one assertion against the run in `dir` (whose summary is `view`).
pub fn evaluate(check: &Check, view: &RunView, dir: &Path, compare: &CompareFn<'_>) -> Verdict {
    let na = "not measured".to_owned();
    match &check.assertion {
        Assertion::Metric { metric, op, value } => {
            use catalog::suite::Metric;
            let measured = match metric {
                Metric::Latency(f) => view.latency(f),
                Metric::ErrorRate => view.requests.as_ref().and_then(|r| r.error_rate),
                Metric::Throughput => view.throughput_rps,
                Metric::Errors => view.requests.as_ref().and_then(|r| r.errors),
                Metric::Completed => view.requests.as_ref().and_then(|r| r.completed),
            };
            let expected = format!("{} {}", op.symbol(), metric.show(*value));
            match measured {
                Some(m) if m.is_finite() => {
                    let status = if op.holds(m, *value) { Status::Pass } else { Status::Fail };
                    Verdict::new(check, status, expected, metric.show(m), String::new())
                }
                _ => Verdict::new(check, Status::Error, expected, na, format!("summary.json has no {}", metric.name())),
            }
        }
        Assertion::Fidelity { verdict } => match &view.fidelity {
            Some(f) => {
                let status = if &f.verdict == verdict { Status::Pass } else { Status::Fail };
                let detail = f.flags.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("; ");
                Verdict::new(check, status, verdict.clone(), f.verdict.clone(), detail)
            }
            None => {
                Verdict::new(check, Status::Error, verdict.clone(), na, "summary.json has no fidelity verdict".into())
            }
        },
        Assertion::Recovers { within_s, fault, from, params } => {
            let expected = format!("recovery within {within_s:.1}s");
            let Some(f) = view.faults.iter().find(|f| f.name.as_deref() == Some(fault) || &f.id == fault) else {
                let known: Vec<_> =
                    view.faults.iter().map(|f| f.name.clone().unwrap_or_else(|| f.id.clone())).collect();
                return Verdict::new(
                    check,
                    Status::Error,
                    expected,
                    na,
                    format!("no fault {fault:?} in the run (faults: {known:?})"),
                );
            };
            let t0 = match from {
                RecoveryFrom::Injection => Some(f.t_virtual_s),
                RecoveryFrom::End => f.undone_at_s,
            };
            let Some(t0) = t0 else {
                return Verdict::new(check, Status::Error, expected, na, format!("fault {fault:?} was never undone"));
            };
            match recovery::measure(&view.throughput_series, f.t_virtual_s, t0, params) {
                Err(e) => Verdict::new(check, Status::Error, expected, na, e.to_string()),
                Ok(r) => {
                    let detail = format!(
                        "fault at {:.2}s, clock from {t0:.2}s; pre-fault {:.1}/s with {:.2}% errors over [{:.0}s, {:.0}s); ±{:.1}/s (±{:.0}% or the reference's own spread) for {}s",
                        f.t_virtual_s,
                        r.reference_rps,
                        r.reference_error_rate * 100.0,
                        r.window.0,
                        r.window.1,
                        r.band_rps,
                        params.tolerance * 100.0,
                        params.hold_s
                    );
                    match r.recovery_s {
                        Some(s) => {
                            let status = if s <= *within_s { Status::Pass } else { Status::Fail };
                            Verdict::new(check, status, expected, format!("{s:.1}s"), detail)
                        }
                        None => Verdict::new(
                            check,
                            Status::Fail,
                            expected,
                            format!(
                                "not recovered by the end of the series ({:.0}s, {:.1}s after the clock started)",
                                r.series_end_s,
                                r.series_end_s - t0
                            ),
                            detail,
                        ),
                    }
                }
            }
        }
        Assertion::CompareTo { baseline, thresholds } => {
            let expected = format!("within thresholds of {}", baseline.display());
            match compare(baseline, dir, thresholds.as_ref(), dir) {
                Ok((true, _)) => Verdict::new(check, Status::Pass, expected, "within thresholds".into(), String::new()),
                Ok((false, failures)) => Verdict::new(
                    check,
                    Status::Fail,
                    expected,
                    failures.join("; "),
                    "compare.json in the run directory".into(),
                ),
                Err(e) => Verdict::new(check, Status::Error, expected, na, e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use catalog::suite::{Metric, Op, RecoveryParams};

    fn check(a: Assertion) -> Check {
        Check { text: "t".into(), field: "scenarios[0].assert[0]".into(), line: 3, assertion: a }
    }

    fn view() -> RunView {
        serde_json::from_value(serde_json::json!({
            "schema": 1,
            "run": {"name": "x", "tdf": 10.0, "success": true, "virtual_duration_s": 80.0},
            "fidelity": {"verdict": "ok", "flags": []},
            "requests": {"total": 1000, "completed": 990, "errors": 10, "error_rate": 0.01},
            "throughput_rps": 95.5,
            "latency_ms": {"min": 1.0, "p50": 10.0, "p90": 20.0, "p99": 312.4, "p999": 400.0, "mean": 12.0, "max": 500.0},
            "throughput_series": (0..80).map(|t| [f64::from(t), if (30..40).contains(&t) { 10.0 } else { 100.0 }, 0.0]).collect::<Vec<_>>(),
            "faults": [{"id": "faults[0]", "name": "db-down", "fault": "kill", "targets": ["db0"], "t_virtual_s": 30.0, "undone_at_s": 40.0}],
            "nodes": {}, "links": {}
        }))
        .unwrap()
    }

    fn no_compare(
        _: &Path,
        _: &Path,
        _: Option<&serde_yaml_ng::Value>,
        _: &Path,
    ) -> Result<(bool, Vec<String>), String> {
        Err("unused".into())
    }

    #[test]
    fn metric_verdicts_show_the_measured_value() {
        let v = evaluate(
            &check(Assertion::Metric { metric: Metric::Latency("p99"), op: Op::Lt, value: 250.0 }),
            &view(),
            Path::new("."),
            &no_compare,
        );
        assert_eq!(v.status, Status::Fail);
        assert_eq!(v.message(), "t: measured 312.400 ms, expected < 250.000 ms");
        let v = evaluate(
            &check(Assertion::Metric { metric: Metric::ErrorRate, op: Op::Le, value: 0.01 }),
            &view(),
            Path::new("."),
            &no_compare,
        );
        assert_eq!(v.status, Status::Pass);
        let mut empty = view();
        empty.latency_ms = None;
        let v = evaluate(
            &check(Assertion::Metric { metric: Metric::Latency("p50"), op: Op::Lt, value: 1.0 }),
            &empty,
            Path::new("."),
            &no_compare,
        );
        assert_eq!((v.status, v.measured.as_str()), (Status::Error, "not measured"));
    }

    #[test]
    fn fidelity_and_recovery() {
        let v = evaluate(&check(Assertion::Fidelity { verdict: "ok".into() }), &view(), Path::new("."), &no_compare);
        assert_eq!(v.status, Status::Pass);
        let rec = |within_s, fault: &str, from| Assertion::Recovers {
            within_s,
            fault: fault.into(),
            from,
            params: RecoveryParams::default(),
        };
        let v = evaluate(&check(rec(12.0, "db-down", RecoveryFrom::Injection)), &view(), Path::new("."), &no_compare);
        assert_eq!((v.status, v.measured.as_str()), (Status::Pass, "10.0s"), "{v:?}");
        let v = evaluate(&check(rec(5.0, "faults[0]", RecoveryFrom::Injection)), &view(), Path::new("."), &no_compare);
        assert_eq!(v.status, Status::Fail);
        let v = evaluate(&check(rec(0.5, "db-down", RecoveryFrom::End)), &view(), Path::new("."), &no_compare);
        assert_eq!((v.status, v.measured.as_str()), (Status::Pass, "0.0s"));
        let v = evaluate(&check(rec(5.0, "nope", RecoveryFrom::Injection)), &view(), Path::new("."), &no_compare);
        assert_eq!(v.status, Status::Error);
    }

    #[test]
    fn comparison_failures_are_the_measured_value() {
        let a = Assertion::CompareTo { baseline: "b".into(), thresholds: None };
        let fail = |_: &Path, _: &Path, _: Option<&serde_yaml_ng::Value>, _: &Path| {
            Ok((false, vec!["p99 error 30% > 10%".to_owned()]))
        };
        let v = evaluate(&check(a), &view(), Path::new("."), &fail);
        assert_eq!((v.status, v.measured.as_str()), (Status::Fail, "p99 error 30% > 10%"));
    }
}
