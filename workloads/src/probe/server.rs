//! The server's state: tasks, the scheduler, per-location work queues, leases and results.
//!
//! # Invariants
//! - Every change is persisted before it is acknowledged or acted on: a task is stored
//!   before `create` answers, a run's sequence number is stored (in the task's tally)
//!   before the run is queued, a result is stored before the agent gets its 200.
//! - One lock ([`Server::inner`]) serializes every change, persistence included, so the
//!   store and memory never disagree about a task.
//! - A run ends exactly once: with the agent's result, or with a failure the server records
//!   when its lease runs out (no agent of the location took it, or the agent that took it
//!   delivered nothing). A result that arrives after that is refused as a duplicate.
//!
//! # Design
//! The scheduler sleeps until the earliest firing or lease deadline, in the process's clock
//! (virtual inside a node), or until a change wakes it. Agents long-poll their location's
//! queue. A restarted server reloads its tasks, re-arms a lease for every run that was
//! dispatched but has no stored result (its agent may still deliver it) and queues it
//! again (the old process may have died before any agent took it), and applies the
//! catch-up policy of [`super::schedule`] to firings it missed. A run re-queued that way
//! may be measured twice (by the agent that had it and by the one that takes the copy);
//! the first result stored is its result, a later one is answered as a duplicate, and a
//! copy still queued when the run has its result is dropped unseen.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::Mutex as StdMutex;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use tokio::sync::{Mutex, Notify};

use super::result::{ms_between, AgentKind, Job, RunResult, RunTiming};
use super::schedule::{due, first_fire};
use super::spec::{validate, FieldError, TaskSpec};
use super::store::{AnyStore, ResultQuery, Store, StoreError};
use super::task::{Event, IllegalTransition, LocationTally, State, Task, TaskType};

/// Now, in this process's clock (virtual inside a node).
pub fn now() -> DateTime<Utc> {
    Utc::now()
}

/// What a server operation can fail with; the API maps each to a status.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("invalid task")]
    Invalid(Vec<FieldError>),
    #[error("no task {0}")]
    NoTask(u64),
    #[error(transparent)]
    Conflict(#[from] IllegalTransition),
    #[error("result for task {task_id} location {location} seq {seq}: {reason}")]
    BadResult { task_id: u64, location: String, seq: u64, reason: String },
    #[error("results store: {0}")]
    Store(#[from] StoreError),
}

/// An agent the server has heard from.
#[derive(Debug, Clone, Serialize)]
pub struct AgentInfo {
    pub name: String,
    pub location: String,
    pub kind: AgentKind,
    pub last_seen: DateTime<Utc>,
    pub jobs_taken: u64,
}

#[derive(Debug, Clone)]
struct Outstanding {
    fire_time: DateTime<Utc>,
    deadline: DateTime<Utc>,
    /// The agent that took the run; `None` while it is queued (or unknown after a restart).
    agent: Option<String>,
}

type RunKey = (u64, String, u64);

#[derive(Debug, Default)]
struct Inner {
    tasks: BTreeMap<u64, Task>,
    next_id: u64,
    queues: HashMap<String, VecDeque<Job>>,
    outstanding: BTreeMap<RunKey, Outstanding>,
    agents: BTreeMap<String, AgentInfo>,
}

/// Settings of a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Locations known before any agent registers.
    pub locations: Vec<String>,
    /// How long a run may wait for an agent, and how long an agent may take to deliver.
    pub lease: Duration,
}

/// Counters of the API, for the scale experiment.
#[derive(Debug)]
pub struct ApiStats {
    pub requests: AtomicU64,
    /// API latency in virtual µs.
    pub latency_us: StdMutex<hdrhistogram::Histogram<u64>>,
    pub started: DateTime<Utc>,
}

/// The probe server.
#[derive(Debug)]
pub struct Server {
    store: AnyStore,
    inner: Mutex<Inner>,
    config: ServerConfig,
    /// Wakes the scheduler after a change.
    wake: Notify,
    /// Wakes long-polling agents after runs were queued.
    work: Notify,
    pub stats: ApiStats,
}

