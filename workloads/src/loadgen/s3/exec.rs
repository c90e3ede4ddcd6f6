//! The S3 "protocol": each planned request is one trace step, done through `object_store`.
//!
//! # Design
//! [`S3`] implements [`Protocol`] so that the open-loop dispatcher, the issuer's concurrency
//! cap, timeout and cancellation, and the records of `requests.csv` are the load generator's
//! own; a request's path is `/<step index>` and its method the operation. A "connection" is
//! the shared client (`object_store` pools HTTP connections itself).
//!
//! A step locks its keys (target and sources, in key order, FIFO per key) for its duration, so
//! operations on one key reach the store in trace order even when they overlap in time.
//!
//! - PUT: the bytes of `(key, version)` (see [`super::model`]); from `--multipart-threshold`
//!   on, a multipart upload in `--part-size` parts, generated one part at a time.
//! - COPY/MOVE: HEAD of the source (its ETag goes into the changelog record and is the
//!   expected ETag of the copy), the record, CopyObject, a HEAD of the target for the ETag it
//!   got; MOVE then deletes the source.
//! - CONCAT/APPEND: GET of the sources (APPEND: of the old object), the record with the ETag
//!   the whole new object will have (computed here), then one PUT (or multipart upload) of it.
//! - DELETE: DELETE (an absent key is not an error).
//!
//! A store's refusal (4xx) is logged and retried with a growing pause
//! ([`s3util::client::retry_refused`]); 5xx, 429 and transport errors are retried with
//! backoff by `object_store`. What still fails is logged, recorded (`error` = `store` in
//! `requests.csv`, the message in `s3_ops.csv`) and counted: nothing is dropped silently.
//!
//! # Limitations
//! CONCAT and APPEND hold the whole new object in memory. The expected ETag of a COPY is the
//! source's (what S3 gives a copy of a single-part object, and what `s3s-fs` gives any copy).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path as FsPath;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use object_store::aws::AmazonS3;
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};
use s3util::client::{retry_refused, Backoff};
use s3util::etag;
use serde::Serialize;

use super::changelog::{self, Append, Source};
use super::model::{self, Layout, Step, Upload};
use super::trace::Op;
use crate::loadgen::{ErrorKind, Protocol, Reply, Request};
use crate::runtime::now_unix_ns;

/// How the client writes.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub upload: Upload,
    /// Write changelog records for COPY/MOVE/CONCAT/APPEND (`--hints on`).
    pub hints: bool,
    pub backoff: Backoff,
}

/// What one step did: a row of `s3_ops.csv`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OpRecord {
    /// The step's index (the `id` of `requests.csv`).
    pub id: u64,
    /// The row's time in the trace, ms.
    pub time_ms: f64,
    pub op: String,
    pub key: String,
    /// PUT: bytes written; APPEND: bytes appended; COPY/MOVE/CONCAT: the new object's bytes.
    pub size: u64,
    pub sources: String,
    pub version: u64,
    /// The ETag the store gave the target (quoted), empty for a DELETE or a failure.
    pub etag: String,
    /// The ETag the client expected (quoted).
    pub expected_etag: String,
    /// The key of the changelog record written before the operation, or empty.
    pub changelog: String,
    /// The store's message when the operation failed after its retries.
    pub error: String,
}

