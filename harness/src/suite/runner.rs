//! Running one experiment the way `diorama run` does (catalog → plan → testbed → report),
//! for `diorama test` and `diorama validate`.
//!
//! # Design
//! The steps are those of `cli::run`: [`crate::experiment::Experiment::load`], the results
//! directory with `plan.json`, [`crate::testbed::run`], then [`crate::report::write`] for
//! `summary.json` and `report.html`. The environment (root, the shim) is checked once by
//! [`preflight`] before anything runs.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::Context;

use crate::cli::Failure;
use crate::exit;
use crate::experiment::{Experiment, Overrides};

/// What every run needs from the environment.
#[derive(Debug, Clone)]
pub struct Environment {
    pub harness_exe: PathBuf,
    pub shim: PathBuf,
    pub state_root: PathBuf,
}

/// Checks root and finds the shim, or refuses with the documented exit code.
pub fn preflight(state_root: &Path) -> anyhow::Result<Environment> {
    if !nix::unistd::geteuid().is_root() {
        return Err(Failure::new(exit::ENVIRONMENT, "running experiments needs root (namespaces and cgroups)").into());
    }
    let harness_exe = std::env::current_exe().context("find the diorama executable")?;
    let shim = dilation::probe::locate_shim().ok_or_else(|| {
        Failure::new(exit::ENVIRONMENT, "libdilation.so not found beside diorama or in $DIORAMA_SHIM (build it: cargo build --release --workspace)")
    })?;
    Ok(Environment { harness_exe, shim, state_root: state_root.to_owned() })
}

/// How one run went.
#[derive(Debug, Clone)]
pub struct Ran {
    pub results_dir: PathBuf,
    pub tdf: f64,
    pub success: bool,
    pub interrupted: bool,
    pub reason: String,
    pub real_s: f64,
    /// `summary.json` written by the report, or why not.
    pub summary: Result<(), String>,
}

/// Runs `experiment` into `out` (which must not hold a run yet) and writes its report.
pub fn execute(experiment: &Experiment, out: &Path, env: &Environment, interrupt: &AtomicBool) -> anyhow::Result<Ran> {
    if out.join("run.json").exists() {
        return Err(Failure::new(exit::USAGE, format!("{} already holds a run; choose another --out", out.display())).into());
    }
    std::fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;
    let out = out.canonicalize().context("resolve the results directory")?;
    std::fs::write(out.join("plan.json"), serde_json::to_vec_pretty(&experiment.spec.plan)?).context("write plan.json")?;
    eprintln!("{}", experiment.plan_table);
    eprintln!("results: {}", out.display());
    let opts = crate::testbed::RunOptions {
        results_dir: out.clone(),
        state_root: env.state_root.clone(),
        harness_exe: env.harness_exe.clone(),
        shim: Some(env.shim.clone()),
        // Suites run unattended; plain progress lines keep logs readable.
        interactive: false,
        faults: experiment.faults.clone(),
        fidelity: crate::testbed::FidelityThresholds::default(),
    };
    let started = Instant::now();
    let outcome = crate::testbed::run(&experiment.spec, &opts, interrupt)
        .map_err(|e| anyhow::Error::new(e).context(Failure::new(exit::SETUP, "the run failed")))?;
    let summary = summarize(&out);
    if let Err(e) = &summary {
        tracing::warn!(dir = %out.display(), error = %e, "no summary of the run");
    }
    eprintln!(
        "run {}: {} after {:.1}s real, {:.2}s virtual (TDF {})",
        if outcome.success { "succeeded" } else { "FAILED" },
        outcome.reason,
        outcome.real_elapsed.as_secs_f64(),
        outcome.virtual_elapsed.as_secs_f64(),
        experiment.spec.tdf
    );
    Ok(Ran {
        results_dir: out,
        tdf: experiment.spec.tdf,
        success: outcome.success,
        interrupted: outcome.interrupted,
        reason: outcome.reason,
        real_s: started.elapsed().as_secs_f64(),
        summary,
    })
}

/// Writes `summary.json` and `report.html` of a run directory.
pub fn summarize(dir: &Path) -> Result<(), String> {
    crate::report::write(dir).map(|_| ()).map_err(|e| e.to_string())
}

/// Loads thresholds from YAML (absent fields keep the defaults).
pub fn thresholds(yaml: Option<&serde_yaml_ng::Value>) -> Result<crate::compare::Thresholds, String> {
    match yaml {
        None => Ok(crate::compare::Thresholds::default()),
        Some(v) => serde_yaml_ng::from_value(v.clone()).map_err(|e| format!("thresholds: {e}")),
    }
}

/// Compares run `b` against `a`, writes compare.json and compare.html into `out`.
pub fn compare_runs(a: &Path, b: &Path, th: &crate::compare::Thresholds, out: &Path) -> Result<crate::compare::Comparison, String> {
    let c = crate::compare::compare(a, b, th).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(out).map_err(|e| format!("create {}: {e}", out.display()))?;
    c.write_json(out).map_err(|e| e.to_string())?;
    c.write_html(out).map_err(|e| e.to_string())?;
    Ok(c)
}

/// Loads an experiment with overrides, for checking before anything runs.
pub fn load(topology: &Path, overrides: &Overrides) -> anyhow::Result<Experiment> {
    Experiment::load(topology, overrides)
}
