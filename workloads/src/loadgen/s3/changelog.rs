//! Changelog records (hints): what a COPY, MOVE, CONCAT or APPEND did, written by the client
//! to the source bucket before it does it, so a replicator can redo the operation at the
//! destination from objects already there instead of moving the bytes.
//!
//! The format is a contract with the replicator (docs/loadgen.md, "Changelog records"): the
//! key is `.changelog/<percent-encoded target key>/<20-digit zero-padded unix ns>`, the body
//! one JSON object:
//! `{"op":…,"key":…,"etag":…,"sources":[{"key":…,"etag":…}],"append":{"offset":…,"length":…}}`
//! with ETags in double quotes as S3 returns them, and `append` only for an APPEND.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};

use super::trace::{Op, RESERVED_PREFIX};

/// Every byte but the unreserved characters of RFC 3986 is encoded (`/` too, so the target
/// key is one path segment).
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// A source of the operation and its ETag when the operation was done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub key: String,
    pub etag: String,
}

/// Where an APPEND's bytes went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Append {
    /// Bytes of the old object.
    pub offset: u64,
    /// Bytes appended.
    pub length: u64,
}

/// One changelog record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// `COPY`, `MOVE`, `CONCAT` or `APPEND`.
    pub op: Op,
    /// The target key.
    pub key: String,
    /// The ETag the target will have after the operation, quoted.
    pub etag: String,
    /// COPY/MOVE: the source; CONCAT: the parts in order; APPEND: the old version of `key`.
    pub sources: Vec<Source>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub append: Option<Append>,
}

impl Record {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The key of the record of an operation on `target` at `unix_ns`.
pub fn key(target: &str, unix_ns: i64) -> String {
    format!("{RESERVED_PREFIX}{}/{:020}", utf8_percent_encode(target, ENCODE), unix_ns.max(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_encodes_the_target_as_one_segment() {
        assert_eq!(
            key("logs/a b+c.txt", 1_733_000_000_123_456_789),
            ".changelog/logs%2Fa%20b%2Bc.txt/01733000000123456789"
        );
        assert_eq!(key("k~-_.", 5), ".changelog/k~-_./00000000000000000005");
        assert_eq!(key("ü", 0), ".changelog/%C3%BC/00000000000000000000");
    }

    #[test]
    fn records_are_the_contract_json() {
        let copy = Record {
            op: Op::Copy,
            key: "b".into(),
            etag: "\"5eb63bbbe01eeed093cb22bb8f5acdc3\"".into(),
            sources: vec![Source { key: "a".into(), etag: "\"5eb63bbbe01eeed093cb22bb8f5acdc3\"".into() }],
            append: None,
        };
        assert_eq!(
            copy.to_json(),
            r#"{"op":"COPY","key":"b","etag":"\"5eb63bbbe01eeed093cb22bb8f5acdc3\"","sources":[{"key":"a","etag":"\"5eb63bbbe01eeed093cb22bb8f5acdc3\""}]}"#
        );
        let append = Record {
            op: Op::Append,
            key: "a".into(),
            etag: "\"e\"".into(),
            sources: vec![Source { key: "a".into(), etag: "\"o\"".into() }],
            append: Some(Append { offset: 10, length: 5 }),
        };
        assert_eq!(
            append.to_json(),
            r#"{"op":"APPEND","key":"a","etag":"\"e\"","sources":[{"key":"a","etag":"\"o\""}],"append":{"offset":10,"length":5}}"#
        );
        let back: Record = serde_json::from_str(&append.to_json()).unwrap();
        assert_eq!(back, append);
        let concat: Record =
            serde_json::from_str(r#"{"op":"CONCAT","key":"d","etag":"\"x-2\"","sources":[{"key":"a","etag":"\"1\""},{"key":"b","etag":"\"2\""}]}"#)
                .unwrap();
        assert_eq!((concat.op, concat.sources.len(), concat.append), (Op::Concat, 2, None));
    }
}
