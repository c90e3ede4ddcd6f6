//! A small writer: PUTs (single and multipart), overwrites of hot keys and DELETEs through
//! the real S3 client, bounded in count.
//!
//! # Limitations
//! This is a stand-in until `diorama-loadgen` gets its S3 mode with trace replay and the
//! synthetic IBM-COS-shaped generator (issue 15, item 5).

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
}

/// Counts of what was written.
#[derive(Debug, Default, serde::Serialize)]
pub struct Written {
    pub puts: u32,
    pub multipart: u32,
    pub deletes: u32,
    pub bytes: u64,
}

/// Runs the writer against `ep`.
pub async fn run(ep: &Endpoint, p: &Params) -> object_store::Result<Written> {
    let store = client::connect(ep)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(p.seed);
    let mut out = Written::default();
    for op in 1..=p.ops {
        let k = if p.hot > 0 && rng.random_bool(0.5) {
            rng.random_range(0..p.hot)
        } else {
            rng.random_range(0..p.keys.max(1))
        };
        let path = Path::from(format!("obj/{k:04}"));
        if p.delete_every > 0 && op % p.delete_every == 0 {
            match store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => out.deletes += 1,
                Err(e) => return Err(e),
            }
        } else if p.large_every > 0 && op % p.large_every == 0 {
            let body = random_body(&mut rng, p.large_size);
            let mut upload = WriteMultipart::new_with_chunk_size(store.put_multipart(&path).await?, p.part_size);
            upload.write(&body);
            upload.finish().await?;
            out.multipart += 1;
            out.bytes += body.len() as u64;
        } else {
            let size = rng.random_range(1..=p.small_max.max(1));
            let body = random_body(&mut rng, size);
            out.bytes += size as u64;
            store.put(&path, PutPayload::from(body)).await?;
            out.puts += 1;
        }
        tokio::time::sleep(p.pause).await;
    }
    Ok(out)
}

fn random_body(rng: &mut impl Rng, size: usize) -> Vec<u8> {
    let mut body = vec![0u8; size];
    rng.fill(&mut body[..]);
    body
}
