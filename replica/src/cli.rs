//! The command line of `diorama-replica`: one binary, one `--role` per process kind, so the
//! harness passes a node's `args` as flags like for every workload.
//!
//! Exit codes: 0 success, 1 a verification that found mismatches, 2 usage, 3 runtime failure.

use crate::client::Endpoint;
use clap::{Parser, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Role {
    /// An S3-protocol object store that notifies created and removed objects.
    Store,
    /// The replicator's orchestrator.
    Coordinator,
    /// A region's function platform (starts instances).
    Platform,
    /// One function instance (its task as JSON on standard input).
    Instance,
    /// The test writer.
    Writer,
    /// Compare source and destination; exit 1 on a mismatch.
    Verify,
}

#[derive(Debug, Parser)]
#[command(name = "diorama-replica", about = "λReplica-style cross-region object replication on S3-protocol stores")]
struct Cli {
    #[arg(long, value_enum)]
    role: Role,
    #[arg(long, default_value = "0.0.0.0:9000")]
    listen: SocketAddr,
    /// Store: the directory of its objects. Coordinator: the directory of its state.
    #[arg(long, default_value = "data")]
    root: PathBuf,
    #[arg(long, default_value = "region-a")]
    region: String,
    #[arg(long, default_value = "data")]
    bucket: String,
    #[arg(long, default_value = "diorama")]
    access_key: String,
    #[arg(long, default_value = "diorama-secret")]
    secret_key: String,
    /// Store: the URL events are POSTed to.
    #[arg(long)]
    notify: Option<String>,
    /// Source store URL.
    #[arg(long)]
    src: Option<String>,
    #[arg(long, default_value = "region-a")]
    src_region: String,
    /// Destination store URL.
    #[arg(long)]
    dst: Option<String>,
    #[arg(long, default_value = "region-b")]
    dst_region: String,
    /// Function platform of the source region (none: the coordinator runs its tasks).
    #[arg(long)]
    src_platform: Option<String>,
    /// Function platform of the destination region.
    #[arg(long)]
    dst_platform: Option<String>,
    /// The coordinator's URL as instances reach it.
    #[arg(long, default_value = "http://127.0.0.1:9100")]
    coordinator_url: String,
    /// Objects larger than this many bytes are copied in parts.
    #[arg(long, default_value_t = 64 << 20)]
    threshold: u64,
    #[arg(long, default_value_t = 8 << 20)]
    part_size: u64,
    #[arg(long, default_value_t = 16)]
    max_instances: u32,
    /// Lease of a lock or part claim, in seconds.
    #[arg(long, default_value_t = 15.0)]
    lease: f64,
    /// Replication-delay SLO, in seconds.
    #[arg(long, default_value_t = 10.0)]
    slo: f64,
    /// Planner model: invocation latency and ready delay (s), per-instance bandwidth (bytes/s),
    /// the same for both regions until the platform measures them.
    #[arg(long, default_value_t = 0.05)]
    invoke: f64,
    #[arg(long, default_value_t = 0.1)]
    ready: f64,
    #[arg(long, default_value_t = 12.5e6)]
    bandwidth: f64,
    /// Writer: operations, keys, hot keys, largest small object, large object size, a large
    /// object every N operations, a delete every N operations, pause between operations (ms).
    #[arg(long, default_value_t = 100)]
    ops: u32,
    #[arg(long, default_value_t = 40)]
    keys: u32,
    #[arg(long, default_value_t = 4)]
    hot: u32,
    #[arg(long, default_value_t = 256 << 10)]
    small_max: usize,
    #[arg(long, default_value_t = 16 << 20)]
    large_size: usize,
    #[arg(long, default_value_t = 0)]
    large_every: u32,
    #[arg(long, default_value_t = 0)]
    delete_every: u32,
    #[arg(long, default_value_t = 20)]
    pause_ms: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Verify: keep comparing until equal or this many seconds passed.
    #[arg(long, default_value_t = 0.0)]
    wait: f64,
    /// Writer and verify: where the JSON result goes.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Runs the binary.
pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return fail(&anyhow::Error::from(e)),
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => fail(&e),
    }
}

fn fail(err: &anyhow::Error) -> ExitCode {
    eprintln!("error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("caused by: {cause}");
    }
    ExitCode::from(3)
}

fn endpoint(cli: &Cli, url: &Option<String>, region: &str, what: &str) -> anyhow::Result<Endpoint> {
    let url = url.clone().ok_or_else(|| anyhow::anyhow!("--{what} is required for this role"))?;
    Ok(Endpoint {
        url,
        bucket: cli.bucket.clone(),
        region: region.to_owned(),
        access_key: cli.access_key.clone(),
        secret_key: cli.secret_key.clone(),
    })
}

