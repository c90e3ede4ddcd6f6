//! `diorama run FILE [--tdf N] [--out DIR] [--duration D] [--scenario FILE]`: run an experiment.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;

use super::Failure;
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The topology file.
    pub file: PathBuf,
    /// Time-dilation factor (overrides the topology's `tdf`).
    #[arg(long)]
    pub tdf: Option<f64>,
    /// Results directory (default: results/<name>-<UTC timestamp>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Virtual duration of the run (overrides the topology's `duration`), e.g. `30s`.
    #[arg(long)]
    pub duration: Option<String>,
    /// Virtual interval of metric samples.
    #[arg(long, default_value = "1s")]
    pub sample_every: String,
    /// CPU headroom: the share of host cores the plan may use.
    #[arg(long)]
    pub headroom: Option<f64>,
    /// A scenario file: a `faults:` list run on top of the topology's (docs/faults.md).
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// Fidelity: the network core's lateness p99 (real) above which the run is flagged
    /// `network_late`.
    #[arg(long, default_value = "1ms")]
    pub late_threshold: String,
    /// Run without the clock shim (only meaningful at TDF 1).
    #[arg(long)]
    pub no_dilation: bool,
    /// Root of the run state directories.
    #[arg(long, default_value = crate::state::DEFAULT_ROOT, hide = true)]
    pub state_root: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let experiment = crate::experiment::Experiment::load(
        &args.file,
        &crate::experiment::Overrides {
            tdf: args.tdf,
            duration: args.duration.clone(),
            sample_every: Some(args.sample_every.clone()),
            headroom: args.headroom,
            scenario: args.scenario.clone(),
        },
    )?;
    let late_p99 = crate::topology::units::Duration::parse(&args.late_threshold)
        .map_err(|e| Failure::new(exit::USAGE, format!("--late-threshold: {e}")))?
        .0;
    if !experiment.faults.is_empty() {
        eprintln!("faults: {} on the timeline", experiment.faults.len());
    }
    if !nix::unistd::geteuid().is_root() {
        return Err(Failure::new(exit::ENVIRONMENT, "diorama run needs root (namespaces and cgroups)").into());
    }
    let harness_exe = std::env::current_exe().context("find the diorama executable")?;
    let shim = if args.no_dilation {
        if experiment.spec.tdf != 1.0 {
            return Err(Failure::new(exit::USAGE, "--no-dilation only makes sense at TDF 1").into());
        }
        if let Some(f) = experiment.faults.iter().find(|f| f.action.kind() == "clock") {
            return Err(Failure::new(exit::USAGE, format!("{}: a clock fault needs the clock shim; drop --no-dilation", f.id)).into());
        }
        None
    } else {
        Some(dilation::probe::locate_shim().ok_or_else(|| {
            Failure::new(
                exit::ENVIRONMENT,
                "libdilation.so not found beside diorama or in $DIORAMA_SHIM (build it: cargo build --release --workspace)",
            )
        })?)
    };
    let results_dir = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("results").join(format!(
            "{}-{}",
            experiment.spec.name,
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
        ))
    });
    if results_dir.join("run.json").exists() {
        return Err(Failure::new(
            exit::USAGE,
            format!("{} already holds a run; choose another --out", results_dir.display()),
        )
        .into());
    }
    std::fs::create_dir_all(&results_dir).with_context(|| format!("create {}", results_dir.display()))?;
    let results_dir = results_dir.canonicalize().context("resolve the results directory")?;
    std::fs::write(results_dir.join("plan.json"), serde_json::to_vec_pretty(&experiment.spec.plan)?)
        .context("write plan.json")?;
    eprintln!("{}", experiment.plan_table);
    eprintln!("results: {}", results_dir.display());
    let opts = crate::testbed::RunOptions {
        results_dir: results_dir.clone(),
        state_root: args.state_root.clone(),
        harness_exe,
        shim,
        interactive: std::io::stderr().is_terminal(),
        faults: experiment.faults.clone(),
        fidelity: crate::testbed::FidelityThresholds { late_p99, ..Default::default() },
    };
    let interrupt = super::interrupt_flag()?;
    let outcome = crate::testbed::run(&experiment.spec, &opts, &interrupt)
        // Setup errors, and a node that failed to start or died, both end here.
        .map_err(|e| anyhow::Error::new(e).context(Failure::new(exit::SETUP, "the run failed")))?;
    eprintln!(
        "run {}: {} after {:.1}s real, {:.2}s virtual (TDF {})",
        if outcome.success { "succeeded" } else { "FAILED" },
        outcome.reason,
        outcome.real_elapsed.as_secs_f64(),
        outcome.virtual_elapsed.as_secs_f64(),
        experiment.spec.tdf
    );
    for node in outcome.nodes.iter().filter(|n| n.main || n.exit.is_some_and(|c| c != 0 && !n.stopped_by_harness)) {
        eprintln!("  {}: exit {:?}{}", node.name, node.exit, if node.main { " (main)" } else { "" });
    }
    eprintln!("results: {}", results_dir.display());
    super::report::after_run(&results_dir);
    Ok(if outcome.success { exit::OK } else { exit::RUN_FAILED })
}
