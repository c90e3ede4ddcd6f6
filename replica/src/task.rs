//! One function instance's work: copy a whole object, delete one, or pull parts from the pool
//! (claimed one at a time, in several streams for a VM, or a run assigned up front). The
//! baselines use the same code: a provider-style copy is `Stream` (the whole object, one
//! stream), a VM's copy of a large object is `Parts` with streams.
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
    Parts {
        upload: String,
    },
    /// The whole object in one stream, written in the destination layout (one PUT up to
    /// `threshold`, then `part_size` parts one after another): a provider-style copy.
    Stream {
        threshold: u64,
        part_size: u64,
    },
    /// Apply a changelog hint at the destination (falling back to copying the bytes).
    Hint {
        hint: crate::changelog::Hint,
        /// Per source, the destination ETags that show its copy is the version the hint
        /// names ([`crate::changelog::expected_dst_etags`]).
        expect: Vec<Vec<String>>,
        /// The destination layout: objects over `threshold` in parts of `part_size`.
        threshold: u64,
        part_size: u64,
    },
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
    /// Parallel streams of a `Parts` task, each claiming parts from the pool (a VM-style
    /// replicator's one machine copies with several ranges at once); 1 for a function.
    #[serde(default = "one")]
    pub streams: u32,
    /// The parts of a `Parts` task assigned to it up front (`--assignment static`): it copies
    /// these and claims none; none: it claims from the pool.
    #[serde(default)]
    pub assigned: Option<Vec<crate::state::PartView>>,
    /// The copy's own price (the baselines); none: a function platform bills it.
    #[serde(default)]
    pub fee: Option<Fee>,
    /// When it was invoked and took its slot, for the planner's measured model.
    #[serde(default)]
    pub timing: Timing,
}

/// The stamps an instance measures its invocation latency I and ready delay D from:
/// microseconds since the epoch on the node clocks (one epoch for every node of a run, so
/// the coordinator's and the platform's stamps compare; virtual time in a dilated run).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// The region the plan chose (the model the samples refine).
    #[serde(default)]
    pub region: Option<String>,
    /// The coordinator's invocation.
    #[serde(default)]
    pub invoked_us: Option<u64>,
    /// The platform gave the attempt a slot (its queue and I are behind it, D ahead); none:
    /// no platform (the coordinator's process runs it, with no ready delay).
    #[serde(default)]
    pub slot_us: Option<u64>,
}

/// What an instance measured for the planner (seconds on its node's clock), sent with the
/// reports it makes anyway: I and D with its first renewal (every instance makes one at
/// once, also those that find no part left), S and C with each part's `finish` or the
/// whole copy's `done`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub region: String,
    /// Invocation latency I: invocation to slot (queueing for a slot included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoke_s: Option<f64>,
    /// Ready delay D: slot to the instance's code running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_s: Option<f64>,
    /// Transfer setup S: the source GET's request to its first byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup_s: Option<f64>,
    /// From the first byte to the destination's write done, for `bytes` bytes (the
    /// coordinator divides it into its chunks: C).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_s: Option<f64>,
    #[serde(default)]
    pub bytes: u64,
}

/// Microseconds since the epoch on this node's (possibly dilated) clock.
pub fn now_us() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_micros()).unwrap_or(0)
}

impl Timing {
    /// I and D of an instance whose code started at `started_us`; none without the
    /// invocation's stamp (an older coordinator) or a region.
    pub fn sample(&self, started_us: u64) -> Option<Sample> {
        let region = self.region.clone()?;
        let invoked = self.invoked_us?;
        // No platform: no ready delay; the slot is the start.
        let slot = self.slot_us.unwrap_or(started_us);
        let secs = |from: u64, to: u64| to.saturating_sub(from) as f64 / 1e6;
        Some(Sample {
            region,
            invoke_s: Some(secs(invoked, slot)),
            ready_s: Some(secs(slot, started_us)),
            ..Sample::default()
        })
    }

