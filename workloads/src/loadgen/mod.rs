//! `diorama-loadgen`: a load generator free of coordinated omission.
//!
//! Every request has a scheduled start taken from the plan (a rate and an inter-arrival
//! pattern, a trace, or a closed client's think time); latency is measured from that
//! scheduled start (wrk2), and the dispatch delay (actual start − scheduled) is recorded
//! beside it. Modules:
//! - [`schedule`]: open-loop gaps (uniform, poisson, random, sinusoidal, burst);
//! - [`trace`], [`logs`]: traces (JSON, JSON Lines, CSV) and traces from request logs;
//! - [`http`]: the HTTP/1.1 [`Protocol`] and the trivial server (`serve`);
//! - [`memcache`]: the memcache text-protocol [`Protocol`] and its GET/SET mix;
//! - [`record`]: per-request records and the result files;
//! - [`open`], [`closed`]: the open-loop dispatcher and closed clients;
//! - [`distributed`]: controller and workers over TCP;
//! - [`s3`]: the S3 mode (object-write traces through `object_store`, changelog records,
//!   the IBM-COS-shaped generator);
//! - [`cli`]: the command line (the binary's edge).

pub mod cli;
pub mod closed;
pub mod distributed;
#[cfg(test)]
mod fuzz;
pub mod http;
pub mod logs;
pub mod memcache;
pub mod open;
pub mod record;
pub mod s3;
pub mod schedule;
pub mod trace;
pub mod units;

use std::future::Future;

use bytes::Bytes;

/// One request as a protocol sends it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `POST`, …
    pub method: String,
    /// `host:port` of the target.
    pub authority: String,
    /// Path and query, starting with `/`.
    pub path: String,
    pub body: Bytes,
}

/// What came back.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    pub status: u16,
    /// Body bytes received.
    pub bytes: u64,
    /// The `Diorama-Timing` header (per-tier µs), if any.
    pub timing: Option<String>,
    /// The `Diorama-Received` header of `diorama-loadgen serve`: when the server got the
    /// request, in its (virtual) unix ns; used by calibration.
    pub received_ns: Option<i64>,
}

/// Why a request got no usable reply; written as the `error` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// No reply within `--timeout`.
    Timeout,
    /// The connection could not be made.
    Connect,
    /// The connection failed while sending or receiving.
    Io,
    /// Still in flight when the load generator stopped (SIGTERM).
    Cancelled,
    /// A reply with a 5xx status.
    #[serde(rename = "http_5xx")]
    Http5xx,
    /// An S3 store refused or failed the operation after the client's retries (S3 mode;
    /// `s3_ops.csv` has the store's message).
    Store,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connect => "connect",
            ErrorKind::Io => "io",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Http5xx => "http_5xx",
            ErrorKind::Store => "store",
        }
    }
}

/// A request/response protocol. HTTP/1.1 is the one built; others fit behind this trait.
///
/// A connection carries one request at a time; the caller pools connections.
pub trait Protocol: Send + Sync + 'static {
    type Conn: Send + 'static;
    /// Opens a connection to `authority` (`host:port`).
    fn connect(&self, authority: &str) -> impl Future<Output = Result<Self::Conn, ErrorKind>> + Send;
    /// Sends one request on `conn` and reads the whole reply.
    fn send(&self, conn: &mut Self::Conn, req: &Request) -> impl Future<Output = Result<Reply, ErrorKind>> + Send;
    /// Whether `conn` can carry another request.
    fn reusable(&self, conn: &Self::Conn) -> bool;
    /// The local port of `conn`'s socket, recorded with each request it carries
    /// (`requests.csv` `local_port`); `None` where the protocol does not keep it.
    fn local_port(&self, _conn: &Self::Conn) -> Option<u16> {
        None
    }
}
