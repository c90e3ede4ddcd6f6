//! The replication section: what a replicator (`diorama-replica`, docs/replica.md) recorded
//! in `nodes/<node>/replication.jsonl` and its function platforms in
//! `nodes/<node>/invocations.jsonl` and `deadletter.jsonl`.
//!
//! Delays are the replicator's: from the source's write (its event time) to the copy's
//! release, both read on dilated node clocks, so they are virtual seconds.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ReportError;

/// One line of `replication.jsonl` (only the fields the report uses).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
enum Line {
    Replicated {
        key: String,
        bytes: u64,
        #[serde(default)]
        deleted: bool,
        delay_s: Option<f64>,
    },
    Violation {
        key: String,
        cause: String,
        reason: String,
        at_ms: u64,
    },
    Repair {
        repairs: BTreeMap<String, u64>,
    },
}

/// One line of `invocations.jsonl` (only the fields the report uses).
#[derive(Debug, Clone, Deserialize)]
struct InvocationLine {
    ok: bool,
    gb_seconds: f64,
    requests: u64,
    egress_bytes: u64,
    cost: f64,
}

/// A violation as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Violation {
    pub key: String,
    /// `plan` (no plan could meet the SLO) or `delay` (the copy finished late).
    pub cause: String,
    pub reason: String,
    pub at_ms: u64,
}

/// Everything read from the replicator's and the platforms' records.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplicationData {
    /// (key, bytes, deleted, delay in virtual s when known).
    pub copies: Vec<(String, u64, bool, Option<f64>)>,
    pub violations: Vec<Violation>,
    pub repairs: BTreeMap<String, u64>,
    pub cost: Cost,
}

/// Delay figures in virtual seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delay {
    pub count: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

/// What the function platforms billed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// Attempts (each billed as an invocation).
    pub invocations: u64,
    pub failed: u64,
    pub dead_letters: u64,
    pub gb_seconds: f64,
    pub requests: u64,
    pub egress_bytes: u64,
    pub total_usd: f64,
}

/// The replication section of summary.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicationSummary {
    /// Versions released as replicated (copies and deletes).
    pub objects_replicated: usize,
    pub deletes: usize,
    pub bytes: u64,
    /// Over the copies whose write time was known; `None` when there was none.
    pub delay_s: Option<Delay>,
    /// By object size: `< 1 MiB`, `1 MiB – 128 MiB`, `>= 128 MiB` (deletes left out).
    pub delay_by_size_s: BTreeMap<String, Delay>,
    /// Share of copies with a known delay that met the SLO (1 − late / timed); `None` without
    /// any timed copy.
    pub slo_attainment: Option<f64>,
    pub slo_violations: usize,
    /// Violations by cause (`plan`, `delay`).
    pub violations_by_cause: BTreeMap<String, usize>,
    /// The first 100 violations, in the order recorded.
    pub violations: Vec<Violation>,
    /// What reconciliation scans repaired, summed by kind.
    pub repairs: BTreeMap<String, u64>,
    pub cost: Cost,
}

/// How many violations summary.json lists (all are counted).
const LISTED_VIOLATIONS: usize = 100;

fn jsonl<T: serde::de::DeserializeOwned>(path: &Path, mut each: impl FnMut(T)) -> Result<bool, ReportError> {
    if !path.is_file() {
        return Ok(false);
    }
    let text = std::fs::read_to_string(path).map_err(|source| ReportError::Read { path: path.to_owned(), source })?;
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<T>(line) {
            Ok(v) => each(v),
            // A process killed at the end of the run may leave its last line partial.
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => {
                tracing::warn!(path = %path.display(), line = i + 1, "partial last line skipped");
            }
            Err(e) => {
                return Err(ReportError::Json { path: path.to_owned(), line: i as u64 + 1, message: e.to_string() })
            }
        }
    }
    Ok(true)
}

