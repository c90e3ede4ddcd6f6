//! Changelog records (hints): what a COPY, MOVE, CONCAT or APPEND did, written by the client
//! to the source bucket before it does it, so a replicator can redo the operation at the
//! destination from objects already there instead of moving the bytes.
//!
//! The format is the replicator's (`s3util::changelog`, docs/loadgen.md "Changelog
//! records"): this module only maps the trace's operations onto it.

pub use s3util::changelog::{Append, Hint as Record, Source};

use super::trace::Op;

/// The record's operation of a trace operation (PUT and DELETE have none).
pub fn record_op(op: Op) -> Option<s3util::changelog::Op> {
    use s3util::changelog::Op as R;
    match op {
        Op::Copy => Some(R::Copy),
        Op::Move => Some(R::Move),
        Op::Concat => Some(R::Concat),
        Op::Append => Some(R::Append),
        Op::Put | Op::Delete => None,
    }
}

/// The trace operation of a record's.
pub fn trace_op(op: s3util::changelog::Op) -> Op {
    use s3util::changelog::Op as R;
    match op {
        R::Copy => Op::Copy,
        R::Move => Op::Move,
        R::Concat => Op::Concat,
        R::Append => Op::Append,
    }
}

/// The key of the record of an operation on `target` at `unix_ns`.
pub fn key(target: &str, unix_ns: i64) -> String {
    s3util::changelog::record_key(target, u128::try_from(unix_ns).unwrap_or(0))
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
        assert_eq!(key("ü", -1), ".changelog/%C3%BC/00000000000000000000");
    }

    #[test]
    fn records_are_the_contract_json() {
        let append = Record {
            op: s3util::changelog::Op::Append,
            key: "a".into(),
            etag: "\"e\"".into(),
            sources: vec![Source { key: "a".into(), etag: "\"o\"".into() }],
            append: Some(Append { offset: 10, length: 5 }),
        };
        assert_eq!(
            String::from_utf8(append.to_body()).unwrap(),
            r#"{"op":"APPEND","key":"a","etag":"\"e\"","sources":[{"key":"a","etag":"\"o\""}],"append":{"offset":10,"length":5}}"#
        );
        for op in Op::ALL {
            assert_eq!(record_op(op).map(trace_op), record_op(op).map(|_| op));
        }
    }
}
