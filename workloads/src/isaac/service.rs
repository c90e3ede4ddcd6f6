//! `diorama-isaac`'s command line and main loop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::plan::{self, Class, Mix};
use super::{app, db, flags, front, http, stats, store};

/// The tier a process plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Tier {
    Front,
    App,
    Db,
}

impl Tier {
    /// The name used in `isaac.csv`.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Front => "front",
            Tier::App => "app",
            Tier::Db => "db",
        }
    }
    fn default_port(self) -> u16 {
        match self {
            Tier::Front => 8080,
            Tier::App => 9000,
            Tier::Db => 7000,
        }
    }
}

/// The DB tier's storage backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    /// Embedded SQLite behind the DB tier's HTTP protocol.
    Sqlite,
    /// A PostgreSQL server the DB tier starts; app servers use `--db-store postgres`.
    Postgres,
}

/// How app servers reach the DB tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DbStore {
    /// The DB tier's HTTP key-value protocol (SQLite store).
    Http,
    /// PostgreSQL's own protocol, straight to the server the DB tier runs.
    Postgres,
}

/// Command line of `diorama-isaac` (docs/workloads.md).
#[derive(Debug, clap::Parser)]
#[command(
    name = "diorama-isaac",
    about = "A three-tier service after DieCast's Isaac: front end, app servers, databases"
)]
pub struct Args {
    /// The tier this process plays.
    #[arg(long, value_enum)]
    pub tier: Tier,
    /// Address to listen on (default 0.0.0.0 and port 8080 front, 9000 app, 7000 db).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Front: app servers, `host:port` or `as[0..6]:9000`; comma-separated or repeated.
    #[arg(long = "app")]
    pub apps: Vec<String>,
    /// App: DB servers, `host:port` or `db[0..6]:7000`; comma-separated or repeated.
    #[arg(long = "db")]
    pub dbs: Vec<String>,
    /// Front: app servers per request (default class).
    #[arg(long, default_value_t = 5)]
    pub fanout: usize,
    /// Front: DB reads per app server call (default class).
    #[arg(long, default_value_t = 10)]
    pub reads: usize,
    /// Front: DB writes per app server call (default class).
    #[arg(long, default_value_t = 2)]
    pub writes: usize,
    /// Front: bytes per read and write (default class).
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Front: SHA-1 rounds each app server computes (default class).
    #[arg(long, default_value_t = 500)]
    pub as_hashes: usize,
    /// Front: SHA-1 rounds the front end computes (default class).
    #[arg(long, default_value_t = 5000)]
    pub fs_hashes: usize,
    /// Front: a request class as JSON (`{"name","weight","fanout",…}`) or an array of them;
    /// repeat for a mix. Fields left out take the single-class flags' values.
    #[arg(long = "class")]
    pub classes: Vec<String>,
    /// Front: time to wait for an app server (virtual).
    #[arg(long, default_value = "5s", value_parser = flags::parse_duration)]
    pub as_timeout: Duration,
    /// App: time to wait for one DB operation (virtual).
    #[arg(long, default_value = "1s", value_parser = flags::parse_duration)]
    pub db_timeout: Duration,
    /// App: how to reach the DB servers (`--db` then lists their PostgreSQL ports).
    #[arg(long, value_enum, default_value = "http")]
    pub db_store: DbStore,
    /// App and db: keys are 0..keys (the DB pre-fills them).
    #[arg(long, default_value_t = 1000)]
    pub keys: u64,
    /// Db: the storage backend.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub store: StoreKind,
    /// Db: the database file (relative to the working directory).
    #[arg(long, default_value = "isaac.sqlite")]
    pub data: PathBuf,
    /// Db (postgres): the server's port.
    #[arg(long, default_value_t = 5432)]
    pub pg_port: u16,
    /// Db (postgres): the unprivileged OS user postgres runs as.
    #[arg(long, default_value = "nobody")]
    pub pg_user: String,
    /// Db (postgres): directory of initdb and postgres (default: PATH, /usr/lib/postgresql/*/bin).
    #[arg(long)]
    pub pg_bin: Option<PathBuf>,
    /// Db (postgres): the data directory (relative to the working directory).
    #[arg(long, default_value = "pgdata")]
    pub pg_data: PathBuf,
    /// Db: durability: SQLite's synchronous level (WAL journal); postgres: `off` disables
    /// fsync, `normal` turns synchronous_commit off, `full` is postgres's default.
    #[arg(long, value_enum, default_value = "normal")]
    pub sync: store::Sync,
    /// Where the time series goes.
    #[arg(long, default_value = "isaac.csv")]
    pub csv: PathBuf,
    /// Interval of the time series rows (virtual).
    #[arg(long, default_value = "1s", value_parser = flags::parse_duration)]
    pub report_interval: Duration,
    /// Seed of the random choices (default: from the OS).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// Runs the tier until SIGTERM/SIGINT, then writes the last row of `isaac.csv`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let start_ns = crate::runtime::now_unix_ns();
    let addr = args.listen.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], args.tier.default_port())));
    let counters = Arc::new(stats::Counters::default());
    let rng = || Mutex::new(args.seed.map_or_else(StdRng::from_os_rng, StdRng::seed_from_u64));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let handle: Arc<
        dyn Fn(
                hyper::Request<hyper::body::Incoming>,
            ) -> futures::future::BoxFuture<'static, hyper::Response<http::Body>>
            + Send
            + Sync,
    > = match args.tier {
        Tier::Front => {
            let apps = flags::expand_backends(&args.apps)?;
            anyhow::ensure!(!apps.is_empty(), "--tier front needs --app (e.g. --app 'as[0..6]:9000')");
            let base = Class {
                fanout: args.fanout,
                reads: args.reads,
                writes: args.writes,
                size: args.size,
                as_hashes: args.as_hashes,
                fs_hashes: args.fs_hashes,
                ..Class::default()
            };
            base.validate().context("invalid single-class flags")?;
            let classes = if args.classes.is_empty() { vec![base] } else { plan::parse_classes(&args.classes, &base)? };
            let mix = Mix::new(classes)?;
            tracing::info!(apps = apps.len(), classes = ?mix.classes(), "front end");
            let tier = Arc::new(front::FrontTier {
                apps,
                mix,
                client: http::client(),
                counters: counters.clone(),
                rng: rng(),
                as_timeout: args.as_timeout,
            });
            Arc::new(move |req| Box::pin(tier.clone().handle(req)))
        }
        Tier::App => {
            let dbs = flags::expand_backends(&args.dbs)?;
            anyhow::ensure!(!dbs.is_empty(), "--tier app needs --db (e.g. --db 'db[0..6]:7000')");
            tracing::info!(?dbs, "app server");
            let pg = (args.db_store == DbStore::Postgres).then(|| store::postgres::PgPool::new(dbs.len()));
            let tier = Arc::new(app::AppTier {
                dbs,
                client: http::client(),
                counters: counters.clone(),
                rng: rng(),
                keys: args.keys,
                db_timeout: args.db_timeout,
                pg,
            });
            Arc::new(move |req| Box::pin(tier.clone().handle(req)))
        }
        Tier::Db if args.store == StoreKind::Postgres => return run_postgres(&args, addr, counters, start_ns).await,
        Tier::Db => {
            let (path, sync, keys, size) = (args.data.clone(), args.sync, args.keys, args.size);
            let store = tokio::task::spawn_blocking(move || store::SqliteStore::open(&path, sync, keys, size))
                .await
                .context("open the store")?
                .with_context(|| format!("open SQLite database {}", args.data.display()))?;
            tracing::info!(data = %args.data.display(), keys, "database ready");
            let tier = Arc::new(db::DbTier {
                store: Arc::new(Mutex::new(store::AnyStore::Sqlite(store))),
                counters: counters.clone(),
            });
            Arc::new(move |req| Box::pin(tier.clone().handle(req)))
        }
    };
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("listen on {addr}"))?;
    let series = stats::Series::create(&args.csv, args.tier.name(), stats::epoch_virt_ns(start_ns))?;
    let writer = tokio::spawn(stats::run_series(series, counters.clone(), args.report_interval, stopped()));
    tracing::info!(tier = args.tier.name(), %addr, "listening");
    http::serve(listener, move |req| handle(req), crate::runtime::shutdown_signal()).await;
    let _ = stop_tx.send(true);
    writer.await.context("time series writer")??;
    let (requests, errors, timeouts) = counters.totals();
    tracing::info!(requests, errors, timeouts, "stopped");
    Ok(())
}

