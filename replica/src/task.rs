//! One function instance's work: copy a whole object, delete one, or pull parts from the pool.
//!
//! An instance is told the version it copies `{seq, etag}`. It reads the source with the
//! real S3 client and checks the ETag the source serves against it (optimistic validation): a
//! part read of a changed object stops the copy, and the instance reports the ETag it saw so
//! that the lock release answers stale and the object is replicated again.
//!
//! A store's refusal (4xx) is retried with backoff ([`crate::client::retry_refused`]); a copy
//! that still fails is reported to the coordinator (`POST /failed`), which copies the key again
//! after a growing backoff, so nothing is dropped. With a bandwidth (the platform's draw for
//! this instance), the instance reads no faster than it ([`Throttle`]).

use crate::client::{self, Endpoint};
use crate::etag;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, PutPayload};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Errors of a task.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("talk to the store")]
    Store(#[from] object_store::Error),
    #[error("the lock of {key} was taken over by another copy; stopped before writing")]
    Fenced { key: String },
    #[error("talk to the coordinator at {url}")]
    Coordinator {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The copy failed and the coordinator was told: it copies the key again after a
    /// backoff, so the platform must not retry this attempt.
    #[error("copy failed; the coordinator retries it")]
    Reported(#[source] Box<TaskError>),
}

/// What to do.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Mode {
    Whole,
    Delete,
    Parts { upload: String },
}

/// A task as invoked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Task {
    pub job: String,
    pub instance: String,
    pub key: String,
    pub seq: u64,
    pub etag: Option<String>,
    pub size: u64,
    pub src: Endpoint,
    pub dst: Endpoint,
    pub coordinator: String,
    pub mode: Mode,
    /// The lease of the job's lock and part claims (ms): the instance renews them every
    /// third of it while it works.
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
    /// The replicator that invoked it (for the platform's bill).
    #[serde(default = "default_system")]
    pub system: String,
    /// Bytes per second this instance reads at most (the platform draws it per attempt:
    /// instances of one configuration differ); none: its node's link alone limits it.
    #[serde(default)]
    pub bandwidth: Option<f64>,
}

fn default_lease_ms() -> u64 {
    15_000
}

fn default_system() -> String {
    "lambda".into()
}

fn default_via() -> String {
    "bytes".into()
}

/// A report of a finished copy to the coordinator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Done {
    pub job: String,
    pub key: String,
    pub seq: u64,
    /// The ETag the source served (None: the source had no such object).
    pub seen: Option<String>,
    pub bytes: u64,
    /// The ETag the destination gave the copy (none for a delete or when not copied).
    #[serde(default)]
    pub dst_etag: Option<String>,
    #[serde(default)]
    pub deleted: bool,
    /// How the copy was made: `bytes`, or the changelog operation applied.
    #[serde(default = "default_via")]
    pub via: String,
    /// Bytes of the object that crossed between the regions (every part's, whoever copied it).
    #[serde(default)]
    pub wan_bytes: u64,
    /// A per-object fee (provider-style baseline).
    #[serde(default)]
    pub cost_usd: Option<f64>,
}

/// A report of a failed copy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failed {
    pub job: String,
    pub key: String,
    pub error: String,
}

/// An instance's heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Renew {
    pub key: String,
    pub job: String,
    pub owner: String,
    /// The upload whose claims to extend too.
    pub upload: Option<String>,
}

/// A part claim request and its answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claim {
    pub upload: String,
    pub owner: String,
}

/// A part report; the answer carries the part list when this report finished the last part.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finish {
    pub upload: String,
    pub number: u32,
    pub owner: String,
    pub etag: String,
}

/// The answer to a [`Finish`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finished {
    /// `Some(parts)` to the instance that completes the upload.
    pub complete: Option<Vec<(u32, String)>>,
    /// False when the claim was lost (lease ran out or the copy was abandoned).
    pub accepted: bool,
}

