//! The replicator's orchestrator: receives the store's notifications, keeps the shared state,
//! plans each copy and invokes function instances.
//!
//! # Design
//! - `POST /events` takes AWS event bodies and records each version (`State::observe`).
//! - A dispatch loop takes the lock of every lagging key, plans its copy
//!   ([`crate::planner`]) and invokes the instances: one `Whole` or `Delete` task, or for an
//!   object over the threshold a destination multipart upload whose parts fill the pool and
//!   `n` `Parts` tasks that pull from it.
//! - Instances call back: `POST /claim` and `POST /finish` (one each per part) and
//!   `POST /done`, which releases the lock. A stale release (the source changed) makes the
//!   key lag again and the loop copies its latest version.
//! - A task runs in the process of a function platform of the chosen region (its `/invoke`),
//!   or in this process when the plan says the orchestrator copies it or no platform is
//!   configured for that region.
//! - State lives in a database (SQLite on disk, or PostgreSQL with `--state-db`): a restarted
//!   coordinator resumes the lagging keys, and a lock whose lease ran out (instance or
//!   coordinator killed) is taken again.
//! - The same coordinator (state, events, reconciliation, records, the copy code of
//!   [`crate::task`]) also runs the baselines ([`System`]): a provider-style replicator copies
//!   each object whole, in one stream, from this process after a drawn delay; a VM-style one
//!   sends each copy to a VM pool ([`crate::vm`]) where one machine copies it with parallel
//!   ranges. Neither plans, applies changelog hints or batches.

use crate::client::Endpoint;
use crate::planner::{self, Dist, RegionModel};
use crate::state::{PartView, Release, State, Version};
use crate::task::{self, Claim, Done, Failed, Finish, Finished, Mode, Renew, Task};
use axum::extract::State as AxState;
use axum::routing::post;
use axum::{Json, Router};
use object_store::multipart::MultipartStore;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The coordinator's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: std::net::SocketAddr,
    /// This coordinator's URL as instances reach it.
    pub url: String,
    pub src: Endpoint,
    pub dst: Endpoint,
    /// Function platforms by region name (`/invoke` base URLs). The source region comes first.
    pub platforms: Vec<(String, Option<String>)>,
    pub threshold: u64,
    pub part_size: u64,
    pub max_instances: u32,
    pub lease: Duration,
    /// Added to the lease of a lock taken to start a copy: the time its instance may wait in
    /// the platform's queue (a concurrency limit) and start before it can renew. A lease
    /// counted from the invocation lapses under a backlog, the key is taken over and invoked
    /// again, adding to the backlog: after a restart every key was copied over and over, each
    /// copy fenced before it finished, and the destination never converged.
    pub start_grace: Duration,
    pub slo: Duration,
    /// The configured model of each region (source first): the planner's prior, replaced
    /// kind by kind by distributions fitted to what the instances measure ([`crate::fit`]).
    pub models: Vec<RegionModel>,
    /// The measurement window and the samples a fit needs.
    pub fitting: crate::fit::Fitting,
    /// How often the stores are listed to repair what events missed (and once at start).
    pub reconcile: Duration,
    /// Where the replication records go (`replication.jsonl`); none: not written.
    pub records: Option<std::path::PathBuf>,
    /// Which replicator this is: λReplica or a baseline (its name is in its records and its
    /// tasks' bills).
    pub system: System,
    /// How the parts of an object go to its instances (λReplica's part pool, or the static
    /// ablation).
    pub assignment: Assignment,
    /// A baseline's price of each copy ([`task::Fee`]), recorded with it; none: the function
    /// platforms bill the copies.
    pub fee: Option<task::Fee>,
    /// Apply changelog hints (COPY, MOVE, CONCAT, APPEND) at the destination
    /// ([`crate::changelog`]); off: every version is copied as bytes (the ablation).
    pub changelog: bool,
    /// SLO-bounded batching: hold a written key until its deadline less the plan's T_rep
    /// less `batch_margin`, so that the writes made meanwhile are covered by one copy.
    pub batching: bool,
    pub batch_margin: Duration,
}

/// The replicator a coordinator runs.
#[derive(Debug, Clone, PartialEq)]
pub enum System {
    /// λReplica: planned copies by function instances, parts through the pool.
    Lambda,
    /// Provider-style (as S3 Cross-Region Replication): each object whole, in one stream, from
    /// this process (its node), `delay` seconds (drawn per copy) after the copy is due.
    Provider { delay: Dist },
    /// VM-style (as Skyplane): each copy goes to the VM pool at the source region's platform
    /// URL (else the destination's); one VM copies an object, large ones in `streams`
    /// parallel ranges from the part pool.
    Vm { streams: u32 },
}

