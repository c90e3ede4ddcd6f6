//! Documented exit codes of `diorama` (also listed in `docs/cli.md`).

/// Success.
pub const OK: u8 = 0;
/// The run completed but failed: a `main` node exited non-zero, or a node died.
pub const RUN_FAILED: u8 = 1;
/// Bad command line.
pub const USAGE: u8 = 2;
/// The topology, scenario or suite file is invalid.
pub const INVALID_INPUT: u8 = 3;
/// The environment cannot run this: not root, a kernel feature or a binary is missing.
pub const ENVIRONMENT: u8 = 4;
/// Setting up the experiment failed (cgroup, namespace, network, a node failed to start).
pub const SETUP: u8 = 5;
/// Assertions or comparison thresholds failed (`diorama compare`, `validate`, `test`).
pub const ASSERTIONS: u8 = 6;
/// A bug in diorama.
pub const INTERNAL: u8 = 70;
