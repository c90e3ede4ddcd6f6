//! The command line of `diorama-loadgen` (the binary's edge: errors are `anyhow` here).
//!
//! Everything a node runs is reachable from flags alone (`run: {workload: loadgen, args:
//! {…}}` becomes `diorama-loadgen --key value …`); the stand-alone tools `trace` and `serve`
//! are subcommands. `docs/loadgen.md` documents every flag.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand, ValueEnum};

use super::closed::{self, ClosedConfig, Think};
use super::distributed::{self, CalibrationEntry, CalibrationFile, Link, Message, PlanConfig};
use super::http::{self, Http, Target};
use super::logs;
use super::memcache::{self, Memcache, Mix};
use super::open::{self, DispatchConfig, Issuer, RateSource, Source, TraceSource};
use super::record::{self, Record, RunInfo};
use super::schedule::{self, Amplitude, Limit, Pattern, Shape};
use super::trace::{self, Event, Format};
use super::units::{duration_arg, factor_arg};
use super::Protocol;
use crate::runtime::now_unix_ns;

/// A load generator free of coordinated omission (open loop, trace replay, closed loop,
/// distributed), and its tools.
#[derive(Debug, Parser)]
#[command(name = "diorama-loadgen", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Produce traces: random ones, from request logs, or sped up / slowed down.
    #[command(subcommand)]
    Trace(TraceCommand),
    /// A trivial HTTP/1.1 server: answers every request 200 (a sink for tests and benchmarks).
    Serve(ServeArgs),
    /// Replay an object-write trace (or the IBM-COS-shaped generator's) through an S3 client.
    S3(Box<super::s3::S3Args>),
}

/// Modes of the load generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Open loop at `--rate` with an inter-arrival `--pattern`.
    Open,
    /// Open loop replaying `--trace`.
    Trace,
    /// `--clients` closed-loop clients with `--think` time.
    Closed,
}

/// The wire protocol of the requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProtocolKind {
    /// HTTP/1.1 to `--target http://host:port/path`.
    Http,
    /// memcache text protocol to `--target memcache://host:port`: `get`/`set` of keys
    /// drawn from `--key-space` with `--ratio` GET:SET (memtier_benchmark's style).
    Memcache,
}

/// Roles in distributed mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Generate load from this process.
    Standalone,
    /// Split the trace over `--workers`, start them together, gather their results.
    Controller,
    /// Wait on `--listen` for a controller's plan.
    Worker,
}

/// Flags every load-generating mode shares (`run` and `s3`): where results go, the node's
/// name, the rate-control file and the dispatcher's timing.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Directory of the result files (default: the working directory).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// This node's name in the results (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Run-time rate control file (contract: `{"rate": F}`).
    #[arg(long, default_value = "loadgen.ctl")]
    pub ctl: PathBuf,
    /// Spin on the clock for this long before each scheduled start (`0us`: sleep only).
    #[arg(long, value_parser = duration_arg, default_value = "50us")]
    pub spin: u64,
    /// A request sent later than this after its scheduled start counts as `behind`.
    #[arg(long, value_parser = duration_arg, default_value = "1ms")]
    pub behind: u64,
    /// After SIGTERM/SIGINT, wait this long for requests in flight.
    #[arg(long, value_parser = duration_arg, default_value = "1s")]
    pub drain: u64,
    /// Start this long after setting up (standalone) or after the workers are ready (controller).
    #[arg(long, value_parser = duration_arg, default_value = "1s")]
    pub start_delay: u64,
}

