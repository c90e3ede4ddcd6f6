//! Traces derived from request logs: Common/Combined Log Format lines (Apache, nginx) or
//! JSON lines with a timestamp and a client address.
//!
//! # Design
//! Every request of one client address goes to the same `nodeID` (the address's rank in order
//! of first appearance, modulo `nodes` when given), so that a replay keeps each client's
//! requests on one sender, as the original clients were. Times become milliseconds since the
//! earliest request; events are renumbered in time order.
//!
//! # Limitations
//! Logs carry no request bodies: events get an empty payload (POST requests are replayed as
//! bodiless POSTs through the `method` field). CLF times have one-second resolution, so
//! requests of one second start together.

use std::collections::HashMap;

use serde_json::Value;

use super::trace::Event;

/// A log line that could not be read: 1-based line, field, reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {field}: {reason}")]
pub struct LogError {
    pub line: u64,
    pub field: String,
    pub reason: String,
}

/// How to read the log and map it to events.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// Fold client addresses onto this many nodeIDs (0..nodes); `None`: one nodeID each.
    pub nodes: Option<u32>,
    /// Replace every request's path by this endpoint.
    pub endpoint: Option<String>,
    /// JSON lines: the timestamp's key (default: the first of `timestamp`, `time`, `ts`, `@timestamp`).
    pub time_field: Option<String>,
    /// JSON lines: the client address's key (default: the first of `client`, `remote_addr`,
    /// `client_ip`, `ip`, `remote_ip`).
    pub client_field: Option<String>,
}

struct Request {
    ms: f64,
    client: String,
    method: String,
    path: String,
}

/// Converts a log (every non-empty line) to a trace.
pub fn to_trace(text: &str, opts: &LogOptions) -> Result<Vec<Event>, LogError> {
    let mut reqs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i as u64 + 1;
        let l = line.trim();
        if l.is_empty() {
            continue;
        }
        let r = if l.starts_with('{') { parse_json(l, opts) } else { parse_clf(l) };
        reqs.push(r.map_err(|(field, reason)| LogError { line: n, field: field.into(), reason })?);
    }
    reqs.sort_by(|a, b| a.ms.total_cmp(&b.ms));
    let t0 = reqs.first().map_or(0.0, |r| r.ms);
    let mut clients: HashMap<String, u64> = HashMap::new();
    let events = reqs
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let next = clients.len() as u64;
            let rank = *clients.entry(r.client).or_insert(next);
            let node = opts.nodes.map_or(rank, |k| rank % u64::from(k.max(1)));
            Event {
                event_id: i as u64,
                time: r.ms - t0,
                node_id: node.to_string(),
                endpoint: opts.endpoint.clone().unwrap_or(r.path),
                payload: String::new(),
                method: (r.method != "GET").then_some(r.method),
            }
        })
        .collect();
    Ok(events)
}

