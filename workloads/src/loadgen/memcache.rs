//! The memcache text-protocol [`Protocol`] of `diorama-loadgen`, in the style of
//! memtier_benchmark: each request is a `get` or a `set` of a key drawn from a key space,
//! with a GET:SET ratio and a fixed value size; a connection carries K requests and is
//! then closed and reopened.
//!
//! # Design
//! [`Mix`] decides a request's operation and key from the run's seed and the request's
//! id alone (a hash, no shared random state), so open-loop and closed-loop sources, and
//! several workers, draw the same deterministic mix. The operation is the record's
//! `class` (`get`/`set`), so latency is reported per operation type. A reply's status
//! follows HTTP's meaning so the rest of the load generator counts it unchanged: 200 for
//! a hit or `STORED`, 404 for a miss, 500 for `ERROR`/`SERVER_ERROR` (an error).
//!
//! # Limitations
//! Keys are uniform over the key space (no Gaussian or sequential pattern); one request
//! per connection at a time (no pipelining).

use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::{ErrorKind, Protocol, Reply, Request};
use crate::memcache::{self, Kind, Outcome};

/// The operation and key of each request.
#[derive(Debug, Clone)]
pub struct Mix {
    /// GET:SET weights (default 1:1).
    pub gets: u32,
    pub sets: u32,
    /// Keys are `memtier-0` … `memtier-(key_space-1)`.
    pub key_space: u64,
    /// The value every `set` stores.
    pub value: Bytes,
    pub seed: u64,
}

/// Parses a `GET:SET` ratio such as `1:1` or `9:1`.
///
/// # Errors
/// Not two integers separated by `:`, or both zero.
pub fn parse_ratio(s: &str) -> Result<(u32, u32), String> {
    let (g, st) = s.split_once(':').ok_or_else(|| format!("parse ratio {s:?}: expected GET:SET such as 1:1"))?;
    let g: u32 = g.trim().parse().map_err(|_| format!("parse ratio {s:?}: {g:?} is not a whole number"))?;
    let st: u32 = st.trim().parse().map_err(|_| format!("parse ratio {s:?}: {st:?} is not a whole number"))?;
    if g == 0 && st == 0 {
        return Err(format!("parse ratio {s:?}: both weights are zero"));
    }
    Ok((g, st))
}

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Mix {
    /// Request `id`'s method (`get`/`set`), key and body.
    #[must_use]
    pub fn request(&self, id: u64, authority: &str) -> Request {
        let h = mix64(self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ id);
        let total = u64::from(self.gets) + u64::from(self.sets);
        let is_get = total > 0 && h % total < u64::from(self.gets);
        let key = format!("memtier-{}", mix64(h) % self.key_space.max(1));
        let (method, body) = if is_get { ("get", Bytes::new()) } else { ("set", self.value.clone()) };
        Request { method: method.into(), authority: authority.to_owned(), path: key, body }
    }
}

/// memcache client connections that reconnect after `requests_per_conn` requests.
#[derive(Debug, Clone)]
pub struct Memcache {
    /// K: requests per connection before it is closed (0: never).
    pub requests_per_conn: u32,
    pub mix: Arc<Mix>,
}

pub struct Conn {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    used: u32,
    broken: bool,
    local_port: Option<u16>,
}

impl Protocol for Memcache {
    type Conn = Conn;

    async fn connect(&self, authority: &str) -> Result<Conn, ErrorKind> {
        let stream = TcpStream::connect(authority).await.map_err(|_| ErrorKind::Connect)?;
        // Requests are small writes: without NODELAY, Nagle would hold one back an RTT.
        let _ = stream.set_nodelay(true);
        let local_port = stream.local_addr().ok().map(|a| a.port());
        let (r, w) = stream.into_split();
        Ok(Conn { reader: BufReader::new(r), writer: w, used: 0, broken: false, local_port })
    }

