//! `diorama run FILE [--tdf N] [--out DIR] [--duration D] [--scenario FILE]`: run an experiment.

use std::io::IsTerminal;
use std::path::PathBuf;

use super::exit;
use crate::experiment::{Experiment, Overrides};
use crate::results_dir::ResultsDir;
use crate::{pipeline, Error};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The topology file.
    pub file: PathBuf,
    /// Time-dilation factor (overrides the topology's `tdf`).
    #[arg(long, value_parser = super::parse_tdf)]
    pub tdf: Option<f64>,
    /// Results directory (default: results/<name>-<UTC timestamp>); must be new or empty.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Reuse a non-empty `--out`: its old content is moved to `DIR.replaced-<time>` first.
    #[arg(long)]
    pub force: bool,
    /// Virtual duration of the run (overrides the topology's `duration`), e.g. `30s`.
    #[arg(long)]
    pub duration: Option<String>,
    /// Virtual interval of metric samples.
    #[arg(long, default_value = "1s")]
    pub sample_every: String,
    /// CPU headroom: the share of host cores the plan may use.
    #[arg(long)]
    pub headroom: Option<f64>,
    /// Network backend: `kernel` (netem and htb on veth pairs; needs sch_netem for delay,
    /// jitter and loss), `userspace` (the TUN core), or `auto` (kernel where sch_netem
    /// exists, else userspace; the choice is printed and recorded in run.json).
    #[arg(long, value_enum, default_value_t = testbed::NetBackend::Auto)]
    pub net: testbed::NetBackend,
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
    #[arg(long, default_value = testbed::state::DEFAULT_ROOT, hide = true)]
    pub state_root: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let experiment = Experiment::load(
        &args.file,
        &Overrides {
            tdf: args.tdf,
            duration: args.duration.clone(),
            sample_every: Some(args.sample_every.clone()),
            headroom: args.headroom,
            net: Some(args.net),
            scenario: args.scenario.clone(),
        },
    )?;
    let late_p99 = catalog::units::Duration::parse(&args.late_threshold)
        .map_err(|e| Error::Usage(format!("--late-threshold: {e}")))?
        .0;
    if !experiment.faults.is_empty() {
        testbed::note!("faults: {} on the timeline", experiment.faults.len());
    }
    let env = pipeline::preflight("diorama run", &args.state_root, !args.no_dilation)?;
    if args.no_dilation {
        if experiment.spec.tdf != 1.0 {
            return Err(Error::Usage("--no-dilation only makes sense at TDF 1".into()).into());
        }
        if let Some(f) = experiment.faults.iter().find(|f| f.action.kind() == "clock") {
            return Err(
                Error::Usage(format!("{}: a clock fault needs the clock shim; drop --no-dilation", f.id)).into()
            );
        }
    }
    let results_dir = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("results").join(format!(
            "{}-{}",
            experiment.spec.name,
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
        ))
    });
    experiment.check_views(&results_dir, &args.state_root)?;
    let results_dir = ResultsDir::claim(&results_dir, args.force, "--out")?;
    let watch = pipeline::Watch {
        interactive: std::io::stderr().is_terminal(),
        fidelity: testbed::FidelityThresholds { late_p99, ..Default::default() },
    };
    let interrupt = super::interrupt_flag()?;
    let ran = pipeline::execute(&experiment, &results_dir, &env, &watch, &interrupt)?;
    let outcome = &ran.outcome;
    for node in outcome.nodes.iter().filter(|n| n.main || n.exit.is_some_and(|c| c != 0 && !n.stopped_by_harness)) {
        testbed::note!("  {}: {}{}", node.name, exit_text(node.exit), if node.main { " (main)" } else { "" });
    }
    testbed::note!("results: {}", ran.results_dir.display());
    super::report::announce(&ran.results_dir, &ran.summary);
    Ok(if outcome.success { exit::OK } else { exit::RUN_FAILED })
}

/// A node's end for people: `exit 0`, `killed by SIGKILL`, or `still running`.
pub(super) fn exit_text(exit: Option<i32>) -> String {
    match exit {
        None => "still running".into(),
        // The run engine records a death by signal N as 128 + N, as shells do.
        Some(code) if code > 128 => match nix::sys::signal::Signal::try_from(code - 128) {
            Ok(signal) => format!("killed by {signal}"),
            Err(_) => format!("exit {code}"),
        },
        Some(code) => format!("exit {code}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn exit_statuses_read_as_numbers_or_signals() {
        assert_eq!(super::exit_text(Some(0)), "exit 0");
        assert_eq!(super::exit_text(Some(3)), "exit 3");
        assert_eq!(super::exit_text(Some(137)), "killed by SIGKILL");
        assert_eq!(super::exit_text(Some(143)), "killed by SIGTERM");
        assert_eq!(super::exit_text(None), "still running");
    }
}
