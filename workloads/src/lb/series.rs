//! `backends.csv`: per backend and reporting interval, requests started, in flight at the
//! end, errors, latency p50/p99 of the answers that ended (µs; empty when none did) and
//! whether it is ejected.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::balancer::Row;

/// Header of `backends.csv` (results schema 1, docs/results.md).
pub const CSV_HEADER: &str = "t_virtual_s,backend,requests,inflight,errors,latency_p50_us,latency_p99_us,ejected";

/// Failure writing the series.
#[derive(Debug, thiserror::Error)]
#[error("write {path}: {source}")]
pub struct SeriesError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// An open `backends.csv` (appended to, so a restarted balancer continues it).
#[derive(Debug)]
pub struct Series {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
}

impl Series {
    pub fn create(path: &Path) -> Result<Self, SeriesError> {
        let err = |source| SeriesError { path: path.to_owned(), source };
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(err)?;
        let fresh = file.metadata().map_err(err)?.len() == 0;
        let mut file = std::io::BufWriter::new(file);
        if fresh {
            writeln!(file, "{CSV_HEADER}").map_err(err)?;
            file.flush().map_err(err)?;
        }
        Ok(Series { path: path.to_owned(), file })
    }

    /// Writes `rows` stamped `t_virtual_s`.
    pub fn write(&mut self, t_virtual_s: f64, rows: &[Row]) -> Result<(), SeriesError> {
        let err = |source| SeriesError { path: self.path.clone(), source };
        let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        for r in rows {
            writeln!(
                self.file,
                "{t_virtual_s:.3},{},{},{},{},{},{},{}",
                r.backend,
                r.requests,
                r.inflight,
                r.errors,
                opt(r.p50_us),
                opt(r.p99_us),
                u8::from(r.ejected)
            )
            .map_err(err)?;
        }
        self.file.flush().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_match_the_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backends.csv");
        let mut s = Series::create(&path).unwrap();
        let row = Row {
            backend: "fs0:8080".into(),
            requests: 4,
            inflight: 1,
            errors: 1,
            p50_us: Some(900),
            p99_us: None,
            ejected: true,
        };
        s.write(1.5, &[row]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{CSV_HEADER}\n1.500,fs0:8080,4,1,1,900,,1\n"));
        let cols = CSV_HEADER.split(',').count();
        assert!(text.lines().all(|l| l.split(',').count() == cols));
    }
}
