//! The lifecycle of one experiment: prepare, start in order, supervise, stop, tear down.
//!
//! # Design
//! A [`Testbed`] owns every object of the run and tears all of them down in `Drop`, so an
//! error at any step (or a panic) still leaves nothing behind. Each object is recorded in
//! the state directory before it is created, for `diorama clean` after a `kill -9`.
//! The engine is a single-threaded polling loop: at the scale of a 2-core host with up to
//! thousands of nodes, a 10 ms tick of `try_wait` calls costs far less than the nodes.
//! Faults ([`fault`]) fire from the same loop: it sleeps until the next fault's real
//! deadline when that comes before the next tick, so a fault lands within scheduling noise
//! of its virtual time rather than up to a tick late. A node down because of a fault (killed,
//! stopped) does not fail the run.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::json;

use crate::cgroup::NodeCgroup;
use crate::container::{self, exit_code_of, InitConfig, Launch, NodeProcess, View};
use crate::events::EventLog;
use crate::metrics::{FidelityMonitor, FidelityThresholds, NodeSampler};
use crate::progress::Progress;
use crate::schedule::FaultSchedule;
use crate::spec::{NodeSpec, ReadyCheck, TestbedSpec};
use crate::state::{ProcessId, RunRecord, StateDir};

mod checks;
mod fault;
mod outcome;

pub use outcome::{host_facts, tail, NodeOutcome, RunOutcome};

/// How often the engine polls.
const TICK: Duration = Duration::from_millis(10);
/// How long a node's command may run without the shim before it is reported undilated.
const SHIM_GRACE: Duration = Duration::from_secs(1);

/// Errors of a run.
#[derive(Debug, thiserror::Error)]
pub enum TestbedError {
    #[error("create results directory {path}")]
    Results {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("record run state")]
    State(#[from] crate::state::StateError),
    #[error("set up cgroup of node {node}")]
    Cgroup {
        node: String,
        #[source]
        source: crate::cgroup::ResourceError,
    },
    #[error("prepare node {node}")]
    Prepare {
        node: String,
        #[source]
        source: std::io::Error,
    },
    #[error("start node {node}")]
    Start {
        node: String,
        #[source]
        source: container::ContainerError,
    },
    #[error("node {node} {what}\n--- last lines of {node}'s stderr ---\n{stderr}")]
    NodeFailed { node: String, what: String, stderr: String },
    #[error("set up the network")]
    Network(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error(
        "node {node} cannot be dilated: {reason} (set `allow_undilated: true` in the topology to run it undilated)"
    )]
    Undilatable { node: String, reason: String },
    #[error("apply fault {id} ({fault}): {what}")]
    Fault { id: String, fault: &'static str, what: String },
}

/// Where a run puts things and what it runs with.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub results_dir: PathBuf,
    pub state_root: PathBuf,
    /// The `diorama` executable (provides `__init`).
    pub harness_exe: PathBuf,
    /// `libdilation.so`; `None` runs undilated (only valid at TDF 1).
    pub shim: Option<PathBuf>,
    /// The `dilation-trap` launcher for Go and static programs; `None`: such a node is
    /// refused (or runs undilated when the topology allows it).
    pub trap: Option<PathBuf>,
    /// Show a live progress bar (a TTY) instead of plain lines.
    pub interactive: bool,
    /// The fault schedule (validated by the catalog before the run).
    pub faults: FaultSchedule,
    /// Thresholds of the fidelity verdict.
    pub fidelity: FidelityThresholds,
    /// Keep the host's CPUs awake with idle-class spinners for the run ([`crate::awake`]).
    pub keep_awake: bool,
}

pub(crate) struct Node {
    spec: NodeSpec,
    /// The node's network namespace when the experiment has a network.
    netns: Option<netemu::netns::NetNs>,
    /// Whether the shim was found mapped in the node's command, or the command became the
    /// trap's launcher, to which the shim hands a Go or static program (`None`: not checked
    /// yet, or the command exited first).
    shim_loaded: Option<bool>,
    /// Since when the command has been seen without the shim (it may not have exec'd yet).
    shim_missing_since: Option<Instant>,
    /// The mechanism chosen for the node's command (`None` in an undilated run).
    dilation: Option<crate::dilation_choice::NodeDilation>,
    /// What the in-node coverage and clock checks found.
    checks: crate::dilation_choice::NodeChecks,
    dir: PathBuf,
    config_path: PathBuf,
    cgroup: Option<NodeCgroup>,
    process: Option<NodeProcess>,
    exit: Option<i32>,
    stopped_by_harness: bool,
    restarts: u32,
    /// The node's clock control file.
    control: PathBuf,
    /// Down because of a fault (killed, stopped): exempt from "a node died".
    faulted: bool,
    /// A fault's `stop` sent SIGTERM; SIGKILL at this instant if still alive.
    kill_at: Option<Instant>,
    /// Restarted and waiting for its readiness check until this deadline.
    ready_by: Option<Instant>,
    paused: bool,
    /// The CFS (quota, period) in force while a `cpu` fault holds.
    cpu_override: Option<(u64, u64)>,
    /// The cgroup's CFS quota outside `cpu` faults: the planned one, with the margin of a
    /// paced node ([`crate::spec::NodeResources::cgroup_quota_us`]).
    cgroup_quota_us: Option<u64>,
}

impl Node {
    /// The mechanism dilating the node's command (`None`: undilated).
    fn mechanism(&self) -> Option<dilation::program::Mechanism> {
        self.dilation.as_ref().and_then(|d| d.mechanism())
    }
}

/// A running experiment. Dropping it tears everything down.
pub struct Testbed<'a> {
    spec: &'a TestbedSpec,
    opts: &'a RunOptions,
    model: dilation::TimeModel,
    state: Option<StateDir>,
    nodes: Vec<Node>,
    events: EventLog,
    sampler: NodeSampler,
    links: Option<crate::metrics::LinkSampler>,
    /// The running emulated network, when the topology has links.
    net: Option<Box<dyn netemu::emulator::Emulator>>,
    progress: Progress,
    started: Instant,
    torn_down: bool,
    /// Network namespaces made by `build_network`, handed to nodes as they are prepared.
    pending_netns: Vec<netemu::netns::NetNs>,
    /// The network's backend, its choice and TCP timers, for `run.json`.
    net_record: serde_json::Value,
    timeline: FaultSchedule,
    /// Link parameters a `degrade` replaced, by (fault index, link, direction), for its undo.
    saved_links: Vec<(usize, String, netemu::graph::Dir, netemu::link::LinkParams)>,
    fidelity: FidelityMonitor,
}

