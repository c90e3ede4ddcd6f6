//! `diorama-lb`'s command line and main loop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;

use super::balancer::Balancer;
use super::health::HealthConfig;
use super::memcache::MemcacheProxy;
use super::policy::{AnyPolicy, PolicyKind};
use super::proxy::Proxy;
use super::series::Series;
use crate::isaac::flags::{expand_backends, parse_duration};

/// Command line of `diorama-lb` (docs/workloads.md).
#[derive(Debug, clap::Parser)]
#[command(name = "diorama-lb", about = "An L7 HTTP load balancer with pluggable policies and passive health checks")]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:80")]
    pub listen: SocketAddr,
    /// Backends, `host:port` or `fs[0..6]:8080`; comma-separated or repeated.
    #[arg(long = "backend", alias = "backends", required = true)]
    pub backends: Vec<String>,
    /// The balancing policy.
    #[arg(long, value_enum, default_value = "p2c")]
    pub policy: PolicyKind,
    /// Time to wait for a backend's answer (virtual).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Consecutive failures that eject a backend (0: never eject).
    #[arg(long, default_value_t = 5)]
    pub eject_failures: u32,
    /// First ejection's length (virtual); doubles on repeated ejections.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub eject_backoff: Duration,
    /// Longest ejection (virtual).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub eject_backoff_max: Duration,
    /// Peak-EWMA's decay time constant (virtual; Finagle's default).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub ewma_decay: Duration,
    /// Where the per-backend time series goes.
    #[arg(long, default_value = "backends.csv")]
    pub csv: PathBuf,
    /// Interval of the time series rows (virtual).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub report_interval: Duration,
    /// Seed of the randomized policies (default: from the OS).
    #[arg(long)]
    pub seed: Option<u64>,
    /// What clients speak: http (default) or memcache (text protocol, request by request).
    #[arg(long, value_enum, default_value = "http")]
    pub protocol: Protocol,
}

/// The protocol `diorama-lb` proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    Http,
    Memcache,
}

/// Where the sampler reads the balancer from.
enum Front {
    Http(Arc<Proxy>),
    Memcache(Arc<MemcacheProxy>),
}

impl Front {
    fn balancer(&self) -> &Mutex<Balancer> {
        match self {
            Front::Http(p) => &p.balancer,
            Front::Memcache(p) => &p.balancer,
        }
    }
}

/// Runs the balancer until SIGTERM/SIGINT, then writes the last rows.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let start_ns = crate::runtime::now_unix_ns();
    let epoch_ns = crate::isaac::stats::epoch_virt_ns(start_ns);
    let addrs = expand_backends(&args.backends)?;
    anyhow::ensure!(!addrs.is_empty(), "--backend lists no backends");
    let seed = args.seed.unwrap_or_else(rand::random);
    let policy = AnyPolicy::new(args.policy, addrs.len(), seed, args.ewma_decay.as_nanos() as f64);
    let health = HealthConfig {
        failures: args.eject_failures,
        backoff: args.eject_backoff,
        max_backoff: args.eject_backoff_max,
    };
    tracing::info!(policy = ?args.policy, backends = ?addrs, "load balancer");
    let balancer = Balancer::new(addrs, policy, health);
    let front = Arc::new(match args.protocol {
        Protocol::Http => Front::Http(Arc::new(Proxy {
            balancer: Mutex::new(balancer),
            client: crate::isaac::http::client(),
            timeout: args.timeout,
        })),
        Protocol::Memcache => Front::Memcache(Arc::new(MemcacheProxy::new(balancer, args.timeout))),
    });
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("listen on {}", args.listen))?;
    let mut series = Series::create(&args.csv)?;
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let sampler = {
        let front = front.clone();
        let interval = args.report_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                let last = tokio::select! {
                    _ = tick.tick() => false,
                    _ = stop_rx.wait_for(|s| *s) => true,
                };
                let now = crate::runtime::now_unix_ns();
                let rows = front.balancer().lock().unwrap_or_else(std::sync::PoisonError::into_inner).take_rows(now);
                series.write((now - epoch_ns) as f64 / 1e9, &rows)?;
                if last {
                    return Ok::<(), super::series::SeriesError>(());
                }
            }
        })
    };
    tracing::info!(addr = %args.listen, "listening");
    match &*front {
        Front::Http(proxy) => {
            let handler = proxy.clone();
            crate::isaac::http::serve(
                listener,
                move |req| handler.clone().handle(req),
                crate::runtime::shutdown_signal(),
            )
            .await;
        }
        Front::Memcache(proxy) => proxy.clone().serve(listener, crate::runtime::shutdown_signal()).await,
    }
    let _ = stop_tx.send(true);
    sampler.await.context("time series writer")??;
    tracing::info!("stopped");
    Ok(())
}
