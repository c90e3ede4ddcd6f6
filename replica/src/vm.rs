//! A VM-style replicator's machines (as Skyplane provisions them): a pool of long-lived VM
//! processes in a node, which take copy tasks at `POST /invoke` like a function platform.
//!
//! # Model
//! - **VMs are processes**: this executable re-run with `--role vm`, alive across jobs. A VM
//!   takes one task at a time (a JSON line on its standard input) and answers one line on its
//!   standard output with what the copy used; its bytes leave from the pool's node.
//! - **Provisioning**: a job that finds no idle VM, while fewer than `max_vms` exist, has a
//!   new VM provisioned: `provision` seconds (drawn per VM) pass before it is usable. At the
//!   limit, jobs wait for a VM to become idle.
//! - **Keep-alive**: a VM idle for `keep_alive` after its last job is shut down; a later job
//!   provisions one again.
//! - **Parallel streams**: one VM copies one object; the coordinator gives a large object's
//!   task several streams, each pulling parts from the part pool ([`crate::task`]).
//! - **Cost**: a VM is billed from its provisioning request to its shutdown at
//!   `price_per_hour`, per second. The billed time is appended as `cost` records
//!   (`system: vm`) to `replication.jsonl` at the end of every job and at shutdown, so a run
//!   killed at its end loses only the time since a VM's last job. The copies' requests and
//!   egress are priced by the coordinator's fee ([`crate::task::Fee`]) in each copy's record.
//!   Every job appends a line to `vm-jobs.jsonl` (VM, key, time, usage).
//!
//! Times are the node's clock: a dilated run measures them in virtual seconds.
//!
//! # Limitations
//! No minimum billing period and no per-VM bandwidth draw (a VM gets its node's link); a
//! job's failure is reported to the coordinator by the copy itself, and a VM that dies is
//! replaced by the next job (its key is copied again when its lock's lease runs out).

use crate::planner::Dist;
use axum::extract::State as AxState;
use axum::routing::post;
use axum::{Json, Router};
use rand::SeedableRng;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// The pool's model.
#[derive(Debug, Clone)]
pub struct Model {
    /// Seconds from a VM's request to its being usable.
    pub provision: Dist,
    /// A VM idle this long after its last job is shut down.
    pub keep_alive: Duration,
    /// VMs at most (provisioning, busy or idle).
    pub max_vms: usize,
    /// Dollars per VM-hour.
    pub price_per_hour: f64,
    pub seed: u64,
}

/// What a VM answers for one job.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct JobOutcome {
    pub ok: bool,
    pub error: Option<String>,
    pub requests: u64,
    pub bytes: u64,
}

/// A line of `vm-jobs.jsonl`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct JobRecord {
    pub vm: u64,
    pub key: String,
    pub instance: String,
    /// Seconds from the job's arrival to a VM taking it (provisioning or a wait included).
    pub wait_s: f64,
    pub duration_s: f64,
    /// Whether a VM was provisioned for this job.
    pub provisioned: bool,
    pub ok: bool,
    pub error: Option<String>,
    pub requests: u64,
    pub bytes: u64,
    pub end_ms: u64,
}

struct Vm {
    id: u64,
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    /// Billed up to here.
    billed_to: Instant,
}

struct Idle {
    vm: Vm,
    since: Instant,
}

#[derive(Default)]
struct Machines {
    idle: Vec<Idle>,
    /// VMs in existence: provisioning, busy or idle.
    count: usize,
}

