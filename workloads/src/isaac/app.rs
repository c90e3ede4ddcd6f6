//! The app server (AS) tier: performs a call's database operations against one randomly
//! chosen DB server, then computes its SHA-1 rounds over the data it read.
//!
//! With `--db-store postgres` the operations are SQL statements sent straight to the
//! PostgreSQL servers the DB tier runs, and `db` is their round trip measured here.
//!
//! Request: `GET /app?reads=R&writes=W&size=S&hashes=H` (sent by the front end).
//! Answer: the `R` values read, concatenated, then the 20-byte digest; header
//! `Diorama-Timing: as=<µs>;db=<µs>` (`db` summed over the operations, as the DB measured it).
//! A DB operation that does not answer within `db_timeout` fails the call with 504 and
//! counts a timeout; any other DB failure gives 502. Both count as errors of this tier.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use rand::rngs::StdRng;
use rand::Rng;

use super::http::{query_param, respond, Body, Client};
use super::plan::{db_ops, DbOp};
use super::stats::Counters;
use super::store::fill_value;
use super::timing::{Timing, HEADER};

/// The AS tier's shared state.
#[derive(Debug)]
pub struct AppTier {
    /// DB servers as `host:port`.
    pub dbs: Vec<String>,
    pub client: Client,
    pub counters: Arc<Counters>,
    pub rng: Mutex<StdRng>,
    /// Keys are drawn from `0..keys`.
    pub keys: u64,
    pub db_timeout: Duration,
    /// Talk to PostgreSQL servers directly instead of the DB tier's HTTP protocol.
    pub pg: Option<super::store::postgres::PgPool>,
}

impl AppTier {
    /// Handles one request from a front end.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let t0 = Instant::now();
        self.counters.request();
        let q = req.uri().query();
        let num = |name: &str| query_param(q, name).and_then(|v| v.parse::<usize>().ok());
        let (Some(reads), Some(writes), Some(size), Some(hashes)) =
            (num("reads"), num("writes"), num("size"), num("hashes"))
        else {
            self.counters.error();
            return respond(StatusCode::BAD_REQUEST, "need /app?reads=R&writes=W&size=S&hashes=H", &[]);
        };
        if self.dbs.is_empty() {
            self.counters.error();
            return respond(StatusCode::SERVICE_UNAVAILABLE, "no DB servers configured", &[]);
        }
        let (db, ops, salt) = {
            let mut rng = self.rng.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let db = rng.random_range(0..self.dbs.len());
            (db, db_ops(&mut *rng, reads, writes, self.keys), rng.random::<u64>())
        };
        let db_index = db;
        let db = &self.dbs[db];
        let mut data = Vec::with_capacity(reads * size + 20);
        let mut db_us = 0u64;
        for op in ops {
            let started = Instant::now();
            let result = tokio::time::timeout(self.db_timeout, self.op(db_index, db, op, size, salt)).await;
            match result {
                Ok(Ok((value, reported))) => {
                    db_us += reported.unwrap_or_else(|| started.elapsed().as_micros() as u64);
                    if matches!(op, DbOp::Read { .. }) {
                        data.extend_from_slice(&value);
                    }
                }
                Ok(Err(msg)) => return self.fail(StatusCode::BAD_GATEWAY, format!("db {db}: {msg}"), t0, db_us),
                Err(_) => {
                    self.counters.timeout();
                    return self.fail(
                        StatusCode::GATEWAY_TIMEOUT,
                        format!("db {db}: no answer within {:?}", self.db_timeout),
                        t0,
                        db_us,
                    );
                }
            }
        }
        let digest = match tokio::task::spawn_blocking(move || {
            let d = super::hash::rounds(&data, hashes);
            let mut data = data;
            data.extend_from_slice(&d);
            data
        })
        .await
        {
            Ok(d) => d,
            Err(err) => return self.fail(StatusCode::INTERNAL_SERVER_ERROR, format!("hash: {err}"), t0, db_us),
        };
        let timing = Timing { as_us: Some(t0.elapsed().as_micros() as u64), db_us: Some(db_us), ..Default::default() };
        respond(StatusCode::OK, digest, &[(HEADER, timing.to_string())])
    }

    /// One DB operation: the value read (empty for a write) and the DB's own time in µs.
    async fn op(
        &self,
        db_index: usize,
        db: &str,
        op: DbOp,
        size: usize,
        salt: u64,
    ) -> Result<(Bytes, Option<u64>), String> {
        if let Some(pg) = &self.pg {
            // No server-side timing from postgres: the caller measures the round trip.
            return match op {
                DbOp::Read { key } => pg.read(db_index, db, key).await.map(|v| (Bytes::from(v), None)),
                DbOp::Write { key } => {
                    pg.write(db_index, db, key, &fill_value(key ^ salt, size)).await.map(|()| (Bytes::new(), None))
                }
            };
        }
        let (method, key, body) = match op {
            DbOp::Read { key } => (Method::GET, key, Bytes::new()),
            DbOp::Write { key } => (Method::PUT, key, Bytes::from(fill_value(key ^ salt, size))),
        };
        let req = Request::builder()
            .method(method)
            .uri(format!("http://{db}/kv/{key}"))
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        let resp = self.client.request(req).await.map_err(|e| super::http::error_chain(&e))?;
        let status = resp.status();
        let reported = resp
            .headers()
            .get(HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Timing::parse(v).ok())
            .and_then(|t| t.db_us);
        let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        if !status.is_success() {
            return Err(format!("status {status}"));
        }
        Ok((body, reported))
    }

    fn fail(&self, status: StatusCode, msg: String, t0: Instant, db_us: u64) -> Response<Body> {
        self.counters.error();
        tracing::debug!(%status, %msg, "app request failed");
        let timing = Timing { as_us: Some(t0.elapsed().as_micros() as u64), db_us: Some(db_us), ..Default::default() };
        respond(status, msg, &[(HEADER, timing.to_string())])
    }
}
