//! The agent: takes runs of its location from the server, measures with the real tools,
//! and delivers the results until the server has stored them.
//!
//! # Design
//! - **always-on** (like a VM): a process that is up all the time and polls for work; runs
//!   start at once.
//! - **on-demand** (like a serverless function): every run is an invocation that first
//!   pays a start-up delay and, after delivering, a teardown delay during which it still
//!   holds one of the `--concurrency` slots; both are drawn from `--startup-delay` and
//!   `--teardown-delay`.
//! - Delivery: a result is written to the spool directory before the first attempt and
//!   removed once the server acknowledged it; attempts repeat with backoff while the server
//!   is unreachable or answers 5xx, and a restarted agent delivers what its spool holds.
//! - Cost: always-on agents cost `--cost-per-hour` for their (virtual) uptime; on-demand
//!   agents `--cost-per-invocation` per run plus `--cost-per-second` of invocation time.
//!   The figures go to `--summary` at shutdown.
//!
//! # Limitations
//! A run in progress when the agent is killed is lost at the agent; the server records it
//! as failed when its lease runs out.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::Method;
use rand::SeedableRng;
use serde::Serialize;
use tokio::sync::{Mutex, Semaphore};

use super::api::{PollRequest, PollResponse};
use super::client::{ApiClient, ClientError};
use super::delay::Delay;
use super::result::{ms_between, AgentKind, Job, RunResult, RunTiming};
use super::server::now;
use super::tool::measure;

/// Flags of `diorama-probe agent`.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// The server, e.g. `http://server:8080`.
    #[arg(long)]
    pub server: String,
    /// The location (region or agent group) this agent measures from; without it the agent
    /// is a location of its own, named by `--name` (so tasks can address single agents).
    #[arg(long)]
    pub location: Option<String>,
    /// The agent's name (default: the host name).
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long, value_enum, default_value = "always-on")]
    pub kind: AgentKind,
    /// Runs in progress at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// On-demand: start-up delay distribution (e.g. `lognormal:median=20ms,sigma=0.5`).
    #[arg(long, default_value = "0")]
    pub startup_delay: Delay,
    /// On-demand: teardown delay distribution.
    #[arg(long, default_value = "0")]
    pub teardown_delay: Delay,
    /// How long one poll may wait at the server for work.
    #[arg(long, default_value = "1s", value_parser = crate::loadgen::units::duration_arg)]
    pub poll_wait: u64,
    /// Deadline of one measurement (one tool run).
    #[arg(long, default_value = "30s", value_parser = crate::loadgen::units::duration_arg)]
    pub tool_timeout: u64,
    /// Undelivered results, relative to the working directory.
    #[arg(long, default_value = "probe-spool")]
    pub spool: PathBuf,
    /// Written at shutdown: runs, time breakdown and cost.
    #[arg(long, default_value = "agent-summary.json")]
    pub summary: PathBuf,
    #[arg(long, default_value_t = 0.0)]
    pub cost_per_hour: f64,
    #[arg(long, default_value_t = 0.0)]
    pub cost_per_invocation: f64,
    #[arg(long, default_value_t = 0.0)]
    pub cost_per_second: f64,
    /// The client of HTTP measurements: `curl` (a process per GET) or `builtin` (the
    /// agent's own GET, for agents that run many GETs at once on a small CPU share).
    #[arg(long, value_enum, default_value = "curl")]
    pub http_client: super::tool::HttpClient,
    /// Seed of the delay draws (default: from the OS).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// What an agent did, written at shutdown.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AgentSummary {
    pub schema: u32,
    pub agent: String,
    pub location: String,
    pub kind: String,
    pub uptime_s: f64,
    pub runs: u64,
    pub measurements: u64,
    pub delivered: u64,
    pub delivery_retries: u64,
    pub startup_ms_total: f64,
    pub exec_ms_total: f64,
    pub teardown_ms_total: f64,
    pub cost: f64,
    pub cost_per_1000_measurements: f64,
}

struct Agent {
    args: AgentArgs,
    name: String,
    /// `--location`, or the agent's name.
    location: String,
    client: ApiClient,
    slots: Arc<Semaphore>,
    rng: Mutex<rand::rngs::StdRng>,
    summary: Mutex<AgentSummary>,
}