type Bad = (&'static str, String);

/// `host ident user [10/Oct/2000:13:55:36 -0700] "GET /a HTTP/1.0" 200 2326 ["ref" "ua"]`.
fn parse_clf(l: &str) -> Result<Request, Bad> {
    let client = l.split_whitespace().next().unwrap_or("").to_owned();
    let open = l.find('[').ok_or(("time", "no [date] in a common-log line".to_owned()))?;
    let close = l[open..].find(']').map(|i| i + open).ok_or(("time", "unterminated [date]".to_owned()))?;
    let ms = clf_time_ms(&l[open + 1..close])
        .ok_or(("time", format!("bad date {:?} (want 10/Oct/2000:13:55:36 -0700)", &l[open + 1..close])))?;
    let rest = &l[close + 1..];
    let q1 = rest.find('"').ok_or(("request", "no quoted request".to_owned()))?;
    let q2 = rest[q1 + 1..].find('"').map(|i| i + q1 + 1).ok_or(("request", "unterminated request".to_owned()))?;
    let mut parts = rest[q1 + 1..q2].split_whitespace();
    let method = parts.next().unwrap_or("").to_ascii_uppercase();
    let path = parts.next().unwrap_or("").to_owned();
    if method.is_empty() || !path.starts_with('/') {
        return Err(("request", format!("want \"METHOD /path PROTO\", got {:?}", &rest[q1 + 1..q2])));
    }
    Ok(Request { ms, client, method, path })
}

fn parse_json(l: &str, opts: &LogOptions) -> Result<Request, Bad> {
    let v: Value = serde_json::from_str(l).map_err(|e| ("-", format!("not JSON: {e}")))?;
    let pick = |own: &Option<String>, defaults: &[&str]| -> Option<(String, Value)> {
        match own {
            Some(k) => v.get(k).map(|x| (k.clone(), x.clone())),
            None => defaults.iter().find_map(|k| v.get(*k).map(|x| ((*k).to_owned(), x.clone()))),
        }
    };
    let (_, t) = pick(&opts.time_field, &["timestamp", "time", "ts", "@timestamp"])
        .ok_or(("timestamp", "missing".to_owned()))?;
    let ms = match &t {
        Value::Number(n) => n.as_f64().map(number_time_ms),
        Value::String(s) => {
            rfc3339_ms(s).or_else(|| clf_time_ms(s)).or_else(|| s.parse::<f64>().ok().map(number_time_ms))
        }
        _ => None,
    }
    .ok_or(("timestamp", format!("bad time {t} (want RFC 3339, CLF or unix seconds/ms)")))?;
    let (_, c) = pick(&opts.client_field, &["client", "remote_addr", "client_ip", "ip", "remote_ip"])
        .ok_or(("client", "missing".to_owned()))?;
    let client = match c {
        Value::String(s) => s,
        other => other.to_string(),
    };
    let method = v.get("method").and_then(Value::as_str).unwrap_or("GET").to_ascii_uppercase();
    let path = ["path", "uri", "url", "request_uri"]
        .iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str))
        .map(|p| if p.starts_with('/') || p.starts_with("http://") { p.to_owned() } else { format!("/{p}") })
        .unwrap_or_else(|| "/".to_owned());
    Ok(Request { ms, client, method, path })
}

