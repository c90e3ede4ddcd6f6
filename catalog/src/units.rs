//! Quantities written the way people write them: `10Mbit`, `1Gbps`, `100us`, `1.5ms`,
//! `2s`, `512MiB`, `100KB`, `0.1%`.
//!
//! Rates: `bit`, `bps`, `bit/s` (and k/M/G/T prefixes, decimal) are **bits** per second;
//! `Bps`, `B/s` (with prefixes, `KiBps` binary) are **bytes** per second. Sizes: `B`,
//! `KB`/`MB`/`GB` (decimal) and `KiB`/`MiB`/`GiB` (binary). Durations: `ns`, `us`/`µs`,
//! `ms`, `s`, `m`/`min`, `h`. A bare number is refused for durations and rates (its unit
//! would be a guess) and means bytes for sizes.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Why a quantity did not parse; the message says what was expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct UnitError(pub String);

fn split_number(text: &str) -> Result<(f64, &str), UnitError> {
    let t = text.trim();
    let end = t
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || ((c == '-' || c == '+') && i == 0) || c == '_'))
        .map_or(t.len(), |(i, _)| i);
    let (num, unit) = t.split_at(end);
    let value: f64 =
        num.replace('_', "").parse().map_err(|_| UnitError(format!("{text:?} does not start with a number")))?;
    if !value.is_finite() {
        return Err(UnitError(format!("{text:?} is not a finite number")));
    }
    Ok((value, unit.trim()))
}