impl System {
    /// The name in records and bills: `lambda`, `provider`, `vm`.
    pub fn name(&self) -> &'static str {
        match self {
            System::Lambda => "lambda",
            System::Provider { .. } => "provider",
            System::Vm { .. } => "vm",
        }
    }
}

/// How the parts of a large object reach its `n` instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignment {
    /// Each instance claims the next free part when it is ready for one (λReplica).
    Pool,
    /// The parts are divided evenly among the instances up front (the ablation): no claims,
    /// so a slow instance is not helped by the others.
    Static,
}

/// The backoff of a key whose copy failed: 1 s after the first failure, doubling, at most
/// 30 s (the node's clock: virtual seconds in a dilated run).
pub fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(5);
    Duration::from_secs(1 << doublings).min(Duration::from_secs(30))
}

struct Shared {
    state: Mutex<State>,
    cfg: Config,
    next_job: AtomicU64,
    /// Multipart uploads by job, to abort a stale one.
    uploads: Mutex<HashMap<String, String>>,
    /// The plan of each job started by this process (lost on a restart).
    plans: Mutex<HashMap<String, Planned>>,
    records: Option<crate::record::Records>,
    http: reqwest::Client,
    /// Draws a provider's delays.
    rng: Mutex<rand::rngs::StdRng>,
    /// The planner's models, refined by the instances' samples.
    models: Mutex<crate::fit::Models>,
}

/// A started job's plan, kept for its replication record.
#[derive(Debug, Clone)]
struct Planned {
    region: String,
    instances: u32,
    predicted_s: Option<f64>,
}

/// Runs the coordinator until the process ends.
pub async fn serve(cfg: Config, mut state: State) -> std::io::Result<()> {
    // Copies started before a restart resume: their instances renew once they reach us.
    match state.resume_leases(now_ms() + cfg.lease.as_millis() as u64) {
        Ok(0) => {}
        Ok(n) => tracing::info!(locks = n, "resuming the copies under way before the restart"),
        Err(err) => tracing::warn!(err = %crate::error_chain(&err), "leases not resumed; their copies are taken over"),
    }
    let shared = Arc::new(Shared {
        state: Mutex::new(state),
        cfg: cfg.clone(),
        next_job: AtomicU64::new(u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0) << 16),
        uploads: Mutex::new(HashMap::new()),
        plans: Mutex::new(HashMap::new()),
        records: cfg.records.as_deref().map(crate::record::Records::new),
        http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default(),
        rng: Mutex::new(rand::SeedableRng::seed_from_u64(now_ms())),
        models: Mutex::new(crate::fit::Models::new(cfg.models.clone(), cfg.fitting)),
    });
    let app = Router::new()
        .route("/events", post(events))
        .route("/claim", post(claim))
        .route("/finish", post(finish))
        .route("/done", post(done))
        .route("/renew", post(renew))
        .route("/failed", post(failed))
        .with_state(shared.clone());
    tokio::spawn(dispatch(shared.clone()));
    tokio::spawn(deadline_loop(shared.clone()));
    if cfg.system == System::Lambda {
        tokio::spawn(model_loop(shared.clone()));
    }
    tokio::spawn(reconcile_loop(shared));
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    tracing::info!(listen = %cfg.listen, "coordinator listening");
    axum::serve(listener, app).await
}

type Shr = AxState<Arc<Shared>>;
type Answer<T> = Result<Json<T>, (axum::http::StatusCode, String)>;

