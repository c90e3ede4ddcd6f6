//! `dilation-trap [--tdf T] [--epoch REAL[:VIRT]] [--control FILE] [--stats] -- CMD ARGS…`
//!
//! Runs `CMD` with dilated time through seccomp + ptrace: the way to dilate Go programs
//! and static binaries, which the LD_PRELOAD shim cannot reach. The time model comes from
//! the options or, like the shim, from the `DILATION_*` environment, which the program and
//! its descendants also receive (without the shim in `LD_PRELOAD`: it would dilate twice).
//! The exit code is the program's (128 + signal when it was killed); 125 when the launcher
//! itself fails or refuses a program that no mechanism can dilate (another architecture's
//! binary) without `--allow-undilated`.

use std::os::unix::process::CommandExt;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Parser;
use dilation::control::ControlFile;
use dilation::program::Mechanism;
use dilation::{Epoch, TimeModel, ENV_CONTROL, ENV_EPOCH_REAL_NS, ENV_EPOCH_VIRT_NS, ENV_TDF};
use dilation_trap::{clock::VirtualClock, filter, spawn, tracer::Tracer};
use nix::sys::signal::{kill, Signal};

/// Environment variable set for every trapped process, so that in-node checks know which
/// mechanism dilates them.
const ENV_MECHANISM: &str = "DILATION_MECHANISM";

#[derive(Parser, Debug)]
#[command(
    name = "dilation-trap",
    about = "Run a program with dilated time through seccomp + ptrace (Go, static binaries)"
)]
struct Cli {
    /// Time-dilation factor (default: $DILATION_TDF).
    #[arg(long)]
    tdf: Option<f64>,
    /// Epoch as REAL_NS[:VIRT_NS] of CLOCK_REALTIME (default: $DILATION_EPOCH_*, else now).
    #[arg(long)]
    epoch: Option<String>,
    /// Control file of the node (default: $DILATION_CONTROL).
    #[arg(long)]
    control: Option<std::path::PathBuf>,
    /// Run a program that no mechanism can dilate (another architecture's binary)
    /// undilated instead of refusing it.
    #[arg(long)]
    allow_undilated: bool,
    /// Print counters of trapped calls to stderr at the end.
    #[arg(long)]
    stats: bool,
    /// How clock reads through the vDSO are dilated: `fast` (the default) injects dilating
    /// code that the vDSO's symbols point at (no trap per read: Go's `time.Now` at 1.2×
    /// native); `hide` hides the vDSO so that every read is a trapped syscall (about 2,000×
    /// native). Where injection fails the vDSO is hidden anyway (decision 022).
    #[arg(long, value_enum, env = "DILATION_TRAP_VDSO", default_value = "fast")]
    vdso: VdsoMode,
    /// The program and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum VdsoMode {
    Fast,
    Hide,
}

fn parse_epoch(s: &str) -> anyhow::Result<Epoch> {
    let (r, v) = s.split_once(':').unwrap_or((s, s));
    Ok(Epoch {
        real_ns: r.trim().parse().context("epoch real ns")?,
        virt_ns: v.trim().parse().context("epoch virtual ns")?,
    })
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("DIORAMA_LOG"))
        .with_writer(std::io::stderr)
        .init();
    match run() {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("dilation-trap: {e:#}");
            ExitCode::from(125)
        }
    }
}