/// Flags of a load-generating run.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// open (default; trace when --trace is given), trace or closed.
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// standalone, controller or worker.
    #[arg(long, value_enum, default_value = "standalone")]
    pub role: Role,
    /// Target URL, `http://host:port/path`.
    #[arg(long)]
    pub target: Option<String>,
    /// Requests per second (virtual), open mode.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Stop issuing after this long (virtual): `10s`, `500ms`.
    #[arg(long, value_parser = duration_arg)]
    pub duration: Option<u64>,
    /// Stop after this many requests (open mode: in all; closed mode: over all clients).
    #[arg(long)]
    pub count: Option<u64>,
    /// Inter-arrival pattern of the open mode.
    #[arg(long, value_enum, default_value = "uniform")]
    pub pattern: Pattern,
    /// Sinusoidal amplitude A: a duration (`2ms`) or a share of the mean interval (`50%`).
    #[arg(long, value_parser = Amplitude::parse, default_value = "50%")]
    pub amplitude: Amplitude,
    /// Sinusoidal period T (default 10s), or burst period P (default k/rate).
    #[arg(long, value_parser = duration_arg)]
    pub period: Option<u64>,
    /// Burst size k (requests started together).
    #[arg(long, default_value_t = 10)]
    pub burst: u32,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Trace to replay (JSON array, JSON Lines, or CSV by extension).
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Trace replay speed: `2` or `200%` is twice as fast.
    #[arg(long, value_parser = factor_arg, default_value = "1")]
    pub speed: f64,
    /// HTTP method (default GET, or POST with a payload).
    #[arg(long)]
    pub method: Option<String>,
    /// Request body.
    #[arg(long)]
    pub payload: Option<String>,
    /// Per-request timeout (virtual).
    #[arg(long, value_parser = duration_arg, default_value = "10s")]
    pub timeout: u64,
    /// Maximum concurrent requests (= connections) of this process.
    #[arg(long, default_value_t = 256)]
    pub connections: usize,
    /// Connections opened before the start.
    #[arg(long, default_value_t = 4)]
    pub warm: usize,
    /// Closed mode: clients.
    #[arg(long, default_value_t = 1)]
    pub clients: u32,
    /// Closed mode: think time between a reply and the next request.
    #[arg(long, value_parser = duration_arg, default_value = "0s")]
    pub think: u64,
    /// Closed mode: think time distribution.
    #[arg(long, value_enum, default_value = "fixed")]
    pub think_dist: Think,
    /// Async runtime threads (1: one thread, the dispatcher has its own).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Results, control file and timing of the dispatcher (shared with `s3`).
    #[command(flatten)]
    pub common: CommonArgs,
    /// Controller: worker addresses `host:port` (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    pub workers: Vec<String>,
    /// Worker: address to listen on.
    #[arg(long, default_value = "0.0.0.0:7070")]
    pub listen: String,
    /// Worker: exit after this many controller sessions (0: until SIGTERM).
    #[arg(long, default_value_t = 0)]
    pub sessions: u32,
    /// Controller: measure each worker's median arrival latency with N probes and use it as
    /// its timeAdjustmentMs (0: off).
    #[arg(long, default_value_t = 0)]
    pub calibrate: u32,
    /// Controller: per-worker dispatch offsets, `NODE=MS` (repeatable) or `{"w0": 1.5}`.
    #[arg(long)]
    pub time_adjustment_ms: Vec<String>,
    /// Wire protocol: http (default) or memcache.
    #[arg(long, value_enum, default_value = "http")]
    pub protocol: ProtocolKind,
    /// memcache: GET:SET weights.
    #[arg(long, value_parser = memcache::parse_ratio, default_value = "1:1")]
    pub ratio: (u32, u32),
    /// memcache: number of distinct keys (`memtier-0` …).
    #[arg(long, default_value_t = 10_000)]
    pub key_space: u64,
    /// memcache: bytes of each stored value.
    #[arg(long, default_value_t = 32)]
    pub value_size: usize,
    /// Requests a connection carries before it is closed and reopened (0: keep it).
    #[arg(long, default_value_t = 0)]
    pub requests_per_connection: u32,
    /// Write `latency_series.csv` with p50/p95/p99 per window of this length (virtual);
    /// memcache runs default to 100ms.
    #[arg(long, value_parser = duration_arg)]
    pub series_interval: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum TraceCommand {
    /// A random trace in any pattern of the open mode.
    Gen(Box<GenArgs>),
    /// A trace from a request log (Common/Combined Log Format, or JSON lines).
    FromLog(FromLogArgs),
    /// A trace sped up or slowed down by a factor (`2`, `200%`, `0.5`).
    Speed(SpeedArgs),
}

#[derive(Debug, Args)]
pub struct TraceOut {
    /// Output file (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Output form (default: from the file's extension; JSON on standard output).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
}

/// Kinds of generated traces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TraceKind {
    /// HTTP requests on an open-mode schedule.
    Http,
    /// Object writes shaped like the IBM COS traces, for `diorama-loadgen s3` (`--cos-…`
    /// flags; `--rate` and `--duration` set `--cos-rate` and `--cos-duration`).
    #[value(name = "s3-cos")]
    S3Cos,
}

#[derive(Debug, Args)]
pub struct GenArgs {
    #[arg(long, value_enum, default_value = "http")]
    pub kind: TraceKind,
    #[command(flatten)]
    pub cos: super::s3::cosgen::CosParams,
    /// Requests (operations) per second; required for --kind http.
    #[arg(long)]
    pub rate: Option<f64>,
    #[arg(long, value_parser = duration_arg)]
    pub duration: Option<u64>,
    #[arg(long)]
    pub count: Option<u64>,
    #[arg(long, value_enum, default_value = "uniform")]
    pub pattern: Pattern,
    #[arg(long, value_parser = Amplitude::parse, default_value = "50%")]
    pub amplitude: Amplitude,
    #[arg(long, value_parser = duration_arg)]
    pub period: Option<u64>,
    #[arg(long, default_value_t = 10)]
    pub burst: u32,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// nodeIDs `0..N`, assigned round-robin.
    #[arg(long, default_value_t = 1)]
    pub nodes: u32,
    /// Explicit nodeIDs, assigned round-robin (overrides --nodes).
    #[arg(long, value_delimiter = ',')]
    pub node_id: Vec<String>,
    #[arg(long, default_value = "/")]
    pub endpoint: String,
    #[arg(long, default_value = "")]
    pub payload: String,
    #[arg(long)]
    pub method: Option<String>,
    #[command(flatten)]
    pub out: TraceOut,
}

#[derive(Debug, Args)]
pub struct FromLogArgs {
    /// The log file.
    #[arg(long)]
    pub input: PathBuf,
    /// Fold client addresses onto nodeIDs 0..N.
    #[arg(long)]
    pub nodes: Option<u32>,
    /// Replace every path by this endpoint.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// JSON lines: the timestamp's key.
    #[arg(long)]
    pub time_field: Option<String>,
    /// JSON lines: the client address's key.
    #[arg(long)]
    pub client_field: Option<String>,
    #[command(flatten)]
    pub out: TraceOut,
}