/// Reads every node's replication records under `nodes_dir`; `None` when no node has any.
pub fn read(nodes_dir: &Path) -> Result<Option<ReplicationData>, ReportError> {
    let Ok(entries) = std::fs::read_dir(nodes_dir) else { return Ok(None) };
    let mut dirs: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    let mut data = ReplicationData::default();
    let mut any = false;
    for dir in dirs {
        any |= jsonl(&dir.join("replication.jsonl"), |line: Line| match line {
            Line::Replicated { key, bytes, deleted, delay_s } => data.copies.push((key, bytes, deleted, delay_s)),
            Line::Violation { key, cause, reason, at_ms } => {
                data.violations.push(Violation { key, cause, reason, at_ms })
            }
            Line::Repair { repairs } => {
                for (kind, n) in repairs {
                    *data.repairs.entry(kind).or_default() += n;
                }
            }
        })?;
        let cost = &mut data.cost;
        any |= jsonl(&dir.join("invocations.jsonl"), |i: InvocationLine| {
            cost.invocations += 1;
            cost.failed += u64::from(!i.ok);
            cost.gb_seconds += i.gb_seconds;
            cost.requests += i.requests;
            cost.egress_bytes += i.egress_bytes;
            cost.total_usd += i.cost;
        })?;
        any |= jsonl(&dir.join("deadletter.jsonl"), |_: serde_json::Value| cost.dead_letters += 1)?;
    }
    Ok(any.then_some(data))
}

/// Nearest-rank percentile of sorted `xs` (not empty).
pub(crate) fn pct(xs: &[f64], q: f64) -> f64 {
    let idx = ((q * xs.len() as f64).ceil() as usize).clamp(1, xs.len()) - 1;
    xs[idx]
}

fn delay(mut xs: Vec<f64>) -> Option<Delay> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    Some(Delay {
        count: xs.len(),
        p50: pct(&xs, 0.5),
        p99: pct(&xs, 0.99),
        max: xs[xs.len() - 1],
        mean: xs.iter().sum::<f64>() / xs.len() as f64,
    })
}

/// The size class of an object of `bytes`.
pub fn size_class(bytes: u64) -> &'static str {
    const MIB: u64 = 1 << 20;
    if bytes < MIB {
        "< 1 MiB"
    } else if bytes < 128 * MIB {
        "1 MiB – 128 MiB"
    } else {
        ">= 128 MiB"
    }
}

impl ReplicationSummary {
    /// The section's figures.
    pub fn of(d: &ReplicationData) -> ReplicationSummary {
        let timed: Vec<f64> = d.copies.iter().filter_map(|c| c.3).collect();
        let mut by_size: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for (_, bytes, deleted, delay_s) in &d.copies {
            if let (false, Some(t)) = (deleted, delay_s) {
                by_size.entry(size_class(*bytes).to_owned()).or_default().push(*t);
            }
        }
        let mut violations_by_cause: BTreeMap<String, usize> = BTreeMap::new();
        for v in &d.violations {
            *violations_by_cause.entry(v.cause.clone()).or_default() += 1;
        }
        let late = violations_by_cause.get("delay").copied().unwrap_or(0);
        ReplicationSummary {
            objects_replicated: d.copies.len(),
            deletes: d.copies.iter().filter(|c| c.2).count(),
            bytes: d.copies.iter().map(|c| c.1).sum(),
            slo_attainment: (!timed.is_empty()).then(|| 1.0 - late.min(timed.len()) as f64 / timed.len() as f64),
            delay_s: delay(timed),
            delay_by_size_s: by_size.into_iter().filter_map(|(k, xs)| Some((k, delay(xs)?))).collect(),
            slo_violations: d.violations.len(),
            violations_by_cause,
            violations: d.violations.iter().take(LISTED_VIOLATIONS).cloned().collect(),
            repairs: d.repairs.clone(),
            cost: d.cost.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::node_file as write;

    #[test]
    fn no_records_no_section() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "writer", "verdict.json", "{}");
        assert_eq!(read(dir.path()).unwrap(), None);
    }

