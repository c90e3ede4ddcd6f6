//! Two runs of one topology side by side: the figures of docs/reports.md ("Comparing
//! runs") against [`Thresholds`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::distance;
use super::ks::ks_histograms;
use super::Thresholds;
use crate::requests::cdf_points;
use crate::{analyze, ReportError, RunData};

/// Schema version of compare.json.
pub const SCHEMA: u32 = 1;

/// Below this level (5 % of a machine or of a link's rate) a series' error is taken
/// relative to this floor: an idle node's noise is not a fidelity failure.
pub const SERIES_FLOOR: f64 = 0.05;

/// Points kept of each overlaid series in compare.json.
const PLOT_POINTS: usize = 400;

/// Why two runs could not be compared.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompareError {
    #[error("read the run in {}", dir.display())]
    Run {
        dir: PathBuf,
        #[source]
        source: ReportError,
    },
    #[error("compare runs of different topologies: {} ran `{a}` but {} ran `{b}` (run.json names)", a_dir.display(), b_dir.display())]
    DifferentTopologies { a_dir: PathBuf, a: String, b_dir: PathBuf, b: String },
    #[error("write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("draw the comparison")]
    Plot(#[source] ReportError),
}

/// Which run is which.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRef {
    pub dir: PathBuf,
    pub name: String,
    pub tdf: f64,
    pub fidelity: String,
}

/// One scalar figure compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// `distance`, `ks`, `wasserstein`, `p50`, `p90`, `p99`, `mean` or `throughput`.
    pub name: String,
    /// The figure in A and in B (ms, or requests/s for throughput; none for distances).
    pub a: Option<f64>,
    pub b: Option<f64>,
    /// The distance, or the relative error |B − A| / |A|; `None` when undefined.
    pub value: Option<f64>,
    pub threshold: f64,
    /// Whether the value is within the threshold (for an informational check, only shown).
    pub pass: bool,
    /// Reported, but not part of the verdict (`ks`, `wasserstein`).
    #[serde(default)]
    pub informational: bool,
}

/// One node's CPU or one link direction's utilization over time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesCheck {
    pub name: String,
    /// Mean absolute error over the aligned grid divided by max(mean |A|, floor).
    pub mare: f64,
    pub mean_a: f64,
    pub mean_b: f64,
    /// Grid points compared.
    pub points: usize,
    pub threshold: f64,
    pub pass: bool,
}

/// Two series drawn over each other.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Overlay {
    pub name: String,
    pub a: Vec<(f64, f64)>,
    pub b: Vec<(f64, f64)>,
}

/// The result of `diorama compare`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub schema: u32,
    pub a: RunRef,
    pub b: RunRef,
    pub thresholds: Thresholds,
    pub pass: bool,
    /// One line per exceeded threshold, naming the measured value and the threshold.
    pub failures: Vec<String>,
    /// What could not be compared, and why.
    pub notes: Vec<String>,
    pub checks: Vec<Check>,
    pub nodes: Vec<SeriesCheck>,
    pub links: Vec<SeriesCheck>,
    /// Completion-time CDFs (x: ms, y: fraction).
    pub cdf: Overlay,
    /// Completed requests per virtual second.
    pub throughput: Overlay,
    /// Per node, CPU share of the perceived machine; per link direction, utilization.
    pub cpu_series: Vec<Overlay>,
    pub link_series: Vec<Overlay>,
}

fn run_ref(run: &RunData) -> RunRef {
    RunRef {
        dir: run.dir.canonicalize().unwrap_or_else(|_| run.dir.clone()),
        name: run.info.name.clone(),
        tdf: run.info.tdf,
        fidelity: run.info.fidelity.verdict.clone(),
    }
}

/// `|b − a| / |a|`; 0 when both are 0, `None` when only `a` is.
pub fn relative_error(a: f64, b: f64) -> Option<f64> {
    if a == 0.0 {
        (b == 0.0).then_some(0.0)
    } else {
        Some((b - a).abs() / a.abs())
    }
}

fn median_step(s: &[(f64, f64)]) -> Option<f64> {
    let mut d: Vec<f64> = s.windows(2).map(|w| w[1].0 - w[0].0).filter(|d| *d > 0.0).collect();
    if d.is_empty() {
        return None;
    }
    d.sort_by(f64::total_cmp);
    Some(d[d.len() / 2])
}

fn interpolate(s: &[(f64, f64)], t: f64) -> f64 {
    let i = s.partition_point(|p| p.0 < t);
    if i == 0 {
        return s[0].1;
    }
    if i >= s.len() {
        return s[s.len() - 1].1;
    }
    let (p, q) = (s[i - 1], s[i]);
    if q.0 - p.0 <= 0.0 {
        q.1
    } else {
        p.1 + (q.1 - p.1) * (t - p.0) / (q.0 - p.0)
    }
}