#[derive(Debug, Args)]
pub struct SpeedArgs {
    #[arg(long)]
    pub input: PathBuf,
    /// `2` or `200%`: twice as fast; `0.5` or `50%`: half as fast.
    #[arg(long, value_parser = factor_arg)]
    pub factor: f64,
    #[command(flatten)]
    pub out: TraceOut,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: String,
    /// Response body size in bytes.
    #[arg(long, default_value_t = 2)]
    pub body_bytes: usize,
    /// Async runtime threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

/// Runs the parsed command line.
pub fn main(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Trace(t)) => trace_tool(t),
        Some(Command::Serve(s)) => serve(&s),
        Some(Command::S3(a)) => super::s3::run(&a),
        None => run(&cli.run),
    }
}

pub(super) fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()
    };
    rt.context("start the async runtime")
}

/// Resolves once SIGTERM or SIGINT has arrived, ever: a signal seen once stays seen, so
/// every later wait (a worker between sessions) also ends.
#[derive(Clone)]
pub(super) struct Term(tokio::sync::watch::Receiver<bool>);

impl Term {
    pub(super) fn install(rt: &tokio::runtime::Runtime) -> Term {
        let (tx, rx) = tokio::sync::watch::channel(false);
        rt.spawn(async move {
            crate::runtime::shutdown_signal().await;
            tracing::info!("SIGTERM/SIGINT");
            let _ = tx.send(true);
        });
        // Let the task register its handlers before anything else runs.
        rt.block_on(tokio::task::yield_now());
        Term(rx)
    }

    pub(super) async fn wait(mut self) {
        let _ = self.0.wait_for(|t| *t).await;
    }
}

fn serve(a: &ServeArgs) -> anyhow::Result<()> {
    let addr: std::net::SocketAddr = format!("{}:{}", a.bind, a.port)
        .parse()
        .with_context(|| format!("parse bind address {}:{}", a.bind, a.port))?;
    let rt = runtime(a.threads)?;
    let term = Term::install(&rt);
    rt.block_on(http::serve(addr, Bytes::from(vec![b'x'; a.body_bytes]), term.wait()))
        .with_context(|| format!("serve on {addr}"))
}

fn node_name(a: &RunArgs) -> String {
    a.common.node_name.clone().unwrap_or_else(|| {
        nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "loadgen".into())
    })
}

fn limit(a: &RunArgs) -> Limit {
    Limit { count: a.count, duration_ns: a.duration }
}

fn shape(a: &RunArgs) -> Shape {
    Shape { pattern: a.pattern, amplitude: a.amplitude, period_ns: a.period, burst: a.burst }
}

fn method(a: &RunArgs) -> String {
    a.method.clone().map(|m| m.to_ascii_uppercase()).unwrap_or_else(|| {
        if a.payload.is_some() {
            "POST".into()
        } else {
            "GET".into()
        }
    })
}

fn target(a: &RunArgs) -> anyhow::Result<Target> {
    let url = a.target.as_deref().ok_or_else(|| anyhow!("--target URL is required (http://host:port/path)"))?;
    if a.protocol == ProtocolKind::Memcache {
        let host = url.trim().strip_prefix("memcache://").unwrap_or(url.trim());
        if host.is_empty() || host.contains('/') {
            bail!("--target {url:?}: a memcache target is memcache://host[:port]");
        }
        let authority = if host.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
            host.to_owned()
        } else {
            format!("{host}:11211")
        };
        return Ok(Target { authority, path: String::new() });
    }
    Target::parse(url).map_err(|e| anyhow!(e))
}

/// The memcache protocol and its request mix, from the flags.
fn memcache_of(a: &RunArgs) -> (Memcache, Arc<Mix>) {
    let mix = Arc::new(Mix {
        gets: a.ratio.0,
        sets: a.ratio.1,
        key_space: a.key_space,
        value: Bytes::from(vec![b'x'; a.value_size]),
        seed: a.seed,
    });
    (Memcache { requests_per_conn: a.requests_per_connection, mix: mix.clone() }, mix)
}

fn check_rate(a: &RunArgs) -> anyhow::Result<f64> {
    match a.rate {
        Some(r) if r.is_finite() && r > 0.0 => Ok(r),
        Some(r) => bail!("--rate {r}: must be a positive number of requests per second"),
        None => bail!("--rate is required in open mode"),
    }
}

fn out_dir(a: &RunArgs) -> PathBuf {
    a.common.out.clone().unwrap_or_else(|| PathBuf::from("."))
}

fn run(a: &RunArgs) -> anyhow::Result<()> {
    if a.protocol == ProtocolKind::Memcache && a.role != Role::Standalone {
        bail!("--protocol memcache runs standalone only (distributed mode replays HTTP traces)");
    }
    match a.role {
        Role::Worker => worker(a),
        Role::Controller => controller(a),
        Role::Standalone => {
            let mode = a.mode.unwrap_or(if a.trace.is_some() { Mode::Trace } else { Mode::Open });
            match (a.protocol, mode) {
                (ProtocolKind::Http, Mode::Closed) => run_closed(a, Http, None),
                (ProtocolKind::Http, Mode::Open | Mode::Trace) => run_open(a, mode, Http, None),
                (ProtocolKind::Memcache, Mode::Trace) => {
                    bail!("--protocol memcache runs in open or closed mode, not trace replay")
                }
                (ProtocolKind::Memcache, Mode::Closed) => {
                    let (p, mix) = memcache_of(a);
                    run_closed(a, p, Some(mix))
                }
                (ProtocolKind::Memcache, Mode::Open) => {
                    let (p, mix) = memcache_of(a);
                    run_open(a, mode, p, Some(mix))
                }
            }
        }
    }
}

