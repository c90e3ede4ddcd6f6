//! Comparison thresholds, with defaults. The harness reads them from a YAML file whose
//! errors name the file, the line and the field.

use serde::{Deserialize, Serialize};

/// Largest acceptable differences between two runs. `distance` is the tolerant KS distance
/// (the decisive check of the latency distribution: KS after either CDF may move sideways by
/// `shift` of the baseline's median, at least `shift_floor_ms`); `ks` is the plain KS
/// distance, reported but not decisive (a sub-percent shift of a narrow distribution decides
/// it); every other figure is a relative error `|B − A| / |A|` (series: see docs/reports.md).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    pub distance: f64,
    pub shift: f64,
    pub shift_floor_ms: f64,
    pub ks: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub mean: f64,
    pub throughput: f64,
    pub cpu: f64,
    pub link_util: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            distance: 0.1,
            shift: 0.02,
            shift_floor_ms: 0.05,
            ks: 0.1,
            p50: 0.05,
            p90: 0.05,
            p99: 0.10,
            mean: 0.05,
            throughput: 0.05,
            cpu: 0.10,
            link_util: 0.10,
        }
    }
}
