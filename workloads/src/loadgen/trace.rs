//! Traces: lists of requests with their times, replayed by the trace mode and produced by
//! the `trace` subcommand.
//!
//! An event has `eventID` (a non-negative integer, unique), `time` (ms from the trace's start,
//! a non-negative number), `nodeID` (who sends it in distributed mode: a string or an
//! integer), `endpoint` (a path such as `/api/x`, or a whole `http://host:port/path` URL),
//! `payload` (a string; non-empty makes the request a POST; a JSON object or array is sent as
//! its JSON text) and optionally `method`.
//!
//! # Design
//! Three forms are read: a JSON array (one event per element), JSON Lines (one object a
//! line), and CSV with a header naming the columns (any order; `payload` and `method`
//! optional). A JSON array is split into its elements as raw text first, so that every error
//! names the line of the element and of the offending field, not just "somewhere in the array".
//! Events are sorted by time after reading (files need not be sorted).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

/// One request of a trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "eventID")]
    pub event_id: u64,
    /// Milliseconds from the trace's start.
    pub time: f64,
    #[serde(rename = "nodeID")]
    pub node_id: String,
    pub endpoint: String,
    #[serde(default)]
    pub payload: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// Errors of reading or writing a trace.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("read trace {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("read trace {}:{line}: {field}: {reason}", path.display())]
    Invalid { path: PathBuf, line: u64, field: String, reason: String },
    #[error("write trace {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// On-disk forms of a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A JSON array of events (one a line when written).
    Json,
    /// One JSON object a line.
    Jsonl,
    /// CSV with a header `eventID,time,nodeID,endpoint,payload[,method]`.
    Csv,
}

impl Format {
    /// The form a file name suggests: `.csv` → CSV, `.jsonl`/`.ndjson` → JSON Lines, else JSON.
    pub fn of_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("csv") => Format::Csv,
            Some("jsonl" | "ndjson") => Format::Jsonl,
            _ => Format::Json,
        }
    }
}

/// Reads a trace file in any of its forms (CSV by extension; JSON array or JSON Lines by
/// content), sorted by time.
pub fn read(path: &Path) -> Result<Vec<Event>, TraceError> {
    let text = std::fs::read_to_string(path).map_err(|source| TraceError::Read { path: path.to_owned(), source })?;
    parse(&text, Format::of_path(path) == Format::Csv).map_err(|(line, field, reason)| TraceError::Invalid {
        path: path.to_owned(),
        line,
        field,
        reason,
    })
}

/// A parse failure: line, field, reason.
type Bad = (u64, String, String);

/// Parses a trace's text; `csv` selects the CSV form, else JSON (array or lines).
pub fn parse(text: &str, csv: bool) -> Result<Vec<Event>, Bad> {
    let mut events = if csv {
        parse_csv(text)?
    } else if text.trim_start().starts_with('[') {
        parse_json_array(text)?
    } else {
        parse_json_lines(text)?
    };
    events.sort_by(|a, b| a.time.total_cmp(&b.time));
    Ok(events)
}

fn line_of(text: &str, offset: usize) -> u64 {
    1 + text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() as u64
}

/// Checks for a repeated eventID.
fn check_unique(seen: &mut HashSet<u64>, e: &Event, line: u64) -> Result<(), Bad> {
    if seen.insert(e.event_id) {
        Ok(())
    } else {
        Err((line, "eventID".into(), format!("duplicate eventID {}", e.event_id)))
    }
}

fn parse_json_array(text: &str) -> Result<Vec<Event>, Bad> {
    let raws: Vec<&RawValue> = serde_json::from_str(text)
        .map_err(|e| (e.line() as u64, "-".to_owned(), format!("not a JSON array of events: {e}")))?;
    let mut seen = HashSet::new();
    let mut events = Vec::with_capacity(raws.len());
    for raw in raws {
        // The raw value borrows from `text`: its distance from the start is its offset.
        let offset = (raw.get().as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
        let line = line_of(text, offset);
        let field_line =
            |field: &str| line + raw.get().find(&format!("\"{field}\"")).map_or(0, |i| line_of(raw.get(), i) - 1);
        let value: Value = serde_json::from_str(raw.get()).map_err(|e| (line, "-".to_owned(), e.to_string()))?;
        let event = event_from_json(&value).map_err(|(field, reason)| (field_line(&field), field, reason))?;
        check_unique(&mut seen, &event, field_line("eventID"))?;
        events.push(event);
    }
    Ok(events)
}

fn parse_json_lines(text: &str) -> Result<Vec<Event>, Bad> {
    let mut seen = HashSet::new();
    let mut events = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let line = i as u64 + 1;
        if l.trim().is_empty() {
            continue;
        }
        let value: Value =
            serde_json::from_str(l).map_err(|e| (line, "-".to_owned(), format!("not a JSON object: {e}")))?;
        let event = event_from_json(&value).map_err(|(field, reason)| (line, field, reason))?;
        check_unique(&mut seen, &event, line)?;
        events.push(event);
    }
    Ok(events)
}