/// Runs the experiment to its end and tears it down. `interrupt` is set by a signal
/// handler (Ctrl-C); the run then stops its nodes in order and reports itself interrupted.
pub fn run(spec: &TestbedSpec, opts: &RunOptions, interrupt: &AtomicBool) -> Result<RunOutcome, TestbedError> {
    let t0 = Instant::now();
    // Started first and dropped last: the whole run sees awake CPUs.
    let awake = match opts.keep_awake {
        true => crate::awake::Awake::start()
            .inspect_err(|err| tracing::warn!(%err, "could not keep the CPUs awake; wake-ups will be slower"))
            .ok(),
        false => None,
    };
    // First measured before any node runs, so that it sees the host and not the run; then
    // throughout the run, since the host's decay changes with its other tenants' load.
    let cache = match opts.shim {
        Some(_) => crate::cache_decay::Watch::start(spec.tdf),
        None => None,
    };
    if let Some(first) = cache.as_ref().and_then(crate::cache_decay::Watch::first) {
        let ratio = first.ratio();
        if ratio >= crate::cache_decay::WARN_RATIO {
            crate::note!(
                "warning: the host's caches decay in real time: the same work costs {ratio:.2}x the CPU after a pause \
                 stretched to TDF {} (docs/fidelity.md, \"Cache decay\"); measured again through the run",
                dilation::tdf_text(spec.tdf)
            );
        }
    }
    let mut bed = Testbed::prepare(spec, opts)?;
    if let Some(a) = &awake {
        bed.fidelity.discount_spinners(a.cpu_reader());
    }
    let prepared = t0.elapsed();
    let t1 = Instant::now();
    let started = bed.start(interrupt);
    let start_s = t1.elapsed();
    let result = started.and_then(|()| bed.supervise(interrupt));
    let reason = match &result {
        Ok(reason) => reason.clone(),
        Err(err) => format!("{err}"),
    };
    let t2 = Instant::now();
    bed.stop_all();
    let stopped = t2.elapsed();
    let outcome = bed.outcome(&reason, interrupt.load(Ordering::Relaxed));
    outcome::print_fidelity(&outcome.fidelity);
    let t3 = Instant::now();
    bed.teardown();
    let torn = t3.elapsed();
    let timings = json!({
        "prepare_s": prepared.as_secs_f64(),
        "start_s": start_s.as_secs_f64(),
        "stop_s": stopped.as_secs_f64(),
        "teardown_s": torn.as_secs_f64(),
        "harness_peak_rss_kib": peak_rss_kib(),
    });
    let cache = cache.map(crate::cache_decay::Watch::finish);
    if let Some(w) = cache.as_ref().and_then(|c| c.warning(spec.tdf)) {
        crate::note!("warning: {w}");
    }
    bed.write_run_json(&outcome, timings, cache.as_ref());
    result.map(|_| outcome)
}