impl Server {
    /// Opens a server on `store`, reloading its tasks and re-arming leases of runs that
    /// have no stored result.
    pub async fn open(store: AnyStore, config: ServerConfig) -> Result<Self, StoreError> {
        let tasks = store.load_tasks().await?;
        let now = now();
        let lease = lease(&config);
        let mut inner = Inner { next_id: 1, ..Inner::default() };
        for task in tasks {
            inner.next_id = inner.next_id.max(task.id + 1);
            if !task.state.is_terminal() {
                let have: std::collections::HashSet<(String, u64)> =
                    store.result_keys(task.id).await?.into_iter().collect();
                for (location, tally) in &task.tally {
                    for seq in 1..tally.next_seq.max(1) {
                        if !have.contains(&(location.clone(), seq)) {
                            let fire_time = task.last_fire.unwrap_or(task.created_at);
                            inner.outstanding.insert(
                                (task.id, location.clone(), seq),
                                Outstanding { fire_time, deadline: now + lease, agent: None },
                            );
                            // Queued again: the old process may have died before an agent
                            // took it. If one did and still delivers, the first result
                            // stored wins and `take` drops the copy (see the module docs).
                            inner.queues.entry(location.clone()).or_default().push_back(Job {
                                task_id: task.id,
                                location: location.clone(),
                                seq,
                                measurement: task.measurement.clone(),
                                endpoints: task.endpoints.clone(),
                                fire_time,
                            });
                        }
                    }
                }
            }
            inner.tasks.insert(task.id, task);
        }
        tracing::info!(tasks = inner.tasks.len(), outstanding = inner.outstanding.len(), "server state loaded");
        let histogram = hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3)
            .map_err(|e| StoreError::Open { what: "latency histogram".into(), reason: e.to_string() })?;
        Ok(Self {
            store,
            inner: Mutex::new(inner),
            config,
            wake: Notify::new(),
            work: Notify::new(),
            stats: ApiStats { requests: AtomicU64::new(0), latency_us: StdMutex::new(histogram), started: now },
        })
    }

    /// Known locations: the configured ones plus those of agents that registered.
    pub async fn locations(&self) -> Vec<String> {
        let inner = self.inner.lock().await;
        let mut all = self.config.locations.clone();
        for a in inner.agents.values() {
            if !all.contains(&a.location) {
                all.push(a.location.clone());
            }
        }
        all
    }

    /// Validates and stores a new task; it is SCHEDULED (or FINISHED at once when its
    /// window holds no firing).
    pub async fn create(&self, spec: &TaskSpec) -> Result<Task, ServerError> {
        let known = self.locations().await;
        let mut inner = self.inner.lock().await;
        let mut task = validate(spec, inner.next_id, &known, now()).map_err(ServerError::Invalid)?;
        task.next_fire = first_fire(&task);
        if task.next_fire.is_none() {
            task.transition(Event::Finish, Some("its window holds no firing".into()))?;
        }
        self.store.save_task(&task).await?;
        inner.next_id += 1;
        inner.tasks.insert(task.id, task.clone());
        drop(inner);
        self.wake.notify_one();
        tracing::info!(id = task.id, kind = task.kind.as_str(), measurement = task.measurement.name(), "task created");
        Ok(task)
    }

    pub async fn get(&self, id: u64) -> Result<Task, ServerError> {
        self.inner.lock().await.tasks.get(&id).cloned().ok_or(ServerError::NoTask(id))
    }

    /// Tasks matching the filters, by id.
    pub async fn list(&self, state: Option<State>, kind: Option<TaskType>, location: Option<&str>) -> Vec<Task> {
        let inner = self.inner.lock().await;
        inner
            .tasks
            .values()
            .filter(|t| state.is_none_or(|s| t.state == s))
            .filter(|t| kind.is_none_or(|k| t.kind == k))
            .filter(|t| location.is_none_or(|l| t.locations.iter().any(|x| x == l)))
            .cloned()
            .collect()
    }

    /// Cancels a SCHEDULED or RUNNING task; anything else is a conflict.
    pub async fn cancel(&self, id: u64) -> Result<Task, ServerError> {
        let mut inner = self.inner.lock().await;
        let mut task = inner.tasks.get(&id).cloned().ok_or(ServerError::NoTask(id))?;
        task.transition(Event::Cancel, Some("canceled by a user".into()))?;
        task.next_fire = None;
        self.store.save_task(&task).await?;
        for q in inner.queues.values_mut() {
            q.retain(|j| j.task_id != id);
        }
        inner.outstanding.retain(|k, _| k.0 != id);
        inner.tasks.insert(id, task.clone());
        tracing::info!(id, "task canceled");
        Ok(task)
    }

    pub async fn results(&self, query: &ResultQuery) -> Result<Vec<RunResult>, ServerError> {
        Ok(self.store.results(query).await?)
    }

    pub async fn agents(&self) -> Vec<AgentInfo> {
        self.inner.lock().await.agents.values().cloned().collect()
    }

    /// Hands an agent up to `max` runs of its location, waiting up to `wait` for work.
    pub async fn poll(&self, agent: &str, location: &str, kind: AgentKind, max: usize, wait: Duration) -> Vec<Job> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.work.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let jobs = self.take(agent, location, kind, max).await;
            if !jobs.is_empty() || max == 0 {
                return jobs;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Vec::new();
            }
        }
    }

    async fn take(&self, agent: &str, location: &str, kind: AgentKind, max: usize) -> Vec<Job> {
        let mut inner = self.inner.lock().await;
        let now = now();
        let lease = lease(&self.config);
        let info = inner.agents.entry(agent.to_owned()).or_insert_with(|| AgentInfo {
            name: agent.to_owned(),
            location: location.to_owned(),
            kind,
            last_seen: now,
            jobs_taken: 0,
        });
        info.last_seen = now;
        info.location = location.to_owned();
        info.kind = kind;
        let mut jobs = Vec::new();
        while jobs.len() < max {
            let Some(job) = inner.queues.get_mut(location).and_then(VecDeque::pop_front) else {
                break;
            };
            if let Some(o) = inner.outstanding.get_mut(&(job.task_id, job.location.clone(), job.seq)) {
                o.agent = Some(agent.to_owned());
                o.deadline = now + lease;
                jobs.push(job);
            }
        }
        if let Some(info) = inner.agents.get_mut(agent) {
            info.jobs_taken += jobs.len() as u64;
        }
        jobs
    }

    /// Stores an agent's result (persisted before this returns `Ok`). Returns `false` for
    /// a run whose result is stored already.
    pub async fn deliver(&self, mut result: RunResult) -> Result<bool, ServerError> {
        let mut inner = self.inner.lock().await;
        let bad = |reason: &str| ServerError::BadResult {
            task_id: result.task_id,
            location: result.location.clone(),
            seq: result.seq,
            reason: reason.to_owned(),
        };
        let task = inner.tasks.get(&result.task_id).ok_or_else(|| bad("no such task"))?;
        let tally = task.tally.get(&result.location).ok_or_else(|| bad("the task does not run at this location"))?;
        if result.seq == 0 || result.seq >= tally.next_seq {
            return Err(bad("no such run"));
        }
        let received = now();
        result.received_at = Some(received);
        result.response_ms = Some(ms_between(result.fire_time, received));
        let key = (result.task_id, result.location.clone(), result.seq);
        let recorded = self.record(&mut inner, &key, result).await?;
        drop(inner);
        self.wake.notify_one();
        Ok(recorded)
    }

    /// Persists `result` with the task's updated tally, then updates memory.
    async fn record(&self, inner: &mut Inner, key: &RunKey, result: RunResult) -> Result<bool, ServerError> {
        let Some(mut task) = inner.tasks.get(&key.0).cloned() else {
            return Ok(false);
        };
        if let Some(t) = task.tally.get_mut(&key.1) {
            if result.ok {
                t.ok_runs += 1;
            } else {
                t.failed_runs += 1;
            }
        }
        let recorded = self.store.record(&task, &result).await?;
        inner.outstanding.remove(key);
        if recorded {
            inner.tasks.insert(key.0, task);
            self.maybe_end(inner, key.0).await?;
        }
        Ok(recorded)
    }

    /// Ends a running task that has no firing left and no run outstanding.
    async fn maybe_end(&self, inner: &mut Inner, id: u64) -> Result<(), ServerError> {
        let Some(task) = inner.tasks.get(&id) else {
            return Ok(());
        };
        if task.state != State::Running || task.next_fire.is_some() || inner.outstanding.keys().any(|k| k.0 == id) {
            return Ok(());
        }
        let mut task = task.clone();
        let event = LocationTally::task_outcome(task.tally.values());
        let reason = match event {
            Event::Fail => "every location failed",
            _ => "every run has ended",
        };
        task.transition(event, Some(reason.into()))?;
        self.store.save_task(&task).await?;
        tracing::info!(id, state = task.state.as_str(), "task ended");
        inner.tasks.insert(id, task);
        Ok(())
    }

    /// One scheduler pass at `now`: fires due tasks and fails expired runs. Returns the
    /// next instant something is due.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, ServerError> {
        let mut inner = self.inner.lock().await;
        let lease = lease(&self.config);
        let mut queued = false;
        let due_ids: Vec<u64> = inner
            .tasks
            .values()
            .filter(|t| !t.state.is_terminal() && t.next_fire.is_some_and(|f| f <= now))
            .map(|t| t.id)
            .collect();
        for id in due_ids {
            let Some(mut task) = inner.tasks.get(&id).cloned() else {
                continue;
            };
            let d = due(&task, task.next_fire, now);
            let Some(fire) = d.fire else { continue };
            if d.skipped > 0 {
                tracing::warn!(id, skipped = d.skipped, %fire, "missed firings coalesced into one (catch-up policy)");
            }
            task.skipped_firings += d.skipped;
            task.last_fire = Some(fire);
            task.next_fire = d.next;
            if task.state == State::Scheduled {
                task.transition(Event::Start, None)?;
            }
            let mut jobs = Vec::new();
            for location in task.locations.clone() {
                let seq = task.tally.entry(location.clone()).or_insert_with(LocationTally::new).take_seq();
                jobs.push(Job {
                    task_id: id,
                    location,
                    seq,
                    measurement: task.measurement.clone(),
                    endpoints: task.endpoints.clone(),
                    fire_time: fire,
                });
            }
            // The sequence numbers are durable before any agent sees the runs.
            self.store.save_task(&task).await?;
            inner.tasks.insert(id, task);
            for job in jobs {
                inner.outstanding.insert(
                    (id, job.location.clone(), job.seq),
                    Outstanding { fire_time: job.fire_time, deadline: now + lease, agent: None },
                );
                inner.queues.entry(job.location.clone()).or_default().push_back(job);
                queued = true;
            }
        }
        let expired: Vec<(RunKey, Outstanding)> =
            inner.outstanding.iter().filter(|(_, o)| o.deadline <= now).map(|(k, o)| (k.clone(), o.clone())).collect();
        for (key, o) in expired {
            let error = match &o.agent {
                Some(agent) => {
                    format!("agent {agent} delivered no result within the lease ({lease})")
                }
                None => format!("no agent of location {} took the run within the lease ({lease})", key.1),
            };
            tracing::warn!(task = key.0, location = %key.1, seq = key.2, %error, "run failed");
            if let Some(q) = inner.queues.get_mut(&key.1) {
                q.retain(|j| !(j.task_id == key.0 && j.seq == key.2));
            }
            let failure = RunResult {
                task_id: key.0,
                location: key.1.clone(),
                seq: key.2,
                agent: o.agent.clone(),
                agent_kind: None,
                fire_time: o.fire_time,
                ok: false,
                error: Some(error),
                timing: RunTiming::default(),
                endpoints: Vec::new(),
                finished_at: now,
                received_at: Some(now),
                response_ms: None,
            };
            self.record(&mut inner, &key, failure).await?;
        }
        // Tasks whose last firing went out with no location left to run.
        let ids: Vec<u64> = inner.tasks.keys().copied().collect();
        for id in ids {
            self.maybe_end(&mut inner, id).await?;
        }
        let next_fire = inner.tasks.values().filter(|t| !t.state.is_terminal()).filter_map(|t| t.next_fire).min();
        let next_lease = inner.outstanding.values().map(|o| o.deadline).min();
        drop(inner);
        if queued {
            self.work.notify_waiters();
        }
        Ok(match (next_fire, next_lease) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// Runs the scheduler until the process ends.
    pub async fn run_scheduler(&self) {
        loop {
            let next = match self.tick(now()).await {
                Ok(next) => next,
                Err(err) => {
                    tracing::error!(%err, "scheduler pass failed; retrying");
                    Some(now() + TimeDelta::seconds(1))
                }
            };
            let sleep = next
                .map(|t| t.signed_duration_since(now()).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                () = tokio::time::sleep(sleep) => {}
                () = self.wake.notified() => {}
            }
        }
    }

    /// Every task with its results, as the API returns them (the shutdown export).
    pub async fn export(&self) -> Result<serde_json::Value, ServerError> {
        let tasks = self.list(None, None, None).await;
        let results = self.store.results(&ResultQuery::default()).await?;
        Ok(serde_json::json!({
            "schema": 1,
            "exported_at": now(),
            "tasks": tasks,
            "results": results,
            "summary": super::summary::summarize(&results),
            "stats": self.stats_json().await,
        }))
    }

    /// What `GET /v1/stats` answers: requests, their rate and API latency (virtual µs)
    /// since start-up, and the skipped firings of every task.
    pub async fn stats_json(&self) -> serde_json::Value {
        let (count, p50, p99, max) = match self.stats.latency_us.lock() {
            Ok(h) => (h.len(), h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max()),
            Err(_) => (0, 0, 0, 0),
        };
        let tasks = self.list(None, None, None).await;
        let skipped: u64 = tasks.iter().map(|t| t.skipped_firings).sum();
        let elapsed = ms_between(self.stats.started, now()) / 1e3;
        let requests = self.stats.requests.load(std::sync::atomic::Ordering::Relaxed);
        #[expect(clippy::cast_precision_loss, reason = "counts far below 2^53")]
        let rate = requests as f64 / elapsed.max(1e-9);
        serde_json::json!({
            "requests": requests,
            "uptime_s": elapsed,
            "request_rate_per_s": rate,
            "latency_us": {"count": count, "p50": p50, "p99": p99, "max": max},
            "skipped_firings": skipped,
        })
    }
}