/// Runs an agent until SIGTERM/SIGINT, then writes its summary.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let agent = Agent::new(args)?;
    tracing::info!(agent = %agent.name, location = %agent.location, kind = agent.args.kind.as_str(), "agent started");
    let started = Instant::now();
    let work = agent.start();
    crate::runtime::shutdown_signal().await;
    work.abort();
    let summary = agent.finish(started.elapsed().as_secs_f64()).await;
    std::fs::write(&agent.args.summary, serde_json::to_vec_pretty(&summary)?)?;
    tracing::info!(runs = summary.runs, delivered = summary.delivered, "agent stopped");
    Ok(())
}

impl AgentSummary {
    /// Prices what the agent did: always-on agents by the hour of uptime, on-demand agents
    /// per invocation (run) and per second of invocation time (start-up, execution and
    /// teardown); and the cost per 1,000 measurements (0 when none was made).
    pub fn price(&mut self, args: &AgentArgs) {
        self.cost = match args.kind {
            AgentKind::AlwaysOn => args.cost_per_hour * self.uptime_s / 3600.0,
            AgentKind::OnDemand => {
                #[expect(clippy::cast_precision_loss, reason = "counts far below 2^53")]
                let invocations = self.runs as f64;
                let busy_s = (self.startup_ms_total + self.exec_ms_total + self.teardown_ms_total) / 1e3;
                args.cost_per_invocation * invocations + args.cost_per_second * busy_s
            }
        };
        #[expect(clippy::cast_precision_loss, reason = "counts far below 2^53")]
        let per = if self.measurements > 0 { self.cost / self.measurements as f64 * 1000.0 } else { 0.0 };
        self.cost_per_1000_measurements = per;
    }
}

/// Sleeps `d` and returns how long that took, in (virtual) ms. A zero delay is not slept:
/// a tokio timer fires on its next millisecond tick, which would charge an always-on agent
/// about a millisecond of start-up and teardown it does not have.
async fn pause(d: Duration) -> f64 {
    if d.is_zero() {
        return 0.0;
    }
    let t = Instant::now();
    tokio::time::sleep(d).await;
    t.elapsed().as_secs_f64() * 1e3
}

fn spooled(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "json")).collect())
        .unwrap_or_default();
    files.sort();
    files
}

impl Agent {
    /// An agent of `args`, named by `--name` or the host name, with its spool directory.
    fn new(args: AgentArgs) -> anyhow::Result<Arc<Self>> {
        let name = match &args.name {
            Some(n) => n.clone(),
            None => nix::unistd::gethostname()?.to_string_lossy().into_owned(),
        };
        let location = args.location.clone().unwrap_or_else(|| name.clone());
        std::fs::create_dir_all(&args.spool)?;
        let poll_wait = Duration::from_nanos(args.poll_wait);
        let rng = match args.seed {
            Some(s) => rand::rngs::StdRng::seed_from_u64(s),
            None => rand::rngs::StdRng::from_os_rng(),
        };
        Ok(Arc::new(Agent {
            client: ApiClient::new(&args.server, poll_wait + Duration::from_secs(10)),
            slots: Arc::new(Semaphore::new(args.concurrency.max(1))),
            rng: Mutex::new(rng),
            summary: Mutex::new(AgentSummary {
                schema: 1,
                agent: name.clone(),
                location: location.clone(),
                kind: args.kind.as_str().into(),
                ..AgentSummary::default()
            }),
            name,
            location,
            args,
        }))
    }

    /// Delivers what the spool holds (a previous process's undelivered results) and starts
    /// taking work; the handle ends the work loop when aborted.
    fn start(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        for path in spooled(&self.args.spool) {
            let a = Arc::clone(self);
            tokio::spawn(async move { a.redeliver(&path).await });
        }
        let a = Arc::clone(self);
        let poll_wait = Duration::from_nanos(self.args.poll_wait);
        tokio::spawn(async move { a.work(poll_wait).await })
    }

    /// The summary so far, priced for `uptime_s` (virtual seconds).
    async fn finish(&self, uptime_s: f64) -> AgentSummary {
        let mut summary = self.summary.lock().await.clone();
        summary.uptime_s = uptime_s;
        summary.price(&self.args);
        summary
    }

