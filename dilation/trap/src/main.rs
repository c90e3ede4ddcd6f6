//! `dilation-trap [--tdf T] [--epoch REAL[:VIRT]] [--control FILE] [--stats] -- CMD ARGS…`
//!
//! Runs `CMD` with dilated time through seccomp + ptrace: the way to dilate Go programs
//! and static binaries, which the LD_PRELOAD shim cannot reach. The time model comes from
//! the options or, like the shim, from the `DILATION_*` environment, which the program and
//! its descendants also receive (without the shim in `LD_PRELOAD`: it would dilate twice).
//!
//! Handed an `exec` by the shim (`DILATION_TRAP_PROGRAM=PATH` in its environment), it takes
//! no options: it runs `PATH` with its own `argv` (the exec's, `argv[0]` included) and its
//! model from the environment.
//!
//! The launcher stands between its caller and the program: it forwards the signals a
//! supervisor sends (`SIGTERM`, `SIGINT`, `SIGHUP`, `SIGQUIT`, `SIGUSR1`, `SIGUSR2`,
//! `SIGWINCH`; not those the terminal sent to the program's process group too), and ends as
//! the program ended: its exit code, or killed by the same signal. 125 when the launcher
//! itself fails or refuses a program that no mechanism can dilate (another architecture's
//! binary) without `--allow-undilated`.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum as _};
use dilation::control::ControlFile;
use dilation::program::Mechanism;
use dilation::{Epoch, TimeModel, ENV_CONTROL, ENV_EPOCH_REAL_NS, ENV_EPOCH_VIRT_NS, ENV_TDF, ENV_TRAP_PROGRAM};
use dilation_trap::pacer::Pacer;
use dilation_trap::tracer::{Exit, Tracer};
use dilation_trap::{clock::VirtualClock, filter, spawn};

/// Environment variable set for every trapped process, so that in-node checks know which
/// mechanism dilates them.
const ENV_MECHANISM: &str = "DILATION_MECHANISM";
/// The vDSO mode's variable (`--vdso`).
const ENV_VDSO: &str = "DILATION_TRAP_VDSO";

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
    #[arg(long, value_enum, env = ENV_VDSO, default_value = "fast")]
    vdso: VdsoMode,
    /// The program and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<OsString>,
}

impl Cli {
    /// The options of a launch handed over by the shim: none but the environment's.
    fn handed_over() -> Self {
        let vdso = std::env::var(ENV_VDSO).ok().map(|v| {
            VdsoMode::from_str(&v, true).unwrap_or_else(|_| {
                tracing::warn!(value = %v, "{ENV_VDSO} is neither fast nor hide: hiding the vDSO");
                VdsoMode::Hide
            })
        });
        Cli {
            tdf: None,
            epoch: None,
            control: None,
            allow_undilated: false,
            stats: false,
            vdso: vdso.unwrap_or(VdsoMode::Fast),
            command: Vec::new(),
        }
    }
}

/// The program to run: its path and its `argv`.
struct Launch {
    path: PathBuf,
    argv: Vec<OsString>,
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
        Ok(Exit::Code(code)) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Ok(exit @ Exit::Signal(sig)) => {
            // As the program ended, so that whoever waits for this process (a supervisor
            // that started the program) sees what it would have seen without the launcher.
            spawn::die_by(sig);
            ExitCode::from(u8::try_from(exit.code()).unwrap_or(1))
        }
        Err(e) => {
            eprintln!("dilation-trap: {e:#}");
            ExitCode::from(125)
        }
    }
}

