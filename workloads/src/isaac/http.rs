//! HTTP/1.1 plumbing shared by the tiers and the load balancer: a keep-alive server loop
//! and a pooled keep-alive client, both on hyper.
//!
//! # Design
//! Bodies are small (kilobytes), so they are collected whole (`Full<Bytes>`), which keeps
//! the handlers plain async functions. The client pools idle connections per host and
//! opens a new one when a pooled one has died, so a restarted backend is reached again
//! without any reconnect logic in the tiers. Timeouts are the caller's (tokio's timer,
//! dilated by the clock shim like every other clock read of the process).

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;

/// The body type of everything diorama's HTTP workloads send.
pub type Body = Full<Bytes>;
/// A pooled keep-alive HTTP/1.1 client.
pub type Client = hyper_util::client::legacy::Client<HttpConnector, Body>;

/// A client that keeps idle connections for 30 s (virtual) and disables Nagle.
pub fn client() -> Client {
    let mut conn = HttpConnector::new();
    conn.set_nodelay(true);
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(256)
        .build(conn)
}

/// Serves `handler` on every connection `listener` accepts until `shutdown` resolves.
pub async fn serve<H, F>(listener: TcpListener, handler: H, shutdown: impl Future<Output = ()>)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(err) => {
                // Out of descriptors or a reset before accept: back off briefly, keep serving.
                tracing::warn!(%err, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let fut = handler(req);
                async move { Ok::<_, Infallible>(fut.await) }
            });
            if let Err(err) = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%err, %peer, "connection ended with an error");
            }
        });
    }
}

/// A response with `status`, `body` and optional extra headers.
pub fn respond(status: StatusCode, body: impl Into<Bytes>, headers: &[(&str, String)]) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    for (name, value) in headers {
        if let (Ok(n), Ok(v)) =
            (hyper::header::HeaderName::from_bytes(name.as_bytes()), hyper::header::HeaderValue::from_str(value))
        {
            resp.headers_mut().insert(n, v);
        }
    }
    resp
}

/// An error and its sources, `outer: inner: …`, for logs and error bodies.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

/// The value of query parameter `name` in `query` (`a=1&b=2`), if present.
pub fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params() {
        assert_eq!(query_param(Some("reads=10&writes=2"), "writes"), Some("2"));
        assert_eq!(query_param(Some("reads=10"), "size"), None);
        assert_eq!(query_param(None, "size"), None);
    }

    #[tokio::test]
    async fn serves_keep_alive_and_stops() {
        use http_body_util::BodyExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            |req: Request<Incoming>| async move {
                respond(StatusCode::OK, req.uri().path().to_owned(), &[("x-a", "1".into())])
            },
            async {
                let _ = rx.await;
            },
        ));
        let c = client();
        for path in ["/a", "/b"] {
            let resp = c.get(format!("http://{addr}{path}").parse().unwrap()).await.unwrap();
            assert_eq!(resp.headers()["x-a"], "1");
            assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), path.as_bytes());
        }
        tx.send(()).unwrap();
        server.await.unwrap();
    }
}
