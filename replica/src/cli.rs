//! The command line of `diorama-replica`: one binary, one `--role` per process kind, so the
//! harness passes a node's `args` as flags like for every workload.
//!
//! Exit codes: 0 success, 1 a verification that found mismatches, 2 usage, 3 runtime failure,
//! 4 an instance whose copy failed and whose coordinator took the report (it retries).
//!
//! The coordinator runs λReplica or a baseline (`--system lambda|provider|vm`); a VM-style
//! baseline's machines are a `vm-pool` node.

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
    /// A VM-style replicator's pool of VMs (starts `vm` processes).
    VmPool,
    /// One VM: runs the task lines of standard input one after another.
    Vm,
    /// The test writer.
    Writer,
    /// Compare source and destination; exit 1 on a mismatch.
    Verify,
}

/// An ablation switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Switch {
    On,
    Off,
}

impl Switch {
    fn on(self) -> bool {
        self == Switch::On
    }
}

/// The replicator a coordinator runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SystemArg {
    /// λReplica: planned function instances, the part pool, hints, batching.
    Lambda,
    /// Provider-style (as S3 Cross-Region Replication): whole objects, one stream, from the
    /// coordinator's node after `--copy-delay`, a per-object fee.
    Provider,
    /// VM-style (as Skyplane): copies run on the VM pool at `--src-platform` (or
    /// `--dst-platform`), `--streams` parallel ranges per large object.
    Vm,
}

