//! The `cli` role: the API from the command line, as tables or JSON (`--json`).
//!
//! Exit codes: 0 success; 1 the server could not be reached or failed; 2 invalid input
//! (a 400 from the server, a bad task file or bad flags); 3 an illegal transition (409);
//! 4 no such task (404).

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hyper::{Method, StatusCode};

use super::api::{ResultPage, TaskPage};
use super::client::{ApiClient, ClientError};
use super::result::Figures;
use super::spec::{FieldError, TaskSpec};
use super::summary::Summary;
use super::task::{Measurement, Task, TaskType};

/// Flags of `diorama-probe cli`.
#[derive(Debug, Clone, clap::Args)]
pub struct CliArgs {
    /// The server.
    #[arg(long, env = "DIORAMA_PROBE_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: CliCommand,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum CliCommand {
    /// Tasks: create, list, get, cancel.
    #[command(subcommand)]
    Task(TaskCommand),
    /// A task's results (filter by location and sequence number).
    Results {
        id: u64,
        #[arg(long)]
        location: Option<String>,
        #[arg(long)]
        seq: Option<u64>,
    },
    /// RTT tables and the per-agent-kind breakdown over all results (or one task's).
    Summary {
        #[arg(long)]
        task: Option<u64>,
    },
    /// Agents the server has heard from.
    Agents,
    /// The API's request rate and latency.
    Stats,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum TaskCommand {
    /// Creates tasks from flags or from a task file (`--file`).
    Create(Box<CreateArgs>),
    List {
        #[arg(long)]
        state: Option<String>,
        #[arg(long = "type")]
        kind: Option<String>,
        #[arg(long)]
        location: Option<String>,
        #[arg(long, default_value_t = 1)]
        page: usize,
        #[arg(long, default_value_t = 50)]
        per_page: usize,
    },
    Get {
        id: u64,
    },
    Cancel {
        id: u64,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct CreateArgs {
    /// A YAML task file with a `tasks:` list (docs/probes.md).
    #[arg(long, conflicts_with_all = ["kind", "measurement"])]
    pub file: Option<PathBuf>,
    #[arg(long = "type", required_unless_present = "file")]
    pub kind: Option<String>,
    /// ping, traceroute, http, dns or exec.
    #[arg(long, required_unless_present = "file")]
    pub measurement: Option<String>,
    #[arg(long = "endpoint", value_delimiter = ',')]
    pub endpoints: Vec<String>,
    #[arg(long = "location", value_delimiter = ',')]
    pub locations: Vec<String>,
    #[arg(long)]
    pub interval: Option<String>,
    #[arg(long)]
    pub start_time: Option<String>,
    #[arg(long)]
    pub stop_time: Option<String>,
    #[arg(long)]
    pub cron: Option<String>,
    /// ping: packets per run.
    #[arg(long)]
    pub count: Option<u32>,
    /// traceroute: the TTL limit.
    #[arg(long)]
    pub max_hops: Option<u32>,
    /// http: the path.
    #[arg(long)]
    pub path: Option<String>,
    /// http: the port.
    #[arg(long)]
    pub port: Option<u16>,
    /// exec: the command line (`{endpoint}` is replaced), after `--`.
    #[arg(last = true)]
    pub argv: Vec<String>,
}

/// A CLI failure with its exit code.
#[derive(Debug)]
pub struct CliFailure {
    pub code: i32,
    pub lines: Vec<String>,
}

impl CliFailure {
    fn usage(lines: Vec<String>) -> Self {
        Self { code: 2, lines }
    }
}

impl From<ClientError> for CliFailure {
    fn from(e: ClientError) -> Self {
        match e.status() {
            Some((StatusCode::BAD_REQUEST, body)) => Self { code: 2, lines: field_lines(body, "") },
            Some((StatusCode::CONFLICT, body)) => {
                Self { code: 3, lines: vec![body["error"].as_str().unwrap_or("conflict").to_owned()] }
            }
            Some((StatusCode::NOT_FOUND, body)) => {
                Self { code: 4, lines: vec![body["error"].as_str().unwrap_or("not found").to_owned()] }
            }
            _ => Self { code: 1, lines: vec![e.to_string()] },
        }
    }
}

fn field_errors(body: &serde_json::Value) -> Vec<FieldError> {
    serde_json::from_value(body["errors"].clone()).unwrap_or_default()
}

fn field_lines(body: &serde_json::Value, prefix: &str) -> Vec<String> {
    let errors = field_errors(body);
    if errors.is_empty() {
        return vec![body.to_string()];
    }
    errors.iter().map(|e| format!("{prefix}{}: {}", e.field, e.message)).collect()
}

/// Runs one CLI command, printing its output; `Err` carries the exit code and the lines
/// to print after `error: `.
pub async fn run(args: CliArgs) -> Result<(), CliFailure> {
    let client = ApiClient::new(&args.server, Duration::from_secs(30));
    match &args.command {
        CliCommand::Task(TaskCommand::Create(c)) => create(&client, c, args.json).await,
        CliCommand::Task(TaskCommand::List { state, kind, location, page, per_page }) => {
            let mut query = vec![format!("page={page}"), format!("per_page={per_page}")];
            for (k, v) in [("state", state), ("type", kind), ("location", location)] {
                if let Some(v) = v {
                    query.push(format!("{k}={}", encode(v)));
                }
            }
            let page: TaskPage = client.call(Method::GET, &format!("/v1/tasks?{}", query.join("&")), None).await?;
            if args.json {
                print_json(&page);
            } else {
                print_tasks(&page.tasks);
                println!("page {} of {} tasks ({} per page)", page.page, page.total, page.per_page);
            }
            Ok(())
        }
        CliCommand::Task(TaskCommand::Get { id }) => {
            let task: Task = client.call(Method::GET, &format!("/v1/tasks/{id}"), None).await?;
            show_task(&task, args.json);
            Ok(())
        }
        CliCommand::Task(TaskCommand::Cancel { id }) => {
            let task: Task = client.call(Method::POST, &format!("/v1/tasks/{id}/cancel"), None).await?;
            show_task(&task, args.json);
            Ok(())
        }
        CliCommand::Results { id, location, seq } => {
            let mut query = Vec::new();
            if let Some(l) = location {
                query.push(format!("location={}", encode(l)));
            }
            if let Some(s) = seq {
                query.push(format!("seq={s}"));
            }
            let page: ResultPage =
                client.call(Method::GET, &format!("/v1/tasks/{id}/results?{}", query.join("&")), None).await?;
            if args.json {
                print_json(&page);
            } else {
                print_results(&page);
            }
            Ok(())
        }
        CliCommand::Summary { task } => {
            let path = match task {
                Some(t) => format!("/v1/summary?task={t}"),
                None => "/v1/summary".to_owned(),
            };
            let summary: Summary = client.call(Method::GET, &path, None).await?;
            if args.json {
                print_json(&summary);
            } else {
                print_summary(&summary);
            }
            Ok(())
        }
        CliCommand::Agents => {
            let v: serde_json::Value = client.call(Method::GET, "/v1/agents", None).await?;
            if args.json {
                print_json(&v);
            } else {
                let rows: Vec<Vec<String>> = v["agents"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|x| {
                                ["name", "location", "kind", "jobs_taken", "last_seen"]
                                    .iter()
                                    .map(|k| x[k].as_str().map_or_else(|| x[k].to_string(), str::to_owned))
                                    .collect()
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                print_table(&["AGENT", "LOCATION", "KIND", "JOBS", "LAST SEEN"], &rows);
            }
            Ok(())
        }
        CliCommand::Stats => {
            let v: serde_json::Value = client.call(Method::GET, "/v1/stats", None).await?;
            print_json(&v);
            Ok(())
        }
    }
}

fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn create(client: &ApiClient, c: &CreateArgs, json: bool) -> Result<(), CliFailure> {
    if let Some(path) = &c.file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliFailure { code: 2, lines: vec![format!("read {}: {e}", path.display())] })?;
        let file = super::taskfile::load(path, &text)
            .map_err(|errors| CliFailure::usage(errors.iter().map(ToString::to_string).collect()))?;
        let mut created = Vec::new();
        for (i, spec) in file.specs.iter().enumerate() {
            let body = serde_json::to_value(spec).unwrap_or_default();
            match client.call::<Task>(Method::POST, "/v1/tasks", Some(&body)).await {
                Ok(t) => created.push(t),
                Err(e) => {
                    if let Some((StatusCode::BAD_REQUEST, body)) = e.status() {
                        let mut lines: Vec<String> =
                            file.locate(i, &field_errors(body)).iter().map(ToString::to_string).collect();
                        if !created.is_empty() {
                            lines.push(format!(
                                "tasks created before this one: {:?}",
                                created.iter().map(|t| t.id).collect::<Vec<_>>()
                            ));
                        }
                        return Err(CliFailure::usage(lines));
                    }
                    return Err(e.into());
                }
            }
        }
        if json {
            print_json(&created);
        } else {
            print_tasks(&created);
        }
        return Ok(());
    }
    let spec = spec_from_flags(c)?;
    let body = serde_json::to_value(&spec).unwrap_or_default();
    let task: Task = client.call(Method::POST, "/v1/tasks", Some(&body)).await?;
    show_task(&task, json);
    Ok(())
}

fn spec_from_flags(c: &CreateArgs) -> Result<TaskSpec, CliFailure> {
    let mut errors = Vec::new();
    let kind = c.kind.as_deref().and_then(TaskType::parse);
    if kind.is_none() {
        errors.push(format!(
            "type: unknown type {:?} (ONE-OFF, RECURRING, ONE-OFF-SCHEDULED, RECURRING-SCHEDULED)",
            c.kind.as_deref().unwrap_or("")
        ));
    }
    let measurement = match c.measurement.as_deref() {
        Some("ping") => Some(Measurement::Ping { count: c.count.unwrap_or(3) }),
        Some("traceroute") => Some(Measurement::Traceroute { max_hops: c.max_hops.unwrap_or(16) }),
        Some("http") => Some(Measurement::Http { path: c.path.clone().unwrap_or_else(|| "/".into()), port: c.port }),
        Some("dns") => Some(Measurement::Dns),
        Some("exec") => Some(Measurement::Exec { argv: c.argv.clone() }),
        other => {
            errors.push(format!(
                "measurement: unknown measurement {:?} (ping, traceroute, http, dns, exec)",
                other.unwrap_or("")
            ));
            None
        }
    };
    let mut time = |field: &str, v: &Option<String>| -> Option<DateTime<Utc>> {
        let text = v.as_deref()?;
        match text.parse::<DateTime<Utc>>() {
            Ok(t) => Some(t),
            Err(e) => {
                errors.push(format!("{field}: {text:?} is not an RFC 3339 time: {e}"));
                None
            }
        }
    };
    let start_time = time("start_time", &c.start_time);
    let stop_time = time("stop_time", &c.stop_time);
    match (kind, measurement) {
        (Some(kind), Some(measurement)) if errors.is_empty() => Ok(TaskSpec {
            kind,
            measurement,
            endpoints: c.endpoints.clone(),
            locations: c.locations.clone(),
            interval: c.interval.clone(),
            start_time,
            stop_time,
            cron: c.cron.clone(),
        }),
        _ => Err(CliFailure::usage(errors)),
    }
}

fn print_json<T: serde::Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn show_task(task: &Task, json: bool) {
    if json {
        print_json(task);
    } else {
        print_tasks(std::slice::from_ref(task));
    }
}

fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(header.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        line(row.clone());
    }
}

fn print_tasks(tasks: &[Task]) {
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            let runs: u64 = t.tally.values().map(|l| l.ok_runs + l.failed_runs).sum();
            let failed: u64 = t.tally.values().map(|l| l.failed_runs).sum();
            vec![
                t.id.to_string(),
                t.kind.as_str().to_owned(),
                t.state.as_str().to_owned(),
                t.measurement.name().to_owned(),
                t.endpoints.join(","),
                t.locations.join(","),
                format!("{runs} ({failed} failed)"),
                t.next_fire.map_or_else(|| "-".to_owned(), |f| f.to_rfc3339()),
            ]
        })
        .collect();
    print_table(&["ID", "TYPE", "STATE", "MEASUREMENT", "ENDPOINTS", "LOCATIONS", "RUNS", "NEXT FIRE"], &rows);
}

