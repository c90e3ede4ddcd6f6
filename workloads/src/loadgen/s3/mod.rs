//! The S3 mode: `diorama-loadgen s3` replays an object-write trace through a real S3 client
//! (`object_store`, decision 090) on the open-loop schedule of the load generator.
//!
//! - [`trace`]: the trace (time, operation, key, size, sources; CSV or JSON Lines);
//! - [`model`]: the bytes of every version, and what the store should hold after a trace;
//! - [`changelog`]: the records (hints) written before a COPY/MOVE/CONCAT/APPEND;
//! - [`exec`]: the operations through `object_store`, as a [`crate::loadgen::Protocol`], so
//!   that scheduling, `behind` accounting, time adjustment and records are the loadgen's;
//! - [`cosgen`]: the IBM-COS-shaped generator;
//! - [`verify`]: the end check of a store against the trace.
//!
//! `docs/loadgen.md` ("S3 mode") documents the flags, the formats and the record contract.

pub mod changelog;
pub mod cosgen;
pub mod exec;
pub mod model;
pub mod trace;
pub mod verify;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{Args, ValueEnum};

use super::cli::{finish, runtime, Term};
use super::http::Target;
use super::open::{self, DispatchConfig, Issuer, Source, TraceSource};
use super::record::RunInfo;
use super::units::{duration_arg, factor_arg};
use crate::runtime::now_unix_ns;

/// Changelog records on or off (the ablation's switch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Hints {
    On,
    Off,
}

/// Flags of `diorama-loadgen s3`.
#[derive(Debug, Args)]
pub struct S3Args {
    /// The store, `http://host:port`.
    #[arg(long)]
    pub endpoint: String,
    #[arg(long, default_value = "data")]
    pub bucket: String,
    #[arg(long, default_value = "region-a")]
    pub region: String,
    #[arg(long, default_value = "diorama")]
    pub access_key: String,
    #[arg(long, default_value = "diorama-secret")]
    pub secret_key: String,
    /// The trace to replay (CSV by extension, else JSON Lines).
    #[arg(long, conflicts_with = "cos_gen")]
    pub trace: Option<PathBuf>,
    /// Replay a trace from the IBM-COS-shaped generator (`--cos-…` flags, `--seed`).
    #[arg(long)]
    pub cos_gen: bool,
    #[command(flatten)]
    pub cos: cosgen::CosParams,
    /// Seed of the generator.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write the replayed trace here too (useful with --cos-gen).
    #[arg(long)]
    pub save_trace: Option<PathBuf>,
    /// Replay speed: `2` or `200%` is twice as fast.
    #[arg(long, value_parser = factor_arg, default_value = "1")]
    pub speed: f64,
    /// Dispatch every operation this many ms ahead of its trace time (timeAdjustmentMs: the
    /// one-way delay to the store, so operations arrive on the trace's time).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub time_adjustment_ms: f64,
    /// Objects from this many bytes on are uploaded in parts.
    #[arg(long, default_value_t = 64 << 20)]
    pub multipart_threshold: u64,
    /// Bytes of a part (S3's smallest part is 5 MiB).
    #[arg(long, default_value_t = 8 << 20)]
    pub part_size: u64,
    /// Changelog records for COPY/MOVE/CONCAT/APPEND.
    #[arg(long, value_enum, default_value = "on")]
    pub hints: Hints,
    /// Attempts of a request the store refuses (4xx), 0.1 s, 0.2 s, … (at most 5 s) apart.
    #[arg(long, default_value_t = 8)]
    pub refused_attempts: u32,
    /// After the replay, check every object (bytes, ETag) and changelog record at the store;
    /// a mismatch fails the run (`s3_verify.json`).
    #[arg(long)]
    pub verify: bool,
    /// Per operation, from its scheduled start to its end.
    #[arg(long, value_parser = duration_arg, default_value = "10m")]
    pub timeout: u64,
    /// Operations in flight at most.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Async runtime threads (1 keeps the operations on one key in trace order; see docs).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    #[command(flatten)]
    pub common: crate::loadgen::cli::CommonArgs,
}

impl S3Args {
    fn upload(&self) -> anyhow::Result<model::Upload> {
        if self.part_size < 5 << 20 {
            bail!("--part-size {}: S3's smallest part is 5 MiB (5242880 bytes)", self.part_size);
        }
        if self.multipart_threshold < self.part_size {
            bail!("--multipart-threshold {} is below --part-size {}", self.multipart_threshold, self.part_size);
        }
        Ok(model::Upload { threshold: self.multipart_threshold, part_size: self.part_size })
    }

