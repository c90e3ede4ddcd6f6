//! A region's function platform: `POST /invoke` queues a task and runs it as an instance
//! process, in the manner of an asynchronous cloud-function invocation.
//!
//! Instances are real processes of the platform's node (this executable re-run with
//! `--role instance`), so their S3 traffic leaves from that node and crosses the emulated
//! network. The task goes to the instance as JSON on its standard input; the instance prints
//! what it used (S3 requests, bytes moved) as JSON on its standard output.
//!
//! # Model
//! - **Invocation latency I** (drawn per invocation) passes before the platform takes the
//!   task; **ready delay D** (drawn per attempt) passes between taking a slot and the
//!   function's code starting (a cold start). Both are [`Dist`]s of the topology.
//! - **Concurrency limit**: at most `concurrency` attempts hold a slot; further invocations
//!   wait in the queue for one (as throttled asynchronous invocations do), never refused.
//! - **Execution time limit**: an attempt still running after `time_limit` is killed and
//!   counts as failed.
//! - **Retries**: a failed attempt (non-zero exit, killed, not started) is retried up to
//!   `retries` times, with 1 s, 2 s, … between; after the last, a dead-letter record goes to
//!   `deadletter.jsonl` with the task and the last error.
//! - **Cost**: every attempt appends an invocation record to `invocations.jsonl`: billed
//!   duration (from its slot to its end, D included, as a cold start is billed), GB-seconds
//!   at the configured memory, its S3 requests and egress bytes, and its cost from the price
//!   table.
//!
//! - **Measurements**: the attempt's task carries when it took its slot, so the instance
//!   measures its I (from the coordinator's invocation) and D for the coordinator's planner
//!   ([`crate::fit`]); a retry measures neither.
//!
//! Times are the node's clock: a dilated run measures them in virtual seconds.
//!
//! # Limitations
//! Per-instance network variability is one bandwidth drawn per attempt (`bandwidth`) that
//! paces the instance's reads; without it every instance gets its node's link.

use crate::planner::Dist;
use axum::extract::State as AxState;
use axum::routing::post;
use axum::{Json, Router};
use rand::SeedableRng;
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The exit status of an instance whose copy failed and whose coordinator took the report:
/// the coordinator copies the key again after a backoff, so the platform does not retry it.
pub const REPORTED_EXIT: u8 = 4;

/// Prices in dollars (the topology's price table).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Prices {
    pub per_invocation: f64,
    pub per_gb_second: f64,
    /// Per S3 API request.
    pub per_request: f64,
    /// Per GB (10^9 bytes) leaving the region.
    pub per_egress_gb: f64,
}

impl Prices {
    /// The cost of one attempt.
    pub fn cost(&self, gb_seconds: f64, requests: u64, egress_bytes: u64) -> f64 {
        self.per_invocation
            + self.per_gb_second * gb_seconds
            + self.per_request * requests as f64
            + self.per_egress_gb * egress_bytes as f64 / 1e9
    }
}

/// The platform's model.
#[derive(Debug, Clone)]
pub struct Model {
    pub invoke: Dist,
    pub ready: Dist,
    pub concurrency: usize,
    pub time_limit: Duration,
    pub retries: u32,
    pub memory_mb: u32,
    pub prices: Prices,
    pub seed: u64,
    /// The bandwidth of each attempt (bytes per second), drawn per attempt; none: every
    /// instance gets its node's link.
    pub bandwidth: Option<Dist>,
}

/// What one attempt used and cost (a line of `invocations.jsonl`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Invocation {
    pub instance: String,
    pub key: String,
    pub attempt: u32,
    pub ok: bool,
    /// Why it failed.
    pub error: Option<String>,
    pub invoke_s: f64,
    pub ready_s: f64,
    /// Billed duration: from the slot to the end (ready delay included).
    pub duration_s: f64,
    pub memory_mb: u32,
    pub gb_seconds: f64,
    pub requests: u64,
    pub egress_bytes: u64,
    pub cost: f64,
    pub end_ms: u64,
    /// The replicator that invoked it.
    #[serde(default)]
    pub system: String,
    /// The object's size (none for a delete): the report's cost per object by size class.
    #[serde(default)]
    pub size: Option<u64>,
    /// The bandwidth drawn for the attempt (bytes/s), when the platform draws one.
    #[serde(default)]
    pub bandwidth: Option<f64>,
}