struct Pool {
    command: Vec<std::ffi::OsString>,
    model: Model,
    machines: Mutex<Machines>,
    freed: tokio::sync::Notify,
    records: crate::record::Records,
    dir: PathBuf,
    rng: Mutex<rand::rngs::StdRng>,
    next: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs the pool on `listen` until the process ends; records go to `dir`.
pub async fn serve(listen: std::net::SocketAddr, model: Model, dir: &Path) -> std::io::Result<()> {
    let command = vec![std::env::current_exe()?.into_os_string(), "--role".into(), "vm".into()];
    let pool = start(command, model, dir);
    let app = Router::new().route("/invoke", post(invoke)).with_state(pool);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(%listen, "VM pool listening");
    axum::serve(listener, app).await
}

/// The pool with its reaper of idle VMs running.
fn start(command: Vec<std::ffi::OsString>, model: Model, dir: &Path) -> Arc<Pool> {
    let pool = Arc::new(Pool {
        command,
        rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(model.seed)),
        model,
        machines: Mutex::new(Machines::default()),
        freed: tokio::sync::Notify::new(),
        records: crate::record::Records::new(dir),
        dir: dir.to_owned(),
        next: AtomicU64::new(0),
    });
    tokio::spawn(reap(pool.clone()));
    pool
}

/// Accepts the task (the answer does not wait for the copy).
async fn invoke(AxState(p): AxState<Arc<Pool>>, Json(task): Json<crate::task::Task>) -> Json<serde_json::Value> {
    tokio::spawn(async move { job(&p, task).await });
    Json(serde_json::json!({"accepted": true}))
}

async fn job(p: &Pool, task: crate::task::Task) {
    let arrived = Instant::now();
    let (mut vm, provisioned) = match acquire(p).await {
        Ok(got) => got,
        Err(err) => {
            tracing::warn!(key = %task.key, %err, "no VM for the job; its lock's lease brings the key back");
            return;
        }
    };
    let wait_s = arrived.elapsed().as_secs_f64();
    let began = Instant::now();
    let outcome = run_on(&mut vm, &task).await;
    let (ok, error, requests, bytes) = match &outcome {
        Ok(o) => (o.ok, o.error.clone(), o.requests, o.bytes),
        Err(err) => (false, Some(err.clone()), 0, 0),
    };
    crate::record::append_jsonl(
        &p.dir.join("vm-jobs.jsonl"),
        &JobRecord {
            vm: vm.id,
            key: task.key.clone(),
            instance: task.instance.clone(),
            wait_s,
            duration_s: began.elapsed().as_secs_f64(),
            provisioned,
            ok,
            error,
            requests,
            bytes,
            end_ms: crate::coordinator::now_ms(),
        },
        "VM pool",
    );
    // The VM's time since it was last billed (its provisioning, or its idle wait for this
    // job) is charged to this job's object.
    let size = (!matches!(task.mode, crate::task::Mode::Delete)).then_some(task.size);
    bill(p, &mut vm, "ran", size);
    match outcome {
        Ok(_) => {
            lock(&p.machines).idle.push(Idle { vm, since: Instant::now() });
            p.freed.notify_one();
        }
        // The VM process is gone or broken: it is shut down and the next job provisions one.
        Err(err) => {
            tracing::warn!(vm = vm.id, %err, "VM failed; shutting it down");
            shut_down(p, vm).await;
        }
    }
}

/// An idle VM, or a new one provisioned while under the limit, or (at the limit) the next
/// one to become idle. Also answers whether it was provisioned for this job.
async fn acquire(p: &Pool) -> Result<(Vm, bool), String> {
    loop {
        let freed = p.freed.notified();
        {
            let mut m = lock(&p.machines);
            if let Some(idle) = m.idle.pop() {
                return Ok((idle.vm, false));
            }
            if m.count < p.model.max_vms.max(1) {
                m.count += 1;
                break;
            }
        }
        freed.await;
    }
    match provision(p).await {
        Ok(vm) => Ok((vm, true)),
        Err(err) => {
            lock(&p.machines).count -= 1;
            p.freed.notify_one();
            Err(err)
        }
    }
}

async fn provision(p: &Pool) -> Result<Vm, String> {
    let requested = Instant::now();
    let id = p.next.fetch_add(1, Ordering::Relaxed);
    let wait = p.model.provision.draw(&mut *lock(&p.rng)).max(0.0);
    tokio::time::sleep(Duration::from_secs_f64(wait)).await;
    let (program, args) = p.command.split_first().ok_or("no VM command")?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("start a VM: {e}"))?;
    let stdin = child.stdin.take().ok_or("the VM has no standard input")?;
    let stdout = child.stdout.take().ok_or("the VM has no standard output")?;
    tracing::info!(vm = id, provision_s = wait, pid = ?child.id(), "VM provisioned");
    Ok(Vm { id, child, stdin, lines: tokio::io::BufReader::new(stdout).lines(), billed_to: requested })
}

