//! The HTTP side of the balancer: accepts client requests, forwards each to the backend the
//! policy picks over a pooled keep-alive connection, and relays the answer.
//!
//! The answer carries `Diorama-Backend: <host:port>`; the backend's own headers (such as
//! `Diorama-Timing`) pass through. No backend: 503; transport failure: 502; no answer
//! within the timeout: 504.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::balancer::Balancer;
use crate::isaac::http::{error_chain, respond, Body, Client};
use crate::runtime::now_unix_ns;

/// Hop-by-hop headers a proxy must not forward (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 7] =
    ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"];

/// The balancer's shared state.
#[derive(Debug)]
pub struct Proxy {
    pub balancer: Mutex<Balancer>,
    pub client: Client,
    pub timeout: Duration,
}

impl Proxy {
    fn lock(&self) -> std::sync::MutexGuard<'_, Balancer> {
        self.balancer.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forwards one request.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let Some((i, addr)) = self.lock().begin(now_unix_ns()) else {
            return respond(StatusCode::SERVICE_UNAVAILABLE, "no backends", &[]);
        };
        let t0 = Instant::now();
        let result = tokio::time::timeout(self.timeout, self.forward(&addr, req)).await;
        let latency_ns = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let (resp, ok) = match result {
            Ok(Ok(resp)) => {
                let ok = !resp.status().is_server_error();
                (resp, ok)
            }
            Ok(Err(msg)) => (respond(StatusCode::BAD_GATEWAY, format!("backend {addr}: {msg}"), &[]), false),
            Err(_) => (
                respond(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!("backend {addr}: no answer within {:?}", self.timeout),
                    &[],
                ),
                false,
            ),
        };
        self.lock().end(i, now_unix_ns(), latency_ns, ok);
        let mut resp = resp;
        if let Ok(v) = hyper::header::HeaderValue::from_str(&addr) {
            resp.headers_mut().insert("diorama-backend", v);
        }
        resp
    }

    async fn forward(&self, addr: &str, req: Request<Incoming>) -> Result<Response<Body>, String> {
        let (parts, body) = req.into_parts();
        let body = body.collect().await.map_err(|e| format!("read request body: {e}"))?.to_bytes();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut out = Request::builder().method(parts.method).uri(format!("http://{addr}{path}"));
        for (name, value) in &parts.headers {
            if name != hyper::header::HOST && !HOP_BY_HOP.contains(&name.as_str()) {
                out = out.header(name, value);
            }
        }
        let out = out.body(Full::new(body)).map_err(|e| e.to_string())?;
        let resp = self.client.request(out).await.map_err(|e| error_chain(&e))?;
        let (mut parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| format!("read response body: {e}"))?.to_bytes();
        for h in HOP_BY_HOP {
            parts.headers.remove(h);
        }
        parts.headers.remove(hyper::header::CONTENT_LENGTH);
        Ok(Response::from_parts(parts, Full::new(body)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isaac::http::{client, serve};
    use crate::lb::health::HealthConfig;
    use crate::lb::policy::{AnyPolicy, PolicyKind};

    /// A backend answering `status` with a timing header, on a free loopback port.
    async fn backend(status: StatusCode) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(serve(
            l,
            move |_req: Request<Incoming>| async move { respond(status, "x", &[("diorama-timing", "fs=5".into())]) },
            std::future::pending(),
        ));
        addr
    }

    #[tokio::test]
    async fn relays_headers_and_ejects_a_failing_backend() {
        let good = backend(StatusCode::OK).await;
        let bad = backend(StatusCode::INTERNAL_SERVER_ERROR).await;
        let health =
            HealthConfig { failures: 2, backoff: Duration::from_secs(60), max_backoff: Duration::from_secs(60) };
        let balancer =
            Balancer::new(vec![good.clone(), bad.clone()], AnyPolicy::new(PolicyKind::RoundRobin, 2, 1, 1e10), health);
        let proxy =
            Arc::new(Proxy { balancer: Mutex::new(balancer), client: client(), timeout: Duration::from_secs(5) });
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front = l.local_addr().unwrap();
        let p = proxy.clone();
        tokio::spawn(serve(l, move |req| p.clone().handle(req), std::future::pending()));
        let c = client();
        let mut seen = Vec::new();
        for _ in 0..10 {
            let resp = c.get(format!("http://{front}/x").parse().unwrap()).await.unwrap();
            let backend = resp.headers()["diorama-backend"].to_str().unwrap().to_owned();
            assert_eq!(resp.headers()["diorama-timing"], "fs=5", "backend headers pass through");
            assert_eq!(resp.status() == StatusCode::OK, backend == good);
            seen.push(backend == bad);
        }
        // Round-robin alternates until the bad backend's second failure ejects it.
        assert_eq!(seen, [false, true, false, true, false, false, false, false, false, false]);
        let rows = proxy.balancer.lock().unwrap().take_rows(now_unix_ns());
        assert_eq!((rows[1].requests, rows[1].errors, rows[1].ejected), (2, 2, true));
        assert_eq!((rows[0].requests, rows[0].errors, rows[0].ejected), (8, 0, false));
        assert!(rows[0].p50_us.is_some_and(|v| v > 0));
    }

    #[tokio::test]
    async fn dead_backend_gives_502() {
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let health = HealthConfig { failures: 0, backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(1) };
        let balancer = Balancer::new(vec![dead], AnyPolicy::new(PolicyKind::P2c, 1, 1, 1e10), health);
        let proxy =
            Arc::new(Proxy { balancer: Mutex::new(balancer), client: client(), timeout: Duration::from_secs(5) });
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front = l.local_addr().unwrap();
        let p = proxy.clone();
        tokio::spawn(serve(l, move |req| p.clone().handle(req), std::future::pending()));
        let resp = client().get(format!("http://{front}/").parse().unwrap()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(proxy.balancer.lock().unwrap().backends()[0].inflight, 0);
    }
}