/// Builds an event from a JSON object; errors are (field, reason).
fn event_from_json(v: &Value) -> Result<Event, (String, String)> {
    let obj = v.as_object().ok_or_else(|| ("-".to_owned(), "an event must be a JSON object".to_owned()))?;
    let get = |f: &str| obj.get(f).ok_or_else(|| (f.to_owned(), "missing".to_owned()));
    let bad = |f: &str, r: &str| (f.to_owned(), r.to_owned());
    let event_id = match get("eventID")? {
        Value::Number(n) => n.as_u64().ok_or_else(|| bad("eventID", "must be a non-negative integer"))?,
        Value::String(s) => s.trim().parse().map_err(|_| bad("eventID", "must be a non-negative integer"))?,
        _ => return Err(bad("eventID", "must be a non-negative integer")),
    };
    let time = match get("time")? {
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Value::String(s) => s.trim().parse().unwrap_or(f64::NAN),
        _ => f64::NAN,
    };
    let time = check_time(time).map_err(|r| bad("time", r))?;
    let node_id = match get("nodeID")? {
        // Trimmed as in CSV, so that every form reads the same event.
        Value::String(s) if !s.trim().is_empty() => s.trim().to_owned(),
        Value::Number(n) if n.is_u64() || n.is_i64() => n.to_string(),
        _ => return Err(bad("nodeID", "must be a non-empty string or an integer")),
    };
    let endpoint = match get("endpoint")? {
        Value::String(s) => check_endpoint(s).map_err(|r| bad("endpoint", r))?,
        _ => return Err(bad("endpoint", "must be a string")),
    };
    let payload = match obj.get("payload") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other @ (Value::Object(_) | Value::Array(_))) => other.to_string(),
        Some(_) => return Err(bad("payload", "must be a string, an object or an array")),
    };
    let method = match obj.get("method") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(check_method(s).map_err(|r| bad("method", r))?),
        Some(_) => return Err(bad("method", "must be a string")),
    };
    Ok(Event { event_id, time, node_id, endpoint, payload, method })
}

fn check_time(t: f64) -> Result<f64, &'static str> {
    if t.is_finite() && t >= 0.0 {
        Ok(t)
    } else {
        Err("must be a non-negative number of milliseconds")
    }
}

fn check_endpoint(s: &str) -> Result<String, &'static str> {
    let s = s.trim();
    if s.starts_with('/') || s.starts_with("http://") {
        Ok(s.to_owned())
    } else {
        Err("must be a path starting with / or an http:// URL")
    }
}

fn check_method(s: &str) -> Result<String, &'static str> {
    let m = s.trim().to_ascii_uppercase();
    if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(m)
    } else {
        Err("must be an HTTP method such as GET or POST")
    }
}