/// The harness's peak resident set size so far.
fn peak_rss_kib() -> Option<i64> {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).ok().map(|u| u.max_rss())
}

impl<'a> Testbed<'a> {
    fn prepare(spec: &'a TestbedSpec, opts: &'a RunOptions) -> Result<Self, TestbedError> {
        let results = &opts.results_dir;
        std::fs::create_dir_all(results.join("nodes"))
            .map_err(|source| TestbedError::Results { path: results.clone(), source })?;
        let events = EventLog::create(&results.join("events.jsonl"))
            .map_err(|source| TestbedError::Results { path: results.join("events.jsonl"), source })?;
        let model = dilation::TimeModel::new(spec.tdf, dilation::Epoch::now())
            .map_err(|e| TestbedError::Prepare { node: "-".into(), source: std::io::Error::other(e) })?;
        let sampler = NodeSampler::create(&results.join("nodes.csv"))
            .map_err(|source| TestbedError::Results { path: results.join("nodes.csv"), source })?;
        // What runs killed by SIGKILL (or by a crash of the host) left, empty cgroups and
        // state directories, goes now, so that leftovers never pile up waiting for `diorama
        // clean`; runs whose harness is alive are left alone.
        match crate::clean::clean(&opts.state_root, None, false, false) {
            Ok(swept) if !swept.runs.is_empty() => {
                crate::note!("cleaned what dead runs left: {}", swept.runs.join(", "));
            }
            Ok(_) => {}
            Err(e) => crate::note!("warning: could not clean what dead runs left: {e}"),
        }
        // The state last: from here on every error drops `bed`, whose teardown removes it.
        let run_id = results.file_name().map_or_else(|| spec.name.clone(), |n| n.to_string_lossy().into_owned());
        let state = StateDir::create(
            &opts.state_root,
            RunRecord {
                schema: 1,
                run_id,
                topology: spec.topology_file.display().to_string(),
                harness: ProcessId::of(std::process::id()),
                results_dir: results.clone(),
                ..RunRecord::default()
            },
        )?;
        // Unique among runs on this host (a suffix when another run holds the name).
        let run_id = state.record().run_id.clone();
        let mut bed = Self {
            spec,
            opts,
            model,
            state: Some(state),
            nodes: Vec::with_capacity(spec.nodes.len()),
            events,
            sampler,
            links: None,
            net: None,
            progress: Progress::new(opts.interactive, spec.nodes.len()),
            started: Instant::now(),
            torn_down: false,
            pending_netns: Vec::new(),
            net_record: serde_json::Value::Null,
            timeline: opts.faults.clone(),
            saved_links: Vec::new(),
            fidelity: FidelityMonitor::new(opts.fidelity, Path::new("/proc"), planned_cores(spec)),
        };
        let addresses = bed.build_network()?;
        let hosts = bed.hosts_file(&addresses)?;
        // Record every cgroup before creating any (one state write, not one per node).
        let all: Vec<String> = spec.nodes.iter().map(|n| cgroup_path(&run_id, &n.name)).collect();
        bed.state().update(|r| r.cgroups.extend(all))?;
        // One margin for every paced node: what the host's cores leave beyond the plan.
        let host_cores = std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
        let margin = crate::spec::host_margin(
            crate::spec::paced_quota_margin(),
            planned_cores(spec),
            host_cores,
            HARNESS_RESERVE_CORES,
        );
        for node in &spec.nodes {
            bed.prepare_node(node, &run_id, &hosts, margin)?;
        }
        bed.announce_dilation();
        let namespaces = std::mem::take(&mut bed.pending_netns);
        for (node, ns) in bed.nodes.iter_mut().zip(namespaces) {
            node.netns = Some(ns);
        }
        Ok(bed)
    }

    fn state(&mut self) -> &mut StateDir {
        self.state.as_mut().expect("state exists until teardown")
    }

    /// Builds the emulated network (see `network.rs`). Returns the node addresses (empty
    /// without a network).
    fn build_network(&mut self) -> Result<std::collections::BTreeMap<String, std::net::Ipv4Addr>, TestbedError> {
        let Some(built) = crate::network::build(self.spec, &self.opts.results_dir, self.model.epoch.real_ns)
            .map_err(|e| TestbedError::Network(Box::new(e)))?
        else {
            return Ok(Default::default());
        };
        self.pending_netns = built.namespaces;
        self.net = Some(built.emulator);
        self.net_record = built.record;
        self.links = Some(
            crate::metrics::LinkSampler::create(&self.opts.results_dir.join("links.csv"))
                .map_err(|source| TestbedError::Results { path: self.opts.results_dir.join("links.csv"), source })?,
        );
        Ok(built.addresses)
    }