/// A task given up after its retries (a line of `deadletter.jsonl`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DeadLetter {
    pub task: crate::task::Task,
    pub attempts: u32,
    pub error: String,
    pub at_ms: u64,
}

struct Platform {
    /// The instance's program and arguments.
    command: Vec<std::ffi::OsString>,
    model: Model,
    slots: tokio::sync::Semaphore,
    dir: PathBuf,
    rng: Mutex<rand::rngs::StdRng>,
    next: AtomicU64,
}

/// Runs the platform on `listen` until the process ends; records go to `dir`.
pub async fn serve(listen: std::net::SocketAddr, model: Model, dir: &Path) -> std::io::Result<()> {
    let command = vec![std::env::current_exe()?.into_os_string(), "--role".into(), "instance".into()];
    let platform = Arc::new(Platform::new(command, model, dir));
    let app = Router::new().route("/invoke", post(invoke)).with_state(platform);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(%listen, "function platform listening");
    axum::serve(listener, app).await
}

impl Platform {
    fn new(command: Vec<std::ffi::OsString>, model: Model, dir: &Path) -> Platform {
        Platform {
            command,
            slots: tokio::sync::Semaphore::new(model.concurrency.max(1)),
            rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(model.seed)),
            model,
            dir: dir.to_owned(),
            next: AtomicU64::new(0),
        }
    }
}

/// Accepts the task (202-style: the answer does not wait for the function).
async fn invoke(AxState(p): AxState<Arc<Platform>>, Json(task): Json<crate::task::Task>) -> Json<serde_json::Value> {
    let id = p.next.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move { run_with_retries(&p, task).await });
    Json(serde_json::json!({"accepted": id}))
}

fn draw(p: &Platform, d: &Dist) -> f64 {
    d.draw(&mut *p.rng.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
}

async fn run_with_retries(p: &Platform, task: crate::task::Task) {
    let invoke_s = draw(p, &p.model.invoke);
    tokio::time::sleep(Duration::from_secs_f64(invoke_s)).await;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (inv, reported) = attempt_once(p, &task, attempt, invoke_s).await;
        let (ok, error) = (inv.ok, inv.error.clone());
        crate::record::append_jsonl(&p.dir.join("invocations.jsonl"), &inv, "platform");
        if ok {
            return;
        }
        let error = error.unwrap_or_default();
        if reported {
            tracing::info!(key = %task.key, instance = %task.instance, %error, "attempt failed; its coordinator retries the copy");
            return;
        }
        if attempt > p.model.retries {
            tracing::warn!(key = %task.key, instance = %task.instance, attempts = attempt, %error, "dead letter");
            let dead = DeadLetter { task, attempts: attempt, error, at_ms: crate::coordinator::now_ms() };
            crate::record::append_jsonl(&p.dir.join("deadletter.jsonl"), &dead, "platform");
            return;
        }
        tracing::info!(key = %task.key, instance = %task.instance, attempt, %error, "attempt failed; retrying");
        tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
    }
}

