//! `summary.json` (results schema 1): the figures of a run, and writing the report files.

use std::collections::BTreeMap;
use std::path::Path;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::data::{analyze, FaultSummary, Fidelity, RunData};
use super::ReportError;

/// Schema version of summary.json.
pub const SCHEMA: u32 = 1;

/// The run's identity and outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub name: String,
    pub tdf: f64,
    pub success: bool,
    pub virtual_duration_s: f64,
    /// run.json's `host.cache_decay.ratio`, when the run measured it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_cache_decay: Option<f64>,
}

/// Request counts over all load generators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestCounts {
    pub total: u64,
    pub completed: u64,
    pub errors: u64,
    /// errors / total (0 when there were no requests).
    pub error_rate: f64,
}

/// Latency figures in ms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub mean: f64,
    pub max: f64,
}

/// One tier's time from the `timing` column, ms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TierLatency {
    pub p50: f64,
    pub p99: f64,
    pub mean: f64,
}

/// A node's resource use over the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeSummary {
    pub cpu_perceived_mean: f64,
    pub cpu_perceived_max: f64,
    pub memory_max_bytes: u64,
    pub throttled_ms: f64,
}

/// A link direction's use over the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkSummary {
    pub utilization_mean: f64,
    pub utilization_max: f64,
    pub drops: u64,
    pub bytes: u64,
}

/// The content of summary.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub schema: u32,
    pub run: RunSummary,
    pub fidelity: Fidelity,
    pub requests: RequestCounts,
    /// Completed requests per virtual second over the load window.
    pub throughput_rps: f64,
    pub latency_ms: Option<Latency>,
    pub latency_uncorrected_ms: Option<Latency>,
    /// `[t_virtual_s, completed, errors]` per virtual second since the run's epoch.
    pub throughput_series: Vec<(f64, u64, u64)>,
    pub tiers_ms: Option<BTreeMap<String, TierLatency>>,
    pub faults: Vec<FaultSummary>,
    pub nodes: BTreeMap<String, NodeSummary>,
    pub links: BTreeMap<String, LinkSummary>,
    /// The replicator's figures (docs/replica.md); absent when no node recorded any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<super::replication::ReplicationSummary>,
    /// The measurement probes' figures (docs/probes.md); absent when no probe server or
    /// agent wrote any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probes: Option<super::probes::ProbeSummary>,
}

/// Latency figures of a histogram of ns; `None` when it is empty.
pub fn latency_ms(h: &Histogram<u64>) -> Option<Latency> {
    if h.is_empty() {
        return None;
    }
    let ms = |v: u64| v as f64 / 1e6;
    Some(Latency {
        min: ms(h.min()),
        p50: ms(h.value_at_quantile(0.5)),
        p90: ms(h.value_at_quantile(0.9)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        mean: h.mean() / 1e6,
        max: ms(h.max()),
    })
}

fn mean(points: &[(f64, f64)]) -> f64 {
    if points.is_empty() {
        0.0
    } else {
        points.iter().map(|p| p.1).sum::<f64>() / points.len() as f64
    }
}

fn max(points: &[(f64, f64)]) -> f64 {
    points.iter().map(|p| p.1).fold(0.0, f64::max)
}

/// Longest load window (a week of seconds) whose throughput series lists every second.
const MAX_FILLED_SECONDS: i64 = 7 * 24 * 3600;

impl Summary {
    /// The summary of an analysed run.
    pub fn of(run: &RunData) -> Self {
        let req = run.requests.as_ref();
        let total = req.map_or(0, |r| r.total);
        let errors = req.map_or(0, |r| r.errors);
        let throughput_series = req
            .map(|r| {
                // Every second of the load window, zeros included: a stall shows as a gap.
                let (Some(first), Some(last)) = (r.per_second.keys().next(), r.per_second.keys().next_back()) else {
                    return Vec::new();
                };
                // A window longer than any real run comes from a bad timestamp: list the
                // seconds seen rather than allocate a zero for every second between.
                if last.saturating_sub(*first) > MAX_FILLED_SECONDS {
                    return r.per_second.iter().map(|(s, (c, e))| (*s as f64, *c, *e)).collect();
                }
                (*first..=*last)
                    .map(|s| {
                        let (c, e) = r.per_second.get(&s).copied().unwrap_or_default();
                        (s as f64, c, e)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let tiers_ms = req.filter(|r| !r.tiers.is_empty()).map(|r| {
            r.tiers
                .iter()
                .map(|(name, h)| {
                    let tier = TierLatency {
                        p50: h.value_at_quantile(0.5) as f64 / 1e3,
                        p99: h.value_at_quantile(0.99) as f64 / 1e3,
                        mean: h.mean() / 1e3,
                    };
                    (name.clone(), tier)
                })
                .collect()
        });
        Self {
            schema: SCHEMA,
            run: RunSummary {
                name: run.info.name.clone(),
                tdf: run.info.tdf,
                success: run.info.success,
                virtual_duration_s: run.info.virtual_duration_s,
                host_cache_decay: run.info.host_cache_decay,
            },
            fidelity: run.info.fidelity.clone(),
            requests: RequestCounts {
                total,
                completed: req.map_or(0, |r| r.completed),
                errors,
                error_rate: if total > 0 { errors as f64 / total as f64 } else { 0.0 },
            },
            throughput_rps: req.map_or(0.0, super::RequestStats::throughput_rps),
            latency_ms: req.and_then(|r| latency_ms(&r.corrected)),
            latency_uncorrected_ms: req.and_then(|r| latency_ms(&r.uncorrected)),
            throughput_series,
            tiers_ms,
            faults: run.faults.clone(),
            nodes: run
                .nodes
                .iter()
                .map(|(name, n)| {
                    let s = NodeSummary {
                        cpu_perceived_mean: mean(&n.cpu),
                        cpu_perceived_max: max(&n.cpu),
                        memory_max_bytes: max(&n.memory) as u64,
                        throttled_ms: n.throttled_ms,
                    };
                    (name.clone(), s)
                })
                .collect(),
            links: run
                .links
                .iter()
                .map(|(name, l)| {
                    let s = LinkSummary {
                        utilization_mean: mean(&l.utilization),
                        utilization_max: max(&l.utilization),
                        drops: l.drops,
                        bytes: l.bytes,
                    };
                    (name.clone(), s)
                })
                .collect(),
            replication: run.replication.as_ref().map(super::replication::ReplicationSummary::of),
            probes: run.probes.as_ref().map(super::probes::ProbeSummary::of),
        }
    }
}

/// Reads a results directory and returns its summary (writes nothing).
pub fn summarize(dir: &Path) -> Result<Summary, ReportError> {
    Ok(Summary::of(&analyze(dir)?))
}
