//! The CPU work of a tier: SHA-1 rounds over a response.
//!
//! # Design
//! One round is SHA-1 over the previous digest followed by the next 1 KiB chunk of the
//! response, cycling through it. A round thus costs the same whatever the response size
//! (about 2 µs on a 2020s core), every byte of the response enters the result, and the
//! final digest goes into the answer so the work cannot be skipped. DieCast gives the
//! number of hashes, not their input; hashing the whole 50 KB concatenation 5,000 times
//! would make the front end alone cost half a CPU second per request.

use sha1::{Digest, Sha1};

/// Bytes of the response each round takes.
pub const CHUNK: usize = 1024;

/// `rounds` SHA-1 rounds over `data`; zero rounds give the digest of nothing.
pub fn rounds(data: &[u8], rounds: usize) -> [u8; 20] {
    let mut digest: [u8; 20] = Sha1::digest(b"").into();
    let chunks = data.len().div_ceil(CHUNK).max(1);
    for i in 0..rounds {
        let start = (i % chunks) * CHUNK;
        let chunk = data.get(start..(start + CHUNK).min(data.len())).unwrap_or(&[]);
        let mut h = Sha1::new();
        h.update(digest);
        h.update(chunk);
        digest = h.finalize().into();
    }
    digest
}

/// Lowercase hex of a digest.
pub fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_round_and_byte_counts() {
        let data = vec![7u8; 3000];
        assert_ne!(rounds(&data, 5), rounds(&data, 6));
        let mut other = data.clone();
        other[2999] = 8;
        // Rounds 0..3 cover all three chunks.
        assert_ne!(rounds(&data, 3), rounds(&other, 3));
        assert_eq!(rounds(&data, 4), rounds(&data, 4));
        assert_eq!(hex(&rounds(&[], 0)), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    }
}