fn info(a: &RunArgs, mode: &str, role: &str, node: &str, start_ns: i64) -> RunInfo {
    RunInfo {
        mode: mode.into(),
        role: role.into(),
        node: node.into(),
        target_rps: None,
        pattern: None,
        seed: Some(a.seed),
        rate_changes: 0,
        behind_threshold_ns: a.common.behind,
        start_ns,
    }
}

pub(super) fn finish(
    dir: &Path,
    mut records: Vec<Record>,
    info: &RunInfo,
    series_ns: Option<u64>,
) -> anyhow::Result<()> {
    let s = record::write_results(dir, &mut records, info)?;
    if let Some(interval) = series_ns {
        record::write_series(dir, &records, info.start_ns, interval)?;
    }
    let med = |x: &Option<crate::stats::Summary>| x.map(|s| s.median);
    tracing::info!(
        dir = %dir.display(),
        requests = s.requests,
        completed = s.completed,
        errors = s.errors,
        behind = s.behind,
        latency_median_us = ?med(&s.latency_us),
        dispatch_delay_median_us = ?med(&s.dispatch_delay_us),
        dispatch_rps = ?s.dispatch_rps,
        "results written"
    );
    Ok(())
}

/// Builds the source once the start instant is known.
type SourceAt = Box<dyn FnOnce(i64) -> Source>;

/// The latency series' window: `--series-interval`, or 100 ms for memcache runs.
fn series_interval(a: &RunArgs) -> Option<u64> {
    a.series_interval.or((a.protocol == ProtocolKind::Memcache).then_some(100_000_000))
}

fn run_open<P: Protocol>(a: &RunArgs, mode: Mode, proto: P, mix: Option<Arc<Mix>>) -> anyhow::Result<()> {
    let node = node_name(a);
    let rt = runtime(a.threads)?;
    let term = Term::install(&rt);
    let issuer = Arc::new(Issuer::new(proto, a.connections, Duration::from_nanos(a.timeout), node.clone()));
    let (source_of, first_authority, target_rps, pattern): (SourceAt, String, Option<f64>, Option<String>) = if mode
        == Mode::Trace
    {
        let path = a.trace.as_ref().ok_or_else(|| anyhow!("trace mode needs --trace FILE"))?;
        let events = trace::read(path)?;
        let base = a.target.as_deref().map(Target::parse).transpose().map_err(|e| anyhow!(e))?;
        let base = match base {
            Some(t) => t,
            None => {
                let first = events.iter().find(|e| !e.endpoint.starts_with("http://"));
                if let Some(e) = first {
                    bail!(
                        "trace event {} has the path endpoint {:?}: give --target http://host:port",
                        e.event_id,
                        e.endpoint
                    );
                }
                Target { authority: String::new(), path: "/".into() }
            }
        };
        let first =
            events.first().and_then(|e| base.resolve(&e.endpoint).ok()).map_or(base.authority.clone(), |t| t.authority);
        let (speed, method) = (a.speed, a.method.clone());
        let probe = TraceSource::new(events.clone(), 0, speed, 0.0, base.clone(), None);
        let rate = probe.base_rate;
        (
            Box::new(move |start| Source::Trace(TraceSource::new(events, start, speed, 0.0, base, method))),
            first,
            rate,
            None,
        )
    } else {
        let rate = check_rate(a)?;
        let t = target(a)?;
        let (sh, seed, lim, m, body) =
            (shape(a), a.seed, limit(a), method(a), Bytes::from(a.payload.clone().unwrap_or_default()));
        let auth = t.authority.clone();
        (
            Box::new(move |start| Source::Rate(RateSource::new(sh, seed, rate, lim, start, t, m, body).with_mix(mix))),
            auth,
            Some(rate),
            Some(a.pattern.to_string()),
        )
    };
    if !first_authority.is_empty() {
        let made = rt.block_on(issuer.warm(&first_authority, a.warm.min(a.connections)));
        tracing::info!(target = %first_authority, connections = made, "warmed up");
    }
    let start_ns = now_unix_ns() + a.common.start_delay.min(i64::MAX as u64) as i64;
    tracing::info!(mode = ?mode, node = %node, ?target_rps, "load starts");
    let cfg = DispatchConfig { spin_ns: a.common.spin, ctl: Some(a.common.ctl.clone()) };
    let outcome = open::run(
        &rt,
        source_of(start_ns),
        issuer.clone(),
        cfg,
        Duration::from_nanos(a.timeout),
        Duration::from_nanos(a.common.drain),
        term.wait(),
    );
    let mut i = info(a, if mode == Mode::Trace { "trace" } else { "open" }, "standalone", &node, start_ns);
    i.target_rps = target_rps;
    i.pattern = pattern;
    i.rate_changes = outcome.rate_changes;
    finish(&out_dir(a), issuer.recorder.take(), &i, series_interval(a))
}

fn run_closed<P: Protocol>(a: &RunArgs, proto: P, mix: Option<Arc<Mix>>) -> anyhow::Result<()> {
    let node = node_name(a);
    let rt = runtime(a.threads)?;
    let term = Term::install(&rt);
    let t = target(a)?;
    let issuer = Arc::new(Issuer::new(
        proto,
        a.connections.max(a.clients as usize),
        Duration::from_nanos(a.timeout),
        node.clone(),
    ));
    rt.block_on(issuer.warm(&t.authority, (a.clients as usize).min(a.connections.max(1))));
    let start_ns = now_unix_ns() + (a.common.start_delay.min(i64::MAX as u64) as i64);
    let cfg = ClosedConfig {
        clients: a.clients,
        think_ns: a.think,
        think: a.think_dist,
        count: a.count,
        duration_ns: a.duration,
        start_ns,
        target: t,
        method: method(a),
        body: Bytes::from(a.payload.clone().unwrap_or_default()),
        seed: a.seed,
        mix,
    };
    tracing::info!(clients = a.clients, node = %node, "closed load starts");
    closed::run(&rt, issuer.clone(), cfg, Duration::from_nanos(a.common.drain), a.common.spin, term.wait())
        .context("start the think-time timer")?;
    finish(&out_dir(a), issuer.recorder.take(), &info(a, "closed", "standalone", &node, start_ns), series_interval(a))
}