    /// S and C of one copy of `bytes` whose GET was sent at `sent`, answered at `first` and
    /// whose write ended at `end`.
    fn transfer(
        &self,
        sent: std::time::Instant,
        first: std::time::Instant,
        end: std::time::Instant,
        bytes: u64,
    ) -> Option<Sample> {
        Some(Sample {
            region: self.region.clone()?,
            setup_s: Some(first.saturating_duration_since(sent).as_secs_f64()),
            transfer_s: Some(end.saturating_duration_since(first).as_secs_f64()),
            bytes,
            ..Sample::default()
        })
    }
}

/// A baseline's price of a copy, which no function platform bills: a provider's
/// per-object and per-GB replication fees, or a VM's requests and egress (its time is billed
/// by its pool).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Fee {
    /// Per object copied (not per delete).
    pub per_object: f64,
    /// Per GB (10^9 bytes) of object replicated.
    pub per_gb: f64,
    /// Per S3 API request the copy made.
    pub per_request: f64,
    /// Per GB that crossed between the regions.
    pub per_egress_gb: f64,
}

impl Fee {
    /// The price of a copy of `bytes` (`wan_bytes` across the WAN) that made `requests`.
    pub fn cost(&self, requests: u64, bytes: u64, wan_bytes: u64, deleted: bool) -> f64 {
        let per_object = if deleted { 0.0 } else { self.per_object + self.per_gb * bytes as f64 / 1e9 };
        per_object + self.per_request * requests as f64 + self.per_egress_gb * wan_bytes as f64 / 1e9
    }
}

fn one() -> u32 {
    1
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
    /// A baseline's price of this copy ([`Fee`]); none when a platform bills it.
    #[serde(default)]
    pub cost_usd: Option<f64>,
    /// Why a changelog hint was not applied (the copy fell back to the bytes).
    #[serde(default)]
    pub hint_refused: Option<String>,
    /// S and C of a whole-object copy, for the planner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<Sample>,
}

