//! A small writer: PUTs (single and multipart), overwrites of hot keys and DELETEs through
//! the real S3 client, bounded in count; with `hint_every`, also COPY, MOVE, CONCAT and
//! APPEND operations on objects it wrote, each announced first by a changelog record
//! ([`crate::changelog`]) as a client that wants them replicated without their bytes does.
//!
//! # Limitations
//! This is a stand-in until `diorama-loadgen` gets its S3 mode with trace replay and the
//! synthetic IBM-COS-shaped generator (issue 15, item 5).

use crate::changelog::{record_key, Append, Hint, Op, Source};
use crate::client::{self, Endpoint};
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload, WriteMultipart};
use rand::{Rng, SeedableRng};
use std::time::Duration;

/// The writer's parameters.
#[derive(Debug, Clone)]
pub struct Params {
    pub ops: u32,
    pub keys: u32,
    /// Fraction of operations on key 0..hot (rewritten often).
    pub hot: u32,
    pub small_max: usize,
    pub large_size: usize,
    pub large_every: u32,
    pub delete_every: u32,
    pub part_size: usize,
    pub pause: Duration,
    pub seed: u64,
    /// Every Nth operation (not a delete or a large object) is a hinted COPY, MOVE, CONCAT
    /// or APPEND, in turn; 0: none.
    pub hint_every: u32,
    /// A hint's sources (and an APPEND's old version) were written at least this long ago
    /// (virtual), so their copies have usually landed at the destination: a source still
    /// being copied, or coalesced into a newer write, fails the replicator's check there.
    pub hint_settle: Duration,
}

/// Counts of what was written.
#[derive(Debug, Default, serde::Serialize)]
pub struct Written {
    pub puts: u32,
    pub multipart: u32,
    pub deletes: u32,
    pub bytes: u64,
    /// Operations announced by a changelog record, by op (`copy`, `move`, `concat`, `append`).
    pub hinted: std::collections::BTreeMap<String, u32>,
}

/// An object the writer wrote and has not deleted: its bytes, ETag and when it was written.
type Known = std::collections::BTreeMap<String, (bytes::Bytes, String, std::time::Instant)>;

/// Runs the writer against `ep`.
pub async fn run(ep: &Endpoint, p: &Params) -> object_store::Result<Written> {
    let store = client::connect(ep)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(p.seed);
    let mut out = Written::default();
    let mut known = Known::new();
    let mut hints = 0u32;
    // Keys a hinted operation wrote or read, and when: not rewritten or deleted for
    // `hint_settle`, so that the hint is not superseded before the replicator applies it.
    let mut hinted_at: std::collections::BTreeMap<String, std::time::Instant> = Default::default();
    for op in 1..=p.ops {
        hinted_at.retain(|_, at| at.elapsed() < p.hint_settle);
        let k = if p.hot > 0 && rng.random_bool(0.5) {
            rng.random_range(0..p.hot)
        } else {
            rng.random_range(0..p.keys.max(1))
        };
        let k = unsettled_instead(k, p.keys.max(1), |k| hinted_at.contains_key(&format!("obj/{k:04}")));
        let key = format!("obj/{k:04}");
        let path = Path::from(key.as_str());
        if p.delete_every > 0 && op % p.delete_every == 0 {
            match store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => out.deletes += 1,
                Err(e) => return Err(e),
            }
            known.remove(&key);
        } else if p.large_every > 0 && op % p.large_every == 0 {
            let body = random_body(&mut rng, p.large_size);
            let mut upload = WriteMultipart::new_with_chunk_size(store.put_multipart(&path).await?, p.part_size);
            upload.write(&body);
            upload.finish().await?;
            out.multipart += 1;
            out.bytes += body.len() as u64;
            // The store's answer to the completion may carry no ETag: ask for it.
            let tag = store.head(&path).await?.e_tag;
            remember(&mut known, &key, body, tag.as_deref());
        } else if let Some(touched) = if p.hint_every > 0 && op % p.hint_every == 0 {
            hinted(&store, &mut rng, &mut known, &cold(k, p), HINTED[hints as usize % HINTED.len()], p).await?
        } else {
            None
        } {
            *out.hinted.entry(HINTED[hints as usize % HINTED.len()].via().to_owned()).or_default() += 1;
            hints += 1;
            let now = std::time::Instant::now();
            hinted_at.extend(touched.into_iter().map(|k| (k, now)));
        } else {
            let size = rng.random_range(1..=p.small_max.max(1));
            let body = random_body(&mut rng, size);
            out.bytes += size as u64;
            let put = store.put(&path, PutPayload::from(body.clone())).await?;
            out.puts += 1;
            remember(&mut known, &key, body, put.e_tag.as_deref());
        }
        tokio::time::sleep(p.pause).await;
    }
    Ok(out)
}

const HINTED: [Op; 4] = [Op::Copy, Op::Move, Op::Concat, Op::Append];

/// Key `k`, or when `unsettled(k)` (a recent hint's target or source) the next key after it
/// that is not; `k` itself when every key is.
fn unsettled_instead(k: u32, keys: u32, unsettled: impl Fn(u32) -> bool) -> u32 {
    (0..keys).map(|i| (k + i) % keys).find(|&c| !unsettled(c)).unwrap_or(k)
}

