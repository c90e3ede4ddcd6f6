//! The replication section: what a replicator (`diorama-replica`, docs/replica.md) recorded
//! in `nodes/<node>/replication.jsonl`, its function platforms in
//! `nodes/<node>/invocations.jsonl` and `deadletter.jsonl`, and the end check in
//! `nodes/<node>/verdict.json`.
//!
//! Delays are the replicator's: from a write at the source (its event time) to the release
//! of the copy that brought the destination to that write or a later one, both read on
//! dilated node clocks, so they are virtual seconds. One copy can cover several writes of a
//! key (a batched hot key, versions overwritten before their copy started): each write is
//! one sample.
//!
//! # Design
//! The figures are computed once per replicator *system* (`lambda`, `provider`, `vm`: the
//! `system` field of the records, `lambda` when absent) and once over all of them, by the
//! same function ([`Figures::of`]). Objects fall into the three size classes,
//! `1 MiB` (up to 1 MiB), `128 MiB` (over 1 MiB, up to 128 MiB) and `1 GiB` (over 128 MiB).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ReportError;

/// The system of a record that names none (the first replicator wrote no `system`).
const DEFAULT_SYSTEM: &str = "lambda";

fn default_system() -> String {
    DEFAULT_SYSTEM.to_owned()
}

/// A write a copy covered, with its delay.
#[derive(Debug, Clone, Deserialize)]
struct WriteLine {
    seq: u64,
    delay_s: f64,
}

/// One line of `replication.jsonl` (only the fields the report uses).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
enum Line {
    Replicated {
        key: String,
        #[serde(default)]
        seq: u64,
        bytes: u64,
        #[serde(default)]
        deleted: bool,
        delay_s: Option<f64>,
        #[serde(default = "default_system")]
        system: String,
        #[serde(default)]
        writes: Vec<WriteLine>,
        #[serde(default)]
        slo_s: Option<f64>,
        #[serde(default)]
        region: Option<String>,
        #[serde(default)]
        instances: Option<u32>,
        #[serde(default)]
        via: Option<String>,
        #[serde(default)]
        wan_bytes: Option<u64>,
        #[serde(default)]
        cost_usd: Option<f64>,
    },
    Violation {
        key: String,
        cause: String,
        reason: String,
        at_ms: u64,
        #[serde(default = "default_system")]
        system: String,
        #[serde(default)]
        writes: Vec<u64>,
    },
    Repair {
        repairs: BTreeMap<String, u64>,
    },
    /// The model λReplica's planner used for a region from then on.
    Model(PlannerModel),
    /// A cost not billed per invocation: a VM's time, for example.
    Cost {
        #[serde(default = "default_system")]
        system: String,
        usd: f64,
        /// The size of the object it was charged to (none: to no copy).
        #[serde(default)]
        size: Option<u64>,
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
    #[serde(default = "default_system")]
    system: String,
    /// The object's size (none: a delete, or a record of the first platform).
    #[serde(default)]
    size: Option<u64>,
}

/// One line of `deadletter.jsonl` (only the fields the report uses).
#[derive(Debug, Clone, Deserialize)]
struct DeadLine {
    #[serde(default)]
    task: Option<DeadTask>,
}

#[derive(Debug, Clone, Deserialize)]
struct DeadTask {
    #[serde(default = "default_system")]
    system: String,
}

/// The model λReplica's planner planned a region's copies with (a `model` line; the last
/// one of a region is the one in force at the end).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannerModel {
    #[serde(default = "default_system")]
    pub system: String,
    pub at_ms: u64,
    pub region: String,
    /// Bytes per chunk (`per_chunk` is seconds per chunk).
    #[serde(default)]
    pub chunk: u64,
    pub invoke: PlannerTerm,
    pub ready: PlannerTerm,
    pub setup: PlannerTerm,
    pub per_chunk: PlannerTerm,
}

/// One term of a planner's model: I, D, S or C.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannerTerm {
    /// `configured` (too few samples yet) or `fitted` (to the measured samples).
    pub source: String,
    /// The distribution as the replicator wrote it (`kind` and its parameters).
    pub dist: serde_json::Value,
    #[serde(default)]
    pub mean_s: f64,
    /// Samples in the fit's window.
    #[serde(default)]
    pub samples: usize,
    /// Samples measured in all.
    #[serde(default)]
    pub total: u64,
}