/// How a large object's parts reach its instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AssignmentArg {
    /// Instances claim parts from the pool as they go (λReplica).
    Pool,
    /// Parts divided evenly among the planned instances up front (the ablation).
    Static,
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
    /// Store: the URLs events are POSTed to (each gets every event; repeat the flag or
    /// separate them with commas).
    #[arg(long, value_delimiter = ',')]
    notify: Vec<String>,
    /// Store: more buckets to create besides `--bucket` (separate destinations of several
    /// replicators on one store).
    #[arg(long, value_delimiter = ',')]
    buckets: Vec<String>,
    /// The destination's bucket (default: `--bucket`).
    #[arg(long)]
    dst_bucket: Option<String>,
    /// Writer and verify: check each of these buckets of `--dst` against the source (one
    /// verdict each, their sum as the verdict); none: `--dst-bucket`.
    #[arg(long, value_delimiter = ',')]
    verify_buckets: Vec<String>,
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
    /// Coordinator: seconds added to the lease of a copy being started, for its instance to
    /// wait for a platform slot and start (then its renewals keep the lease).
    #[arg(long, default_value_t = 30.0)]
    start_grace: f64,
    /// Coordinator: list both stores every this many seconds (and at start) to repair what
    /// events missed; 0 turns it off.
    #[arg(long, default_value_t = 5.0)]
    reconcile: f64,
    /// Coordinator: the state database: a `postgres://` URL (PostgreSQL), or the path of a
    /// SQLite file; none: `replica-state.db` in `--root`.
    #[arg(long)]
    state_db: Option<String>,
    /// Coordinator: the directory of `replication.jsonl`; platform: of `invocations.jsonl`.
    #[arg(long, default_value = ".")]
    records: PathBuf,
    /// Coordinator: apply COPY, MOVE, CONCAT and APPEND changelog hints at the destination.
    #[arg(long, value_enum, default_value = "on")]
    changelog: Switch,
    /// Coordinator: SLO-bounded batching (hold a written key until its deadline less T_rep
    /// less `--batch-margin`, then copy only its newest version).
    #[arg(long, value_enum, default_value = "off")]
    batching: Switch,
    /// Coordinator: seconds a batched copy starts before deadline − T_rep.
    #[arg(long, default_value_t = 0.2)]
    batch_margin: f64,
    /// Coordinator: λReplica or a baseline. The baselines neither plan, apply changelog hints
    /// nor batch (`--changelog` and `--batching` are off for them).
    #[arg(long, value_enum, default_value = "lambda")]
    system: SystemArg,
    /// Coordinator (λReplica): the part pool (`pool`) or parts divided among the planned
    /// instances up front (`static`).
    #[arg(long, value_enum, default_value = "pool")]
    assignment: AssignmentArg,
    /// Coordinator, `--system provider`: seconds from a write's event to its copy starting,
    /// drawn per copy (the forms of `--invoke`). Keep it under `--lease` + `--start-grace`.
    #[arg(long, default_value = "1")]
    copy_delay: crate::planner::Dist,
    /// Coordinator, `--system vm`: parallel range streams of one VM copying a large object.
    #[arg(long, default_value_t = 4)]
    streams: u32,
    /// Coordinator, baselines: dollars per object copied and per GB replicated (a provider's
    /// replication fees), on top of `--price-request` per S3 request and `--price-egress-gb`.
    #[arg(long, default_value_t = 0.0)]
    price_object: f64,
    #[arg(long, default_value_t = 0.0)]
    price_replicated_gb: f64,
    /// VM pool: seconds from a VM's request to its being usable, drawn per VM (the forms of
    /// `--invoke`).
    #[arg(long, default_value = "1")]
    provision: crate::planner::Dist,
    /// VM pool: seconds a VM stays up idle after its last job.
    #[arg(long, default_value_t = 60.0)]
    keep_alive: f64,
    /// VM pool: VMs at most.
    #[arg(long, default_value_t = 4)]
    max_vms: usize,
    /// VM pool: dollars per VM-hour.
    #[arg(long, default_value_t = 0.1)]
    price_vm_hour: f64,
    /// Writer: every Nth operation is a COPY, MOVE, CONCAT or APPEND (in turn) of objects
    /// it wrote, each announced by a changelog record; 0: none.
    #[arg(long, default_value_t = 0)]
    hint_every: u32,
    /// Writer: a hinted operation's sources were written at least this many seconds ago
    /// (virtual), so their copies have usually landed.
    #[arg(long, default_value_t = 1.5)]
    hint_settle: f64,
    /// Replication-delay SLO, in seconds.
    #[arg(long, default_value_t = 10.0)]
    slo: f64,
    /// Invocation latency I and ready delay D (seconds: `0.05`, `normal:MEAN,SD`,
    /// `lognormal:MU,SIGMA`): the platform draws them; the coordinator's planner assumes
    /// them for both regions until it has measured enough (`--fit-min-samples`). With the
    /// per-instance bandwidth (bytes/s) below, likewise a prior of the planner.
    #[arg(long, default_value = "0.05")]
    invoke: crate::planner::Dist,
    #[arg(long, default_value = "0.1")]
    ready: crate::planner::Dist,
    #[arg(long, default_value_t = 12.5e6)]
    bandwidth: f64,
    /// Coordinator (λReplica): samples of each of I, D, S and C kept per region (the most
    /// recent) to fit the planner's distributions to.
    #[arg(long, default_value_t = 200)]
    fit_window: usize,
    /// Coordinator (λReplica): samples of a kind measured in a region before the planner
    /// uses a log-normal fitted to them instead of `--invoke`, `--ready` and `--bandwidth`
    /// (which hold until then); 0: never (plan with the configured model throughout).
    #[arg(long, default_value_t = 8)]
    fit_min_samples: usize,
    /// Platform: each attempt's bandwidth in bytes per second, drawn per attempt from this
    /// distribution (the forms of `--invoke`, in bytes per second: `normal:MEAN,SD`,
    /// `lognormal:MU,SIGMA`): instances of one configuration differ. The instance reads no
    /// faster than its draw. Unset: every instance gets its node's link. The coordinator's
    /// planner is not told it: it sees it in the per-chunk times the instances measure.
    #[arg(long)]
    instance_bandwidth: Option<crate::planner::Dist>,
    /// Platform: concurrent instances at most (more invocations wait for a slot).
    #[arg(long, default_value_t = 1000)]
    concurrency: usize,
    /// Platform: execution time limit of an instance, in seconds.
    #[arg(long, default_value_t = 900.0)]
    time_limit: f64,
    /// Platform: retries of a failed instance before its dead-letter record.
    #[arg(long, default_value_t = 2)]
    retries: u32,
    /// Platform: an instance's memory (MiB), for GB-seconds.
    #[arg(long, default_value_t = 1024)]
    memory_mb: u32,
    /// Platform price table (dollars): per invocation, per GB-second, per S3 request, per
    /// GB of egress.
    #[arg(long, default_value_t = 2e-7)]
    price_invocation: f64,
    #[arg(long, default_value_t = 1.66667e-5)]
    price_gb_s: f64,
    #[arg(long, default_value_t = 5e-6)]
    price_request: f64,
    #[arg(long, default_value_t = 0.02)]
    price_egress_gb: f64,
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
    let bucket = match (what, &cli.dst_bucket) {
        ("dst", Some(b)) => b.clone(),
        _ => cli.bucket.clone(),
    };
    Ok(Endpoint {
        url,
        bucket,
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
                buckets: std::iter::once(cli.bucket.clone()).chain(cli.buckets.iter().cloned()).collect(),
                notify: cli.notify.clone(),
            };
            let listener =
                tokio::net::TcpListener::bind(cli.listen).await.with_context(|| format!("bind {}", cli.listen))?;
            crate::server::serve(cfg, listener).await?;
        }
        Role::Coordinator => {
            std::fs::create_dir_all(&cli.root).with_context(|| format!("create {}", cli.root.display()))?;
            let default = cli.root.join("replica-state.db");
            let state = crate::state::State::open_spec(cli.state_db.as_deref(), &default)?;
            tracing::info!(backend = state.backend(), "state database open");
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
                start_grace: Duration::from_secs_f64(cli.start_grace.max(0.0)),
                slo: Duration::from_secs_f64(cli.slo.max(0.0)),
                models: [&cli.src_region, &cli.dst_region]
                    .iter()
                    .map(|r| crate::coordinator::model(r, &cli.invoke, &cli.ready, cli.bandwidth, chunk))
                    .collect(),
                fitting: crate::fit::Fitting { window: cli.fit_window, min_samples: cli.fit_min_samples },
                reconcile: Duration::from_secs_f64(if cli.reconcile > 0.0 { cli.reconcile } else { 1e9 }),
                records: Some(cli.records.clone()),
                system: match cli.system {
                    SystemArg::Lambda => crate::coordinator::System::Lambda,
                    SystemArg::Provider => crate::coordinator::System::Provider { delay: cli.copy_delay.clone() },
                    SystemArg::Vm => crate::coordinator::System::Vm { streams: cli.streams },
                },
                assignment: match cli.assignment {
                    AssignmentArg::Pool => crate::coordinator::Assignment::Pool,
                    AssignmentArg::Static => crate::coordinator::Assignment::Static,
                },
                fee: (cli.system != SystemArg::Lambda).then_some(crate::task::Fee {
                    per_object: cli.price_object,
                    per_gb: cli.price_replicated_gb,
                    per_request: cli.price_request,
                    per_egress_gb: cli.price_egress_gb,
                }),
                // The baselines know nothing of hints or batching.
                changelog: cli.changelog.on() && cli.system == SystemArg::Lambda,
                batching: cli.batching.on() && cli.system == SystemArg::Lambda,
                batch_margin: Duration::from_secs_f64(cli.batch_margin.max(0.0)),
            };
            crate::coordinator::serve(cfg, state).await?;
        }
        Role::Platform => {
            let model = crate::platform::Model {
                invoke: cli.invoke.clone(),
                ready: cli.ready.clone(),
                concurrency: cli.concurrency,
                time_limit: Duration::from_secs_f64(cli.time_limit.max(0.001)),
                retries: cli.retries,
                memory_mb: cli.memory_mb,
                prices: crate::platform::Prices {
                    per_invocation: cli.price_invocation,
                    per_gb_second: cli.price_gb_s,
                    per_request: cli.price_request,
                    per_egress_gb: cli.price_egress_gb,
                },
                seed: cli.seed,
                bandwidth: cli.instance_bandwidth.clone(),
            };
            std::fs::create_dir_all(&cli.records).with_context(|| format!("create {}", cli.records.display()))?;
            crate::platform::serve(cli.listen, model, &cli.records).await?
        }
        Role::VmPool => {
            let model = crate::vm::Model {
                provision: cli.provision.clone(),
                keep_alive: Duration::from_secs_f64(cli.keep_alive.max(0.0)),
                max_vms: cli.max_vms,
                price_per_hour: cli.price_vm_hour,
                seed: cli.seed,
            };
            std::fs::create_dir_all(&cli.records).with_context(|| format!("create {}", cli.records.display()))?;
            crate::vm::serve(cli.listen, model, &cli.records).await?
        }
        Role::Vm => crate::vm::worker().await.context("run the VM's jobs")?,
        Role::Instance => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("read the task from standard input")?;
            let task: crate::task::Task = serde_json::from_str(&text).context("parse the task")?;
            let meter = crate::task::Meter::default();
            let result = crate::task::run_metered(&task, &meter).await;
            // What it used, for the platform's bill, whether the copy succeeded or not.
            println!("{}", serde_json::to_string(&meter)?);
            match result {
                Err(e) if e.superseded() => tracing::info!(key = %task.key, job = %task.job, "superseded: {e}"),
                Err(e) if e.reported() => {
                    eprintln!("error: {}", crate::error_chain(&e));
                    return Ok(ExitCode::from(crate::platform::REPORTED_EXIT));
                }
                r => r.map_err(|e| anyhow::anyhow!(crate::error_chain(&e)))?,
            }
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
                hint_every: cli.hint_every,
                hint_settle: Duration::from_secs_f64(cli.hint_settle.max(0.0)),
            };
            let written = crate::writer::run(&ep, &p).await?;
            tracing::info!(?written, "writer done");
            // With --dst the writer then waits for convergence (the end check of a run).
            if cli.dst.is_some() {
                let (verdict, each) = converge_all(&ep, &cli).await?;
                let ok = verdict.ok();
                write_out(
                    &cli.out,
                    &serde_json::json!({"written": written, "verdict": verdict, "destinations": each}),
                )?;
                return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) });
            }
            write_out(&cli.out, &written)?;
        }
        Role::Verify => {
            let src = endpoint(&cli, &cli.src, &cli.src_region, "src")?;
            let (verdict, each) = converge_all(&src, &cli).await?;
            let ok = verdict.ok();
            if cli.verify_buckets.is_empty() {
                write_out(&cli.out, &verdict)?;
            } else {
                write_out(&cli.out, &serde_json::json!({"verdict": verdict, "destinations": each}))?;
            }
            return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) });
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Converges `src` with each destination bucket (`--verify-buckets`, else the one of
/// `--dst-bucket`), one after another within one `--wait`: their verdicts by bucket and
/// their sum (mismatches named `bucket: …`).
async fn converge_all(
    src: &Endpoint,
    cli: &Cli,
) -> anyhow::Result<(crate::verify::Verdict, std::collections::BTreeMap<String, crate::verify::Verdict>)> {
    let dst = endpoint(cli, &cli.dst, &cli.dst_region, "dst")?;
    if cli.verify_buckets.is_empty() {
        let v = converge(src, &dst, cli, std::time::Instant::now()).await?;
        return Ok((v, std::collections::BTreeMap::new()));
    }
    let started = std::time::Instant::now();
    let mut sum = crate::verify::Verdict::default();
    let mut each = std::collections::BTreeMap::new();
    for bucket in &cli.verify_buckets {
        let dst = Endpoint { bucket: bucket.clone(), ..dst.clone() };
        let v = converge(src, &dst, cli, started).await?;
        sum.source_objects += v.source_objects;
        sum.equal += v.equal;
        sum.mismatched.extend(v.mismatched.iter().map(|m| format!("{bucket}: {m}")));
        each.insert(bucket.clone(), v);
    }
    Ok((sum, each))
}

/// Compares until equal or `--wait` seconds passed since `started`; the last verdict. The listings are
/// polled (cheap), and every object is read and compared once they agree or time is up.
async fn converge(
    src: &Endpoint,
    dst: &Endpoint,
    cli: &Cli,
    started: std::time::Instant,
) -> anyhow::Result<crate::verify::Verdict> {
    loop {
        let out_of_time = started.elapsed().as_secs_f64() >= cli.wait;
        if !out_of_time {
            if let Some(lag) = crate::verify::listings_disagree(src, dst).await? {
                tracing::info!(%lag, "not converged yet");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        }
        let verdict = crate::verify::compare(src, dst, cli.threshold, cli.part_size).await?;
        if verdict.ok() || out_of_time {
            tracing::info!(
                equal = verdict.equal,
                mismatched = verdict.mismatched.len(),
                elapsed_s = started.elapsed().as_secs_f64(),
                "verdict"
            );
            return Ok(verdict);
        }
        tracing::info!(lagging = verdict.mismatched.len(), "not converged yet");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
