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
    let agent = Arc::new(Agent {
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
    });
    tracing::info!(agent = %agent.name, location = %agent.location, kind = agent.args.kind.as_str(), "agent started");
    let started = Instant::now();
    for path in spooled(&agent.args.spool) {
        let a = Arc::clone(&agent);
        tokio::spawn(async move { a.redeliver(&path).await });
    }
    let work = {
        let a = Arc::clone(&agent);
        tokio::spawn(async move { a.work(poll_wait).await })
    };
    crate::runtime::shutdown_signal().await;
    work.abort();
    let mut summary = agent.summary.lock().await.clone();
    summary.uptime_s = started.elapsed().as_secs_f64();
    summary.cost = match agent.args.kind {
        AgentKind::AlwaysOn => agent.args.cost_per_hour * summary.uptime_s / 3600.0,
        AgentKind::OnDemand => {
            #[expect(clippy::cast_precision_loss, reason = "counts far below 2^53")]
            let invocations = summary.runs as f64;
            let busy_s = (summary.startup_ms_total + summary.exec_ms_total + summary.teardown_ms_total) / 1e3;
            agent.args.cost_per_invocation * invocations + agent.args.cost_per_second * busy_s
        }
    };
    #[expect(clippy::cast_precision_loss, reason = "counts far below 2^53")]
    let per = if summary.measurements > 0 { summary.cost / summary.measurements as f64 * 1000.0 } else { 0.0 };
    summary.cost_per_1000_measurements = per;
    std::fs::write(&agent.args.summary, serde_json::to_vec_pretty(&summary)?)?;
    tracing::info!(runs = summary.runs, delivered = summary.delivered, "agent stopped");
    Ok(())
}

fn spooled(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "json")).collect())
        .unwrap_or_default();
    files.sort();
    files
}

impl Agent {
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
        let t0 = Instant::now();
        tokio::time::sleep(startup).await;
        let startup_ms = t0.elapsed().as_secs_f64() * 1e3;
        let t1 = Instant::now();
        let deadline = Duration::from_nanos(self.args.tool_timeout);
        let endpoints =
            futures::future::join_all(job.endpoints.iter().map(|e| measure(&job.measurement, e, deadline))).await;
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
        let t2 = Instant::now();
        tokio::time::sleep(teardown).await;
        self.summary.lock().await.teardown_ms_total += t2.elapsed().as_secs_f64() * 1e3;
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