/// Runs `task` to its end.
///
/// While it runs, a heartbeat renews the job's lease; once the coordinator answers that the
/// lock is no longer this job's (its lease ran out and another copy took the key), the
/// instance writes nothing more to the destination. A write already under way can still land
/// late; the coordinator's reconciliation repairs that.
pub async fn run(task: &Task) -> Result<(), TaskError> {
    run_metered(task, &Meter::default()).await
}

/// What an instance used, for the platform's cost accounting: S3 API requests it made and
/// the object bytes it moved (each crosses the WAN once: the egress).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Meter {
    pub requests: AtomicU64,
    pub bytes: AtomicU64,
}

impl Meter {
    fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    fn moved(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }
}

/// [`run`], counting into `meter`. A copy that fails (other than by being superseded) is
/// reported to the coordinator; once it took the report the error is
/// [`TaskError::Reported`].
pub async fn run_metered(task: &Task, meter: &Meter) -> Result<(), TaskError> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap_or_default();
    let held = Arc::new(AtomicBool::new(true));
    let beat = tokio::spawn(heartbeat(http.clone(), task.clone(), held.clone()));
    let throttle = Throttle::new(task.bandwidth);
    let result = copy(task, &http, &held, meter, &throttle).await;
    beat.abort();
    match result {
        Err(err) if !err.superseded() => {
            let error = crate::error_chain(&err);
            tracing::warn!(key = %task.key, job = %task.job, %error, "copy failed; reporting it");
            let failed = Failed { job: task.job.clone(), key: task.key.clone(), error };
            match post::<_, serde_json::Value>(&http, &task.coordinator, "failed", &failed).await {
                Ok(_) => Err(TaskError::Reported(Box::new(err))),
                Err(_) => Err(err),
            }
        }
        r => r,
    }
}

/// A pacer of the bytes an instance reads: each chunk is released no earlier than the time
/// its bytes take at `rate` after the previous ones (the node's clock, so virtual time in a
/// dilated run). Reading slower makes TCP's window slow the sender too: the transfer runs
/// at this rate end to end.
pub struct Throttle {
    /// Bytes per second; none: no limit.
    rate: Option<f64>,
    next: std::sync::Mutex<Option<tokio::time::Instant>>,
}

impl Throttle {
    /// A pacer at `rate` bytes per second (none or not positive: no limit).
    pub fn new(rate: Option<f64>) -> Throttle {
        Throttle { rate: rate.filter(|r| r.is_finite() && *r > 0.0), next: std::sync::Mutex::new(None) }
    }

    /// Waits until `n` more bytes may be read.
    pub async fn take(&self, n: usize) {
        let Some(rate) = self.rate else { return };
        let until = {
            let mut next = self.next.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = tokio::time::Instant::now();
            let start = next.map_or(now, |t| t.max(now));
            let until = start + Duration::from_secs_f64(n as f64 / rate);
            *next = Some(until);
            until
        };
        tokio::time::sleep_until(until).await;
    }
}

