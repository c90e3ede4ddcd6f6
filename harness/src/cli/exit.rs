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
/// Stdout was closed by its reader (`diorama schema | head -1`): 128 + SIGPIPE, the status
/// a shell shows for a program a broken pipe ended. Nothing is printed.
pub const BROKEN_PIPE: u8 = 141;

use crate::Error;
use report::compare::CompareError;

/// The exit code of an error: that of the first [`Error`] in its chain, else [`INTERNAL`].
/// The one place where errors become exit codes.
pub fn code_of(err: &anyhow::Error) -> u8 {
    err.chain().find_map(|e| e.downcast_ref::<Error>()).map_or(INTERNAL, code)
}

fn code(err: &Error) -> u8 {
    match err {
        Error::Topology(_)
        | Error::Faults(_)
        | Error::Suite(_)
        | Error::Thresholds(_)
        | Error::ThresholdsFile(_)
        | Error::Reference { .. }
        | Error::Plan { .. }
        | Error::InvalidFiles { .. } => INVALID_INPUT,
        Error::Scenarios { first, .. } => code(first),
        Error::Usage(_) => USAGE,
        Error::Environment(_) | Error::Inventory(_) | Error::BaselineTooBig { .. } | Error::CompareOutput { .. } => {
            ENVIRONMENT
        }
        Error::Run(_) | Error::Files(_) | Error::NotCleaned => SETUP,
        Error::Leftovers(_) => RUN_FAILED,
        Error::Report { source, .. } if source.is_bad_input() => INVALID_INPUT,
        Error::Report { .. } => ENVIRONMENT,
        Error::Compare(CompareError::Run { source, .. }) if !source.is_bad_input() => ENVIRONMENT,
        Error::Compare(CompareError::Run { .. } | CompareError::DifferentTopologies { .. }) => INVALID_INPUT,
        Error::Compare(_) => ENVIRONMENT,
        Error::Internal(_) => INTERNAL,
    }
}
