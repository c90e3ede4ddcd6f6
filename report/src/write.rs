//! Writing a report's files: `summary.json` and `report.html`, each whole or not at all.

use std::path::Path;

use crate::data::analyze;
use crate::summary::Summary;
use crate::ReportError;

/// Writes `summary.json` and `report.html` into a results directory; returns the summary.
pub fn write(dir: &Path) -> Result<Summary, ReportError> {
    let run = analyze(dir)?;
    let summary = Summary::of(&run);
    let html = crate::html::render(&run, &summary)?;
    let json = serde_json::to_vec_pretty(&summary)
        .map_err(|e| ReportError::Write { path: dir.join("summary.json"), source: std::io::Error::other(e) })?;
    atomic(&dir.join("summary.json"), &json)?;
    atomic(&dir.join("report.html"), html.as_bytes())?;
    Ok(summary)
}

/// Writes `path` through a temporary file and a rename, so readers never see half a file.
pub(crate) fn atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| ReportError::Write { path: path.to_owned(), source })
}