fn lease(config: &ServerConfig) -> TimeDelta {
    TimeDelta::from_std(config.lease).unwrap_or(TimeDelta::seconds(30))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::fixture::{server, spec};

    fn ok_result(job: &Job, ok: bool) -> RunResult {
        RunResult {
            task_id: job.task_id,
            location: job.location.clone(),
            seq: job.seq,
            agent: Some("a".into()),
            agent_kind: Some(AgentKind::AlwaysOn),
            fire_time: job.fire_time,
            ok,
            error: None,
            timing: RunTiming::default(),
            endpoints: Vec::new(),
            finished_at: now(),
            received_at: None,
            response_ms: None,
        }
    }

    #[tokio::test]
    async fn a_one_off_runs_once_per_location_and_finishes() {
        let dir = tempfile::tempdir().unwrap();
        let s = server(dir.path(), 60_000).await;
        let t = s
            .create(&spec(
                r#"{"type":"ONE-OFF","measurement":{"kind":"dns"},"endpoints":["x"],"locations":["eu","us"]}"#,
            ))
            .await
            .unwrap();
        assert_eq!(t.state, State::Scheduled);
        s.tick(now()).await.unwrap();
        assert_eq!(s.get(t.id).await.unwrap().state, State::Running);
        let eu = s.poll("a", "eu", AgentKind::AlwaysOn, 5, Duration::ZERO).await;
        let us = s.poll("b", "us", AgentKind::AlwaysOn, 5, Duration::ZERO).await;
        assert_eq!((eu.len(), us.len(), eu[0].seq, us[0].seq), (1, 1, 1, 1));
        assert!(s.deliver(ok_result(&eu[0], false)).await.unwrap());
        // A retried delivery is acknowledged but stores nothing new.
        assert!(!s.deliver(ok_result(&eu[0], false)).await.unwrap());
        assert_eq!(s.get(t.id).await.unwrap().state, State::Running);
        assert!(s.deliver(ok_result(&us[0], true)).await.unwrap());
        let done = s.get(t.id).await.unwrap();
        assert_eq!(done.state, State::Finished);
        assert_eq!((done.tally["eu"].failed_runs, done.tally["us"].ok_runs), (1, 1));
        // A finished task cannot be canceled.
        assert!(matches!(s.cancel(t.id).await, Err(ServerError::Conflict(_))));
    }

    #[tokio::test]
    async fn every_location_failing_fails_the_task() {
        let dir = tempfile::tempdir().unwrap();
        let s = server(dir.path(), 50).await;
        let t = s
            .create(&spec(
                r#"{"type":"ONE-OFF","measurement":{"kind":"dns"},"endpoints":["x"],"locations":["eu","us"]}"#,
            ))
            .await
            .unwrap();
        let start = now();
        s.tick(start).await.unwrap();
        // An agent takes the eu run and vanishes; nobody takes the us run.
        assert_eq!(s.poll("gone", "eu", AgentKind::OnDemand, 1, Duration::ZERO).await.len(), 1);
        s.tick(now() + TimeDelta::seconds(1)).await.unwrap();
        let failed = s.get(t.id).await.unwrap();
        assert_eq!(failed.state, State::Failed, "{failed:?}");
        let results = s.results(&ResultQuery { task_id: Some(t.id), ..ResultQuery::default() }).await.unwrap();
        assert_eq!(results.len(), 2);
        assert!(results.iter().all(|r| !r.ok && r.error.is_some()));
        assert!(results.iter().any(|r| r.error.as_deref().is_some_and(|e| e.contains("agent gone"))));
    }

    #[tokio::test]
    async fn unknown_location_and_bad_results_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = server(dir.path(), 60_000).await;
        let err = s
            .create(&spec(r#"{"type":"ONE-OFF","measurement":{"kind":"dns"},"endpoints":["x"],"locations":["mars"]}"#))
            .await
            .unwrap_err();
        assert!(matches!(err, ServerError::Invalid(ref e) if e[0].field == "locations[0]"));
        let t = s
            .create(&spec(r#"{"type":"ONE-OFF","measurement":{"kind":"dns"},"endpoints":["x"],"locations":["eu"]}"#))
            .await
            .unwrap();
        let job = Job {
            task_id: t.id,
            location: "eu".into(),
            seq: 1,
            measurement: t.measurement.clone(),
            endpoints: vec![],
            fire_time: now(),
        };
        // Not yet dispatched: seq 1 does not exist.
        assert!(matches!(s.deliver(ok_result(&job, true)).await, Err(ServerError::BadResult { .. })));
    }

    #[tokio::test]
    async fn a_restarted_server_keeps_sequence_numbers_and_accepts_late_results() {
        let dir = tempfile::tempdir().unwrap();
        let id;
        let job;
        {
            let s = server(dir.path(), 60_000).await;
            id = s
                .create(&spec(
                    r#"{"type":"RECURRING","measurement":{"kind":"dns"},"endpoints":["x"],"locations":["eu"],"interval":"1h"}"#,
                ))
                .await
                .unwrap()
                .id;
            s.tick(now()).await.unwrap();
            job = s.poll("a", "eu", AgentKind::AlwaysOn, 1, Duration::ZERO).await.remove(0);
            assert_eq!(job.seq, 1);
        }
        let s = server(dir.path(), 60_000).await;
        // The run is queued again for an agent of its location (the old process may have
        // died before one took it) …
        let copy = s.poll("b", "eu", AgentKind::AlwaysOn, 1, Duration::ZERO).await;
        assert_eq!(copy.iter().map(|j| (j.task_id, j.seq)).collect::<Vec<_>>(), [(id, 1)]);
        // … and the first delivery, here the original agent's retry, is its result.
        assert!(s.deliver(ok_result(&job, true)).await.unwrap());
        assert!(!s.deliver(ok_result(&copy[0], true)).await.unwrap(), "the copy's result is a duplicate");
        let t = s.get(id).await.unwrap();
        assert_eq!((t.state, t.tally["eu"].next_seq, t.tally["eu"].ok_runs), (State::Running, 2, 1));
        // The next firing (an hour on) gets seq 2.
        s.tick(t.next_fire.unwrap()).await.unwrap();
        assert_eq!(s.poll("a", "eu", AgentKind::AlwaysOn, 1, Duration::ZERO).await[0].seq, 2);
        // A second server's ids do not collide.
        let t2 = s
            .create(&spec(r#"{"type":"ONE-OFF","measurement":{"kind":"dns"},"endpoints":["x"],"locations":["eu"]}"#))
            .await
            .unwrap();
        assert_eq!(t2.id, id + 1);
    }

    #[tokio::test]
    async fn a_cron_task_fires_on_virtual_minute_boundaries_at_tdf_10() {
        // Inside a node at TDF 10 the process's clock reads v0 + (real − r0) / 10: the
        // scheduler sees only that clock. Drive it with one pass a real second for 30 real
        // minutes (3 virtual minutes), as the clock shim would present them. The start time
        // has a fraction of a second, as an API client's may.
        const TDF: i64 = 10;
        let dir = tempfile::tempdir().unwrap();
        let s = server(dir.path(), 3_600_000).await;
        let v0 = now();
        let virtual_at = |real_s: i64| v0 + TimeDelta::milliseconds(real_s * 1000 / TDF);
        let t = s
            .create(&spec(&format!(
                r#"{{"type":"RECURRING-SCHEDULED","cron":"* * * * *","start_time":"{}","stop_time":"{}",
                    "measurement":{{"kind":"dns"}},"endpoints":["x"],"locations":["eu"]}}"#,
                v0.to_rfc3339(),
                (v0 + TimeDelta::hours(1)).to_rfc3339()
            )))
            .await
            .unwrap();
        let mut fired = Vec::new();
        for real_s in 0..=30 * 60 {
            let v = virtual_at(real_s);
            let next = s.tick(v).await.unwrap();
            for job in s.poll("a", "eu", AgentKind::AlwaysOn, 10, Duration::ZERO).await {
                // Dispatched within one pass (100 ms virtual) of its boundary, never before it.
                assert!(job.fire_time <= v && v - job.fire_time < TimeDelta::milliseconds(100), "{job:?} at {v}");
                fired.push((real_s, job.fire_time));
                assert!(s.deliver(ok_result(&job, true)).await.unwrap());
            }
            // What the scheduler would sleep until: the next virtual minute mark.
            let next = next.unwrap();
            assert_eq!((next.timestamp() % 60, next.timestamp_subsec_nanos()), (0, 0), "{next} (v0 {v0})");
        }
        assert_eq!(fired.len(), 3, "one firing a virtual minute: {fired:?}");
        for (_, at) in &fired {
            assert_eq!((at.timestamp() % 60, at.timestamp_subsec_nanos()), (0, 0), "on a minute mark: {at}");
        }
        for w in fired.windows(2) {
            assert_eq!(w[1].1 - w[0].1, TimeDelta::minutes(1), "{fired:?}");
            // Ten real minutes apart (to the pass).
            assert!((w[1].0 - w[0].0 - 60 * TDF).abs() <= 1, "{fired:?}");
        }
        let task = s.get(t.id).await.unwrap();
        assert_eq!((task.tally["eu"].next_seq, task.tally["eu"].ok_runs, task.skipped_firings), (4, 3, 0));
    }

    #[tokio::test]
    async fn cancel_drops_queued_runs() {
        let dir = tempfile::tempdir().unwrap();
        let s = server(dir.path(), 60_000).await;
        let t = s
            .create(&spec(r#"{"type":"RECURRING","measurement":{"kind":"dns"},"endpoints":["x"],"locations":["eu"],"interval":"1s"}"#))
            .await
            .unwrap();
        s.tick(now()).await.unwrap();
        let c = s.cancel(t.id).await.unwrap();
        assert_eq!((c.state, c.next_fire), (State::Canceled, None));
        assert!(s.poll("a", "eu", AgentKind::AlwaysOn, 5, Duration::ZERO).await.is_empty());
        assert!(matches!(s.cancel(t.id).await, Err(ServerError::Conflict(_))));
    }
}
