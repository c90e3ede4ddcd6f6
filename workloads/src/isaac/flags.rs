//! Flag values shared by the Isaac service and the load balancer: backend lists with
//! node-group ranges, and durations with units.
//!
//! # Design
//! A topology names a group of nodes `as[0..6]` (as0 … as5, end exclusive); a workload
//! that talks to the whole group takes the same spelling with a port, `as[0..6]:9000`, so a
//! topology and its workloads' flags read alike. Lists are comma-separated or given by
//! repeating the flag (the harness turns a YAML list into a repeated flag).

use std::time::Duration;

/// A bad flag value; the message names the flag's text and what is wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlagError {
    #[error("parse backend `{item}`: {reason}")]
    Backend { item: String, reason: String },
    #[error("parse duration `{text}`: {reason}")]
    Duration { text: String, reason: String },
}

/// Expands backend specs into `host:port` addresses, in order.
///
/// Each spec is a comma-separated list of items; an item is `host:port` or
/// `name[a..b]:port`, which becomes `name{a}:port` … `name{b-1}:port`.
pub fn expand_backends<S: AsRef<str>>(specs: &[S]) -> Result<Vec<String>, FlagError> {
    let mut out = Vec::new();
    for spec in specs {
        for item in spec.as_ref().split(',').map(str::trim).filter(|s| !s.is_empty()) {
            out.extend(expand_item(item)?);
        }
    }
    Ok(out)
}

fn expand_item(item: &str) -> Result<Vec<String>, FlagError> {
    let err = |reason: &str| FlagError::Backend { item: item.to_owned(), reason: reason.to_owned() };
    let (host, port) = item.rsplit_once(':').ok_or_else(|| err("missing `:port`"))?;
    if host.contains(']') && !host.ends_with(']') {
        return Err(err("text after the range `]`"));
    }
    port.parse::<u16>().map_err(|_| err("port is not a number in 0..65535"))?;
    let Some(open) = host.find('[') else {
        if host.is_empty() {
            return Err(err("empty host"));
        }
        return Ok(vec![item.to_owned()]);
    };
    let name = &host[..open];
    let range = host[open + 1..].strip_suffix(']').ok_or_else(|| err("unclosed `[`"))?;
    let (a, b) = range.split_once("..").ok_or_else(|| err("range must be `[a..b]`"))?;
    let a: u32 = a.trim().parse().map_err(|_| err("range start is not a number"))?;
    let b: u32 = b.trim().parse().map_err(|_| err("range end is not a number"))?;
    if name.is_empty() {
        return Err(err("empty name before the range"));
    }
    if b <= a {
        return Err(err("empty range (end is exclusive)"));
    }
    Ok((a..b).map(|i| format!("{name}{i}:{port}")).collect())
}

/// Parses a duration with a unit: `250ns`, `100us`, `1.5ms`, `2s`, `3m`, `1h`.
/// A bare number is refused (it is ambiguous), as in topology files.
pub fn parse_duration(text: &str) -> Result<Duration, FlagError> {
    let err = |reason: &str| FlagError::Duration { text: text.to_owned(), reason: reason.to_owned() };
    let t = text.trim();
    let split =
        t.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(|| err("missing unit (ns, us, ms, s, m, h)"))?;
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| err("not a number"))?;
    let scale = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(err("unknown unit (ns, us, ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(value * scale).map_err(|_| err("out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_expand_end_exclusive() {
        assert_eq!(expand_backends(&["as[0..3]:9000"]).unwrap(), ["as0:9000", "as1:9000", "as2:9000"]);
        assert_eq!(expand_backends(&["db[2..4]:7000,cache:1"]).unwrap(), ["db2:7000", "db3:7000", "cache:1"]);
        assert_eq!(expand_backends(&["a:1", "b:2"]).unwrap(), ["a:1", "b:2"]);
        assert_eq!(expand_backends(&["127.0.0.1:80"]).unwrap(), ["127.0.0.1:80"]);
    }

    #[test]
    fn bad_backends_are_named() {
        for bad in ["as[0..0]:9000", "as[3..1]:1", "as[0..x]:1", "as[0..2:1", "as:port", "as", "[0..2]:1", "a[0..2]b:1"]
        {
            let e = expand_backends(&[bad]).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn durations_need_units() {
        assert_eq!(parse_duration("1.5ms").unwrap(), Duration::from_micros(1500));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("100us").unwrap(), Duration::from_micros(100));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("ms").is_err());
    }
}
