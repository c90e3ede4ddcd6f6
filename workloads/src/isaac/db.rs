//! The DB tier: a key-value store served over HTTP/1.1.
//!
//! `GET /kv/<key>` answers the value (empty for an absent key); `PUT /kv/<key>` stores the
//! body. Each answer carries `Diorama-Timing: db=<µs>`, the time from request in to answer
//! out. Storage runs on the blocking pool, one operation at a time per node, as on a
//! single-writer embedded database.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use super::http::{respond, Body};
use super::stats::Counters;
use super::store::{AnyStore, Store};
use super::timing::{Timing, HEADER};

/// The DB tier's shared state.
#[derive(Debug)]
pub struct DbTier {
    pub store: Arc<Mutex<AnyStore>>,
    pub counters: Arc<Counters>,
}

enum Op {
    Read(u64),
    Write(u64, bytes::Bytes),
}

impl DbTier {
    /// Handles one request.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let t0 = Instant::now();
        self.counters.request();
        let key = req.uri().path().strip_prefix("/kv/").and_then(|k| k.parse::<u64>().ok());
        let op = match (req.method(), key) {
            (&Method::GET, Some(k)) => Op::Read(k),
            (&Method::PUT, Some(k)) => match req.into_body().collect().await {
                Ok(b) => Op::Write(k, b.to_bytes()),
                Err(err) => return self.fail(StatusCode::BAD_REQUEST, format!("read body: {err}"), t0),
            },
            _ => return self.fail(StatusCode::NOT_FOUND, "use GET or PUT /kv/<key>".into(), t0),
        };
        let store = self.store.clone();
        let done = tokio::task::spawn_blocking(move || {
            let mut s = store.lock().map_err(|_| "store lock poisoned".to_owned())?;
            match op {
                Op::Read(k) => s.read(k).map_err(|e| e.to_string()),
                Op::Write(k, v) => s.write(k, &v).map(|()| Vec::new()).map_err(|e| e.to_string()),
            }
        })
        .await;
        match done {
            Ok(Ok(value)) => respond(StatusCode::OK, value, &[(HEADER, timing(t0))]),
            Ok(Err(err)) => self.fail(StatusCode::INTERNAL_SERVER_ERROR, err, t0),
            Err(err) => self.fail(StatusCode::INTERNAL_SERVER_ERROR, err.to_string(), t0),
        }
    }

    fn fail(&self, status: StatusCode, msg: String, t0: Instant) -> Response<Body> {
        self.counters.error();
        tracing::warn!(%status, %msg, "db request failed");
        respond(status, msg, &[(HEADER, timing(t0))])
    }
}

fn timing(t0: Instant) -> String {
    Timing { db_us: Some(t0.elapsed().as_micros() as u64), ..Default::default() }.to_string()
}
