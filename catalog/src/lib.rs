//! The diorama catalog: the files a user writes (topologies, fault scenarios, suites), parsed,
//! typed and validated with source positions, and the planner that places a topology on the
//! hosts and picks its TDF.
//!
//! # Design
//! Every loader reports *all* the problems it finds as one sorted list of [`Diagnostic`]s
//! (file, line, column, field path, message), collected by one [`Diagnostics`] type. Nothing
//! here starts a process or touches the host beyond reading files and `/proc`.

pub mod diagnostics;
pub mod fault;
#[cfg(test)]
mod fuzz;
pub mod load;
mod one_or_many;
pub mod plan;
pub mod source;
pub mod suite;
pub mod topology;
pub mod units;

pub use diagnostics::{Diagnostic, Diagnostics};
pub use one_or_many::OneOrMany;