fn write_out(path: &Option<PathBuf>, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    match path {
        Some(p) => std::fs::write(p, text + "\n").map_err(|e| anyhow::anyhow!("write {}: {e}", p.display())),
        None => {
            println!("{text}");
            Ok(())
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    match cli.role {
        Role::Store => {
            let cfg = crate::server::Config {
                root: cli.root.clone(),
                region: cli.region.clone(),
                access_key: cli.access_key.clone(),
                secret_key: cli.secret_key.clone(),
                buckets: vec![cli.bucket.clone()],
                notify: cli.notify.clone(),
            };
            let listener =
                tokio::net::TcpListener::bind(cli.listen).await.with_context(|| format!("bind {}", cli.listen))?;
            crate::server::serve(cfg, listener).await?;
        }
        Role::Coordinator => {
            std::fs::create_dir_all(&cli.root).with_context(|| format!("create {}", cli.root.display()))?;
            let state = crate::state::State::open(&cli.root.join("replica-state.db"))?;
            let chunk = 1 << 20;
            let cfg = crate::coordinator::Config {
                listen: cli.listen,
                url: cli.coordinator_url.clone(),
                src: endpoint(&cli, &cli.src, &cli.src_region, "src")?,
                dst: endpoint(&cli, &cli.dst, &cli.dst_region, "dst")?,
                platforms: vec![
                    (cli.src_region.clone(), cli.src_platform.clone()),
                    (cli.dst_region.clone(), cli.dst_platform.clone()),
                ],
                threshold: cli.threshold,
                part_size: cli.part_size,
                max_instances: cli.max_instances,
                lease: Duration::from_secs_f64(cli.lease.max(0.1)),
                slo: Duration::from_secs_f64(cli.slo.max(0.0)),
                models: [&cli.src_region, &cli.dst_region]
                    .iter()
                    .map(|r| crate::coordinator::model(r, cli.invoke, cli.ready, cli.bandwidth, chunk))
                    .collect(),
            };
            crate::coordinator::serve(cfg, state).await?;
        }
        Role::Platform => crate::platform::serve(cli.listen).await?,
        Role::Instance => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("read the task from standard input")?;
            let task: crate::task::Task = serde_json::from_str(&text).context("parse the task")?;
            crate::task::run(&task).await.map_err(|e| anyhow::anyhow!(crate::error_chain(&e)))?;
        }
        Role::Writer => {
            let ep = endpoint(&cli, &cli.src, &cli.src_region, "src")?;
            let p = crate::writer::Params {
                ops: cli.ops,
                keys: cli.keys,
                hot: cli.hot,
                small_max: cli.small_max,
                large_size: cli.large_size,
                large_every: cli.large_every,
                delete_every: cli.delete_every,
                part_size: usize::try_from(cli.part_size).unwrap_or(8 << 20),
                pause: Duration::from_millis(cli.pause_ms),
                seed: cli.seed,
            };
            let written = crate::writer::run(&ep, &p).await?;
            tracing::info!(?written, "writer done");
            // With --dst the writer then waits for convergence (the end check of a run).
            if cli.dst.is_some() {
                let dst = endpoint(&cli, &cli.dst, &cli.dst_region, "dst")?;
                let verdict = converge(&ep, &dst, &cli).await?;
                write_out(&cli.out, &serde_json::json!({"written": written, "verdict": verdict}))?;
                return Ok(if verdict.ok() { ExitCode::SUCCESS } else { ExitCode::from(1) });
            }
            write_out(&cli.out, &written)?;
        }
        Role::Verify => {
            let (src, dst) =
                (endpoint(&cli, &cli.src, &cli.src_region, "src")?, endpoint(&cli, &cli.dst, &cli.dst_region, "dst")?);
            let verdict = converge(&src, &dst, &cli).await?;
            write_out(&cli.out, &verdict)?;
            return Ok(if verdict.ok() { ExitCode::SUCCESS } else { ExitCode::from(1) });
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Compares until equal or `--wait` seconds passed; the last verdict.
async fn converge(src: &Endpoint, dst: &Endpoint, cli: &Cli) -> anyhow::Result<crate::verify::Verdict> {
    let started = std::time::Instant::now();
    loop {
        let verdict = crate::verify::compare(src, dst, cli.threshold, cli.part_size).await?;
        if verdict.ok() || started.elapsed().as_secs_f64() >= cli.wait {
            tracing::info!(equal = verdict.equal, mismatched = verdict.mismatched.len(), "verdict");
            return Ok(verdict);
        }
        tracing::info!(lagging = verdict.mismatched.len(), "not converged yet");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