    /// `/etc/hosts` for every node: loopback plus every node's name and address.
    fn hosts_file(
        &mut self,
        addresses: &std::collections::BTreeMap<String, std::net::Ipv4Addr>,
    ) -> Result<PathBuf, TestbedError> {
        let path = self.state().dir().join("hosts");
        let mut text = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
        for node in &self.spec.nodes {
            match addresses.get(&node.name) {
                Some(a) => text.push_str(&format!("{a}\t{}\n", node.name)),
                // Without an emulated network every node is alone.
                None => text.push_str(&format!("# {} (no emulated network)\n", node.name)),
            }
        }
        std::fs::write(&path, text).map_err(|source| TestbedError::Prepare { node: "-".into(), source })?;
        Ok(path)
    }

    /// `margin`: the paced quota margin ([`crate::spec::host_margin`]).
    fn prepare_node(&mut self, spec: &NodeSpec, run_id: &str, hosts: &Path, margin: f64) -> Result<(), TestbedError> {
        let name = spec.name.clone();
        let dir = self.opts.results_dir.join("nodes").join(&name);
        let io_err = |source| TestbedError::Prepare { node: name.clone(), source };
        std::fs::create_dir_all(&dir).map_err(io_err)?;
        let state_dir = self.state().dir().join("nodes").join(&name);
        std::fs::create_dir_all(&state_dir).map_err(io_err)?;
        let dilation = self.choose_dilation(spec)?;
        // Recorded in the state by `prepare` already: a crash from here on leaves a name.
        let mechanism = dilation.as_ref().and_then(|d| d.mechanism());
        // Both mechanisms pace (the trap from its tracer, decision 060) and share the ledger.
        let paced = self.opts.shim.is_some() && spec.resources.paced_at(self.spec.tdf);
        let quota_us = spec.resources.cgroup_quota_us(paced, margin);
        let resources = crate::spec::NodeResources { cpu_quota_us: quota_us, ..spec.resources.clone() };
        let cgroup = NodeCgroup::create(&cgroup_path(run_id, &name), &resources)
            .map_err(|source| TestbedError::Cgroup { node: name.clone(), source })?;

        let control = state_dir.join("clock");
        dilation::control::ControlFile::create(&control, &self.model).map_err(|e| io_err(std::io::Error::other(e)))?;
        let config = InitConfig {
            node: name.clone(),
            hostname: name.clone(),
            hosts_file: Some(hosts.to_owned()),
            argv: crate::dilation_choice::wrap_argv(&spec.argv, dilation.as_ref()),
            env: self.node_env(spec, &dir, &control, mechanism),
            workdir: spec.workdir.clone().unwrap_or_else(|| dir.clone()),
            user: spec.user.clone(),
            cgroup_procs: cgroup.procs_files(),
            view: Some(node_view(
                spec.filesystem.as_ref(),
                &self.opts.results_dir,
                &self.opts.state_root,
                &dir,
                &control,
            )),
        };
        let config_path = state_dir.join("init.json");
        let text = serde_json::to_vec_pretty(&config).map_err(|e| io_err(std::io::Error::other(e)))?;
        std::fs::write(&config_path, text).map_err(io_err)?;
        self.nodes.push(Node {
            spec: spec.clone(),
            dir,
            config_path,
            cgroup: Some(cgroup),
            process: None,
            exit: None,
            stopped_by_harness: false,
            restarts: 0,
            shim_loaded: None,
            shim_missing_since: None,
            dilation,
            checks: Default::default(),
            netns: None,
            control,
            faulted: false,
            kill_at: None,
            ready_by: None,
            paused: false,
            cpu_override: None,
            cgroup_quota_us: quota_us,
        });
        Ok(())
    }