    async fn work(self: Arc<Self>, poll_wait: Duration) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let Ok(first) = Arc::clone(&self.slots).acquire_owned().await else {
                return;
            };
            let req = PollRequest {
                agent: self.name.clone(),
                location: self.location.clone(),
                kind: self.args.kind,
                max: 1 + self.slots.available_permits(),
                wait_ms: u64::try_from(poll_wait.as_millis()).unwrap_or(u64::MAX),
            };
            let body = serde_json::to_value(&req).unwrap_or_default();
            match self.client.call::<PollResponse>(Method::POST, "/v1/poll", Some(&body)).await {
                Ok(resp) => {
                    backoff = Duration::from_millis(100);
                    let mut permit = Some(first);
                    for job in resp.jobs {
                        let slot = match permit.take() {
                            Some(p) => p,
                            None => match Arc::clone(&self.slots).acquire_owned().await {
                                Ok(p) => p,
                                Err(_) => return,
                            },
                        };
                        let a = Arc::clone(&self);
                        tokio::spawn(async move {
                            a.execute(job).await;
                            drop(slot);
                        });
                    }
                }
                Err(err) => {
                    drop(first);
                    tracing::warn!(%err, retry_in = ?backoff, "poll failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn execute(&self, job: Job) {
        let wait_ms = ms_between(job.fire_time, now()).max(0.0);
        let (startup, teardown) = match self.args.kind {
            AgentKind::AlwaysOn => (Duration::ZERO, Duration::ZERO),
            AgentKind::OnDemand => {
                let mut rng = self.rng.lock().await;
                (self.args.startup_delay.sample(&mut *rng), self.args.teardown_delay.sample(&mut *rng))
            }
        };
        let startup_ms = pause(startup).await;
        let t1 = Instant::now();
        let deadline = Duration::from_nanos(self.args.tool_timeout);
        let endpoints = futures::future::join_all(
            job.endpoints.iter().map(|e| measure(&job.measurement, e, deadline, self.args.http_client)),
        )
        .await;
        let exec_ms = t1.elapsed().as_secs_f64() * 1e3;
        let ok = endpoints.iter().any(|e| e.ok);
        let error = (!ok).then(|| "every endpoint failed".to_owned());
        let measurements = endpoints.len() as u64;
        let result = RunResult {
            task_id: job.task_id,
            location: job.location.clone(),
            seq: job.seq,
            agent: Some(self.name.clone()),
            agent_kind: Some(self.args.kind),
            fire_time: job.fire_time,
            ok,
            error,
            timing: RunTiming { wait_ms, startup_ms, exec_ms, teardown_ms: teardown.as_secs_f64() * 1e3 },
            endpoints,
            finished_at: now(),
            received_at: None,
            response_ms: None,
        };
        {
            let mut s = self.summary.lock().await;
            s.runs += 1;
            s.measurements += measurements;
            s.startup_ms_total += startup_ms;
            s.exec_ms_total += exec_ms;
        }
        let path = self.args.spool.join(format!("{}-{}-{}.json", job.task_id, job.location, job.seq));
        if let Err(err) = std::fs::write(&path, serde_json::to_vec(&result).unwrap_or_default()) {
            tracing::warn!(%err, path = %path.display(), "cannot spool the result; delivering from memory");
        }
        self.deliver(&result, &path).await;
        let teardown_ms = pause(teardown).await;
        self.summary.lock().await.teardown_ms_total += teardown_ms;
    }

    async fn redeliver(&self, path: &Path) {
        match std::fs::read(path).map(|b| serde_json::from_slice::<RunResult>(&b)) {
            Ok(Ok(result)) => self.deliver(&result, path).await,
            other => {
                tracing::warn!(path = %path.display(), ?other, "unreadable spooled result; removed");
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// Delivers until the server acknowledges (or refuses the result as invalid).
    async fn deliver(&self, result: &RunResult, spool: &Path) {
        let body = serde_json::to_value(result).unwrap_or_default();
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.client.call::<serde_json::Value>(Method::POST, "/v1/results", Some(&body)).await {
                Ok(_) => {
                    self.summary.lock().await.delivered += 1;
                    break;
                }
                Err(ClientError::Status { status, body, .. }) if status.is_client_error() => {
                    tracing::error!(%status, %body, task = result.task_id, seq = result.seq, "server refused the result");
                    break;
                }
                Err(err) => {
                    tracing::warn!(%err, retry_in = ?backoff, "delivery failed");
                    self.summary.lock().await.delivery_retries += 1;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        let _ = std::fs::remove_file(spool);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::args::{Args, Role};
    use crate::probe::fixture::{server, spec, Served};
    use crate::probe::server::Server;
    use crate::probe::store::ResultQuery;
    use crate::probe::task::State;
    use clap::Parser;

    fn agent_args(server: &str, spool: &Path, flags: &[&str]) -> AgentArgs {
        let spool = spool.to_str().unwrap();
        let base = ["diorama-probe", "agent", "--server", server, "--spool", spool, "--poll-wait", "100ms"];
        let argv = base.iter().chain(flags).map(|s| (*s).to_owned());
        match Args::try_parse_from(argv).unwrap().role {
            Role::Agent(a) => a,
            other => panic!("not an agent: {other:?}"),
        }
    }

    /// Waits until `check` holds, for at most 30 s.
    async fn until<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !check().await {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The results the server has stored for `location`, once there are `n`.
    async fn stored(server: &Server, location: &str, n: usize) -> Vec<RunResult> {
        let query = ResultQuery { location: Some(location.into()), ..ResultQuery::default() };
        until("the results", || async { server.results(&query).await.unwrap().len() >= n }).await;
        server.results(&query).await.unwrap()
    }

    /// `n` one-off tasks at `location`, each an `exec` of `argv`, fired now.
    async fn one_offs(server: &Server, location: &str, argv: &[&str], n: usize) -> Vec<u64> {
        let argv = serde_json::to_string(argv).unwrap();
        let text = format!(
            r#"{{"type":"ONE-OFF","measurement":{{"kind":"exec","argv":{argv}}},"endpoints":["x"],"locations":["{location}"]}}"#
        );
        let mut ids = Vec::new();
        for _ in 0..n {
            ids.push(server.create(&spec(&text)).await.unwrap().id);
        }
        server.tick(now()).await.unwrap();
        ids
    }

    #[tokio::test]
    async fn an_on_demand_agent_holds_a_slot_from_start_up_through_teardown() {
        let dir = tempfile::tempdir().unwrap();
        let served = Served::start(server(dir.path(), 60_000).await).await;
        one_offs(&served.server, "eu", &["sleep", "0.1"], 6).await;
        let flags = [
            "--location",
            "eu",
            "--name",
            "fn0",
            "--kind",
            "on-demand",
            "--concurrency",
            "2",
            "--startup-delay",
            "fixed:50ms",
            "--teardown-delay",
            "fixed:300ms",
            "--cost-per-invocation",
            "0.001",
            "--cost-per-second",
            "0.01",
        ];
        let agent = Agent::new(agent_args(&served.url, &dir.path().join("spool"), &flags)).unwrap();
        let work = agent.start();
        let runs = stored(&served.server, "eu", 6).await;
        // Teardowns end after their runs were delivered.
        until("the last teardown", || async { agent.summary.lock().await.teardown_ms_total >= 6.0 * 300.0 }).await;
        work.abort();
        let summary = agent.finish(10.0).await;

        for r in &runs {
            assert!(r.ok && r.agent_kind == Some(AgentKind::OnDemand), "{r:?}");
            let t = &r.timing;
            assert!(t.startup_ms >= 50.0 && t.exec_ms >= 100.0 && t.teardown_ms == 300.0, "{t:?}");
        }
        // A slot is held for start-up, execution, delivery and teardown (≥ 450 ms): with two
        // slots the six runs start in pairs, each pair at least 450 ms after the one before.
        let mut waits: Vec<f64> = runs.iter().map(|r| r.timing.wait_ms).collect();
        waits.sort_by(f64::total_cmp);
        assert!(waits[2] >= 440.0 && waits[4] >= 880.0, "runs started too early: waits {waits:?} ms");

        assert_eq!((summary.runs, summary.measurements, summary.delivered), (6, 6, 6));
        assert_eq!(
            (summary.kind.as_str(), summary.agent.as_str(), summary.location.as_str()),
            ("on-demand", "fn0", "eu")
        );
        let (s, e, t) = (summary.startup_ms_total, summary.exec_ms_total, summary.teardown_ms_total);
        assert!(s >= 300.0 && e >= 600.0 && t >= 1800.0, "{summary:?}");
        let cost = 0.001 * 6.0 + 0.01 * (s + e + t) / 1e3;
        assert!((summary.cost - cost).abs() < 1e-12, "{summary:?}");
        assert!((summary.cost_per_1000_measurements - cost / 6.0 * 1000.0).abs() < 1e-9, "{summary:?}");
    }

    #[tokio::test]
    async fn an_always_on_agent_pays_no_start_up_or_teardown() {
        let dir = tempfile::tempdir().unwrap();
        let served = Served::start(server(dir.path(), 60_000).await).await;
        one_offs(&served.server, "us", &["true"], 3).await;
        let flags = [
            "--location",
            "us",
            "--name",
            "vm0",
            "--startup-delay",
            "fixed:500ms",
            "--teardown-delay",
            "fixed:500ms",
            "--cost-per-hour",
            "3.6",
            "--cost-per-invocation",
            "1",
        ];
        let agent = Agent::new(agent_args(&served.url, &dir.path().join("spool"), &flags)).unwrap();
        let work = agent.start();
        let runs = stored(&served.server, "us", 3).await;
        work.abort();
        for r in &runs {
            assert!(r.ok && r.agent_kind == Some(AgentKind::AlwaysOn), "{r:?}");
            assert!(r.timing.startup_ms == 0.0 && r.timing.teardown_ms == 0.0, "{:?}", r.timing);
        }
        let summary = agent.finish(100.0).await;
        assert_eq!((summary.kind.as_str(), summary.runs, summary.teardown_ms_total), ("always-on", 3, 0.0));
        // By the hour of uptime only: $3.6/h for 100 s.
        assert!(
            (summary.cost - 0.1).abs() < 1e-12
                && (summary.cost_per_1000_measurements - 0.1 / 3.0 * 1000.0).abs() < 1e-9
        );
    }

    #[test]
    fn each_kind_is_priced_by_its_own_table() {
        let args = |kind: &str| {
            let prices = [
                "--kind",
                kind,
                "--cost-per-hour",
                "0.0416",
                "--cost-per-invocation",
                "0.0000002",
                "--cost-per-second",
                "0.0000021",
            ];
            agent_args("http://server:8080", Path::new("spool"), &prices)
        };
        let mut s = AgentSummary {
            uptime_s: 3600.0,
            runs: 10,
            measurements: 40,
            startup_ms_total: 1000.0,
            exec_ms_total: 2000.0,
            teardown_ms_total: 1000.0,
            ..AgentSummary::default()
        };
        s.price(&args("always-on"));
        assert!((s.cost - 0.0416).abs() < 1e-12 && (s.cost_per_1000_measurements - 1.04).abs() < 1e-9, "{s:?}");
        // 10 invocations and 4 s of invocation time.
        s.price(&args("on-demand"));
        assert!((s.cost - 1.04e-5).abs() < 1e-15, "{s:?}");
        assert!((s.cost_per_1000_measurements - 2.6e-4).abs() < 1e-12, "{s:?}");
        let mut idle = AgentSummary { uptime_s: 60.0, ..AgentSummary::default() };
        idle.price(&args("always-on"));
        assert_eq!(idle.cost_per_1000_measurements, 0.0, "no measurement: no figure, not a division by zero");
    }

    #[tokio::test]
    async fn a_killed_agent_s_spooled_result_is_delivered_by_its_successor() {
        let dir = tempfile::tempdir().unwrap();
        let served = Served::start(server(dir.path(), 60_000).await).await;
        let id = one_offs(&served.server, "eu", &["true"], 1).await[0];
        let job = served.server.poll("a1", "eu", AgentKind::AlwaysOn, 1, Duration::ZERO).await.remove(0);
        let spool = dir.path().join("spool");
        let flags = ["--location", "eu", "--name", "a1"];
        // The first process measures the run and spools the result, but the server is out of
        // reach; it is killed while it retries.
        let first = Agent::new(agent_args("http://127.0.0.1:1", &spool, &flags)).unwrap();
        let measuring = tokio::time::timeout(Duration::from_millis(700), first.execute(job.clone())).await;
        assert!(measuring.is_err(), "delivered to nowhere");
        assert!(first.summary.lock().await.delivery_retries >= 1);
        drop(first);
        assert_eq!(spooled(&spool).len(), 1, "the result outlives its process");
        // Its successor on the same spool delivers it at start-up.
        let second = Agent::new(agent_args(&served.url, &spool, &flags)).unwrap();
        let work = second.start();
        let runs = stored(&served.server, "eu", 1).await;
        until("the spool to empty", || async { spooled(&spool).is_empty() }).await;
        work.abort();
        let r = &runs[0];
        assert_eq!((r.task_id, r.seq, r.ok, r.agent.as_deref()), (id, job.seq, true, Some("a1")), "{r:?}");
        assert_eq!(served.server.get(id).await.unwrap().state, State::Finished);
        assert_eq!(second.summary.lock().await.delivered, 1);
    }
}
