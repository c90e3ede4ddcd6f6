//! Errors of node cgroups.

use std::path::PathBuf;

/// Errors of node cgroups.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    #[error("find the cgroup hierarchy: {0}")]
    Detect(String),
    #[error("write {value:?} to {path}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: std::io::Error,
    },
    #[error("create cgroup {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("remove cgroup {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
