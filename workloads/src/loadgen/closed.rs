//! Closed mode: N clients, each sends a request, waits for its reply, thinks, and sends the
//! next (DieCast's Isaac clients), for a number of requests or a duration.
//!
//! # Design
//! A client's scheduled start is the end of its think time; its dispatch is when the request
//! is handed to its connection, so the dispatch delay shows timer overshoot. Offered load
//! depends on the service's speed by nature here (that is what a closed loop is), so the
//! open-loop corrections do not apply; corrected and uncorrected latency differ only by the
//! dispatch delay. Each client keeps its own keep-alive connection (through the issuer's pool).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::SeedableRng;
use rand_distr::{Distribution, Exp};

use super::http::Target;
use super::open::{abandon, Issuer, Planned};
use super::{Protocol, Request};
use crate::runtime::now_unix_ns;

/// How think times are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Think {
    /// Always `--think`.
    Fixed,
    /// Exponential with mean `--think`.
    Exp,
}

/// A closed-loop run.
#[derive(Debug, Clone)]
pub struct ClosedConfig {
    pub clients: u32,
    pub think_ns: u64,
    pub think: Think,
    /// Total requests over all clients.
    pub count: Option<u64>,
    /// No request starts after this offset from the start.
    pub duration_ns: Option<u64>,
    pub start_ns: i64,
    pub target: Target,
    pub method: String,
    pub body: Bytes,
    pub seed: u64,
}

async fn client<P: Protocol>(i: u32, issuer: Arc<Issuer<P>>, cfg: Arc<ClosedConfig>, next_id: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed.wrapping_add(u64::from(i)));
    let exp = Exp::new(1.0 / (cfg.think_ns.max(1) as f64)).ok();
    let mut next = cfg.start_ns;
    loop {
        if stop.load(Ordering::Acquire) || cfg.duration_ns.is_some_and(|d| next - cfg.start_ns >= d as i64) {
            break;
        }
        let id = next_id.fetch_add(1, Ordering::AcqRel);
        if cfg.count.is_some_and(|c| id >= c) {
            break;
        }
        let wait = next - now_unix_ns();
        if wait > 0 {
            tokio::time::sleep(Duration::from_nanos(wait as u64)).await;
        }
        let req = Request { method: cfg.method.clone(), authority: cfg.target.authority.clone(), path: cfg.target.path.clone(), body: cfg.body.clone() };
        issuer.clone().issue_now(Planned { id, scheduled_ns: next, req, class: cfg.target.path.clone() }).await;
        let think = match (cfg.think, exp) {
            (Think::Exp, Some(e)) if cfg.think_ns > 0 => e.sample(&mut rng) as i64,
            _ => cfg.think_ns as i64,
        };
        next = now_unix_ns() + think;
    }
}

/// Runs the clients to their end or until `stop_on` resolves (SIGTERM/SIGINT); then waits up to `drain`
/// for the requests in flight, then records the rest as `cancelled`.
pub fn run<P: Protocol>(rt: &tokio::runtime::Runtime, issuer: Arc<Issuer<P>>, cfg: ClosedConfig, drain: Duration, stop_on: impl std::future::Future<Output = ()>) {
    let cfg = Arc::new(cfg);
    let stop = Arc::new(AtomicBool::new(false));
    let next_id = Arc::new(AtomicU64::new(0));
    rt.block_on(async {
        let mut clients = tokio::task::JoinSet::new();
        for i in 0..cfg.clients.max(1) {
            clients.spawn(client(i, issuer.clone(), cfg.clone(), next_id.clone(), stop.clone()));
        }
        let all_done = async { while clients.join_next().await.is_some() {} };
        tokio::select! {
            () = stop_on => {
                tracing::info!("signal: stopping");
                stop.store(true, Ordering::Release);
                let deadline = tokio::time::Instant::now() + drain;
                while issuer.inflight() > 0 && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                abandon(&issuer).await;
            }
            () = all_done => {}
        }
    });
}