/// The body of `got`, read chunk by chunk at the pace of `throttle`.
async fn read_body(got: object_store::GetResult, throttle: &Throttle) -> Result<bytes::Bytes, TaskError> {
    use futures::StreamExt;
    if throttle.rate.is_none() {
        return Ok(got.bytes().await?);
    }
    let mut stream = got.into_stream();
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        throttle.take(chunk.len()).await;
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

async fn heartbeat(http: reqwest::Client, task: Task, held: Arc<AtomicBool>) {
    let every = Duration::from_millis((task.lease_ms / 3).max(50));
    let renew = Renew {
        key: task.key.clone(),
        job: task.job.clone(),
        owner: task.instance.clone(),
        upload: match &task.mode {
            Mode::Parts { upload } => Some(upload.clone()),
            _ => None,
        },
    };
    loop {
        // The first beat at once: the lock's lease was counted from the invocation, and an
        // instance whose copy was taken over while it queued stops before doing any work.
        // One attempt per beat: a coordinator that is down is tried again at the next one.
        let url = format!("{}/renew", task.coordinator);
        let answer =
            async { http.post(&url).json(&renew).send().await?.error_for_status()?.json::<serde_json::Value>().await };
        match answer.await {
            Ok(v) if v["held"] == serde_json::Value::Bool(false) => {
                tracing::warn!(key = %task.key, job = %task.job, "lock taken over; stopping");
                held.store(false, Ordering::SeqCst);
                return;
            }
            Ok(_) => {}
            Err(err) => tracing::debug!(%err, "renewal failed; next beat tries again"),
        }
        tokio::time::sleep(every).await;
    }
}

impl TaskError {
    /// Whether the task ended because another copy took its key over: its work is that
    /// copy's now, so it is no failure to retry (a platform's retries of it are wasted).
    pub fn superseded(&self) -> bool {
        matches!(self, TaskError::Fenced { .. })
    }

    /// Whether the coordinator was told of the failure and retries the copy itself.
    pub fn reported(&self) -> bool {
        matches!(self, TaskError::Reported(_))
    }
}

fn fence(task: &Task, held: &AtomicBool) -> Result<(), TaskError> {
    if held.load(Ordering::SeqCst) {
        Ok(())
    } else {
        Err(TaskError::Fenced { key: task.key.clone() })
    }
}

async fn copy(
    task: &Task,
    http: &reqwest::Client,
    held: &AtomicBool,
    m: &Meter,
    throttle: &Throttle,
) -> Result<(), TaskError> {
    let src = client::connect(&task.src)?;
    let dst = client::connect(&task.dst)?;
    let path = Path::from(task.key.as_str());
    let refused = client::Backoff::REFUSED;
    match &task.mode {
        Mode::Whole => {
            m.request();
            let (seen, bytes, dst_etag) = match client::retry_refused("get", refused, || src.get(&path)).await {
                Ok(got) => {
                    let seen = got.meta.e_tag.as_deref().map(etag::normalize);
                    let body = read_body(got, throttle).await?;
                    let n = body.len() as u64;
                    let mut dst_etag = None;
                    if seen == task.etag {
                        fence(task, held)?;
                        m.request();
                        m.moved(n);
                        let put =
                            client::retry_refused("put", refused, || dst.put(&path, PutPayload::from(body.clone())))
                                .await?;
                        dst_etag = put.e_tag.as_deref().map(etag::normalize);
                    }
                    (seen, n, dst_etag)
                }
                Err(object_store::Error::NotFound { .. }) => (None, 0, None),
                Err(e) => return Err(e.into()),
            };
            report(http, task, seen, bytes, dst_etag).await
        }
        Mode::Delete => {
            // The source first: if the key exists again (a later write), deleting it at the
            // destination would only undo a copy of that write; report what the source has.
            m.request();
            let seen = match client::retry_refused("head", refused, || src.head(&path)).await {
                Ok(meta) => meta.e_tag.as_deref().map(etag::normalize),
                Err(object_store::Error::NotFound { .. }) => None,
                Err(e) => return Err(e.into()),
            };
            if seen.is_none() {
                fence(task, held)?;
                m.request();
                match client::retry_refused("delete", refused, || dst.delete(&path)).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            report(http, task, seen, 0, None).await
        }
        Mode::Parts { upload } => {
            let ctx = Copying { task, src: &src, dst: &dst, path: &path, http, held, m, throttle };
            pull_parts(&ctx, upload).await
        }
    }
}

/// What a copy works with.
struct Copying<'a> {
    task: &'a Task,
    src: &'a object_store::aws::AmazonS3,
    dst: &'a object_store::aws::AmazonS3,
    path: &'a Path,
    http: &'a reqwest::Client,
    held: &'a AtomicBool,
    m: &'a Meter,
    throttle: &'a Throttle,
}

async fn pull_parts(c: &Copying<'_>, upload: &str) -> Result<(), TaskError> {
    let Copying { task, src, dst, path, http, held, m, throttle } = *c;
    let claim = Claim { upload: upload.to_owned(), owner: task.instance.clone() };
    let refused = client::Backoff::REFUSED;
    let upload_id = upload.to_owned();
    while let Some(part) = post::<_, Option<crate::state::PartView>>(http, &task.coordinator, "claim", &claim).await? {
        let opts =
            GetOptions { range: Some(GetRange::Bounded(part.offset..part.offset + part.len)), ..Default::default() };
        m.request();
        let got = match client::retry_refused("get part", refused, || src.get_opts(path, opts.clone())).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return report(http, task, None, 0, None).await,
            Err(e) => return Err(e.into()),
        };
        let seen = got.meta.e_tag.as_deref().map(etag::normalize);
        if seen != task.etag {
            tracing::info!(key = %task.key, part = part.number, ?seen, expected = ?task.etag, "source changed during the copy; abandoning");
            return report(http, task, seen, 0, None).await;
        }
        let body = read_body(got, throttle).await?;
        fence(task, held)?;
        m.request();
        m.moved(body.len() as u64);
        let index = part.number as usize - 1;
        let id = client::retry_refused("put part", refused, || {
            dst.put_part(path, &upload_id, index, PutPayload::from(body.clone()))
        })
        .await?;
        let finish = Finish {
            upload: upload.to_owned(),
            number: part.number,
            owner: task.instance.clone(),
            etag: id.content_id,
        };
        let answer: Finished = post(http, &task.coordinator, "finish", &finish).await?;
        if let Some(parts) = answer.complete {
            let ids: Vec<PartId> = parts.into_iter().map(|(_, content_id)| PartId { content_id }).collect();
            fence(task, held)?;
            m.request();
            let done = client::retry_refused("complete upload", refused, || {
                dst.complete_multipart(path, &upload_id, ids.clone())
            })
            .await?;
            let dst_etag = done.e_tag.as_deref().map(etag::normalize);
            // The whole object is at the destination now, every part whoever copied it.
            return report(http, task, task.etag.clone(), task.size, dst_etag).await;
        }
    }
    Ok(())
}