    async fn send(&self, conn: &mut Conn, req: &Request) -> Result<Reply, ErrorKind> {
        conn.used += 1;
        let (bytes, kind) = if req.method.eq_ignore_ascii_case("set") {
            (memcache::set_request(&req.path, &req.body), Kind::Storage)
        } else {
            (memcache::get_request(&req.path), Kind::Retrieval)
        };
        conn.broken = true;
        conn.writer.write_all(&bytes).await.map_err(|_| ErrorKind::Io)?;
        let resp = memcache::read_response(&mut conn.reader, kind).await.map_err(|_| ErrorKind::Io)?;
        conn.broken = false;
        let status = match resp.outcome {
            Outcome::Hit | Outcome::Stored | Outcome::Other => 200,
            Outcome::Miss => 404,
            Outcome::Error => 500,
        };
        Ok(Reply { status, bytes: resp.value_bytes, timing: None, received_ns: None })
    }

    fn reusable(&self, conn: &Conn) -> bool {
        !conn.broken && (self.requests_per_conn == 0 || conn.used < self.requests_per_conn)
    }

    fn local_port(&self, conn: &Conn) -> Option<u16> {
        conn.local_port
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mix(gets: u32, sets: u32) -> Mix {
        Mix { gets, sets, key_space: 100, value: Bytes::from_static(b"vvvv"), seed: 7 }
    }

    #[test]
    fn ratio_and_keys() {
        let m = mix(1, 1);
        let n = 10_000;
        let gets = (0..n).filter(|&i| m.request(i, "a:1").method == "get").count();
        assert!((4_800..5_200).contains(&gets), "{gets}");
        let m = mix(9, 1);
        let gets = (0..n).filter(|&i| m.request(i, "a:1").method == "get").count();
        assert!((8_800..9_200).contains(&gets), "{gets}");
        assert!((0..n).all(|i| m
            .request(i, "a")
            .path
            .strip_prefix("memtier-")
            .and_then(|k| k.parse::<u64>().ok())
            .is_some_and(|k| k < 100)));
        assert_eq!(m.request(5, "a").path, m.request(5, "a").path, "deterministic");
        let set = (0..n).map(|i| m.request(i, "a")).find(|r| r.method == "set").unwrap();
        assert_eq!(&set.body[..], b"vvvv");
        assert_eq!(parse_ratio("1:1"), Ok((1, 1)));
        assert!(parse_ratio("0:0").is_err());
        assert!(parse_ratio("1").is_err());
        assert!(parse_ratio("a:1").is_err());
    }

    /// Against a scripted server: K requests on one connection, then a new connection.
    #[tokio::test]
    async fn reconnects_after_k_requests() {
        use tokio::io::AsyncBufReadExt;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let accepted = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let acc = accepted.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                acc.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let (r, mut w) = s.into_split();
                    let mut r = BufReader::new(r);
                    while let Ok(Some(f)) = memcache::read_request(&mut r).await {
                        let out: &[u8] = if f.kind == Kind::Storage { b"STORED\r\n" } else { b"END\r\n" };
                        if w.write_all(out).await.is_err() {
                            return;
                        }
                    }
                    let _ = r.fill_buf().await;
                });
            }
        });
        let p = Memcache { requests_per_conn: 2, mix: Arc::new(mix(1, 1)) };
        let mut c = p.connect(&addr).await.unwrap();
        let set =
            Request { method: "set".into(), authority: addr.clone(), path: "k".into(), body: Bytes::from_static(b"x") };
        assert_eq!(p.send(&mut c, &set).await.unwrap().status, 200);
        assert!(p.reusable(&c));
        let get = Request { method: "get".into(), ..set };
        assert_eq!(p.send(&mut c, &get).await.unwrap().status, 404);
        assert!(!p.reusable(&c), "closed after K = 2 requests");
        assert!(p.local_port(&c).is_some_and(|port| port > 0));
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