fn run() -> anyhow::Result<Exit> {
    let handed_over = std::env::var_os(ENV_TRAP_PROGRAM).is_some();
    let (cli, launch) = match std::env::var_os(ENV_TRAP_PROGRAM) {
        Some(path) => {
            let mut argv: Vec<OsString> = std::env::args_os().collect();
            if argv.is_empty() {
                argv.push(path.clone());
            }
            (Cli::handed_over(), Launch { path: path.into(), argv })
        }
        None => {
            let cli = Cli::parse();
            let program = &cli.command[0];
            let path = if program.as_bytes().contains(&b'/') {
                Some(PathBuf::from(program))
            } else {
                dilation::program::resolve(&program.to_string_lossy(), std::env::var("PATH").ok().as_deref())
            }
            .with_context(|| format!("{}: not found in PATH", program.to_string_lossy()))?;
            let argv = cli.command.clone();
            (cli, Launch { path, argv })
        }
    };
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
    let control = match control_path.as_deref().map(ControlFile::open).transpose() {
        Ok(control) => control,
        // The shim's process went on without a control page it could not open (a program
        // that dropped privileges): so does the program handed over.
        Err(e) if handed_over => {
            tracing::warn!(error = %e, "no control file: the program runs on the environment's model");
            None
        }
        Err(e) => return Err(e).context("open the control file"),
    };

    let path = &launch.path;
    match dilation::program::classify(path) {
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
                let (argv0, args) = launch.argv.split_first().context("empty argv")?;
                let err = std::process::Command::new(path).arg0(argv0).args(args).exec();
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
    let replaced = [ENV_TDF, ENV_EPOCH_REAL_NS, ENV_EPOCH_VIRT_NS, ENV_MECHANISM, ENV_TRAP_PROGRAM, "LD_PRELOAD"];
    let mut env: Vec<(OsString, OsString)> =
        std::env::vars_os().filter(|(k, _)| !replaced.iter().any(|r| k.as_os_str() == OsStr::new(r))).collect();
    env.extend(model.env().into_iter().map(|(k, v)| (k.into(), v.into())));
    env.push((ENV_MECHANISM.into(), "trap".into()));
    if let Some(preload) = std::env::var_os("LD_PRELOAD") {
        let shim = dilation::probe::SHIM_NAME.as_bytes();
        let kept: Vec<&[u8]> = preload
            .as_bytes()
            .split(|&b| b == b' ' || b == b':')
            .filter(|p| !p.is_empty() && !p.ends_with(shim))
            .collect();
        if !kept.is_empty() {
            env.push(("LD_PRELOAD".into(), OsString::from_vec(kept.join(&b':'))));
        }
    }
    if let Some(p) = &control_path {
        env.retain(|(k, _)| k.as_os_str() != OsStr::new(ENV_CONTROL));
        env.push((ENV_CONTROL.into(), p.clone().into_os_string()));
    }

    let clock = VirtualClock::new(&model, control)?;
    let fast = match cli.vdso {
        VdsoMode::Hide => None,
        VdsoMode::Fast => {
            let control_path = control_path
                .as_deref()
                .map(|p| std::fs::canonicalize(p).with_context(|| format!("resolve {}", p.display())))
                .transpose()?
                .map(|p| p.into_os_string().into_vec());
            Some(dilation_trap::fastpath::inject::Config {
                initial: clock.initial(),
                offsets: clock.offsets(),
                control_path,
            })
        }
    };
    // CPU pacing of every thread (decision 060), as the shim would pace a dynamic program
    // of the node.
    let pacing = dilation_trap::pacer::Config::from_env(tdf);
    if let Some(cfg) = &pacing {
        tracing::info!(speed = cfg.speed, cores = ?cfg.cores, quantum_us = cfg.quantum_ns / 1000, "pacing the program's CPU");
    }
    let prepared = spawn::Prepared::new(path, &launch.argv, &env, filter::program()?)?;
    let root = spawn::spawn_traced(&prepared)?;
    // Requests to the launcher (a supervisor's SIGTERM, a reload's SIGHUP…) go to the program.
    spawn::forward_signals(root).context("forward signals to the program")?;

    let mut tracer = Tracer::new(clock, root);
    if let Some(cfg) = fast {
        tracer = tracer.with_fast_path(cfg);
    }
    if let Some(cfg) = pacing {
        tracer = tracer.with_pacer(Pacer::new(cfg, control_path.as_deref()));
    }
    let exit = tracer.run()?;
    if cli.stats {
        let s = tracer.stats;
        eprintln!(
            "dilation-trap: clock_reads={} waits={} execs={} vdso_missing={} vdso_injected={} vdso_fallbacks={} \
             vdso_passed={} passed={} signals={} foreign_refused={} foreign_execs={} errors={} \
             pace_quanta={} pace_sleeps={} pace_held_us={} pace_delivery_us={} pace_event_errors={}",
            s.clock_reads,
            s.waits,
            s.execs,
            s.vdso_missing,
            s.vdso_injected,
            s.vdso_fallbacks,
            s.vdso_passed,
            s.passed,
            s.signals,
            s.foreign_refused,
            s.foreign_execs,
            s.errors,
            s.pace.quanta,
            s.pace.sleeps,
            s.pace.held_ns / 1000,
            s.pace.delivery_ns / 1000,
            s.pace.event_errors
        );
    }
    Ok(exit)
}
