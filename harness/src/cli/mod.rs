//! The `diorama` command line: one file per subcommand, each with `Args` and `run`.
//!
//! This is the binary edge: subcommands return `anyhow::Result<u8>` (an exit code from
//! [`exit`]); an error's exit code is chosen by [`exit::code_of`], the one place that maps
//! the library's errors to the documented codes.

use clap::{Parser, Subcommand};

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
        Err(err) => report(&err),
    }
}

fn init_tracing(filter: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}

/// Prints `error: …` and one `caused by:` line per source; returns the exit code.
pub fn report(err: &anyhow::Error) -> u8 {
    eprintln!("error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("caused by: {cause}");
    }
    exit::code_of(err)
}
