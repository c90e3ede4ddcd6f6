//! `diorama clean [RUN] [--check] [--force]`: remove leftovers of crashed runs.

use std::path::PathBuf;

use super::exit;
use crate::Error;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this run (its id is the results directory's name); default: every dead run.
    pub run: Option<String>,
    /// Report leftovers and exit non-zero if there are any; remove nothing.
    #[arg(long)]
    pub check: bool,
    /// Also clean runs whose harness is still alive.
    #[arg(long)]
    pub force: bool,
    /// Root of the run state directories.
    #[arg(long, default_value = testbed::state::DEFAULT_ROOT, hide = true)]
    pub state_root: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    if !nix::unistd::geteuid().is_root() {
        return Err(Error::Environment("diorama clean needs root (cgroups, namespaces)".into()).into());
    }
    let report = testbed::clean::clean(&args.state_root, args.run.as_deref(), args.force, args.check)?;
    if let Some(run) = args.run.as_deref().filter(|_| !report.found) {
        return Err(Error::Usage(format!(
            "no run {run:?}: neither its state nor any of its cgroups exist (cleaned already, or a misspelt id?)"
        ))
        .into());
    }
    for live in &report.live {
        testbed::note!("left alone: run {live} (its harness is running; use --force)");
    }
    if args.check {
        if report.remaining.is_empty() {
            testbed::note!("clean: nothing left behind");
            return Ok(exit::OK);
        }
        for item in &report.remaining {
            testbed::note!("left behind: {item}");
        }
        return Err(Error::Leftovers(report.remaining.len()).into());
    }
    testbed::note!(
        "clean: {} runs, {} processes killed, {} cgroups removed",
        report.runs.len(),
        report.processes_killed,
        report.cgroups_removed.len()
    );
    if !report.remaining.is_empty() {
        for item in &report.remaining {
            testbed::note!("could not remove: {item}");
        }
        return Err(Error::NotCleaned.into());
    }
    Ok(exit::OK)
}
