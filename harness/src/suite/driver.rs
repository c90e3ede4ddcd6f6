//! Running a whole suite: check every scenario first, then run them in order, assess each,
//! and write `junit.xml` and `suite.json`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::assess::{self, RunView};
use super::model::{Scenario, Suite};
use super::outcome::{ScenarioResult, SuiteResult};
use super::runner::{self, Environment};
use crate::cli::Failure;
use crate::exit;
use crate::experiment::{Experiment, Overrides};

/// The overrides a scenario asks for.
pub fn overrides(s: &Scenario) -> Overrides {
    Overrides { tdf: s.tdf, duration: s.duration.clone(), headroom: s.headroom, scenario: s.scenario.clone(), ..Overrides::default() }
}

/// The exit code an error carries (its [`Failure`]), or the internal-error code.
fn code_of(err: &anyhow::Error) -> u8 {
    err.chain().find_map(|e| e.downcast_ref::<Failure>()).map_or(exit::INTERNAL, |f| f.code)
}

/// Loads and plans every scenario's experiment, so that a bad topology, scenario file or
/// impossible plan is refused before anything runs.
pub fn prepare(suite: &Suite) -> anyhow::Result<Vec<Experiment>> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for s in &suite.scenarios {
        match runner::load(&s.topology, &overrides(s)) {
            Ok(e) => {
                for c in &s.checks {
                    if let super::model::Assertion::Recovers { fault, .. } = &c.assertion {
                        if !e.faults.iter().any(|f| f.name.as_deref() == Some(fault) || &f.id == fault) {
                            let known: Vec<String> = e.faults.iter().map(|f| f.name.clone().unwrap_or_else(|| f.id.clone())).collect();
                            let pos = suite.source.locate(&c.field);
                            problems.push((
                                exit::INVALID_INPUT,
                                format!("{}:{}:{}: {}: no fault {fault:?} in this scenario (its faults: {known:?})", suite.file.display(), pos.line, pos.col, c.field),
                            ));
                        }
                    }
                }
                out.push(e);
            }
            Err(err) => {
                let pos = suite.source.locate(&s.field);
                let code = code_of(&err);
                problems.push((code, format!("{}:{}:{}: {}: {err:#}", suite.file.display(), pos.line, pos.col, s.field)));
            }
        }
    }
    if let Some((code, _)) = problems.first() {
        let text = problems.iter().map(|(_, m)| format!("  {m}")).collect::<Vec<_>>().join("\n");
        return Err(Failure::new(*code, format!("the suite's scenarios cannot run:\n{text}")).into());
    }
    Ok(out)
}

fn compare_fn(a: &Path, b: &Path, th: Option<&serde_yaml_ng::Value>, out: &Path) -> Result<(bool, Vec<String>), String> {
    let th = runner::thresholds(th)?;
    let c = runner::compare_runs(a, b, &th, out)?;
    Ok((c.pass, c.failures))
}

/// Runs one scenario and assesses it; never fails (problems become the result's error).
fn run_scenario(s: &Scenario, experiment: &Experiment, dir: &Path, env: &Environment, interrupt: &AtomicBool) -> ScenarioResult {
    let started = Instant::now();
    let mut result = ScenarioResult {
        name: s.name.clone(),
        results_dir: dir.to_owned(),
        tdf: Some(experiment.spec.tdf),
        success: None,
        reason: String::new(),
        real_s: 0.0,
        error: None,
        verdicts: Vec::new(),
    };
    match runner::execute(experiment, dir, env, interrupt) {
        Err(e) => result.error = Some(format!("{e:#}")),
        Ok(ran) => {
            result.results_dir = ran.results_dir.clone();
            result.success = Some(ran.success);
            result.reason = ran.reason.clone();
            if ran.interrupted {
                result.error = Some("interrupted".into());
            }
            match ran.summary.and_then(|()| RunView::read(&ran.results_dir)) {
                Err(e) => result.error = Some(format!("no summary of the run: {e}")),
                Ok(view) => {
                    result.verdicts = s.checks.iter().map(|c| assess::evaluate(c, &view, &ran.results_dir, &compare_fn)).collect();
                }
            }
        }
    }
    result.real_s = started.elapsed().as_secs_f64();
    result
}

/// Runs the suite into `out` and writes `junit.xml` and `suite.json` there.
pub fn run(suite: &Suite, experiments: &[Experiment], out: &Path, env: &Environment, interrupt: &AtomicBool) -> anyhow::Result<SuiteResult> {
    let started = Instant::now();
    std::fs::create_dir_all(out).map_err(|e| Failure::new(exit::SETUP, format!("create {}: {e}", out.display())))?;
    let mut results = Vec::new();
    for (i, (s, e)) in suite.scenarios.iter().zip(experiments).enumerate() {
        if interrupt.load(Ordering::Relaxed) {
            break;
        }
        eprintln!("== scenario {}/{}: {} ({}, TDF {})", i + 1, suite.scenarios.len(), s.name, s.topology.display(), e.spec.tdf);
        let dir: PathBuf = out.join(&s.name);
        let r = run_scenario(s, e, &dir, env, interrupt);
        for v in r.verdicts.iter().filter(|v| v.status != super::assess::Status::Pass) {
            eprintln!("  {:?}: {}", v.status, v.message());
        }
        results.push(r);
        // Write as we go, so a long suite that is killed still leaves what it measured.
        let partial = SuiteResult::from_scenarios(&suite.name, &suite.file, results.clone(), started.elapsed().as_secs_f64());
        write(&partial, out)?;
    }
    let result = SuiteResult::from_scenarios(&suite.name, &suite.file, results, started.elapsed().as_secs_f64());
    write(&result, out)?;
    Ok(result)
}

fn write(result: &SuiteResult, out: &Path) -> anyhow::Result<()> {
    let io = |what: &str, e: std::io::Error| Failure::new(exit::SETUP, format!("write {}/{what}: {e}", out.display()));
    std::fs::write(out.join("junit.xml"), super::junit::render(result)).map_err(|e| io("junit.xml", e))?;
    let json = serde_json::to_vec_pretty(result)?;
    std::fs::write(out.join("suite.json"), json).map_err(|e| io("suite.json", e))?;
    Ok(())
}
