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
    if body.len() as u64 > threshold {
        multipart_of(body, usize::try_from(part_size).unwrap_or(usize::MAX))
    } else {
        single(body)
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