fn figure(f: Option<&Figures>) -> String {
    match f {
        Some(Figures::Ping(p)) => match p.rtt_avg_ms {
            Some(avg) => format!("rtt avg {avg:.3} ms, loss {}%", p.loss_pct),
            None => format!("loss {}%", p.loss_pct),
        },
        Some(Figures::Traceroute(t)) => {
            format!("{} hops{}", t.hops.len(), if t.reached { "" } else { ", not reached" })
        }
        Some(Figures::Http(h)) => {
            format!("HTTP {} connect {:.3} ms total {:.3} ms", h.status, h.connect_ms, h.total_ms)
        }
        Some(Figures::Dns { addresses, lookup_ms }) => format!("{} in {lookup_ms:.3} ms", addresses.join(" ")),
        Some(Figures::Exec { exit_code }) => format!("exit {exit_code:?}"),
        None => "-".into(),
    }
}

fn print_results(page: &ResultPage) {
    let mut rows = Vec::new();
    for r in &page.results {
        if r.endpoints.is_empty() {
            rows.push(vec![
                r.task_id.to_string(),
                r.location.clone(),
                r.seq.to_string(),
                r.agent.clone().unwrap_or_else(|| "-".into()),
                "-".into(),
                "FAILED".into(),
                r.error.clone().unwrap_or_default(),
            ]);
        }
        for e in &r.endpoints {
            rows.push(vec![
                r.task_id.to_string(),
                r.location.clone(),
                r.seq.to_string(),
                r.agent.clone().unwrap_or_else(|| "-".into()),
                e.endpoint.clone(),
                if e.ok { "ok".into() } else { "FAILED".into() },
                e.error.clone().unwrap_or_else(|| figure(e.figures.as_ref())),
            ]);
        }
    }
    print_table(&["TASK", "LOCATION", "SEQ", "AGENT", "ENDPOINT", "STATUS", "FIGURES"], &rows);
}

