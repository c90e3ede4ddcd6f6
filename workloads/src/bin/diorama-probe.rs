//! `diorama-probe`: measurement probes — server, agents and CLI (docs/probes.md).
#![forbid(unsafe_code)]

use clap::Parser;
use workloads::probe::{role_flag_as_subcommand, Args, Role};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    workloads::runtime::init_tracing();
    let args = Args::parse_from(role_flag_as_subcommand(std::env::args_os().collect()));
    match args.role {
        Role::Server(a) => workloads::probe::serve::run(a).await,
        Role::Agent(a) => workloads::probe::agent::run(a).await,
        Role::Cli(a) => {
            if let Err(failure) = workloads::probe::cli::run(a).await {
                for (i, line) in failure.lines.iter().enumerate() {
                    if i == 0 {
                        eprintln!("error: {line}");
                    } else {
                        eprintln!("  {line}");
                    }
                }
                std::process::exit(failure.code);
            }
            Ok(())
        }
    }
}
