//! Object-write traces of the S3 mode: time, operation, key, size and sources.
//!
//! A row is `{"time": MS, "op": "PUT", "key": "k", "size": B}` in JSON Lines, or a CSV row
//! under a header naming the columns in any order (`time,op,key` required; `size`, `sources`
//! optional). `sources` names the source of a COPY/MOVE and the parts of a CONCAT, in order
//! (a JSON array or string; in CSV the keys are separated by `;`). `size` is the object's
//! bytes for a PUT and the appended bytes for an APPEND; other operations ignore it.
//!
//! # Design
//! Rows are checked one by one (each error names the file, the line and the field), sorted by
//! time (stable: rows at one time keep their order), then checked against the trace's own
//! history by [`super::model::Model`] (a COPY of a key that does not exist yet is refused at
//! its line too).

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The operations of a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Op {
    Put,
    Copy,
    Move,
    Concat,
    Append,
    Delete,
}

impl Op {
    pub const ALL: [Op; 6] = [Op::Put, Op::Copy, Op::Move, Op::Concat, Op::Append, Op::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Put => "PUT",
            Op::Copy => "COPY",
            Op::Move => "MOVE",
            Op::Concat => "CONCAT",
            Op::Append => "APPEND",
            Op::Delete => "DELETE",
        }
    }

    fn parse(s: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of an object-write trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Milliseconds from the trace's start.
    pub time: f64,
    pub op: Op,
    /// The key written (the target of a COPY/MOVE/CONCAT).
    pub key: String,
    /// PUT: the object's bytes; APPEND: the bytes appended; else 0.
    #[serde(default)]
    pub size: u64,
    /// COPY/MOVE: the source; CONCAT: the parts in order; else empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    /// The row's line in its file (0 for generated rows).
    #[serde(skip)]
    pub line: u64,
}

/// Keys under this prefix are the changelog's, never a trace's.
pub const RESERVED_PREFIX: &str = s3util::changelog::PREFIX;

/// Errors of reading or writing an object-write trace: the same kinds, naming file and line,
/// as the HTTP trace's.
pub use crate::loadgen::trace::TraceError as S3TraceError;

/// A parse failure: line, field, reason.
pub type Bad = (u64, String, String);

/// Reads a trace file: CSV by the `.csv` extension, else JSON Lines; sorted by time and
/// checked against its own history.
pub fn read(path: &Path) -> Result<Vec<Row>, S3TraceError> {
    let text = std::fs::read_to_string(path).map_err(|source| S3TraceError::Read { path: path.to_owned(), source })?;
    let csv = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let rows = parse(&text, csv).map_err(|(line, field, reason)| S3TraceError::Invalid {
        path: path.to_owned(),
        line,
        field,
        reason,
    })?;
    super::model::Model::check(&rows).map_err(|(line, field, reason)| S3TraceError::Invalid {
        path: path.to_owned(),
        line,
        field,
        reason,
    })?;
    Ok(rows)
}

/// Parses a trace's text (rows checked one by one, then sorted by time).
pub fn parse(text: &str, csv: bool) -> Result<Vec<Row>, Bad> {
    let mut rows = if csv { parse_csv(text)? } else { parse_json_lines(text)? };
    rows.sort_by(|a, b| a.time.total_cmp(&b.time));
    Ok(rows)
}

fn parse_json_lines(text: &str) -> Result<Vec<Row>, Bad> {
    let mut rows = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let line = i as u64 + 1;
        if l.trim().is_empty() {
            continue;
        }
        let v: Value =
            serde_json::from_str(l).map_err(|e| (line, "-".to_owned(), format!("not a JSON object: {e}")))?;
        let obj = v.as_object().ok_or_else(|| (line, "-".to_owned(), "a row must be a JSON object".to_owned()))?;
        let bad = |f: &str, r: &str| (line, f.to_owned(), r.to_owned());
        let text_of = |f: &str| match obj.get(f) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(bad(f, "must be a string or a number")),
        };
        let sources = match obj.get("sources") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .map(|s| s.as_str().map(str::to_owned).ok_or_else(|| bad("sources", "must be keys (strings)")))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(bad("sources", "must be a key or an array of keys")),
        };
        let fields = Fields {
            time: text_of("time")?,
            op: text_of("op")?,
            key: text_of("key")?,
            size: text_of("size")?,
            sources,
        };
        rows.push(fields.row(line)?);
    }
    Ok(rows)
}

