//! Changelog records (hints): the wire format that the writing clients (`diorama-loadgen s3`,
//! the replica's test writer) and the replicator share. A client that copies, moves,
//! concatenates or appends to objects writes a record of the operation first, so the
//! replicator can redo it at the destination from the objects already there instead of
//! sending the result's bytes across the WAN again.
//!
//! # Format (docs/replica.md)
//! Before the operation the client PUTs to the source bucket, at
//! `.changelog/<urlencoded target key>/<20-digit zero-padded unix nanos>`:
//! ```json
//! {"op":"COPY","key":"<target>","etag":"\"<target's ETag at the source after the op>\"",
//!  "sources":[{"key":"<source>","etag":"\"<its ETag when the op was done>\""}],
//!  "append":{"offset":0,"length":0}}
//! ```
//! `sources`: one for COPY and MOVE (the object copied) and APPEND (the old version of `key`
//! itself), the parts in order for CONCAT; `append` only for APPEND. Keys under `.changelog/`
//! are never replicated as objects.
//!
//! # Design
//! A hint is only a shortcut: the instance checks at the destination that every source is
//! there with the content the hint names (`replica::changelog::accepts`), and falls back to copying the bytes
//! when any check fails, so a wrong, late or missing hint costs time, never correctness.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};

/// The key prefix of changelog records.
pub const PREFIX: &str = ".changelog/";

/// Whether `key` is a changelog record (never replicated as an object).
pub fn is_record(key: &str) -> bool {
    key.starts_with(PREFIX)
}

/// The operation a hint describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Op {
    Copy,
    Move,
    Concat,
    Append,
}

impl Op {
    /// The `via` of a copy made by applying it (`copy`, `move`, `concat`, `append`).
    pub fn via(self) -> &'static str {
        match self {
            Op::Copy => "copy",
            Op::Move => "move",
            Op::Concat => "concat",
            Op::Append => "append",
        }
    }
}

/// A source object of a hint with its ETag at the source when the operation was done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub key: String,
    pub etag: String,
}

/// The appended range of an APPEND.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Append {
    /// Bytes of the old object.
    pub offset: u64,
    /// Bytes appended.
    pub length: u64,
}

/// One changelog record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hint {
    pub op: Op,
    /// The target key.
    pub key: String,
    /// The target's ETag at the source after the operation.
    pub etag: String,
    pub sources: Vec<Source>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub append: Option<Append>,
}

/// Errors of a changelog record.
#[derive(Debug, thiserror::Error)]
pub enum HintError {
    #[error("not a changelog record")]
    Json(#[from] serde_json::Error),
    #[error("{op:?} needs {want} source(s), the record has {got}")]
    Sources { op: Op, want: &'static str, got: usize },
    #[error("APPEND without its `append` range, or another op with one")]
    Range,
    #[error("APPEND's source must be its own key {key}, not {source_key}")]
    AppendSource { key: String, source_key: String },
}

impl Hint {
    /// Parses and checks a record's body; ETags come out without their quotes.
    pub fn parse(body: &[u8]) -> Result<Hint, HintError> {
        let mut h: Hint = serde_json::from_slice(body)?;
        let n = h.sources.len();
        let ok = match h.op {
            Op::Copy | Op::Move | Op::Append => n == 1,
            Op::Concat => n >= 1,
        };
        if !ok {
            let want = if h.op == Op::Concat { "at least 1" } else { "exactly 1" };
            return Err(HintError::Sources { op: h.op, want, got: n });
        }
        if (h.op == Op::Append) != h.append.is_some() {
            return Err(HintError::Range);
        }
        if h.op == Op::Append && h.sources[0].key != h.key {
            return Err(HintError::AppendSource { key: h.key.clone(), source_key: h.sources[0].key.clone() });
        }
        h.etag = crate::etag::normalize(&h.etag);
        for s in &mut h.sources {
            s.etag = crate::etag::normalize(&s.etag);
        }
        Ok(h)
    }

    /// The record's body as the client writes it (ETags quoted as S3 returns them).
    pub fn to_body(&self) -> Vec<u8> {
        let quote = |t: &str| format!("\"{}\"", crate::etag::normalize(t));
        let mut h = self.clone();
        h.etag = quote(&h.etag);
        for s in &mut h.sources {
            s.etag = quote(&s.etag);
        }
        serde_json::to_vec(&h).unwrap_or_default()
    }
}

/// The key of a record of an operation on `target` made at `nanos` (unix nanoseconds).
pub fn record_key(target: &str, nanos: u128) -> String {
    format!("{PREFIX}{}/{nanos:020}", urlencode(target))
}

/// Every byte but RFC 3986's unreserved characters is encoded (`/` too, so the target key is
/// one path segment).
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Percent-encodes everything but RFC 3986's unreserved characters (so `/` becomes `%2F`).
pub fn urlencode(s: &str) -> String {
    utf8_percent_encode(s, ENCODE).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"{"op":"CONCAT","key":"obj/c","etag":"\"5eb63bbbe01eeed093cb22bb8f5acdc3\"",
        "sources":[{"key":"obj/a","etag":"\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\""},
                   {"key":"obj/b","etag":"\"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-2\""}]}"#;

    #[test]
    fn a_record_parses_with_its_etags_unquoted_and_round_trips() {
        let h = Hint::parse(BODY.as_bytes()).unwrap();
        assert_eq!(h.op, Op::Concat);
        assert_eq!(h.etag, "5eb63bbbe01eeed093cb22bb8f5acdc3");
        assert_eq!(h.sources[1].etag, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-2");
        let body = String::from_utf8(h.to_body()).unwrap();
        assert!(body.contains(r#""etag":"\"5eb63bbbe01eeed093cb22bb8f5acdc3\"""#), "{body}");
        assert_eq!(Hint::parse(body.as_bytes()).unwrap(), h);
    }

    #[test]
    fn malformed_records_are_refused() {
        let one = |op: &str, extra: &str| {
            format!(
                r#"{{"op":"{op}","key":"k","etag":"e","sources":[{{"key":"k","etag":"x"}},{{"key":"j","etag":"y"}}]{extra}}}"#
            )
        };
        assert!(matches!(Hint::parse(one("COPY", "").as_bytes()), Err(HintError::Sources { .. })));
        let append = r#"{"op":"APPEND","key":"k","etag":"e","sources":[{"key":"k","etag":"x"}]}"#;
        assert!(matches!(Hint::parse(append.as_bytes()), Err(HintError::Range)));
        let other = r#"{"op":"APPEND","key":"k","etag":"e","sources":[{"key":"j","etag":"x"}],"append":{"offset":1,"length":2}}"#;
        assert!(matches!(Hint::parse(other.as_bytes()), Err(HintError::AppendSource { .. })));
        assert!(matches!(Hint::parse(b"{\"op\":\"RENAME\"}"), Err(HintError::Json(_))));
    }

    #[test]
    fn record_keys_encode_the_target_and_sort_by_time() {
        assert_eq!(record_key("obj/0001", 42), ".changelog/obj%2F0001/00000000000000000042");
        assert!(record_key("a b", 9) < record_key("a b", 10));
        assert!(is_record(&record_key("x", 1)) && !is_record("obj/.changelog/x"));
    }

    #[test]
    fn unicode_and_reserved_characters_are_encoded() {
        assert_eq!(urlencode("logs/a b+c.txt"), "logs%2Fa%20b%2Bc.txt");
        assert_eq!(urlencode("k~-_."), "k~-_.");
        assert_eq!(urlencode("\u{fc}"), "%C3%BC");
    }
}
