//! The content of traced objects and what the store should hold after a trace.
//!
//! Every byte written is a function of `(key, version)` and its offset: version v of a key
//! is its v-th write in the trace (1, 2, …; a COPY, MOVE, CONCAT or APPEND onto a key counts as
//! one). A PUT writes the first `size` bytes of the stream of `(key, v)`; an APPEND adds the
//! first `size` bytes of the stream of `(key, v)` to the old object; a COPY/MOVE/CONCAT takes
//! its sources' contents. An object is thus a list of [`Segment`]s, and a verifier recomputes
//! its bytes and ETag from the trace alone ([`Model`]).
//!
//! # Design
//! The stream is counter-based (SplitMix64 of a seed from the key and version, plus the word
//! index), so any offset is generated without the bytes before it: parts of a 1 GiB object are
//! generated one at a time.

use std::collections::BTreeMap;

use super::trace::{Bad, Op, Row};

/// `len` bytes of the stream of `(key, version)`, from its start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub key: String,
    pub version: u64,
    pub len: u64,
}

/// How an object was uploaded, which decides its ETag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One PUT: the MD5 of the bytes.
    Single,
    /// A multipart upload in parts of this many bytes: MD5 of the part MD5s, `-N`.
    Multipart(u64),
}

/// What an object holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub segments: Vec<Segment>,
    pub layout: Layout,
}

impl Object {
    pub fn size(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// Fills `out` with the object's bytes from `offset`.
    pub fn read_at(&self, mut offset: u64, out: &mut [u8]) {
        let mut done = 0;
        for s in &self.segments {
            if done == out.len() {
                break;
            }
            if offset >= s.len {
                offset -= s.len;
                continue;
            }
            let n = ((s.len - offset) as usize).min(out.len() - done);
            fill(seed(&s.key, s.version), offset, &mut out[done..done + n]);
            done += n;
            offset = 0;
        }
    }

    /// The whole object (for objects that fit in memory).
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = vec![0u8; usize::try_from(self.size()).unwrap_or(usize::MAX)];
        self.read_at(0, &mut out);
        out
    }

    /// The ETag S3 gives these bytes in this layout (unquoted), computed part by part.
    pub fn etag(&self) -> String {
        let size = self.size();
        match self.layout {
            Layout::Single => s3util::etag::single(&self.bytes()),
            Layout::Multipart(part) => {
                let part = part.max(1);
                let mut buf = vec![0u8; usize::try_from(part.min(size.max(1))).unwrap_or(usize::MAX)];
                let mut digests = Vec::new();
                let mut at = 0;
                while at < size || digests.is_empty() {
                    let n = usize::try_from((size - at).min(part)).unwrap_or(usize::MAX);
                    self.read_at(at, &mut buf[..n]);
                    digests.push(s3util::etag::md5(&buf[..n]));
                    at += n as u64;
                }
                s3util::etag::multipart(&digests)
            }
        }
    }
}

/// The seed of the stream of `(key, version)`: FNV-1a of the key, mixed with the version.
pub fn seed(key: &str, version: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    splitmix(h ^ version.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fills `out` with the stream of `seed` from byte `offset`: word i is SplitMix64(seed + i),
/// little-endian.
pub fn fill(seed: u64, offset: u64, out: &mut [u8]) {
    let mut word = offset / 8;
    let mut skip = (offset % 8) as usize;
    let mut i = 0;
    while i < out.len() {
        let bytes = splitmix(seed.wrapping_add(word.wrapping_mul(0x9e37_79b9_7f4a_7c15))).to_le_bytes();
        let n = (8 - skip).min(out.len() - i);
        out[i..i + n].copy_from_slice(&bytes[skip..skip + n]);
        i += n;
        skip = 0;
        word += 1;
    }
}

/// How the client uploads whole objects: parts of `part_size` from `threshold` bytes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upload {
    pub threshold: u64,
    pub part_size: u64,
}

impl Upload {
    pub fn layout(&self, size: u64) -> Layout {
        if size >= self.threshold {
            Layout::Multipart(self.part_size)
        } else {
            Layout::Single
        }
    }
}

/// What one row makes the client do, with the version it writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub row: Row,
    /// The version of `row.key` this step writes (0 for a DELETE).
    pub version: u64,
    /// The object the step leaves at `row.key` (none after a DELETE).
    pub result: Option<Object>,
}

/// The store as the trace leaves it, step by step.
#[derive(Debug, Default)]
pub struct Model {
    pub objects: BTreeMap<String, Object>,
    versions: BTreeMap<String, u64>,
}

