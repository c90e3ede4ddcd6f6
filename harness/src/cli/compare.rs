//! `diorama compare A B [--thresholds FILE] [--out DIR]`: compare run B against run A.

use std::path::PathBuf;

use super::Failure;
use crate::compare::{CompareError, Thresholds};
use crate::exit;

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
        Some(file) => Thresholds::load(file).map_err(|e| anyhow::Error::new(e).context(Failure::new(exit::INVALID_INPUT, "invalid thresholds")))?,
        None => Thresholds::default(),
    };
    let comparison = crate::compare::compare(&args.a, &args.b, &th).map_err(|e| {
        let code = match &e {
            CompareError::Run { source, .. } if !source.is_bad_input() => exit::ENVIRONMENT,
            CompareError::Run { .. } | CompareError::DifferentTopologies { .. } => exit::INVALID_INPUT,
            _ => exit::ENVIRONMENT,
        };
        anyhow::Error::new(e).context(Failure::new(code, "failed to compare the runs"))
    })?;
    let out = args.out.clone().unwrap_or_else(|| args.b.clone());
    std::fs::create_dir_all(&out).map_err(|e| anyhow::Error::new(e).context(Failure::new(exit::ENVIRONMENT, format!("create {}", out.display()))))?;
    let written = comparison.write_json(&out).and_then(|()| comparison.write_html(&out));
    written.map_err(|e| anyhow::Error::new(e).context(Failure::new(exit::ENVIRONMENT, "failed to write the comparison")))?;
    for k in &comparison.checks {
        println!(
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
        println!("{:<4} {:<30} error {:>8.4}  threshold {:.4}  {}", s.0, s.1.name, s.1.mare, s.1.threshold, if s.1.pass { "pass" } else { "FAIL" });
    }
    for n in &comparison.notes {
        println!("note: {n}");
    }
    for f in &comparison.failures {
        println!("FAIL: {f}");
    }
    println!("{}", out.join("compare.html").display());
    if comparison.pass {
        eprintln!("compare: pass ({} checks)", comparison.checks.len() + comparison.nodes.len() + comparison.links.len());
        Ok(exit::OK)
    } else {
        eprintln!("compare: {} threshold(s) exceeded", comparison.failures.len());
        Ok(exit::ASSERTIONS)
    }
}