fn internal(err: impl std::fmt::Display) -> (axum::http::StatusCode, String) {
    tracing::error!(%err, "state update failed");
    (axum::http::StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
}

fn with_state<T>(
    s: &Shared,
    f: impl FnOnce(&mut State) -> Result<T, crate::state::StateError>,
) -> Result<T, (axum::http::StatusCode, String)> {
    let mut state = s.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    f(&mut state).map_err(internal)
}

async fn events(AxState(s): Shr, Json(body): Json<crate::event::Notification>) -> Answer<serde_json::Value> {
    for r in &body.records {
        if crate::changelog::is_record(&r.s3.object.key) {
            // Read before answering: the store delivers its events one at a time in order, so
            // the record (written before its operation) is in the state before the target's
            // event arrives.
            if s.cfg.changelog && !r.is_removal() {
                read_hint(&s, &r.s3.object.key).await;
            }
            continue;
        }
        let Some(seq) = r.sequence() else {
            tracing::warn!(sequencer = %r.s3.object.sequencer, "event without a hex sequencer; ignored");
            continue;
        };
        let v = Version {
            key: r.s3.object.key.clone(),
            seq,
            etag: if r.is_removal() { None } else { r.s3.object.e_tag.clone() },
            size: r.s3.object.size.unwrap_or(0),
            deleted: r.is_removal(),
        };
        let written = chrono::DateTime::parse_from_rfc3339(&r.event_time)
            .ok()
            .and_then(|t| u64::try_from(t.timestamp_millis()).ok());
        let newer = with_state(&s, |st| st.observe_at(&v, written))?;
        tracing::debug!(key = %v.key, seq, event = %r.event_name, newer, "event");
        if newer && s.cfg.batching {
            batch(&s, &v)?;
        }
    }
    Ok(Json(serde_json::json!({"ok": true})))
}

/// Reads the changelog record at `record` from the source and keeps its hint. A record that
/// cannot be read or parsed is logged and left out: its operation is copied as bytes.
async fn read_hint(s: &Shared, record: &str) {
    use object_store::ObjectStore;
    let read = async {
        let src = crate::client::connect(&s.cfg.src).map_err(|e| e.to_string())?;
        let path = object_store::path::Path::parse(record).map_err(|e| e.to_string())?;
        let body = src.get(&path).await.map_err(|e| e.to_string())?.bytes().await.map_err(|e| e.to_string())?;
        crate::changelog::Hint::parse(&body).map_err(|e| crate::error_chain(&e))
    };
    match read.await {
        Ok(hint) => match with_state(s, |st| st.add_hint(record, &hint, now_ms())) {
            Ok(_) => tracing::debug!(record, op = ?hint.op, key = %hint.key, "changelog hint"),
            Err(_) => tracing::warn!(record, "changelog hint not stored"),
        },
        Err(err) => tracing::warn!(record, %err, "changelog record not usable; its operation is copied as bytes"),
    }
}

/// Batching of a newer version of `v.key`: the hold [`batch_hold`] answers, from the oldest
/// write the destination lacks and the plan's T_rep. A hold that would end now or that no
/// plan can meet leaves the key to start at once (its plan records the violation).
fn batch(s: &Shared, v: &Version) -> Result<(), (axum::http::StatusCode, String)> {
    let now = now_ms();
    let Some(oldest) = with_state(s, |st| st.oldest_pending(&v.key))? else { return Ok(()) };
    let elapsed = now.saturating_sub(oldest) as f64 / 1000.0;
    let plan = planner::plan(&plan_request(&s.cfg, v, s.cfg.slo.as_secs_f64() - elapsed), &planning(s), v.seq);
    match batch_hold(oldest, now, s.cfg.slo, plan.as_ref(), s.cfg.batch_margin) {
        Hold::Until(until) => {
            let hold = with_state(s, |st| st.hold_batch(&v.key, now, until))?;
            tracing::debug!(key = %v.key, seq = v.seq, hold_ms = hold.map(|h| h.saturating_sub(now)), "batched");
        }
        Hold::None(why) => tracing::debug!(key = %v.key, seq = v.seq, why, "not batched"),
    }
    Ok(())
}

/// How long batching holds a key back.
#[derive(Debug, Clone, PartialEq)]
pub enum Hold {
    /// Until this time (ms).
    Until(u64),
    /// Not at all, and why.
    None(String),
}

/// The hold of a key whose oldest write the destination lacks was made at `oldest_ms`: until
/// `oldest + slo − T_rep − margin`, T_rep the plan's percentile time, so the copy of the
/// newest version still lands within the SLO of the oldest write. None when that time has
/// come, or when no plan meets the SLO (the copy starts at once and its plan is recorded as a
/// violation).
pub fn batch_hold(oldest_ms: u64, now_ms: u64, slo: Duration, plan: Option<&planner::Plan>, margin: Duration) -> Hold {
    let Some(p) = plan else { return Hold::None("no plan".into()) };
    if !p.meets_slo {
        return Hold::None(format!("no plan meets the SLO (fastest {:.3} s)", p.time));
    }
    let deadline = oldest_ms as f64 + slo.as_secs_f64() * 1000.0;
    let until = deadline - (p.time + margin.as_secs_f64()) * 1000.0;
    if until <= now_ms as f64 {
        return Hold::None(format!("T_rep {:.3} s and the margin leave no time to wait", p.time));
    }
    Hold::Until(until as u64)
}

/// What the planner is asked for a copy of `v` with `remaining` seconds of its SLO left.
fn plan_request(cfg: &Config, v: &Version, remaining: f64) -> planner::Request {
    let large = !v.deleted && v.size > cfg.threshold;
    planner::Request {
        size: v.size,
        remaining,
        percentile: 0.99,
        part_size: cfg.part_size,
        max_instances: if large { cfg.max_instances } else { 1 },
        samples: 200,
        budget: Duration::from_millis(20),
        orchestrator_copies: false,
    }
}

async fn claim(AxState(s): Shr, Json(c): Json<Claim>) -> Answer<Option<PartView>> {
    let now = now_ms();
    let until = now + s.cfg.lease.as_millis() as u64;
    let part = with_state(&s, |st| st.claim(&c.upload, &c.owner, now, until))?;
    Ok(Json(part.map(PartView::from)))
}

async fn finish(AxState(s): Shr, Json(f): Json<Finish>) -> Answer<Finished> {
    measured(&s, f.sample.as_ref());
    let answer = with_state(&s, |st| {
        Ok(match st.finish_part(&f.upload, f.number, &f.owner, &f.etag)? {
            Some(true) => Finished { complete: Some(st.finished_parts(&f.upload)?), accepted: true },
            Some(false) => Finished { complete: None, accepted: true },
            None => Finished { complete: None, accepted: false },
        })
    })?;
    Ok(Json(answer))
}

async fn done(AxState(s): Shr, Json(d): Json<Done>) -> Answer<serde_json::Value> {
    measured(&s, d.sample.as_ref());
    let written = with_state(&s, |st| st.written_at(&d.key))?;
    let released =
        with_state(&s, |st| st.release_copy(&d.key, &d.job, d.seq, d.seen.as_deref(), d.dst_etag.as_deref()))?;
    let upload = lock(&s.uploads).remove(&d.job);
    if let Some(upload) = &upload {
        with_state(&s, |st| st.drop_pool(upload))?;
    }
    let plan = lock(&s.plans).remove(&d.job);
    match released.outcome {
        Release::Done => {
            if let (Some(etag), true) = (&d.seen, s.cfg.changelog) {
                with_state(&s, |st| st.resolve_hints(&d.key, etag, d.via != "bytes"))?;
            }
            let done_ms = now_ms();
            let written_ms = written.filter(|(seq, _)| *seq == d.seq).and_then(|(_, at)| at);
            tracing::info!(key = %d.key, seq = d.seq, bytes = d.bytes, via = %d.via, writes = released.writes.len(), "replicated");
            record_release(&s, &d, &released.writes, written_ms, done_ms, plan.as_ref());
        }
        Release::Stale => {
            tracing::info!(key = %d.key, seq = d.seq, seen = ?d.seen, "source changed during the copy; replicating again");
            if let Some(upload) = upload {
                abort(&s, &d.key, &upload).await;
            }
        }
        Release::Lost => tracing::warn!(key = %d.key, job = %d.job, "late report of a copy whose lock was taken over"),
    }
    Ok(Json(serde_json::json!({"released": format!("{:?}", released.outcome)})))
}

/// The replication record of a released copy, and a `delay` violation for the writes it
/// covered late that the deadline sweep had not flagged.
fn record_release(
    s: &Shared,
    d: &Done,
    writes: &[crate::state::Write],
    written_ms: Option<u64>,
    done_ms: u64,
    plan: Option<&Planned>,
) {
    let Some(r) = &s.records else { return };
    let slo = s.cfg.slo.as_secs_f64();
    let delay = |at: u64| done_ms.saturating_sub(at) as f64 / 1000.0;
    let covered: Vec<crate::record::Covered> =
        writes.iter().map(|w| crate::record::Covered { seq: w.seq, delay_s: delay(w.event_ms) }).collect();
    let delay_s = covered.iter().map(|c| c.delay_s).reduce(f64::max).or(written_ms.map(delay));
    r.write(&crate::record::Record::Replicated {
        system: s.cfg.system.name().to_owned(),
        key: d.key.clone(),
        seq: d.seq,
        bytes: d.bytes,
        deleted: d.deleted,
        written_ms,
        done_ms,
        delay_s,
        writes: covered.clone(),
        slo_s: Some(slo),
        region: plan.map(|p| p.region.clone()),
        instances: plan.map(|p| p.instances),
        predicted_s: plan.and_then(|p| p.predicted_s),
        via: d.via.clone(),
        wan_bytes: d.wan_bytes,
        cost_usd: d.cost_usd,
        hint_refused: d.hint_refused.clone(),
        coalesced: covered.len().saturating_sub(1),
    });
    let late: Vec<&crate::record::Covered> =
        covered.iter().zip(writes).filter(|(c, w)| c.delay_s > slo && !w.flagged).map(|(c, _)| c).collect();
    if let Some(worst) = late.iter().map(|c| c.delay_s).reduce(f64::max) {
        r.write(&crate::record::Record::Violation {
            system: s.cfg.system.name().to_owned(),
            key: d.key.clone(),
            seq: d.seq,
            at_ms: done_ms,
            cause: crate::record::Cause::Delay,
            reason: format!("replicated after {worst:.3} s, over the {slo:.3} s SLO"),
            writes: late.iter().map(|c| c.seq).collect(),
        });
    }
}

/// An instance whose copy failed (the store refused it after retries): the key is held
/// back for [`retry_delay`] and copied again then, so a refusing store is retried with a
/// growing backoff instead of once per lease, and the failure is in the log.
async fn failed(AxState(s): Shr, Json(f): Json<Failed>) -> Answer<serde_json::Value> {
    let now = now_ms();
    let answer = with_state(&s, |st| st.fail(&f.key, &f.job, |n| now + retry_delay(n).as_millis() as u64))?;
    let upload = lock(&s.uploads).remove(&f.job);
    if let Some(upload) = upload {
        with_state(&s, |st| st.drop_pool(&upload))?;
        abort(&s, &f.key, &upload).await;
    }
    lock(&s.plans).remove(&f.job);
    match answer {
        Some((failures, at)) => tracing::warn!(
            key = %f.key, job = %f.job, failures, retry_in_s = at.saturating_sub(now) as f64 / 1000.0,
            error = %f.error, "copy failed; retrying after a backoff"
        ),
        None => {
            tracing::info!(key = %f.key, job = %f.job, error = %f.error, "failure of a copy whose lock was taken over")
        }
    }
    Ok(Json(serde_json::json!({"retry": answer.is_some()})))
}

/// An instance's heartbeat: extends its job's lock and its part claims. `held: false` tells
/// it the lock was taken over, so it stops writing.
async fn renew(AxState(s): Shr, Json(r): Json<Renew>) -> Answer<serde_json::Value> {
    measured(&s, r.sample.as_ref());
    let until = now_ms() + s.cfg.lease.as_millis() as u64;
    let held = with_state(&s, |st| {
        let held = st.renew(&r.key, &r.job, until)?;
        if let Some(upload) = r.upload.as_deref().filter(|_| held) {
            st.renew_claims(upload, &r.owner, until)?;
        }
        Ok(held)
    })?;
    Ok(Json(serde_json::json!({"held": held})))
}

/// The models to plan with now.
fn planning(s: &Shared) -> Vec<RegionModel> {
    lock(&s.models).planning()
}

/// Takes in an instance's sample (λReplica's: the baselines do not plan).
fn measured(s: &Shared, sample: Option<&task::Sample>) {
    let Some(sample) = sample.filter(|_| s.cfg.system == System::Lambda) else { return };
    for kind in lock(&s.models).add(sample) {
        tracing::info!(region = %sample.region, ?kind, "planning with a distribution fitted to measured samples");
    }
}

/// Records each region's model at start and, once a second, those that changed since their
/// last record (a run ends by killing the coordinator: the last one is at most a second old).
async fn model_loop(s: Arc<Shared>) {
    let Some(records) = &s.records else { return };
    let mut last: Vec<crate::fit::ModelView> = Vec::new();
    loop {
        let views = lock(&s.models).views(s.cfg.system.name(), now_ms());
        for v in &views {
            if !last.iter().any(|l| l.same(v)) {
                records.write(&crate::record::Record::Model(v.clone()));
            }
        }
        last = views;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn abort(s: &Shared, key: &str, upload: &str) {
    let Ok(dst) = crate::client::connect(&s.cfg.dst) else { return };
    if let Err(err) = dst.abort_multipart(&object_store::path::Path::from(key), &upload.to_owned()).await {
        tracing::warn!(%err, key, "abort of a stale multipart upload failed");
    }
}

async fn dispatch(s: Arc<Shared>) {
    loop {
        // A source of a hint is held back for at most a lease after the hint was recorded.
        let since = now_ms().saturating_sub(s.cfg.lease.as_millis() as u64);
        let pending = with_state(&s, |st| st.pending_hinted(now_ms(), since, 64)).unwrap_or_default();
        for v in pending {
            let job = format!("j{:x}", s.next_job.fetch_add(1, Ordering::SeqCst));
            // The clock is read per key: starting a copy takes time (a multipart upload is
            // created across the WAN), and a lease counted from the loop's start could be
            // over before its copy begins, letting a second copy of the key run at once.
            let now = now_ms();
            let until = now + (s.cfg.lease + s.cfg.start_grace).as_millis() as u64;
            let Ok(Some(v)) = with_state(&s, |st| st.lock(&v.key, &job, now, until)) else { continue };
            if let Err(err) = start(&s, &job, &v).await {
                // Released at once and held back for a growing backoff (a refusing store).
                let now = now_ms();
                let retry = with_state(&s, |st| st.fail(&v.key, &job, |n| now + retry_delay(n).as_millis() as u64));
                let retry_in_s = retry.ok().flatten().map(|(_, at)| at.saturating_sub(now) as f64 / 1000.0);
                tracing::warn!(key = %v.key, %err, ?retry_in_s, "starting a copy failed; retrying after a backoff");
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Where and by how many instances a copy runs, as λReplica plans it or a baseline does it.
struct Route {
    region: String,
    /// Instances (a large object's part copiers); 1 otherwise.
    n: u32,
    /// The platform (or VM pool) to invoke; none: this process copies.
    platform: Option<String>,
    /// A changelog hint to apply (its record's key and the hint).
    hint: Option<(String, crate::changelog::Hint)>,
    /// The plan's p99 estimate.
    predicted_s: Option<f64>,
}

/// λReplica's route of a copy of `v`: planned against what is left of the SLO (a plan that
/// cannot meet it is recorded as a violation), or in the destination region for a hint.
fn route_lambda(s: &Shared, v: &Version) -> Result<Route, String> {
    let cfg = &s.cfg;
    // The SLO counts from the oldest write the destination lacks: what is left of it bounds
    // the plan.
    let oldest = with_state(s, |st| st.oldest_pending(&v.key)).map_err(|e| e.1)?;
    let elapsed = oldest.map_or(0.0, |at| now_ms().saturating_sub(at) as f64 / 1000.0);
    let remaining = cfg.slo.as_secs_f64() - elapsed;
    let plan = planner::plan(&plan_request(cfg, v, remaining), &planning(s), v.seq);
    let hint = match (&v.etag, v.deleted || !cfg.changelog) {
        (Some(etag), false) => with_state(s, |st| st.hint_for(&v.key, etag)).map_err(|e| e.1)?,
        _ => None,
    };
    // A hint is applied where the sources' copies are: in the destination region, by one
    // instance (its check falls back to copying the bytes from there).
    let dst_region = cfg.platforms.get(1).map(|(name, _)| name.clone());
    let region = match (&hint, &dst_region) {
        (Some(_), Some(dst)) => dst.clone(),
        _ => plan.as_ref().map(|p| p.region.clone()).unwrap_or_default(),
    };
    let n = if hint.is_some() { 1 } else { plan.as_ref().map_or(1, |p| p.instances) };
    let platform = cfg.platforms.iter().find(|(name, _)| *name == region).and_then(|(_, url)| url.clone());
    tracing::info!(key = %v.key, size = v.size, %region, n, time = plan.as_ref().map(|p| p.time), meets = plan.as_ref().map(|p| p.meets_slo), hinted = hint.is_some(), "plan");
    // A hinted copy is not what the plan estimates (the planner does not model it).
    let plan = plan.filter(|_| hint.is_none());
    if let (Some(p), Some(r)) = (plan.as_ref().filter(|p| !p.meets_slo), &s.records) {
        r.write(&crate::record::Record::Violation {
            system: cfg.system.name().to_owned(),
            key: v.key.clone(),
            seq: v.seq,
            at_ms: now_ms(),
            cause: crate::record::Cause::Plan,
            reason: violation_reason(p, remaining, elapsed),
            writes: Vec::new(),
        });
    }
    Ok(Route { region, n, platform, hint, predicted_s: plan.as_ref().map(|p| p.time) })
}

/// A baseline's route: no plan and no hint; one copier in the region of its machines (the
/// VM pool's, else this process's: the source region's).
fn route_baseline(cfg: &Config) -> Route {
    let pool = match cfg.system {
        System::Vm { .. } => cfg.platforms.iter().find(|(_, url)| url.is_some()).cloned(),
        _ => None,
    };
    let (region, platform) =
        pool.unwrap_or_else(|| (cfg.platforms.first().map(|p| p.0.clone()).unwrap_or_default(), None));
    Route { region, n: 1, platform, hint: None, predicted_s: None }
}

async fn start(s: &Arc<Shared>, job: &str, v: &Version) -> Result<(), String> {
    let cfg = &s.cfg;
    let large = !v.deleted && v.size > cfg.threshold;
    let route = match cfg.system {
        System::Lambda => route_lambda(s, v)?,
        _ => route_baseline(cfg),
    };
    let Route { region, n, platform, hint, predicted_s } = route;
    lock(&s.plans).insert(job.to_owned(), Planned { region: region.clone(), instances: n, predicted_s });
    let mode = if v.deleted {
        Mode::Delete
    } else if let Some((record, hint)) = hint {
        let expect = with_state(s, |st| {
            hint.sources
                .iter()
                .map(|src| Ok(crate::changelog::expected_dst_etags(&src.etag, st.held(&src.key)?)))
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|e| e.1)?;
        tracing::info!(key = %v.key, record, op = ?hint.op, "applying a changelog hint");
        Mode::Hint { hint, expect, threshold: cfg.threshold, part_size: cfg.part_size }
    } else if large && matches!(cfg.system, System::Provider { .. }) {
        // One stream: the parts of the destination's layout one after another.
        Mode::Stream { threshold: cfg.threshold, part_size: cfg.part_size }
    } else if large {
        let dst = crate::client::connect(&cfg.dst).map_err(|e| e.to_string())?;
        let upload =
            dst.create_multipart(&object_store::path::Path::from(v.key.as_str())).await.map_err(|e| e.to_string())?;
        with_state(s, |st| st.fill_pool(&upload, v.size, cfg.part_size)).map_err(|e| e.1)?;
        lock(&s.uploads).insert(job.to_owned(), upload.clone());
        Mode::Parts { upload }
    } else {
        Mode::Whole
    };
    let instances = if matches!(mode, Mode::Parts { .. }) { n } else { 1 };
    let names: Vec<String> = (0..instances).map(|i| format!("{job}-{i}")).collect();
    // Static assignment: each instance gets its run of parts now, claimed for it until the
    // lock's own lease (it waits for a slot as the lock does).
    let assigned: Vec<Option<Vec<crate::state::PartView>>> = match (&mode, cfg.assignment, &cfg.system) {
        (Mode::Parts { upload }, Assignment::Static, System::Lambda) => {
            let until = now_ms() + (cfg.lease + cfg.start_grace).as_millis() as u64;
            let runs = with_state(s, |st| st.assign_parts(upload, &names, until)).map_err(|e| e.1)?;
            runs.into_iter().map(|r| Some(r.into_iter().map(crate::state::PartView::from).collect())).collect()
        }
        _ => vec![None; names.len()],
    };
    let streams = match cfg.system {
        System::Vm { streams } => streams.max(1),
        _ => 1,
    };
    for (instance, assigned) in names.into_iter().zip(assigned) {
        if assigned.as_ref().is_some_and(Vec::is_empty) {
            continue; // more instances than parts
        }
        let task = Task {
            job: job.to_owned(),
            instance,
            key: v.key.clone(),
            seq: v.seq,
            etag: v.etag.clone(),
            size: v.size,
            src: cfg.src.clone(),
            dst: cfg.dst.clone(),
            coordinator: cfg.url.clone(),
            mode: mode.clone(),
            lease_ms: cfg.lease.as_millis() as u64,
            system: cfg.system.name().to_owned(),
            bandwidth: None,
            streams,
            assigned,
            fee: cfg.fee,
            timing: task::Timing {
                region: matches!(cfg.system, System::Lambda).then(|| region.clone()),
                invoked_us: Some(task::now_us()),
                slot_us: None,
            },
        };
        match (&cfg.system, &platform) {
            (System::Provider { delay }, _) => {
                // The provider's own delay before a copy starts, then one stream from here.
                let wait = delay.draw(&mut *lock(&s.rng)).max(0.0);
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs_f64(wait)).await;
                    if let Err(err) = task::run(&task).await {
                        tracing::warn!(key = %task.key, err = %crate::error_chain(&err), "provider copy failed");
                    }
                });
            }
            (_, Some(url)) => {
                let r =
                    s.http.post(format!("{url}/invoke")).json(&task).send().await.and_then(|r| r.error_for_status());
                if let Err(err) = r {
                    return Err(format!("invoke on {url}: {err}"));
                }
            }
            (_, None) => {
                tokio::spawn(async move {
                    if let Err(err) = task::run(&task).await {
                        tracing::warn!(key = %task.key, err = %crate::error_chain(&err), "in-process copy failed");
                    }
                });
            }
        }
    }
    Ok(())
}

/// Milliseconds since the epoch on this node's (possibly dilated) clock.
pub fn now_ms() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0)
}

/// A region model from configured distributions (seconds; bandwidth in bytes per second).
pub fn model(name: &str, invoke: &Dist, ready: &Dist, bandwidth: f64, chunk: u64) -> RegionModel {
    RegionModel {
        name: name.to_owned(),
        invoke: invoke.clone(),
        ready: ready.clone(),
        setup: Dist::Const(0.01),
        per_chunk: Dist::Const(chunk as f64 / bandwidth.max(1.0)),
        chunk,
    }
}

/// Why a plan misses the SLO, in words for the violation record.
fn violation_reason(p: &planner::Plan, remaining: f64, elapsed: f64) -> String {
    if remaining <= 0.0 {
        format!("the SLO had passed before planning ({elapsed:.3} s since the write)")
    } else {
        format!(
            "fastest plan ({} instance(s) in {}) needs {:.3} s at p99, {:.3} s of the SLO left",
            p.instances, p.region, p.time, remaining
        )
    }
}

/// Records a `deadline` violation for every write whose SLO passed before a copy covered it
/// (a version stuck, lost, or superseded too late), once per write, four times per SLO (at
/// most every 0.5 s).
async fn deadline_loop(s: Arc<Shared>) {
    let every = (s.cfg.slo / 4).clamp(Duration::from_millis(10), Duration::from_millis(500));
    let slo_ms = s.cfg.slo.as_millis() as u64;
    loop {
        tokio::time::sleep(every).await;
        let now = now_ms();
        let overdue = match with_state(&s, |st| st.overdue(now, slo_ms)) {
            Ok(o) => o,
            Err(_) => continue,
        };
        for o in overdue {
            let age = now.saturating_sub(o.oldest_ms) as f64 / 1000.0;
            tracing::info!(key = %o.key, writes = o.seqs.len(), age_s = age, "SLO passed before replication");
            if let Some(r) = &s.records {
                r.write(&crate::record::Record::Violation {
                    system: s.cfg.system.name().to_owned(),
                    key: o.key.clone(),
                    seq: o.seqs.last().copied().unwrap_or(0),
                    at_ms: now,
                    cause: crate::record::Cause::Deadline,
                    reason: format!(
                        "{} write(s) not replicated within the {:.3} s SLO (the oldest {age:.3} s ago)",
                        o.seqs.len(),
                        s.cfg.slo.as_secs_f64()
                    ),
                    writes: o.seqs,
                });
            }
        }
    }
}

/// Lists both stores at start-up and every `reconcile` interval and repairs the table
/// ([`State::reconcile`]): events lost or never sent (a store that died with its queue, a
/// coordinator down past the store's retries), copies overtaken by a late write of an old
/// one, a destination that lost objects.
async fn reconcile_loop(s: Arc<Shared>) {
    loop {
        match reconcile_once(&s).await {
            Ok(r) if r.any() => {
                tracing::warn!(?r, "reconciliation repaired the state");
                if let Some(rec) = &s.records {
                    rec.write(&crate::record::Record::Repair { at_ms: now_ms(), repairs: r });
                }
            }
            Ok(_) => tracing::debug!("reconciliation: in sync"),
            Err(err) => tracing::warn!(%err, "reconciliation failed; trying again next interval"),
        }
        tokio::time::sleep(s.cfg.reconcile).await;
    }
}

async fn reconcile_once(s: &Shared) -> Result<crate::state::Repairs, String> {
    let before = with_state(s, |st| st.snapshot(now_ms())).map_err(|e| e.1)?;
    let src = listing(&s.cfg.src).await.map_err(|e| format!("list the source: {e}"))?;
    let dst = listing(&s.cfg.dst).await.map_err(|e| format!("list the destination: {e}"))?;
    with_state(s, |st| st.reconcile(&before, &src, &dst, now_ms())).map_err(|e| e.1)
}

/// Every object of `ep` with its ETag (ListObjectsV2), changelog records left out (they are
/// read from their events, never replicated).
pub async fn listing(ep: &Endpoint) -> object_store::Result<std::collections::BTreeMap<String, crate::state::Listed>> {
    use futures::TryStreamExt;
    use object_store::ObjectStore;
    let store = crate::client::connect(ep)?;
    store
        .list(None)
        .try_filter(|m| futures::future::ready(!crate::changelog::is_record(m.location.as_ref())))
        .map_ok(|m| {
            let etag = m.e_tag.as_deref().map(crate::etag::normalize);
            (m.location.to_string(), crate::state::Listed { etag, size: m.size })
        })
        .try_collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(time: f64, meets: bool) -> planner::Plan {
        planner::Plan { region: "a".into(), instances: 1, time, meets_slo: meets, orchestrator: false }
    }

    #[test]
    fn a_batch_holds_until_the_deadline_less_t_rep_and_the_margin() {
        let (slo, margin) = (Duration::from_secs(10), Duration::from_millis(500));
        // Written at 1 000 ms, SLO 10 s, T_rep 2 s, margin 0.5 s: held until 8 500 ms.
        assert_eq!(batch_hold(1_000, 1_200, slo, Some(&plan(2.0, true)), margin), Hold::Until(8_500));
        // A later write of the key counts from the oldest write still lacking.
        assert_eq!(batch_hold(1_000, 5_000, slo, Some(&plan(2.0, true)), margin), Hold::Until(8_500));
    }

    #[test]
    fn a_batch_that_cannot_wait_or_cannot_meet_the_slo_starts_at_once_with_its_reason() {
        let (slo, margin) = (Duration::from_secs(10), Duration::from_millis(500));
        let Hold::None(why) = batch_hold(1_000, 8_600, slo, Some(&plan(2.0, true)), margin) else {
            panic!("past deadline − T_rep − margin: no hold")
        };
        assert!(why.contains("no time to wait"), "{why}");
        let Hold::None(why) = batch_hold(1_000, 1_000, slo, Some(&plan(12.0, false)), margin) else {
            panic!("no plan meets the SLO: no hold")
        };
        assert!(why.contains("no plan meets the SLO") && why.contains("12.000"), "{why}");
        // The plan of that copy is what records the violation, with its reason.
        let reason = violation_reason(&plan(12.0, false), 10.0, 0.0);
        assert!(reason.contains("needs 12.000 s at p99, 10.000 s of the SLO left"), "{reason}");
        assert!(matches!(batch_hold(1_000, 1_000, slo, None, margin), Hold::None(_)));
    }
}