/// Hands `task` to `vm` and reads its answer.
async fn run_on(vm: &mut Vm, task: &crate::task::Task) -> Result<JobOutcome, String> {
    let mut line = serde_json::to_vec(task).map_err(|e| e.to_string())?;
    line.push(b'\n');
    vm.stdin.write_all(&line).await.map_err(|e| format!("hand the task over: {e}"))?;
    vm.stdin.flush().await.map_err(|e| format!("hand the task over: {e}"))?;
    let answer = vm.lines.next_line().await.map_err(|e| format!("read the VM's answer: {e}"))?;
    let answer = answer.ok_or("the VM exited during the job")?;
    serde_json::from_str(&answer).map_err(|e| format!("the VM's answer {answer:?}: {e}"))
}

/// Appends a `cost` record for `vm`'s time since it was last billed, charged to a copy of an
/// object of `size` bytes (none: to no copy).
fn bill(p: &Pool, vm: &mut Vm, what: &str, size: Option<u64>) {
    let now = Instant::now();
    let seconds = now.saturating_duration_since(vm.billed_to).as_secs_f64();
    vm.billed_to = now;
    p.records.write(&crate::record::Record::Cost {
        system: "vm".into(),
        what: format!("vm-{} {what} {seconds:.3} s", vm.id),
        usd: seconds * p.model.price_per_hour / 3600.0,
        at_ms: crate::coordinator::now_ms(),
        size,
    });
}

async fn shut_down(p: &Pool, mut vm: Vm) {
    bill(p, &mut vm, "up until shutdown", None);
    let _ = vm.child.start_kill();
    let _ = vm.child.wait().await;
    lock(&p.machines).count -= 1;
    p.freed.notify_one();
}

/// Shuts down every VM idle for the keep-alive.
async fn reap(p: Arc<Pool>) {
    let every = (p.model.keep_alive / 4).clamp(Duration::from_millis(10), Duration::from_millis(250));
    loop {
        tokio::time::sleep(every).await;
        let expired: Vec<Vm> = {
            let mut m = lock(&p.machines);
            let (gone, kept): (Vec<Idle>, Vec<Idle>) =
                std::mem::take(&mut m.idle).into_iter().partition(|i| i.since.elapsed() >= p.model.keep_alive);
            m.idle = kept;
            gone.into_iter().map(|i| i.vm).collect()
        };
        for vm in expired {
            tracing::info!(vm = vm.id, "VM idle for the keep-alive; shutting it down");
            shut_down(&p, vm).await;
        }
    }
}

/// A VM's life (`--role vm`): runs each task line of standard input to its end and answers
/// one [`JobOutcome`] line on standard output, until standard input closes.
pub async fn worker() -> std::io::Result<()> {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut out = tokio::io::stdout();
    while let Some(line) = lines.next_line().await? {
        let outcome = match serde_json::from_str::<crate::task::Task>(&line) {
            Ok(task) => {
                let meter = crate::task::Meter::default();
                let result = crate::task::run_metered(&task, &meter).await;
                let error = match &result {
                    Err(e) if !e.superseded() => Some(crate::error_chain(e)),
                    _ => None,
                };
                JobOutcome {
                    ok: error.is_none(),
                    error,
                    requests: meter.requests.load(Ordering::Relaxed),
                    bytes: meter.bytes.load(Ordering::Relaxed),
                }
            }
            Err(e) => JobOutcome { error: Some(format!("parse the task: {e}")), ..JobOutcome::default() },
        };
        let mut text = serde_json::to_vec(&outcome).map_err(std::io::Error::other)?;
        text.push(b'\n');
        out.write_all(&text).await?;
        out.flush().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
