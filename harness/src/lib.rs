//! The diorama harness: the experiment adapter (catalog → testbed spec), the one run
//! pipeline that `run`, `test` and `validate` share, suites, validation, and the `diorama`
//! command line (`cli`, the only module that knows exit codes).

pub mod cli;
pub mod error;
pub mod experiment;
pub mod faults;
pub mod pipeline;
pub mod results_dir;
pub mod suite;
pub mod thresholds;
pub mod validate;
pub mod workload;

pub use error::Error;