/// The controller's trace: `--trace`, or generated from the rate flags over the workers.
fn controller_events(a: &RunArgs, workers: &[String]) -> anyhow::Result<(Vec<Event>, Option<f64>)> {
    if let Some(path) = &a.trace {
        return Ok((trace::read(path)?, None));
    }
    let rate = check_rate(a)?;
    if a.count.is_none() && a.duration.is_none() {
        bail!("a controller without --trace needs --duration or --count to generate its trace");
    }
    let t = target(a)?;
    let ids: Vec<String> = (0..workers.len()).map(|i| i.to_string()).collect();
    Ok((
        generate(shape(a), rate, a.seed, limit(a), &ids, &t.path, a.payload.as_deref().unwrap_or(""), a.method.clone()),
        Some(rate),
    ))
}

/// A random trace: the open mode's schedule, nodeIDs round-robin.
#[expect(clippy::too_many_arguments, reason = "the trace tool's flags, passed through")]
pub fn generate(
    shape: Shape,
    rate: f64,
    seed: u64,
    limit: Limit,
    node_ids: &[String],
    endpoint: &str,
    payload: &str,
    method: Option<String>,
) -> Vec<Event> {
    schedule::offsets(shape, rate, seed, limit)
        .into_iter()
        .enumerate()
        .map(|(i, t)| Event {
            event_id: i as u64,
            time: t as f64 / 1e6,
            node_id: node_ids.get(i % node_ids.len().max(1)).cloned().unwrap_or_else(|| "0".into()),
            endpoint: endpoint.to_owned(),
            payload: payload.to_owned(),
            method: method.clone(),
        })
        .collect()
}

fn controller(a: &RunArgs) -> anyhow::Result<()> {
    if a.workers.is_empty() {
        bail!("--role controller needs --workers host:port,…");
    }
    if a.mode == Some(Mode::Closed) {
        bail!("distributed mode replays a trace (or a generated one): --mode closed is not supported with --role controller");
    }
    let node = node_name(a);
    let mut names: Vec<String> = a.workers.iter().map(|w| distributed::worker_name(w)).collect();
    // Workers on one host (tests, a single machine) are told apart by their whole address.
    if names.iter().collect::<std::collections::HashSet<_>>().len() < names.len() {
        names.clone_from(&a.workers);
    }
    let (events, rate) = controller_events(a, &names)?;
    let target = a.target.clone().ok_or_else(|| anyhow!("--target URL is required"))?;
    Target::parse(&target).map_err(|e| anyhow!(e))?;
    let manual = distributed::parse_adjustments(&a.time_adjustment_ms).map_err(|e| anyhow!(e))?;
    let dir = out_dir(a);
    let rt = runtime(a.threads)?;
    let term = Term::install(&rt);
    let parts = distributed::split(&events, &names);
    let (records, start_ns, rate_changes) = rt.block_on(async {
        let mut links = Vec::new();
        for w in &a.workers {
            links.push(connect_worker(w).await?);
        }
        // Offsets: measured, then manual ones on top.
        let mut cal = CalibrationFile { schema: 1, probes: a.calibrate, workers: BTreeMap::new() };
        for (link, name) in links.iter_mut().zip(&names) {
            let entry = if a.calibrate > 0 {
                link.send(&Message::Calibrate { target: target.clone(), probes: a.calibrate }).await?;
                match link.recv().await? {
                    Message::Calibration { median_ms, method, samples, .. } => CalibrationEntry { time_adjustment_ms: median_ms, method, samples },
                    other => bail!("worker {name}: expected a calibration, got {other:?}"),
                }
            } else {
                CalibrationEntry { time_adjustment_ms: 0.0, method: "none".into(), samples: 0 }
            };
            let entry = match manual.get(name) {
                Some(&ms) => CalibrationEntry { time_adjustment_ms: ms, method: "manual".into(), samples: 0 },
                None => entry,
            };
            tracing::info!(worker = %name, offset_ms = entry.time_adjustment_ms, method = %entry.method, "time adjustment");
            cal.workers.insert(name.clone(), entry);
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let cal_path = dir.join("calibration.json");
        std::fs::write(&cal_path, serde_json::to_string_pretty(&cal)? + "\n").with_context(|| format!("write {}", cal_path.display()))?;
        for ((link, name), part) in links.iter_mut().zip(&names).zip(parts) {
            let config = PlanConfig {
                target: target.clone(),
                method: a.method.clone(),
                speed: a.speed,
                time_adjustment_ms: cal.workers.get(name).map_or(0.0, |e| e.time_adjustment_ms),
                timeout_ms: a.timeout as f64 / 1e6,
            };
            link.send(&Message::Plan { config, events: part }).await?;
            match link.recv().await? {
                Message::Ready { events, .. } => tracing::info!(worker = %name, events, "worker ready"),
                other => bail!("worker {name}: expected ready, got {other:?}"),
            }
        }
        let start_ns = now_unix_ns() + a.common.start_delay.min(i64::MAX as u64) as i64;
        for link in &mut links {
            link.send(&Message::Start { start_ns }).await?;
        }
        tracing::info!(start_ns, workers = links.len(), events = events.len(), "start sent");
        gather(links, term).await.map(|(r, c)| (r, start_ns, c))
    })?;
    let mut i = info(a, "distributed", "controller", &node, start_ns);
    i.target_rps = rate.or_else(|| {
        TraceSource::new(events, 0, a.speed, 0.0, Target { authority: String::new(), path: "/".into() }, None).base_rate
    });
    i.pattern = a.trace.is_none().then(|| a.pattern.to_string());
    i.rate_changes = rate_changes;
    finish(&dir, records, &i, a.series_interval)
}

async fn connect_worker(addr: &str) -> anyhow::Result<Link> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => return Ok(Link::new(s, addr.to_owned())),
            Err(err) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(%err, worker = addr, "worker not reachable yet");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => return Err(err).with_context(|| format!("connect to worker {addr}")),
        }
    }
}

