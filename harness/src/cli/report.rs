//! `diorama report DIR`: (re)write summary.json and report.html of a results directory.

use std::path::PathBuf;

use super::exit;
use crate::Error;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The results directory (holds run.json).
    pub dir: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let summary = report::write(&args.dir).map_err(|source| Error::Report { dir: args.dir.clone(), source })?;
    super::out!("{}", args.dir.join("summary.json").display());
    super::out!("{}", args.dir.join("report.html").display());
    testbed::note!("{}", one_line(&summary));
    Ok(exit::OK)
}

/// Tells where the report of a run is, after `diorama run`. The report is a view of the
/// results: failing to write it is a warning and never fails the run.
pub fn announce(dir: &std::path::Path, written: &Result<report::Summary, report::ReportError>) {
    match written {
        Ok(summary) => testbed::note!("report: {} ({})", dir.join("report.html").display(), one_line(summary)),
        Err(err) => {
            let mut chain = err.to_string();
            let mut source = std::error::Error::source(err);
            while let Some(cause) = source {
                chain.push_str(": ");
                chain.push_str(&cause.to_string());
                source = cause.source();
            }
            tracing::warn!(error = %chain, "failed to write the report");
        }
    }
}

/// The summary in one line, for the terminal.
pub fn one_line(s: &report::Summary) -> String {
    let mut line = format!("{}: fidelity {}", s.run.name, s.fidelity.verdict);
    if s.requests.total > 0 {
        line.push_str(&format!(
            ", {} requests ({} errors), {:.1} req/s",
            s.requests.total, s.requests.errors, s.throughput_rps
        ));
    }
    if let Some(l) = &s.latency_ms {
        line.push_str(&format!(", latency p50 {:.3} ms, p99 {:.3} ms", l.p50, l.p99));
    }
    line
}
