//! DieCast's three-way experiment: the same topology run as
//! - **baseline**: TDF 1 with the full resources (the "real" system, where the host holds it);
//! - **scaled**: TDF t with resources ÷ t (diorama's scale model);
//! - **naive**: TDF 1 with resources ÷ t: plain multiplexing, CPU quotas and link rates
//!   divided by t, link delays unchanged, no clock dilation.
//!
//! Scaled and naive are compared with the baseline ([`report::compare`]); scaled should match,
//! naive should not.
//!
//! # Limitations
//! The baseline must fit the host at TDF 1; `validate` refuses topologies that do not
//! rather than running an overcommitted baseline that would prove nothing.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde::Serialize;

use crate::experiment::{Experiment, Overrides};
use crate::pipeline::{self, Environment, Ran, Watch};
use crate::Error;

/// Schema version of `validate.json`.
pub const SCHEMA: u32 = 1;

/// What to validate.
#[derive(Debug, Clone)]
pub struct Options {
    pub file: PathBuf,
    pub tdf: f64,
    pub out: PathBuf,
    pub thresholds: report::compare::Thresholds,
    pub duration: Option<String>,
    pub headroom: Option<f64>,
    /// Reuse this baseline run directory instead of running the baseline.
    pub baseline: Option<PathBuf>,
}

/// One of the three runs.
#[derive(Debug, Clone, Serialize)]
pub struct Leg {
    pub name: &'static str,
    /// TDF the nodes' clocks ran at.
    pub run_tdf: f64,
    /// What CPU quotas and link rates were divided by.
    pub resources_divided_by: f64,
    pub results_dir: PathBuf,
    pub success: Option<bool>,
    pub reason: String,
    pub real_s: Option<f64>,
    /// Whether this run was made now or reused (`--baseline`).
    pub reused: bool,
    pub fidelity: Option<serde_json::Value>,
    /// The host's cache decay over the run (run.json `host.cache_decay.ratio`; measured at
    /// TDF ≥ 2 only): CPU-bound figures of a leg run on a host whose caches forget in real
    /// time read slow by up to this much (docs/fidelity.md, "Cache decay").
    pub host_cache_decay: Option<f64>,
}

/// One comparison against the baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Against {
    pub pass: bool,
    pub failures: Vec<String>,
    pub compare_dir: PathBuf,
    /// compare.json as written.
    pub comparison: serde_json::Value,
}

/// `validate.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Validation {
    pub schema: u32,
    pub topology: PathBuf,
    pub tdf: f64,
    pub thresholds: serde_json::Value,
    pub legs: Vec<Leg>,
    pub scaled: Option<Against>,
    pub naive: Option<Against>,
    /// `scaled matches the baseline; naive does not`, …
    pub verdict: String,
    /// Scaled is within the thresholds.
    pub pass: bool,
}

fn baseline_overrides(o: &Options) -> Overrides {
    Overrides { tdf: Some(1.0), duration: o.duration.clone(), headroom: o.headroom, ..Overrides::default() }
}

/// Loads the three experiments; refuses a baseline that does not fit this host.
pub fn prepare(o: &Options) -> Result<[Option<Experiment>; 3], Error> {
    if !(o.tdf.is_finite() && o.tdf > 1.0) {
        return Err(Error::Usage(format!("--tdf {}: validation needs a TDF above 1", o.tdf)));
    }
    let baseline = match &o.baseline {
        Some(dir) => {
            if !dir.join("run.json").is_file() {
                return Err(Error::Usage(format!(
                    "--baseline {}: not a results directory (no run.json)",
                    dir.display()
                )));
            }
            None
        }
        None => Some(Experiment::load(&o.file, &baseline_overrides(o)).map_err(|e| match e {
            Error::Plan { .. } => Error::BaselineTooBig { file: o.file.clone(), plan: Box::new(e) },
            other => other,
        })?),
    };
    let scaled = Experiment::load(&o.file, &Overrides { tdf: Some(o.tdf), ..baseline_overrides(o) })?;
    let naive = Experiment::load(&o.file, &Overrides { tdf: Some(o.tdf), ..baseline_overrides(o) })?.into_naive();
    Ok([baseline, Some(scaled), Some(naive)])
}

