//! `diorama clean`: removes what crashed runs left behind, by their recorded names.
//!
//! A run whose harness is alive is left alone. For the others, in order: the recorded node
//! processes (matched by PID *and* start time) are killed, every process still inside a
//! recorded cgroup is killed, the cgroups are removed leaves first, recorded devices are
//! deleted, and the state directory goes last — so an interrupted clean can be re-run.
//! Finally cgroups under `diorama/` that no live run records (a crash between creating a
//! cgroup and recording it cannot happen, since records come first, but a state directory
//! may have been deleted by hand) are emptied and removed too, and last the `diorama`
//! parents that hold no run.

use std::path::Path;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cgroup::{self, ResourceError};
use crate::state::StateDir;

/// Errors of cleaning.
#[derive(Debug, thiserror::Error)]
pub enum CleanError {
    #[error("read run states")]
    State(#[from] crate::state::StateError),
    #[error("remove cgroups")]
    Cgroup(#[from] ResourceError),
}

/// What clean found and did.
#[derive(Debug, Default)]
pub struct CleanReport {
    /// Runs cleaned (or, with `check`, found).
    pub runs: Vec<String>,
    /// Runs left alone because their harness is alive.
    pub live: Vec<String>,
    pub processes_killed: usize,
    pub cgroups_removed: Vec<String>,
    /// Leftovers found (with `check`) or that could not be removed.
    pub remaining: Vec<String>,
    /// Whether anything of the run asked for (a state directory or cgroups) exists.
    pub found: bool,
}

/// Cleans every dead run (or only `run`), or with `check` only reports what is left.
pub fn clean(state_root: &Path, run: Option<&str>, force: bool, check: bool) -> Result<CleanReport, CleanError> {
    let mut report = CleanReport::default();
    // Runs with a state directory: the orphan pass below skips them, whether they were
    // cleaned, left alone or (with `check`) listed, so no cgroup is counted twice.
    let mut with_state = Vec::new();
    for state in StateDir::list(state_root)? {
        let record = state.record().clone();
        with_state.push(record.run_id.clone());
        if run.is_some_and(|r| r != record.run_id) {
            continue;
        }
        report.found = true;
        let alive = record.harness.is_some_and(|h| h.alive() && h.pid != std::process::id());
        if alive && !force {
            report.live.push(record.run_id.clone());
            continue;
        }
        if check {
            report.remaining.push(format!("run {} (state {})", record.run_id, state.dir().display()));
            for cg in &record.cgroups {
                report.remaining.push(format!("cgroup {cg}"));
            }
            continue;
        }
        for (node, id) in &record.nodes {
            if id.alive() && kill(Pid::from_raw(id.pid as i32), Signal::SIGKILL).is_ok() {
                tracing::info!(run = %record.run_id, %node, pid = id.pid, "killed node");
                report.processes_killed += 1;
            }
        }
        let mut ok = true;
        for cg in record.cgroups.iter().rev() {
            match cgroup::NodeCgroup::remove_path(cg) {
                Ok(killed) => {
                    report.processes_killed += killed;
                    report.cgroups_removed.push(cg.clone());
                }
                Err(err) => {
                    ok = false;
                    report.remaining.push(format!("cgroup {cg}: {err}"));
                }
            }
        }
        if ok {
            cgroup::remove_run_parent(&record.run_id)?;
            if let Err(err) = state.remove() {
                report.remaining.push(format!("state of {}: {err}", record.run_id));
                continue;
            }
        }
        report.runs.push(record.run_id);
    }
    // Orphans: cgroups of runs that have no state directory (removed by hand, or a state
    // root that was wiped by a reboot while cgroups were not — impossible today, cheap to
    // handle).
    for (run_id, paths) in cgroup::NodeCgroup::list_runs()? {
        if with_state.contains(&run_id) || run.is_some_and(|r| r != run_id) {
            continue;
        }
        report.found = true;
        if check {
            report.remaining.extend(paths.iter().map(|p| format!("cgroup {p} (no state)")));
            continue;
        }
        for p in paths.iter().rev() {
            match cgroup::NodeCgroup::remove_path(p) {
                Ok(killed) => {
                    report.processes_killed += killed;
                    report.cgroups_removed.push(p.clone());
                }
                Err(err) => report.remaining.push(format!("cgroup {p}: {err}")),
            }
        }
        cgroup::remove_run_parent(&run_id)?;
    }
    // Empty `diorama` parents, unless a run is asked for (they belong to no run).
    if run.is_none() {
        if check {
            let empty = cgroup::empty_parents()?;
            report.found |= !empty.is_empty();
            report.remaining.extend(empty.iter().map(|p| format!("cgroup {} (empty parent)", p.display())));
        } else {
            let removed = cgroup::remove_empty_parents()?;
            report.cgroups_removed.extend(removed.iter().map(|p| p.display().to_string()));
        }
    }
    Ok(report)
}