/// A violation as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Violation {
    pub key: String,
    /// `plan` (no plan could meet the SLO), `delay` (the copy finished late) or `deadline`
    /// (the SLO passed with the write not replicated yet).
    pub cause: String,
    pub reason: String,
    pub at_ms: u64,
    #[serde(default = "default_system")]
    pub system: String,
    /// The writes (sequencers) a `deadline` violation is about.
    #[serde(default)]
    pub writes: Vec<u64>,
}

/// One released copy (or delete) as recorded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Copy {
    pub key: String,
    pub seq: u64,
    /// The object's size (0 for a delete).
    pub bytes: u64,
    pub deleted: bool,
    pub system: String,
    /// The delay of every write the copy covered (virtual s).
    pub delays: Vec<f64>,
    /// The sequencers of those writes.
    pub seqs: Vec<u64>,
    pub slo_s: Option<f64>,
    pub region: Option<String>,
    pub instances: Option<u32>,
    /// `bytes`, or the changelog operation that made it (`copy`, `move`, `concat`, `append`).
    pub via: String,
    /// Bytes that crossed between the regions for it.
    pub wan_bytes: u64,
    /// A per-object fee the replicator charged itself (a provider's replication price).
    pub cost_usd: f64,
}

/// What a platform billed, for one system.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Billed {
    pub cost: Cost,
    /// Invocation costs, and machine time charged to a copy, by the size class of their
    /// object.
    pub by_class: BTreeMap<&'static str, f64>,
}

/// Everything read from the replicators', the platforms' and the end check's records.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplicationData {
    pub copies: Vec<Copy>,
    pub violations: Vec<Violation>,
    pub repairs: BTreeMap<String, u64>,
    /// By system.
    pub billed: BTreeMap<String, Billed>,
    pub verified: Option<Verified>,
    /// The planners' model records, in the order written.
    pub planner_models: Vec<PlannerModel>,
}

/// Delay figures in virtual seconds (nearest-rank percentiles).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delay {
    pub count: usize,
    pub p50: f64,
    pub p99: f64,
    pub p9999: f64,
    pub max: f64,
    pub mean: f64,
}

/// What a system cost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// Function attempts (each billed as an invocation).
    pub invocations: u64,
    pub failed: u64,
    pub dead_letters: u64,
    pub gb_seconds: f64,
    pub requests: u64,
    pub egress_bytes: u64,
    /// What the function platforms billed.
    pub functions_usd: f64,
    /// Per-copy prices the replicator recorded (a provider's fees; a VM copy's requests and
    /// egress).
    pub fees_usd: f64,
    /// Other recorded costs (VM time).
    pub machines_usd: f64,
    pub total_usd: f64,
}

/// The figures of one size class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SizeClass {
    /// `1 MiB`, `128 MiB` or `1 GiB`.
    pub class: String,
    /// The sizes it holds, in words.
    pub range: String,
    /// Copies released (deletes are in no class).
    pub objects: usize,
    pub delay_s: Option<Delay>,
    /// Copies by the region their plan chose.
    pub regions: BTreeMap<String, usize>,
    /// Copies by their plan's number of instances.
    pub instances: BTreeMap<String, usize>,
    /// What the class's copies cost (invocations of its objects, their fees and the machine
    /// time charged to them) per copy.
    pub cost_per_object_usd: Option<f64>,
}

/// The figures of a set of copies: one system's, or all.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// Versions released as replicated (copies and deletes).
    pub objects_replicated: usize,
    pub deletes: usize,
    /// The replicated objects' sizes summed.
    pub bytes: u64,
    /// Bytes that crossed between the regions for them (less than `bytes` where a changelog
    /// hint rebuilt an object from what the destination had).
    pub wan_bytes: u64,
    /// Over every timed write; `None` when there was none.
    pub delay_s: Option<Delay>,
    pub size_classes: Vec<SizeClass>,
    /// Share of writes replicated within the SLO: timed writes within it over timed writes
    /// plus writes flagged at their deadline and never replicated. `None` without any.
    pub slo_attainment: Option<f64>,
    /// Copies by how they were made (`bytes`, `copy`, `move`, `concat`, `append`).
    pub via: BTreeMap<String, usize>,
    /// Writes a copy covered beyond its first: writes satisfied without a copy of their own
    /// (batching, or overwrites made while a copy was pending).
    #[serde(default)]
    pub writes_coalesced: usize,
    pub cost: Cost,
    /// Total cost over copies released; `None` without any.
    pub cost_per_object_usd: Option<f64>,
}

