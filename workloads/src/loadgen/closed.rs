//! Closed mode: N clients, each sends a request, waits for its reply, thinks, and sends the
//! next (DieCast's Isaac clients), for a number of requests or a duration.
//!
//! # Design
//! A client's scheduled start is the end of its think time; its dispatch is when the request
//! is handed to its connection, so the dispatch delay shows timer overshoot. Think times are
//! timed by one [`PreciseTimer`] thread (sleep with 1 ns slack, then spin the last `spin`),
//! not by the async runtime's 1 ms timer wheel, whose overshoot would count as latency. Offered load
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
use super::memcache::Mix;
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
    /// Per-request operation and key (memcache), instead of `method`/`target.path`.
    pub mix: Option<Arc<Mix>>,
}

/// Wakes tasks at precise (virtual unix ns) instants, from one thread.
pub struct PreciseTimer {
    tx: std::sync::mpsc::Sender<(i64, tokio::sync::oneshot::Sender<()>)>,
}

impl PreciseTimer {
    /// Starts the timer thread; it ends when the timer is dropped.
    pub fn start(spin_ns: u64) -> std::io::Result<PreciseTimer> {
        let (tx, rx) = std::sync::mpsc::channel::<(i64, tokio::sync::oneshot::Sender<()>)>();
        std::thread::Builder::new().name("think-timer".into()).spawn(move || {
            if let Err(err) = nix::sys::prctl::set_timerslack(1) {
                tracing::debug!(%err, "could not lower the timer slack");
            }
            let mut due: std::collections::BinaryHeap<std::cmp::Reverse<(i64, u64)>> =
                std::collections::BinaryHeap::new();
            let mut waiters = std::collections::HashMap::new();
            let mut seq = 0u64;
            loop {
                let now = now_unix_ns();
                while let Some(&std::cmp::Reverse((at, k))) = due.peek() {
                    if at > now {
                        break;
                    }
                    due.pop();
                    if let Some(w) = waiters.remove(&k) {
                        let _: Result<(), ()> = tokio::sync::oneshot::Sender::send(w, ());
                    }
                }
                let next = due.peek().map(|r| r.0 .0);
                let wait = next.map(|at| at - now_unix_ns());
                let got = match wait {
                    None => rx.recv().map_err(|_| true),
                    Some(w) if w > spin_ns as i64 => rx
                        .recv_timeout(Duration::from_nanos((w - spin_ns as i64) as u64))
                        .map_err(|e| e == std::sync::mpsc::RecvTimeoutError::Disconnected),
                    Some(_) => rx.try_recv().map_err(|e| e == std::sync::mpsc::TryRecvError::Disconnected),
                };
                match got {
                    Ok((at, w)) => {
                        due.push(std::cmp::Reverse((at, seq)));
                        waiters.insert(seq, w);
                        seq += 1;
                    }
                    Err(true) => return,
                    Err(false) => std::hint::spin_loop(),
                }
            }
        })?;
        Ok(PreciseTimer { tx })
    }

    /// Resolves at `at_ns` (virtual unix ns).
    pub async fn sleep_until(&self, at_ns: i64) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send((at_ns, tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

async fn client<P: Protocol>(
    i: u32,
    issuer: Arc<Issuer<P>>,
    cfg: Arc<ClosedConfig>,
    next_id: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    timer: Arc<PreciseTimer>,
) {
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
        if next > now_unix_ns() {
            timer.sleep_until(next).await;
        }
        let (req, class) = match &cfg.mix {
            Some(mix) => {
                let req = mix.request(id, &cfg.target.authority);
                let class = req.method.clone();
                (req, class)
            }
            None => (
                Request {
                    method: cfg.method.clone(),
                    authority: cfg.target.authority.clone(),
                    path: cfg.target.path.clone(),
                    body: cfg.body.clone(),
                },
                cfg.target.path.clone(),
            ),
        };
        issuer.clone().issue_now(Planned { id, scheduled_ns: next, req, class }).await;
        let think = match (cfg.think, exp) {
            (Think::Exp, Some(e)) if cfg.think_ns > 0 => e.sample(&mut rng) as i64,
            _ => cfg.think_ns as i64,
        };
        next = now_unix_ns() + think;
    }
}

/// Runs the clients to their end or until `stop_on` resolves (SIGTERM/SIGINT); then waits up to `drain`
/// for the requests in flight, then records the rest as `cancelled`.
pub fn run<P: Protocol>(
    rt: &tokio::runtime::Runtime,
    issuer: Arc<Issuer<P>>,
    cfg: ClosedConfig,
    drain: Duration,
    spin_ns: u64,
    stop_on: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let timer = Arc::new(PreciseTimer::start(spin_ns)?);
    let cfg = Arc::new(cfg);
    let stop = Arc::new(AtomicBool::new(false));
    let next_id = Arc::new(AtomicU64::new(0));
    rt.block_on(async {
        let mut clients = tokio::task::JoinSet::new();
        for i in 0..cfg.clients.max(1) {
            clients.spawn(client(i, issuer.clone(), cfg.clone(), next_id.clone(), stop.clone(), timer.clone()));
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precise_timer_wakes_on_time_in_order() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let timer = PreciseTimer::start(50_000).unwrap();
        let t0 = now_unix_ns();
        let lateness = rt.block_on(async {
            let mut late = Vec::new();
            for k in [3i64, 1, 2] {
                let at = t0 + k * 5_000_000;
                timer.sleep_until(at).await;
                late.push(now_unix_ns() - at);
            }
            late
        });
        // Never early; late by less than a (generous, shared-host) 50 ms. The instants already
        // past (1 and 2 after 3) resolve at once.
        assert!(lateness.iter().all(|&l| (0..50_000_000).contains(&l)), "{lateness:?}");
    }
}
