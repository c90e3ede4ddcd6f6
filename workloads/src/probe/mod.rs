//! `diorama-probe`: a measurement platform after CLAIM and RIPE Atlas — a task API with a
//! scheduler in the node's virtual time, agents in emulated regions that run the real
//! `ping`, `traceroute` and `curl`, and a results store (docs/probes.md).

pub mod agent;
pub mod api;
pub mod args;
pub mod cli;
pub mod client;
pub mod delay;
#[cfg(test)]
mod fixture;
pub mod httpget;
pub mod parse;
pub mod result;
pub mod schedule;
pub mod serve;
pub mod server;
pub mod spec;
pub mod store;
pub mod summary;
pub mod task;
pub mod taskfile;
pub mod tool;

pub use args::{role_flag_as_subcommand, Args, Role};