fn parse_csv(text: &str) -> Result<Vec<Event>, Bad> {
    // Headers and every field but `payload` are trimmed (as their JSON forms are); a payload
    // is a request body, sent byte for byte.
    let mut reader = csv::ReaderBuilder::new().has_headers(true).trim(csv::Trim::Headers).from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| (1, "-".to_owned(), format!("bad header: {e}")))?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let need = |name: &str| col(name).ok_or_else(|| (1, name.to_owned(), "column missing from the header".to_owned()));
    let (c_id, c_time, c_node, c_end) = (need("eventID")?, need("time")?, need("nodeID")?, need("endpoint")?);
    let (c_payload, c_method) = (col("payload"), col("method"));
    let mut seen = HashSet::new();
    let mut events = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| (e.position().map_or(0, |p| p.line()), "-".to_owned(), e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        let raw = |c: usize| record.get(c).unwrap_or("");
        let field = |c: usize| raw(c).trim();
        let bad = |f: &str, r: &str| (line, f.to_owned(), r.to_owned());
        let event_id = field(c_id).parse().map_err(|_| bad("eventID", "must be a non-negative integer"))?;
        let time = check_time(field(c_time).parse().unwrap_or(f64::NAN)).map_err(|r| bad("time", r))?;
        let node_id = field(c_node).to_owned();
        if node_id.is_empty() {
            return Err(bad("nodeID", "must not be empty"));
        }
        let endpoint = check_endpoint(field(c_end)).map_err(|r| bad("endpoint", r))?;
        let payload = c_payload.map(|c| raw(c).to_owned()).unwrap_or_default();
        let method = match c_method.map(field).filter(|m| !m.is_empty()) {
            Some(m) => Some(check_method(m).map_err(|r| bad("method", r))?),
            None => None,
        };
        let event = Event { event_id, time, node_id, endpoint, payload, method };
        check_unique(&mut seen, &event, line)?;
        events.push(event);
    }
    Ok(events)
}

/// Renders events in `format`.
pub fn render(events: &[Event], format: Format) -> String {
    match format {
        Format::Json => {
            let lines: Vec<String> =
                events.iter().map(|e| format!("  {}", serde_json::to_string(e).unwrap_or_default())).collect();
            format!("[\n{}\n]\n", lines.join(",\n"))
        }
        Format::Jsonl => events.iter().map(|e| serde_json::to_string(e).unwrap_or_default() + "\n").collect(),
        Format::Csv => {
            let with_method = events.iter().any(|e| e.method.is_some());
            let mut w = csv::Writer::from_writer(Vec::new());
            let mut header = vec!["eventID", "time", "nodeID", "endpoint", "payload"];
            if with_method {
                header.push("method");
            }
            let _ = w.write_record(&header);
            for e in events {
                let mut row = vec![
                    e.event_id.to_string(),
                    e.time.to_string(),
                    e.node_id.clone(),
                    e.endpoint.clone(),
                    e.payload.clone(),
                ];
                if with_method {
                    row.push(e.method.clone().unwrap_or_default());
                }
                let _ = w.write_record(&row);
            }
            String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
        }
    }
}

/// Writes events to `path` in `format`.
pub fn write(path: &Path, events: &[Event], format: Format) -> Result<(), TraceError> {
    std::fs::write(path, render(events, format)).map_err(|source| TraceError::Write { path: path.to_owned(), source })
}

