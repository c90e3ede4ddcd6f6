//! `diorama compare A B [--thresholds FILE] [--out DIR]`: compare run B against run A.

use std::path::PathBuf;

use report::compare::Thresholds;

use super::exit;
use crate::Error;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The reference run's results directory.
    pub a: PathBuf,
    /// The results directory compared against it.
    pub b: PathBuf,
    /// A YAML file of thresholds (fields ks, p50, p90, p99, mean, throughput, cpu, link_util).
    #[arg(long)]
    pub thresholds: Option<PathBuf>,
    /// Where compare.json and compare.html go (default: B).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let th = match &args.thresholds {
        Some(file) => crate::thresholds::load(file).map_err(Error::ThresholdsFile)?,
        None => Thresholds::default(),
    };
    let comparison = report::compare::compare(&args.a, &args.b, &th).map_err(Error::Compare)?;
    let out = args.out.clone().unwrap_or_else(|| args.b.clone());
    std::fs::create_dir_all(&out)
        .map_err(|e| Error::CompareOutput { what: format!("create {}", out.display()), source: Box::new(e) })?;
    let written = comparison.write_json(&out).and_then(|()| comparison.write_html(&out));
    written.map_err(|e| Error::CompareOutput { what: "failed to write the comparison".into(), source: Box::new(e) })?;
    for k in &comparison.checks {
        super::out!(
            "{:<11} {:>12} {:>12}  error {:>8}  threshold {:.4}  {}",
            k.name,
            k.a.map_or_else(|| "-".into(), |v| format!("{v:.3}")),
            k.b.map_or_else(|| "-".into(), |v| format!("{v:.3}")),
            k.value.map_or_else(|| "undefined".into(), |v| format!("{v:.4}")),
            k.threshold,
            if k.pass { "pass" } else { "FAIL" }
        );
    }
    for s in comparison.nodes.iter().map(|s| ("cpu", s)).chain(comparison.links.iter().map(|s| ("link", s))) {
        super::out!(
            "{:<4} {:<30} error {:>8.4}  threshold {:.4}  {}",
            s.0,
            s.1.name,
            s.1.mare,
            s.1.threshold,
            if s.1.pass { "pass" } else { "FAIL" }
        );
    }
    for n in &comparison.notes {
        super::out!("note: {n}");
    }
    for f in &comparison.failures {
        super::out!("FAIL: {f}");
    }
    super::out!("{}", out.join("compare.html").display());
    if comparison.pass {
        testbed::note!(
            "compare: pass ({} checks)",
            comparison.checks.len() + comparison.nodes.len() + comparison.links.len()
        );
        Ok(exit::OK)
    } else {
        testbed::note!("compare: {} threshold(s) exceeded", comparison.failures.len());
        Ok(exit::ASSERTIONS)
    }
}
