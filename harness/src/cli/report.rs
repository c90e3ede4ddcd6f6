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
    // The probe experiments' figures: runs, those missed, and the API's rate and p99 (virtual).
    for (node, p) in s.probes.iter().flat_map(|p| &p.servers) {
        line.push_str(&format!(", probes ({node}): {} runs, {} missed", p.runs.issued, p.runs.missed));
        if let Some(api) = &p.api {
            line.push_str(&format!(", API {:.1} req/s, p99 {} µs", api.request_rate_per_s, api.latency_us.p99));
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_line_carries_the_probe_figures() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("run.json"), r#"{"schema":1,"name":"probes","tdf":34.2,"success":true}"#)
            .unwrap();
        let server = dir.path().join("nodes/server");
        std::fs::create_dir_all(&server).unwrap();
        let export = serde_json::json!({
            "schema": 1,
            "tasks": [{"id": 1, "type": "RECURRING", "state": "RUNNING", "measurement": {"kind": "ping"},
                       "locations": ["a", "b"], "skipped_firings": 1, "tally": {"a": {"next_seq": 3}, "b": {"next_seq": 3}}}],
            "results": [],
            "stats": {"requests": 1200, "uptime_s": 150.0, "request_rate_per_s": 8.0,
                      "latency_us": {"count": 4, "p50": 300, "p99": 2100, "max": 2500}},
        });
        std::fs::write(server.join("probe-results.json"), export.to_string()).unwrap();
        let line = one_line(&report::summarize(dir.path()).unwrap());
        assert_eq!(line, "probes: fidelity unknown, probes (server): 4 runs, 2 missed, API 8.0 req/s, p99 2100 µs");
    }
}
