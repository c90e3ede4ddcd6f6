//! The end check: every object at the destination equals the source's latest version.
//!
//! Both stores are listed and read through the real S3 client. A key matches when the bytes
//! are equal and the destination's ETag is the one S3 gives those bytes in the replicator's
//! layout (one PUT up to the threshold, parts above it); a key only one side has is a
//! mismatch. Changelog records (`.changelog/…`) are not objects to replicate and are left out.

use crate::client::{self, Endpoint};
use crate::etag;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::ObjectStore;
use std::collections::BTreeSet;

/// The outcome of one comparison.
#[derive(Debug, Default, serde::Serialize)]
pub struct Verdict {
    pub source_objects: usize,
    pub equal: usize,
    pub mismatched: Vec<String>,
}

impl Verdict {
    /// Whether every object matched.
    pub fn ok(&self) -> bool {
        self.mismatched.is_empty()
    }
}

/// Compares `src` against `dst`.
pub async fn compare(src: &Endpoint, dst: &Endpoint, threshold: u64, part_size: u64) -> object_store::Result<Verdict> {
    let (s, d) = (client::connect(src)?, client::connect(dst)?);
    let keys = |store: &object_store::aws::AmazonS3| {
        let store = store.clone();
        async move {
            let all = store.list(None).map_ok(|m| m.location.to_string()).try_collect::<BTreeSet<String>>().await?;
            // Changelog records are the clients' notes to the replicator, not replicated.
            Ok::<BTreeSet<String>, object_store::Error>(
                all.into_iter().filter(|k| !crate::changelog::is_record(k)).collect(),
            )
        }
    };
    let (src_keys, dst_keys) = (keys(&s).await?, keys(&d).await?);
    let mut v = Verdict { source_objects: src_keys.len(), ..Default::default() };
    for key in dst_keys.difference(&src_keys) {
        v.mismatched.push(format!("{key}: only at the destination"));
    }
    for key in &src_keys {
        let path = Path::from(key.as_str());
        let a = s.get(&path).await?.bytes().await?;
        match d.get(&path).await {
            Ok(got) => {
                let tag = got.meta.e_tag.as_deref().map(etag::normalize);
                let b = got.bytes().await?;
                let want = etag::for_layout(&a, threshold, part_size);
                if a != b {
                    v.mismatched.push(format!("{key}: bytes differ ({} vs {} bytes)", a.len(), b.len()));
                } else if tag.as_deref() != Some(want.as_str()) {
                    v.mismatched.push(format!("{key}: destination ETag {tag:?}, expected {want}"));
                } else {
                    v.equal += 1;
                }
            }
            Err(object_store::Error::NotFound { .. }) => {
                v.mismatched.push(format!("{key}: missing at the destination"))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(v)
}

/// A cheap check from the two listings alone (no object is read): the same keys, the same
/// sizes, and the same ETags where both are single-PUT MD5s (a multipart ETag depends on
/// the layout, so such a pair is left to [`compare`]). `Ok(None)` when they agree, else the
/// first disagreement; a run's end check polls this, then reads every object once.
pub async fn listings_disagree(src: &Endpoint, dst: &Endpoint) -> object_store::Result<Option<String>> {
    let (s, d) = (crate::coordinator::listing(src).await?, crate::coordinator::listing(dst).await?);
    for (key, a) in &s {
        let Some(b) = d.get(key) else { return Ok(Some(format!("{key}: missing at the destination"))) };
        let multipart = |t: &Option<String>| t.as_deref().is_some_and(|t| t.contains('-'));
        if a.size != b.size {
            return Ok(Some(format!("{key}: {} vs {} bytes", a.size, b.size)));
        }
        if !multipart(&a.etag) && !multipart(&b.etag) && a.etag != b.etag {
            return Ok(Some(format!("{key}: ETag {:?} vs {:?}", a.etag, b.etag)));
        }
    }
    Ok(d.keys().find(|k| !s.contains_key(*k)).map(|k| format!("{k}: only at the destination")))
}
