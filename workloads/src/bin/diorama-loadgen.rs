//! `diorama-loadgen`: see `docs/loadgen.md`.
use clap::Parser;

fn main() -> std::process::ExitCode {
    workloads::runtime::init_tracing();
    match workloads::loadgen::cli::main(workloads::loadgen::cli::Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            err.chain().skip(1).for_each(|cause| eprintln!("caused by: {cause}"));
            std::process::ExitCode::FAILURE
        }
    }
}
