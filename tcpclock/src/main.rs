//! `diorama-tcpclock`: the dilated TCP clock by hand.
//!
//! - `probe`: which hooks this kernel has and, per TCP timer, how it is stretched (JSON);
//! - `exec --tdf T -- CMD…`: runs CMD (and everything it starts) in a scratch cgroup2
//!   directory with the sock_ops program of TDF `T` attached, every TCP socket switched to
//!   the dilated CUBIC of that TDF (or to `--cc NAME`); prints the program's outcomes as
//!   JSON on stderr when CMD ends. For measuring commands (such as `diorama run`) whose
//!   processes' namespace defaults cannot be set from outside.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use tcpclock::{cgroup2, DilatedCubic, NodeCgroup, Probe, SockClock};

#[derive(Parser)]
#[command(about = "The kernel's TCP clock of a dilated node, by hand")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Probes the hooks and prints their coverage as JSON.
    Probe,
    /// Runs a command with the TCP clock of TDF `--tdf`.
    Exec {
        #[arg(long)]
        tdf: f64,
        /// Congestion control to switch every socket to instead of the dilated CUBIC.
        #[arg(long)]
        cc: Option<String>,
        /// The cgroup2 mount (found in /proc/self/mountinfo when absent).
        #[arg(long)]
        cgroup2: Option<PathBuf>,
        #[arg(trailing_var_arg = true, required = true)]
        command: Vec<String>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("diorama-tcpclock: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Probe => {
            let probe = Probe::run(None);
            let coverage = tcpclock::coverage(&probe, true);
            println!("{}", serde_json::to_string_pretty(&serde_json::json!({"probe": probe, "coverage": coverage}))?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Exec { tdf, cc, cgroup2: root, command } => exec(tdf, cc, root, &command),
    }
}

fn exec(tdf: f64, cc: Option<String>, root: Option<PathBuf>, command: &[String]) -> Result<ExitCode> {
    let Some((program, args)) = command.split_first() else { bail!("no command") };
    let root = match root {
        Some(r) => r,
        None => cgroup2::host_cgroup2_mount()?,
    };
    let cubic = match &cc {
        Some(_) => None,
        None => Some(DilatedCubic::register(tdf)?),
    };
    let cc_name = cc.as_deref().or(cubic.as_ref().map(DilatedCubic::name)).unwrap_or_default().to_string();
    let home = std::fs::read_to_string("/proc/self/cgroup")?
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(|p| root.join(p.trim_start_matches('/'))))
        .context("this process has no cgroup2 membership")?;
    let cg = NodeCgroup::create(&root.join(format!("diorama-tcpclock-exec-{}", std::process::id())))?;
    let clock = SockClock::attach_with_cc(cg.path(), tdf, Some(&cc_name))?;
    cg.add(std::process::id())?;
    let status = Command::new(program).args(args).status().with_context(|| format!("running {program}"));
    // Back to where this process came from, so the scratch directory can go.
    std::fs::write(home.join("cgroup.procs"), std::process::id().to_string()).context("leaving the scratch cgroup")?;
    let outcomes = clock.outcomes()?;
    eprintln!("{}", serde_json::json!({"tdf": tdf, "congestion_control": cc_name, "outcomes": outcomes}));
    drop(clock);
    cg.kill_all(Duration::from_secs(5))?;
    cg.remove()?;
    drop(cubic);
    let status = status?;
    Ok(ExitCode::from(u8::try_from(status.code().unwrap_or(1)).unwrap_or(1)))
}