/// A duration with nanosecond resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub fn parse(text: &str) -> Result<Self, UnitError> {
        let (v, unit) = split_number(text)?;
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" | "sec" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "" => return Err(UnitError(format!("duration {text:?} needs a unit (ns, us, ms, s, m, h)"))),
            other => {
                return Err(UnitError(format!(
                    "unknown duration unit {other:?} in {text:?} (expected ns, us, ms, s, m, h)"
                )))
            }
        };
        if v < 0.0 {
            return Err(UnitError(format!("duration {text:?} is negative")));
        }
        // `from_secs_f64` panics on overflow (found by the fuzzer too); an absurd duration is an input error.
        std::time::Duration::try_from_secs_f64(v * scale)
            .map(Self)
            .map_err(|_| UnitError(format!("duration {text:?} is too large")))
    }
    pub fn as_nanos(&self) -> u64 {
        u64::try_from(self.0.as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Bytes(pub u64);

impl Bytes {
    pub fn parse(text: &str) -> Result<Self, UnitError> {
        let (v, unit) = split_number(text)?;
        let scale: f64 = match unit {
            "" | "B" => 1.0,
            "KB" | "kB" => 1e3,
            "MB" => 1e6,
            "GB" => 1e9,
            "TB" => 1e12,
            "KiB" => 1024.0,
            "MiB" => 1024.0 * 1024.0,
            "GiB" => 1024.0 * 1024.0 * 1024.0,
            "TiB" => 1024.0f64.powi(4),
            other => {
                return Err(UnitError(format!(
                    "unknown size unit {other:?} in {text:?} (expected B, KB, MB, GB, KiB, MiB, GiB)"
                )))
            }
        };
        if v < 0.0 {
            return Err(UnitError(format!("size {text:?} is negative")));
        }
        let bytes = (v * scale).round();
        // `as u64` would saturate: an absurd size must be refused, not silently capped.
        if bytes >= u64::MAX as f64 {
            return Err(UnitError(format!("size {text:?} is too large")));
        }
        Ok(Self(bytes as u64))
    }
}

/// A rate in bits per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Rate(pub u64);

impl Rate {
    pub fn parse(text: &str) -> Result<Self, UnitError> {
        let (v, unit) = split_number(text)?;
        if unit.is_empty() {
            return Err(UnitError(format!("rate {text:?} needs a unit (e.g. 10Mbit, 1Gbps, 100MBps)")));
        }
        let (prefix, base) = unit.split_at(unit.find(['b', 'B']).unwrap_or(unit.len()));
        let per_byte = match base {
            "bit" | "bps" | "bit/s" | "bits" | "bits/s" => 1.0,
            "Bps" | "B/s" => 8.0,
            _ => {
                return Err(UnitError(format!(
                    "unknown rate unit {unit:?} in {text:?} (bits: bit, bps, bit/s; bytes: Bps, B/s)"
                )))
            }
        };
        let mult = match prefix {
            "" => 1.0,
            "k" | "K" => 1e3,
            "M" => 1e6,
            "G" => 1e9,
            "T" => 1e12,
            "Ki" => 1024.0,
            "Mi" => 1024.0 * 1024.0,
            "Gi" => 1024.0f64.powi(3),
            other => return Err(UnitError(format!("unknown rate prefix {other:?} in {text:?}"))),
        };
        let bps = v * mult * per_byte;
        if bps <= 0.0 {
            return Err(UnitError(format!("rate {text:?} must be positive")));
        }
        Ok(Self(bps.round() as u64))
    }
}

/// A probability, written `0.1%` or as a fraction `0.001`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Percent(pub f64);

impl Percent {
    pub fn parse(text: &str) -> Result<Self, UnitError> {
        let (v, unit) = split_number(text)?;
        let fraction = match unit {
            "%" => v / 100.0,
            "" => v,
            other => {
                return Err(UnitError(format!(
                    "unknown unit {other:?} in {text:?} (expected a percentage like 0.1% or a fraction)"
                )))
            }
        };
        if !(0.0..=1.0).contains(&fraction) {
            return Err(UnitError(format!("{text:?} is not between 0% and 100%")));
        }
        Ok(Self(fraction))
    }
}

macro_rules! serde_quantity {
    ($ty:ident, $what:literal, $allow_number:expr, $pattern:literal) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str($what)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$ty, E> {
                        $ty::parse(v).map_err(|e| E::custom(e.0))
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<$ty, E> {
                        if $allow_number {
                            $ty::parse(&v.to_string()).map_err(|e| E::custom(e.0))
                        } else {
                            Err(E::custom(format!("{v} needs a unit: expected {}", $what)))
                        }
                    }
                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<$ty, E> {
                        if $allow_number {
                            $ty::parse(&v.to_string()).map_err(|e| E::custom(e.0))
                        } else {
                            Err(E::custom(format!("{v} needs a unit: expected {}", $what)))
                        }
                    }
                    fn visit_f64<E: de::Error>(self, v: f64) -> Result<$ty, E> {
                        if $allow_number {
                            $ty::parse(&v.to_string()).map_err(|e| E::custom(e.0))
                        } else {
                            Err(E::custom(format!("{v} needs a unit: expected {}", $what)))
                        }
                    }
                }
                d.deserialize_any(V)
            }
        }
        impl schemars::JsonSchema for $ty {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($ty).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                if $allow_number {
                    schemars::json_schema!({"description": $what, "anyOf": [{"type": "string", "pattern": $pattern}, {"type": "number", "minimum": 0}]})
                } else {
                    schemars::json_schema!({"description": $what, "type": "string", "pattern": $pattern})
                }
            }
        }
    };
}

