//! The end check of `diorama-loadgen s3 --verify`: does the store hold what the trace wrote?
//!
//! Every object the trace leaves ([`Model`]) is read back (bytes compared with the ones
//! recomputed from `(key, version)`, the ETag with the one S3 gives them in the layout they
//! were written in), keys the trace does not leave must be absent, and with hints on every
//! COPY/MOVE/CONCAT/APPEND must have a changelog record naming its operation, its target and
//! the target's ETag.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::ObjectStore;
use serde::Serialize;

use super::changelog;
use super::model::{Model, Step};
use super::trace::{Op, RESERVED_PREFIX};

/// What the check found.
#[derive(Debug, Default, Serialize)]
pub struct Verdict {
    pub objects: usize,
    pub equal: usize,
    /// `key: reason` of every object that differs, is missing, or should not be there.
    pub mismatched: Vec<String>,
    pub changelog_expected: usize,
    pub changelog_found: usize,
    /// `OP key etag` of every hinted operation without its record.
    pub changelog_missing: Vec<String>,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.mismatched.is_empty() && self.changelog_missing.is_empty()
    }
}

/// Checks `store` against the trace's `steps` and the `model` they leave.
pub async fn verify(store: &AmazonS3, steps: &[Step], model: &Model, hints: bool) -> Verdict {
    let mut v = Verdict { objects: model.objects.len(), ..Verdict::default() };
    for (key, obj) in &model.objects {
        let got = match store.get(&Path::parse(key).unwrap_or_else(|_| Path::from(key.as_str()))).await {
            Ok(r) => r,
            Err(e) => {
                v.mismatched.push(format!("{key}: {e}"));
                continue;
            }
        };
        let etag = got.meta.e_tag.as_deref().map(s3util::etag::normalize).unwrap_or_default();
        let bytes = match got.bytes().await {
            Ok(b) => b,
            Err(e) => {
                v.mismatched.push(format!("{key}: read: {e}"));
                continue;
            }
        };
        let want = obj.etag();
        if bytes.len() as u64 != obj.size() {
            v.mismatched.push(format!("{key}: {} bytes, expected {}", bytes.len(), obj.size()));
        } else if !same_bytes(obj, &bytes) {
            v.mismatched.push(format!("{key}: the bytes differ from the trace's"));
        } else if etag != want {
            v.mismatched.push(format!("{key}: ETag {etag}, expected {want}"));
        } else {
            v.equal += 1;
        }
    }
    // Keys the trace removed (DELETE, MOVE) or never wrote must be absent.
    match store.list(None).try_collect::<Vec<_>>().await {
        Ok(listed) => {
            for m in listed {
                let k = m.location.as_ref();
                if !k.starts_with(RESERVED_PREFIX) && !model.objects.contains_key(k) {
                    v.mismatched.push(format!("{k}: present, but the trace leaves no such object"));
                }
            }
        }
        Err(e) => v.mismatched.push(format!("(list): {e}")),
    }
    if hints {
        check_changelog(store, steps, &mut v).await;
    }
    v
}

fn same_bytes(obj: &super::model::Object, got: &[u8]) -> bool {
    const CHUNK: usize = 8 << 20;
    let mut buf = vec![0u8; CHUNK.min(got.len())];
    got.chunks(CHUNK).enumerate().all(|(i, chunk)| {
        let want = &mut buf[..chunk.len()];
        obj.read_at((i * CHUNK) as u64, want);
        want == chunk
    })
}

async fn check_changelog(store: &AmazonS3, steps: &[Step], v: &mut Verdict) {
    // Every record, by (op, target, ETag), counted.
    let mut found: BTreeMap<(Op, String, String), usize> = BTreeMap::new();
    let prefix = Path::from(RESERVED_PREFIX.trim_end_matches('/'));
    let listed: Vec<_> = match store.list(Some(&prefix)).try_collect().await {
        Ok(l) => l,
        Err(e) => {
            v.changelog_missing.push(format!("(list {RESERVED_PREFIX}): {e}"));
            return;
        }
    };
    for m in listed {
        let Ok(got) = store.get(&m.location).await else { continue };
        let Ok(body) = got.bytes().await else { continue };
        let Ok(r) = changelog::Record::parse(&body) else { continue };
        // A record counts under its own target's prefix only.
        let dir = changelog::key(&r.key, 0);
        if m.location.as_ref().starts_with(&dir[..dir.len() - 20]) {
            *found.entry((changelog::trace_op(r.op), r.key, r.etag)).or_default() += 1;
        }
    }
    for s in steps {
        if !matches!(s.row.op, Op::Copy | Op::Move | Op::Concat | Op::Append) {
            continue;
        }
        let Some(obj) = &s.result else { continue };
        v.changelog_expected += 1;
        let want = (s.row.op, s.row.key.clone(), obj.etag());
        match found.get_mut(&want) {
            Some(n) if *n > 0 => {
                *n -= 1;
                v.changelog_found += 1;
            }
            _ => v.changelog_missing.push(format!("{} {} {}", want.0, want.1, want.2)),
        }
    }
}
