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
        /// The replicator that made it (`lambda`, `provider`, `vm`).
        #[serde(default = "default_system")]
        system: String,
        key: String,
        seq: u64,
        /// The object's size (what the destination now holds).
        bytes: u64,
        #[serde(default)]
        deleted: bool,
        /// When the source wrote this version (the event's time); none when only
        /// reconciliation saw it.
        written_ms: Option<u64>,
        done_ms: u64,
        /// The longest delay among `writes` (the destination's staleness it ended), or this
        /// version's own when no write was recorded.
        delay_s: Option<f64>,
        /// Every write it covered (this version and older ones not replicated before), with
        /// its delay: one sample each.
        #[serde(default)]
        writes: Vec<Covered>,
        /// The SLO the writes were held to.
        #[serde(default)]
        slo_s: Option<f64>,
        region: Option<String>,
        instances: Option<u32>,
        /// The plan's p99 estimate.
        predicted_s: Option<f64>,
        /// How it was made: `bytes`, or the changelog operation (`copy`, `move`, `concat`,
        /// `append`) applied at the destination.
        #[serde(default = "default_via")]
        via: String,
        /// Bytes that crossed between the regions for it.
        #[serde(default)]
        wan_bytes: u64,
        /// A baseline's price of the copy (a provider's fees, a VM copy's requests and egress);
        /// none for function copies, which their platform bills.
        #[serde(default)]
        cost_usd: Option<f64>,
        /// Why the changelog hint of this version was not applied (it was copied as bytes).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hint_refused: Option<String>,
        /// Writes covered beyond the first (`writes.len() − 1`): writes one copy satisfied
        /// that would each have needed a copy of their own (batching, overwrites in flight).
        #[serde(default)]
        coalesced: usize,
    },
    /// A replication that cannot meet (`cause: plan`: no plan's estimate fits what is left of
    /// the SLO), did not meet (`cause: delay`) or has not met by its deadline (`cause:
    /// deadline`: the SLO passed with the writes in `writes` not replicated) its SLO.
    Violation {
        #[serde(default = "default_system")]
        system: String,
        key: String,
        seq: u64,
        at_ms: u64,
        cause: Cause,
        reason: String,
        /// The writes (sequencers) it is about.
        #[serde(default)]
        writes: Vec<u64>,
    },
    /// What a reconciliation scan repaired.
    Repair { at_ms: u64, repairs: crate::state::Repairs },
    /// The model λReplica's planner plans a region's copies with: each of I, D, S and C
    /// configured or fitted to the samples measured ([`crate::fit`]). Written at start and
    /// whenever it changed (at most once a second per region): a region's last one is the
    /// model in force at the end.
    Model(crate::fit::ModelView),
    /// A cost billed by time rather than per copy (a VM's life).
    Cost {
        #[serde(default = "default_system")]
        system: String,
        /// What was billed, in words.
        what: String,
        usd: f64,
        at_ms: u64,
        /// The size of the object whose copy this time was billed for (the report's size
        /// classes); none: time no copy is charged with (a VM idle until its shutdown), or a
        /// delete.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
    },
}

fn default_system() -> String {
    "lambda".into()
}

fn default_via() -> String {
    "bytes".into()
}

/// A write a copy covered.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Covered {
    pub seq: u64,
    pub delay_s: f64,
}

/// What a violation record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    Plan,
    Delay,
    Deadline,
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

/// Appends `value` as one JSON line to `path` (the platform's and the VM pool's bills): a
/// line that cannot be written is logged, never fatal to the copy it accounts for.
pub fn append_jsonl(path: &Path, value: &impl serde::Serialize, what: &str) {
    let Ok(line) = serde_json::to_string(value) else { return };
    let wrote = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
    if let Err(err) = wrote {
        tracing::warn!(%err, path = %path.display(), "{what} record not written");
    }
}