/// Unix time given as a number: seconds, ms, µs or ns by magnitude.
fn number_time_ms(x: f64) -> f64 {
    match x.abs() {
        a if a < 1e11 => x * 1e3,
        a if a < 1e14 => x,
        a if a < 1e17 => x / 1e3,
        _ => x / 1e6,
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_ms(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: f64, offset_min: i64) -> Option<f64> {
    let ok = (1..=12).contains(&mo)
        && (1..=31).contains(&d)
        && (0..24).contains(&h)
        && (0..60).contains(&mi)
        && (0.0..61.0).contains(&s);
    ok.then(|| ((days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 - offset_min * 60) as f64 + s) * 1e3)
}

/// `10/Oct/2000:13:55:36 -0700` → unix ms.
fn clf_time_ms(s: &str) -> Option<f64> {
    const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
    let (dt, zone) = s.trim().split_once(' ').unwrap_or((s.trim(), "+0000"));
    let mut p = dt.splitn(3, '/');
    let d: i64 = p.next()?.parse().ok()?;
    let mon = p.next()?.to_ascii_lowercase();
    let mo = MONTHS.iter().position(|m| *m == mon)? as i64 + 1;
    let mut t = p.next()?.split(':');
    let y: i64 = t.next()?.parse().ok()?;
    let h: i64 = t.next()?.parse().ok()?;
    let mi: i64 = t.next()?.parse().ok()?;
    let sec: f64 = t.next()?.parse().ok()?;
    civil_ms(y, mo, d, h, mi, sec, zone_minutes(zone.trim())?)
}

/// `+0200`, `-07:00`, `Z` → minutes east of UTC.
fn zone_minutes(z: &str) -> Option<i64> {
    if z.is_empty() || z.eq_ignore_ascii_case("z") {
        return Some(0);
    }
    let sign = match z.as_bytes()[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits: String = z[1..].chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 {
        return None;
    }
    let h: i64 = digits[..2].parse().ok()?;
    let m: i64 = digits[2..].parse().ok()?;
    Some(sign * (h * 60 + m))
}

/// `2000-10-10T13:55:36.123Z` / `2000-10-10 13:55:36+02:00` → unix ms.
fn rfc3339_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.len() < 19 {
        return None;
    }
    let y: i64 = s.get(0..4)?.parse().ok()?;
    let mo: i64 = s.get(5..7)?.parse().ok()?;
    let d: i64 = s.get(8..10)?.parse().ok()?;
    if s.get(4..5)? != "-" || !matches!(s.get(10..11)?, "T" | "t" | " ") {
        return None;
    }
    let h: i64 = s.get(11..13)?.parse().ok()?;
    let mi: i64 = s.get(14..16)?.parse().ok()?;
    let rest = s.get(17..)?;
    let zone_at = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
    let sec: f64 = rest[..zone_at].parse().ok()?;
    civil_ms(y, mo, d, h, mi, sec, zone_minutes(&rest[zone_at..])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(clf_time_ms("10/Oct/2000:13:55:36 -0700"), Some(971_211_336_000.0));
        assert_eq!(rfc3339_ms("2000-10-10T20:55:36Z"), Some(971_211_336_000.0));
        assert_eq!(rfc3339_ms("2000-10-10T22:55:36.5+02:00"), Some(971_211_336_500.0));
        assert_eq!(rfc3339_ms("2000-13-10T22:55:36Z"), None);
        assert_eq!(number_time_ms(971_211_336.0), 971_211_336_000.0);
        assert_eq!(number_time_ms(971_211_336_000.0), 971_211_336_000.0);
    }

    #[test]
    fn combined_log_to_trace() {
        let log = r#"10.0.0.2 - - [10/Oct/2000:13:55:37 -0700] "POST /b HTTP/1.1" 200 10 "-" "curl"
10.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /a?x=1 HTTP/1.0" 200 2326
10.0.0.1 - - [10/Oct/2000:13:55:38 -0700] "GET /c HTTP/1.0" 404 0 "-" "ua"
"#;
        let t = to_trace(log, &LogOptions::default()).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!((t[0].time, t[0].node_id.as_str(), t[0].endpoint.as_str()), (0.0, "0", "/a?x=1"));
        assert_eq!((t[1].time, t[1].node_id.as_str(), t[1].method.as_deref()), (1000.0, "1", Some("POST")));
        // The same client keeps its nodeID.
        assert_eq!((t[2].time, t[2].node_id.as_str()), (2000.0, "0"));
        assert_eq!(t.iter().map(|e| e.event_id).collect::<Vec<_>>(), [0, 1, 2]);
    }

    #[test]
    fn json_lines_to_trace_with_folding() {
        let log = r#"{"timestamp": "2024-01-01T00:00:00.250Z", "client": "a", "path": "/x"}
{"timestamp": "2024-01-01T00:00:00Z", "client": "b"}
{"ts": 1704067200.5, "remote_addr": "c", "method": "post"}
"#;
        let t = to_trace(log, &LogOptions { nodes: Some(2), ..LogOptions::default() }).unwrap();
        assert_eq!(
            t.iter().map(|e| (e.time, e.node_id.as_str())).collect::<Vec<_>>(),
            [(0.0, "0"), (250.0, "1"), (500.0, "0")]
        );
        assert_eq!(t[0].endpoint, "/");
        assert_eq!(t[2].method.as_deref(), Some("POST"));
    }

    #[test]
    fn bad_lines_are_named() {
        let err = to_trace("{\"client\": \"a\"}\n", &LogOptions::default()).unwrap_err();
        assert_eq!((err.line, err.field.as_str()), (1, "timestamp"));
        let err = to_trace("\n1.2.3.4 - - [bad] \"GET / HTTP/1.0\" 200 1\n", &LogOptions::default()).unwrap_err();
        assert_eq!((err.line, err.field.as_str()), (2, "time"));
        let err =
            to_trace("1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"-\" 400 0\n", &LogOptions::default()).unwrap_err();
        assert_eq!(err.field, "request");
    }
}