    #[test]
    fn records_are_summarized() {
        let dir = tempfile::tempdir().unwrap();
        let mut lines = String::new();
        for i in 1..=100 {
            lines.push_str(&format!(
                "{{\"record\":\"replicated\",\"key\":\"k{i}\",\"seq\":{i},\"bytes\":1000,\"written_ms\":1,\"done_ms\":2,\"delay_s\":{},\"region\":\"a\",\"instances\":1,\"predicted_s\":0.1}}\n",
                f64::from(i) / 100.0
            ));
        }
        lines.push_str("{\"record\":\"replicated\",\"key\":\"big\",\"seq\":1,\"bytes\":200000000,\"delay_s\":3.0}\n");
        lines.push_str(
            "{\"record\":\"replicated\",\"key\":\"d\",\"seq\":1,\"bytes\":0,\"deleted\":true,\"delay_s\":null}\n",
        );
        lines.push_str("{\"record\":\"violation\",\"key\":\"big\",\"seq\":1,\"at_ms\":5,\"cause\":\"plan\",\"reason\":\"needs 3 s\"}\n");
        lines.push_str("{\"record\":\"violation\",\"key\":\"big\",\"seq\":1,\"at_ms\":6,\"cause\":\"delay\",\"reason\":\"late\"}\n");
        lines.push_str("{\"record\":\"repair\",\"at_ms\":7,\"repairs\":{\"unseen\":1,\"orphans\":0,\"corrected\":0,\"drifted\":2}}\n");
        lines.push_str("{\"record\":\"repair\",\"at_ms\":8,\"repairs\":{\"unseen\":0,\"orphans\":0,\"corrected\":1,\"drifted\":1}}\n");
        write(dir.path(), "replicator", "replication.jsonl", &lines);
        let inv = "{\"ok\":true,\"gb_seconds\":0.5,\"requests\":2,\"egress_bytes\":1000,\"cost\":0.001}\n\
                   {\"ok\":false,\"gb_seconds\":0.25,\"requests\":1,\"egress_bytes\":0,\"cost\":0.0005}\n";
        write(dir.path(), "fn-a", "invocations.jsonl", inv);
        write(
            dir.path(),
            "fn-b",
            "invocations.jsonl",
            "{\"ok\":true,\"gb_seconds\":1,\"requests\":3,\"egress_bytes\":5,\"cost\":0.002}\n{\"ok\":tr",
        );
        write(dir.path(), "fn-b", "deadletter.jsonl", "{\"attempts\":3}\n");
        let s = ReplicationSummary::of(&read(dir.path()).unwrap().unwrap());
        assert_eq!((s.objects_replicated, s.deletes, s.bytes), (102, 1, 100_000 + 200_000_000));
        let d = s.delay_s.unwrap();
        assert_eq!((d.count, d.p50, d.p99, d.max), (101, 0.51, 1.0, 3.0));
        assert_eq!(s.delay_by_size_s["< 1 MiB"].count, 100);
        assert_eq!(s.delay_by_size_s[">= 128 MiB"].p50, 3.0);
        assert_eq!(s.slo_violations, 2);
        assert_eq!(s.violations_by_cause, BTreeMap::from([("delay".into(), 1), ("plan".into(), 1)]));
        assert!((s.slo_attainment.unwrap() - (1.0 - 1.0 / 101.0)).abs() < 1e-12);
        assert_eq!(s.repairs["drifted"], 3);
        assert_eq!(s.repairs["unseen"], 1);
        assert_eq!(
            (s.cost.invocations, s.cost.failed, s.cost.dead_letters),
            (3, 1, 1),
            "the partial last line is skipped"
        );
        assert_eq!((s.cost.requests, s.cost.egress_bytes), (6, 1005));
        assert!((s.cost.total_usd - 0.0035).abs() < 1e-12 && (s.cost.gb_seconds - 1.75).abs() < 1e-12);
    }

    #[test]
    fn a_malformed_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "r", "replication.jsonl", "{\"record\":\"replicated\"}\n{}\n");
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("replication.jsonl:1"), "{err}");
    }
}
