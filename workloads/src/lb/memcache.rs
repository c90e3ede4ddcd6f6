//! The memcache side of `diorama-lb` (`--protocol memcache`): a request/response proxy
//! for the memcached text protocol, so the L7 policies (peak-EWMA above all) balance
//! memcached backends with full information: the proxy sees every response.
//!
//! # Design
//! Each client connection is served by one task: it frames one request
//! ([`crate::memcache::read_request`]), asks the balancer for a backend, forwards the raw
//! bytes over a pooled backend connection, frames the response, relays it, and reports
//! the latency and outcome to the balancer. Requests of one client connection are
//! therefore balanced one by one (unlike an L4 balancer, which pins the connection).
//!
//! A backend that fails (connect, transport, timeout, framing) answers the client with
//! `SERVER_ERROR` and counts as a failure for passive health checking; `ERROR` and
//! `SERVER_ERROR` replies of memcached itself count as failures too.
//!
//! # Limitations
//! `noreply` and multi-key `get` are forwarded to a single backend (no key-based
//! fan-out: the backends are replicas for the experiments, not shards).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

use super::balancer::Balancer;
use crate::memcache::{self, Kind, Outcome, RequestFrame};
use crate::runtime::now_unix_ns;

struct BackendConn {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

/// The memcache proxy's shared state.
pub struct MemcacheProxy {
    pub balancer: Mutex<Balancer>,
    pub timeout: Duration,
    pool: Mutex<HashMap<String, Vec<BackendConn>>>,
}

impl MemcacheProxy {
    #[must_use]
    pub fn new(balancer: Balancer, timeout: Duration) -> Self {
        MemcacheProxy { balancer: Mutex::new(balancer), timeout, pool: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Balancer> {
        self.balancer.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Accepts clients until `shutdown` resolves.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = &mut shutdown => return,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let me = self.clone();
                    tokio::spawn(async move {
                        if let Err(err) = me.client(stream).await {
                            tracing::debug!(%err, %peer, "client connection ended with an error");
                        }
                    });
                }
                Err(err) => {
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    async fn client(self: Arc<Self>, stream: TcpStream) -> Result<(), memcache::CodecError> {
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::new(r);
        loop {
            let req = match memcache::read_request(&mut r).await {
                Ok(Some(req)) => req,
                Ok(None) => return Ok(()),
                Err(err @ (memcache::CodecError::NoReply | memcache::CodecError::Malformed { .. })) => {
                    w.write_all(format!("CLIENT_ERROR {err}\r\n").as_bytes()).await?;
                    return Err(err);
                }
                Err(err) => return Err(err),
            };
            if req.kind == Kind::Quit {
                return Ok(());
            }
            let reply = self.forward(&req).await;
            w.write_all(&reply).await?;
        }
    }

    /// Sends one request to the backend the policy picks; returns the bytes for the client.
    async fn forward(&self, req: &RequestFrame) -> Vec<u8> {
        let Some((i, addr)) = self.lock().begin(now_unix_ns()) else {
            return b"SERVER_ERROR no backends\r\n".to_vec();
        };
        let t0 = Instant::now();
        let result = tokio::time::timeout(self.timeout, self.exchange(&addr, req)).await;
        let latency_ns = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let (bytes, ok) = match result {
            Ok(Ok(resp)) => {
                let ok = resp.outcome != Outcome::Error;
                (resp.bytes, ok)
            }
            Ok(Err(msg)) => (format!("SERVER_ERROR backend {addr}: {msg}\r\n").into_bytes(), false),
            Err(_) => {
                (format!("SERVER_ERROR backend {addr}: no answer within {:?}\r\n", self.timeout).into_bytes(), false)
            }
        };
        self.lock().end(i, now_unix_ns(), latency_ns, ok);
        bytes
    }

    async fn exchange(&self, addr: &str, req: &RequestFrame) -> Result<memcache::ResponseFrame, String> {
        let pooled = self.pool.lock().ok().and_then(|mut p| p.get_mut(addr).and_then(Vec::pop));
        let mut conn = match pooled {
            Some(c) => c,
            None => {
                let s = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
                let _ = s.set_nodelay(true);
                let (r, w) = s.into_split();
                BackendConn { reader: BufReader::new(r), writer: w }
            }
        };
        conn.writer.write_all(&req.bytes).await.map_err(|e| format!("send: {e}"))?;
        let resp = memcache::read_response(&mut conn.reader, req.kind).await.map_err(|e| format!("receive: {e}"))?;
        // Only a connection whose exchange completed is clean enough to reuse.
        if let Ok(mut p) = self.pool.lock() {
            p.entry(addr.to_owned()).or_default().push(conn);
        }
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::health::HealthConfig;
    use crate::lb::policy::{AnyPolicy, PolicyKind};
    use tokio::io::AsyncBufReadExt;

    /// A scripted memcache backend that stores nothing and answers `tag` in values.
    async fn backend(tag: &'static str) -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (r, mut w) = s.into_split();
                    let mut r = BufReader::new(r);
                    while let Ok(Some(f)) = memcache::read_request(&mut r).await {
                        let out = match f.kind {
                            Kind::Storage => "STORED\r\n".to_owned(),
                            _ => format!("VALUE k 0 {}\r\n{tag}\r\nEND\r\n", tag.len()),
                        };
                        if w.write_all(out.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn proxies_requests_one_by_one_over_backends() {
        let a = backend("aa").await;
        let b = backend("bb").await;
        let health = HealthConfig { failures: 0, backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(1) };
        let balancer = Balancer::new(vec![a, b], AnyPolicy::new(PolicyKind::RoundRobin, 2, 1, 1e10), health);
        let proxy = Arc::new(MemcacheProxy::new(balancer, Duration::from_secs(5)));
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front = l.local_addr().unwrap();
        tokio::spawn(proxy.clone().serve(l, std::future::pending()));
        let s = TcpStream::connect(front).await.unwrap();
        let (r, mut w) = s.into_split();
        let mut r = BufReader::new(r);
        let mut seen = Vec::new();
        for _ in 0..4 {
            w.write_all(b"get k\r\n").await.unwrap();
            let resp = memcache::read_response(&mut r, Kind::Retrieval).await.unwrap();
            seen.push(String::from_utf8_lossy(&resp.bytes).contains("aa"));
        }
        assert_eq!(seen, [true, false, true, false], "round-robin per request, not per connection");
        w.write_all(b"set k 0 0 1\r\nx\r\n").await.unwrap();
        let resp = memcache::read_response(&mut r, Kind::Storage).await.unwrap();
        assert_eq!(resp.outcome, Outcome::Stored);
        w.write_all(b"set k 0 0 1 noreply\r\nx\r\n").await.unwrap();
        let mut line = String::new();
        r.read_line(&mut line).await.unwrap();
        assert!(line.starts_with("CLIENT_ERROR"), "{line}");
        let rows = proxy.lock().take_rows(now_unix_ns());
        assert_eq!(rows.iter().map(|r| r.requests).sum::<u64>(), 5);
    }

    #[tokio::test]
    async fn a_dead_backend_answers_server_error() {
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let health = HealthConfig { failures: 0, backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(1) };
        let balancer = Balancer::new(vec![dead], AnyPolicy::new(PolicyKind::P2c, 1, 1, 1e10), health);
        let proxy = Arc::new(MemcacheProxy::new(balancer, Duration::from_secs(5)));
        let out = proxy
            .forward(&RequestFrame { bytes: b"get k\r\n".to_vec(), kind: Kind::Retrieval, command: "get".into() })
            .await;
        assert!(String::from_utf8_lossy(&out).starts_with("SERVER_ERROR backend"), "{}", String::from_utf8_lossy(&out));
        assert_eq!(proxy.lock().take_rows(now_unix_ns())[0].errors, 1);
    }
}