    /// The trace's rows, from `--trace` or the generator.
    pub fn rows(&self) -> anyhow::Result<Vec<trace::Row>> {
        let rows = match (&self.trace, self.cos_gen) {
            (Some(path), _) => trace::read(path)?,
            (None, true) => cosgen::generate(&self.cos, self.seed)?,
            (None, false) => bail!("give --trace FILE or --cos-gen"),
        };
        if let Some(path) = &self.save_trace {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
            }
            trace::write(path, &rows)?;
        }
        Ok(rows)
    }
}

/// Runs `diorama-loadgen s3`.
pub fn run(a: &S3Args) -> anyhow::Result<()> {
    let upload = a.upload()?;
    let rows = a.rows()?;
    let (steps, model) = model::Model::plan(&rows, upload)
        .map_err(|(line, field, reason)| anyhow!("trace line {line}: {field}: {reason}"))?;
    let ep = s3util::client::Endpoint {
        url: a.endpoint.clone(),
        bucket: a.bucket.clone(),
        region: a.region.clone(),
        access_key: a.access_key.clone(),
        secret_key: a.secret_key.clone(),
    };
    let store = s3util::client::connect(&ep).with_context(|| format!("S3 client for {}", a.endpoint))?;
    let cfg = exec::Config {
        upload,
        hints: a.hints == Hints::On,
        backoff: s3util::client::Backoff {
            first: Duration::from_millis(100),
            max: Duration::from_secs(5),
            attempts: a.refused_attempts.max(1),
        },
    };
    let events: Vec<super::trace::Event> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| super::trace::Event {
            event_id: i as u64,
            time: s.row.time,
            node_id: "0".into(),
            endpoint: format!("/{i}"),
            payload: String::new(),
            method: Some(s.row.op.to_string()),
        })
        .collect();
    let s3 = Arc::new(exec::S3::new(store, steps, cfg));
    let node = a.common.node_name.clone().unwrap_or_else(|| {
        nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "loadgen".into())
    });
    let rt = runtime(a.threads)?;
    let term = Term::install(&rt);
    let timeout = Duration::from_nanos(a.timeout);
    let issuer = Arc::new(Issuer::new(s3.clone(), a.connections, timeout, node.clone()));
    let target = Target { authority: a.endpoint.clone(), path: "/".into() };
    let base_rate = TraceSource::new(events.clone(), 0, a.speed, 0.0, target.clone(), None).base_rate;
    let start_ns = now_unix_ns() + a.common.start_delay.min(i64::MAX as u64) as i64;
    tracing::info!(operations = events.len(), objects = model.objects.len(), hints = ?a.hints, endpoint = %a.endpoint, "S3 replay starts");
    if !a.time_adjustment_ms.is_finite() {
        bail!("--time-adjustment-ms {}: must be a number of milliseconds", a.time_adjustment_ms);
    }
    let source = Source::Trace(
        TraceSource::new(events, start_ns, a.speed, a.time_adjustment_ms, target, None).classed_by_method(),
    );
    let cfg_d = DispatchConfig { spin_ns: a.common.spin, ctl: Some(a.common.ctl.clone()) };
    let outcome =
        open::run(&rt, source, issuer.clone(), cfg_d, timeout, Duration::from_nanos(a.common.drain), term.wait());
    let dir = a.common.out.clone().unwrap_or_else(|| PathBuf::from("."));
    let info = RunInfo {
        mode: "s3".into(),
        role: "standalone".into(),
        node,
        target_rps: base_rate,
        pattern: a.cos_gen.then(|| "cos-gen".to_owned()),
        seed: Some(a.seed),
        rate_changes: outcome.rate_changes,
        behind_threshold_ns: a.common.behind,
        start_ns,
    };
    finish(&dir, issuer.recorder.take(), &info, None)?;
    let ops = s3.take_log();
    exec::write_ops(&dir, &ops).with_context(|| format!("write {}", dir.join("s3_ops.csv").display()))?;
    let failed = ops.iter().filter(|o| !o.error.is_empty()).count();
    if a.verify {
        let verdict = rt.block_on(verify::verify(s3.store(), s3.steps(), &model, cfg.hints));
        let path = dir.join("s3_verify.json");
        std::fs::write(&path, serde_json::to_string_pretty(&verdict)? + "\n")
            .with_context(|| format!("write {}", path.display()))?;
        tracing::info!(
            objects = verdict.objects,
            equal = verdict.equal,
            mismatched = verdict.mismatched.len(),
            changelogs = verdict.changelog_found,
            missing = verdict.changelog_missing.len(),
            "verified"
        );
        if !verdict.ok() {
            bail!("the store does not hold what the trace wrote: see {}", path.display());
        }
    }
    if failed > 0 {
        bail!("{failed} of {} operations failed after their retries (s3_ops.csv, error column)", ops.len());
    }
    Ok(())
}
