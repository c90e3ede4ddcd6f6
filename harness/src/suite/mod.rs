//! System-test suites (`diorama test`): scenarios run in order, each with assertions on its
//! results, reported as JUnit XML and `suite.json`. The file format is parsed by
//! [`catalog::suite`]; the format is in docs/suites.md.

pub mod assess;
pub mod junit;
pub mod outcome;
pub mod recovery;
pub mod scenarios;

pub use catalog::suite::{load, Suite, SuiteError};
pub use outcome::SuiteResult;