    /// The environment of a node's command: a clean PATH, the dilation variables and
    /// the shim, diorama's own variables, then the user's (which win).
    fn node_env(
        &self,
        spec: &NodeSpec,
        dir: &Path,
        control: &Path,
        mechanism: Option<dilation::program::Mechanism>,
    ) -> Vec<(String, String)> {
        let mut path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
        // Last, so the host's tools win: a node's own commands find diorama's tools beside
        // it (`diorama-probe cli …` in a driver node), as its `workload:` entries do.
        if let Some(dir) = self.opts.harness_exe.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !std::env::split_paths(&path).any(|p| p == dir) {
                path = format!("{path}:{}", dir.display());
            }
        }
        let mut env = vec![
            ("PATH".to_owned(), path),
            ("HOME".to_owned(), dir.display().to_string()),
            ("DIORAMA_NODE".to_owned(), spec.name.clone()),
            ("DIORAMA_RUN_DIR".to_owned(), self.opts.results_dir.display().to_string()),
            ("DIORAMA_NODE_DIR".to_owned(), dir.display().to_string()),
            ("DIORAMA_TDF".to_owned(), self.spec.tdf.to_string()),
        ];
        if let Some(group) = &spec.group {
            env.push(("DIORAMA_GROUP".to_owned(), group.clone()));
        }
        if let Some(shim) = &self.opts.shim {
            env.extend(self.model.env());
            env.push((dilation::ENV_CONTROL.to_owned(), control.display().to_string()));
            // Under the trap the shim would dilate twice, and would dilate the tracer's own clock.
            if mechanism != Some(dilation::program::Mechanism::Trap) {
                env.push(("LD_PRELOAD".to_owned(), shim.display().to_string()));
            }
            // The shim hands the exec of a Go or static program to the trap.
            if let Some(trap) = &self.opts.trap {
                env.push((dilation::ENV_TRAP.to_owned(), trap.display().to_string()));
            }
            if let Some(speed) = spec.resources.pace_speed {
                env.push((dilation::ENV_CPU_SPEED.to_owned(), speed.to_string()));
                if let Some(cores) = spec.resources.pace_cores {
                    env.push((dilation::ENV_CPU_CORES.to_owned(), cores.to_string()));
                }
            }
        }
        for (k, v) in &spec.env {
            if let Some(slot) = env.iter_mut().find(|(key, _)| key == k) {
                slot.1.clone_from(v);
            } else {
                env.push((k.clone(), v.clone()));
            }
        }
        env
    }

    /// Virtual seconds since the run's epoch.
    fn now_virtual(&self) -> f64 {
        self.started.elapsed().as_secs_f64() / self.spec.tdf
    }

    fn real(&self, virt: Duration) -> Duration {
        virt.mul_f64(self.spec.tdf)
    }

    fn spawn_node(&mut self, idx: usize) -> Result<(), TestbedError> {
        let node = &self.nodes[idx];
        let name = node.spec.name.clone();
        let io_err = |source| TestbedError::Prepare { node: name.clone(), source };
        let open = |file: &str| std::fs::OpenOptions::new().create(true).append(true).open(node.dir.join(file));
        let stdout = open("stdout").map_err(io_err)?;
        let stderr = open("stderr").map_err(io_err)?;
        let process = container::spawn(Launch {
            node: &name,
            init_exe: &self.opts.harness_exe,
            config_path: &node.config_path,
            stdout,
            stderr,
            netns: node.netns.as_ref().map(std::os::fd::AsFd::as_fd),
        })
        .map_err(|source| TestbedError::Start { node: name.clone(), source })?;
        let t = self.now_virtual();
        self.events.write(t, "node_start", json!({"node": name, "pid": process.pid()}));
        let node = &mut self.nodes[idx];
        node.process = Some(process);
        node.exit = None;
        Ok(())
    }

    /// Starts the nodes level by level; each level waits for its readiness checks.
    fn start(&mut self, interrupt: &AtomicBool) -> Result<(), TestbedError> {
        let spec = self.spec;
        for level in &spec.levels {
            for &idx in level {
                self.spawn_node(idx)?;
            }
            // One state write per level. A node spawned but not yet recorded dies with the
            // harness anyway (PR_SET_PDEATHSIG); the record is for `diorama clean`'s checks.
            let ids: Vec<(String, ProcessId)> = level
                .iter()
                .filter_map(|&i| {
                    let n = &self.nodes[i];
                    n.process.as_ref().and_then(|p| ProcessId::of(p.pid())).map(|id| (n.spec.name.clone(), id))
                })
                .collect();
            self.state().update(|r| r.nodes.extend(ids))?;
            self.progress.nodes_up(self.running());
            self.check_shims();
            for &idx in level {
                self.wait_ready(idx, interrupt)?;
                if interrupt.load(Ordering::Relaxed) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn running(&self) -> usize {
        self.nodes.iter().filter(|n| n.process.is_some() && n.exit.is_none()).count()
    }

    fn wait_ready(&mut self, idx: usize, interrupt: &AtomicBool) -> Result<(), TestbedError> {
        let name = self.nodes[idx].spec.name.clone();
        let Some(check) = self.nodes[idx].spec.ready.clone() else {
            let t = self.now_virtual();
            self.events.write(t, "node_ready", json!({"node": name, "check": null}));
            return Ok(());
        };
        let begin = Instant::now();
        let (timeout, what) = match &check {
            ReadyCheck::Tcp { timeout, port } => (*timeout, format!("tcp port {port}")),
            ReadyCheck::Command { timeout, argv } => (*timeout, format!("command {argv:?}")),
            ReadyCheck::Delay(d) => (*d, "delay".to_owned()),
        };
        let deadline = begin + self.real(timeout);
        loop {
            if interrupt.load(Ordering::Relaxed) {
                return Ok(());
            }
            self.poll_exits();
            if let Some(code) = self.nodes[idx].exit {
                return Err(self.node_failed(idx, &format!("exited with status {code} before it was ready ({what})")));
            }
            let ready = match &check {
                ReadyCheck::Delay(_) => Instant::now() >= deadline,
                ReadyCheck::Tcp { port, .. } => self.nodes[idx]
                    .process
                    .as_ref()
                    .is_some_and(|p| crate::readiness::tcp_listening(Path::new("/proc"), p.pid(), *port)),
                ReadyCheck::Command { argv, .. } => self.run_check(idx, argv),
            };
            if ready {
                let t = self.now_virtual();
                self.events.write(t, "node_ready", json!({"node": name}));
                self.progress.event(&format!("{name} ready"));
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.node_failed(idx, &format!("was not ready within {:?} virtual ({what})", timeout)));
            }
            self.progress.tick(self.now_virtual(), self.started.elapsed(), self.running());
            std::thread::sleep(TICK.max(self.real(Duration::from_millis(5))).min(Duration::from_millis(100)));
        }
    }

    /// Runs a readiness command inside the node; true when it exits 0.
    fn run_check(&self, idx: usize, argv: &[String]) -> bool {
        let node = &self.nodes[idx];
        let (Some(process), Some((program, args))) = (&node.process, argv.split_first()) else { return false };
        let Ok((mut cmd, _held)) = container::enter_command(process.pid(), Path::new(program), &node.dir) else {
            return false;
        };
        let env = self.node_env(&node.spec, &node.dir, &node.control, node.mechanism());
        cmd.args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd.status().is_ok_and(|s| s.success())
    }

    /// Collects exits of nodes; writes their events.
    fn poll_exits(&mut self) {
        let t = self.now_virtual();
        for node in &mut self.nodes {
            if node.exit.is_some() {
                continue;
            }
            let Some(process) = node.process.as_mut() else { continue };
            if let Ok(Some(status)) = process.try_wait() {
                let code = exit_code_of(status);
                node.exit = Some(code);
                self.events.write(
                    t,
                    "node_exit",
                    json!({"node": node.spec.name, "code": code, "expected": node.stopped_by_harness || node.faulted, "faulted": node.faulted}),
                );
                self.progress.event(&format!("{} exited ({code})", node.spec.name));
            }
        }
    }

    fn node_failed(&self, idx: usize, what: &str) -> TestbedError {
        let node = &self.nodes[idx];
        TestbedError::NodeFailed {
            node: node.spec.name.clone(),
            what: what.to_owned(),
            stderr: outcome::tail(&node.dir.join("stderr")),
        }
    }

    /// Runs until the end condition; returns why it ended.
    fn supervise(&mut self, interrupt: &AtomicBool) -> Result<String, TestbedError> {
        let has_main = self.nodes.iter().any(|n| n.spec.main);
        let mut next_sample = 0.0_f64;
        let every = self.spec.sample_every.as_secs_f64();
        loop {
            if interrupt.load(Ordering::Relaxed) {
                return Ok("interrupted".into());
            }
            self.fire_faults()?;
            self.poll_exits();
            self.watch_faulted()?;
            let now = self.now_virtual();
            if now >= next_sample {
                self.check_shims();
                self.check_coverage();
                self.check_clocks();
                self.sample(now);
                next_sample += every;
            }
            // A node that dies on its own with a failure status fails the run at once; one
            // a fault brought down does not.
            if let Some(idx) = self
                .nodes
                .iter()
                .position(|n| !n.spec.main && !n.stopped_by_harness && !n.faulted && n.exit.is_some_and(|c| c != 0))
            {
                let code = self.nodes[idx].exit.unwrap_or_default();
                return Err(self.node_failed(idx, &format!("died with status {code}")));
            }
            if let Some(d) = self.spec.duration {
                if now >= d.as_secs_f64() {
                    return Ok(format!("duration {:?} (virtual) elapsed", d));
                }
            }
            // A node down because of a fault that a later step brings back is not done.
            let done = |n: &Node| n.exit.is_some() && !(n.faulted && self.timeline.pending_for(&n.spec.name));
            let mains_done = self.nodes.iter().filter(|n| n.spec.main).all(done);
            if has_main && mains_done {
                return Ok("every main node exited".into());
            }
            if !has_main && self.spec.duration.is_none() && self.nodes.iter().all(done) {
                return Ok("every node exited".into());
            }
            self.progress.tick(now, self.started.elapsed(), self.running());
            self.sleep_tick();
        }
    }

    /// Sleeps one tick, or less when the next fault is due sooner (its real deadline).
    fn sleep_tick(&self) {
        let mut nap = TICK;
        if let Some(at) = self.timeline.next_at() {
            let deadline = self.started + self.real(at);
            nap = nap.min(deadline.saturating_duration_since(Instant::now()));
        }
        if !nap.is_zero() {
            std::thread::sleep(nap);
        }
    }

    /// Looks for the shim in each running node's command (the grandchild of its `__init`)
    /// until it is found; warns once per node whose command runs without it.
    fn check_shims(&mut self) {
        if self.opts.shim.is_none() {
            return;
        }
        for node in &mut self.nodes {
            // A trapped node's command is the launcher; the coverage check looks at its tree.
            let preloaded =
                node.dilation.as_ref().is_none_or(|d| d.mechanism() == Some(dilation::program::Mechanism::Preload));
            if node.shim_loaded == Some(true) || node.exit.is_some() || !preloaded {
                continue;
            }
            let Some(p) = &node.process else { continue };
            let Some(cmd) = children(p.pid()).into_iter().flat_map(children).next() else { continue };
            match dilation::probe::shim_loaded(cmd) {
                Ok(true) => {
                    node.shim_loaded = Some(true);
                    node.shim_missing_since = None;
                }
                // The shim in the command handed its exec of a Go or static program to the
                // trap (a script that executes etcd): the command is the launcher now, and
                // the coverage check judges the program.
                Ok(false) if dilation::coverage::is_launcher(Path::new("/proc"), cmd) => {
                    node.shim_loaded = Some(true);
                    node.shim_missing_since = None;
                }
                // The process may be between fork and exec, or its loader may not have mapped
                // the preloads yet: only an absence that lasts is reported.
                Ok(false) => match node.shim_missing_since {
                    None => node.shim_missing_since = Some(Instant::now()),
                    Some(since) if since.elapsed() >= SHIM_GRACE && node.shim_loaded.is_none() => {
                        node.shim_loaded = Some(false);
                        tracing::warn!(
                            node = %node.spec.name,
                            pid = cmd,
                            "the clock shim is not loaded in the node's command (statically linked?): its time is NOT dilated"
                        );
                    }
                    Some(_) => {}
                },
                Err(_) => {}
            }
        }
    }

    fn sample(&mut self, t: f64) {
        self.fidelity.sample_host();
        for node in &self.nodes {
            if let Some(cg) = &node.cgroup {
                self.sampler.sample(t, &node.spec, cg, self.spec.tdf);
                let r = &node.spec.resources;
                let (quota, period) = node.cpu_override.unwrap_or((r.cpu_quota_us.unwrap_or(0), r.cpu_period_us));
                let cores = (quota > 0 && period > 0).then(|| quota as f64 / period as f64);
                let active = node.process.is_some() && node.exit.is_none() && !node.paused;
                self.fidelity.sample_node(&node.spec.name, cg, cores, active);
            }
        }
        if let (Some(net), Some(links)) = (&self.net, &mut self.links) {
            let late = net.lateness(0.99);
            links.sample(t, &net.samples(), late);
            self.fidelity.sample_network(late);
        }
    }

    /// Stops the nodes in reverse start order: SIGTERM, then SIGKILL after the grace period.
    /// Paused nodes are thawed first: a frozen process cannot handle a signal.
    fn stop_all(&mut self) {
        for node in &mut self.nodes {
            if node.paused {
                if let Some(cg) = &node.cgroup {
                    let _ = cg.freeze(false);
                }
                node.paused = false;
            }
        }
        let grace = self.real(self.spec.grace);
        let levels: Vec<Vec<usize>> = self.spec.levels.iter().rev().cloned().collect();
        for level in levels {
            let mut any = false;
            for &idx in &level {
                let node = &mut self.nodes[idx];
                if let (Some(p), None) = (&node.process, node.exit) {
                    node.stopped_by_harness = true;
                    let _ = p.signal(Signal::SIGTERM);
                    any = true;
                }
            }
            if !any {
                continue;
            }
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline
                && level.iter().any(|&i| self.nodes[i].process.is_some() && self.nodes[i].exit.is_none())
            {
                self.poll_exits();
                std::thread::sleep(TICK);
            }
            for &idx in &level {
                if let (Some(p), None) = (&self.nodes[idx].process, self.nodes[idx].exit) {
                    let _ = p.signal(Signal::SIGKILL);
                }
            }
            for &idx in &level {
                let node = &mut self.nodes[idx];
                if let (Some(p), None) = (node.process.as_mut(), node.exit) {
                    if let Ok(status) = p.wait() {
                        node.exit = Some(exit_code_of(status));
                    }
                }
            }
        }
        self.poll_exits();
        let t = self.now_virtual();
        self.events.write(t, "run_end", json!({}));
    }

    /// Removes every object of the run. Idempotent; errors are logged, not returned, so that
    /// one stuck object does not keep the others alive.
    fn teardown(&mut self) {
        if self.torn_down {
            return;
        }
        self.torn_down = true;
        let began = Instant::now();
        for node in &mut self.nodes {
            if let (Some(p), None) = (node.process.as_mut(), node.exit) {
                let _ = p.signal(Signal::SIGKILL);
                let _ = p.wait();
            }
        }
        let killed = began.elapsed();
        if let Some(mut net) = self.net.take() {
            let bad = net.bad_packets();
            net.shutdown();
            tracing::info!(?bad, "network down");
            // run.json (written after the teardown) records them under `network.dropped`.
            if let Some(record) = self.net_record.as_object_mut() {
                record.insert("dropped".into(), serde_json::json!(bad));
            }
        }
        for node in &mut self.nodes {
            node.netns = None;
        }
        let network = began.elapsed() - killed;
        let cgroups: Vec<(String, NodeCgroup)> =
            self.nodes.iter_mut().filter_map(|n| n.cgroup.take().map(|cg| (n.spec.name.clone(), cg))).collect();
        let failed = crate::parallel::map(cgroups, |(node, cg)| {
            cg.destroy()
                .inspect_err(
                    |err| tracing::error!(?err, node = %node, "failed to remove cgroup; `diorama clean` will retry"),
                )
                .is_err()
        });
        let clean = !failed.contains(&true);
        let cgroups = began.elapsed() - killed - network;
        if let Some(state) = self.state.take() {
            if clean {
                let parent = crate::cgroup::remove_run_parent(&state.record().run_id);
                tracing::debug!(
                    parent_s = (began.elapsed() - killed - network - cgroups).as_secs_f64(),
                    "run cgroups removed"
                );
                if let Err(err) =
                    parent.map_err(|e| e.to_string()).and_then(|()| state.remove().map_err(|e| e.to_string()))
                {
                    tracing::error!(%err, "failed to remove run state; `diorama clean` will retry");
                }
            }
        }
        tracing::debug!(
            kill_s = killed.as_secs_f64(),
            network_s = network.as_secs_f64(),
            cgroups_s = cgroups.as_secs_f64(),
            state_s = (began.elapsed() - killed - network - cgroups).as_secs_f64(),
            "teardown phases"
        );
    }
}

/// Host cores the margin of paced nodes leaves to diorama and its network emulator (the
/// planner's default reserve).
const HARNESS_RESERVE_CORES: f64 = 0.25;

/// The sum of every node's quota in host cores (for the fidelity detail and the margin).
fn planned_cores(spec: &TestbedSpec) -> f64 {
    spec.nodes
        .iter()
        .filter_map(|n| n.resources.cpu_quota_us.map(|q| q as f64 / n.resources.cpu_period_us.max(1) as f64))
        .sum()
}

impl Drop for Testbed<'_> {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Child PIDs of `pid` (all its threads), from `/proc/<pid>/task/*/children`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| c.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<u32>>())
        .collect()
}