impl Done {
    /// The report of `task`'s copy as bytes: the source served `seen`, `bytes` of it were
    /// read (each crossed the WAN) and the destination answered `dst_etag`. No fee, no hint.
    fn copied(task: &Task, seen: Option<String>, bytes: u64, dst_etag: Option<String>) -> Done {
        Done {
            job: task.job.clone(),
            key: task.key.clone(),
            seq: task.seq,
            seen,
            bytes,
            dst_etag,
            deleted: false,
            via: default_via(),
            wan_bytes: bytes,
            cost_usd: None,
            hint_refused: None,
            sample: None,
        }
    }
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
    /// I and D of the instance, with its first renewal that gets through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<Sample>,
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
    /// S and C of this part's copy, for the planner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<Sample>,
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
    // The instance's code runs from here: the end of its ready delay.
    let started = task.timing.sample(now_us());
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap_or_default();
    let held = Arc::new(AtomicBool::new(true));
    let beat = tokio::spawn(heartbeat(http.clone(), task.clone(), held.clone(), started));
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

async fn heartbeat(http: reqwest::Client, task: Task, held: Arc<AtomicBool>, mut started: Option<Sample>) {
    let every = Duration::from_millis((task.lease_ms / 3).max(50));
    let upload = match &task.mode {
        Mode::Parts { upload } => Some(upload.clone()),
        _ => None,
    };
    // One renewal per stream: each claims parts as its own owner.
    let renewals: Vec<Renew> = owners(&task)
        .into_iter()
        .map(|owner| Renew {
            key: task.key.clone(),
            job: task.job.clone(),
            owner,
            upload: upload.clone(),
            sample: None,
        })
        .collect();
    loop {
        // The first beat at once: the lock's lease was counted from the invocation, and an
        // instance whose copy was taken over while it queued stops before doing any work.
        // One attempt per beat: a coordinator that is down is tried again at the next one.
        let url = format!("{}/renew", task.coordinator);
        for (i, renew) in renewals.iter().enumerate() {
            // I and D go once per instance, with its first stream's renewal.
            let with_sample;
            let renew = match (i, &started) {
                (0, Some(sample)) => {
                    with_sample = Renew { sample: Some(sample.clone()), ..renew.clone() };
                    &with_sample
                }
                _ => renew,
            };
            let answer = async {
                http.post(&url).json(renew).send().await?.error_for_status()?.json::<serde_json::Value>().await
            };
            let answer = answer.await;
            if i == 0 && answer.is_ok() {
                started = None;
            }
            match answer {
                Ok(v) if v["held"] == serde_json::Value::Bool(false) => {
                    tracing::warn!(key = %task.key, job = %task.job, "lock taken over; stopping");
                    held.store(false, Ordering::SeqCst);
                    return;
                }
                Ok(_) => {}
                Err(err) => tracing::debug!(%err, "renewal failed; next beat tries again"),
            }
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

/// The owners of a task's part claims: the instance, and one more per extra stream of a
/// `Parts` task that claims from the pool (assigned parts are copied in one stream).
fn owners(task: &Task) -> Vec<String> {
    let streams = match (&task.mode, &task.assigned) {
        (Mode::Parts { .. }, None) => task.streams.max(1),
        _ => 1,
    };
    (0..streams).map(|s| if s == 0 { task.instance.clone() } else { format!("{}/s{s}", task.instance) }).collect()
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
            let (seen, bytes, dst_etag, sample) = copy_whole(task, &src, &dst, held, m, throttle, None).await?;
            report(http, task, m, (seen, bytes, dst_etag), sample).await
        }
        Mode::Stream { threshold, part_size } => {
            let layout = Some((*threshold, *part_size));
            let (seen, bytes, dst_etag, sample) = copy_whole(task, &src, &dst, held, m, throttle, layout).await?;
            report(http, task, m, (seen, bytes, dst_etag), sample).await
        }
        Mode::Hint { hint, expect, threshold, part_size } => {
            let layout = Some((*threshold, *part_size));
            let ctx = Copying { task, src: &src, dst: &dst, path: &path, http, held, m, throttle };
            match apply_hint(&ctx, hint, expect, (*threshold, *part_size)).await? {
                Applied::Done { dst_etag, wan_bytes } => {
                    let copied = Done::copied(task, task.etag.clone(), task.size, Some(dst_etag));
                    send_done(http, task, &Done { via: hint.op.via().into(), wan_bytes, ..copied }).await
                }
                Applied::Refused(why) => {
                    tracing::info!(key = %task.key, op = ?hint.op, %why, "changelog hint refused; copying the bytes");
                    let (seen, bytes, dst_etag, sample) =
                        copy_whole(task, &src, &dst, held, m, throttle, layout).await?;
                    let copied = Done::copied(task, seen, bytes, dst_etag);
                    send_done(http, task, &Done { hint_refused: Some(why), sample, ..copied }).await
                }
            }
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
            report(http, task, m, (seen, 0, None), None).await
        }
        Mode::Parts { upload } => {
            let ctx = Copying { task, src: &src, dst: &dst, path: &path, http, held, m, throttle };
            if let Some(parts) = &task.assigned {
                return pull_parts(&ctx, upload, &task.instance, Some(parts)).await;
            }
            let streams = owners(task);
            futures::future::try_join_all(streams.iter().map(|owner| pull_parts(&ctx, upload, owner, None))).await?;
            Ok(())
        }
    }
}

/// Copies the whole object as bytes: a GET of the source, then, if it served the version of
/// the task, one PUT to the destination, or with a `layout` `(threshold, part_size)` a
/// multipart upload in parts above the threshold (an object the pool did not split). Answers
/// the ETag the source served, the bytes read, the destination's ETag and the copy's S and C
/// (when it wrote).
async fn copy_whole(
    task: &Task,
    src: &object_store::aws::AmazonS3,
    dst: &object_store::aws::AmazonS3,
    held: &AtomicBool,
    m: &Meter,
    throttle: &Throttle,
    layout: Option<(u64, u64)>,
) -> Result<(Option<String>, u64, Option<String>, Option<Sample>), TaskError> {
    let path = Path::from(task.key.as_str());
    let refused = client::Backoff::REFUSED;
    m.request();
    let sent = std::time::Instant::now();
    match client::retry_refused("get", refused, || src.get(&path)).await {
        Ok(got) => {
            let first = std::time::Instant::now();
            let seen = got.meta.e_tag.as_deref().map(etag::normalize);
            if let Some((_, part_size)) = layout.filter(|(t, _)| got.meta.size > *t && seen == task.etag) {
                // Part by part: memory for one part, not the object (a 1 GiB copy).
                let size = got.meta.size;
                drop(got);
                let (seen, n, dst_etag) =
                    stream_parts(Parts { task, src, dst, path: &path, held, m, throttle }, size, part_size).await?;
                // S and C as for a whole copy: the first GET's first byte to the last write.
                let sample = (seen == task.etag)
                    .then(|| task.timing.transfer(sent, first, std::time::Instant::now(), n))
                    .flatten();
                return Ok((seen, n, dst_etag, sample));
            }
            let body = read_body(got, throttle).await?;
            let n = body.len() as u64;
            let (mut dst_etag, mut sample) = (None, None);
            if seen == task.etag {
                fence(task, held)?;
                m.moved(n);
                let (threshold, part_size) = layout.unwrap_or((u64::MAX, u64::MAX));
                dst_etag = Some(put_layout(dst, &path, body, threshold, part_size, m).await?);
                sample = task.timing.transfer(sent, first, std::time::Instant::now(), n);
            }
            Ok((seen, n, dst_etag, sample))
        }
        Err(object_store::Error::NotFound { .. }) => Ok((None, 0, None, None)),
        Err(e) => Err(e.into()),
    }
}

/// Copies the version of the task, of `size` bytes, to `dst` as a multipart upload of
/// `part_size` parts, one after another (a single stream, the layout of [`put_layout`]): each
/// part is a ranged GET whose served ETag must still be the task's, then its PUT, so one part
/// is in memory and no request stays open for the whole object (the client's 30 s request
/// timeout cuts a GET held open across a 1 GiB copy). Answers the ETag the source served
/// (another than the task's stops the copy), the bytes copied and the destination's ETag.
pub(crate) async fn stream_parts(
    parts: Parts<'_>,
    size: u64,
    part_size: u64,
) -> Result<(Option<String>, u64, Option<String>), TaskError> {
    let Parts { task, dst, path, held, m, .. } = parts;
    let refused = client::Backoff::REFUSED;
    fence(task, held)?;
    m.request();
    let upload = client::retry_refused("create upload", refused, || dst.create_multipart(path)).await?;
    let mut ids = Vec::new();
    let mut n = 0u64;
    for (index, range) in part_ranges(size, part_size).enumerate() {
        let len = range.end - range.start;
        let seen = match parts.copy(&upload, index, range).await? {
            PartCopy::Copied { id, .. } => {
                n += len;
                ids.push(id);
                continue;
            }
            PartCopy::Gone => None,
            PartCopy::Changed(seen) => seen,
        };
        // Not the task's version any more: the parts written so far are of no use.
        m.request();
        if let Err(err) = dst.abort_multipart(path, &upload).await {
            tracing::warn!(key = %task.key, %err, "could not abort the abandoned upload");
        }
        return Ok((seen, n, None));
    }
    fence(task, held)?;
    m.request();
    let done = client::retry_refused("complete upload", refused, || dst.complete_multipart(path, &upload, ids.clone()))
        .await?;
    Ok((task.etag.clone(), n, done.e_tag.as_deref().map(etag::normalize)))
}

/// The byte ranges of the parts of an object of `size` bytes in parts of `part_size` (the
/// last may be shorter).
fn part_ranges(size: u64, part_size: u64) -> impl Iterator<Item = std::ops::Range<u64>> {
    let part_size = part_size.max(1);
    (0..size.div_ceil(part_size)).map(move |i| i * part_size..((i + 1) * part_size).min(size))
}

/// Writes `body` to `dst` at `path` as the replicator lays objects out: one PUT up to
/// `threshold` bytes, a multipart upload in parts of `part_size` above it
/// (`etag::for_layout`). Answers the destination's ETag.
async fn put_layout(
    dst: &object_store::aws::AmazonS3,
    path: &Path,
    body: bytes::Bytes,
    threshold: u64,
    part_size: u64,
    m: &Meter,
) -> Result<String, TaskError> {
    let refused = client::Backoff::REFUSED;
    if body.len() as u64 <= threshold {
        m.request();
        let put = client::retry_refused("put", refused, || dst.put(path, PutPayload::from(body.clone()))).await?;
        return Ok(put.e_tag.as_deref().map(etag::normalize).unwrap_or_else(|| etag::single(&body)));
    }
    m.request();
    let upload = client::retry_refused("create upload", refused, || dst.create_multipart(path)).await?;
    let size = usize::try_from(part_size).unwrap_or(usize::MAX).max(1);
    let mut ids = Vec::new();
    for (index, chunk) in body.chunks(size).enumerate() {
        let chunk = body.slice_ref(chunk);
        m.request();
        let id = client::retry_refused("put part", refused, || {
            dst.put_part(path, &upload, index, PutPayload::from(chunk.clone()))
        })
        .await?;
        ids.push(id);
    }
    m.request();
    let done = client::retry_refused("complete upload", refused, || dst.complete_multipart(path, &upload, ids.clone()))
        .await?;
    Ok(done.e_tag.as_deref().map(etag::normalize).unwrap_or_else(|| etag::multipart_of(&body, size)))
}

/// The outcome of applying a hint.
#[derive(Debug)]
pub(crate) enum Applied {
    /// The target is at the destination with this ETag; `wan_bytes` crossed the WAN for it.
    Done { dst_etag: String, wan_bytes: u64 },
    /// A check failed (the reason); nothing was written.
    Refused(String),
}

/// Applies `hint` at the destination after checking each source there against `expect`:
/// COPY and MOVE as a server-side copy at the destination (the source's delete of a MOVE is
/// replicated by its own event), CONCAT from the destination's copies of the parts, APPEND
/// from the destination's old version and the appended range read from the source. A check
/// that fails answers [`Applied::Refused`] before anything is written.
pub(crate) async fn apply_hint(
    c: &Copying<'_>,
    hint: &crate::changelog::Hint,
    expect: &[Vec<String>],
    (threshold, part_size): (u64, u64),
) -> Result<Applied, TaskError> {
    use crate::changelog::{accepts, Op};
    let Copying { task, src, dst, path, held, m, throttle, .. } = *c;
    let refused = client::Backoff::REFUSED;
    if task.etag.as_deref() != Some(hint.etag.as_str()) {
        return Ok(Applied::Refused(format!("the hint is for ETag {}, the version is {:?}", hint.etag, task.etag)));
    }
    // Each source at the destination: its ETag shows it is the version the hint names.
    let mut found = Vec::with_capacity(hint.sources.len());
    for (i, s) in hint.sources.iter().enumerate() {
        let p = Path::from(s.key.as_str());
        m.request();
        let tag = match client::retry_refused("head", refused, || dst.head(&p)).await {
            Ok(meta) => meta.e_tag.as_deref().map(etag::normalize),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let want = expect.get(i).map_or(&[][..], Vec::as_slice);
        if let Err(why) = accepts(&s.key, tag.as_deref(), want) {
            return Ok(Applied::Refused(why));
        }
        found.push(tag.unwrap_or_default());
    }
    // A read of a source's copy at the destination, checked against the ETag just checked
    // (a copy of a later version may have replaced it since).
    let read_dst = |key: String, want: String| async move {
        let p = Path::from(key.as_str());
        m.request();
        let got = match client::retry_refused("get", refused, || dst.get(&p)).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => {
                return Ok(Err(format!("source {key} left the destination during the build")))
            }
            Err(e) => return Err(TaskError::from(e)),
        };
        let tag = got.meta.e_tag.as_deref().map(etag::normalize);
        if tag.as_deref() != Some(want.as_str()) {
            return Ok(Err(format!("source {key} changed at the destination during the build")));
        }
        Ok(Ok(got.bytes().await?))
    };
    let (body, wan_bytes) = match hint.op {
        Op::Copy | Op::Move => {
            let from = Path::from(hint.sources[0].key.as_str());
            fence(task, held)?;
            m.request();
            client::retry_refused("copy", refused, || dst.copy(&from, path)).await?;
            // The copy keeps its source's ETag: the target's must be the one checked, else a
            // later version replaced the source in between (the bytes are copied instead).
            m.request();
            let tag = dst.head(path).await?.e_tag.as_deref().map(etag::normalize).unwrap_or_default();
            if tag != found[0] {
                return Ok(Applied::Refused(format!(
                    "the copy at the destination is {tag}, its source was {}",
                    found[0]
                )));
            }
            return Ok(Applied::Done { dst_etag: tag, wan_bytes: 0 });
        }
        Op::Concat => {
            let mut body = bytes::BytesMut::new();
            for (s, want) in hint.sources.iter().zip(&found) {
                match read_dst(s.key.clone(), want.clone()).await? {
                    Ok(part) => body.extend_from_slice(&part),
                    Err(why) => return Ok(Applied::Refused(why)),
                }
            }
            (body.freeze(), 0)
        }
        Op::Append => {
            let Some(range) = hint.append else { return Ok(Applied::Refused("APPEND without its range".into())) };
            let old = match read_dst(hint.key.clone(), found[0].clone()).await? {
                Ok(old) => old,
                Err(why) => return Ok(Applied::Refused(why)),
            };
            if old.len() as u64 != range.offset {
                return Ok(Applied::Refused(format!(
                    "the old version has {} bytes, the hint appends at {}",
                    old.len(),
                    range.offset
                )));
            }
            // Only the appended bytes cross the WAN, from the version the task copies.
            let opts = GetOptions {
                range: Some(GetRange::Bounded(range.offset..range.offset + range.length)),
                ..Default::default()
            };
            m.request();
            let got = match client::retry_refused("get range", refused, || src.get_opts(path, opts.clone())).await {
                Ok(got) => got,
                Err(object_store::Error::NotFound { .. }) => {
                    return Ok(Applied::Refused("the target left the source".into()))
                }
                Err(e) => return Err(e.into()),
            };
            let seen = got.meta.e_tag.as_deref().map(etag::normalize);
            if seen != task.etag {
                return Ok(Applied::Refused(format!("the source is {seen:?} now, not {:?}", task.etag)));
            }
            let tail = read_body(got, throttle).await?;
            if tail.len() as u64 != range.length {
                return Ok(Applied::Refused(format!(
                    "the source served {} appended bytes of {}",
                    tail.len(),
                    range.length
                )));
            }
            m.moved(tail.len() as u64);
            let mut body = bytes::BytesMut::from(&old[..]);
            body.extend_from_slice(&tail);
            (body.freeze(), tail.len() as u64)
        }
    };
    // A single-PUT target's ETag is its MD5: a hint whose result is other bytes is caught
    // before it is written.
    if etag::parse_md5(&hint.etag).is_some() && etag::single(&body) != hint.etag {
        return Ok(Applied::Refused(format!("the built object's MD5 is not the hint's ETag {}", hint.etag)));
    }
    if body.len() as u64 != task.size {
        return Ok(Applied::Refused(format!("built {} bytes, the version has {}", body.len(), task.size)));
    }
    fence(task, held)?;
    let dst_etag = put_layout(dst, path, body, threshold, part_size, m).await?;
    Ok(Applied::Done { dst_etag, wan_bytes })
}

/// What a copy works with.
pub(crate) struct Copying<'a> {
    pub(crate) task: &'a Task,
    pub(crate) src: &'a object_store::aws::AmazonS3,
    pub(crate) dst: &'a object_store::aws::AmazonS3,
    pub(crate) path: &'a Path,
    pub(crate) http: &'a reqwest::Client,
    pub(crate) held: &'a AtomicBool,
    pub(crate) m: &'a Meter,
    pub(crate) throttle: &'a Throttle,
}

impl Copying<'_> {
    /// The part copy's view of this copy.
    fn parts(&self) -> Parts<'_> {
        let Copying { task, src, dst, path, held, m, throttle, .. } = *self;
        Parts { task, src, dst, path, held, m, throttle }
    }
}