/// Errors of a step.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("{what} {key}")]
    Store {
        what: &'static str,
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{what} {key}: the store sent no ETag")]
    NoEtag { what: &'static str, key: String },
}

/// Runs the steps of a trace against a store.
pub struct S3 {
    store: Arc<AmazonS3>,
    steps: Arc<Vec<Step>>,
    cfg: Config,
    log: Mutex<Vec<OpRecord>>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl S3 {
    pub fn new(store: AmazonS3, steps: Vec<Step>, cfg: Config) -> S3 {
        S3 {
            store: Arc::new(store),
            steps: Arc::new(steps),
            cfg,
            log: Mutex::new(Vec::new()),
            locks: Mutex::new(HashMap::new()),
        }
    }

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    pub fn store(&self) -> &AmazonS3 {
        &self.store
    }

    /// Every step's record so far, by id.
    pub fn take_log(&self) -> Vec<OpRecord> {
        let mut v = self.log.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default();
        v.sort_by_key(|r| r.id);
        v
    }

    fn lock_of(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        match self.locks.lock() {
            Ok(mut m) => m.entry(key.to_owned()).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }

    /// Does step `id`, recording it.
    pub async fn run_step(&self, id: usize) -> Result<OpRecord, ErrorKind> {
        let Some(step) = self.steps.get(id) else { return Err(ErrorKind::Io) };
        let mut keys: Vec<&String> = std::iter::once(&step.row.key).chain(&step.row.sources).collect();
        keys.sort();
        keys.dedup();
        let mut guards = Vec::with_capacity(keys.len());
        for k in keys {
            guards.push(self.lock_of(k).lock_owned().await);
        }
        let mut rec = OpRecord {
            id: id as u64,
            time_ms: step.row.time,
            op: step.row.op.to_string(),
            key: step.row.key.clone(),
            size: step.row.size,
            sources: step.row.sources.join(";"),
            version: step.version,
            ..OpRecord::default()
        };
        let result = self.execute(step, &mut rec).await;
        drop(guards);
        if let Err(err) = &result {
            rec.error = chain(err);
            tracing::error!(id, op = %rec.op, key = %rec.key, error = %rec.error, "the store failed an operation after its retries");
        } else if !rec.expected_etag.is_empty() && !rec.etag.is_empty() && rec.etag != rec.expected_etag {
            tracing::warn!(id, op = %rec.op, key = %rec.key, got = %rec.etag, expected = %rec.expected_etag, "the store gave another ETag than expected");
        }
        if let Ok(mut log) = self.log.lock() {
            log.push(rec.clone());
        }
        result.map(|()| rec).map_err(|_| ErrorKind::Store)
    }

    async fn execute(&self, step: &Step, rec: &mut OpRecord) -> Result<(), StepError> {
        let row = &step.row;
        let target = path(&row.key);
        match row.op {
            Op::Put => {
                let Some(obj) = &step.result else { return Ok(()) };
                let size = obj.size();
                let (got, expected) = self.upload(&target, size, |at, buf| obj.read_at(at, buf)).await?;
                (rec.etag, rec.expected_etag) = (got, expected);
            }
            Op::Copy | Op::Move => {
                let src = &row.sources[0];
                let src_path = path(src);
                let meta = self.retry("head", src, || self.store.head(&src_path)).await?;
                let src_etag = meta.e_tag.as_deref().map(etag::quoted).ok_or_else(|| no_etag("head", src))?;
                rec.size = meta.size;
                rec.expected_etag = src_etag.clone();
                self.hint(
                    rec,
                    row.op,
                    &row.key,
                    &src_etag,
                    vec![Source { key: src.clone(), etag: src_etag.clone() }],
                    None,
                )
                .await?;
                self.retry("copy", &row.key, || self.store.copy(&src_path, &target)).await?;
                let meta = self.retry("head", &row.key, || self.store.head(&target)).await?;
                rec.etag = meta.e_tag.as_deref().map(etag::quoted).unwrap_or_default();
                if row.op == Op::Move {
                    self.delete(src).await?;
                }
            }
            Op::Concat | Op::Append => {
                let mut body = Vec::new();
                let mut sources = Vec::new();
                let inputs = if row.op == Op::Append { std::slice::from_ref(&row.key) } else { &row.sources[..] };
                for k in inputs {
                    // The ETag of the bytes read, from the GET itself (a later HEAD could
                    // see another version).
                    let k_path = path(k);
                    let (got, tag) = self
                        .retry("get", k, || async {
                            let r = self.store.get(&k_path).await?;
                            let tag = r.meta.e_tag.clone();
                            Ok((r.bytes().await?, tag))
                        })
                        .await?;
                    let tag = tag.as_deref().map(etag::quoted).ok_or_else(|| no_etag("get", k))?;
                    sources.push(Source { key: k.clone(), etag: tag });
                    body.extend_from_slice(&got);
                }
                let mut append = None;
                if row.op == Op::Append {
                    let offset = body.len();
                    body.resize(offset + usize::try_from(row.size).unwrap_or(usize::MAX), 0);
                    model::fill(model::seed(&row.key, step.version), 0, &mut body[offset..]);
                    append = Some(Append { offset: offset as u64, length: row.size });
                } else {
                    rec.size = body.len() as u64;
                }
                let expected = etag::quoted(&expected_etag(&body, self.cfg.upload));
                self.hint(rec, row.op, &row.key, &expected, sources, append).await?;
                let (got, expected) = self
                    .upload(&target, body.len() as u64, |at, buf| {
                        let at = at as usize;
                        buf.copy_from_slice(&body[at..at + buf.len()]);
                    })
                    .await?;
                (rec.etag, rec.expected_etag) = (got, expected);
            }
            Op::Delete => self.delete(&row.key).await?,
        }
        Ok(())
    }

    /// Writes the changelog record of an operation (unless hints are off).
    async fn hint(
        &self,
        rec: &mut OpRecord,
        op: Op,
        key: &str,
        etag: &str,
        sources: Vec<Source>,
        append: Option<Append>,
    ) -> Result<(), StepError> {
        if !self.cfg.hints {
            return Ok(());
        }
        let Some(op) = changelog::record_op(op) else { return Ok(()) };
        let record = changelog::Record { op, key: key.to_owned(), etag: etag.to_owned(), sources, append };
        let at = changelog::key(key, now_unix_ns());
        let body = Bytes::from(record.to_body());
        let at_path = path(&at);
        self.retry("put changelog", &at, || self.store.put(&at_path, PutPayload::from(body.clone()))).await?;
        rec.changelog = at;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StepError> {
        let key_path = path(key);
        match self.retry("delete", key, || self.store.delete(&key_path)).await {
            Ok(()) => Ok(()),
            Err(StepError::Store { source: object_store::Error::NotFound { .. }, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Uploads `size` bytes produced by `fill(offset, buf)`: one PUT below the threshold,
    /// else parts. Returns the store's ETag and the expected one (both quoted).
    async fn upload(
        &self,
        target: &Path,
        size: u64,
        fill: impl Fn(u64, &mut [u8]),
    ) -> Result<(String, String), StepError> {
        let key = target.as_ref().to_owned();
        match self.cfg.upload.layout(size) {
            Layout::Single => {
                let mut body = vec![0u8; usize::try_from(size).unwrap_or(usize::MAX)];
                fill(0, &mut body);
                let expected = etag::single(&body);
                let body = Bytes::from(body);
                let put = self.retry("put", &key, || self.store.put(target, PutPayload::from(body.clone()))).await?;
                let got = put.e_tag.as_deref().map(etag::quoted).ok_or_else(|| no_etag("put", &key))?;
                Ok((got, etag::quoted(&expected)))
            }
            Layout::Multipart(part) => {
                let id = self.retry("create upload", &key, || self.store.create_multipart(target)).await?;
                let mut ids = Vec::new();
                let mut digests = Vec::new();
                let mut at = 0;
                while at < size {
                    let n = (size - at).min(part.max(1));
                    let mut buf = vec![0u8; usize::try_from(n).unwrap_or(usize::MAX)];
                    fill(at, &mut buf);
                    digests.push(etag::md5(&buf));
                    let buf = Bytes::from(buf);
                    let index = ids.len();
                    let done = self
                        .retry("put part", &key, || {
                            self.store.put_part(target, &id, index, PutPayload::from(buf.clone()))
                        })
                        .await;
                    match done {
                        Ok(p) => ids.push(p),
                        Err(e) => {
                            let _ = self.store.abort_multipart(target, &id).await;
                            return Err(e);
                        }
                    }
                    at += n;
                }
                let put = self
                    .retry("complete upload", &key, || self.store.complete_multipart(target, &id, ids.clone()))
                    .await?;
                let got = put.e_tag.as_deref().map(etag::quoted).ok_or_else(|| no_etag("complete upload", &key))?;
                Ok((got, etag::quoted(&etag::multipart(&digests))))
            }
        }
    }

    async fn retry<T, F, Fut>(&self, what: &'static str, key: &str, op: F) -> Result<T, StepError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = object_store::Result<T>>,
    {
        retry_refused(what, self.cfg.backoff, op).await.map_err(|source| StepError::Store {
            what,
            key: key.to_owned(),
            source,
        })
    }
}

impl Protocol for Arc<S3> {
    type Conn = ();

    async fn connect(&self, _authority: &str) -> Result<(), ErrorKind> {
        Ok(())
    }

    async fn send(&self, _conn: &mut (), req: &Request) -> Result<Reply, ErrorKind> {
        let id = req.path.trim_start_matches('/').parse::<usize>().map_err(|_| ErrorKind::Io)?;
        let rec = self.run_step(id).await?;
        Ok(Reply { status: 200, bytes: rec.size, timing: None, received_ns: None })
    }

    fn reusable(&self, _conn: &()) -> bool {
        true
    }
}

/// The ETag S3 gives `body` written as the client writes an object of its size (unquoted).
pub fn expected_etag(body: &[u8], upload: Upload) -> String {
    match upload.layout(body.len() as u64) {
        Layout::Single => etag::single(body),
        Layout::Multipart(part) => etag::multipart_of(body, usize::try_from(part).unwrap_or(usize::MAX)),
    }
}

fn no_etag(what: &'static str, key: &str) -> StepError {
    StepError::NoEtag { what, key: key.to_owned() }
}

/// A trace key as the client sends it (checked when the trace was read).
fn path(key: &str) -> Path {
    Path::parse(key).unwrap_or_else(|_| Path::from(key))
}

fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cur = e.source();
    }
    out
}

/// Writes `s3_ops.csv` into `dir`.
pub fn write_ops(dir: &FsPath, ops: &[OpRecord]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in ops {
        w.serialize(r).map_err(std::io::Error::other)?;
    }
    if ops.is_empty() {
        w.write_record(OP_COLUMNS).map_err(std::io::Error::other)?;
    }
    let data = w.into_inner().map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut f = std::fs::File::create(dir.join("s3_ops.csv"))?;
    f.write_all(&data)?;
    f.flush()
}

/// The header of `s3_ops.csv`.
pub const OP_COLUMNS: [&str; 11] =
    ["id", "time_ms", "op", "key", "size", "sources", "version", "etag", "expected_etag", "changelog", "error"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_etags_match_known_s3_values() {
        let up = Upload { threshold: 5 << 20, part_size: 5 << 20 };
        // S3's ETag of "hello world" in one PUT, and of 5 MiB of 'a' + 1 KiB of 'b' in 5 MiB
        // parts (reference from Python hashlib, as in s3util::etag).
        assert_eq!(expected_etag(b"hello world", up), "5eb63bbbe01eeed093cb22bb8f5acdc3");
        let mut body = vec![b'a'; 5 << 20];
        body.extend(std::iter::repeat_n(b'b', 1024));
        assert_eq!(expected_etag(&body, up), "16329fb6004d64a4fbc5bbb983fa0528-2");
        // At the threshold exactly: parts (≥ threshold goes multipart).
        assert!(expected_etag(&body[..5 << 20], up).ends_with("-1"));
        assert_eq!(expected_etag(&body[..(5 << 20) - 1], up).len(), 32);
    }

    #[test]
    fn ops_csv_has_its_header_even_when_empty() {
        let dir = tempfile::tempdir().unwrap();
        write_ops(dir.path(), &[]).unwrap();
        let text = std::fs::read_to_string(dir.path().join("s3_ops.csv")).unwrap();
        assert_eq!(text.trim(), OP_COLUMNS.join(","));
        let r = OpRecord { id: 3, op: "PUT".into(), key: "a,b".into(), etag: "\"x\"".into(), ..OpRecord::default() };
        write_ops(dir.path(), &[r]).unwrap();
        let text = std::fs::read_to_string(dir.path().join("s3_ops.csv")).unwrap();
        assert_eq!(text.lines().next().unwrap(), OP_COLUMNS.join(","));
        assert!(text.contains("3,0.0,PUT,\"a,b\""), "{text}");
    }
}