/// The end check's verdict (`verdict.json` of the writer or the verify role).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Verified {
    pub source_objects: u64,
    /// Objects whose bytes and ETag at the destination equal the source's.
    pub equal: u64,
    pub mismatched: u64,
    /// The first ten mismatches, as the check worded them.
    pub examples: Vec<String>,
}

/// The replication section of summary.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicationSummary {
    /// Over every system's records.
    #[serde(flatten)]
    pub all: Figures,
    /// The same figures per system (`lambda`, `provider`, `vm`).
    pub by_system: BTreeMap<String, Figures>,
    pub slo_violations: usize,
    /// Violations by cause (`plan`, `delay`, `deadline`).
    pub violations_by_cause: BTreeMap<String, usize>,
    /// The first 100 violations, in the order recorded.
    pub violations: Vec<Violation>,
    /// What reconciliation scans repaired, summed by kind.
    pub repairs: BTreeMap<String, u64>,
    /// Objects verified equal at the end; `None` when no node left a verdict.
    pub verified: Option<Verified>,
    /// By region, the model λReplica's planner used last (configured or fitted, with its
    /// sample counts); empty when none was recorded.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub planner: BTreeMap<String, PlannerModel>,
    /// Model records written (a region's model changed that often, at most once a second).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub planner_updates: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
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

fn copy_of(line: Line) -> Option<Copy> {
    let Line::Replicated {
        key,
        seq,
        bytes,
        deleted,
        delay_s,
        system,
        writes,
        slo_s,
        region,
        instances,
        via,
        wan_bytes,
        cost_usd,
    } = line
    else {
        return None;
    };
    let (seqs, mut delays): (Vec<u64>, Vec<f64>) = writes.iter().map(|w| (w.seq, w.delay_s)).unzip();
    // A record of the first replicator: the replicated version's own delay, one write.
    if writes.is_empty() {
        delays.extend(delay_s);
    }
    delays.retain(|d| d.is_finite());
    Some(Copy {
        key,
        seq,
        bytes,
        deleted,
        system,
        delays,
        seqs,
        slo_s,
        region,
        instances,
        via: via.unwrap_or_else(|| "bytes".into()),
        wan_bytes: wan_bytes.unwrap_or(if deleted { 0 } else { bytes }),
        cost_usd: cost_usd.filter(|c| c.is_finite()).unwrap_or(0.0),
    })
}

/// Reads every node's replication records under `nodes_dir`; `None` when no node has any.
pub fn read(nodes_dir: &Path) -> Result<Option<ReplicationData>, ReportError> {
    let Ok(entries) = std::fs::read_dir(nodes_dir) else { return Ok(None) };
    let mut dirs: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    let mut data = ReplicationData::default();
    let mut any = false;
    for dir in &dirs {
        any |= jsonl(&dir.join("replication.jsonl"), |line: Line| match line {
            Line::Violation { key, cause, reason, at_ms, system, writes } => {
                data.violations.push(Violation { key, cause, reason, at_ms, system, writes })
            }
            Line::Repair { repairs } => {
                for (kind, n) in repairs {
                    *data.repairs.entry(kind).or_default() += n;
                }
            }
            Line::Model(m) => data.planner_models.push(m),
            Line::Cost { system, usd, size } => {
                let usd = if usd.is_finite() { usd } else { 0.0 };
                let b = data.billed.entry(system).or_default();
                b.cost.machines_usd += usd;
                // A VM's time charged to a copy counts in that copy's size class.
                if let Some(size) = size {
                    *b.by_class.entry(size_class(size).0).or_default() += usd;
                }
            }
            replicated => data.copies.extend(copy_of(replicated)),
        })?;
        let billed = &mut data.billed;
        any |= jsonl(&dir.join("invocations.jsonl"), |i: InvocationLine| {
            let b = billed.entry(i.system).or_default();
            b.cost.invocations += 1;
            b.cost.failed += u64::from(!i.ok);
            b.cost.gb_seconds += i.gb_seconds;
            b.cost.requests += i.requests;
            b.cost.egress_bytes += i.egress_bytes;
            b.cost.functions_usd += i.cost;
            if let Some(size) = i.size {
                *b.by_class.entry(size_class(size).0).or_default() += i.cost;
            }
        })?;
        any |= jsonl(&dir.join("deadletter.jsonl"), |d: DeadLine| {
            let system = d.task.map_or_else(default_system, |t| t.system);
            billed.entry(system).or_default().cost.dead_letters += 1;
        })?;
    }
    if any {
        data.verified = verdicts(&dirs)?;
    }
    Ok(any.then_some(data))
}