/// What a part's copy works with: a [`Copying`] without the coordinator's client.
#[derive(Clone, Copy)]
pub(crate) struct Parts<'a> {
    pub(crate) task: &'a Task,
    pub(crate) src: &'a object_store::aws::AmazonS3,
    pub(crate) dst: &'a object_store::aws::AmazonS3,
    pub(crate) path: &'a Path,
    pub(crate) held: &'a AtomicBool,
    pub(crate) m: &'a Meter,
    pub(crate) throttle: &'a Throttle,
}

/// What copying one part found.
enum PartCopy {
    /// Written as a part of the upload; when its GET was sent and its first byte came.
    Copied { id: PartId, sent: std::time::Instant, first: std::time::Instant },
    /// The source is gone.
    Gone,
    /// The source serves another version than the task's (its ETag).
    Changed(Option<String>),
}

impl Parts<'_> {
    /// Copies `range` of the source as part `index` (from 0) of `upload`: a ranged GET whose
    /// served ETag must still be the task's, then the part's PUT under the task's fence.
    async fn copy(&self, upload: &str, index: usize, range: std::ops::Range<u64>) -> Result<PartCopy, TaskError> {
        let Parts { task, src, dst, path, held, m, throttle } = *self;
        let refused = client::Backoff::REFUSED;
        let opts = GetOptions { range: Some(GetRange::Bounded(range)), ..Default::default() };
        m.request();
        let sent = std::time::Instant::now();
        let got = match client::retry_refused("get part", refused, || src.get_opts(path, opts.clone())).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(PartCopy::Gone),
            Err(e) => return Err(e.into()),
        };
        let first = std::time::Instant::now();
        let seen = got.meta.e_tag.as_deref().map(etag::normalize);
        if seen != task.etag {
            tracing::info!(key = %task.key, part = index + 1, ?seen, expected = ?task.etag, "source changed during the copy; abandoning");
            return Ok(PartCopy::Changed(seen));
        }
        let body = read_body(got, throttle).await?;
        fence(task, held)?;
        m.request();
        m.moved(body.len() as u64);
        let upload = upload.to_owned();
        let id = client::retry_refused("put part", refused, || {
            dst.put_part(path, &upload, index, PutPayload::from(body.clone()))
        })
        .await?;
        Ok(PartCopy::Copied { id, sent, first })
    }
}

