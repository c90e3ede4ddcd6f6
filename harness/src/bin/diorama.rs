//! `diorama`: the user-facing binary. All logic lives in the `harness` library.
fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(harness::cli::main())
}
