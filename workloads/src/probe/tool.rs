//! Running one measurement against one endpoint with the real tools inside the agent's node.
//!
//! # Design
//! - `ping -n -U`: `-U` makes iputils time a reply with the process's clock on receipt
//!   instead of the kernel's `SO_TIMESTAMP`; kernel timestamps are real time, which the
//!   clock shim cannot dilate, so without `-U` RTTs would mix virtual and real time.
//! - `traceroute -n`: numeric hops, so the parser needs no names.
//! - `curl -w '%{json}'`: curl's own timing phases, from its monotonic clock (dilated); or,
//!   with `--http-client builtin`, the same phases from the agent's own GET (`httpget`),
//!   which costs no process start.
//! - DNS: a lookup through the node's resolver (`/etc/hosts` in a node), timed here.
//!
//! Every tool gets a deadline; a tool that overruns is killed and the measurement fails.
//!
//! # Limitations
//! traceroute takes reply times from the kernel's `SO_TIMESTAMP`, which is real time: under
//! a TDF above 1 its per-hop RTTs are not virtual. Its hop count and addresses are.

use std::time::{Duration, Instant};

use tokio::process::Command;

use super::parse::{parse_curl, parse_ping, parse_traceroute};
use super::result::{EndpointResult, Figures};
use super::task::Measurement;

/// Which client an agent's HTTP measurements use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum HttpClient {
    /// A `curl` process per GET.
    #[default]
    Curl,
    /// The agent's own GET (`httpget`): no process start.
    Builtin,
}

/// Runs `measurement` against `endpoint`, giving up after `deadline`.
pub async fn measure(
    measurement: &Measurement,
    endpoint: &str,
    deadline: Duration,
    http: HttpClient,
) -> EndpointResult {
    let started = Instant::now();
    let mut result = match measurement {
        Measurement::Ping { count } => {
            let count = count.to_string();
            let wait = "2";
            let out = run(&["ping", "-n", "-U", "-c", &count, "-i", "0.2", "-W", wait, endpoint], deadline).await;
            tool_result(endpoint, out, |text| {
                let stats = parse_ping(text).map_err(|e| e.to_string())?;
                let ok = stats.received > 0;
                Ok((ok, Figures::Ping(stats)))
            })
        }
        Measurement::Traceroute { max_hops } => {
            let hops = max_hops.to_string();
            let out = run(&["traceroute", "-n", "-q", "3", "-w", "2", "-m", &hops, endpoint], deadline).await;
            tool_result(endpoint, out, |text| {
                let trace = parse_traceroute(text).map_err(|e| e.to_string())?;
                Ok((trace.reached, Figures::Traceroute(trace)))
            })
        }
        Measurement::Http { path, port } if http == HttpClient::Builtin => {
            let timing = super::httpget::get(endpoint, port.unwrap_or(80), path, deadline).await;
            let ok = timing.exit_code == 0 && timing.status > 0;
            EndpointResult {
                endpoint: endpoint.to_owned(),
                ok,
                error: timing
                    .error
                    .clone()
                    .filter(|_| !ok)
                    .or_else(|| (!ok).then(|| format!("no answer from {endpoint}"))),
                raw: serde_json::to_string(&timing).unwrap_or_default(),
                figures: Some(Figures::Http(timing)),
                duration_ms: 0.0,
            }
        }
        Measurement::Http { path, port } => {
            let url = match port {
                Some(p) => format!("http://{endpoint}:{p}{path}"),
                None => format!("http://{endpoint}{path}"),
            };
            let max = format!("{:.3}", deadline.as_secs_f64());
            let out =
                run(&["curl", "-s", "-o", "/dev/null", "--max-time", &max, "-w", "%{json}", &url], deadline).await;
            // curl prints its JSON also when it fails (non-zero exit): parse it regardless.
            let out = out.map(|o| Output { success: true, ..o });
            tool_result(endpoint, out, |text| {
                let timing = parse_curl(text).map_err(|e| e.to_string())?;
                let ok = timing.exit_code == 0 && timing.status > 0;
                Ok((ok, Figures::Http(timing)))
            })
        }
        Measurement::Dns => {
            let t0 = Instant::now();
            match tokio::time::timeout(deadline, tokio::net::lookup_host((endpoint, 0))).await {
                Ok(Ok(addrs)) => {
                    let addresses: Vec<String> = addrs.map(|a| a.ip().to_string()).collect();
                    let lookup_ms = t0.elapsed().as_secs_f64() * 1e3;
                    EndpointResult {
                        endpoint: endpoint.to_owned(),
                        ok: !addresses.is_empty(),
                        error: None,
                        raw: addresses.join(" "),
                        figures: Some(Figures::Dns { addresses, lookup_ms }),
                        duration_ms: 0.0,
                    }
                }
                Ok(Err(e)) => failed(endpoint, format!("look up {endpoint}: {e}"), String::new()),
                Err(_) => failed(endpoint, format!("look up {endpoint}: no answer within {deadline:?}"), String::new()),
            }
        }
        Measurement::Exec { argv } => {
            let argv: Vec<String> = argv.iter().map(|a| a.replace("{endpoint}", endpoint)).collect();
            let args: Vec<&str> = argv.iter().map(String::as_str).collect();
            let out = run(&args, deadline).await;
            match out {
                Ok(o) => EndpointResult {
                    endpoint: endpoint.to_owned(),
                    ok: o.success,
                    error: (!o.success).then(|| format!("{}: {}", args[0], o.ended)),
                    raw: o.text,
                    figures: Some(Figures::Exec { exit_code: o.code }),
                    duration_ms: 0.0,
                },
                Err(e) => failed(endpoint, e, String::new()),
            }
        }
    };
    result.duration_ms = started.elapsed().as_secs_f64() * 1e3;
    result
}