/// The trace with every time divided by `factor` (2 = twice as fast, GoReplay's `|200%`).
pub fn speed(events: &[Event], factor: f64) -> Vec<Event> {
    events.iter().map(|e| Event { time: e.time / factor, ..e.clone() }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: u64, time: f64, node: &str) -> Event {
        Event { event_id: id, time, node_id: node.into(), endpoint: "/x".into(), payload: String::new(), method: None }
    }

    #[test]
    fn json_array_round_trip_sorted() {
        let events = vec![ev(1, 5.0, "a"), ev(0, 1.5, "b")];
        let text = render(&events, Format::Json);
        let back = parse(&text, false).unwrap();
        assert_eq!(back, vec![ev(0, 1.5, "b"), ev(1, 5.0, "a")]);
        assert_eq!(parse(&render(&events, Format::Jsonl), false).unwrap().len(), 2);
        assert_eq!(parse(&render(&events, Format::Csv), true).unwrap(), back);
    }

    #[test]
    fn every_form_reads_the_same_event() {
        // Found by the fuzzer: CSV trimmed the payload (a request body) and JSON kept the
        // spaces around a nodeID that CSV trimmed, so a round trip changed the event.
        let csv = "eventID, time ,nodeID,endpoint,payload\n0,1, a ,/x, 1,2]\n";
        let csv = csv.replace(" 1,2]", "\" 1,2]\"");
        let e = parse(&csv, true).unwrap();
        assert_eq!((e[0].node_id.as_str(), e[0].payload.as_str()), ("a", " 1,2]"));
        let json = r#"{"eventID": 0, "time": 1, "nodeID": " a ", "endpoint": "/x", "payload": " 1,2]"}"#;
        assert_eq!(parse(json, false).unwrap(), e);
        for format in [Format::Json, Format::Jsonl, Format::Csv] {
            assert_eq!(parse(&render(&e, format), format == Format::Csv).unwrap(), e, "{format:?}");
        }
        assert_eq!(
            parse(r#"{"eventID": 0, "time": 1, "nodeID": "  ", "endpoint": "/x"}"#, false).unwrap_err().1,
            "nodeID"
        );
        // And a time JSON reads back to the same double (serde_json's `float_roundtrip`).
        let t = parse("eventID,time,nodeID,endpoint\n1,2.184467440737095516165,c,/b\n", true).unwrap();
        assert_eq!(parse(&render(&t, Format::Json), false).unwrap(), t);
    }

    #[test]
    fn json_forms_accept_numbers_and_objects() {
        let text = r#"[{"eventID": 3, "time": 0, "nodeID": 2, "endpoint": "http://s:80/p", "payload": {"k": 1}, "method": "put"}]"#;
        let e = &parse(text, false).unwrap()[0];
        assert_eq!((e.node_id.as_str(), e.payload.as_str(), e.method.as_deref()), ("2", r#"{"k":1}"#, Some("PUT")));
    }

    #[test]
    fn array_errors_name_the_line_and_field() {
        let text = "[\n  {\"eventID\": 0, \"time\": 0, \"nodeID\": \"a\", \"endpoint\": \"/\"},\n  {\"eventID\": 1,\n   \"time\": -4, \"nodeID\": \"a\", \"endpoint\": \"/\"}\n]\n";
        let (line, field, reason) = parse(text, false).unwrap_err();
        assert_eq!((line, field.as_str()), (4, "time"), "{reason}");
        let text = "[\n{\"eventID\": 0, \"time\": 0, \"nodeID\": \"a\"}\n]";
        assert_eq!(parse(text, false).unwrap_err().1, "endpoint");
        let text = "[\n{\"eventID\": 0, \"time\": 0, \"nodeID\": \"a\", \"endpoint\": \"/\"},\n{\"eventID\": 0, \"time\": 1, \"nodeID\": \"a\", \"endpoint\": \"/\"}\n]";
        let (line, field, reason) = parse(text, false).unwrap_err();
        assert_eq!((line, field.as_str()), (3, "eventID"));
        assert!(reason.contains("duplicate"));
        let (line, _, _) = parse("[\n{\"eventID\": 0,,}\n]", false).unwrap_err();
        assert_eq!(line, 2);
    }

    #[test]
    fn json_lines_and_csv_errors_name_the_line() {
        let text = "{\"eventID\": 0, \"time\": 0, \"nodeID\": \"a\", \"endpoint\": \"/\"}\n\n{\"eventID\": \"x\", \"time\": 0, \"nodeID\": \"a\", \"endpoint\": \"/\"}\n";
        assert_eq!(parse(text, false).unwrap_err().0, 3);
        let csv = "eventID,time,nodeID,endpoint,payload\n0,0,a,/,\n1,abc,a,/,\n";
        let (line, field, _) = parse(csv, true).unwrap_err();
        assert_eq!((line, field.as_str()), (3, "time"));
        let csv = "eventID,time,endpoint\n0,0,/\n";
        assert_eq!(parse(csv, true).unwrap_err().1, "nodeID");
        let csv = "eventID,time,nodeID,endpoint\n0,0,a,nope\n";
        assert_eq!(
            parse(csv, true).unwrap_err(),
            (2, "endpoint".into(), "must be a path starting with / or an http:// URL".into())
        );
    }

    #[test]
    fn speed_factor_scales_times() {
        let t = speed(&[ev(0, 0.0, "a"), ev(1, 100.0, "a")], 2.0);
        assert_eq!(t[1].time, 50.0);
        assert_eq!(speed(&t, 0.5)[1].time, 100.0);
    }

    #[test]
    fn read_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        std::fs::write(&p, "eventID,time,nodeID,endpoint\n0,-1,a,/\n").unwrap();
        let msg = read(&p).unwrap_err().to_string();
        assert!(msg.contains("t.csv:2: time:"), "{msg}");
    }
}