/// Both series on one virtual-time grid: the coarser of their sample steps, over the time
/// both cover. Returns (t, a, b) triples.
pub fn align(a: &[(f64, f64)], b: &[(f64, f64)]) -> Vec<(f64, f64, f64)> {
    let (Some(sa), Some(sb)) = (median_step(a), median_step(b)) else { return Vec::new() };
    let step = sa.max(sb);
    let start = a[0].0.max(b[0].0);
    let end = a[a.len() - 1].0.min(b[b.len() - 1].0);
    let mut out = Vec::new();
    let mut k = 0u32;
    loop {
        let t = start + f64::from(k) * step;
        if t > end + 1e-9 {
            break;
        }
        out.push((t, interpolate(a, t), interpolate(b, t)));
        k += 1;
    }
    out
}

/// Mean absolute error over the grid, relative to max(mean |A|, floor).
pub fn series_error(grid: &[(f64, f64, f64)], floor: f64) -> Option<(f64, f64, f64)> {
    if grid.is_empty() {
        return None;
    }
    let n = grid.len() as f64;
    let mae = grid.iter().map(|p| (p.2 - p.1).abs()).sum::<f64>() / n;
    let mean_a = grid.iter().map(|p| p.1.abs()).sum::<f64>() / n;
    let mean_b = grid.iter().map(|p| p.2.abs()).sum::<f64>() / n;
    Some((mae / mean_a.max(floor), mean_a, mean_b))
}

fn thin(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    crate::plot::downsample(points, PLOT_POINTS)
}

/// Compares run B against run A (the reference).
pub fn compare(a: &Path, b: &Path, th: &Thresholds) -> Result<Comparison, CompareError> {
    let ra = analyze(a).map_err(|source| CompareError::Run { dir: a.to_owned(), source })?;
    let rb = analyze(b).map_err(|source| CompareError::Run { dir: b.to_owned(), source })?;
    if ra.info.name != rb.info.name {
        return Err(CompareError::DifferentTopologies {
            a_dir: a.to_owned(),
            a: ra.info.name.clone(),
            b_dir: b.to_owned(),
            b: rb.info.name.clone(),
        });
    }
    Ok(compare_runs(&ra, &rb, th))
}

/// A latency histogram (ns) as ascending (ms, count) points.
fn weighted_ms(h: &hdrhistogram::Histogram<u64>) -> Vec<(f64, u64)> {
    h.iter_recorded().map(|v| (v.value_iterated_to() as f64 / 1e6, v.count_at_value())).collect()
}

