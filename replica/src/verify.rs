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
        let a = s.get(&path).await?;
        match d.get(&path).await {
            Ok(b) => {
                let tag = b.meta.e_tag.as_deref().map(etag::normalize);
                let (a_len, b_len) = (a.meta.size, b.meta.size);
                let mut want = etag::LayoutDigest::new(a_len, threshold, part_size);
                let same = a_len == b_len && same_bytes(a.into_stream(), b.into_stream(), &mut want).await?;
                let want = want.finish();
                if !same {
                    v.mismatched.push(format!("{key}: bytes differ ({a_len} vs {b_len} bytes)"));
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

/// Whether two byte streams carry the same bytes, read side by side a chunk at a time (so a
/// 1 GiB object costs a chunk of memory, not two copies); every byte of `a` read is fed to
/// `digest`. Stops at the first difference.
async fn same_bytes<E>(
    mut a: impl futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    mut b: impl futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    digest: &mut etag::LayoutDigest,
) -> Result<bool, E> {
    use futures::StreamExt;
    let (mut pa, mut pb) = (bytes::Bytes::new(), bytes::Bytes::new());
    let (mut a_done, mut b_done) = (false, false);
    loop {
        // Refill whichever side has nothing pending; compare what both have.
        if pa.is_empty() && !a_done {
            match a.next().await.transpose()? {
                Some(chunk) => {
                    digest.update(&chunk);
                    pa = chunk;
                }
                None => a_done = true,
            }
            continue;
        }
        if pb.is_empty() && !b_done {
            match b.next().await.transpose()? {
                Some(chunk) => pb = chunk,
                None => b_done = true,
            }
            continue;
        }
        let n = pa.len().min(pb.len());
        if n == 0 {
            // One side (or both) ended: equal only if neither has bytes left.
            return Ok(pa.is_empty() && pb.is_empty() && a_done && b_done);
        }
        if pa[..n] != pb[..n] {
            return Ok(false);
        }
        bytes::Buf::advance(&mut pa, n);
        bytes::Buf::advance(&mut pb, n);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(body: &[u8], cuts: &[usize]) -> futures::stream::Iter<std::vec::IntoIter<Result<bytes::Bytes, ()>>> {
        let mut out = Vec::new();
        let mut at = 0;
        for &cut in cuts.iter().chain(std::iter::once(&body.len())) {
            let cut = cut.clamp(at, body.len());
            out.push(Ok(bytes::Bytes::copy_from_slice(&body[at..cut])));
            at = cut;
        }
        futures::stream::iter(out)
    }

    async fn same(a: &[u8], a_cuts: &[usize], b: &[u8], b_cuts: &[usize]) -> (bool, String) {
        let mut d = etag::LayoutDigest::new(a.len() as u64, 64, 40);
        let same = same_bytes(chunks(a, a_cuts), chunks(b, b_cuts), &mut d).await.unwrap();
        (same, d.finish())
    }

    #[tokio::test]
    async fn streams_compare_by_bytes_whatever_their_chunks() {
        let body: Vec<u8> = (0..300u32).map(|i| (i * 7 % 251) as u8).collect();
        let splits: [&[usize]; 5] = [&[], &[1], &[40, 41, 200], &[0, 0, 150, 299], &[10, 20, 30, 40, 50, 290]];
        for a_cuts in splits {
            for b_cuts in splits {
                let (ok, tag) = same(&body, a_cuts, &body, b_cuts).await;
                assert!(ok, "{a_cuts:?} vs {b_cuts:?}");
                // Every byte of the source was hashed, in the layout of its size.
                assert_eq!(tag, etag::for_layout(&body, 64, 40), "{a_cuts:?}");
                // One byte changed anywhere, or one side shorter: not the same.
                for at in [0, 39, 40, 150, 299] {
                    let mut other = body.clone();
                    other[at] ^= 1;
                    assert!(!same(&body, a_cuts, &other, b_cuts).await.0, "byte {at}: {a_cuts:?} vs {b_cuts:?}");
                }
                assert!(!same(&body, a_cuts, &body[..299], b_cuts).await.0);
                assert!(!same(&body[..299], a_cuts, &body, b_cuts).await.0);
            }
        }
        assert!(same(b"", &[], b"", &[0]).await.0);
        assert!(!same(b"", &[], b"x", &[]).await.0);
    }

    #[tokio::test]
    async fn a_read_error_is_an_error_not_a_mismatch() {
        let a = futures::stream::iter(vec![Ok(bytes::Bytes::from_static(b"abc")), Err("reset")]);
        let b = futures::stream::iter(vec![Ok::<_, &str>(bytes::Bytes::from_static(b"abcdef"))]);
        let mut d = etag::LayoutDigest::new(6, 64, 40);
        assert_eq!(same_bytes(a, b, &mut d).await, Err("reset"));
    }
}