/// One attempt; also answers whether it failed with its coordinator told (no retry).
async fn attempt_once(p: &Platform, task: &crate::task::Task, attempt: u32, invoke_s: f64) -> (Invocation, bool) {
    let Ok(_slot) = p.slots.acquire().await else {
        let at = Attempt { number: attempt, invoke_s, ready_s: 0.0, started: Instant::now(), bandwidth: None };
        return (finish(p, task, &at, Err("platform closing".into()), Usage::default()), false);
    };
    let started = Instant::now();
    // The instance measures I up to here and D from here (the planner's samples).
    let slot_us = crate::task::now_us();
    let ready_s = draw(p, &p.model.ready);
    // This attempt's network: instances of one configuration differ.
    let bandwidth = p.model.bandwidth.as_ref().map(|d| draw(p, d).max(1.0));
    let at = Attempt { number: attempt, invoke_s, ready_s, started, bandwidth };
    tokio::time::sleep(Duration::from_secs_f64(ready_s)).await;
    let mut task = task.clone();
    task.timing.slot_us = Some(slot_us);
    if attempt > 1 {
        // A retry's time since the invocation is the failed attempts', not an I to plan with.
        task.timing.invoked_us = None;
    }
    if bandwidth.is_some() {
        task.bandwidth = bandwidth;
    }
    let (outcome, usage, reported) = match spawn_and_wait(p, &task).await {
        Ok(((status, reported), usage)) => (status, usage, reported),
        Err(err) => (Err(err), Usage::default(), false),
    };
    (finish(p, &task, &at, outcome, usage), reported)
}

/// One attempt's timing.
struct Attempt {
    number: u32,
    invoke_s: f64,
    ready_s: f64,
    /// When it took its slot (billing starts).
    started: Instant,
    bandwidth: Option<f64>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct Usage {
    requests: u64,
    bytes: u64,
}

fn finish(
    p: &Platform,
    task: &crate::task::Task,
    at: &Attempt,
    outcome: Result<(), String>,
    usage: Usage,
) -> Invocation {
    let duration_s = at.started.elapsed().as_secs_f64();
    let gb_seconds = f64::from(p.model.memory_mb) / 1024.0 * duration_s;
    Invocation {
        instance: task.instance.clone(),
        key: task.key.clone(),
        attempt: at.number,
        ok: outcome.is_ok(),
        error: outcome.err(),
        invoke_s: at.invoke_s,
        ready_s: at.ready_s,
        duration_s,
        memory_mb: p.model.memory_mb,
        gb_seconds,
        requests: usage.requests,
        egress_bytes: usage.bytes,
        cost: p.model.prices.cost(gb_seconds, usage.requests, usage.bytes),
        end_ms: crate::coordinator::now_ms(),
        system: task.system.clone(),
        size: (!matches!(task.mode, crate::task::Mode::Delete)).then_some(task.size),
        bandwidth: at.bandwidth,
    }
}

/// The outcome of an attempt and whether its failure was reported to the coordinator.
type Outcome = (Result<(), String>, bool);

/// Runs one instance process to its end or the time limit.
async fn spawn_and_wait(p: &Platform, task: &crate::task::Task) -> Result<(Outcome, Usage), String> {
    let (program, args) = p.command.split_first().ok_or("no instance command")?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("start the instance: {e}"))?;
    let body = serde_json::to_vec(task).map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&body).await.map_err(|e| format!("hand the task over: {e}"))?;
    }
    let pid = child.id();
    tracing::info!(key = %task.key, instance = %task.instance, ?pid, "instance started");
    let mut stdout = child.stdout.take();
    let run = async {
        let mut text = String::new();
        if let Some(out) = stdout.as_mut() {
            let _ = out.read_to_string(&mut text).await;
        }
        (child.wait().await, text)
    };
    match tokio::time::timeout(p.model.time_limit, run).await {
        Ok((Ok(status), text)) => {
            let usage = text.lines().rev().find_map(|l| serde_json::from_str::<Usage>(l).ok()).unwrap_or_default();
            let reported = status.code() == Some(i32::from(REPORTED_EXIT));
            let outcome = match (status.success(), reported) {
                (true, _) => Ok(()),
                (false, true) => Err("the copy failed; its coordinator retries it".to_owned()),
                (false, false) => Err(format!("instance exited with {status}")),
            };
            Ok(((outcome, reported), usage))
        }
        Ok((Err(err), _)) => Err(format!("wait for the instance: {err}")),
        // Dropping the future drops the child: kill_on_drop ends it.
        Err(_) => Ok((
            (Err(format!("execution time limit of {:.1} s reached; killed", p.model.time_limit.as_secs_f64())), false),
            Usage::default(),
        )),
    }
}

#[cfg(test)]
mod tests;
