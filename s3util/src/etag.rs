//! S3 entity tags as S3 defines them for unencrypted objects.
//!
//! A single PUT's ETag is the hex MD5 of the body. A multipart upload's ETag is the hex MD5 of
//! the concatenated binary MD5s of its parts, followed by `-N` for N parts. An ETag therefore
//! depends on the part layout, not only the bytes: a replica copied in parts differs from a
//! source written in one PUT, so comparisons go through [`for_layout`].

use md5::{Digest, Md5};

/// The ETag of a single PUT of `body`.
pub fn single(body: &[u8]) -> String {
    hex(&Md5::digest(body))
}

/// The binary MD5 of `bytes` (a part's digest, for [`multipart`]).
pub fn md5(bytes: &[u8]) -> [u8; 16] {
    Md5::digest(bytes).into()
}

/// An ETag as S3 sends it in headers and listings: in double quotes.
pub fn quoted(etag: &str) -> String {
    format!("\"{}\"", normalize(etag))
}

/// The ETag of a multipart upload whose parts have the binary MD5s `part_md5s`.
pub fn multipart(part_md5s: &[[u8; 16]]) -> String {
    let mut outer = Md5::new();
    for digest in part_md5s {
        outer.update(digest);
    }
    format!("{}-{}", hex(&outer.finalize()), part_md5s.len())
}

/// The ETag of `body` uploaded in parts of `part_size` bytes (the last part may be shorter).
pub fn multipart_of(body: &[u8], part_size: usize) -> String {
    let digests: Vec<[u8; 16]> = body.chunks(part_size.max(1)).map(|chunk| Md5::digest(chunk).into()).collect();
    multipart(&digests)
}

/// The ETag S3 gives `body` when it is written as the replicator writes an object of its size:
/// one PUT up to `threshold` bytes, parts of `part_size` above it.
pub fn for_layout(body: &[u8], threshold: u64, part_size: u64) -> String {
    let mut digest = LayoutDigest::new(body.len() as u64, threshold, part_size);
    digest.update(body);
    digest.finish()
}

/// [`for_layout`] fed in pieces, for objects too large to hold in memory: the layout is
/// chosen from the object's `size` up front (one MD5 up to `threshold`, part MD5s of
/// `part_size` bytes above it), so every byte is hashed once. Fed other than `size` bytes, it
/// answers the ETag of what it was fed in the layout of `size` (callers compare the lengths).
#[derive(Debug, Clone)]
pub struct LayoutDigest {
    /// `None`: a single PUT.
    part_size: Option<u64>,
    current: Md5,
    /// Bytes in the current part (multipart only).
    in_part: u64,
    parts: Vec<[u8; 16]>,
}

impl LayoutDigest {
    /// A digest of an object of `size` bytes laid out as the replicator writes it.
    pub fn new(size: u64, threshold: u64, part_size: u64) -> LayoutDigest {
        LayoutDigest {
            part_size: (size > threshold).then_some(part_size.max(1)),
            current: Md5::new(),
            in_part: 0,
            parts: Vec::new(),
        }
    }

    /// Adds the next `bytes` of the object.
    pub fn update(&mut self, mut bytes: &[u8]) {
        let Some(part_size) = self.part_size else {
            self.current.update(bytes);
            return;
        };
        while !bytes.is_empty() {
            let room = usize::try_from(part_size - self.in_part).unwrap_or(usize::MAX);
            let (now, rest) = bytes.split_at(room.min(bytes.len()));
            self.current.update(now);
            self.in_part += now.len() as u64;
            if self.in_part == part_size {
                self.parts.push(std::mem::take(&mut self.current).finalize().into());
                self.in_part = 0;
            }
            bytes = rest;
        }
    }

    /// The ETag of the bytes fed.
    pub fn finish(mut self) -> String {
        if self.part_size.is_none() {
            return hex(&self.current.finalize());
        }
        if self.in_part > 0 || self.parts.is_empty() {
            self.parts.push(self.current.finalize().into());
        }
        multipart(&self.parts)
    }
}

/// An ETag without the quotes HTTP puts around it (`"abc"` → `abc`; `W/` prefixes kept off too).
pub fn normalize(raw: &str) -> String {
    raw.trim().trim_start_matches("W/").trim_matches('"').to_owned()
}

