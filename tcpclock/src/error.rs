//! Errors of loading, attaching and registering the programs.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("TDF {0} is outside what the programs can represent (0.001 to 1,000,000)")]
    BadTdf(f64),
    #[error("no cgroup2 hierarchy is mounted")]
    NoCgroup2,
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] io::Error),
    #[error("congestion-control names {0} and {1} variants are all registered already")]
    NamesTaken(String, u32),
    #[error("{0}: {1}")]
    Bpf(&'static str, #[source] libbpf_rs::Error),
}