/// The filesystem view of every node: the run's results directory and the harness's state
/// root (every run's state) read-only, except the node's own directory and its clock
/// control file (the shim writes its flags there), with the topology's own private
/// directories and read-only paths added. The holes are applied last, so a read-only path
/// that holds the results directory does not take them away.
fn node_view(
    own: Option<&crate::spec::FilesystemView>,
    results: &Path,
    state_root: &Path,
    dir: &Path,
    control: &Path,
) -> View {
    let (private, mut read_only) = own.map(|fs| (fs.private.clone(), fs.read_only.clone())).unwrap_or_default();
    read_only.extend([results.to_owned(), state_root.to_owned()]);
    View { private, read_only, writable: vec![dir.to_owned(), control.to_owned()] }
}

/// A node's cgroup path, relative to each hierarchy's root.
fn cgroup_path(run_id: &str, node: &str) -> String {
    format!("diorama/{run_id}/{node}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::FilesystemView;

    #[test]
    fn every_node_sees_the_results_and_the_state_read_only_but_its_own_files() {
        let (results, state, dir, control) = (
            Path::new("/res/run"),
            Path::new("/run/diorama"),
            Path::new("/res/run/nodes/a"),
            Path::new("/run/diorama/run/nodes/a/clock"),
        );
        let view = node_view(None, results, state, dir, control);
        assert!(view.private.is_empty());
        assert_eq!(view.read_only, [results, state]);
        assert_eq!(view.writable, [dir, control]);

        let own = FilesystemView { private: vec!["/tmp".into()], read_only: vec!["/srv".into()] };
        let view = node_view(Some(&own), results, state, dir, control);
        assert_eq!(view.private, [Path::new("/tmp")]);
        assert_eq!(view.read_only, [Path::new("/srv"), results, state]);
        assert_eq!(view.writable, [dir, control], "the holes are applied last, over every read-only tree");
    }
}