async fn report(
    http: &reqwest::Client,
    task: &Task,
    seen: Option<String>,
    bytes: u64,
    dst_etag: Option<String>,
) -> Result<(), TaskError> {
    let done = Done {
        job: task.job.clone(),
        key: task.key.clone(),
        seq: task.seq,
        seen,
        bytes,
        dst_etag,
        deleted: matches!(task.mode, Mode::Delete),
        via: default_via(),
        wan_bytes: bytes,
        cost_usd: None,
    };
    post::<_, serde_json::Value>(http, &task.coordinator, "done", &done).await.map(|_| ())
}

/// POSTs `body` to `{base}/{what}`, retrying with backoff for up to a minute (the
/// coordinator may be restarting), and decodes the answer.
pub async fn post<B: Serialize, R: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    base: &str,
    what: &str,
    body: &B,
) -> Result<R, TaskError> {
    let url = format!("{base}/{what}");
    let mut backoff = Duration::from_millis(50);
    let started = std::time::Instant::now();
    loop {
        let attempt = async { http.post(&url).json(body).send().await?.error_for_status()?.json::<R>().await }.await;
        match attempt {
            Ok(r) => return Ok(r),
            Err(source) if started.elapsed() > Duration::from_secs(60) => {
                return Err(TaskError::Coordinator { url, source })
            }
            Err(err) => tracing::warn!(%err, %url, "coordinator call failed; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_throttle_paces_reads_at_its_rate() {
        // 3 × 1000 bytes at 10 kB/s: 0.3 s.
        let t = Throttle::new(Some(10_000.0));
        let t0 = std::time::Instant::now();
        for _ in 0..3 {
            t.take(1000).await;
        }
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(300) && took < Duration::from_millis(600), "{took:?}");
        // No rate, or a rate that is no rate: no pause.
        for t in [Throttle::new(None), Throttle::new(Some(0.0)), Throttle::new(Some(f64::NAN))] {
            let t0 = std::time::Instant::now();
            t.take(1 << 30).await;
            assert!(t0.elapsed() < Duration::from_millis(50));
        }
    }
}
