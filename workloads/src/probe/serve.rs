//! The `server` role: opens the store, serves the API, runs the scheduler, and on SIGTERM
//! writes every task and result, as the API returns them, into its working directory.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::server::{Server, ServerConfig, ServerError};
use super::spec::TaskSpec;
use super::store::{AnyStore, PgStore, SqliteStore};

/// The store backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

/// Flags of `diorama-probe server`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Locations known from the start (agents add theirs when they first poll), comma-
    /// separated or repeated.
    #[arg(long = "location", alias = "locations", value_delimiter = ',')]
    pub locations: Vec<String>,
    /// How long a run may wait for an agent, and an agent for delivering it.
    #[arg(long, default_value = "30s", value_parser = crate::loadgen::units::duration_arg)]
    pub lease: u64,
    #[arg(long, value_enum, default_value = "sqlite")]
    pub store: StoreKind,
    /// SQLite database, relative to the working directory.
    #[arg(long, default_value = "probe.sqlite")]
    pub data: PathBuf,
    /// PostgreSQL connection (libpq key=value form), for `--store postgres`.
    #[arg(long, default_value = "host=127.0.0.1 user=postgres dbname=postgres")]
    pub pg_url: String,
    /// A task (JSON, as the API takes it) to create at start-up when the store holds no
    /// task yet; repeatable. A topology's `args: {task: [{…}, {…}]}` becomes these flags.
    #[arg(long = "task")]
    pub tasks: Vec<String>,
    /// A task file (YAML, docs/probes.md) to create at start-up when the store holds no task.
    #[arg(long)]
    pub task_file: Option<PathBuf>,
    /// Create the start-up tasks this long after the server is up (virtual time), e.g.
    /// once the agents have registered: a burst of one-off tasks then meets warm agents.
    #[arg(long, default_value = "0s", value_parser = crate::loadgen::units::duration_arg)]
    pub task_delay: u64,
    /// Written at shutdown: every task and result as the API returns them.
    #[arg(long, default_value = "probe-results.json")]
    pub export: PathBuf,
}

/// Runs the server until SIGTERM/SIGINT.
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let store = match args.store {
        StoreKind::Sqlite => AnyStore::Sqlite(SqliteStore::open(&args.data)?),
        StoreKind::Postgres => AnyStore::Postgres(PgStore::connect(&args.pg_url).await?),
    };
    let config = ServerConfig { locations: args.locations.clone(), lease: Duration::from_nanos(args.lease) };
    let server = Arc::new(Server::open(store, config).await?);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    if args.task_delay == 0 {
        seed_tasks(&server, &args).await?;
    } else {
        let (s, a) = (Arc::clone(&server), args.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_nanos(a.task_delay)).await;
            if let Err(err) = seed_tasks(&s, &a).await {
                tracing::error!(%err, "start-up tasks refused");
            }
        });
    }
    tracing::info!(listen = %args.listen, locations = ?args.locations, "probe server listening");
    let scheduler = {
        let s = Arc::clone(&server);
        tokio::spawn(async move { s.run_scheduler().await })
    };
    // The export is written as soon as the signal arrives, not after open long polls end:
    // the harness's stop grace period is short.
    tokio::select! {
        served = axum::serve(listener, super::api::router(Arc::clone(&server))).into_future() => served?,
        () = crate::runtime::shutdown_signal() => {}
    }
    scheduler.abort();
    let export = server.export().await?;
    std::fs::write(&args.export, serde_json::to_vec_pretty(&export)?)?;
    tracing::info!(path = %args.export.display(), "results exported");
    Ok(())
}

/// Creates the start-up tasks of `--task` and `--task-file`, unless the store already has
/// tasks (a restarted server keeps its own).
async fn seed_tasks(server: &Server, args: &ServerArgs) -> anyhow::Result<()> {
    let mut specs = Vec::new();
    for (i, text) in args.tasks.iter().enumerate() {
        let de = &mut serde_json::Deserializer::from_str(text);
        let spec: TaskSpec = serde_path_to_error::deserialize(de)
            .map_err(|e| anyhow::anyhow!("--task #{}: {}: {}", i + 1, e.path(), e.inner()))?;
        specs.push(spec);
    }
    let mut file = None;
    if let Some(path) = &args.task_file {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("read {}: {e}", path.display()))?;
        let loaded = super::taskfile::load(path, &text).map_err(|errors| {
            anyhow::anyhow!("{}", errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
        })?;
        file = Some(loaded);
    }
    if specs.is_empty() && file.is_none() {
        return Ok(());
    }
    if !server.list(None, None, None).await.is_empty() {
        tracing::info!("the store holds tasks already; start-up tasks not created again");
        return Ok(());
    }
    for (i, spec) in specs.iter().enumerate() {
        server.create(spec).await.map_err(|e| match e {
            ServerError::Invalid(errors) => anyhow::anyhow!(
                "--task #{}: {}",
                i + 1,
                errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
            ),
            other => other.into(),
        })?;
    }
    if let Some(file) = file {
        for (i, spec) in file.specs.iter().enumerate() {
            if let Err(e) = server.create(spec).await {
                return Err(match e {
                    ServerError::Invalid(errors) => anyhow::anyhow!(
                        "{}",
                        file.locate(i, &errors).iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
                    ),
                    other => other.into(),
                });
            }
        }
    }
    Ok(())
}
