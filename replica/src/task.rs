//! One function instance's work: copy a whole object, delete one, or pull parts from the pool.
//!
//! An instance is told the version it copies `{seq, etag}`. It reads the source with the
//! real S3 client and checks the ETag the source serves against it (optimistic validation): a
//! part read of a changed object stops the copy, and the instance reports the ETag it saw so
//! that the lock release answers stale and the object is replicated again.

use crate::client::{self, Endpoint};
use crate::etag;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, PutPayload};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Errors of a task.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("talk to the store")]
    Store(#[from] object_store::Error),
    #[error("talk to the coordinator at {url}")]
    Coordinator {
        url: String,
        #[source]
        source: reqwest::Error,
    },
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
pub async fn run(task: &Task) -> Result<(), TaskError> {
    let src = client::connect(&task.src)?;
    let dst = client::connect(&task.dst)?;
    let path = Path::from(task.key.as_str());
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap_or_default();
    match &task.mode {
        Mode::Whole => {
            let (seen, bytes) = match src.get(&path).await {
                Ok(got) => {
                    let seen = got.meta.e_tag.as_deref().map(etag::normalize);
                    let body = got.bytes().await?;
                    let n = body.len() as u64;
                    if seen == task.etag {
                        dst.put(&path, PutPayload::from(body)).await?;
                    }
                    (seen, n)
                }
                Err(object_store::Error::NotFound { .. }) => (None, 0),
                Err(e) => return Err(e.into()),
            };
            report(&http, task, seen, bytes).await
        }
        Mode::Delete => {
            match dst.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            let seen = match src.head(&path).await {
                Ok(meta) => meta.e_tag.as_deref().map(etag::normalize),
                Err(object_store::Error::NotFound { .. }) => None,
                Err(e) => return Err(e.into()),
            };
            report(&http, task, seen, 0).await
        }
        Mode::Parts { upload } => pull_parts(task, upload, &src, &dst, &path, &http).await,
    }
}

async fn pull_parts(
    task: &Task,
    upload: &str,
    src: &object_store::aws::AmazonS3,
    dst: &object_store::aws::AmazonS3,
    path: &Path,
    http: &reqwest::Client,
) -> Result<(), TaskError> {
    let claim = Claim { upload: upload.to_owned(), owner: task.instance.clone() };
    let mut moved = 0u64;
    while let Some(part) = post::<_, Option<crate::state::PartView>>(http, &task.coordinator, "claim", &claim).await? {
        let opts =
            GetOptions { range: Some(GetRange::Bounded(part.offset..part.offset + part.len)), ..Default::default() };
        let got = match src.get_opts(path, opts).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return report(http, task, None, moved).await,
            Err(e) => return Err(e.into()),
        };
        let seen = got.meta.e_tag.as_deref().map(etag::normalize);
        if seen != task.etag {
            tracing::info!(key = %task.key, part = part.number, ?seen, expected = ?task.etag, "source changed during the copy; abandoning");
            return report(http, task, seen, moved).await;
        }
        let body = got.bytes().await?;
        moved += body.len() as u64;
        let id = dst.put_part(path, &upload.to_owned(), part.number as usize - 1, PutPayload::from(body)).await?;
        let finish = Finish {
            upload: upload.to_owned(),
            number: part.number,
            owner: task.instance.clone(),
            etag: id.content_id,
        };
        let answer: Finished = post(http, &task.coordinator, "finish", &finish).await?;
        if let Some(parts) = answer.complete {
            let ids = parts.into_iter().map(|(_, content_id)| PartId { content_id }).collect();
            dst.complete_multipart(path, &upload.to_owned(), ids).await?;
            return report(http, task, task.etag.clone(), moved).await;
        }
    }
    Ok(())
}

async fn report(http: &reqwest::Client, task: &Task, seen: Option<String>, bytes: u64) -> Result<(), TaskError> {
    let done = Done { job: task.job.clone(), key: task.key.clone(), seq: task.seq, seen, bytes };
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
