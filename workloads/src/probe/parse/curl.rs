//! `curl -s -o /dev/null -w '%{json}'` output: the transfer's timing phases.
//!
//! # Design
//! curl reports cumulative times in seconds from the start of the transfer
//! (`time_namelookup` ≤ `time_connect` ≤ `time_pretransfer` ≤ `time_starttransfer` ≤
//! `time_total`); they are kept cumulative, in milliseconds. A failed transfer still prints
//! the object, with `exitcode` and `errormsg` set.

use serde::{Deserialize, Serialize};

use super::ParseError;

/// The timing of one HTTP GET.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpTiming {
    /// The HTTP status (0 when no answer came).
    pub status: u16,
    /// curl's exit code (0 on success).
    pub exit_code: i32,
    pub error: Option<String>,
    pub namelookup_ms: f64,
    pub connect_ms: f64,
    pub pretransfer_ms: f64,
    pub starttransfer_ms: f64,
    pub total_ms: f64,
    pub size_download: u64,
    pub remote_ip: String,
}

#[derive(Deserialize)]
struct CurlJson {
    http_code: u16,
    exitcode: i32,
    errormsg: Option<String>,
    time_namelookup: f64,
    time_connect: f64,
    time_pretransfer: f64,
    time_starttransfer: f64,
    time_total: f64,
    size_download: u64,
    #[serde(default)]
    remote_ip: String,
}

/// Parses curl's `%{json}` write-out.
pub fn parse_curl(text: &str) -> Result<HttpTiming, ParseError> {
    let c: CurlJson =
        serde_json::from_str(text.trim()).map_err(|e| ParseError { tool: "curl", reason: e.to_string() })?;
    Ok(HttpTiming {
        status: c.http_code,
        exit_code: c.exitcode,
        error: c.errormsg,
        namelookup_ms: c.time_namelookup * 1e3,
        connect_ms: c.time_connect * 1e3,
        pretransfer_ms: c.time_pretransfer * 1e3,
        starttransfer_ms: c.time_starttransfer * 1e3,
        total_ms: c.time_total * 1e3,
        size_download: c.size_download,
        remote_ip: c.remote_ip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/probe/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn a_successful_get() {
        let t = parse_curl(&fixture("curl_ok.json")).unwrap();
        assert_eq!((t.status, t.exit_code, t.error.as_deref()), (200, 0, None));
        assert!(close(t.connect_ms, 0.857) && close(t.starttransfer_ms, 3.902) && close(t.total_ms, 3.979), "{t:?}");
        assert!(t.namelookup_ms <= t.connect_ms && t.connect_ms <= t.pretransfer_ms && t.pretransfer_ms <= t.total_ms);
        assert_eq!((t.size_download, t.remote_ip.as_str()), (675, "10.77.2.2"));
    }

    #[test]
    fn a_404_is_an_answer() {
        let t = parse_curl(&fixture("curl_404.json")).unwrap();
        assert_eq!((t.status, t.exit_code), (404, 0));
    }

    #[test]
    fn a_refused_connection() {
        let t = parse_curl(&fixture("curl_refused.json")).unwrap();
        assert_eq!((t.status, t.exit_code), (0, 7));
        assert!(t.error.as_deref().is_some_and(|e| e.contains("Couldn't connect")));
    }

    #[test]
    fn not_json() {
        assert!(parse_curl("curl: (6) Could not resolve host").is_err());
    }
}