/// The binary MD5 of a single-PUT (or part) ETag: 32 hex digits, quotes allowed.
pub fn parse_md5(etag: &str) -> Option<[u8; 16]> {
    let text = normalize(etag);
    if text.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_put_etags_are_the_body_md5() {
        // Values S3 returns for these bodies (the MD5 of the body).
        assert_eq!(single(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(single(b"hello world"), "5eb63bbbe01eeed093cb22bb8f5acdc3");
    }

    #[test]
    fn multipart_etag_is_md5_of_part_md5s_with_count() {
        // Reference computed independently (Python hashlib) for a 5 MiB part of 'a' and a
        // 1 KiB part of 'b'.
        let mut body = vec![b'a'; 5 * 1024 * 1024];
        body.extend(std::iter::repeat_n(b'b', 1024));
        assert_eq!(multipart_of(&body, 5 * 1024 * 1024), "16329fb6004d64a4fbc5bbb983fa0528-2");
    }

    #[test]
    fn one_part_upload_still_carries_the_count() {
        let digest: [u8; 16] = Md5::digest(b"hello world").into();
        let etag = multipart(&[digest]);
        assert!(etag.ends_with("-1"));
        assert_ne!(etag.trim_end_matches("-1"), single(b"hello world"));
    }

    #[test]
    fn layout_picks_single_or_multipart() {
        let body = vec![7u8; 100];
        assert_eq!(for_layout(&body, 100, 30), single(&body));
        assert_eq!(for_layout(&body, 99, 30), multipart_of(&body, 30));
        assert!(for_layout(&body, 99, 30).ends_with("-4"));
    }

    #[test]
    fn a_layout_digest_fed_in_pieces_equals_for_layout() {
        // Bodies below, at and above the threshold, parts ending exactly at the end or not,
        // fed in pieces that cross part boundaries, one byte at a time, and all at once.
        let body: Vec<u8> = (0..10_007u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for (len, threshold, part_size) in [
            (0, 0, 5),
            (1, 0, 5),
            (100, 100, 30),
            (100, 99, 30),
            (90, 50, 30),
            (10_007, 4096, 1000),
            (10_007, 20_000, 1000),
        ] {
            let body = &body[..len];
            // From the whole-body functions, not the digest under test.
            let want = if len as u64 > threshold { multipart_of(body, part_size as usize) } else { single(body) };
            for piece in [1, 7, 29, 30, 31, 999, 4096, len.max(1)] {
                let mut d = LayoutDigest::new(len as u64, threshold, part_size);
                body.chunks(piece).for_each(|c| d.update(c));
                d.update(&[]);
                assert_eq!(d.finish(), want, "len {len}, threshold {threshold}, part {part_size}, pieces of {piece}");
            }
        }
        // A reference value: 5 MiB of 'a' and 1 KiB of 'b' in 5 MiB parts (above).
        let mut d = LayoutDigest::new(5 * 1024 * 1024 + 1024, 0, 5 * 1024 * 1024);
        d.update(&vec![b'a'; 5 * 1024 * 1024]);
        d.update(&[b'b'; 1024]);
        assert_eq!(d.finish(), "16329fb6004d64a4fbc5bbb983fa0528-2");
    }

    #[test]
    fn part_etags_parse_back_to_their_md5() {
        let digest: [u8; 16] = Md5::digest(b"hello world").into();
        assert_eq!(parse_md5("\"5eb63bbbe01eeed093cb22bb8f5acdc3\""), Some(digest));
        assert_eq!(parse_md5("abc-2"), None);
        assert_eq!(parse_md5("zz63bbbe01eeed093cb22bb8f5acdc3z"), None);
    }

    #[test]
    fn quoted_is_what_s3_sends() {
        assert_eq!(quoted("abc-2"), "\"abc-2\"");
        assert_eq!(quoted("\"abc\""), "\"abc\"");
        assert_eq!(md5(b"hello world"), parse_md5("5eb63bbbe01eeed093cb22bb8f5acdc3").unwrap());
    }

    #[test]
    fn quotes_and_weak_prefix_are_stripped() {
        assert_eq!(normalize("\"abc-2\""), "abc-2");
        assert_eq!(normalize("W/\"abc\""), "abc");
    }
}