/// The DB tier with PostgreSQL: starts the server, fills the table, then listens on `addr`
/// (so a readiness check on it means "filled"), answering `GET /` with the server's port.
/// `isaac.csv` counts the server's transactions; on SIGTERM postgres gets a fast shutdown.
async fn run_postgres(
    args: &Args,
    addr: SocketAddr,
    counters: Arc<stats::Counters>,
    start_ns: i64,
) -> anyhow::Result<()> {
    use store::postgres::{self as pg, PgConfig, PgServer};
    let cfg = PgConfig {
        data: args.pg_data.clone(),
        port: args.pg_port,
        os_user: args.pg_user.clone(),
        bin: args.pg_bin.clone(),
        sync: args.sync,
        log: PathBuf::from("postgres.log"),
    };
    let mut server = tokio::task::spawn_blocking(move || PgServer::start(&cfg)).await.context("start postgres")??;
    let client = match pg::prepare(&mut server, args.keys, args.size, Duration::from_secs(60)).await {
        Ok(c) => c,
        Err(err) => {
            tokio::task::spawn_blocking(move || server.stop(Duration::from_secs(5))).await.ok();
            return Err(err.into());
        }
    };
    let port = server.port;
    tracing::info!(port, keys = args.keys, "postgres ready");
    let (base_commit, base_rollback) = pg::transactions(&client).await?;
    let series = stats::Series::create(&args.csv, "db", stats::epoch_virt_ns(start_ns))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let client = Arc::new(client);
    let poll_once = {
        let (client, counters) = (client.clone(), counters.clone());
        move || {
            let (client, counters) = (client.clone(), counters.clone());
            async move {
                if let Ok((c, r)) = pg::transactions(&client).await {
                    let (c, r) = (c.saturating_sub(base_commit), r.saturating_sub(base_rollback));
                    counters.requests.store(c + r, std::sync::atomic::Ordering::Relaxed);
                    counters.errors.store(r, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    };
    let poller = {
        let (poll_once, interval) = (poll_once.clone(), args.report_interval);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval / 2);
            loop {
                tick.tick().await;
                poll_once().await;
            }
        })
    };
    let mut rx = stop_rx.clone();
    let writer = tokio::spawn(stats::run_series(series, counters.clone(), args.report_interval, async move {
        let _ = rx.wait_for(|s| *s).await;
    }));
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("listen on {addr}"))?;
    let info = format!("postgres on port {port}\n");
    http::serve(
        listener,
        move |_req| std::future::ready(http::respond(hyper::StatusCode::OK, info.clone(), &[])),
        crate::runtime::shutdown_signal(),
    )
    .await;
    poller.abort();
    // The last row gets the transactions of connections that closed since the last poll
    // (a backend flushes its statistics when it exits, otherwise at most once a second).
    poll_once().await;
    let _ = stop_tx.send(true);
    writer.await.context("time series writer")??;
    tokio::task::spawn_blocking(move || server.stop(Duration::from_secs(10))).await.context("stop postgres")?;
    tracing::info!("stopped");
    Ok(())
}
