//! The L4 balancers' telemetry (`balancers/<name>/`, written by the emulator's core; see
//! docs/l4lb.md): each backend's slot share over time, the timeout ENSEMBLETIMEOUT chose
//! per epoch, and each backend's in-band latency estimate beside the latency the clients
//! measured over the same epochs.
//!
//! # Design
//! Every time is virtual seconds since the run's epoch, as in the rest of the report. The
//! client-measured latency is the mean over the requests that completed in each estimator
//! epoch (the estimate is an EWMA by default, which tracks a mean), from every load
//! generator's `requests.csv`; it is read only when the run has balancers.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::csvio;
use super::ReportError;

/// One balancer's series; every x is virtual seconds since the epoch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BalancerSeries {
    pub name: String,
    /// Backend → (t, share of the Maglev slots).
    pub shares: BTreeMap<String, Vec<(f64, f64)>>,
    /// (epoch end, timeout chosen for the next epoch in µs).
    pub timeouts: Vec<(f64, f64)>,
    /// Backend → (epoch end, estimate in ms).
    pub estimates: BTreeMap<String, Vec<(f64, f64)>>,
    /// (epoch end, mean client-measured latency in ms over the epoch's completions).
    pub client_ms: Vec<(f64, f64)>,
}

#[derive(Deserialize)]
struct ShareRow {
    t_virtual_ms: f64,
    backend: String,
    share: f64,
}

#[derive(Deserialize)]
struct EpochRow {
    end_virtual_ms: f64,
    chosen_timeout_us: f64,
}

#[derive(Deserialize)]
struct EstimateRow {
    t_virtual_ms: f64,
    backend: String,
    estimate_ms: Option<f64>,
}

#[derive(Deserialize)]
struct RequestRow {
    complete_ns: Option<i64>,
    latency_ns: Option<f64>,
    #[serde(default)]
    error: String,
}

/// Reads every `balancers/<name>/`; empty when the run had none. `nodes` is the results'
/// `nodes/` directory (for the clients' requests.csv), `epoch_virt_ns` the run's epoch.
pub fn read(dir: &Path, nodes: &Path, epoch_virt_ns: u64) -> Result<Vec<BalancerSeries>, ReportError> {
    let root = dir.join("balancers");
    let Ok(entries) = std::fs::read_dir(&root) else { return Ok(Vec::new()) };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let d = root.join(&name);
        let mut b = BalancerSeries { name, ..BalancerSeries::default() };
        csvio::for_each::<ShareRow>(&d.join("shares.csv"), &["t_virtual_ms", "backend", "share"], |r| {
            b.shares.entry(r.backend).or_default().push((r.t_virtual_ms / 1e3, r.share));
        })?;
        csvio::for_each::<EpochRow>(&d.join("epochs.csv"), &["end_virtual_ms", "chosen_timeout_us"], |r| {
            b.timeouts.push((r.end_virtual_ms / 1e3, r.chosen_timeout_us));
        })?;
        let mut ends = Vec::new();
        csvio::for_each::<EstimateRow>(&d.join("estimates.csv"), &["t_virtual_ms", "backend", "estimate_ms"], |r| {
            let t = r.t_virtual_ms / 1e3;
            if ends.last() != Some(&t) {
                ends.push(t);
            }
            if let Some(ms) = r.estimate_ms {
                b.estimates.entry(r.backend).or_default().push((t, ms));
            }
        })?;
        b.client_ms = client_means(nodes, epoch_virt_ns, &ends)?;
        out.push(b);
    }
    Ok(out)
}

/// The mean latency (ms) of the requests completing in each `(previous end, end]`, from
/// every `nodes/*/requests.csv`; windows without completions are left out.
fn client_means(nodes: &Path, epoch_virt_ns: u64, ends: &[f64]) -> Result<Vec<(f64, f64)>, ReportError> {
    if ends.is_empty() {
        return Ok(Vec::new());
    }
    let mut sums = vec![(0.0f64, 0u64); ends.len()];
    let Ok(entries) = std::fs::read_dir(nodes) else { return Ok(Vec::new()) };
    let mut files: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path().join("requests.csv")).collect();
    files.sort();
    let epoch = i64::try_from(epoch_virt_ns).unwrap_or(i64::MAX);
    for f in files {
        csvio::for_each::<RequestRow>(&f, &["complete_ns", "latency_ns"], |r| {
            let (Some(done), Some(lat), true) = (r.complete_ns, r.latency_ns, r.error.is_empty()) else { return };
            let t = done.saturating_sub(epoch) as f64 / 1e9;
            let i = ends.partition_point(|&e| e < t);
            if let Some(s) = sums.get_mut(i).filter(|_| i > 0) {
                s.0 += lat / 1e6;
                s.1 += 1;
            }
        })?;
    }
    Ok(ends.iter().zip(sums).filter(|(_, s)| s.1 > 0).map(|(&t, s)| (t, s.0 / s.1 as f64)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telemetry_and_client_latency_are_read_in_virtual_seconds() {
        let dir = tempfile::tempdir().unwrap();
        let b = dir.path().join("balancers/l4");
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(
            b.join("shares.csv"),
            "t_virtual_ms,backend,share,reason\n500,mc0,0.5,start\n500,mc1,0.5,start\n2001,mc1,0.4,drain\n",
        )
        .unwrap();
        std::fs::write(b.join("epochs.csv"), "end_virtual_ms,chosen_timeout_us,n_64us\n564,512,10\n").unwrap();
        std::fs::write(
            b.join("estimates.csv"),
            "t_virtual_ms,backend,estimate_ms,samples\n564,mc0,0.5,3\n564,mc1,,0\n628,mc0,0.6,3\n628,mc1,0.7,2\n",
        )
        .unwrap();
        let nodes = dir.path().join("nodes");
        std::fs::create_dir_all(nodes.join("client")).unwrap();
        let epoch = 1_000_000_000_000u64;
        let at = |ms: u64| epoch + ms * 1_000_000;
        std::fs::write(
            nodes.join("client/requests.csv"),
            format!(
                "id,complete_ns,latency_ns,error\n0,{},400000,\n1,{},800000,\n2,{},9000000,timeout\n3,{},100000,\n",
                at(600),
                at(610),
                at(620),
                at(700)
            ),
        )
        .unwrap();
        let got = read(dir.path(), &nodes, epoch).unwrap();
        assert_eq!(got.len(), 1);
        let g = &got[0];
        assert_eq!(g.name, "l4");
        assert_eq!(g.shares["mc1"], [(0.5, 0.5), (2.001, 0.4)]);
        assert_eq!(g.timeouts, [(0.564, 512.0)]);
        assert_eq!(g.estimates["mc0"], [(0.564, 0.5), (0.628, 0.6)]);
        assert_eq!(g.estimates["mc1"], [(0.628, 0.7)], "an empty estimate is no point");
        // (0.564, 0.628]: the two successful requests at 600 and 610 ms; 700 ms is past
        // the last epoch, the failed one does not count.
        assert_eq!(g.client_ms.len(), 1);
        assert!((g.client_ms[0].1 - 0.6).abs() < 1e-9, "{:?}", g.client_ms);
        assert!(read(&dir.path().join("none"), &nodes, epoch).unwrap().is_empty());
    }
}
