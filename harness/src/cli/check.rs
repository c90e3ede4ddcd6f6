//! `diorama check FILE…`: validate topology and suite files without running anything.
//!
//! A suite (a file with `scenarios:`) is checked as a suite, then every scenario's topology
//! and scenario file is checked too. Every problem of a file is reported, sorted by position.

use std::path::{Path, PathBuf};

use catalog::load::Kind;
use catalog::suite::Scenario;

use super::exit;
use crate::Error;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Topology or suite files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Also plan each topology on this machine (catches impossible plans).
    #[arg(long)]
    pub plan: bool,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let mut failed = 0;
    let mut suites = false;
    for file in &args.files {
        let kind = std::fs::read_to_string(file).map_or(Kind::Topology, |text| catalog::load::kind_of(&text));
        let ok = match kind {
            Kind::Topology => check_topology(file, args.plan, None)?,
            Kind::Suite => {
                suites = true;
                check_suite(file, args.plan)?
            }
        };
        if !ok {
            failed += 1;
        }
    }
    if failed > 0 {
        let what = if suites { "files" } else { "topologies" };
        return Err(Error::InvalidFiles { invalid: failed, total: args.files.len(), what }.into());
    }
    Ok(exit::OK)
}

/// Checks one topology (as a suite's scenario runs it, when `scenario` is given); prints
/// `FILE: ok (…)` or its problems. Returns whether it is valid.
fn check_topology(file: &Path, plan: bool, scenario: Option<&Scenario>) -> anyhow::Result<bool> {
    let t = match catalog::load::topology(file) {
        Ok(t) => t,
        Err(e) => {
            testbed::note!("{e}");
            return Ok(false);
        }
    };
    if let Some(faults) = scenario.and_then(|s| s.scenario.as_deref()) {
        if let Err(e) = catalog::fault::load_scenario(faults, &t) {
            testbed::note!("{e}");
            return Ok(false);
        }
    }
    if plan {
        // What the run loads, so a problem the run would refuse is refused here: the plan,
        // programs and workloads missing on PATH, disk devices, the network prefix; then
        // what a dilated run refuses before any node starts: a program no mechanism reaches.
        let overrides = crate::experiment::Overrides {
            tdf: scenario.and_then(|s| s.tdf),
            headroom: scenario.and_then(|s| s.headroom),
            scenario: scenario.and_then(|s| s.scenario.clone()),
            ..Default::default()
        };
        let loaded = crate::experiment::Experiment::load(file, &overrides)
            .and_then(|e| e.check_dilation(dilation::probe::locate_trap().as_deref()));
        if let Err(e) = loaded {
            testbed::note!("{e}");
            return Ok(false);
        }
    }
    let what = scenario.map(|s| format!("scenario {}: ", s.name)).unwrap_or_default();
    super::out!("{}: {what}ok ({} nodes, {} links)", file.display(), t.nodes.len(), t.links.len());
    Ok(true)
}

/// Checks a suite file, then every scenario's topology and scenario file.
fn check_suite(file: &Path, plan: bool) -> anyhow::Result<bool> {
    let suite = match catalog::suite::load(file) {
        Ok(s) => s,
        Err(e) => {
            testbed::note!("{e}");
            return Ok(false);
        }
    };
    let mut ok = true;
    for s in &suite.scenarios {
        ok &= check_topology(&s.topology, plan, Some(s))?;
    }
    if ok {
        super::out!("{}: ok (suite {}, {} scenarios)", file.display(), suite.name, suite.scenarios.len());
    }
    Ok(ok)
}