/// The end checks' verdicts (`verdict.json`: the writer's `{"written", "verdict": {…}}` or
/// the verify role's `{…}`), summed over the nodes that left one.
fn verdicts(dirs: &[std::path::PathBuf]) -> Result<Option<Verified>, ReportError> {
    let mut out: Option<Verified> = None;
    for dir in dirs {
        let path = dir.join("verdict.json");
        if !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|source| ReportError::Read { path: path.clone(), source })?;
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| ReportError::Json {
            path: path.clone(),
            line: e.line() as u64,
            message: e.to_string(),
        })?;
        let v = value.get("verdict").unwrap_or(&value);
        let field = |name: &str| {
            v.get(name).and_then(serde_json::Value::as_u64).ok_or_else(|| ReportError::JsonField {
                path: path.clone(),
                field: name.to_owned(),
                message: "missing or not a count".into(),
            })
        };
        let mismatched: Vec<String> = v
            .get("mismatched")
            .and_then(serde_json::Value::as_array)
            .map(|a| a.iter().map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_owned)).collect())
            .unwrap_or_default();
        let sum = out.get_or_insert_with(Verified::default);
        sum.source_objects += field("source_objects")?;
        sum.equal += field("equal")?;
        sum.mismatched += mismatched.len() as u64;
        sum.examples.extend(mismatched.into_iter().take(10usize.saturating_sub(sum.examples.len())));
    }
    Ok(out)
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
        p9999: pct(&xs, 0.9999),
        max: xs[xs.len() - 1],
        mean: xs.iter().sum::<f64>() / xs.len() as f64,
    })
}

/// The size classes of the issue, in order: name and the sizes each holds.
pub const SIZE_CLASSES: [(&str, &str); 3] =
    [("1 MiB", "up to 1 MiB"), ("128 MiB", "over 1 MiB, up to 128 MiB"), ("1 GiB", "over 128 MiB")];

/// The size class of an object of `bytes`: its name and range.
pub fn size_class(bytes: u64) -> (&'static str, &'static str) {
    const MIB: u64 = 1 << 20;
    match bytes {
        b if b <= MIB => SIZE_CLASSES[0],
        b if b <= 128 * MIB => SIZE_CLASSES[1],
        _ => SIZE_CLASSES[2],
    }
}