serde_quantity!(
    Duration,
    "a duration such as 100us, 1.5ms, 2s",
    false,
    r"^[0-9][0-9_.]*\s*(ns|us|µs|ms|s|sec|m|min|h)$"
);
serde_quantity!(
    Bytes,
    "a size such as 512MiB, 100KB or a number of bytes",
    true,
    r"^[0-9][0-9_.]*\s*(B|KB|kB|MB|GB|TB|KiB|MiB|GiB|TiB)?$"
);
serde_quantity!(
    Rate,
    "a rate such as 10Mbit, 1Gbps (bits/s) or 100MBps (bytes/s)",
    false,
    r"^[0-9][0-9_.]*\s*(k|K|M|G|T|Ki|Mi|Gi)?(bit|bps|bit/s|bits|bits/s|Bps|B/s)$"
);
serde_quantity!(Percent, "a probability such as 0.1% or a fraction 0.001", true, r"^[0-9][0-9_.]*\s*%?$");

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ns", self.as_nanos()))
    }
}
impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}
impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}bit", self.0))
    }
}
impl Serialize for Percent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration as D;

    #[test]
    fn durations() {
        assert_eq!(Duration::parse("100us").unwrap().0, D::from_micros(100));
        assert_eq!(Duration::parse("1.5ms").unwrap().0, D::from_micros(1500));
        assert_eq!(Duration::parse("2s").unwrap().0, D::from_secs(2));
        assert_eq!(Duration::parse("3m").unwrap().0, D::from_secs(180));
        assert_eq!(Duration::parse("250ns").unwrap().0, D::from_nanos(250));
        assert_eq!(Duration::parse("1h").unwrap().0, D::from_secs(3600));
        assert!(Duration::parse("10").unwrap_err().0.contains("needs a unit"));
        assert!(Duration::parse("10 parsecs").unwrap_err().0.contains("unknown duration unit"));
        assert!(Duration::parse("-1s").is_err());
        assert!(Duration::parse("99999999999999999999999h").unwrap_err().0.contains("too large"));
        assert!(Duration::parse("fast").unwrap_err().0.contains("number"));
        // Found by fuzz_topology: more seconds than a std Duration holds panicked.
        assert!(Duration::parse("184467440737095516161s").unwrap_err().0.contains("too large"));
    }

    #[test]
    fn sizes() {
        assert_eq!(Bytes::parse("512MiB").unwrap().0, 512 << 20);
        assert_eq!(Bytes::parse("100KB").unwrap().0, 100_000);
        assert_eq!(Bytes::parse("1GiB").unwrap().0, 1 << 30);
        assert_eq!(Bytes::parse("4096").unwrap().0, 4096);
        assert_eq!(Bytes::parse("1.5KiB").unwrap().0, 1536);
        assert!(Bytes::parse("12 furlongs").is_err());
        assert!(Bytes::parse("100000000000000000000").unwrap_err().0.contains("too large"));
        assert!(Bytes::parse("20000000TiB").unwrap_err().0.contains("too large"));
    }

    #[test]
    fn rates_distinguish_bits_and_bytes() {
        assert_eq!(Rate::parse("10Mbit").unwrap().0, 10_000_000);
        assert_eq!(Rate::parse("1Gbps").unwrap().0, 1_000_000_000);
        assert_eq!(Rate::parse("100kbit/s").unwrap().0, 100_000);
        assert_eq!(Rate::parse("1MBps").unwrap().0, 8_000_000);
        assert_eq!(Rate::parse("1MB/s").unwrap().0, 8_000_000);
        assert!(Rate::parse("100").unwrap_err().0.contains("needs a unit"));
        assert!(Rate::parse("10Mfurlong").is_err());
        assert!(Rate::parse("0bit").is_err());
    }

    #[test]
    fn percentages() {
        assert!((Percent::parse("0.1%").unwrap().0 - 0.001).abs() < 1e-12);
        assert!((Percent::parse("0.05").unwrap().0 - 0.05).abs() < 1e-12);
        assert!(Percent::parse("150%").is_err());
    }

    #[test]
    fn serde_refuses_unitless_durations_with_a_clear_message() {
        let err = serde_yaml_ng::from_str::<Duration>("10").unwrap_err().to_string();
        assert!(err.contains("needs a unit"), "{err}");
        assert_eq!(serde_yaml_ng::from_str::<Bytes>("1024").unwrap().0, 1024);
        assert_eq!(serde_yaml_ng::from_str::<Rate>("1Gbit").unwrap().0, 1_000_000_000);
    }
}
