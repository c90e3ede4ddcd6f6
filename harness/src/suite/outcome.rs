//! The results of a suite run: `suite.json` (schema 1) and the table printed at the end.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::assess::{Status, Verdict};

/// Schema version of `suite.json`.
pub const SCHEMA: u32 = 1;

/// One scenario's run and verdicts.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub name: String,
    pub results_dir: PathBuf,
    pub tdf: Option<f64>,
    /// The run's success (`run.json`), when it ran.
    pub success: Option<bool>,
    /// Why the run ended.
    pub reason: String,
    /// Real seconds the scenario took.
    pub real_s: f64,
    /// Why the scenario could not run or be assessed (setup failed, no summary).
    pub error: Option<String>,
    pub verdicts: Vec<Verdict>,
}

impl ScenarioResult {
    /// The run completed but failed (a `main` node exited non-zero).
    pub fn run_failed(&self) -> bool {
        self.error.is_none() && self.success == Some(false)
    }
    pub fn passed(&self) -> bool {
        self.error.is_none() && !self.run_failed() && self.verdicts.iter().all(|v| v.status == Status::Pass)
    }
}

/// The whole suite run (`suite.json`).
#[derive(Debug, Clone, Serialize)]
pub struct SuiteResult {
    pub schema: u32,
    pub name: String,
    pub suite_file: PathBuf,
    pub passed: bool,
    /// Failed assertions (and failed runs).
    pub failed: usize,
    /// Assertions that could not be evaluated (and scenarios that could not run).
    pub errors: usize,
    pub real_s: f64,
    pub scenarios: Vec<ScenarioResult>,
}

impl SuiteResult {
    pub fn from_scenarios(name: &str, file: &Path, scenarios: Vec<ScenarioResult>, real_s: f64) -> Self {
        let failed = scenarios
            .iter()
            .map(|s| s.verdicts.iter().filter(|v| v.status == Status::Fail).count() + usize::from(s.run_failed()))
            .sum();
        let errors = scenarios
            .iter()
            .map(|s| s.verdicts.iter().filter(|v| v.status == Status::Error).count() + usize::from(s.error.is_some()))
            .sum();
        Self {
            schema: SCHEMA,
            name: name.to_owned(),
            suite_file: file.to_owned(),
            passed: failed == 0 && errors == 0,
            failed,
            errors,
            real_s,
            scenarios,
        }
    }

    /// The printed summary: one row per assertion.
    pub fn table(&self) -> String {
        let mut rows: Vec<[String; 5]> = Vec::new();
        for s in &self.scenarios {
            let run = match (&s.error, s.success) {
                (Some(e), _) => ("ERROR".to_owned(), e.clone()),
                (None, Some(false)) => ("FAIL".to_owned(), format!("run failed: {}", s.reason)),
                _ => ("pass".to_owned(), s.reason.clone()),
            };
            rows.push([s.name.clone(), "run".into(), run.0, run.1, String::new()]);
            for v in &s.verdicts {
                let status = match v.status {
                    Status::Pass => "pass",
                    Status::Fail => "FAIL",
                    Status::Error => "ERROR",
                };
                rows.push([String::new(), v.text.clone(), status.into(), v.measured.clone(), v.expected.clone()]);
            }
        }
        let head = ["scenario", "assertion", "result", "measured", "expected"];
        let mut width = head.map(str::len);
        for r in &rows {
            for (w, c) in width.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count().min(60));
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, cells: [&str; 5]| {
            let mut l = String::new();
            for (c, w) in cells.iter().zip(width) {
                let _ = write!(l, "{c:<w$}  ");
            }
            out.push_str(l.trim_end());
            out.push('\n');
        };
        line(&mut out, head);
        for r in &rows {
            line(&mut out, [&r[0], &r[1], &r[2], &r[3], &r[4]]);
        }
        let _ = writeln!(
            out,
            "suite {}: {} ({} failed, {} not evaluated) in {:.1}s",
            self.name,
            if self.passed { "passed" } else { "FAILED" },
            self.failed,
            self.errors,
            self.real_s
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_table() {
        let v = Verdict {
            text: "p99 < 250ms".into(),
            field: "f".into(),
            line: 1,
            status: Status::Fail,
            expected: "< 250.000 ms".into(),
            measured: "312.400 ms".into(),
            detail: String::new(),
        };
        let ok = ScenarioResult {
            name: "a".into(),
            results_dir: "r/a".into(),
            tdf: Some(2.0),
            success: Some(true),
            reason: "duration reached".into(),
            real_s: 1.0,
            error: None,
            verdicts: vec![v],
        };
        let broken =
            ScenarioResult { name: "b".into(), error: Some("setup failed".into()), verdicts: vec![], ..ok.clone() };
        let r = SuiteResult::from_scenarios("s", Path::new("s.yaml"), vec![ok, broken], 3.0);
        assert_eq!((r.passed, r.failed, r.errors), (false, 1, 1));
        let t = r.table();
        assert!(t.contains("p99 < 250ms  FAIL    312.400 ms"), "{t}");
        assert!(t.contains("suite s: FAILED (1 failed, 1 not evaluated)"), "{t}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["schema"], 1);
        assert_eq!(json["scenarios"][0]["verdicts"][0]["measured"], "312.400 ms");
    }
}