impl Figures {
    /// The figures of `copies`, with what `billed` charged for them and the `deadline`
    /// violations among `violations` (flagged writes no copy covered count as misses).
    pub fn of(copies: &[&Copy], billed: &[&Billed], violations: &[&Violation]) -> Figures {
        let mut cost = Cost::default();
        let mut class_cost: BTreeMap<&str, f64> = BTreeMap::new();
        for b in billed {
            let c = &b.cost;
            cost.invocations += c.invocations;
            cost.failed += c.failed;
            cost.dead_letters += c.dead_letters;
            cost.gb_seconds += c.gb_seconds;
            cost.requests += c.requests;
            cost.egress_bytes += c.egress_bytes;
            cost.functions_usd += c.functions_usd;
            cost.machines_usd += c.machines_usd;
            for (class, usd) in &b.by_class {
                *class_cost.entry(class).or_default() += usd;
            }
        }
        for c in copies.iter().filter(|c| !c.deleted) {
            cost.fees_usd += c.cost_usd;
            *class_cost.entry(size_class(c.bytes).0).or_default() += c.cost_usd;
        }
        cost.total_usd = cost.functions_usd + cost.fees_usd + cost.machines_usd;

        let mut classes: Vec<SizeClass> = Vec::new();
        for (name, range) in SIZE_CLASSES {
            let members: Vec<&&Copy> = copies.iter().filter(|c| !c.deleted && size_class(c.bytes).0 == name).collect();
            if members.is_empty() {
                continue;
            }
            let mut regions: BTreeMap<String, usize> = BTreeMap::new();
            let mut instances: BTreeMap<String, usize> = BTreeMap::new();
            for c in &members {
                *regions.entry(c.region.clone().unwrap_or_else(|| "–".into())).or_default() += 1;
                *instances.entry(c.instances.map_or_else(|| "–".into(), |n| n.to_string())).or_default() += 1;
            }
            classes.push(SizeClass {
                class: name.to_owned(),
                range: range.to_owned(),
                objects: members.len(),
                delay_s: delay(members.iter().flat_map(|c| c.delays.iter().copied()).collect()),
                regions,
                instances,
                cost_per_object_usd: Some(class_cost.get(name).copied().unwrap_or(0.0) / members.len() as f64),
            });
        }

        // Attainment over writes: those with a known SLO, plus flagged writes never covered.
        let (mut met, mut judged) = (0usize, 0usize);
        for c in copies {
            if let Some(slo) = c.slo_s {
                judged += c.delays.len();
                met += c.delays.iter().filter(|d| **d <= slo).count();
            }
        }
        let covered: BTreeMap<(&str, &str), u64> = copies.iter().fold(BTreeMap::new(), |mut m, c| {
            let e = m.entry((c.system.as_str(), c.key.as_str())).or_insert(0);
            *e = (*e).max(c.seq);
            m
        });
        let never: BTreeSet<(&str, &str, u64)> = violations
            .iter()
            .filter(|v| v.cause == "deadline")
            .flat_map(|v| v.writes.iter().map(move |s| (v.system.as_str(), v.key.as_str(), *s)))
            .filter(|(system, key, s)| covered.get(&(*system, *key)).is_none_or(|done| done < s))
            .collect();
        judged += never.len();
        let slo_attainment = if judged > 0 {
            Some(met as f64 / judged as f64)
        } else {
            // Records without an SLO (the first replicator): 1 − late copies / timed copies.
            let timed = copies.iter().filter(|c| !c.delays.is_empty()).count();
            let late = violations.iter().filter(|v| v.cause == "delay").count();
            (timed > 0).then(|| 1.0 - late.min(timed) as f64 / timed as f64)
        };

        let mut via: BTreeMap<String, usize> = BTreeMap::new();
        for c in copies.iter().filter(|c| !c.deleted) {
            *via.entry(c.via.clone()).or_default() += 1;
        }
        let copied = copies.iter().filter(|c| !c.deleted).count();
        Figures {
            objects_replicated: copies.len(),
            deletes: copies.len() - copied,
            bytes: copies.iter().map(|c| c.bytes).sum(),
            wan_bytes: copies.iter().map(|c| c.wan_bytes).sum(),
            writes_coalesced: copies.iter().map(|c| c.seqs.len().saturating_sub(1)).sum(),
            delay_s: delay(copies.iter().flat_map(|c| c.delays.iter().copied()).collect()),
            size_classes: classes,
            slo_attainment,
            via,
            cost_per_object_usd: (copied > 0).then(|| cost.total_usd / copied as f64),
            cost,
        }
    }
}

impl ReplicationSummary {
    /// The section's figures.
    pub fn of(d: &ReplicationData) -> ReplicationSummary {
        let systems: BTreeSet<&str> = d
            .copies
            .iter()
            .map(|c| c.system.as_str())
            .chain(d.billed.keys().map(String::as_str))
            .chain(d.violations.iter().map(|v| v.system.as_str()))
            .collect();
        let by_system = systems
            .iter()
            .map(|s| {
                let copies: Vec<&Copy> = d.copies.iter().filter(|c| c.system == *s).collect();
                let billed: Vec<&Billed> = d.billed.get(*s).into_iter().collect();
                let violations: Vec<&Violation> = d.violations.iter().filter(|v| v.system == *s).collect();
                ((*s).to_owned(), Figures::of(&copies, &billed, &violations))
            })
            .collect();
        let mut violations_by_cause: BTreeMap<String, usize> = BTreeMap::new();
        for v in &d.violations {
            *violations_by_cause.entry(v.cause.clone()).or_default() += 1;
        }
        let copies: Vec<&Copy> = d.copies.iter().collect();
        let billed: Vec<&Billed> = d.billed.values().collect();
        let violations: Vec<&Violation> = d.violations.iter().collect();
        ReplicationSummary {
            all: Figures::of(&copies, &billed, &violations),
            by_system,
            slo_violations: d.violations.len(),
            violations_by_cause,
            violations: d.violations.iter().take(LISTED_VIOLATIONS).cloned().collect(),
            repairs: d.repairs.clone(),
            verified: d.verified.clone(),
            planner: final_models(&d.planner_models),
            planner_updates: d.planner_models.len(),
        }
    }
}

/// The latest model of each region (by its time, then the order written).
fn final_models(models: &[PlannerModel]) -> BTreeMap<String, PlannerModel> {
    let mut last: BTreeMap<String, PlannerModel> = BTreeMap::new();
    for m in models {
        if last.get(&m.region).is_none_or(|l| l.at_ms <= m.at_ms) {
            last.insert(m.region.clone(), m.clone());
        }
    }
    last
}

#[cfg(test)]
mod tests;