/// Waits for every worker's results; on SIGTERM tells them to stop first.
async fn gather(links: Vec<Link>, term: Term) -> anyhow::Result<(Vec<Record>, u64)> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for mut link in links {
        let mut stop_rx = stop_rx.clone();
        tasks.spawn(async move {
            let first = tokio::select! {
                m = link.recv() => Some(m),
                _ = stop_rx.wait_for(|s| *s) => None,
            };
            let m = match first {
                Some(m) => m,
                None => {
                    link.send(&Message::Stop).await?;
                    link.recv().await
                }
            };
            match m? {
                Message::Results { records, rate_changes, node } => {
                    tracing::info!(worker = %node, records = records.len(), "results received");
                    Ok((records, rate_changes))
                }
                other => Err(distributed::WireError::Bad {
                    peer: link.peer.clone(),
                    reason: format!("expected results, got {other:?}"),
                }),
            }
        });
    }
    let term_wait = term.wait();
    tokio::pin!(term_wait);
    let mut all = Vec::new();
    let mut changes = 0;
    let mut first_err = None;
    loop {
        tokio::select! {
            () = &mut term_wait, if !*stop_tx.borrow() => { let _ = stop_tx.send(true); }
            next = tasks.join_next() => match next {
                None => break,
                Some(Ok(Ok((r, c)))) => { all.extend(r); changes += c; }
                Some(Ok(Err(e))) => { tracing::error!(error = %e, "worker failed"); first_err.get_or_insert(anyhow::Error::new(e)); }
                Some(Err(e)) => { first_err.get_or_insert(anyhow!("worker task: {e}")); }
            }
        }
    }
    match first_err {
        // Keep what arrived: a partial result set is still written, but the run fails.
        Some(e) if all.is_empty() => Err(e),
        Some(e) => {
            tracing::error!(error = %e, "some workers failed; writing the results that arrived");
            Ok((all, changes))
        }
        None => Ok((all, changes)),
    }
}

fn worker(a: &RunArgs) -> anyhow::Result<()> {
    let node = node_name(a);
    let rt = runtime(a.threads)?;
    let term = Term::install(&rt);
    let listener =
        rt.block_on(tokio::net::TcpListener::bind(&a.listen)).with_context(|| format!("listen on {}", a.listen))?;
    tracing::info!(listen = %a.listen, node = %node, "worker waiting for a controller");
    let mut sessions = 0;
    loop {
        let accepted = rt.block_on(async {
            tokio::select! {
                () = term.clone().wait() => None,
                r = listener.accept() => Some(r),
            }
        });
        let Some(accepted) = accepted else { break };
        let (stream, peer) = accepted.context("accept a controller")?;
        tracing::info!(%peer, "controller connected");
        let mut link = Link::new(stream, peer.to_string());
        if let Err(err) = session(&rt, &mut link, a, &node, &term) {
            tracing::error!(error = format!("{err:#}"), "session failed");
            let _ = rt.block_on(link.send(&Message::Error { message: format!("{err:#}") }));
        }
        sessions += 1;
        if a.sessions > 0 && sessions >= a.sessions {
            break;
        }
        if *term.0.borrow() {
            break;
        }
    }
    Ok(())
}

fn session(rt: &tokio::runtime::Runtime, link: &mut Link, a: &RunArgs, node: &str, term: &Term) -> anyhow::Result<()> {
    let mut plan: Option<(PlanConfig, Vec<Event>)> = None;
    loop {
        let msg = rt.block_on(async {
            tokio::select! {
                () = term.clone().wait() => None,
                m = link.recv() => Some(m),
            }
        });
        let Some(msg) = msg else { return Ok(()) };
        match msg? {
            Message::Calibrate { target, probes } => {
                let t = Target::parse(&target).map_err(|e| anyhow!(e))?;
                let (median_ms, method, samples) =
                    rt.block_on(distributed::calibrate(&t, probes)).map_err(|e| anyhow!(e))?;
                tracing::info!(median_ms, method, samples, "calibrated");
                rt.block_on(link.send(&Message::Calibration {
                    node: node.to_owned(),
                    median_ms,
                    method: method.into(),
                    samples,
                }))?;
            }
            Message::Plan { config, events } => {
                Target::parse(&config.target).map_err(|e| anyhow!(e))?;
                let n = events.len() as u64;
                plan = Some((config, events));
                rt.block_on(link.send(&Message::Ready { node: node.to_owned(), events: n }))?;
            }
            Message::Start { start_ns } => {
                let (config, events) = plan.take().ok_or_else(|| anyhow!("start before a plan"))?;
                return run_part(rt, link, a, node, term, config, events, start_ns);
            }
            Message::Stop => return Ok(()),
            other => bail!("unexpected message {other:?}"),
        }
    }
}

