//! The errors of the harness library: what went wrong, never which exit code it means (the
//! CLI maps each to a documented code in one place, `crate::cli::exit`).

use std::path::PathBuf;

/// An error of preparing, running or assessing experiments.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A topology file is invalid.
    #[error(transparent)]
    Topology(#[from] catalog::topology::CatalogError),
    /// A fault timeline (a topology's or a scenario file's) is invalid.
    #[error(transparent)]
    Faults(#[from] catalog::fault::FaultError),
    /// A suite file is invalid.
    #[error(transparent)]
    Suite(#[from] catalog::suite::SuiteError),
    /// A thresholds file is invalid.
    #[error(transparent)]
    Thresholds(#[from] crate::thresholds::ThresholdsError),
    /// A field of an input file names something that does not hold (a program, a device).
    #[error("{at}: {field}: {message}")]
    Reference { at: String, field: String, message: String },
    /// The topology cannot be placed on its hosts.
    #[error("{}: impossible plan: {reason}", file.display())]
    Plan { file: PathBuf, reason: catalog::plan::PlanError },
    /// Some of the files given to `check` are invalid (each was reported); `what` names
    /// them (`topologies`, or `files` when suites are among them).
    #[error("{invalid} of {total} {what} are invalid")]
    InvalidFiles { invalid: usize, total: usize, what: &'static str },
    /// Scenarios of a suite cannot run; `first` is the first problem's error.
    #[error("the suite's scenarios cannot run:\n{text}")]
    Scenarios { first: Box<Error>, text: String },
    /// `validate`'s baseline (TDF 1, full resources) does not fit this host.
    #[error("the baseline (TDF 1, full resources) of {} does not fit this host, so there is nothing to validate against: {plan}", file.display())]
    BaselineTooBig { file: PathBuf, plan: Box<Error> },
    /// A command-line value is unusable.
    #[error("{0}")]
    Usage(String),
    /// The host cannot run this (not root, the shim missing, a command missing).
    #[error("{0}")]
    Environment(String),
    /// The hosts of the plan could not be measured.
    #[error("measure the hosts: {0}")]
    Inventory(String),
    /// Setting up, running or tearing down the testbed failed.
    #[error("the run failed")]
    Run(#[source] testbed::TestbedError),
    /// Writing or reading a run's files failed (`what` says which, with the cause).
    #[error("{0}")]
    Files(String),
    /// `diorama clean --check` found leftovers.
    #[error("{0} leftovers (run `diorama clean`)")]
    Leftovers(usize),
    /// `diorama clean` could not remove everything.
    #[error("some leftovers could not be removed")]
    NotCleaned,
    /// A report could not be written.
    #[error("failed to report on {}", dir.display())]
    Report {
        dir: PathBuf,
        #[source]
        source: report::ReportError,
    },
    /// Two runs could not be compared.
    #[error("failed to compare the runs")]
    Compare(#[source] report::compare::CompareError),
    /// The comparison could not be written.
    #[error("{what}")]
    CompareOutput {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A thresholds file given to `compare` is invalid.
    #[error("invalid thresholds")]
    ThresholdsFile(#[source] crate::thresholds::ThresholdsError),
    /// A bug in diorama.
    #[error("{0}")]
    Internal(String),
}

/// An error and its causes in one line, `a: b: c` (anyhow's `{:#}`).
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