fn leg(name: &'static str, run_tdf: f64, divided: f64, ran: Result<Ran, Error>, dir: &Path) -> (Leg, bool) {
    let summary = |d: &Path| {
        std::fs::read_to_string(d.join("summary.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
    };
    match ran {
        Ok(r) => {
            let ok = r.summary.is_ok();
            let reason = match &r.summary {
                Ok(_) => r.outcome.reason.clone(),
                Err(e) => {
                    tracing::warn!(dir = %r.results_dir.display(), error = %e, "no summary of the run");
                    format!("{}; no summary: {e}", r.outcome.reason)
                }
            };
            let sum = summary(&r.results_dir);
            let fid = sum.as_ref().and_then(|v| v.get("fidelity").cloned());
            let decay = sum.as_ref().and_then(|v| v.pointer("/run/host_cache_decay")).and_then(|v| v.as_f64());
            (
                Leg {
                    name,
                    run_tdf,
                    resources_divided_by: divided,
                    results_dir: r.results_dir,
                    success: Some(r.outcome.success),
                    reason,
                    real_s: Some(r.real_s),
                    reused: false,
                    fidelity: fid,
                    host_cache_decay: decay,
                },
                ok,
            )
        }
        Err(e) => (
            Leg {
                name,
                run_tdf,
                resources_divided_by: divided,
                results_dir: dir.to_owned(),
                success: None,
                reason: crate::error::chain(&e),
                real_s: None,
                reused: false,
                fidelity: None,
                host_cache_decay: None,
            },
            false,
        ),
    }
}

fn against(baseline: &Path, run: &Path, th: &report::compare::Thresholds, out: &Path) -> Against {
    match pipeline::compare_runs(baseline, run, th, out) {
        Ok(c) => Against {
            pass: c.pass,
            failures: c.failures.clone(),
            compare_dir: out.to_owned(),
            comparison: serde_json::to_value(&c).unwrap_or_default(),
        },
        Err(e) => Against {
            pass: false,
            failures: vec![format!("comparison failed: {e}")],
            compare_dir: out.to_owned(),
            comparison: serde_json::Value::Null,
        },
    }
}

/// Runs the three legs and the two comparisons; writes `validate.json` into `o.out`.
pub fn run(
    o: &Options,
    experiments: [Option<Experiment>; 3],
    env: &Environment,
    interrupt: &AtomicBool,
) -> Result<Validation, Error> {
    std::fs::create_dir_all(&o.out).map_err(|e| Error::Files(format!("create {}: {e}", o.out.display())))?;
    let [baseline, scaled, naive] = experiments;
    let mut legs = Vec::new();
    let mut usable = Vec::new();
    let base_dir = match (&o.baseline, baseline) {
        (Some(dir), _) => {
            let dir = dir.canonicalize().unwrap_or_else(|_| dir.clone());
            if !dir.join("summary.json").is_file() {
                report::write(&dir).map_err(|e| Error::Files(format!("summarize {}: {e}", dir.display())))?;
            }
            let view = crate::suite::assess::RunView::read(&dir).map_err(Error::Files)?;
            if view.run.tdf.is_some_and(|t| (t - 1.0).abs() > 1e-9) {
                return Err(Error::Usage(format!(
                    "--baseline {}: ran at TDF {:?}, not 1",
                    dir.display(),
                    view.run.tdf
                )));
            }
            legs.push(Leg {
                name: "baseline",
                run_tdf: 1.0,
                resources_divided_by: 1.0,
                results_dir: dir.clone(),
                success: view.run.success,
                reason: "reused".into(),
                real_s: None,
                reused: true,
                fidelity: view.fidelity.as_ref().and_then(|f| serde_json::to_value(f).ok()),
                host_cache_decay: None,
            });
            usable.push(true);
            dir
        }
        (None, Some(e)) => {
            testbed::note!("== baseline: TDF 1, full resources");
            let dir = o.out.join("baseline");
            let (l, ok) =
                leg("baseline", 1.0, 1.0, pipeline::execute_in(&e, &dir, env, &Watch::default(), interrupt), &dir);
            let d = l.results_dir.clone();
            legs.push(l);
            usable.push(ok);
            d
        }
        (None, None) => return Err(Error::Internal("no baseline experiment".into())),
    };
    for (name, e, run_tdf) in [("scaled", scaled, o.tdf), ("naive", naive, 1.0)] {
        let Some(e) = e else { continue };
        if interrupt.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        testbed::note!(
            "== {name}: TDF {run_tdf}, resources ÷ {}{}",
            o.tdf,
            if name == "naive" { " (no dilation, delays unchanged)" } else { "" }
        );
        let dir = o.out.join(name);
        let (l, ok) =
            leg(name, run_tdf, o.tdf, pipeline::execute_in(&e, &dir, env, &Watch::default(), interrupt), &dir);
        legs.push(l);
        usable.push(ok);
    }
    let compare = |i: usize, name: &str| -> Option<Against> {
        (usable.first() == Some(&true) && usable.get(i) == Some(&true))
            .then(|| against(&base_dir, &legs[i].results_dir, &o.thresholds, &o.out.join(format!("compare-{name}"))))
    };
    let scaled = compare(1, "scaled");
    let naive = compare(2, "naive");
    let verdict = match (&scaled, &naive) {
        (Some(s), Some(n)) => format!(
            "scaled {} the baseline; naive {} it{}",
            if s.pass { "matches" } else { "does NOT match" },
            if n.pass { "also matches" } else { "does not match" },
            match (s.pass, n.pass) {
                (true, false) => " (as expected: dilation is what makes the scale model faithful)",
                (true, true) => " (this workload does not tell dilation from plain multiplexing)",
                _ => "",
            }
        ),
        (Some(s), None) => format!(
            "scaled {} the baseline; naive could not be compared",
            if s.pass { "matches" } else { "does NOT match" }
        ),
        _ => "the baseline or scaled run failed; nothing to compare".into(),
    };
    let v = Validation {
        schema: SCHEMA,
        topology: o.file.clone(),
        tdf: o.tdf,
        thresholds: serde_json::to_value(o.thresholds).unwrap_or_default(),
        legs,
        pass: scaled.as_ref().is_some_and(|s| s.pass),
        scaled,
        naive,
        verdict,
    };
    let json = serde_json::to_vec_pretty(&v).map_err(|e| Error::Internal(e.to_string()))?;
    std::fs::write(o.out.join("validate.json"), json)
        .map_err(|e| Error::Files(format!("write {}/validate.json: {e}", o.out.display())))?;
    Ok(v)
}

impl Validation {
    /// The printed verdict.
    pub fn text(&self) -> String {
        let mut out = format!("validate {} at TDF {}\n", self.topology.display(), crate::pipeline::tdf_text(self.tdf));
        for l in &self.legs {
            let fid = l.fidelity.as_ref().and_then(|f| f.get("verdict")).and_then(|v| v.as_str()).unwrap_or("-");
            out.push_str(&format!(
                "  {:<8} TDF {:<5} resources ÷ {:<5} {:<9} fidelity {:<10} {}{}\n",
                l.name,
                l.run_tdf,
                l.resources_divided_by,
                match l.success {
                    Some(true) => "ok",
                    Some(false) => "FAILED",
                    None => "ERROR",
                },
                fid,
                l.results_dir.display(),
                l.host_cache_decay.map(|r| format!(" (host cache decay ×{r:.2})")).unwrap_or_default()
            ));
        }
        for (name, a) in [("scaled", &self.scaled), ("naive", &self.naive)] {
            if let Some(a) = a {
                out.push_str(&format!(
                    "  {name} vs baseline: {}\n",
                    if a.pass { "within thresholds" } else { "OUTSIDE thresholds" }
                ));
                for f in &a.failures {
                    out.push_str(&format!("    {f}\n"));
                }
            }
        }
        out.push_str(&format!("verdict: {}\n", self.verdict));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tdf_must_exceed_one() {
        let o = Options {
            file: "x.yaml".into(),
            tdf: 1.0,
            out: "o".into(),
            thresholds: report::compare::Thresholds::default(),
            duration: None,
            headroom: None,
            baseline: None,
        };
        let err = prepare(&o).err().unwrap();
        assert!(err.to_string().contains("above 1"), "{err}");
    }

    const TOPO: &str = "name: v\ndefaults: {cpus: 0.5, memory: 64MiB}\nswitches: [sw]\nnodes:\n  - name: a\n    run: {command: \"true\"}\n    link: {to: sw, rate: 10Mbit, delay: 5ms}\n  - name: b\n    run: {command: \"true\"}\n    link: {to: sw, rate: 10Mbit, delay: 5ms}\n";

    fn options(dir: &Path, topo: &str) -> Options {
        let file = dir.join("v.yaml");
        std::fs::write(&file, topo).unwrap();
        Options {
            file,
            tdf: 4.0,
            out: dir.join("out"),
            thresholds: report::compare::Thresholds::default(),
            duration: None,
            headroom: Some(1.0),
            baseline: None,
        }
    }

    #[test]
    fn naive_divides_resources_without_dilating() {
        let dir = tempfile::tempdir().unwrap();
        let [base, scaled, naive] = prepare(&options(dir.path(), TOPO)).unwrap();
        let (base, scaled, naive) = (base.unwrap(), scaled.unwrap(), naive.unwrap());
        assert_eq!((base.spec.tdf, scaled.spec.tdf, naive.spec.tdf), (1.0, 4.0, 1.0));
        let quota = |e: &Experiment| {
            e.spec.nodes[0].resources.cpu_quota_us.unwrap() as f64 / e.spec.nodes[0].resources.cpu_period_us as f64
        };
        assert!((quota(&base) - 0.5).abs() < 1e-3);
        assert!((quota(&scaled) - 0.125).abs() < 1e-3);
        assert!((quota(&naive) - 0.125).abs() < 1e-3, "naive keeps the scaled quota");
        // The period is virtual time: 100 ms of it is 400 ms real at TDF 4, 100 ms in the
        // baseline and in the naive run (both at TDF 1).
        let period = |e: &Experiment| e.spec.nodes[0].resources.cpu_period_us;
        assert_eq!((period(&base), period(&scaled), period(&naive)), (100_000, 400_000, 100_000));
        let link = |e: &Experiment| e.spec.network.as_ref().unwrap().links[0].forward;
        // Perceived parameters: the engine scales them by its TDF (1 for naive).
        assert_eq!(link(&scaled).rate_bps, Some(10_000_000));
        assert_eq!(link(&naive).rate_bps, Some(2_500_000));
        assert_eq!(link(&naive).delay, link(&base).delay);
        assert_eq!(naive.spec.plan["naive"]["resources_divided_by"], 4.0);
    }

    #[test]
    fn a_baseline_too_big_for_the_host_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let big = TOPO.replace("cpus: 0.5", "cpus: 4096");
        let mut o = options(dir.path(), &big);
        o.tdf = 100_000.0;
        let err = prepare(&o).err().unwrap();
        assert!(matches!(err, Error::BaselineTooBig { .. }), "{err}");
        assert!(err.to_string().contains("baseline (TDF 1, full resources)"), "{err}");
    }
}