fn parse_csv(text: &str) -> Result<Vec<Row>, Bad> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).trim(csv::Trim::All).from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| (1, "-".to_owned(), format!("bad header: {e}")))?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let need = |name: &str| col(name).ok_or_else(|| (1, name.to_owned(), "column missing from the header".to_owned()));
    let (c_time, c_op, c_key) = (need("time")?, need("op")?, need("key")?);
    let (c_size, c_sources) = (col("size"), col("sources"));
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| (e.position().map_or(0, |p| p.line()), "-".to_owned(), e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        let get = |c: Option<usize>| c.and_then(|c| record.get(c)).filter(|s| !s.is_empty()).map(str::to_owned);
        let sources = get(c_sources)
            .map(|s| s.split(';').map(|k| k.trim().to_owned()).filter(|k| !k.is_empty()).collect())
            .unwrap_or_default();
        let fields =
            Fields { time: get(Some(c_time)), op: get(Some(c_op)), key: get(Some(c_key)), size: get(c_size), sources };
        rows.push(fields.row(line)?);
    }
    Ok(rows)
}

/// A row's fields as text, before checking (both forms end here, so they read alike).
struct Fields {
    time: Option<String>,
    op: Option<String>,
    key: Option<String>,
    size: Option<String>,
    sources: Vec<String>,
}

impl Fields {
    fn row(self, line: u64) -> Result<Row, Bad> {
        let bad = |f: &str, r: &str| (line, f.to_owned(), r.to_owned());
        let time = self.time.ok_or_else(|| bad("time", "missing"))?;
        let time: f64 = time.trim().parse().unwrap_or(f64::NAN);
        if !(time.is_finite() && time >= 0.0) {
            return Err(bad("time", "must be a non-negative number of milliseconds"));
        }
        let op = self.op.ok_or_else(|| bad("op", "missing"))?;
        let op = Op::parse(&op).ok_or_else(|| bad("op", "must be PUT, COPY, MOVE, CONCAT, APPEND or DELETE"))?;
        let key = self.key.ok_or_else(|| bad("key", "missing"))?;
        check_key(&key).map_err(|r| bad("key", &r))?;
        let size = match self.size {
            None => None,
            Some(s) => {
                Some(s.trim().parse::<u64>().map_err(|_| bad("size", "must be a non-negative integer of bytes"))?)
            }
        };
        let size = match op {
            Op::Put => size.ok_or_else(|| bad("size", "missing (a PUT's bytes)"))?,
            Op::Append => match size {
                Some(s) if s > 0 => s,
                _ => return Err(bad("size", "an APPEND needs a positive number of bytes to append")),
            },
            _ => 0,
        };
        for s in &self.sources {
            check_key(s).map_err(|r| bad("sources", &format!("{s:?}: {r}")))?;
        }
        let n = self.sources.len();
        match op {
            Op::Copy | Op::Move if n != 1 => return Err(bad("sources", "a COPY or MOVE names exactly one source")),
            Op::Copy | Op::Move if self.sources[0] == key => {
                return Err(bad("sources", "a COPY or MOVE onto its own source is not a copy"))
            }
            Op::Concat if n == 0 => return Err(bad("sources", "a CONCAT names its parts")),
            Op::Put | Op::Append | Op::Delete if n > 0 => {
                return Err(bad("sources", &format!("a {op} takes no sources")))
            }
            _ => {}
        }
        Ok(Row { time, op, key, size, sources: self.sources, line })
    }
}

/// A key the S3 client can send as it is: not empty, no empty segment, no `.`/`..` segment,
/// no control characters, not under the changelog's prefix.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.starts_with(RESERVED_PREFIX) {
        return Err(format!("keys under {RESERVED_PREFIX} are the changelog's"));
    }
    if key.is_empty() || key.starts_with('/') || key.ends_with('/') {
        return Err("must be a non-empty key that neither starts nor ends with /".into());
    }
    object_store::path::Path::parse(key).map(|_| ()).map_err(|e| e.to_string())
}

/// The trace as text in CSV (`time,op,key,size,sources`) or JSON Lines.
pub fn render(rows: &[Row], csv: bool) -> String {
    let mut out = String::new();
    if csv {
        out.push_str("time,op,key,size,sources\n");
        for r in rows {
            let sources = r.sources.join(";");
            let cells = [r.time.to_string(), r.op.to_string(), r.key.clone(), r.size.to_string(), sources];
            let quoted: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
            out.push_str(&quoted.join(","));
            out.push('\n');
        }
    } else {
        for r in rows {
            out.push_str(&serde_json::to_string(r).unwrap_or_default());
            out.push('\n');
        }
    }
    out
}

fn csv_cell(c: &str) -> String {
    if c.contains([',', '"', '\n', '\r']) || c.trim() != c {
        format!("\"{}\"", c.replace('"', "\"\""))
    } else {
        c.to_owned()
    }
}

