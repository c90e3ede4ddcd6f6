//! Applying changelog hints at the destination. The record format itself (`Hint`, its
//! parsing and its key) lives in `s3util::changelog`, shared with the clients that write it.
//!
//! A hint is only a shortcut: the instance checks at the destination that every source is
//! there with the content the hint names ([`accepts`]), and falls back to copying the bytes
//! when any check fails, so a wrong, late or missing hint costs time, never correctness.

pub use s3util::changelog::{is_record, record_key, urlencode, Append, Hint, HintError, Op, Source, PREFIX};

/// What the destination holds of a key by the state: the source ETag of the version last
/// copied there and the destination ETag that copy got.
pub type Held = (Option<String>, Option<String>);

/// The destination ETags that show a source of a hint is there with the content the hint
/// names. The destination writes objects in its own layout (`etag::for_layout`), so its
/// ETag equals the source's only for a single-PUT MD5 of the same bytes; otherwise the state
/// knows which destination ETag the copy of which source version got (`held`: the source
/// ETag of the version the destination holds and the destination ETag it gave it).
pub fn expected_dst_etags(hint_etag: &str, held: Option<Held>) -> Vec<String> {
    let hint_etag = crate::etag::normalize(hint_etag);
    let mut out = Vec::new();
    if crate::etag::parse_md5(&hint_etag).is_some() {
        out.push(hint_etag.clone());
    }
    if let Some((Some(done), Some(dst))) = held {
        if crate::etag::normalize(&done) == hint_etag && !out.contains(&dst) {
            out.push(dst);
        }
    }
    out
}

/// Whether the destination's object (`found`: its ETag, none when absent) is the content a
/// hint's source names (`expected`, from [`expected_dst_etags`]); the reason when not.
pub fn accepts(source: &str, found: Option<&str>, expected: &[String]) -> Result<(), String> {
    match found {
        None => Err(format!("source {source} is not at the destination")),
        Some(tag) if expected.iter().any(|e| e == tag) => Ok(()),
        Some(tag) if expected.is_empty() => {
            Err(format!("source {source}: no destination copy of the version the hint names (found {tag})"))
        }
        Some(tag) => Err(format!("source {source} at the destination is {tag}, the hint needs one of {expected:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_matches_by_its_md5_or_by_the_copy_the_state_recorded() {
        let md5 = "5eb63bbbe01eeed093cb22bb8f5acdc3";
        // A single-PUT MD5: the destination's copy of the same bytes has the same ETag.
        let want = expected_dst_etags(&format!("\"{md5}\""), None);
        assert_eq!(accepts("a", Some(md5), &want), Ok(()));
        // A mismatch (another version at the destination) and a missing source fall back.
        assert!(accepts("a", Some("0123456789abcdef0123456789abcdef"), &want).unwrap_err().contains("hint needs"));
        assert!(accepts("a", None, &want).unwrap_err().contains("not at the destination"));
        // A multipart source: only the state's record of the copy of that version says which
        // destination ETag it got; the copy of another version does not count.
        let multi = "ffffffffffffffffffffffffffffffff-3";
        let held = Some((Some(multi.to_owned()), Some("eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-4".to_owned())));
        let want = expected_dst_etags(multi, held);
        assert_eq!(accepts("b", Some("eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-4"), &want), Ok(()));
        let other = Some((Some("dddddddddddddddddddddddddddddddd-3".to_owned()), Some("x-4".to_owned())));
        let want = expected_dst_etags(multi, other);
        assert!(want.is_empty());
        assert!(accepts("b", Some("x-4"), &want).unwrap_err().contains("no destination copy"));
    }
}
