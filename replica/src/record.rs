//! The replicator's records: one JSON object a line in `replication.jsonl`, appended as things
//! happen (a run ends by killing the coordinator, so nothing waits for an orderly exit). The
//! report crate reads them into the replication section of `summary.json`.
//!
//! Times are milliseconds since the epoch on the node's clock, which a dilated run slows by
//! the TDF: every delay derived from them is virtual.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One record.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "record")]
pub enum Record {
    /// A version reached the destination.
    Replicated {
        key: String,
        seq: u64,
        bytes: u64,
        #[serde(default)]
        deleted: bool,
        /// When the source wrote it (the event's time); none when only reconciliation saw it.
        written_ms: Option<u64>,
        done_ms: u64,
        delay_s: Option<f64>,
        region: Option<String>,
        instances: Option<u32>,
        /// The plan's p99 estimate.
        predicted_s: Option<f64>,
    },
    /// A replication that cannot meet (`cause: plan`: no plan's estimate fits what is left of
    /// the SLO) or did not meet (`cause: delay`) its SLO.
    Violation { key: String, seq: u64, at_ms: u64, cause: Cause, reason: String },
    /// What a reconciliation scan repaired.
    Repair { at_ms: u64, repairs: crate::state::Repairs },
}

/// What a violation record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    Plan,
    Delay,
}

/// The append-only record file.
pub struct Records {
    path: PathBuf,
    lock: Mutex<()>,
}

impl Records {
    /// Records into `dir/replication.jsonl`.
    pub fn new(dir: &Path) -> Records {
        Records { path: dir.join("replication.jsonl"), lock: Mutex::new(()) }
    }

    /// Appends `record`; a failure is logged (records are evidence, not state).
    pub fn write(&self, record: &Record) {
        let _held = self.lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let line = match serde_json::to_string(record) {
            Ok(l) => l,
            Err(err) => return tracing::warn!(%err, "replication record not serializable"),
        };
        let wrote = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
        if let Err(err) = wrote {
            tracing::warn!(%err, path = %self.path.display(), "replication record not written");
        }
    }
}
