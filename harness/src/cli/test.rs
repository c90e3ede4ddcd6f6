//! `diorama test SUITE.yaml [--out DIR] [--only NAME]…`: run a system-test suite.

use std::path::PathBuf;

use super::exit;
use crate::Error;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The suite file (docs/suites.md).
    pub file: PathBuf,
    /// Results directory: one run directory per scenario, junit.xml, suite.json
    /// (default: results/<suite>-<UTC timestamp>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Reuse a non-empty `--out`: its old content is moved to `DIR.replaced-<time>` first.
    #[arg(long)]
    pub force: bool,
    /// Run only these scenarios (by name; repeatable).
    #[arg(long)]
    pub only: Vec<String>,
    /// Check the suite and plan every scenario, then stop.
    #[arg(long)]
    pub check: bool,
    /// Root of the run state directories.
    #[arg(long, default_value = testbed::state::DEFAULT_ROOT, hide = true)]
    pub state_root: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let mut suite = catalog::suite::load(&args.file).map_err(Error::Suite)?;
    for name in &args.only {
        if !suite.scenarios.iter().any(|s| &s.name == name) {
            return Err(Error::Usage(format!("--only {name}: no such scenario in {}", args.file.display())).into());
        }
    }
    if !args.only.is_empty() {
        suite.scenarios.retain(|s| args.only.contains(&s.name));
    }
    let experiments = crate::suite::scenarios::prepare(&suite)?;
    if args.check {
        for (s, e) in suite.scenarios.iter().zip(&experiments) {
            super::out!(
                "{}: {} at TDF {}, {} assertion(s)",
                s.name,
                s.topology.display(),
                crate::pipeline::tdf_text(e.spec.tdf),
                s.checks.len()
            );
        }
        return Ok(exit::OK);
    }
    let env = crate::pipeline::preflight("running experiments", &args.state_root, true)?;
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("results").join(format!("{}-{}", suite.name, chrono::Utc::now().format("%Y%m%dT%H%M%SZ")))
    });
    for e in &experiments {
        e.check_views(&out, &args.state_root)?;
    }
    let out = crate::results_dir::ResultsDir::claim(&out, args.force, "--out")?;
    let interrupt = super::interrupt_flag()?;
    let result = crate::suite::scenarios::run(&suite, &experiments, out.path(), &env, &interrupt)?;
    let out = out.path();
    super::out!("{}", result.table());
    super::out!("junit: {}", out.join("junit.xml").display());
    super::out!("summary: {}", out.join("suite.json").display());
    if interrupt.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(exit::RUN_FAILED);
    }
    Ok(if result.passed { exit::OK } else { exit::ASSERTIONS })
}