#[expect(clippy::too_many_arguments, reason = "one session's state, used once")]
fn run_part(
    rt: &tokio::runtime::Runtime,
    link: &mut Link,
    a: &RunArgs,
    node: &str,
    term: &Term,
    config: PlanConfig,
    events: Vec<Event>,
    start_ns: i64,
) -> anyhow::Result<()> {
    let target = Target::parse(&config.target).map_err(|e| anyhow!(e))?;
    // The controller's plan is input: an absurd timeout is refused, not a panic.
    let timeout = Duration::try_from_secs_f64((config.timeout_ms / 1e3).max(0.001))
        .map_err(|_| anyhow!("the controller's timeout {} ms is out of range", config.timeout_ms))?;
    let issuer = Arc::new(Issuer::new(Http, a.connections, timeout, node.to_owned()));
    rt.block_on(issuer.warm(&target.authority, a.warm.min(a.connections)));
    let n = events.len();
    let source = Source::Trace(TraceSource::new(
        events,
        start_ns,
        config.speed,
        config.time_adjustment_ms,
        target,
        config.method.clone(),
    ));
    tracing::info!(events = n, start_ns, offset_ms = config.time_adjustment_ms, "running my part");
    let stop = {
        let term = term.clone();
        let link = &mut *link;
        async move {
            let from_controller = async {
                loop {
                    match link.recv().await {
                        Ok(Message::Stop) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            };
            tokio::select! {
                () = term.wait() => {}
                () = from_controller => {}
            }
        }
    };
    let cfg = DispatchConfig { spin_ns: a.common.spin, ctl: Some(a.common.ctl.clone()) };
    let outcome = open::run(rt, source, issuer.clone(), cfg, timeout, Duration::from_nanos(a.common.drain), stop);
    let records = issuer.recorder.take();
    let mut i = info(a, "distributed", "worker", node, start_ns);
    i.rate_changes = outcome.rate_changes;
    i.target_rps = None;
    finish(&out_dir(a), records.clone(), &i, a.series_interval)?;
    rt.block_on(link.send(&Message::Results { node: node.to_owned(), records, rate_changes: outcome.rate_changes }))?;
    Ok(())
}

fn trace_out(events: &[Event], out: &TraceOut) -> anyhow::Result<()> {
    match &out.out {
        Some(path) => {
            let format = out.format.unwrap_or_else(|| Format::of_path(path));
            trace::write(path, events, format)?;
            eprintln!("wrote {} events to {}", events.len(), path.display());
        }
        None => print!("{}", trace::render(events, out.format.unwrap_or(Format::Json))),
    }
    Ok(())
}

/// `trace gen --kind s3-cos`: the IBM-COS-shaped object-write trace.
fn s3_cos_trace(g: &GenArgs) -> anyhow::Result<()> {
    let mut p = g.cos.clone();
    if let Some(rate) = g.rate {
        p.rate = rate;
    }
    if let Some(d) = g.duration {
        p.duration_ns = d;
    }
    let mut rows = super::s3::cosgen::generate(&p, g.seed)?;
    if let Some(n) = g.count {
        rows.truncate(usize::try_from(n).unwrap_or(usize::MAX));
    }
    let csv = match (g.out.format, &g.out.out) {
        (Some(Format::Json), _) => bail!("--format json: object-write traces are CSV or JSON Lines (jsonl)"),
        (Some(f), _) => f == Format::Csv,
        (None, Some(path)) => Format::of_path(path) == Format::Csv,
        (None, None) => false,
    };
    let text = super::s3::trace::render(&rows, csv);
    match &g.out.out {
        Some(path) => std::fs::write(path, text).with_context(|| format!("write trace {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}

fn trace_tool(cmd: TraceCommand) -> anyhow::Result<()> {
    match cmd {
        TraceCommand::Gen(g) if g.kind == TraceKind::S3Cos => s3_cos_trace(&g),
        TraceCommand::Gen(g) => {
            let rate = g.rate.ok_or_else(|| anyhow!("trace gen needs --rate"))?;
            if !(rate.is_finite() && rate > 0.0) {
                bail!("--rate {rate}: must be a positive number of requests per second");
            }
            if g.count.is_none() && g.duration.is_none() {
                bail!("trace gen needs --duration or --count");
            }
            if !(g.endpoint.starts_with('/') || g.endpoint.starts_with("http://")) {
                bail!("--endpoint {:?}: must be a path starting with / or an http:// URL", g.endpoint);
            }
            let ids = if g.node_id.is_empty() {
                (0..g.nodes.max(1)).map(|i| i.to_string()).collect()
            } else {
                g.node_id.clone()
            };
            let shape = Shape { pattern: g.pattern, amplitude: g.amplitude, period_ns: g.period, burst: g.burst };
            let events = generate(
                shape,
                rate,
                g.seed,
                Limit { count: g.count, duration_ns: g.duration },
                &ids,
                &g.endpoint,
                &g.payload,
                g.method.clone(),
            );
            trace_out(&events, &g.out)
        }
        TraceCommand::FromLog(f) => {
            let text = std::fs::read_to_string(&f.input).with_context(|| format!("read log {}", f.input.display()))?;
            let opts = logs::LogOptions {
                nodes: f.nodes,
                endpoint: f.endpoint.clone(),
                time_field: f.time_field.clone(),
                client_field: f.client_field.clone(),
            };
            let events = logs::to_trace(&text, &opts).with_context(|| format!("read log {}", f.input.display()))?;
            trace_out(&events, &f.out)
        }
        TraceCommand::Speed(s) => {
            let events = trace::read(&s.input)?;
            trace_out(&trace::speed(&events, s.factor), &s.out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_only_command_lines_parse() {
        let cli = Cli::try_parse_from([
            "diorama-loadgen",
            "--role",
            "controller",
            "--workers",
            "w0:7070,w1:7070",
            "--workers",
            "w2:7070",
            "--target",
            "http://s:8080/",
            "--rate",
            "200",
            "--duration",
            "3s",
            "--calibrate",
            "5",
            "--time-adjustment-ms",
            "w0=1.5",
        ])
        .unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.run.workers, ["w0:7070", "w1:7070", "w2:7070"]);
        assert_eq!(cli.run.duration, Some(3_000_000_000));
        let cli = Cli::try_parse_from([
            "diorama-loadgen",
            "--mode",
            "closed",
            "--clients",
            "4",
            "--think",
            "100ms",
            "--target",
            "http://lb:80",
        ])
        .unwrap();
        assert_eq!((cli.run.mode, cli.run.think), (Some(Mode::Closed), 100_000_000));
        let cli = Cli::try_parse_from(["diorama-loadgen", "trace", "speed", "--input", "a.json", "--factor", "200%"])
            .unwrap();
        assert!(
            matches!(cli.command, Some(Command::Trace(TraceCommand::Speed(SpeedArgs { factor, .. }))) if factor == 2.0)
        );
        assert!(Cli::try_parse_from(["diorama-loadgen", "--duration", "10"]).is_err());
    }

    #[test]
    fn generated_traces_round_robin() {
        let ids: Vec<String> = ["a", "b"].map(String::from).to_vec();
        let e = generate(Shape::default(), 100.0, 1, Limit { count: Some(4), duration_ns: None }, &ids, "/x", "", None);
        assert_eq!(
            e.iter().map(|e| (e.time, e.node_id.as_str())).collect::<Vec<_>>(),
            [(0.0, "a"), (10.0, "b"), (20.0, "a"), (30.0, "b")]
        );
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    fn wait_listening(port: u16) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "nothing listens on port {port}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn controller_splits_a_trace_over_workers_and_gathers_it() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_owned();
        let server = free_port();
        std::thread::spawn(move || {
            let rt = runtime(1).unwrap();
            let addr = format!("127.0.0.1:{server}").parse().unwrap();
            let _ = rt.block_on(http::serve(addr, Bytes::from_static(b"ok"), std::future::pending()));
        });
        // The workers calibrate against the server at once and do not retry: under a loaded
        // parallel test run its thread may not have bound yet (CI of stop 20 failed so).
        wait_listening(server);
        let ports = [free_port(), free_port()];
        let workers: Vec<_> = ports
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let args = Cli::try_parse_from([
                    "l",
                    "--role",
                    "worker",
                    "--listen",
                    &format!("127.0.0.1:{p}"),
                    "--sessions",
                    "1",
                    "--node-name",
                    &format!("w{i}"),
                    "--out",
                    d.join(format!("w{i}")).to_str().unwrap(),
                ])
                .unwrap();
                std::thread::spawn(move || run(&args.run))
            })
            .collect();
        // 40 events over 200 ms: nodeIDs 0 and 1 by parity, one POST.
        let mut events = generate(
            Shape::default(),
            200.0,
            1,
            Limit { count: Some(40), duration_ns: None },
            &["0".into(), "1".into()],
            "/t",
            "",
            None,
        );
        events[3].payload = "body".into();
        let trace_path = d.join("t.csv");
        trace::write(&trace_path, &events, Format::Csv).unwrap();
        let ctl = Cli::try_parse_from([
            "l",
            "--role",
            "controller",
            "--workers",
            &format!("127.0.0.1:{},127.0.0.1:{}", ports[0], ports[1]),
            "--trace",
            trace_path.to_str().unwrap(),
            "--target",
            &format!("http://127.0.0.1:{server}/"),
            "--calibrate",
            "3",
            "--start-delay",
            "200ms",
            "--out",
            d.join("ctl").to_str().unwrap(),
        ])
        .unwrap();
        run(&ctl.run).unwrap();
        for w in workers {
            w.join().unwrap().unwrap();
        }
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("ctl/summary.json")).unwrap()).unwrap();
        assert_eq!(
            (s["requests"].as_u64(), s["completed"].as_u64(), s["mode"].as_str()),
            (Some(40), Some(40), Some("distributed"))
        );
        let csv = std::fs::read_to_string(d.join("ctl/requests.csv")).unwrap();
        assert_eq!(csv.lines().filter(|l| l.contains(",w0,")).count(), 20);
        assert_eq!(csv.lines().filter(|l| l.contains(",w1,")).count(), 20);
        let own: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("w1/summary.json")).unwrap()).unwrap();
        assert_eq!(own["requests"], 20);
        let cal: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("ctl/calibration.json")).unwrap()).unwrap();
        assert_eq!(cal["workers"][format!("127.0.0.1:{}", ports[0])]["method"], "one_way");
    }
}
