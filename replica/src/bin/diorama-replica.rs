//! `diorama-replica`: the store, the replicator's roles, the test writer and the end check.

fn main() -> std::process::ExitCode {
    replica::cli::main()
}
