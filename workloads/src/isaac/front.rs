//! The front-end (FS) tier: draws a request class, calls `fanout` app servers in parallel,
//! and computes its SHA-1 rounds over the concatenation of their answers.
//!
//! Request: any `GET` (`?class=NAME` forces a class). Answer: 200 with
//! `{"class","app_servers","bytes","digest"}` and `Diorama-Timing: fs=…;as=…;db=…`, where
//! `as` and `db` are those of the critical app server (the one the front end heard from
//! last). An app server call that does not answer within `as_timeout` counts a timeout;
//! any failed call fails the request: 504 if a call timed out here or an app server
//! answered 504 (its DB timed out), else 502.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use rand::rngs::StdRng;

use super::http::{query_param, respond, Body, Client};
use super::plan::{choose_app_servers, Class, Mix};
use super::stats::Counters;
use super::timing::{Timing, HEADER};

/// The FS tier's shared state.
#[derive(Debug)]
pub struct FrontTier {
    /// App servers as `host:port`.
    pub apps: Vec<String>,
    pub mix: Mix,
    pub client: Client,
    pub counters: Arc<Counters>,
    pub rng: Mutex<StdRng>,
    pub as_timeout: Duration,
}

/// The outcome of one app server call.
enum Call {
    Ok {
        body: bytes::Bytes,
        timing: Timing,
        took: Duration,
    },
    /// No answer within the timeout.
    Timeout,
    /// A failed call; `timeout` when the app server itself reported one (504).
    Failed {
        msg: String,
        timeout: bool,
    },
}

impl FrontTier {
    /// Handles one client request.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let t0 = Instant::now();
        self.counters.request();
        if self.apps.is_empty() {
            return self.fail(StatusCode::SERVICE_UNAVAILABLE, "no app servers configured".into(), t0);
        }
        let forced = query_param(req.uri().query(), "class").map(str::to_owned);
        let (class, targets) = {
            let mut rng = self.rng.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let class = match forced.as_deref() {
                Some(name) => match self.mix.classes().iter().find(|c| c.name == name) {
                    Some(c) => c.clone(),
                    None => {
                        drop(rng);
                        return self.fail(StatusCode::BAD_REQUEST, format!("no class {name}"), t0);
                    }
                },
                None => self.mix.pick(&mut *rng).clone(),
            };
            let targets = choose_app_servers(&mut *rng, self.apps.len(), class.fanout);
            (class, targets)
        };
        let calls = futures::future::join_all(targets.iter().map(|&i| self.call(&self.apps[i], &class))).await;
        let mut bodies = Vec::with_capacity(calls.len());
        let mut critical: Option<(Duration, Timing)> = None;
        let mut timed_out = false;
        let mut failure = None;
        for (call, &i) in calls.into_iter().zip(&targets) {
            match call {
                Call::Ok { body, timing, took } => {
                    if critical.is_none_or(|(d, _)| took >= d) {
                        critical = Some((took, timing));
                    }
                    bodies.push(body);
                }
                Call::Timeout => {
                    self.counters.timeout();
                    timed_out = true;
                    failure = Some(format!("app server {}: no answer within {:?}", self.apps[i], self.as_timeout));
                }
                Call::Failed { msg, timeout } => {
                    timed_out |= timeout;
                    failure = Some(format!("app server {}: {msg}", self.apps[i]));
                }
            }
        }
        if let Some(msg) = failure {
            let status = if timed_out { StatusCode::GATEWAY_TIMEOUT } else { StatusCode::BAD_GATEWAY };
            return self.fail(status, msg, t0);
        }
        let rounds = class.fs_hashes;
        let hashed = tokio::task::spawn_blocking(move || {
            let all: Vec<u8> = bodies.concat();
            (all.len(), super::hash::rounds(&all, rounds))
        })
        .await;
        let (bytes, digest) = match hashed {
            Ok(v) => v,
            Err(err) => return self.fail(StatusCode::INTERNAL_SERVER_ERROR, format!("hash: {err}"), t0),
        };
        let body = serde_json::json!({
            "class": class.name,
            "app_servers": targets.iter().map(|&i| self.apps[i].as_str()).collect::<Vec<_>>(),
            "bytes": bytes,
            "digest": super::hash::hex(&digest),
        });
        let inner = critical.map(|(_, t)| t).unwrap_or_default();
        let timing = Timing { fs_us: Some(t0.elapsed().as_micros() as u64), as_us: inner.as_us, db_us: inner.db_us };
        respond(
            StatusCode::OK,
            body.to_string(),
            &[(HEADER, timing.to_string()), ("content-type", "application/json".into())],
        )
    }

    async fn call(&self, app: &str, class: &Class) -> Call {
        let started = Instant::now();
        let uri = format!(
            "http://{app}/app?reads={}&writes={}&size={}&hashes={}",
            class.reads, class.writes, class.size, class.as_hashes
        );
        let req = match Request::get(uri).body(Full::default()) {
            Ok(r) => r,
            Err(e) => return Call::Failed { msg: e.to_string(), timeout: false },
        };
        let attempt = async {
            let resp = self.client.request(req).await.map_err(|e| (super::http::error_chain(&e), false))?;
            let status = resp.status();
            let timing = resp
                .headers()
                .get(HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| Timing::parse(v).ok())
                .unwrap_or_default();
            let body = resp.into_body().collect().await.map_err(|e| (e.to_string(), false))?.to_bytes();
            if !status.is_success() {
                return Err((
                    format!("status {status}: {}", String::from_utf8_lossy(&body)),
                    status == StatusCode::GATEWAY_TIMEOUT,
                ));
            }
            Ok((body, timing))
        };
        match tokio::time::timeout(self.as_timeout, attempt).await {
            Ok(Ok((body, timing))) => Call::Ok { body, timing, took: started.elapsed() },
            Ok(Err((msg, timeout))) => Call::Failed { msg, timeout },
            Err(_) => Call::Timeout,
        }
    }

    fn fail(&self, status: StatusCode, msg: String, t0: Instant) -> Response<Body> {
        self.counters.error();
        tracing::debug!(%status, %msg, "front-end request failed");
        let timing = Timing { fs_us: Some(t0.elapsed().as_micros() as u64), ..Default::default() };
        respond(status, msg, &[(HEADER, timing.to_string())])
    }
}