/// Copies parts of `upload` as `owner` until none is left: the `assigned` ones in order, or
/// else one claimed from the pool at a time. The stream that finishes the last part completes
/// the upload and reports the copy.
async fn pull_parts(
    c: &Copying<'_>,
    upload: &str,
    owner: &str,
    assigned: Option<&[crate::state::PartView]>,
) -> Result<(), TaskError> {
    let Copying { task, dst, path, http, held, m, .. } = *c;
    let parts = c.parts();
    let claim = Claim { upload: upload.to_owned(), owner: owner.to_owned() };
    let refused = client::Backoff::REFUSED;
    let upload_id = upload.to_owned();
    let mut assigned = assigned.map(|a| a.iter());
    loop {
        let part = match assigned.as_mut() {
            Some(parts) => parts.next().cloned(),
            None => post::<_, Option<crate::state::PartView>>(http, &task.coordinator, "claim", &claim).await?,
        };
        let Some(part) = part else { break };
        let range = part.offset..part.offset + part.len;
        let (id, sent, first) = match parts.copy(&upload_id, part.number as usize - 1, range).await? {
            PartCopy::Copied { id, sent, first } => (id, sent, first),
            PartCopy::Gone => return report(http, task, m, (None, 0, None), None).await,
            PartCopy::Changed(seen) => return report(http, task, m, (seen, 0, None), None).await,
        };
        let sample = task.timing.transfer(sent, first, std::time::Instant::now(), part.len);
        let finish = Finish {
            upload: upload.to_owned(),
            number: part.number,
            owner: owner.to_owned(),
            etag: id.content_id,
            sample,
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
            return report(http, task, m, (task.etag.clone(), task.size, dst_etag), None).await;
        }
    }
    Ok(())
}

