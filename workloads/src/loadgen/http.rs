//! HTTP/1.1 with keep-alive on hyper: the client [`Protocol`] and the trivial server of
//! `diorama-loadgen serve`.
//!
//! # Design
//! The client drives hyper's low-level connection API (`client::conn::http1`), one
//! `SendRequest` per TCP connection, pooled by the caller: no hidden pool, no extra task hop
//! per request, so a request's dispatch instant is when it is handed to its connection.
//!
//! # Limitations
//! `http://` only (no TLS); no pipelining (one request per connection at a time, like wrk).

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::{ErrorKind, Protocol, Reply, Request};
use crate::runtime::now_unix_ns;

/// The header in which a server reports per-tier time (`fs=1200;as=800;db=150`, µs).
pub const TIMING_HEADER: &str = "diorama-timing";
/// The header in which `serve` reports when it received the request (unix ns of its clock).
pub const RECEIVED_HEADER: &str = "diorama-received";

/// A target URL split into its parts: `http://host:port/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub authority: String,
    pub path: String,
}

impl Target {
    /// Parses `http://host[:port][/path]` (port 80 by default).
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .trim()
            .strip_prefix("http://")
            .ok_or_else(|| format!("parse target {url:?}: only http:// URLs are supported"))?;
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if host.is_empty() {
            return Err(format!("parse target {url:?}: no host"));
        }
        let authority = if host.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
            host.to_owned()
        } else {
            format!("{host}:80")
        };
        Ok(Target { authority, path: path.to_owned() })
    }

    /// The target of a trace endpoint: a whole URL, or a path on this target.
    pub fn resolve(&self, endpoint: &str) -> Result<Target, String> {
        if endpoint.starts_with("http://") {
            Target::parse(endpoint)
        } else {
            Ok(Target { authority: self.authority.clone(), path: endpoint.to_owned() })
        }
    }
}

/// HTTP/1.1 client connections.
#[derive(Debug, Clone, Default)]
pub struct Http;

impl Protocol for Http {
    type Conn = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

    async fn connect(&self, authority: &str) -> Result<Self::Conn, ErrorKind> {
        let stream = tokio::net::TcpStream::connect(authority).await.map_err(|_| ErrorKind::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|_| ErrorKind::Connect)?;
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(%err, "connection closed");
            }
        });
        Ok(sender)
    }

    async fn send(&self, conn: &mut Self::Conn, req: &Request) -> Result<Reply, ErrorKind> {
        conn.ready().await.map_err(|_| ErrorKind::Io)?;
        let request = hyper::Request::builder()
            .method(req.method.as_str())
            .uri(req.path.as_str())
            .header(hyper::header::HOST, req.authority.as_str())
            .body(Full::new(req.body.clone()))
            .map_err(|_| ErrorKind::Io)?;
        let response = conn.send_request(request).await.map_err(|_| ErrorKind::Io)?;
        let status = response.status().as_u16();
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let timing = header(TIMING_HEADER);
        let received_ns = header(RECEIVED_HEADER).and_then(|v| v.parse().ok());
        let mut body = response.into_body();
        let mut bytes = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| ErrorKind::Io)?;
            if let Some(data) = frame.data_ref() {
                bytes += data.len() as u64;
            }
        }
        Ok(Reply { status, bytes, timing, received_ns })
    }

    fn reusable(&self, conn: &Self::Conn) -> bool {
        !conn.is_closed()
    }
}

/// Runs the trivial server: every request (any method, any path) is read in full and
/// answered `200` with `body` and a `Diorama-Received` header, until `stop` resolves.
pub async fn serve(addr: SocketAddr, body: Bytes, stop: impl std::future::Future<Output = ()>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving");
    tokio::pin!(stop);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut stop => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let body = body.clone();
                async move {
                    let received = now_unix_ns();
                    // Read the request body so that keep-alive continues after a POST.
                    let _ = req.into_body().collect().await;
                    let mut resp = hyper::Response::new(Full::new(body));
                    if let Ok(v) = hyper::header::HeaderValue::from_str(&received.to_string()) {
                        resp.headers_mut().insert(RECEIVED_HEADER, v);
                    }
                    Ok::<_, Infallible>(resp)
                }
            });
            if let Err(err) = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%err, "server connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            Target::parse("http://s:8080/a/b").unwrap(),
            Target { authority: "s:8080".into(), path: "/a/b".into() }
        );
        assert_eq!(Target::parse("http://s").unwrap(), Target { authority: "s:80".into(), path: "/".into() });
        assert!(Target::parse("https://s").is_err());
        let t = Target::parse("http://s:1").unwrap();
        assert_eq!(t.resolve("/x").unwrap().path, "/x");
        assert_eq!(t.resolve("http://o:2/y").unwrap().authority, "o:2");
    }

    #[tokio::test]
    async fn client_talks_to_the_server() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(addr, Bytes::from_static(b"hello"), async {
            let _ = rx.await;
        }));
        let http = Http;
        let mut conn = loop {
            match http.connect(&addr.to_string()).await {
                Ok(c) => break c,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        };
        for method in ["GET", "POST"] {
            let req = Request {
                method: method.into(),
                authority: addr.to_string(),
                path: "/p".into(),
                body: Bytes::from_static(b"data"),
            };
            let reply = http.send(&mut conn, &req).await.unwrap();
            assert_eq!((reply.status, reply.bytes), (200, 5));
            assert!(reply.received_ns.is_some());
            assert!(http.reusable(&conn));
        }
        let _ = tx.send(());
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn timing_header_is_kept() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 3\r\nDiorama-Timing: fs=1200;as=800;db=150\r\n\r\nbad").await.unwrap();
            let _ = s.read(&mut buf).await;
        });
        let http = Http;
        let mut conn = http.connect(&addr.to_string()).await.unwrap();
        let req = Request { method: "GET".into(), authority: addr.to_string(), path: "/".into(), body: Bytes::new() };
        let reply = http.send(&mut conn, &req).await.unwrap();
        assert_eq!((reply.status, reply.bytes, reply.timing.as_deref()), (503, 3, Some("fs=1200;as=800;db=150")));
    }
}
