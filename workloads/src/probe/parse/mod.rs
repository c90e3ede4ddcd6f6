//! Parsers of the real tools' output: `ping` (iputils), `traceroute` (the Linux one) and
//! `curl -w '%{json}'`. Each turns the raw text into figures; the raw text is kept beside
//! them in the result, so a parser's gap never loses data.

mod curl;
mod ping;
mod traceroute;

pub use curl::{parse_curl, HttpTiming};
pub use ping::{parse_ping, PingStats};
pub use traceroute::{parse_traceroute, Hop, Trace};

/// Output a parser could not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parse {tool} output: {reason}")]
pub struct ParseError {
    pub tool: &'static str,
    pub reason: String,
}
