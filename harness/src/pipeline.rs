//! The one run pipeline of `diorama run`, `test` and `validate`: a loaded experiment into a
//! results directory (`plan.json`), through the run engine, then its report.
//!
//! # Design
//! The environment (root, the executable, the shim) is checked once by [`preflight`] before
//! anything runs; [`execute`] runs into a claimed results directory (`crate::results_dir`), writes
//! `plan.json`, runs the testbed with the experiment's fault schedule and writes
//! `summary.json` and `report.html`. Callers decide what to print of the outcome.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use crate::experiment::Experiment;
use crate::results_dir::ResultsDir;
use crate::Error;

/// What every run needs from the environment.
#[derive(Debug, Clone)]
pub struct Environment {
    pub harness_exe: PathBuf,
    /// `libdilation.so`; `None` runs undilated (`--no-dilation`, TDF 1 only).
    pub shim: Option<PathBuf>,
    /// `dilation-trap`, for Go and static programs (`None`: not built; such nodes are refused).
    pub trap: Option<PathBuf>,
    pub state_root: PathBuf,
    /// Keep the CPUs awake during runs (idle-class spinners); `DIORAMA_AWAKE=1` turns it on.
    pub keep_awake: bool,
}

/// The message of a missing shim.
pub(crate) const NO_SHIM: &str =
    "libdilation.so not found beside diorama or in $DIORAMA_SHIM (build it: cargo build --release --workspace)";

/// Checks root (`who` names the command in the refusal), finds the executable and, unless
/// `dilated` is false, the shim.
pub fn preflight(who: &str, state_root: &Path, dilated: bool) -> Result<Environment, Error> {
    if !nix::unistd::geteuid().is_root() {
        return Err(Error::Environment(format!("{who} needs root (namespaces and cgroups)")));
    }
    let harness_exe =
        std::env::current_exe().map_err(|e| Error::Environment(format!("find the diorama executable: {e}")))?;
    let shim = match dilated {
        true => Some(dilation::probe::locate_shim().ok_or_else(|| Error::Environment(NO_SHIM.into()))?),
        false => None,
    };
    // Off by default: measured on this VM it helped paced bursts at TDF 10 but slowed
    // half-core nodes at TDF 1 (docs/decisions/060-cpu-pacing.md).
    let keep_awake = std::env::var("DIORAMA_AWAKE").is_ok_and(|v| v == "1");
    let trap = shim.as_ref().and_then(|_| dilation::probe::locate_trap());
    Ok(Environment { harness_exe, shim, trap, state_root: state_root.to_owned(), keep_awake })
}

/// How a run is watched.
#[derive(Debug, Clone, Default)]
pub struct Watch {
    /// Show a live progress bar (a TTY) instead of plain lines.
    pub interactive: bool,
    pub fidelity: testbed::FidelityThresholds,
}

/// How one run went.
#[derive(Debug)]
pub struct Ran {
    pub results_dir: PathBuf,
    pub tdf: f64,
    pub outcome: testbed::RunOutcome,
    pub real_s: f64,
    /// `summary.json` and `report.html` as written, or why not.
    pub summary: Result<report::Summary, report::ReportError>,
}

/// Runs `experiment` into `out` (claimed by [`ResultsDir::claim`], so empty and locked;
/// the claim is held until the report is written) and writes its report.
pub fn execute(
    experiment: &Experiment,
    out: &ResultsDir,
    env: &Environment,
    watch: &Watch,
    interrupt: &AtomicBool,
) -> Result<Ran, Error> {
    out.write_stub(&experiment.spec.name, &experiment.spec.topology_file, experiment.spec.tdf)?;
    let ran = run_into(experiment, out.path(), env, watch, interrupt);
    if let Err(err) = &ran {
        // The run engine writes run.json once nodes were started; an error before that (a
        // cgroup, the network, an undilatable node) would leave a stub that reads as a run
        // in progress.
        if let Err(e) = out.fail_stub(&crate::error::chain(err)) {
            tracing::error!(error = %e, "failed to record the failed run in run.json");
        }
    }
    ran
}

/// [`execute`] once the stub is written.
fn run_into(
    experiment: &Experiment,
    out: &Path,
    env: &Environment,
    watch: &Watch,
    interrupt: &AtomicBool,
) -> Result<Ran, Error> {
    let files = |what: String| move |e: std::io::Error| Error::Files(format!("{what}: {e}"));
    let out = out.to_owned();
    let plan = serde_json::to_vec_pretty(&experiment.spec.plan).map_err(|e| Error::Internal(e.to_string()))?;
    std::fs::write(out.join("plan.json"), plan).map_err(files("write plan.json".into()))?;
    testbed::note!("{}", experiment.plan_table);
    testbed::note!("results: {}", out.display());
    let opts = testbed::RunOptions {
        results_dir: out.clone(),
        state_root: env.state_root.clone(),
        harness_exe: env.harness_exe.clone(),
        shim: env.shim.clone(),
        trap: env.trap.clone(),
        interactive: watch.interactive,
        faults: crate::faults::schedule(&experiment.faults, &experiment.spec.nodes, experiment.spec.tdf),
        fidelity: watch.fidelity,
        keep_awake: env.keep_awake,
    };
    let started = Instant::now();
    // Setup errors, and a node that failed to start or died, both end here.
    let outcome = testbed::run(&experiment.spec, &opts, interrupt).map_err(Error::Run)?;
    testbed::note!(
        "run {}: {} after {:.1}s real, {:.2}s virtual (TDF {})",
        if outcome.success { "succeeded" } else { "FAILED" },
        outcome.reason,
        outcome.real_elapsed.as_secs_f64(),
        outcome.virtual_elapsed.as_secs_f64(),
        tdf_text(experiment.spec.tdf)
    );
    let real_s = started.elapsed().as_secs_f64();
    let summary = report::write(&out);
    Ok(Ran { results_dir: out, tdf: experiment.spec.tdf, outcome, real_s, summary })
}

/// Claims `dir` (new or empty, never forced: a suite's or a validation's sub-directory of a
/// directory already claimed) and runs `experiment` into it.
pub fn execute_in(
    experiment: &Experiment,
    dir: &Path,
    env: &Environment,
    watch: &Watch,
    interrupt: &AtomicBool,
) -> Result<Ran, Error> {
    execute(experiment, &ResultsDir::claim(dir, false, "results directory")?, env, watch, interrupt)
}

/// Loads thresholds from YAML (absent fields keep the defaults).
pub fn thresholds(yaml: Option<&serde_yaml_ng::Value>) -> Result<report::compare::Thresholds, String> {
    match yaml {
        None => Ok(report::compare::Thresholds::default()),
        Some(v) => serde_yaml_ng::from_value(v.clone()).map_err(|e| format!("thresholds: {e}")),
    }
}

/// Compares run `b` against `a`, writes compare.json and compare.html into `out`.
pub fn compare_runs(
    a: &Path,
    b: &Path,
    th: &report::compare::Thresholds,
    out: &Path,
) -> Result<report::compare::Comparison, String> {
    let c = report::compare::compare(a, b, th).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(out).map_err(|e| format!("create {}: {e}", out.display()))?;
    c.write_json(out).map_err(|e| e.to_string())?;
    c.write_html(out).map_err(|e| e.to_string())?;
    Ok(c)
}

pub use dilation::tdf_text;