impl Model {
    /// Applies one row; refuses one whose sources do not exist at that point of the trace.
    pub fn apply(&mut self, row: &Row, upload: Upload) -> Result<Step, Bad> {
        let bad = |f: &str, r: String| (row.line, f.to_owned(), r);
        let source = |k: &String| {
            self.objects.get(k).ok_or_else(|| bad("sources", format!("{k:?} does not exist at that time in the trace")))
        };
        let version = self.versions.get(&row.key).copied().unwrap_or(0) + 1;
        let own = |len| Segment { key: row.key.clone(), version, len };
        let result = match row.op {
            Op::Put => Some(Object { segments: vec![own(row.size)], layout: upload.layout(row.size) }),
            Op::Copy | Op::Move => Some(source(&row.sources[0])?.clone()),
            Op::Concat => {
                let mut segments = Vec::new();
                for k in &row.sources {
                    segments.extend(source(k)?.segments.iter().cloned());
                }
                let size = segments.iter().map(|s| s.len).sum();
                Some(Object { segments, layout: upload.layout(size) })
            }
            Op::Append => {
                let old = self
                    .objects
                    .get(&row.key)
                    .ok_or_else(|| bad("key", format!("{:?} does not exist at that time in the trace", row.key)))?;
                let mut segments = old.segments.clone();
                segments.push(own(row.size));
                let size = segments.iter().map(|s| s.len).sum();
                Some(Object { segments, layout: upload.layout(size) })
            }
            Op::Delete => None,
        };
        if row.op == Op::Move {
            self.objects.remove(&row.sources[0]);
        }
        let version = match &result {
            Some(obj) => {
                self.objects.insert(row.key.clone(), obj.clone());
                self.versions.insert(row.key.clone(), version);
                version
            }
            None => {
                self.objects.remove(&row.key);
                0
            }
        };
        Ok(Step { row: row.clone(), version, result })
    }

    /// The steps of `rows` (sorted by time), with the model they leave.
    pub fn plan(rows: &[Row], upload: Upload) -> Result<(Vec<Step>, Model), Bad> {
        let mut m = Model::default();
        let steps = rows.iter().map(|r| m.apply(r, upload)).collect::<Result<_, _>>()?;
        Ok((steps, m))
    }

    /// Checks that every source exists when it is used (the layout does not matter here).
    pub fn check(rows: &[Row]) -> Result<(), Bad> {
        let mut m = Model::default();
        let upload = Upload { threshold: u64::MAX, part_size: 1 };
        rows.iter().try_for_each(|r| m.apply(r, upload).map(|_| ()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(op: Op, key: &str, size: u64, sources: &[&str]) -> Row {
        Row {
            time: 0.0,
            op,
            key: key.into(),
            size,
            sources: sources.iter().map(|s| (*s).to_owned()).collect(),
            line: 0,
        }
    }

    #[test]
    fn the_stream_is_the_same_from_any_offset() {
        let mut whole = vec![0u8; 100];
        fill(7, 0, &mut whole);
        for at in [0usize, 1, 7, 8, 13, 99] {
            let mut part = vec![0u8; 100 - at];
            fill(7, at as u64, &mut part);
            assert_eq!(part, whole[at..]);
        }
        assert_ne!(seed("k", 1), seed("k", 2));
        assert_ne!(seed("k", 1), seed("j", 1));
    }

    #[test]
    fn objects_follow_the_trace() {
        let up = Upload { threshold: 50, part_size: 16 };
        let rows = vec![
            row(Op::Put, "a", 10, &[]),
            row(Op::Put, "b", 60, &[]),
            row(Op::Append, "a", 5, &[]),
            row(Op::Copy, "c", 0, &["a"]),
            row(Op::Concat, "d", 0, &["a", "b"]),
            row(Op::Move, "e", 0, &["c"]),
            row(Op::Put, "a", 3, &[]),
            row(Op::Delete, "b", 0, &[]),
        ];
        let (steps, m) = Model::plan(&rows, up).unwrap();
        assert_eq!(steps.iter().map(|s| s.version).collect::<Vec<_>>(), [1, 1, 2, 1, 1, 1, 3, 0]);
        let a2 = steps[2].result.clone().unwrap();
        assert_eq!(a2.size(), 15);
        // The append keeps the old bytes and adds version 2's stream.
        let mut tail = vec![0u8; 5];
        fill(seed("a", 2), 0, &mut tail);
        let mut head = vec![0u8; 10];
        fill(seed("a", 1), 0, &mut head);
        assert_eq!(a2.bytes(), [head.clone(), tail].concat());
        let d = &m.objects["d"];
        assert_eq!((d.size(), d.layout), (75, Layout::Multipart(16)));
        assert_eq!(d.bytes()[..15], a2.bytes()[..]);
        assert_eq!(m.objects["e"], a2, "moved from c, a copy of a's version 2");
        assert!(!m.objects.contains_key("c") && !m.objects.contains_key("b"));
        assert_eq!(m.objects["a"].size(), 3);
        // The multipart ETag computed part by part equals the one of the whole bytes.
        assert_eq!(d.etag(), s3util::etag::multipart_of(&d.bytes(), 16));
        assert!(d.etag().ends_with("-5"));
        assert_eq!(m.objects["e"].etag(), s3util::etag::single(&a2.bytes()));
    }

    #[test]
    fn a_source_that_does_not_exist_is_refused_at_its_line() {
        let mut r = row(Op::Copy, "c", 0, &["a"]);
        r.line = 4;
        let err = Model::check(&[row(Op::Put, "b", 1, &[]), r]).unwrap_err();
        assert_eq!((err.0, err.1.as_str()), (4, "sources"));
        let mut r = row(Op::Append, "z", 3, &[]);
        r.line = 2;
        assert_eq!(Model::check(&[r]).unwrap_err().1, "key");
        // Moved away: gone.
        let rows = [row(Op::Put, "a", 1, &[]), row(Op::Move, "b", 0, &["a"]), row(Op::Copy, "c", 0, &["a"])];
        assert!(Model::check(&rows).is_err());
    }
}
