//! Errors of reading a results directory and writing its report.

use std::path::PathBuf;

/// Why a report could not be made. Messages read after "failed to …".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    #[error("read results in {}: not a results directory (no run.json)", dir.display())]
    NotARun { dir: PathBuf },
    #[error("read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parse {}:{line}: {message}", path.display())]
    Json { path: PathBuf, line: u64, message: String },
    #[error("parse {}: field `{field}`: {message}", path.display())]
    JsonField { path: PathBuf, field: String, message: String },
    #[error("parse {}:{line}: field `{field}`: {message}", path.display())]
    Csv { path: PathBuf, line: u64, field: String, message: String },
    #[error("draw the plot `{title}`: {message}")]
    Plot { title: String, message: String },
    #[error("write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ReportError {
    /// True when the results directory's content is at fault (not the machine).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, Self::NotARun { .. } | Self::Json { .. } | Self::JsonField { .. } | Self::Csv { .. })
    }
}
