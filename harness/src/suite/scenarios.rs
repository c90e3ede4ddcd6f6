//! A suite's scenarios: check every one first, then run them in order through the run
//! pipeline, assess each, and write `junit.xml` and `suite.json`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use catalog::suite::{Assertion, Scenario, Suite};

use super::assess::{self, RunView};
use super::outcome::{ScenarioResult, SuiteResult};
use crate::experiment::{Experiment, Overrides};
use crate::pipeline::{self, Environment, Watch};
use crate::Error;

/// The overrides a scenario asks for.
pub fn overrides(s: &Scenario) -> Overrides {
    Overrides {
        tdf: s.tdf,
        duration: s.duration.clone(),
        headroom: s.headroom,
        scenario: s.scenario.clone(),
        ..Overrides::default()
    }
}

/// Loads and plans every scenario's experiment, so that a bad topology, scenario file or
/// impossible plan is refused before anything runs.
pub fn prepare(suite: &Suite) -> Result<Vec<Experiment>, Error> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for s in &suite.scenarios {
        match Experiment::load(&s.topology, &overrides(s)) {
            Ok(e) => {
                for c in &s.checks {
                    if let Assertion::Recovers { fault, .. } = &c.assertion {
                        if !e.faults.iter().any(|f| f.name.as_deref() == Some(fault) || &f.id == fault) {
                            let known: Vec<String> =
                                e.faults.iter().map(|f| f.name.clone().unwrap_or_else(|| f.id.clone())).collect();
                            let pos = suite.source.locate(&c.field);
                            let at = format!("{}:{}:{}", suite.file.display(), pos.line, pos.col);
                            let message = format!("no fault {fault:?} in this scenario (its faults: {known:?})");
                            problems.push((
                                Error::Reference { at, field: c.field.clone(), message },
                                format!(
                                    "{}:{}:{}: {}: no fault {fault:?} in this scenario (its faults: {known:?})",
                                    suite.file.display(),
                                    pos.line,
                                    pos.col,
                                    c.field
                                ),
                            ));
                        }
                    }
                }
                out.push(e);
            }
            Err(err) => {
                let pos = suite.source.locate(&s.field);
                let text = format!(
                    "{}:{}:{}: {}: {}",
                    suite.file.display(),
                    pos.line,
                    pos.col,
                    s.field,
                    crate::error::chain(&err)
                );
                problems.push((err, text));
            }
        }
    }
    let text = problems.iter().map(|(_, m)| format!("  {m}")).collect::<Vec<_>>().join("\n");
    match problems.into_iter().next() {
        Some((first, _)) => Err(Error::Scenarios { first: Box::new(first), text }),
        None => Ok(out),
    }
}

fn compare_fn(
    a: &Path,
    b: &Path,
    th: Option<&serde_yaml_ng::Value>,
    out: &Path,
) -> Result<(bool, Vec<String>), String> {
    let th = pipeline::thresholds(th)?;
    let c = pipeline::compare_runs(a, b, &th, out)?;
    Ok((c.pass, c.failures))
}

/// Runs one scenario and assesses it; never fails (problems become the result's error).
fn run_scenario(
    s: &Scenario,
    experiment: &Experiment,
    dir: &Path,
    env: &Environment,
    interrupt: &AtomicBool,
) -> ScenarioResult {
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
    // Suites run unattended; plain progress lines keep logs readable.
    match pipeline::execute_in(experiment, dir, env, &Watch::default(), interrupt) {
        Err(e) => result.error = Some(crate::error::chain(&e)),
        Ok(ran) => {
            result.results_dir = ran.results_dir.clone();
            result.success = Some(ran.outcome.success);
            result.reason = ran.outcome.reason.clone();
            if ran.outcome.interrupted {
                result.error = Some("interrupted".into());
            }
            let summary = ran.summary.map(|_| ()).map_err(|e| {
                tracing::warn!(dir = %ran.results_dir.display(), error = %e, "no summary of the run");
                e.to_string()
            });
            match summary.and_then(|()| RunView::read(&ran.results_dir)) {
                Err(e) => result.error = Some(format!("no summary of the run: {e}")),
                Ok(view) => {
                    result.verdicts =
                        s.checks.iter().map(|c| assess::evaluate(c, &view, &ran.results_dir, &compare_fn)).collect();
                }
            }
        }
    }
    result.real_s = started.elapsed().as_secs_f64();
    result
}

/// Runs the suite into `out` and writes `junit.xml` and `suite.json` there.
pub fn run(
    suite: &Suite,
    experiments: &[Experiment],
    out: &Path,
    env: &Environment,
    interrupt: &AtomicBool,
) -> Result<SuiteResult, Error> {
    let started = Instant::now();
    std::fs::create_dir_all(out).map_err(|e| Error::Files(format!("create {}: {e}", out.display())))?;
    let mut results = Vec::new();
    for (i, (s, e)) in suite.scenarios.iter().zip(experiments).enumerate() {
        if interrupt.load(Ordering::Relaxed) {
            break;
        }
        testbed::note!(
            "== scenario {}/{}: {} ({}, TDF {})",
            i + 1,
            suite.scenarios.len(),
            s.name,
            s.topology.display(),
            pipeline::tdf_text(e.spec.tdf)
        );
        let dir: PathBuf = out.join(&s.name);
        let r = run_scenario(s, e, &dir, env, interrupt);
        for v in r.verdicts.iter().filter(|v| v.status != super::assess::Status::Pass) {
            testbed::note!("  {:?}: {}", v.status, v.message());
        }
        results.push(r);
        // Write as we go, so a long suite that is killed still leaves what it measured.
        let partial =
            SuiteResult::from_scenarios(&suite.name, &suite.file, results.clone(), started.elapsed().as_secs_f64());
        write(&partial, out)?;
    }
    let result = SuiteResult::from_scenarios(&suite.name, &suite.file, results, started.elapsed().as_secs_f64());
    write(&result, out)?;
    Ok(result)
}

fn write(result: &SuiteResult, out: &Path) -> Result<(), Error> {
    let io = |what: &str, e: std::io::Error| Error::Files(format!("write {}/{what}: {e}", out.display()));
    std::fs::write(out.join("junit.xml"), super::junit::render(result)).map_err(|e| io("junit.xml", e))?;
    let json = serde_json::to_vec_pretty(result).map_err(|e| Error::Internal(e.to_string()))?;
    std::fs::write(out.join("suite.json"), json).map_err(|e| io("suite.json", e))?;
    Ok(())
}
