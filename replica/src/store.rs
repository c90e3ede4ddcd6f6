//! The S3-protocol object store: `s3s-fs` behind a layer that notifies every created and
//! removed object.
//!
//! # Design
//! `s3s` parses and signs the S3 protocol; `s3s-fs` keeps objects as files and computes
//! S3 ETags (MD5 for a PUT, MD5-of-MD5s-N for a multipart upload). [`NotifyingStore`]
//! implements the `S3` trait by delegating each operation the replicator and its clients use
//! (PUT, multipart, GET with ranges, HEAD, DELETE, CopyObject, ListObjectsV2, buckets) and,
//! after a mutation succeeds, queues an AWS-shaped event for the [`crate::notify`] sender.
//!
//! A mutation and the drawing of its sequencer happen under a per-key lock, so the sequencer
//! order of a key is the order in which its versions became visible.
//!
//! # Limitations
//! Versioning, object lock, tagging, ACLs and the other S3 operations answer NotImplemented.

use crate::event::{self, Kind, ObjectEntity, Record};
use crate::notify::Notifier;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, S3};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The store: a filesystem backend plus notifications.
pub struct NotifyingStore {
    inner: s3s_fs::FileSystem,
    root: PathBuf,
    region: String,
    notifier: Option<Notifier>,
    seq: AtomicU64,
    key_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl NotifyingStore {
    /// A store over `root` in `region`, sending events through `notifier` (none: no events).
    pub fn new(root: PathBuf, region: String, notifier: Option<Notifier>) -> std::io::Result<NotifyingStore> {
        std::fs::create_dir_all(&root)?;
        let inner = s3s_fs::FileSystem::new(&root).map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        // Nanoseconds since the epoch: later than any sequencer of an earlier run of this store.
        let start = chrono::Utc::now().timestamp_nanos_opt().and_then(|n| u64::try_from(n).ok()).unwrap_or(1);
        Ok(NotifyingStore {
            inner,
            root,
            region,
            notifier,
            seq: AtomicU64::new(start),
            key_locks: Mutex::new(HashMap::new()),
        })
    }

    fn key_lock(&self, bucket: &str, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.key_locks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if locks.len() > 4096 {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry(format!("{bucket}/{key}")).or_default().clone()
    }

    fn emit(&self, bucket: &str, key: &str, kind: Kind, e_tag: Option<&ETag>) {
        let Some(notifier) = &self.notifier else { return };
        let seq = self.seq.fetch_add(1, Ordering::SeqCst);
        let size = match kind {
            Kind::Delete => None,
            _ => std::fs::metadata(self.root.join(bucket).join(key)).ok().map(|m| m.len()),
        };
        let object = ObjectEntity {
            key: key.to_owned(),
            size,
            e_tag: e_tag.map(|t| t.value().to_owned()),
            sequencer: event::sequencer(seq),
        };
        notifier.send(Record::new(&self.region, bucket, kind, object));
    }
}

#[async_trait::async_trait]
impl S3 for NotifyingStore {
    // Delegated as they are (written out: `async_trait` cannot see through a macro).
    async fn create_bucket(&self, req: S3Request<CreateBucketInput>) -> S3Result<S3Response<CreateBucketOutput>> {
        self.inner.create_bucket(req).await
    }

    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        self.inner.head_bucket(req).await
    }

    async fn list_buckets(&self, req: S3Request<ListBucketsInput>) -> S3Result<S3Response<ListBucketsOutput>> {
        self.inner.list_buckets(req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.inner.get_bucket_location(req).await
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        self.inner.get_object(req).await
    }

    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        self.inner.head_object(req).await
    }

    async fn list_objects(&self, req: S3Request<ListObjectsInput>) -> S3Result<S3Response<ListObjectsOutput>> {
        self.inner.list_objects(req).await
    }

    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
        // S3 lists every object's ETag; s3s-fs leaves it out. Each is filled from a HEAD of
        // the backend (which keeps the ETag beside the object), so a replicator can compare
        // listings of two stores without reading the objects.
        let bucket = req.input.bucket.clone();
        let (method, uri, headers) = (req.method.clone(), req.uri.clone(), req.headers.clone());
        let (credentials, region, service) = (req.credentials.clone(), req.region.clone(), req.service.clone());
        let mut out = self.inner.list_objects_v2(req).await?;
        for object in out.output.contents.iter_mut().flatten() {
            let Some(key) = object.key.clone().filter(|_| object.e_tag.is_none()) else { continue };
            let Ok(input) = HeadObjectInput::builder().bucket(bucket.clone()).key(key).build() else { continue };
            let head = S3Request {
                input,
                method: method.clone(),
                uri: uri.clone(),
                headers: headers.clone(),
                extensions: Default::default(),
                credentials: credentials.clone(),
                region: region.clone(),
                service: service.clone(),
                trailing_headers: None,
            };
            // A key removed since the listing keeps no ETag.
            if let Ok(got) = self.inner.head_object(head).await {
                object.e_tag = got.output.e_tag;
            }
        }
        Ok(out)
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.inner.create_multipart_upload(req).await
    }

    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        self.inner.upload_part(req).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        self.inner.upload_part_copy(req).await
    }

    async fn list_parts(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        self.inner.list_parts(req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.inner.abort_multipart_upload(req).await
    }

    async fn put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let lock = self.key_lock(&bucket, &key);
        let _held = lock.lock().await;
        let out = self.inner.put_object(req).await?;
        self.emit(&bucket, &key, Kind::Put, out.output.e_tag.as_ref());
        Ok(out)
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let lock = self.key_lock(&bucket, &key);
        let _held = lock.lock().await;
        // s3s-fs answers through a deferred `future` field, so the ETag is taken from the
        // request's part list, as S3 defines it (MD5 of the parts' binary MD5s, "-N").
        let parts: Option<Vec<[u8; 16]>> = req
            .input
            .multipart_upload
            .as_ref()
            .and_then(|m| m.parts.as_ref())
            .map(|parts| {
                parts.iter().map(|p| p.e_tag.as_ref().and_then(|t| crate::etag::parse_md5(t.value()))).collect()
            })
            .and_then(|v: Vec<Option<[u8; 16]>>| v.into_iter().collect());
        let out = self.inner.complete_multipart_upload(req).await?;
        let e_tag = out.output.e_tag.clone().or_else(|| parts.map(|p| ETag::Strong(crate::etag::multipart(&p))));
        self.emit(&bucket, &key, Kind::CompleteMultipartUpload, e_tag.as_ref());
        Ok(out)
    }

    async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let lock = self.key_lock(&bucket, &key);
        let _held = lock.lock().await;
        let out = self.inner.copy_object(req).await?;
        let e_tag = out.output.copy_object_result.as_ref().and_then(|r| r.e_tag.clone());
        self.emit(&bucket, &key, Kind::Copy, e_tag.as_ref());
        Ok(out)
    }

    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let lock = self.key_lock(&bucket, &key);
        let _held = lock.lock().await;
        let out = self.inner.delete_object(req).await?;
        self.emit(&bucket, &key, Kind::Delete, None);
        Ok(out)
    }

    async fn delete_objects(&self, req: S3Request<DeleteObjectsInput>) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let bucket = req.input.bucket.clone();
        let out = self.inner.delete_objects(req).await?;
        for deleted in out.output.deleted.iter().flatten() {
            if let Some(key) = &deleted.key {
                self.emit(&bucket, key, Kind::Delete, None);
            }
        }
        Ok(out)
    }
}
