//! The memcached text protocol, as far as a load generator and a request/response proxy
//! need it: framing one request and one response on a byte stream.
//!
//! A request is a command line (`get k1 k2`, `set k 0 0 5`, `delete k`, …) plus, for the
//! storage commands, a data block of the declared length and `\r\n`. A response is one
//! line, except for retrievals (`VALUE` blocks until `END`) and `stats` (lines until
//! `END`). Framing keeps the raw bytes, so a proxy forwards exactly what it read.
//!
//! # Limitations
//! `noreply` storage commands are refused (a proxy could not tell when they are done);
//! the meta protocol (`mg`, `ms`, …) and binary protocol are not spoken. Lines are capped
//! at 8 KiB and values at memcached's default 1 MiB item size.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// Longest command or response line accepted.
pub const MAX_LINE: usize = 8 * 1024;
/// Largest data block accepted (memcached's default `-I`).
pub const MAX_VALUE: usize = 1024 * 1024;

/// Why a request or response could not be framed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    #[error("read from the connection")]
    Io(#[from] std::io::Error),
    #[error("the peer closed the connection mid-message")]
    Truncated,
    #[error("a line longer than {MAX_LINE} bytes")]
    LineTooLong,
    #[error("malformed {what}: {line:?}")]
    Malformed { what: &'static str, line: String },
    #[error("a data block of {len} bytes, more than {MAX_VALUE}")]
    ValueTooLarge { len: usize },
    #[error("`noreply` is not supported through the proxy")]
    NoReply,
}

/// How a command's response is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `get`/`gets`/`gat`/`gats`: `VALUE` blocks then `END`.
    Retrieval,
    /// `stats`: lines then `END`.
    Stats,
    /// `set`/`add`/`replace`/`append`/`prepend`/`cas`: one line.
    Storage,
    /// Everything else answers one line (`delete`, `incr`, `touch`, `version`, …).
    Line,
    /// `quit`: no response; the connection ends.
    Quit,
}

/// One framed request: its raw bytes, its kind and its command word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFrame {
    pub bytes: Vec<u8>,
    pub kind: Kind,
    pub command: String,
}

/// What a response said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A retrieval that returned at least one value.
    Hit,
    /// A retrieval that returned none.
    Miss,
    Stored,
    /// `NOT_STORED`, `EXISTS`, `NOT_FOUND`, `DELETED`, `TOUCHED`, a number, a version …
    Other,
    /// `ERROR`, `CLIENT_ERROR …`, `SERVER_ERROR …`.
    Error,
}

/// A framed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseFrame {
    pub bytes: Vec<u8>,
    pub outcome: Outcome,
    /// Bytes of values returned (retrievals).
    pub value_bytes: u64,
}

/// Reads one `\r\n`-terminated line (kept with its terminator) onto `out`; `Ok(false)` on
/// a clean end of stream before any byte.
async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, out: &mut Vec<u8>) -> Result<bool, CodecError> {
    let start = out.len();
    let mut limited = (&mut *r).take(MAX_LINE as u64 + 1);
    let n = limited.read_until(b'\n', out).await?;
    if n == 0 {
        return Ok(false);
    }
    if out.len() - start > MAX_LINE {
        return Err(CodecError::LineTooLong);
    }
    if !out.ends_with(b"\n") {
        return Err(CodecError::Truncated);
    }
    Ok(true)
}

fn text(line: &[u8]) -> String {
    String::from_utf8_lossy(line).trim_end().to_owned()
}

/// Reads `len` bytes of data plus `\r\n` onto `out`.
async fn read_block<R: AsyncBufRead + Unpin>(r: &mut R, len: usize, out: &mut Vec<u8>) -> Result<(), CodecError> {
    if len > MAX_VALUE {
        return Err(CodecError::ValueTooLarge { len });
    }
    let start = out.len();
    out.resize(start + len + 2, 0);
    r.read_exact(&mut out[start..]).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => CodecError::Truncated,
        _ => CodecError::Io(e),
    })?;
    if !out.ends_with(b"\r\n") {
        return Err(CodecError::Malformed { what: "data block terminator", line: text(&out[out.len() - 2..]) });
    }
    Ok(())
}

/// Reads one request; `Ok(None)` when the client closed the connection between requests.
///
/// # Errors
/// A transport error, a truncated or malformed request, or `noreply`.
pub async fn read_request<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Option<RequestFrame>, CodecError> {
    let mut bytes = Vec::new();
    if !read_line(r, &mut bytes).await? {
        return Ok(None);
    }
    let line = text(&bytes);
    let words: Vec<&str> = line.split_ascii_whitespace().collect();
    let Some(&command) = words.first() else {
        return Err(CodecError::Malformed { what: "request (empty line)", line });
    };
    let command = command.to_ascii_lowercase();
    let kind = match command.as_str() {
        "get" | "gets" | "gat" | "gats" => Kind::Retrieval,
        "stats" => Kind::Stats,
        "set" | "add" | "replace" | "append" | "prepend" | "cas" => Kind::Storage,
        "quit" => Kind::Quit,
        _ => Kind::Line,
    };
    if words.last().is_some_and(|w| *w == "noreply") {
        return Err(CodecError::NoReply);
    }
    if kind == Kind::Storage {
        let len = words.get(4).and_then(|w| w.parse::<usize>().ok());
        let Some(len) = len else {
            return Err(CodecError::Malformed { what: "storage command", line });
        };
        read_block(r, len, &mut bytes).await?;
    }
    Ok(Some(RequestFrame { bytes, kind, command }))
}

fn is_error(line: &str) -> bool {
    line == "ERROR" || line.starts_with("CLIENT_ERROR") || line.starts_with("SERVER_ERROR")
}