fn run() -> anyhow::Result<i32> {
    let cli = Cli::parse();
    let env_model = TimeModel::from_env()?;
    let tdf = match (cli.tdf, env_model) {
        (Some(t), _) => t,
        (None, Some(m)) => m.tdf,
        (None, None) => bail!("no TDF: pass --tdf or set {ENV_TDF}"),
    };
    let epoch = match (&cli.epoch, env_model) {
        (Some(s), _) => parse_epoch(s)?,
        (None, Some(m)) => m.epoch,
        (None, None) => Epoch::now(),
    };
    let model = TimeModel::new(tdf, epoch)?;
    let control_path = cli.control.clone().or_else(|| std::env::var_os(ENV_CONTROL).map(Into::into));
    let control = control_path.as_deref().map(ControlFile::open).transpose().context("open the control file")?;

    let program = &cli.command[0];
    let path = dilation::program::resolve(program, std::env::var("PATH").ok().as_deref())
        .with_context(|| format!("{program}: not found in PATH"))?;
    match dilation::program::classify(&path) {
        Ok(kind) => match kind.mechanism() {
            Some(Mechanism::Trap) => {
                tracing::info!(program = %path.display(), %kind, "dilating with the syscall trap");
            }
            Some(Mechanism::Preload) => tracing::warn!(
                program = %path.display(),
                %kind,
                "the LD_PRELOAD shim reaches this program at a fraction of the trap's cost; trapping it anyway"
            ),
            None if cli.allow_undilated => {
                tracing::warn!(program = %path.display(), %kind, "no mechanism can dilate this program: running it UNDILATED as allowed");
                let err = std::process::Command::new(&path).args(&cli.command[1..]).exec();
                bail!("execute {}: {err}", path.display());
            }
            None => bail!(
                "cannot dilate {}: {kind}, which no mechanism reaches (pass --allow-undilated to run it undilated)",
                path.display()
            ),
        },
        Err(e) => {
            tracing::warn!(program = %path.display(), error = %e, "could not classify the program; trapping it")
        }
    }
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| {
            ![ENV_TDF, ENV_EPOCH_REAL_NS, ENV_EPOCH_VIRT_NS, ENV_MECHANISM, "LD_PRELOAD"].contains(&k.as_str())
        })
        .collect();
    env.extend(model.env());
    env.push((ENV_MECHANISM.to_owned(), "trap".to_owned()));
    if let Ok(preload) = std::env::var("LD_PRELOAD") {
        let kept: Vec<&str> =
            preload.split([' ', ':']).filter(|p| !p.is_empty() && !p.ends_with(dilation::probe::SHIM_NAME)).collect();
        if !kept.is_empty() {
            env.push(("LD_PRELOAD".to_owned(), kept.join(":")));
        }
    }
    if let Some(p) = &control_path {
        env.retain(|(k, _)| k != ENV_CONTROL);
        env.push((ENV_CONTROL.to_owned(), p.display().to_string()));
    }

    let clock = VirtualClock::new(&model, control)?;
    let fast = match cli.vdso {
        VdsoMode::Hide => None,
        VdsoMode::Fast => {
            let control_path = control_path
                .as_deref()
                .map(|p| std::fs::canonicalize(p).with_context(|| format!("resolve {}", p.display())))
                .transpose()?
                .map(|p| std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()).to_vec());
            Some(dilation_trap::fastpath::inject::Config {
                initial: clock.initial(),
                offsets: clock.offsets(),
                control_path,
            })
        }
    };
    let prepared = spawn::Prepared::new(&path.display().to_string(), &cli.command, &env, filter::program()?)?;
    let root = spawn::spawn_traced(&prepared)?;

    // Termination requests to the launcher go to the program.
    let mut signals = signal_hook::iterator::Signals::new([libc::SIGTERM, libc::SIGHUP, libc::SIGINT, libc::SIGQUIT])?;
    std::thread::spawn(move || {
        for s in signals.forever() {
            if let Ok(sig) = Signal::try_from(s) {
                let _ = kill(root, sig);
            }
        }
    });

    let mut tracer = Tracer::new(clock, root);
    if let Some(cfg) = fast {
        tracer = tracer.with_fast_path(cfg);
    }
    let code = tracer.run()?;
    if cli.stats {
        let s = tracer.stats;
        eprintln!(
            "dilation-trap: clock_reads={} waits={} execs={} vdso_missing={} vdso_injected={} vdso_fallbacks={} \
             vdso_passed={} passed={} signals={} errors={}",
            s.clock_reads,
            s.waits,
            s.execs,
            s.vdso_missing,
            s.vdso_injected,
            s.vdso_fallbacks,
            s.vdso_passed,
            s.passed,
            s.signals,
            s.errors
        );
    }
    Ok(code)
}
