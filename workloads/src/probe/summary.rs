//! Figures over stored results: per-location/per-endpoint RTT tables (experiment 1) and
//! the per-agent-kind time breakdown (experiment 2).
//!
//! Medians and percentiles are of the values present (nearest rank); a table cell with no
//! successful measurement is left out rather than shown as zero.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::result::{Figures, RunResult};

/// The RTT figures of one (location, endpoint, measurement) cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RttCell {
    pub location: String,
    pub endpoint: String,
    /// `ping` (per-reply RTTs) or `http` (TCP connect time, one RTT).
    pub measurement: String,
    pub samples: usize,
    pub median_ms: f64,
    pub p90_ms: f64,
    pub failed_runs: usize,
}

/// Time breakdown of one agent kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindBreakdown {
    pub kind: String,
    pub runs: usize,
    pub wait_ms_mean: f64,
    pub startup_ms_mean: f64,
    pub exec_ms_mean: f64,
    pub teardown_ms_mean: f64,
    pub response_ms_mean: f64,
    pub response_ms_p50: f64,
    pub response_ms_p99: f64,
}

/// The summary of a set of results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub runs: usize,
    pub failed_runs: usize,
    pub rtt: Vec<RttCell>,
    pub kinds: Vec<KindBreakdown>,
}

/// Nearest-rank percentile `p` (0–100) of `values` (sorted here).
pub fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "a rank within the slice"
    )]
    let rank = ((p / 100.0) * values.len() as f64).ceil().max(1.0) as usize;
    values[rank.min(values.len()) - 1]
}

fn mean(values: &[f64]) -> f64 {
    #[expect(clippy::cast_precision_loss, reason = "counts far below 2^53")]
    let n = values.len() as f64;
    values.iter().sum::<f64>() / n
}

/// Summarizes `results`.
pub fn summarize(results: &[RunResult]) -> Summary {
    let mut cells: BTreeMap<(String, String, &'static str), (Vec<f64>, usize)> = BTreeMap::new();
    let mut kinds: BTreeMap<String, Vec<&RunResult>> = BTreeMap::new();
    for r in results {
        if let Some(kind) = r.agent_kind {
            kinds.entry(kind.as_str().to_owned()).or_default().push(r);
        }
        for e in &r.endpoints {
            let (name, values): (&'static str, Vec<f64>) = match &e.figures {
                Some(Figures::Ping(p)) => ("ping", p.rtts_ms.clone()),
                Some(Figures::Http(h)) if e.ok => ("http", vec![h.connect_ms - h.namelookup_ms]),
                Some(Figures::Http(_)) => ("http", Vec::new()),
                _ => continue,
            };
            let cell = cells.entry((r.location.clone(), e.endpoint.clone(), name)).or_default();
            cell.0.extend(values);
            if !e.ok {
                cell.1 += 1;
            }
        }
    }
    let rtt = cells
        .into_iter()
        .filter(|(_, (v, _))| !v.is_empty())
        .map(|((location, endpoint, measurement), (mut v, failed_runs))| RttCell {
            location,
            endpoint,
            measurement: measurement.to_owned(),
            samples: v.len(),
            median_ms: percentile(&mut v, 50.0),
            p90_ms: percentile(&mut v, 90.0),
            failed_runs,
        })
        .collect();
    let kinds = kinds
        .into_iter()
        .map(|(kind, rs)| {
            let pick = |f: fn(&RunResult) -> f64| rs.iter().map(|r| f(r)).collect::<Vec<f64>>();
            let mut response: Vec<f64> = rs.iter().filter_map(|r| r.response_ms).collect();
            KindBreakdown {
                kind,
                runs: rs.len(),
                wait_ms_mean: mean(&pick(|r| r.timing.wait_ms)),
                startup_ms_mean: mean(&pick(|r| r.timing.startup_ms)),
                exec_ms_mean: mean(&pick(|r| r.timing.exec_ms)),
                teardown_ms_mean: mean(&pick(|r| r.timing.teardown_ms)),
                response_ms_mean: mean(&response),
                response_ms_p50: percentile(&mut response, 50.0),
                response_ms_p99: percentile(&mut response, 99.0),
            }
        })
        .collect();
    Summary { runs: results.len(), failed_runs: results.iter().filter(|r| !r.ok).count(), rtt, kinds }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v = vec![5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(percentile(&mut v, 50.0), 3.0);
        assert_eq!(percentile(&mut v, 99.0), 5.0);
        assert_eq!(percentile(&mut v, 0.0), 1.0);
        assert!(percentile(&mut [], 50.0).is_nan());
    }
}
