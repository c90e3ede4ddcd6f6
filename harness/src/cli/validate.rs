//! `diorama validate FILE --tdf T [--out DIR] [--thresholds FILE]`: baseline, scaled and
//! naive runs of one topology, compared.

use std::path::PathBuf;

use super::exit;
use crate::Error;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The topology file.
    pub file: PathBuf,
    /// The TDF of the scaled run (and the resource divisor of the naive run).
    #[arg(long, value_parser = super::parse_tdf)]
    pub tdf: f64,
    /// Where the three run directories, the comparisons and validate.json go
    /// (default: results/validate-<name>-<UTC timestamp>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Reuse a non-empty `--out`: its old content is moved to `DIR.replaced-<time>` first.
    #[arg(long)]
    pub force: bool,
    /// Comparison thresholds (YAML; absent fields keep the defaults).
    #[arg(long)]
    pub thresholds: Option<PathBuf>,
    /// Virtual duration of every run (overrides the topology's `duration`).
    #[arg(long)]
    pub duration: Option<String>,
    /// CPU headroom of the plans.
    #[arg(long)]
    pub headroom: Option<f64>,
    /// Reuse this TDF-1 run directory as the baseline instead of running one.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Root of the run state directories.
    #[arg(long, default_value = testbed::state::DEFAULT_ROOT, hide = true)]
    pub state_root: PathBuf,
}

/// Validation's default thresholds: relative error ≤ 5% on p50, p90 and throughput, KS ≤
/// 0.1; the other figures of the comparison are reported but do not decide.
pub fn default_thresholds() -> report::compare::Thresholds {
    // f64::MAX: the figure is computed and reported in compare.json but never fails.
    report::compare::Thresholds {
        p99: f64::MAX,
        mean: f64::MAX,
        cpu: f64::MAX,
        link_util: f64::MAX,
        ..Default::default()
    }
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let thresholds = match &args.thresholds {
        None => default_thresholds(),
        Some(p) => crate::thresholds::load(p).map_err(Error::Thresholds)?,
    };
    let name = crate::experiment::load(&args.file)?.name;
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("results").join(format!("validate-{name}-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ")))
    });
    let opts = crate::validate::Options {
        file: args.file.clone(),
        tdf: args.tdf,
        out: out.clone(),
        thresholds,
        duration: args.duration.clone(),
        headroom: args.headroom,
        baseline: args.baseline.clone(),
    };
    let experiments = crate::validate::prepare(&opts)?;
    for e in experiments.iter().flatten() {
        e.check_views(&out, &args.state_root)?;
    }
    let env = crate::pipeline::preflight("running experiments", &args.state_root, true)?;
    // Held until validate.json is written: the legs' directories are claimed inside it.
    let _claim = crate::results_dir::ResultsDir::claim(&out, args.force, "--out")?;
    let interrupt = super::interrupt_flag()?;
    let v = crate::validate::run(&opts, experiments, &env, &interrupt)?;
    super::out!("{}", v.text());
    super::out!("validate.json: {}", out.join("validate.json").display());
    if interrupt.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(exit::RUN_FAILED);
    }
    Ok(if v.pass { exit::OK } else { exit::ASSERTIONS })
}
