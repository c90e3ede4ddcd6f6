//! The `Diorama-Timing` response header: time spent in each tier, in µs of virtual time.
//!
//! Format: `fs=1200;as=800;db=150` — `tier=µs` pairs separated by `;`, in tier order,
//! absent tiers left out. Every value is *inclusive* and measured inside the tier from
//! request in to response out (see docs/workloads.md): `fs` is the front end's whole
//! handling time, `as` the handling time of the app server on the critical path (the one
//! that answered last), `db` the database time that app server spent, summed over its
//! operations. Differences (`fs − as`, `as − db`) are the tier's own work plus the network.

use std::fmt;

/// Name of the response header (HTTP header names are case-insensitive).
pub const HEADER: &str = "diorama-timing";

/// Per-tier time of one request, in µs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timing {
    pub fs_us: Option<u64>,
    pub as_us: Option<u64>,
    pub db_us: Option<u64>,
}

/// A header value that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("parse timing header `{value}`: {reason}")]
pub struct TimingError {
    pub value: String,
    pub reason: String,
}

impl Timing {
    /// Parses a header value; unknown tiers are ignored so other tiers can be added.
    pub fn parse(value: &str) -> Result<Self, TimingError> {
        let err = |reason: String| TimingError { value: value.to_owned(), reason };
        let mut t = Timing::default();
        for pair in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| err(format!("`{pair}` is not tier=µs")))?;
            let us: u64 = v.trim().parse().map_err(|_| err(format!("`{v}` is not a whole number of µs")))?;
            match k.trim() {
                "fs" => t.fs_us = Some(us),
                "as" => t.as_us = Some(us),
                "db" => t.db_us = Some(us),
                _ => {}
            }
        }
        Ok(t)
    }
}

impl fmt::Display for Timing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        for (name, v) in [("fs", self.fs_us), ("as", self.as_us), ("db", self.db_us)] {
            if let Some(v) = v {
                write!(f, "{sep}{name}={v}")?;
                sep = ";";
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_in_tier_order() {
        let t = Timing { fs_us: Some(1200), as_us: Some(800), db_us: Some(150) };
        assert_eq!(t.to_string(), "fs=1200;as=800;db=150");
        assert_eq!(Timing { db_us: Some(7), ..Default::default() }.to_string(), "db=7");
        assert_eq!(Timing::default().to_string(), "");
    }

    #[test]
    fn round_trips_and_rejects_garbage() {
        let t = Timing::parse("fs=1200;as=800;db=150").unwrap();
        assert_eq!(Timing::parse(&t.to_string()).unwrap(), t);
        assert_eq!(Timing::parse("as=3;lb=9").unwrap(), Timing { as_us: Some(3), ..Default::default() });
        assert!(Timing::parse("fs=12x").is_err());
        assert!(Timing::parse("fs").is_err());
    }
}