struct Output {
    success: bool,
    code: Option<i32>,
    /// How the tool ended: `exit code 2`, `killed by signal 9`.
    ended: String,
    /// Standard output, then standard error when there is any.
    text: String,
}

/// How a process ended, for error messages.
fn ended(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "ended with an unknown status".to_owned(),
    }
}

async fn run(argv: &[&str], deadline: Duration) -> Result<Output, String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("empty command".into());
    };
    let child = Command::new(program).args(args).stdin(std::process::Stdio::null()).kill_on_drop(true).output();
    match tokio::time::timeout(deadline, child).await {
        Ok(Ok(out)) => {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            if !out.stderr.is_empty() {
                text.push_str(&String::from_utf8_lossy(&out.stderr));
            }
            Ok(Output { success: out.status.success(), code: out.status.code(), ended: ended(out.status), text })
        }
        Ok(Err(e)) => Err(format!("run {program}: {e}")),
        Err(_) => Err(format!("{program} did not finish within {deadline:?}")),
    }
}

fn tool_result(
    endpoint: &str,
    out: Result<Output, String>,
    parse: impl FnOnce(&str) -> Result<(bool, Figures), String>,
) -> EndpointResult {
    match out {
        Err(e) => failed(endpoint, e, String::new()),
        Ok(o) => match parse(&o.text) {
            Ok((ok, figures)) => EndpointResult {
                endpoint: endpoint.to_owned(),
                ok: ok && o.success,
                error: (!(ok && o.success)).then(|| format!("no answer from {endpoint} ({})", o.ended)),
                raw: o.text,
                figures: Some(figures),
                duration_ms: 0.0,
            },
            // The tool's end says why it printed nothing to parse (a signal, a usage error).
            Err(e) => failed(endpoint, format!("{e} ({})", o.ended), o.text),
        },
    }
}

fn failed(endpoint: &str, error: String, raw: String) -> EndpointResult {
    EndpointResult {
        endpoint: endpoint.to_owned(),
        ok: false,
        error: Some(error),
        raw,
        figures: None,
        duration_ms: 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dns_of_localhost() {
        let r = measure(&Measurement::Dns, "localhost", Duration::from_secs(5), HttpClient::Curl).await;
        assert!(r.ok, "{r:?}");
        assert!(matches!(r.figures, Some(Figures::Dns { ref addresses, .. }) if !addresses.is_empty()));
    }

    #[tokio::test]
    async fn exec_substitutes_the_endpoint_and_reports_the_exit_code() {
        let m = Measurement::Exec { argv: vec!["sh".into(), "-c".into(), "echo {endpoint}; exit 3".into()] };
        let r = measure(&m, "ep7", Duration::from_secs(5), HttpClient::Curl).await;
        assert!(!r.ok);
        assert_eq!(r.raw.trim(), "ep7");
        assert_eq!(r.figures, Some(Figures::Exec { exit_code: Some(3) }));
    }

    #[tokio::test]
    async fn a_tool_s_end_is_in_the_error() {
        let m = Measurement::Exec { argv: vec!["sh".into(), "-c".into(), "kill -9 $$".into()] };
        let r = measure(&m, "x", Duration::from_secs(5), HttpClient::Curl).await;
        assert_eq!(r.error.as_deref(), Some("sh: killed by signal 9"), "{r:?}");
        let silent = Output { success: false, code: None, ended: "killed by signal 11".into(), text: String::new() };
        let r = tool_result("ep", Ok(silent), |t| {
            parse_ping(t).map(|p| (true, Figures::Ping(p))).map_err(|e| e.to_string())
        });
        let error = r.error.unwrap_or_default();
        assert!(error.starts_with("parse ping output") && error.ends_with("(killed by signal 11)"), "{error}");
    }

    #[tokio::test]
    async fn an_overrunning_tool_fails() {
        let m = Measurement::Exec { argv: vec!["sleep".into(), "5".into()] };
        let r = measure(&m, "x", Duration::from_millis(100), HttpClient::Curl).await;
        assert!(!r.ok && r.error.as_deref().is_some_and(|e| e.contains("did not finish")), "{r:?}");
    }

    #[tokio::test]
    async fn a_missing_tool_fails_with_its_name() {
        let m = Measurement::Exec { argv: vec!["no-such-tool-here".into()] };
        let r = measure(&m, "x", Duration::from_secs(1), HttpClient::Curl).await;
        assert!(r.error.as_deref().is_some_and(|e| e.contains("no-such-tool-here")), "{r:?}");
    }
}