/// Writes `rows` to `path`: CSV by the `.csv` extension, else JSON Lines.
pub fn write(path: &Path, rows: &[Row]) -> Result<(), S3TraceError> {
    let csv = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    std::fs::write(path, render(rows, csv)).map_err(|source| S3TraceError::Write { path: path.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_json_lines_read_alike_and_sort_by_time() {
        let csv = "op,time,key,size,sources\nPUT,5,b,10,\nput,1,a,3,\nCOPY,7,c,,a\nCONCAT,8,d,,a;b\nAPPEND,9,a,4,\nDELETE,10,b,,\nMOVE,11,e,,c\n";
        let rows = parse(csv, true).unwrap();
        assert_eq!(rows.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["a", "b", "c", "d", "a", "b", "e"]);
        assert_eq!(rows[3].sources, ["a", "b"]);
        assert_eq!((rows[4].op, rows[4].size, rows[4].line), (Op::Append, 4, 6));
        let jsonl = render(&rows, false);
        let back = parse(&jsonl, false).unwrap();
        let strip = |v: &[Row]| v.iter().map(|r| Row { line: 0, ..r.clone() }).collect::<Vec<_>>();
        assert_eq!(strip(&back), strip(&rows));
        assert_eq!(strip(&parse(&render(&rows, true), true).unwrap()), strip(&rows));
        // A JSON row may give one source as a string and numbers as text.
        let one = parse(r#"{"time":"2.5","op":"COPY","key":"x","sources":"a"}"#, false).unwrap();
        assert_eq!((one[0].time, one[0].sources.clone()), (2.5, vec!["a".to_owned()]));
    }

    #[test]
    fn errors_name_the_line_and_the_field() {
        let cases: &[(&str, bool, u64, &str)] = &[
            ("time,op,key,size\n1,PUT,a,3\n-1,PUT,a,3\n", true, 3, "time"),
            ("time,op,key,size\n1,POST,a,3\n", true, 2, "op"),
            ("time,op,key,size\n1,PUT,a,\n", true, 2, "size"),
            ("time,op,key,size\n1,PUT,a,-4\n", true, 2, "size"),
            ("time,op,key\n1,APPEND,a\n", true, 2, "size"),
            ("time,op,key,sources\n1,COPY,a,\n", true, 2, "sources"),
            ("time,op,key,sources\n1,COPY,a,b;c\n", true, 2, "sources"),
            ("time,op,key,sources\n1,COPY,a,a\n", true, 2, "sources"),
            ("time,op,key,sources\n1,PUT,a,b\n", true, 2, "size"),
            ("time,op,key,size,sources\n1,DELETE,a,,b\n", true, 2, "sources"),
            ("time,op,size\n1,PUT,3\n", true, 1, "key"),
            ("time,op,key,size\n1,PUT,.changelog/x,3\n", true, 2, "key"),
            ("time,op,key,size\n1,PUT,a//b,3\n", true, 2, "key"),
            ("time,op,key,size\n1,PUT,a/../b,3\n", true, 2, "key"),
            (
                "{\"time\":1,\"op\":\"PUT\",\"key\":\"a\",\"size\":1}\n\n{\"time\":1,\"op\":\"PUT\",\"size\":1}\n",
                false,
                3,
                "key",
            ),
            ("{\"time\":1,\"op\":\"PUT\",\"key\":\"a\",\"size\":1.5}\n", false, 1, "size"),
            ("{\"time\":1,\"op\":\"CONCAT\",\"key\":\"a\",\"sources\":[1]}\n", false, 1, "sources"),
            ("[1]\n", false, 1, "-"),
            ("{oops\n", false, 1, "-"),
        ];
        for (text, csv, line, field) in cases {
            let err = parse(text, *csv).expect_err(text);
            assert_eq!((err.0, err.1.as_str()), (*line, *field), "{text}: {err:?}");
        }
    }

    #[test]
    fn a_file_error_names_file_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, "time,op,key,size,sources\n1,PUT,a,3,\n2,COPY,b,,nope\n").unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.ends_with("t.csv:3: sources: \"nope\" does not exist at that time in the trace"), "{err}");
        let path = dir.path().join("t.jsonl");
        std::fs::write(
            &path,
            "{\"time\":1,\"op\":\"PUT\",\"key\":\"a\",\"size\":2}\n{\"time\":1,\"op\":\"PUT\",\"key\":\"a\"}\n",
        )
        .unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.ends_with("t.jsonl:2: size: missing (a PUT's bytes)"), "{err}");
    }
}
