//! Parsing of the units on the load generator's command line: durations (`100us`, `1.5ms`,
//! `2s`, `3m`, `1h`, `250ns`, as in topology files) and factors (`2`, `0.5`, `200%`).

/// A unit that did not parse; the message names what was expected.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("parse {what} {text:?}: {reason}")]
pub struct UnitError {
    pub what: &'static str,
    pub text: String,
    pub reason: &'static str,
}

/// Parses a duration with a unit into nanoseconds. A bare number is refused (as in topologies).
pub fn parse_duration_ns(text: &str) -> Result<u64, UnitError> {
    let err = |reason| UnitError { what: "duration", text: text.to_owned(), reason };
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| err("needs a unit: ns, us, ms, s, m or h"))?;
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| err("not a number"))?;
    let scale = match unit.trim() {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" | "min" => 60e9,
        "h" => 3600e9,
        _ => return Err(err("unknown unit (ns, us, ms, s, m, h)")),
    };
    let ns = value * scale;
    if !ns.is_finite() || !(0.0..=1e19).contains(&ns) {
        return Err(err("out of range"));
    }
    Ok(ns.round() as u64)
}

/// Parses a clap argument as a duration in nanoseconds.
pub fn duration_arg(text: &str) -> Result<u64, String> {
    parse_duration_ns(text).map_err(|e| e.to_string())
}

/// Parses a positive factor: `2`, `0.5`, or a percentage such as `200%` (= 2).
pub fn parse_factor(text: &str) -> Result<f64, UnitError> {
    let err = |reason| UnitError { what: "factor", text: text.to_owned(), reason };
    let t = text.trim();
    let value = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map_err(|_| err("not a number"))? / 100.0,
        None => t.parse::<f64>().map_err(|_| err("not a number"))?,
    };
    if !value.is_finite() || value <= 0.0 {
        return Err(err("must be positive"));
    }
    Ok(value)
}

/// Parses a clap argument as a factor.
pub fn factor_arg(text: &str) -> Result<f64, String> {
    parse_factor(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ns("100us"), Ok(100_000));
        assert_eq!(parse_duration_ns("1.5ms"), Ok(1_500_000));
        assert_eq!(parse_duration_ns("2s"), Ok(2_000_000_000));
        assert_eq!(parse_duration_ns("3m"), Ok(180_000_000_000));
        assert_eq!(parse_duration_ns("250ns"), Ok(250));
        assert!(parse_duration_ns("10").unwrap_err().to_string().contains("needs a unit"));
        assert!(parse_duration_ns("10 parsecs").is_err());
        assert!(parse_duration_ns("ms").is_err());
    }

    #[test]
    fn factors() {
        assert_eq!(parse_factor("200%"), Ok(2.0));
        assert_eq!(parse_factor("0.5"), Ok(0.5));
        assert!(parse_factor("0").is_err());
        assert!(parse_factor("-1").is_err());
        assert!(parse_factor("x%").is_err());
    }
}
