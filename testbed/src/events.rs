//! `events.jsonl`: every lifecycle event, fault and recovery, with real and virtual time.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use serde_json::{json, Map, Value};

/// Appends events to `events.jsonl`, one JSON object a line, flushed per event so that a
/// crashed run still has its history.
#[derive(Debug)]
pub struct EventLog {
    out: BufWriter<File>,
}

impl EventLog {
    pub fn create(path: &Path) -> std::io::Result<Self> {
        Ok(Self { out: BufWriter::new(File::create(path)?) })
    }

    /// Writes `{t_virtual_s, t_real, kind, …fields}`.
    pub fn write(&mut self, t_virtual_s: f64, kind: &str, fields: Value) {
        let mut record = Map::new();
        record.insert("t_virtual_s".into(), json!((t_virtual_s * 1e6).round() / 1e6));
        record.insert("t_real".into(), json!(chrono::Utc::now().to_rfc3339()));
        record.insert("kind".into(), json!(kind));
        if let Value::Object(extra) = fields {
            record.extend(extra);
        }
        // Losing an event line must not abort the experiment; the error is logged.
        let line = Value::Object(record).to_string();
        if let Err(err) = writeln!(self.out, "{line}").and_then(|()| self.out.flush()) {
            tracing::warn!(?err, "failed to write events.jsonl");
        }
    }
}