/// Reports a copy: what the source served, the bytes copied and the destination's ETag, and
/// a whole copy's measured S and C.
async fn report(
    http: &reqwest::Client,
    task: &Task,
    m: &Meter,
    (seen, bytes, dst_etag): (Option<String>, u64, Option<String>),
    sample: Option<Sample>,
) -> Result<(), TaskError> {
    let deleted = matches!(task.mode, Mode::Delete);
    // The requests so far: the copy's own (the report itself is the coordinator's).
    let requests = m.requests.load(Ordering::Relaxed);
    let cost_usd = task.fee.map(|f| f.cost(requests, bytes, bytes, deleted));
    send_done(http, task, &Done { deleted, cost_usd, sample, ..Done::copied(task, seen, bytes, dst_etag) }).await
}

/// Tells `task`'s coordinator that its copy is done.
async fn send_done(http: &reqwest::Client, task: &Task, done: &Done) -> Result<(), TaskError> {
    post::<_, serde_json::Value>(http, &task.coordinator, "done", done).await.map(|_| ())
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

/// A whole-object copy of `key` for `system` between two endpoints that serve nothing:
/// for tests whose stand-in instances never connect (they vary fields with `..`).
#[cfg(test)]
pub(crate) fn test_task(key: &str, system: &str) -> Task {
    let ep = Endpoint {
        url: "http://127.0.0.1:1".into(),
        bucket: "b".into(),
        region: "r".into(),
        access_key: "a".into(),
        secret_key: "s".into(),
    };
    Task {
        job: "j".into(),
        instance: format!("{key}-0"),
        key: key.into(),
        seq: 1,
        etag: None,
        size: 1,
        src: ep.clone(),
        dst: ep,
        coordinator: "http://127.0.0.1:1".into(),
        mode: Mode::Whole,
        lease_ms: 1000,
        system: system.into(),
        bandwidth: None,
        streams: 1,
        assigned: None,
        fee: None,
        timing: Timing::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_object_in_order_all_whole_but_the_last() {
        for (size, part) in [(1000u64, 100u64), (1000, 300), (999, 1000), (1000, 1000), (1, 7), (0, 5)] {
            let ranges: Vec<_> = part_ranges(size, part).collect();
            assert_eq!(ranges.len() as u64, size.div_ceil(part), "{size} in {part}");
            let mut at = 0;
            for (i, r) in ranges.iter().enumerate() {
                assert_eq!(r.start, at, "contiguous: {ranges:?}");
                let last = i + 1 == ranges.len();
                assert!(r.end > r.start && (last || r.end - r.start == part), "{ranges:?}");
                at = r.end;
            }
            assert_eq!(at, size, "{ranges:?}");
            // The layout is put_layout's: its ETag is multipart_of's.
            let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            if size > 0 {
                let digests: Vec<[u8; 16]> =
                    ranges.iter().map(|r| etag::md5(&body[r.start as usize..r.end as usize])).collect();
                assert_eq!(etag::multipart(&digests), etag::multipart_of(&body, part as usize));
            }
        }
    }

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
