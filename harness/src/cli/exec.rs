//! `diorama exec --tdf T [--epoch …] -- CMD ARGS…`: run any command dilated, as `faketime`
//! does, with the same mechanism the harness uses for every node process: the LD_PRELOAD
//! shim, or the syscall trap (`dilation-trap`) for Go programs and static binaries
//! (`dilation::program::choose`, which also looks through `sh -c SCRIPT`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

use dilation::program::Mechanism;

use crate::Error;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Time-dilation factor: > 1 slows time down, < 1 speeds it up.
    #[arg(long, default_value_t = 1.0, value_parser = super::parse_tdf)]
    pub tdf: f64,
    /// Shared epoch as `REAL_NS[:VIRT_NS]` (CLOCK_REALTIME ns). Processes given the same
    /// epoch agree on virtual time. Default: now, with virtual = real at that instant.
    #[arg(long)]
    pub epoch: Option<String>,
    /// Control file through which the TDF can be changed while the command runs.
    #[arg(long)]
    pub control: Option<PathBuf>,
    /// Path of libdilation.so (default: beside this executable, or $DIORAMA_SHIM).
    #[arg(long)]
    pub shim: Option<PathBuf>,
    /// Run a program that no mechanism can dilate (another architecture's binary)
    /// undilated, with a warning, instead of refusing it.
    #[arg(long)]
    pub allow_undilated: bool,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, required = true, allow_hyphen_values = true)]
    pub command: Vec<OsString>,
}

/// Parses `REAL_NS[:VIRT_NS]`.
fn parse_epoch(text: &str) -> Result<dilation::Epoch, String> {
    let (real, virt) = text.split_once(':').unwrap_or((text, text));
    let real: i64 = real.trim().parse().map_err(|_| format!("epoch real time {real:?} is not an integer of ns"))?;
    let virt: i64 = virt.trim().parse().map_err(|_| format!("epoch virtual time {virt:?} is not an integer of ns"))?;
    Ok(dilation::Epoch { real_ns: real, virt_ns: virt })
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let epoch = match &args.epoch {
        Some(text) => parse_epoch(text).map_err(|m| Error::Usage(format!("--epoch: {m}")))?,
        None => dilation::Epoch::now(),
    };
    let model =
        dilation::TimeModel::new(args.tdf, epoch).map_err(|e| Error::Usage(format!("--tdf {}: {e}", args.tdf)))?;
    let shim = args
        .shim
        .clone()
        .or_else(dilation::probe::locate_shim)
        .ok_or_else(|| Error::Environment(crate::pipeline::NO_SHIM.into()))?;
    if !shim.is_file() {
        return Err(Error::Environment(format!("shim {} does not exist", shim.display())).into());
    }
    let (program, rest) = args.command.split_first().context("no command given")?;
    if resolve(program).is_none() {
        return Err(Error::Environment(format!("command {program:?} not found on PATH")).into());
    }
    let argv: Vec<String> = args.command.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let choice = dilation::program::choose(&argv, std::env::var("PATH").ok().as_deref());
    let trapped = match choice.mechanism {
        Some(Mechanism::Trap) => Some(dilation::probe::locate_trap().ok_or_else(|| {
            Error::Environment(format!(
                "{}, and {} was not found beside diorama or in $DIORAMA_TRAP (build it: cargo build --release --workspace)",
                choice.reason,
                dilation::coverage::TRAP_NAME
            ))
        })?),
        Some(Mechanism::Preload) => None,
        None if args.allow_undilated => {
            tracing::warn!(reason = %choice.reason, "no mechanism can dilate the command: running it UNDILATED as allowed");
            None
        }
        None => {
            return Err(Error::Usage(format!(
                "cannot dilate the command: {} (pass --allow-undilated to run it undilated)",
                choice.reason
            ))
            .into())
        }
    };
    let mechanism = match (&trapped, choice.mechanism) {
        (Some(_), _) => "syscall trap (dilation-trap)",
        (None, Some(_)) => "LD_PRELOAD shim",
        (None, None) => "none (UNDILATED)",
    };
    testbed::note!("dilation: {mechanism} ({})", choice.reason);
    let mut cmd = match &trapped {
        Some(trap) => {
            let mut cmd = std::process::Command::new(trap);
            cmd.arg("--").arg(program);
            cmd
        }
        None => std::process::Command::new(program),
    };
    cmd.args(rest);
    for (k, v) in model.env() {
        cmd.env(k, v);
    }
    if let Some(control) = &args.control {
        dilation::control::ControlFile::create(control, &model)
            .with_context(|| format!("create control file {}", control.display()))?;
        cmd.env(dilation::ENV_CONTROL, control);
    }
    let preload = match std::env::var_os("LD_PRELOAD") {
        Some(existing) if !existing.is_empty() => {
            let mut joined = shim.clone().into_os_string();
            joined.push(":");
            joined.push(existing);
            joined
        }
        _ => shim.clone().into_os_string(),
    };
    // The trap strips the shim from its children's LD_PRELOAD; the launcher itself must not
    // load it either (its own clock would be dilated).
    if trapped.is_none() {
        cmd.env("LD_PRELOAD", preload);
        // A Go or static program the command executes is handed to the trap by the shim.
        if let Some(trap) = dilation::probe::locate_trap() {
            cmd.env(dilation::ENV_TRAP, trap);
        }
    }
    // Ctrl-C reaches the child through the terminal's process group; the harness waits.
    let interrupted = super::interrupt_flag()?;
    let mut child = cmd.spawn().with_context(|| format!("start {program:?}"))?;
    if trapped.is_none() && choice.mechanism.is_some() {
        verify_loaded(child.id(), &shim, &mut child);
    }
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if interrupted.load(std::sync::atomic::Ordering::Relaxed) {
            // Already signalled by the terminal; give it a moment, then wait.
            break child.wait()?;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Ok(u8::try_from(testbed::container::exit_code_of(status)).unwrap_or(u8::MAX))
}

/// Confirms through `/proc/PID/maps` that the dynamic loader mapped the shim.
fn verify_loaded(pid: u32, shim: &std::path::Path, child: &mut std::process::Child) {
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline {
        match dilation::probe::shim_loaded(pid) {
            Ok(true) => {
                tracing::debug!(pid, shim = %shim.display(), "shim loaded");
                return;
            }
            Ok(false) => {}
            // The process is gone (or exec'd something unreadable): nothing to verify.
            Err(_) => return,
        }
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    tracing::warn!(pid, shim = %shim.display(), "the shim is not mapped in the process: its time is NOT dilated");
}

fn resolve(program: &std::ffi::OsStr) -> Option<PathBuf> {
    testbed::container::find_program(program, std::env::var_os("PATH").as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_parse() {
        assert_eq!(parse_epoch("100:200").unwrap(), dilation::Epoch { real_ns: 100, virt_ns: 200 });
        assert_eq!(parse_epoch("5").unwrap(), dilation::Epoch { real_ns: 5, virt_ns: 5 });
        assert!(parse_epoch("x").unwrap_err().contains("\"x\""));
    }
}