/// Reads the response to a request of `kind`.
///
/// # Errors
/// A transport error, or a truncated or malformed response.
pub async fn read_response<R: AsyncBufRead + Unpin>(r: &mut R, kind: Kind) -> Result<ResponseFrame, CodecError> {
    let mut bytes = Vec::new();
    let mut values = 0u32;
    let mut value_bytes = 0u64;
    loop {
        let start = bytes.len();
        if !read_line(r, &mut bytes).await? {
            return Err(CodecError::Truncated);
        }
        let line = text(&bytes[start..]);
        let outcome = match kind {
            Kind::Quit => Some(Outcome::Other),
            _ if is_error(&line) => Some(Outcome::Error),
            Kind::Retrieval => {
                if line == "END" {
                    Some(if values > 0 { Outcome::Hit } else { Outcome::Miss })
                } else if let Some(rest) = line.strip_prefix("VALUE ") {
                    let len = rest.split_ascii_whitespace().nth(2).and_then(|w| w.parse::<usize>().ok());
                    let Some(len) = len else {
                        return Err(CodecError::Malformed { what: "VALUE line", line });
                    };
                    read_block(r, len, &mut bytes).await?;
                    values += 1;
                    value_bytes += len as u64;
                    None
                } else {
                    return Err(CodecError::Malformed { what: "retrieval response", line });
                }
            }
            Kind::Stats => (line == "END").then_some(Outcome::Other),
            Kind::Storage => Some(if line == "STORED" { Outcome::Stored } else { Outcome::Other }),
            Kind::Line => Some(Outcome::Other),
        };
        if let Some(outcome) = outcome {
            return Ok(ResponseFrame { bytes, outcome, value_bytes });
        }
    }
}

/// The bytes of `get <key>`.
#[must_use]
pub fn get_request(key: &str) -> Vec<u8> {
    format!("get {key}\r\n").into_bytes()
}

/// The bytes of `set <key> 0 0 <len>` with `value`.
#[must_use]
pub fn set_request(key: &str, value: &[u8]) -> Vec<u8> {
    let mut b = format!("set {key} 0 0 {}\r\n", value.len()).into_bytes();
    b.extend_from_slice(value);
    b.extend_from_slice(b"\r\n");
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn req(input: &[u8]) -> Result<Option<RequestFrame>, CodecError> {
        let mut r = tokio::io::BufReader::new(input);
        read_request(&mut r).await
    }

    async fn resp(input: &[u8], kind: Kind) -> Result<ResponseFrame, CodecError> {
        let mut r = tokio::io::BufReader::new(input);
        read_response(&mut r, kind).await
    }

    #[tokio::test]
    async fn frames_requests() {
        let f = req(b"set k 0 0 5\r\nhello\r\nget k\r\n").await.unwrap().unwrap();
        assert_eq!((f.kind, f.command.as_str()), (Kind::Storage, "set"));
        assert_eq!(f.bytes, b"set k 0 0 5\r\nhello\r\n");
        let f = req(b"GET a b\r\n").await.unwrap().unwrap();
        assert_eq!(f.kind, Kind::Retrieval);
        assert!(req(b"").await.unwrap().is_none());
        assert!(matches!(req(b"set k 0 0 5\r\nhel").await, Err(CodecError::Truncated)));
        assert!(matches!(req(b"set k 0 0 x\r\n").await, Err(CodecError::Malformed { .. })));
        assert!(matches!(req(b"set k 0 0 1 noreply\r\nx\r\n").await, Err(CodecError::NoReply)));
        assert!(matches!(req(b"set k 0 0 2\r\nabcd").await, Err(CodecError::Malformed { .. })));
        assert!(matches!(req(&[b'a'; MAX_LINE + 10]).await, Err(CodecError::LineTooLong)));
        assert!(matches!(req(b"set k 0 0 99999999\r\n").await, Err(CodecError::ValueTooLarge { .. })));
        assert_eq!(set_request("k", b"hello"), b"set k 0 0 5\r\nhello\r\n");
        assert_eq!(get_request("k"), b"get k\r\n");
    }

    #[tokio::test]
    async fn frames_responses() {
        let r = resp(b"VALUE k 0 5\r\nhello\r\nVALUE j 0 2\r\nab\r\nEND\r\nSTORED\r\n", Kind::Retrieval).await.unwrap();
        assert_eq!((r.outcome, r.value_bytes), (Outcome::Hit, 7));
        assert!(r.bytes.ends_with(b"END\r\n"));
        assert_eq!(resp(b"END\r\n", Kind::Retrieval).await.unwrap().outcome, Outcome::Miss);
        assert_eq!(resp(b"STORED\r\n", Kind::Storage).await.unwrap().outcome, Outcome::Stored);
        assert_eq!(resp(b"NOT_STORED\r\n", Kind::Storage).await.unwrap().outcome, Outcome::Other);
        assert_eq!(resp(b"SERVER_ERROR out of memory\r\n", Kind::Storage).await.unwrap().outcome, Outcome::Error);
        assert_eq!(resp(b"STAT pid 1\r\nSTAT x 2\r\nEND\r\n", Kind::Stats).await.unwrap().outcome, Outcome::Other);
        assert!(matches!(resp(b"VALUE k 0 5\r\nhel", Kind::Retrieval).await, Err(CodecError::Truncated)));
        assert!(matches!(resp(b"BOGUS\r\n", Kind::Retrieval).await, Err(CodecError::Malformed { .. })));
        assert!(matches!(resp(b"", Kind::Line).await, Err(CodecError::Truncated)));
    }
}
