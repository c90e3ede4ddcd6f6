//! The `diorama` command line: one file per subcommand, each with `Args` and `run`.
//!
//! This is the binary edge: subcommands return `anyhow::Result<u8>` (an exit code from
//! [`exit`]); an error's exit code is chosen by [`exit::code_of`], the one place that maps
//! the library's errors to the documented codes.

use clap::{Parser, Subcommand};

/// Writes a line to stdout; a closed stdout returns [`StdoutClosed`] from the subcommand,
/// which ends it quietly (no panic, no `error:` line) with [`exit::BROKEN_PIPE`].
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*).map_err($crate::cli::StdoutClosed)?
    }};
}
pub(crate) use out;

/// Stdout could not be written (its reader is gone): the subcommand stops quietly.
#[derive(Debug, thiserror::Error)]
#[error("write to stdout")]
pub struct StdoutClosed(#[source] pub std::io::Error);

/// The one rule for `--tdf` values of every subcommand: a finite positive number, else a
/// usage error (exit 2) before anything is loaded.
pub(crate) fn parse_tdf(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(t) if t.is_finite() && t > 0.0 => Ok(t),
        Ok(_) => Err(format!("the TDF must be a positive number, got {text}")),
        Err(_) => Err(format!("{text:?} is not a number")),
    }
}

mod check;
mod clean;
mod compare;
mod exec;
pub mod exit;
mod plan;
mod report;
mod run;
mod schema;
mod test;
mod validate;

#[derive(Debug, Parser)]
#[command(name = "diorama", version, about = "Run a large distributed service as a time-dilated scale model")]
pub struct Cli {
    /// Log filter (tracing env-filter syntax), e.g. `info` or `harness=debug`.
    #[arg(long, global = true, env = "DIORAMA_LOG", default_value = "info")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an experiment: plan, start every node, measure, tear down.
    Run(run::Args),
    /// Validate topology files without running them.
    Check(check::Args),
    /// Show the placement of nodes on hosts and the TDF; write plan.json.
    Plan(plan::Args),
    /// Print the JSON Schema of topology files.
    Schema(schema::Args),
    /// Run any command with dilated time, the way every node process runs.
    Exec(exec::Args),
    /// Run a system-test suite: scenarios with assertions; JUnit XML and suite.json.
    Test(test::Args),
    /// DieCast's three-way check: baseline (TDF 1), scaled (TDF T) and naive runs, compared.
    Validate(validate::Args),
    /// Remove what crashed runs left behind (cgroups, processes, state).
    Clean(clean::Args),
    /// Write summary.json and report.html of a results directory.
    Report(report::Args),
    /// Compare two runs of one topology; exit 6 when a threshold is exceeded.
    Compare(compare::Args),
    /// Internal: set up and supervise one node (run by the harness inside the node's namespaces).
    #[command(name = "__init", hide = true)]
    Init { config: std::path::PathBuf },
}

/// A flag set by SIGINT, SIGTERM or SIGHUP, for an orderly stop.
pub fn interrupt_flag() -> anyhow::Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
        signal_hook::flag::register(sig, std::sync::Arc::clone(&flag))?;
    }
    Ok(flag)
}

/// Parses the command line, runs the subcommand and returns the process exit code.
pub fn main() -> u8 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() { exit::USAGE } else { exit::OK };
        }
    };
    if let Command::Init { config } = &cli.command {
        // No tracing, no threads: `__init` forks and must stay single-threaded.
        return testbed::container::init_main(config);
    }
    init_tracing(&cli.log);
    let result: anyhow::Result<u8> = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Check(args) => check::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Schema(args) => schema::run(args),
        Command::Exec(args) => exec::run(args),
        Command::Clean(args) => clean::run(args),
        Command::Test(args) => test::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Report(args) => report::run(args),
        Command::Compare(args) => compare::run(args),
        Command::Init { .. } => Ok(exit::INTERNAL),
    };
    match result {
        Ok(code) => code,
        // The reader went away (`diorama schema | head -1`): nothing left to say to anyone.
        Err(err) if err.chain().any(|e| e.is::<StdoutClosed>()) => exit::BROKEN_PIPE,
        Err(err) => report(&err),
    }
}

fn init_tracing(filter: &str) {
    use std::io::IsTerminal;
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal, and never when NO_COLOR is set (no-color.org).
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Through the progress line: a log line never lands in the middle of it.
        .with_writer(|| testbed::progress::Stderr)
        .with_ansi(colour)
        // Its fallback report of a failed write is an `eprintln!`, which panics on a closed stderr.
        .log_internal_errors(false)
        .with_target(false)
        .try_init();
}

/// Prints `error: …` and one `caused by:` line per source; returns the exit code.
pub fn report(err: &anyhow::Error) -> u8 {
    testbed::note!("error: {err}");
    for cause in err.chain().skip(1) {
        testbed::note!("caused by: {cause}");
    }
    exit::code_of(err)
}