/// The key of a hinted operation: key `k`, or a cold key in its place when `k` is hot. A
/// hot key is rewritten within moments, so a hint on it or from it would name a version
/// that is superseded before it is copied, and the replicator rightly falls back to bytes.
fn cold(k: u32, p: &Params) -> String {
    let k = if k < p.hot && p.keys > p.hot { p.hot + k % (p.keys - p.hot) } else { k };
    format!("obj/{k:04}")
}

fn is_hot(key: &str, p: &Params) -> bool {
    key.strip_prefix("obj/").and_then(|n| n.parse::<u32>().ok()).is_some_and(|n| n < p.hot)
}

fn remember(known: &mut Known, key: &str, body: Vec<u8>, etag: Option<&str>) {
    let tag = etag.map(crate::etag::normalize).unwrap_or_else(|| crate::etag::single(&body));
    known.insert(key.to_owned(), (bytes::Bytes::from(body), tag, std::time::Instant::now()));
}

/// Does `op` on `target` with a changelog record written first, from objects in `known`;
/// answers the keys it wrote and read, or `None` (nothing done) when `known` has no object
/// to do it from.
async fn hinted(
    store: &object_store::aws::AmazonS3,
    rng: &mut impl Rng,
    known: &mut Known,
    target: &str,
    op: Op,
    p: &Params,
) -> object_store::Result<Option<Vec<String>>> {
    // Sources: cold objects other than the target, small ones for CONCAT (its result is one
    // PUT).
    let others: Vec<String> = known
        .iter()
        .filter(|(k, (b, _, at))| {
            k.as_str() != target
                && !is_hot(k, p)
                && at.elapsed() >= p.hint_settle
                && (op != Op::Concat || b.len() <= p.small_max)
        })
        .map(|(k, _)| k.clone())
        .collect();
    let path = Path::from(target);
    let (hint, body) = match op {
        Op::Copy | Op::Move => {
            let Some(from) = pick(rng, &others) else { return Ok(None) };
            let (body, tag, _) = known[&from].clone();
            // A copy keeps its source's ETag (s3s-fs, and S3 for a single-part object).
            let sources = vec![Source { key: from, etag: tag.clone() }];
            (Hint { op, key: target.to_owned(), etag: tag, sources, append: None }, body)
        }
        Op::Concat => {
            let n = others.len().min(3);
            if n < 2 {
                return Ok(None);
            }
            let start = rng.random_range(0..=others.len() - n);
            let parts = &others[start..start + n];
            let mut body = Vec::new();
            for k in parts {
                body.extend_from_slice(&known[k].0);
            }
            let sources = parts.iter().map(|k| Source { key: k.clone(), etag: known[k].1.clone() }).collect();
            let etag = crate::etag::single(&body);
            (Hint { op, key: target.to_owned(), etag, sources, append: None }, bytes::Bytes::from(body))
        }
        Op::Append => {
            let Some((old, tag, at)) = known.get(target).cloned() else { return Ok(None) };
            if at.elapsed() < p.hint_settle {
                return Ok(None);
            }
            let len = rng.random_range(1..=(p.small_max / 4).max(1));
            let tail = random_body(rng, len);
            let append = Some(Append { offset: old.len() as u64, length: tail.len() as u64 });
            let mut body = old.to_vec();
            body.extend_from_slice(&tail);
            let etag = crate::etag::single(&body);
            let sources = vec![Source { key: target.to_owned(), etag: tag }];
            (Hint { op, key: target.to_owned(), etag, sources, append }, bytes::Bytes::from(body))
        }
    };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    // The record's key is an S3 key as it is (`%2F` included): `parse` keeps it unencoded.
    let record = Path::parse(record_key(target, nanos))
        .map_err(|e| object_store::Error::Generic { store: "S3", source: Box::new(e) })?;
    store.put(&record, PutPayload::from(hint.to_body())).await?;
    match op {
        Op::Copy | Op::Move => {
            let from = Path::from(hint.sources[0].key.as_str());
            store.copy(&from, &path).await?;
            if op == Op::Move {
                store.delete(&from).await?;
                known.remove(&hint.sources[0].key);
            }
        }
        Op::Concat | Op::Append => {
            store.put(&path, PutPayload::from(body.clone())).await?;
        }
    }
    known.insert(target.to_owned(), (body, hint.etag, std::time::Instant::now()));
    let mut touched: Vec<String> = hint.sources.into_iter().map(|s| s.key).collect();
    touched.push(target.to_owned());
    Ok(Some(touched))
}

fn pick(rng: &mut impl Rng, from: &[String]) -> Option<String> {
    (!from.is_empty()).then(|| from[rng.random_range(0..from.len())].clone())
}

fn random_body(rng: &mut impl Rng, size: usize) -> Vec<u8> {
    let mut body = vec![0u8; size];
    rng.fill(&mut body[..]);
    body
}

#[cfg(test)]
mod tests {
    use super::unsettled_instead;

    #[test]
    fn a_recently_hinted_key_is_replaced_by_the_next_settled_one() {
        let unsettled = |k: u32| k == 4 || k == 5;
        assert_eq!(unsettled_instead(3, 8, unsettled), 3);
        assert_eq!(unsettled_instead(4, 8, unsettled), 6);
        assert_eq!(unsettled_instead(5, 6, unsettled), 0, "wraps around");
        assert_eq!(unsettled_instead(2, 3, |_| true), 2, "every key unsettled: the key itself");
    }
}
