//! Per-tier counters and the `isaac.csv` time series.
//!
//! Every `interval` of virtual time the tier appends one row
//! `t_virtual_s,tier,requests,errors,timeouts` with the counts *of that interval*:
//! requests the tier received, requests it answered with an error status, and calls to the
//! next tier that timed out. On shutdown the last, partial interval is written too.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Header of `isaac.csv` (results schema 1, docs/results.md).
pub const CSV_HEADER: &str = "t_virtual_s,tier,requests,errors,timeouts";

/// Failure writing the time series.
#[derive(Debug, thiserror::Error)]
#[error("write {path}: {source}")]
pub struct StatsError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Lock-free counters the request handlers bump.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    pub timeouts: AtomicU64,
}

impl Counters {
    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }
    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }
    pub fn timeout(&self) {
        self.timeouts.fetch_add(1, Ordering::Relaxed);
    }
    /// Totals since start: (requests, errors, timeouts).
    pub fn totals(&self) -> (u64, u64, u64) {
        (
            self.requests.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
            self.timeouts.load(Ordering::Relaxed),
        )
    }
}

/// The run's virtual epoch in unix ns: `DILATION_EPOCH_VIRT_NS` when the harness runs this
/// process, else `fallback` (the process's start), so stand-alone runs count from start.
pub fn epoch_virt_ns(fallback: i64) -> i64 {
    std::env::var("DILATION_EPOCH_VIRT_NS").ok().and_then(|v| v.parse().ok()).unwrap_or(fallback)
}

/// Appends interval rows to `isaac.csv`.
#[derive(Debug)]
pub struct Series {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
    tier: &'static str,
    epoch_ns: i64,
    last: (u64, u64, u64),
}

impl Series {
    /// Opens `path` for appending, writing the header if the file is new or empty: a
    /// restarted process (a fault's `restart`) continues its predecessor's series.
    pub fn create(path: &Path, tier: &'static str, epoch_ns: i64) -> Result<Self, StatsError> {
        let err = |source| StatsError { path: path.to_owned(), source };
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(err)?;
        let fresh = file.metadata().map_err(err)?.len() == 0;
        let mut file = std::io::BufWriter::new(file);
        if fresh {
            writeln!(file, "{CSV_HEADER}").map_err(err)?;
        }
        file.flush().map_err(err)?;
        Ok(Series { path: path.to_owned(), file, tier, epoch_ns, last: (0, 0, 0) })
    }

    /// Writes the counts since the previous row, stamped `now_ns` (virtual unix ns).
    pub fn row(&mut self, now_ns: i64, c: &Counters) -> Result<(), StatsError> {
        let err = |source| StatsError { path: self.path.clone(), source };
        let now = c.totals();
        let t = (now_ns - self.epoch_ns) as f64 / 1e9;
        writeln!(
            self.file,
            "{t:.3},{},{},{},{}",
            self.tier,
            now.0 - self.last.0,
            now.1 - self.last.1,
            now.2 - self.last.2
        )
        .map_err(err)?;
        self.file.flush().map_err(err)?;
        self.last = now;
        Ok(())
    }
}

/// Writes a row every `interval` until `stop` resolves, then a final one.
pub async fn run_series(
    mut series: Series,
    counters: std::sync::Arc<Counters>,
    interval: Duration,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), StatsError> {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = tick.tick() => series.row(crate::runtime::now_unix_ns(), &counters)?,
            () = &mut stop => break,
        }
    }
    series.row(crate::runtime::now_unix_ns(), &counters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_interval_deltas() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("isaac.csv");
        let c = Counters::default();
        let mut s = Series::create(&path, "app", 1_000_000_000).unwrap();
        c.request();
        c.request();
        c.error();
        s.row(2_500_000_000, &c).unwrap();
        c.request();
        c.timeout();
        s.row(3_500_000_000, &c).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "t_virtual_s,tier,requests,errors,timeouts\n1.500,app,2,1,0\n2.500,app,1,0,1\n");
        // A restarted process appends without a second header, counting from zero.
        let c = Counters::default();
        c.request();
        Series::create(&path, "app", 1_000_000_000).unwrap().row(5_000_000_000, &c).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with("2.500,app,1,0,1\n4.000,app,1,0,0\n"), "{text}");
    }
}
