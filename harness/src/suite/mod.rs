//! System-test suites (`diorama test`): scenarios run in order, each with assertions on its
//! results, reported as JUnit XML and `suite.json`. The format is in docs/suites.md.

pub mod assess;
pub mod driver;
pub mod junit;
pub mod model;
pub mod outcome;
pub mod recovery;
pub mod runner;

pub use model::{load, Suite, SuiteError};
pub use outcome::SuiteResult;