/// Compares two analysed runs.
pub fn compare_runs(ra: &RunData, rb: &RunData, th: &Thresholds) -> Comparison {
    let mut failures = Vec::new();
    let mut notes = Vec::new();
    let mut checks = Vec::new();
    let mut cdf = Overlay { name: "completion time".into(), ..Overlay::default() };
    let mut throughput = Overlay { name: "throughput".into(), ..Overlay::default() };

    let (qa, qb) = (ra.requests.as_ref(), rb.requests.as_ref());
    let completed = |q: Option<&crate::RequestStats>| q.map_or(0, |q| q.completed);
    match (qa.filter(|q| q.completed > 0), qb.filter(|q| q.completed > 0)) {
        (Some(qa), Some(qb)) => {
            let (wa, wb) = (weighted_ms(&qa.corrected), weighted_ms(&qb.corrected));
            let shift = distance::tolerance(&wa, th.shift, th.shift_floor_ms);
            let d = shift.and_then(|h| distance::tolerant_ks(&wa, &wb, h));
            let pass = d.is_some_and(|d| d <= th.distance);
            if let (false, Some(d), Some(h)) = (pass, d, shift) {
                failures.push(format!(
                    "latency distribution: tolerant KS distance {d:.4} (CDFs allowed to shift by {h:.3} ms) exceeds threshold {:.4}",
                    th.distance
                ));
            }
            checks.push(Check {
                name: "distance".into(),
                a: None,
                b: None,
                value: d,
                threshold: th.distance,
                pass,
                informational: false,
            });
            let ks = ks_histograms(&qa.corrected, &qb.corrected);
            let ks_pass = ks.is_some_and(|d| d <= th.ks);
            checks.push(Check {
                name: "ks".into(),
                a: None,
                b: None,
                value: ks,
                threshold: th.ks,
                pass: ks_pass,
                informational: true,
            });
            // Wasserstein-1 relative to the baseline's median.
            let w1 = distance::wasserstein1(&wa, &wb)
                .zip(distance::median(&wa))
                .map(|(w, m)| if m > 0.0 { w / m } else { w });
            checks.push(Check {
                name: "wasserstein".into(),
                a: None,
                b: None,
                value: w1,
                threshold: th.p50,
                pass: w1.is_some_and(|w| w <= th.p50),
                informational: true,
            });
            let ms = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1e6;
            for (name, label, va, vb, limit) in [
                ("p50", "p50 latency", ms(&qa.corrected, 0.5), ms(&qb.corrected, 0.5), th.p50),
                ("p90", "p90 latency", ms(&qa.corrected, 0.9), ms(&qb.corrected, 0.9), th.p90),
                ("p99", "p99 latency", ms(&qa.corrected, 0.99), ms(&qb.corrected, 0.99), th.p99),
                ("mean", "mean latency", qa.corrected.mean() / 1e6, qb.corrected.mean() / 1e6, th.mean),
                ("throughput", "throughput", qa.throughput_rps(), qb.throughput_rps(), th.throughput),
            ] {
                let unit = if name == "throughput" { "req/s" } else { "ms" };
                let value = relative_error(va, vb);
                let pass = value.is_some_and(|e| e <= limit);
                match value {
                    Some(e) if !pass => failures.push(format!(
                        "{label}: relative error {e:.4} exceeds threshold {limit:.4} (A {va:.3} {unit}, B {vb:.3} {unit})"
                    )),
                    None => failures.push(format!(
                        "{label}: relative error undefined (A is 0, B {vb:.3} {unit}); threshold {limit:.4}"
                    )),
                    _ => {}
                }
                checks.push(Check {
                    name: name.into(),
                    a: Some(va),
                    b: Some(vb),
                    value,
                    threshold: limit,
                    pass,
                    informational: false,
                });
            }
            cdf.a = cdf_points(&qa.corrected, 1e-6, PLOT_POINTS);
            cdf.b = cdf_points(&qb.corrected, 1e-6, PLOT_POINTS);
            let per_second = |q: &crate::RequestStats| -> Vec<(f64, f64)> {
                thin(&q.per_second.iter().map(|(s, c)| (*s as f64 + 0.5, c.0 as f64)).collect::<Vec<_>>())
            };
            throughput.a = per_second(qa);
            throughput.b = per_second(qb);
        }
        (None, None) => {
            notes.push("neither run has completed requests: latency and throughput are not compared".into())
        }
        (sa, _) => failures.push(format!(
            "latency: only run {} has completed requests (A {}, B {}); nothing to compare against",
            if sa.is_some() { "A" } else { "B" },
            completed(qa),
            completed(qb)
        )),
    }

    let mut series = |kind: &str,
                      threshold: f64,
                      a: &BTreeMap<String, Vec<(f64, f64)>>,
                      b: &BTreeMap<String, Vec<(f64, f64)>>,
                      failures: &mut Vec<String>|
     -> (Vec<SeriesCheck>, Vec<Overlay>) {
        let mut checks = Vec::new();
        let mut overlays = Vec::new();
        for (name, sa) in a {
            let Some(sb) = b.get(name) else {
                notes.push(format!("{kind} {name}: only in run A"));
                continue;
            };
            let grid = align(sa, sb);
            let Some((mare, mean_a, mean_b)) = series_error(&grid, SERIES_FLOOR) else {
                notes.push(format!("{kind} {name}: too few samples to align ({} in A, {} in B)", sa.len(), sb.len()));
                continue;
            };
            let pass = mare <= threshold;
            if !pass {
                failures.push(format!(
                    "{kind} {name}: mean absolute relative error {mare:.4} exceeds threshold {threshold:.4} (mean A {:.1} %, B {:.1} %, over {} points)",
                    mean_a * 100.0,
                    mean_b * 100.0,
                    grid.len()
                ));
            }
            checks.push(SeriesCheck { name: name.clone(), mare, mean_a, mean_b, points: grid.len(), threshold, pass });
            overlays.push(Overlay { name: name.clone(), a: thin(sa), b: thin(sb) });
        }
        for name in b.keys().filter(|n| !a.contains_key(*n)) {
            notes.push(format!("{kind} {name}: only in run B"));
        }
        (checks, overlays)
    };
    let cpu = |r: &RunData| r.nodes.iter().map(|(n, s)| (n.clone(), s.cpu.clone())).collect::<BTreeMap<_, _>>();
    let util =
        |r: &RunData| r.links.iter().map(|(n, s)| (n.clone(), s.utilization.clone())).collect::<BTreeMap<_, _>>();
    let (nodes, cpu_series) = series("CPU of node", th.cpu, &cpu(ra), &cpu(rb), &mut failures);
    let (links, link_series) = series("utilization of link", th.link_util, &util(ra), &util(rb), &mut failures);

    Comparison {
        schema: SCHEMA,
        a: run_ref(ra),
        b: run_ref(rb),
        thresholds: *th,
        pass: failures.is_empty(),
        failures,
        notes,
        checks,
        nodes,
        links,
        cdf,
        throughput,
        cpu_series,
        link_series,
    }
}

impl Comparison {
    /// Writes compare.json into `out`.
    pub fn write_json(&self, out: &Path) -> Result<(), CompareError> {
        let path = out.join("compare.json");
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| CompareError::Write { path: path.clone(), source: e.into() })?;
        write_atomic(&path, &bytes)
    }
}

pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CompareError> {
    crate::write::atomic(path, bytes).map_err(|e| match e {
        ReportError::Write { path, source } => CompareError::Write { path, source },
        other => CompareError::Write { path: path.to_owned(), source: std::io::Error::other(other.to_string()) },
    })
}