fn print_summary(s: &Summary) {
    println!("{} runs, {} failed", s.runs, s.failed_runs);
    let rows: Vec<Vec<String>> = s
        .rtt
        .iter()
        .map(|c| {
            vec![
                c.location.clone(),
                c.endpoint.clone(),
                c.measurement.clone(),
                c.samples.to_string(),
                format!("{:.3}", c.median_ms),
                format!("{:.3}", c.p90_ms),
                c.failed_runs.to_string(),
            ]
        })
        .collect();
    print_table(&["LOCATION", "ENDPOINT", "MEASUREMENT", "SAMPLES", "MEDIAN MS", "P90 MS", "FAILED"], &rows);
    let rows: Vec<Vec<String>> = s
        .kinds
        .iter()
        .map(|k| {
            vec![
                k.kind.clone(),
                k.runs.to_string(),
                format!("{:.1}", k.startup_ms_mean),
                format!("{:.1}", k.exec_ms_mean),
                format!("{:.1}", k.teardown_ms_mean),
                format!("{:.1}", k.response_ms_mean),
                format!("{:.1}", k.response_ms_p99),
            ]
        })
        .collect();
    if !rows.is_empty() {
        println!();
        print_table(&["KIND", "RUNS", "STARTUP MS", "EXEC MS", "TEARDOWN MS", "RESPONSE MEAN", "RESPONSE P99"], &rows);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::args::{Args, Role};
    use crate::probe::fixture::{server, Served};
    use chrono::TimeDelta;
    use clap::Parser;

    /// `diorama-probe cli --server URL ARGS…`, parsed.
    fn cli(url: &str, args: &[&str]) -> CliArgs {
        let base = ["diorama-probe", "cli", "--server", url];
        let argv = base.iter().chain(args).map(|s| (*s).to_owned());
        match Args::try_parse_from(argv).unwrap().role {
            Role::Cli(c) => c,
            other => panic!("not the cli: {other:?}"),
        }
    }

    #[tokio::test]
    async fn bad_tasks_get_the_api_s_field_messages_from_the_cli() {
        let dir = tempfile::tempdir().unwrap();
        let served = Served::start(server(dir.path(), 60_000).await).await;
        let c = served.client();
        let at = |minutes: i64| (super::super::server::now() + TimeDelta::minutes(minutes)).to_rfc3339();
        let (start, stop, early) = (at(60), at(120), at(30));
        let cron = ["--type", "RECURRING-SCHEDULED", "--measurement", "ping", "--start-time", &start];
        for (flags, field) in [
            (vec!["--endpoint", "ep", "--location", "eu", "--stop-time", &stop, "--cron", "61 * * * *"], "cron"),
            (vec!["--endpoint", "ep", "--location", "eu", "--stop-time", &early, "--cron", "* * * * *"], "stop_time"),
            (
                vec!["--endpoint", "ep", "--location", "eu,mars", "--stop-time", &stop, "--cron", "* * * * *"],
                "locations[1]",
            ),
            (vec!["--location", "eu", "--stop-time", &stop, "--cron", "* * * * *"], "endpoints"),
        ] {
            let args = cli(&served.url, &[&["task", "create"][..], &cron, &flags].concat());
            // What the API answers for the task these flags make …
            let CliCommand::Task(TaskCommand::Create(create)) = &args.command else { panic!("{args:?}") };
            let body = serde_json::to_value(spec_from_flags(create).unwrap()).unwrap();
            let err = c.call::<Task>(Method::POST, "/v1/tasks", Some(&body)).await.unwrap_err();
            let (status, answer) = err.status().unwrap();
            assert_eq!(status, StatusCode::BAD_REQUEST);
            let api: Vec<String> = field_errors(answer).iter().map(ToString::to_string).collect();
            assert!(api.len() == 1 && api[0].starts_with(&format!("{field}: ")), "{api:?}");
            // … is what the CLI prints, line for line, exiting 2.
            let failure = run(args).await.unwrap_err();
            assert_eq!((failure.code, failure.lines), (2, api));
        }
        let page: TaskPage = c.call(Method::GET, "/v1/tasks", None).await.unwrap();
        assert_eq!(page.total, 0, "nothing bad was created");
    }

    #[tokio::test]
    async fn task_files_get_file_line_errors_from_the_cli_and_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let served = Served::start(server(dir.path(), 60_000).await).await;
        let path = dir.path().join("tasks.yaml");
        let p = path.to_str().unwrap();
        let create = |path: &str| run(cli(&served.url, &["task", "create", "--file", path]));
        // Only the server knows the locations: its 400 is mapped back onto the file.
        let good = "tasks:\n  - type: ONE-OFF\n    measurement: {kind: dns}\n    endpoints: [a]\n    locations: [eu]\n";
        std::fs::write(&path, format!("{good}  - type: ONE-OFF\n    measurement: {{kind: dns}}\n    endpoints: [a]\n    locations: [eu, mars]\n")).unwrap();
        let f = create(p).await.unwrap_err();
        assert_eq!(f.code, 2);
        assert_eq!(
            f.lines,
            [
                format!("{p}:9:21: tasks[1].locations[1]: unknown location \"mars\" (known: eu, us)"),
                "tasks created before this one: [1]".to_owned()
            ]
        );
        // A malformed file is refused before anything is sent: its shape …
        std::fs::write(&path, format!("{good}    colour: red\n")).unwrap();
        let f = create(p).await.unwrap_err();
        assert_eq!(f.code, 2);
        assert_eq!(f.lines.len(), 1);
        assert!(f.lines[0].starts_with(&format!("{p}:6:5: tasks[0].colour: unknown field")), "{:?}", f.lines);
        // … and its content, every problem with its line.
        std::fs::write(
            &path,
            "tasks:\n  - type: RECURRING\n    measurement: {kind: dns}\n    endpoints: []\n    locations: [eu]\n    interval: 0s\n",
        )
        .unwrap();
        let f = create(p).await.unwrap_err();
        assert_eq!(f.code, 2);
        assert_eq!(
            f.lines,
            [
                format!("{p}:4:5: tasks[0].endpoints: must list at least one endpoint"),
                format!("{p}:6:5: tasks[0].interval: must be positive"),
            ]
        );
        let page: TaskPage = served.client().call(Method::GET, "/v1/tasks", None).await.unwrap();
        assert_eq!(page.total, 1, "only the first task of the first file");
    }

    #[tokio::test]
    async fn illegal_transitions_unknown_tasks_and_a_missing_server_have_their_exit_codes() {
        let dir = tempfile::tempdir().unwrap();
        let served = Served::start(server(dir.path(), 60_000).await).await;
        let url = served.url.as_str();
        let one_off =
            ["task", "create", "--type", "ONE-OFF", "--measurement", "dns", "--endpoint", "x", "--location", "eu"];
        run(cli(url, &one_off)).await.unwrap();
        run(cli(url, &["task", "cancel", "1"])).await.unwrap();
        let f = run(cli(url, &["task", "cancel", "1"])).await.unwrap_err();
        assert_eq!((f.code, f.lines), (3, vec!["cancel a task in state CANCELED: the task was canceled".to_owned()]));
        let f = run(cli(url, &["task", "get", "99"])).await.unwrap_err();
        assert_eq!((f.code, f.lines), (4, vec!["no task 99".to_owned()]));
        let f = run(cli("http://127.0.0.1:1", &["task", "list"])).await.unwrap_err();
        assert_eq!(f.code, 1, "{:?}", f.lines);
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode("ONE-OFF"), "ONE-OFF");
        assert_eq!(encode("a b&c"), "a%20b%26c");
    }

    #[test]
    fn flag_errors_name_the_field() {
        let c = CreateArgs {
            file: None,
            kind: Some("HOURLY".into()),
            measurement: Some("ping".into()),
            endpoints: vec![],
            locations: vec![],
            interval: None,
            start_time: Some("yesterday".into()),
            stop_time: None,
            cron: None,
            count: None,
            max_hops: None,
            path: None,
            port: None,
            argv: vec![],
        };
        let f = spec_from_flags(&c).unwrap_err();
        assert_eq!(f.code, 2);
        assert!(f.lines[0].starts_with("type: unknown type"));
        assert!(f.lines[1].starts_with("start_time: \"yesterday\""));
    }

    #[test]
    fn a_400_becomes_field_lines_and_exit_2() {
        let e = ClientError::Status {
            method: Method::POST,
            url: "u".into(),
            status: StatusCode::BAD_REQUEST,
            body: serde_json::json!({"error": "invalid request", "errors": [{"field": "cron", "message": "invalid"}]}),
        };
        let f = CliFailure::from(e);
        assert_eq!((f.code, f.lines), (2, vec!["cron: invalid".to_owned()]));
    }
}
