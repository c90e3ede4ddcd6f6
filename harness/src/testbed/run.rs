//! The lifecycle of one experiment: prepare, start in order, supervise, stop, tear down.
//!
//! # Design
//! A [`Testbed`] owns every object of the run and tears all of them down in `Drop`, so an
//! error at any step (or a panic) still leaves nothing behind. Each object is recorded in
//! the state directory before it is created, for `diorama clean` after a `kill -9`.
//! The engine is a single-threaded polling loop: at the scale of a 2-core host with up to
//! thousands of nodes, a 10 ms tick of `try_wait` calls costs far less than the nodes.
//! Faults (`crate::fault`) fire from the same loop: it sleeps until the next fault's real
//! deadline when that comes before the next tick, so a fault lands within scheduling noise
//! of its virtual time rather than up to a tick late. A node down because of a fault (killed,
//! stopped) does not fail the run.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::json;

use super::events::EventLog;
use super::metrics::{Fidelity, FidelityFlag, FidelityMonitor, FidelityThresholds, NodeSampler};
use crate::fault::{Action, Fault, Phase, Step, Timeline};
use super::progress::Progress;
use super::resources::NodeCgroup;
use super::spec::{NodeSpec, ReadyCheck, TestbedSpec};
use crate::container::{self, exit_code_of, InitConfig, Launch, NodeProcess};
use crate::state::{ProcessId, RunRecord, StateDir};

/// How often the engine polls.
const TICK: Duration = Duration::from_millis(10);
/// How long a node's command may run without the shim before it is reported undilated.
const SHIM_GRACE: Duration = Duration::from_secs(1);
/// Bytes of a failed node's stderr shown in the error.
const STDERR_TAIL: usize = 2000;

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
        source: super::resources::ResourceError,
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
    /// Show a live progress bar (a TTY) instead of plain lines.
    pub interactive: bool,
    /// The fault timeline (validated; see `crate::fault`).
    pub faults: Vec<Fault>,
    /// Thresholds of the fidelity verdict.
    pub fidelity: FidelityThresholds,
}

/// The fate of one node.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeOutcome {
    pub name: String,
    pub main: bool,
    pub started: bool,
    /// Exit code (128 + signal when killed); `None` if it was still running at the end.
    pub exit: Option<i32>,
    /// Whether the harness stopped it at the end of the run (then any exit is expected).
    pub stopped_by_harness: bool,
    pub restarts: u32,
    /// Down at the end because of a fault (killed or stopped and not started again): its
    /// exit does not fail the run.
    pub faulted: bool,
    /// Whether `libdilation.so` was mapped in the node's command (`null`: not seen, e.g.
    /// it exited before the check).
    pub shim_loaded: Option<bool>,
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub results_dir: PathBuf,
    pub success: bool,
    pub interrupted: bool,
    pub reason: String,
    pub nodes: Vec<NodeOutcome>,
    pub virtual_elapsed: Duration,
    pub real_elapsed: Duration,
    pub fidelity: Fidelity,
}

struct Node {
    spec: NodeSpec,
    /// The node's network namespace when the experiment has a network.
    netns: Option<netem::netns::NetNs>,
    /// Whether the shim was found mapped in the node's command (`None`: not checked yet,
    /// or the command exited first).
    shim_loaded: Option<bool>,
    /// Since when the command has been seen without the shim (it may not have exec'd yet).
    shim_missing_since: Option<Instant>,
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
    links: Option<super::metrics::LinkSampler>,
    /// The running emulated network, when the topology has links.
    net: Option<Box<dyn netem::emulator::Emulator>>,
    progress: Progress,
    started: Instant,
    torn_down: bool,
    /// Network namespaces made by `build_network`, handed to nodes as they are prepared.
    pending_netns: Vec<netem::netns::NetNs>,
    /// The network's backend, its choice and TCP timers, for `run.json`.
    net_record: serde_json::Value,
    timeline: Timeline,
    /// Link parameters a `degrade` replaced, by (fault index, link, direction), for its undo.
    saved_links: Vec<(usize, String, netem::graph::Dir, netem::link::LinkParams)>,
    fidelity: FidelityMonitor,
}

/// Runs the experiment to its end and tears it down. `interrupt` is set by a signal
/// handler (Ctrl-C); the run then stops its nodes in order and reports itself interrupted.
pub fn run(spec: &TestbedSpec, opts: &RunOptions, interrupt: &AtomicBool) -> Result<RunOutcome, TestbedError> {
    let t0 = Instant::now();
    let mut bed = Testbed::prepare(spec, opts)?;
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
    print_fidelity(&outcome.fidelity);
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
    bed.write_run_json(&outcome, timings);
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
        let run_id = results
            .file_name()
            .map_or_else(|| spec.name.clone(), |n| n.to_string_lossy().into_owned());
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
        let events = EventLog::create(&results.join("events.jsonl"))
            .map_err(|source| TestbedError::Results { path: results.join("events.jsonl"), source })?;
        let model = dilation::TimeModel::new(spec.tdf, dilation::Epoch::now())
            .map_err(|e| TestbedError::Prepare { node: "-".into(), source: std::io::Error::other(e) })?;
        let sampler = NodeSampler::create(&results.join("nodes.csv"))
            .map_err(|source| TestbedError::Results { path: results.join("nodes.csv"), source })?;
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
            timeline: Timeline::new(opts.faults.clone()),
            saved_links: Vec::new(),
            fidelity: FidelityMonitor::new(opts.fidelity, Path::new("/proc"), planned_cores(spec)),
        };
        let addresses = bed.build_network()?;
        let hosts = bed.hosts_file(&addresses)?;
        // Record every cgroup before creating any (one state write, not one per node).
        let all: Vec<String> = spec.nodes.iter().map(|n| cgroup_path(&run_id, &n.name)).collect();
        bed.state().update(|r| r.cgroups.extend(all))?;
        for node in &spec.nodes {
            bed.prepare_node(node, &run_id, &hosts)?;
        }
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
        let Some(built) = super::network::build(self.spec).map_err(|e| TestbedError::Network(Box::new(e)))? else {
            return Ok(Default::default());
        };
        self.pending_netns = built.namespaces;
        self.net = Some(built.emulator);
        self.net_record = built.record;
        self.links = Some(
            super::metrics::LinkSampler::create(&self.opts.results_dir.join("links.csv"))
                .map_err(|source| TestbedError::Results { path: self.opts.results_dir.join("links.csv"), source })?,
        );
        Ok(built.addresses)
    }

    /// `/etc/hosts` for every node: loopback plus every node's name and address.
    fn hosts_file(&mut self, addresses: &std::collections::BTreeMap<String, std::net::Ipv4Addr>) -> Result<PathBuf, TestbedError> {
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

    fn prepare_node(&mut self, spec: &NodeSpec, run_id: &str, hosts: &Path) -> Result<(), TestbedError> {
        let name = spec.name.clone();
        let dir = self.opts.results_dir.join("nodes").join(&name);
        let io_err = |source| TestbedError::Prepare { node: name.clone(), source };
        std::fs::create_dir_all(&dir).map_err(io_err)?;
        let state_dir = self.state().dir().join("nodes").join(&name);
        std::fs::create_dir_all(&state_dir).map_err(io_err)?;
        // Recorded in the state by `prepare` already: a crash from here on leaves a name.
        let cgroup = NodeCgroup::create(&cgroup_path(run_id, &name), &spec.resources)
            .map_err(|source| TestbedError::Cgroup { node: name.clone(), source })?;

        let control = state_dir.join("clock");
        dilation::control::ControlFile::create(&control, &self.model)
            .map_err(|e| io_err(std::io::Error::other(e)))?;
        let config = InitConfig {
            node: name.clone(),
            hostname: name.clone(),
            hosts_file: Some(hosts.to_owned()),
            argv: spec.argv.clone(),
            env: self.node_env(spec, &dir, &control),
            workdir: spec.workdir.clone().unwrap_or_else(|| dir.clone()),
            user: spec.user.clone(),
            cgroup_procs: cgroup.procs_files(),
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
            netns: None,
            control,
            faulted: false,
            kill_at: None,
            ready_by: None,
            paused: false,
            cpu_override: None,
        });
        Ok(())
    }

    /// The environment of a node's command: a clean PATH, the dilation variables and
    /// the shim, diorama's own variables, then the user's (which win).
    fn node_env(&self, spec: &NodeSpec, dir: &Path, control: &Path) -> Vec<(String, String)> {
        let mut env = vec![
            ("PATH".to_owned(), std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into())),
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
            env.push(("LD_PRELOAD".to_owned(), shim.display().to_string()));
            if let Some(speed) = spec.resources.pace_speed {
                env.push((dilation::ENV_CPU_SPEED.to_owned(), speed.to_string()));
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
        let open = |file: &str| {
            std::fs::OpenOptions::new().create(true).append(true).open(node.dir.join(file))
        };
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
                return Err(self.node_failed(
                    idx,
                    &format!("was not ready within {:?} virtual ({what})", timeout),
                ));
            }
            self.progress.tick(self.now_virtual(), self.started.elapsed(), self.running());
            std::thread::sleep(TICK.max(self.real(Duration::from_millis(5))).min(Duration::from_millis(100)));
        }
    }

    /// Runs a readiness command inside the node; true when it exits 0.
    fn run_check(&self, idx: usize, argv: &[String]) -> bool {
        let node = &self.nodes[idx];
        let (Some(process), Some((program, args))) = (&node.process, argv.split_first()) else { return false };
        let Ok((mut cmd, _held)) = container::enter_command(process.pid(), Path::new(program), &node.dir)
        else {
            return false;
        };
        let env = self.node_env(&node.spec, &node.dir, &node.control);
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
        TestbedError::NodeFailed { node: node.spec.name.clone(), what: what.to_owned(), stderr: tail(&node.dir.join("stderr")) }
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
                self.sample(now);
                next_sample += every;
            }
            // A node that dies on its own with a failure status fails the run at once; one
            // a fault brought down does not.
            if let Some(idx) = self.nodes.iter().position(|n| {
                !n.spec.main && !n.stopped_by_harness && !n.faulted && n.exit.is_some_and(|c| c != 0)
            }) {
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
            if node.shim_loaded == Some(true) || node.exit.is_some() {
                continue;
            }
            let Some(p) = &node.process else { continue };
            let Some(cmd) = children(p.pid()).into_iter().flat_map(children).next() else { continue };
            match dilation::probe::shim_loaded(cmd) {
                Ok(true) => {
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
            while Instant::now() < deadline && level.iter().any(|&i| self.nodes[i].process.is_some() && self.nodes[i].exit.is_none()) {
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

    fn outcome(&mut self, reason: &str, interrupted: bool) -> RunOutcome {
        let nodes: Vec<NodeOutcome> = self
            .nodes
            .iter()
            .map(|n| NodeOutcome {
                name: n.spec.name.clone(),
                main: n.spec.main,
                started: n.process.is_some(),
                exit: n.exit,
                stopped_by_harness: n.stopped_by_harness,
                restarts: n.restarts,
                faulted: n.faulted,
                shim_loaded: n.shim_loaded,
            })
            .collect();
        let mains: Vec<&NodeOutcome> = nodes.iter().filter(|n| n.main).collect();
        let success = !interrupted
            && nodes.iter().all(|n| n.started)
            && if mains.is_empty() {
                nodes.iter().all(|n| n.stopped_by_harness || n.faulted || n.exit == Some(0))
            } else {
                mains.iter().all(|n| n.exit == Some(0))
            };
        RunOutcome {
            results_dir: self.opts.results_dir.clone(),
            success,
            interrupted,
            reason: reason.to_owned(),
            nodes,
            virtual_elapsed: Duration::from_secs_f64(self.now_virtual()),
            real_elapsed: self.started.elapsed(),
            fidelity: self.fidelity.finish(self.shim_flags()),
        }
    }

    /// `shim_missing` and `shim_error` flags, from the shim checks and each node's control file.
    fn shim_flags(&self) -> Vec<FidelityFlag> {
        let mut flags = Vec::new();
        if self.opts.shim.is_none() {
            return flags;
        }
        for n in &self.nodes {
            if n.shim_loaded == Some(false) {
                flags.push(FidelityFlag {
                    kind: "shim_missing",
                    node: Some(n.spec.name.clone()),
                    link: None,
                    detail: "the clock shim was not loaded in the node's command (statically linked?): its time was not dilated".into(),
                });
            }
            match dilation::control::ControlFile::open(&n.control).and_then(|c| c.stats()) {
                Ok(st) if st.errors > 0 => flags.push(FidelityFlag {
                    kind: "shim_error",
                    node: Some(n.spec.name.clone()),
                    link: None,
                    detail: format!("the clock shim counted {} internal errors (each fell back to the undilated call)", st.errors),
                }),
                Ok(_) => {}
                Err(err) => tracing::warn!(?err, node = %n.spec.name, "failed to read the shim's error counter"),
            }
        }
        flags
    }

    fn write_run_json(&self, outcome: &RunOutcome, timings: serde_json::Value) {
        let run = json!({
            "schema": 1,
            "name": self.spec.name,
            "topology_file": self.spec.topology_file,
            "tdf": self.spec.tdf,
            "epoch": {"real_ns": self.model.epoch.real_ns, "virt_ns": self.model.epoch.virt_ns},
            "plan": self.spec.plan,
            "topology": self.spec.topology,
            "host": crate::testbed::host_facts(),
            "versions": {"diorama": env!("CARGO_PKG_VERSION")},
            "started_at": chrono::Utc::now().checked_sub_signed(chrono::Duration::from_std(outcome.real_elapsed).unwrap_or_default()).map(|t| t.to_rfc3339()),
            "ended_at": chrono::Utc::now().to_rfc3339(),
            "virtual_duration_s": outcome.virtual_elapsed.as_secs_f64(),
            "real_duration_s": outcome.real_elapsed.as_secs_f64(),
            "shim": self.opts.shim,
            "network": self.net_record,
            "nodes": outcome.nodes,
            "success": outcome.success,
            "interrupted": outcome.interrupted,
            "end_reason": outcome.reason,
            "fidelity": outcome.fidelity,
            "faults": self.timeline.faults().iter().map(|f| json!({
                "id": f.id, "name": f.name, "fault": f.action.kind(), "targets": f.action.targets(),
                "at_s": f.at.as_secs_f64(), "for_s": f.undo_after.map(|d| d.as_secs_f64()),
            })).collect::<Vec<_>>(),
            "timings": timings,
        });
        let path = self.opts.results_dir.join("run.json");
        if let Err(err) = serde_json::to_vec_pretty(&run).map_err(std::io::Error::other).and_then(|b| std::fs::write(&path, b)) {
            tracing::error!(?err, path = %path.display(), "failed to write run.json");
        }
    }

    /// Removes every object of the run. Idempotent; errors are logged, not returned, so that
    /// one stuck object does not keep the others alive.
    fn teardown(&mut self) {
        if self.torn_down {
            return;
        }
        self.torn_down = true;
        for node in &mut self.nodes {
            if let (Some(p), None) = (node.process.as_mut(), node.exit) {
                let _ = p.signal(Signal::SIGKILL);
                let _ = p.wait();
            }
        }
        if let Some(mut net) = self.net.take() {
            let (malformed, unroutable) = net.bad_packets();
            net.shutdown();
            tracing::info!(malformed, unroutable, "network down");
        }
        for node in &mut self.nodes {
            node.netns = None;
        }
        let mut clean = true;
        for node in self.nodes.iter_mut().rev() {
            if let Some(cg) = node.cgroup.take() {
                if let Err(err) = cg.destroy() {
                    clean = false;
                    tracing::error!(?err, node = %node.spec.name, "failed to remove cgroup; `diorama clean` will retry");
                }
            }
        }
        if let Some(state) = self.state.take() {
            if clean {
                if let Err(err) = super::resources::remove_run_parent(&state.record().run_id).map_err(|e| e.to_string()).and_then(|()| state.remove().map_err(|e| e.to_string())) {
                    tracing::error!(%err, "failed to remove run state; `diorama clean` will retry");
                }
            }
        }
    }
}

/// The fault engine: applies each step of the timeline when it is due.
impl Testbed<'_> {
    fn index_of(&self, node: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.spec.name == node)
    }

    /// Applies every step due by now.
    fn fire_faults(&mut self) -> Result<(), TestbedError> {
        loop {
            let now = Duration::from_secs_f64(self.now_virtual());
            let Some(step) = self.timeline.pop_due(now) else { return Ok(()) };
            self.apply(step)?;
        }
    }

    /// Writes the `fault` / `recover` event of a step (contract 5).
    fn fault_event(&mut self, fault: &Fault, step: Step) {
        let kind = if step.phase == Phase::Undo || fault.action.is_recovery() { "recover" } else { "fault" };
        let mut fields = json!({
            "fault": fault.action.kind(),
            "id": fault.id,
            "name": fault.name,
            "targets": fault.action.targets(),
            "scheduled_s": step.at.as_secs_f64(),
        });
        if let (serde_json::Value::Object(f), serde_json::Value::Object(p)) = (&mut fields, fault.action.params()) {
            if step.phase == Phase::Do {
                f.extend(p);
            }
        }
        let t = self.now_virtual();
        self.events.write(t, kind, fields);
        let what = if kind == "fault" { "fault" } else { "recover" };
        self.progress.event(&format!("{what} {} {}", fault.action.kind(), fault.action.targets().join(",")));
        tracing::info!(id = %fault.id, fault = fault.action.kind(), phase = ?step.phase, t_virtual_s = t, "fault step");
    }

    fn apply(&mut self, step: Step) -> Result<(), TestbedError> {
        let fault = self.timeline.faults()[step.fault].clone();
        self.fault_event(&fault, step);
        let fail = |what: String| TestbedError::Fault { id: fault.id.clone(), fault: fault.action.kind(), what };
        let undo = step.phase == Phase::Undo;
        match (&fault.action, undo) {
            (Action::Kill(nodes), false) => self.each(nodes, |bed, i| bed.kill(i, Signal::SIGKILL))?,
            (Action::Stop(nodes), false) => self.each(nodes, |bed, i| bed.kill(i, Signal::SIGTERM))?,
            (Action::Kill(nodes) | Action::Stop(nodes), true) | (Action::Start(nodes), _) => {
                self.each(nodes, |bed, i| bed.start_again(i, false))?;
            }
            (Action::Restart(nodes), _) => self.each(nodes, |bed, i| bed.start_again(i, true))?,
            (Action::Pause(nodes), u) => self.each(nodes, |bed, i| bed.pause(i, !u).map_err(&fail))?,
            (Action::Resume(nodes), _) => self.each(nodes, |bed, i| bed.pause(i, false).map_err(&fail))?,
            (Action::Cpu { nodes, fraction }, u) => {
                let f = if u { None } else { Some(*fraction) };
                self.each(nodes, |bed, i| bed.set_cpu(i, f).map_err(&fail))?;
            }
            (Action::ClockStep { nodes, offset_ns }, u) => {
                let off = if u { -offset_ns } else { *offset_ns };
                self.each(nodes, |bed, i| bed.clock(i, Some(off), None).map_err(&fail))?;
            }
            (Action::ClockSkew { nodes, rate }, u) => {
                let r = if u { 1.0 } else { *rate };
                self.each(nodes, |bed, i| bed.clock(i, None, Some(r)).map_err(&fail))?;
            }
            (Action::LinkDown(links), u) => {
                for l in links {
                    self.net_mut().map_err(&fail)?.set_down(l, !u).map_err(|e| fail(e.to_string()))?;
                    self.link_event(json!({"link": l, "state": if u { "up" } else { "down" }}));
                }
            }
            (Action::LinkUp(links), _) => {
                for l in links {
                    self.net_mut().map_err(&fail)?.set_down(l, false).map_err(|e| fail(e.to_string()))?;
                    self.link_event(json!({"link": l, "state": "up"}));
                }
            }
            (Action::Partition(sides), false) => {
                self.net_mut().map_err(&fail)?.partition(sides).map_err(|e| fail(e.to_string()))?;
                self.link_event(json!({"link": null, "state": "partitioned", "sides": sides}));
            }
            (Action::Partition(_), true) | (Action::Heal, _) => {
                self.net_mut().map_err(&fail)?.heal().map_err(|e| fail(e.to_string()))?;
                self.link_event(json!({"link": null, "state": "healed"}));
            }
            (Action::Degrade(d), false) => self.degrade(step.fault, d).map_err(&fail)?,
            (Action::Degrade(_), true) => self.restore_links(step.fault).map_err(&fail)?,
            (Action::Inflate { nodes, delay }, u) => {
                let extra = if u { Duration::ZERO } else { *delay };
                for n in nodes {
                    self.net_mut().map_err(&fail)?.inflate(n, extra).map_err(|e| fail(e.to_string()))?;
                    self.link_event(json!({"link": null, "node": n, "state": if u { "normal" } else { "inflated" }, "extra_delay_s": extra.as_secs_f64()}));
                }
            }
            (Action::Load { nodes, rate }, _) => {
                for n in nodes {
                    let Some(i) = self.index_of(n) else { continue };
                    let dir = self.nodes[i].spec.workdir.clone().unwrap_or_else(|| self.nodes[i].dir.clone());
                    write_load_ctl(&dir, *rate).map_err(|e| fail(format!("write {}/loadgen.ctl: {e}", dir.display())))?;
                    let t = self.now_virtual();
                    self.events.write(t, "load_state", json!({"node": n, "rate": rate, "file": dir.join("loadgen.ctl")}));
                }
            }
        }
        Ok(())
    }

    fn each(&mut self, nodes: &[String], mut f: impl FnMut(&mut Self, usize) -> Result<(), TestbedError>) -> Result<(), TestbedError> {
        for n in nodes {
            if let Some(i) = self.index_of(n) {
                f(self, i)?;
            }
        }
        Ok(())
    }

    fn net_mut(&mut self) -> Result<&mut Box<dyn netem::emulator::Emulator>, String> {
        self.net.as_mut().ok_or_else(|| "the run has no emulated network".to_owned())
    }

    fn link_event(&mut self, fields: serde_json::Value) {
        let t = self.now_virtual();
        self.events.write(t, "link_state", fields);
    }

    fn node_event(&mut self, idx: usize, state: &str, extra: serde_json::Value) {
        let mut fields = json!({"node": self.nodes[idx].spec.name, "state": state});
        if let (serde_json::Value::Object(f), serde_json::Value::Object(e)) = (&mut fields, extra) {
            f.extend(e);
        }
        let t = self.now_virtual();
        self.events.write(t, "node_state", fields);
    }

    /// `kill` (SIGKILL) or `stop` (SIGTERM, SIGKILL after the grace period) of one node.
    /// SIGKILL of `__init` takes the node's PID 1 with it (PDEATHSIG), and with PID 1 every
    /// process of the node's PID namespace.
    fn kill(&mut self, idx: usize, signal: Signal) -> Result<(), TestbedError> {
        let grace = self.real(self.spec.grace);
        let node = &mut self.nodes[idx];
        node.faulted = true;
        node.ready_by = None;
        if node.paused {
            // Frozen tasks act on no signal, SIGKILL included, until thawed.
            if let Some(cg) = &node.cgroup {
                let _ = cg.freeze(false);
            }
            node.paused = false;
        }
        if let (Some(p), None) = (&node.process, node.exit) {
            let _ = p.signal(signal);
            if signal != Signal::SIGKILL {
                node.kill_at = Some(Instant::now() + grace);
            }
        }
        Ok(())
    }

    /// Starts a node's command again through the container code path: same configuration,
    /// cgroups and network namespace. `kill_first`: a running node is killed first (restart).
    fn start_again(&mut self, idx: usize, kill_first: bool) -> Result<(), TestbedError> {
        if self.nodes[idx].exit.is_none() && self.nodes[idx].process.is_some() {
            if !kill_first {
                tracing::info!(node = %self.nodes[idx].spec.name, "start: the node is running; nothing to do");
                return Ok(());
            }
            self.nodes[idx].faulted = true;
            if let Some(p) = &self.nodes[idx].process {
                let _ = p.signal(Signal::SIGKILL);
            }
            if let Some(p) = self.nodes[idx].process.as_mut() {
                let _ = p.wait();
            }
            self.poll_exits();
        }
        let node = &mut self.nodes[idx];
        if node.paused {
            if let Some(cg) = &node.cgroup {
                let _ = cg.freeze(false);
            }
            node.paused = false;
        }
        node.kill_at = None;
        node.restarts += 1;
        if node.shim_loaded == Some(true) {
            node.shim_loaded = None;
        }
        node.shim_missing_since = None;
        let name = node.spec.name.clone();
        self.fidelity.reset_node(&name);
        self.spawn_node(idx)?;
        self.nodes[idx].faulted = false;
        if let Some(id) = self.nodes[idx].process.as_ref().and_then(|p| ProcessId::of(p.pid())) {
            self.state().update(|r| {
                r.nodes.insert(name.clone(), id);
            })?;
        }
        let timeout = match &self.nodes[idx].spec.ready {
            Some(ReadyCheck::Tcp { timeout, .. } | ReadyCheck::Command { timeout, .. }) => Some(*timeout),
            Some(ReadyCheck::Delay(d)) => Some(*d),
            None => None,
        };
        match timeout {
            Some(t) => self.nodes[idx].ready_by = Some(Instant::now() + self.real(t)),
            None => {
                let t = self.now_virtual();
                self.events.write(t, "node_ready", json!({"node": name, "check": null, "restarts": self.nodes[idx].restarts}));
            }
        }
        Ok(())
    }

    /// Follows up nodes that faults act on: SIGKILL after a `stop`'s grace period, and the
    /// readiness check of restarted nodes (polled, so other faults keep their times).
    fn watch_faulted(&mut self) -> Result<(), TestbedError> {
        for idx in 0..self.nodes.len() {
            let node = &mut self.nodes[idx];
            if let (Some(at), Some(p), None) = (node.kill_at, &node.process, node.exit) {
                if Instant::now() >= at {
                    let _ = p.signal(Signal::SIGKILL);
                    node.kill_at = None;
                }
            }
            let Some(deadline) = self.nodes[idx].ready_by else { continue };
            if let Some(code) = self.nodes[idx].exit {
                return Err(self.node_failed(idx, &format!("exited with status {code} before it was ready after a restart")));
            }
            let ready = match self.nodes[idx].spec.ready.clone() {
                Some(ReadyCheck::Delay(_)) | None => Instant::now() >= deadline,
                Some(ReadyCheck::Tcp { port, .. }) => self.nodes[idx]
                    .process
                    .as_ref()
                    .is_some_and(|p| crate::readiness::tcp_listening(Path::new("/proc"), p.pid(), port)),
                Some(ReadyCheck::Command { argv, .. }) => self.run_check(idx, &argv),
            };
            if ready {
                self.nodes[idx].ready_by = None;
                let t = self.now_virtual();
                let name = self.nodes[idx].spec.name.clone();
                self.events.write(t, "node_ready", json!({"node": name, "restarts": self.nodes[idx].restarts}));
                self.progress.event(&format!("{name} ready again"));
            } else if Instant::now() >= deadline {
                return Err(self.node_failed(idx, "was not ready in time after a restart"));
            }
        }
        Ok(())
    }

    /// Freezes or thaws a node (cgroup freezer); records whether the kernel reports it frozen.
    fn pause(&mut self, idx: usize, freeze: bool) -> Result<(), String> {
        let node = &mut self.nodes[idx];
        let Some(cg) = &node.cgroup else { return Ok(()) };
        cg.freeze(freeze).map_err(|e| format!("{e}: {}", std::error::Error::source(&e).map(ToString::to_string).unwrap_or_default()))?;
        node.paused = freeze;
        // Freezing completes asynchronously; wait briefly so the event can say it took.
        let deadline = Instant::now() + Duration::from_millis(200);
        while freeze && !cg.frozen() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let frozen = cg.frozen();
        self.node_event(idx, if freeze { "paused" } else { "resumed" }, json!({"frozen": frozen}));
        Ok(())
    }

    /// Sets a node's CPU quota to `fraction` of the planned one (`None`: the planned one).
    fn set_cpu(&mut self, idx: usize, fraction: Option<f64>) -> Result<(), String> {
        let tdf = self.spec.tdf;
        let node = &mut self.nodes[idx];
        let r = node.spec.resources.clone();
        let (quota, period) = match (fraction, r.cpu_quota_us) {
            (Some(f), Some(q)) => {
                let (q, p) = scaled_quota(q, r.cpu_period_us, f);
                (Some(q), p)
            }
            // An unlimited node is cut to a fraction of the cores it may perceive.
            (Some(f), None) => {
                let (q, p) = scaled_quota(((r.cpus / tdf) * r.cpu_period_us as f64) as u64, r.cpu_period_us, f);
                (Some(q), p)
            }
            (None, q) => (q, r.cpu_period_us),
        };
        let Some(cg) = &node.cgroup else { return Ok(()) };
        cg.set_cpu(quota, period).map_err(|e| e.to_string())?;
        node.cpu_override = if fraction.is_some() { quota.map(|q| (q, period)) } else { None };
        self.node_event(idx, "cpu", json!({"quota_us": quota, "period_us": period, "fraction": fraction}));
        Ok(())
    }

    /// Steps (`step_ns`) or sets the rate (`rate`, relative to the run's) of a node's
    /// virtual clock through its control file.
    fn clock(&mut self, idx: usize, step_ns: Option<i64>, rate: Option<f64>) -> Result<(), String> {
        if self.opts.shim.is_none() {
            return Err("clock faults need the clock shim (the run is undilated)".into());
        }
        let cf = dilation::control::ControlFile::open(&self.nodes[idx].control).map_err(|e| e.to_string())?;
        if let Some(s) = step_ns {
            cf.step(s).map_err(|e| e.to_string())?;
        }
        if let Some(r) = rate {
            cf.set_tdf(self.spec.tdf / r).map_err(|e| e.to_string())?;
        }
        let m = cf.model().map_err(|e| e.to_string())?;
        self.node_event(idx, "clock", json!({"step_s": step_ns.map(|s| s as f64 / 1e9), "rate": rate, "tdf": m.tdf}));
        Ok(())
    }

    /// Worsens links: adds delay, jitter and loss, caps the rate; remembers the old
    /// parameters for the undo.
    fn degrade(&mut self, fault: usize, d: &crate::fault::Degrade) -> Result<(), String> {
        use netem::graph::Dir;
        let dirs: &[Dir] = match d.dir {
            crate::fault::DirChoice::Both => &[Dir::Forward, Dir::Reverse],
            crate::fault::DirChoice::Forward => &[Dir::Forward],
            crate::fault::DirChoice::Reverse => &[Dir::Reverse],
        };
        for link in &d.links {
            for &dir in dirs {
                let net = self.net_mut()?;
                let old = net.link_params(link, dir).map_err(|e| e.to_string())?;
                let mut new = old;
                new.delay += d.delay;
                new.jitter += d.jitter;
                if d.loss > 0.0 {
                    new.loss = match old.loss {
                        netem::link::Loss::Random(p) => netem::link::Loss::Random(1.0 - (1.0 - p) * (1.0 - d.loss)),
                        other => {
                            tracing::warn!(link, "degrade: a Gilbert-Elliott loss model is kept; the added loss is ignored");
                            other
                        }
                    };
                }
                if let Some(r) = d.rate_bps {
                    new.rate_bps = Some(old.rate_bps.map_or(r, |o| o.min(r)));
                }
                net.set_link(link, dir, new).map_err(|e| e.to_string())?;
                self.saved_links.push((fault, link.clone(), dir, old));
                self.link_event(json!({
                    "link": link, "dir": dir_name(dir), "state": "degraded",
                    "delay_s": new.delay.as_secs_f64(), "jitter_s": new.jitter.as_secs_f64(),
                    "loss": match new.loss { netem::link::Loss::Random(p) => Some(p), _ => None },
                    "rate_bps": new.rate_bps,
                }));
            }
        }
        Ok(())
    }

    /// Puts back the parameters a `degrade` replaced.
    fn restore_links(&mut self, fault: usize) -> Result<(), String> {
        let saved: Vec<_> = self.saved_links.iter().filter(|s| s.0 == fault).cloned().collect();
        self.saved_links.retain(|s| s.0 != fault);
        for (_, link, dir, params) in saved {
            // Keep a link's administrative state: it may have gone down since.
            let net = self.net_mut()?;
            let down = net.link_params(&link, dir).map(|p| p.down).unwrap_or(false);
            net.set_link(&link, dir, netem::link::LinkParams { down, ..params }).map_err(|e| e.to_string())?;
            self.link_event(json!({"link": link, "dir": dir_name(dir), "state": "restored", "delay_s": params.delay.as_secs_f64()}));
        }
        Ok(())
    }
}

fn dir_name(dir: netem::graph::Dir) -> &'static str {
    match dir {
        netem::graph::Dir::Forward => "forward",
        netem::graph::Dir::Reverse => "reverse",
    }
}

/// A CFS quota of `fraction` × `quota` over `period`; below the kernel's 1 ms minimum the
/// period is lengthened instead (up to its 1 s maximum), keeping the same share of a core.
fn scaled_quota(quota: u64, period: u64, fraction: f64) -> (u64, u64) {
    let q = (quota as f64 * fraction).round() as u64;
    if q >= 1_000 {
        return (q, period);
    }
    let share = quota as f64 * fraction / period as f64;
    let new_period = ((1_000.0 / share.max(1e-9)).round() as u64).min(1_000_000);
    (((share * new_period as f64).round() as u64).max(1_000), new_period)
}

/// Replaces `dir/loadgen.ctl` atomically (write a temporary file, rename): contract 4.
fn write_load_ctl(dir: &Path, rate: f64) -> std::io::Result<()> {
    let tmp = dir.join(".loadgen.ctl.tmp");
    std::fs::write(&tmp, format!("{}\n", json!({"rate": rate})))?;
    std::fs::rename(&tmp, dir.join("loadgen.ctl"))
}

/// The sum of every node's quota in host cores (for the fidelity detail).
fn planned_cores(spec: &TestbedSpec) -> f64 {
    spec.nodes
        .iter()
        .filter_map(|n| n.resources.cpu_quota_us.map(|q| q as f64 / n.resources.cpu_period_us.max(1) as f64))
        .sum()
}

/// Prints the fidelity verdict and its flags.
fn print_fidelity(f: &Fidelity) {
    if f.flags.is_empty() {
        eprintln!("fidelity: ok");
        return;
    }
    eprintln!("fidelity: UNFAITHFUL ({} flag{})", f.flags.len(), if f.flags.len() == 1 { "" } else { "s" });
    for flag in &f.flags {
        let at = flag.node.as_deref().or(flag.link.as_deref()).map(|x| format!(" {x}")).unwrap_or_default();
        eprintln!("  {}{at}: {}", flag.kind, flag.detail);
    }
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

/// A node's cgroup path, relative to each hierarchy's root.
fn cgroup_path(run_id: &str, node: &str) -> String {
    format!("diorama/{run_id}/{node}")
}

/// The last lines of a file, for error messages.
pub fn tail(path: &Path) -> String {
    let Ok(bytes) = std::fs::read(path) else { return String::from("(no stderr)") };
    let start = bytes.len().saturating_sub(STDERR_TAIL);
    let text = String::from_utf8_lossy(&bytes[start..]).into_owned();
    if text.trim().is_empty() { "(empty)".to_owned() } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_scale_and_respect_the_kernel_minimum() {
        assert_eq!(scaled_quota(50_000, 100_000, 0.5), (25_000, 100_000));
        // 0.5 ms would be under the 1 ms minimum: 0.5% of a core over a 200 ms period.
        assert_eq!(scaled_quota(1_000, 100_000, 0.5), (1_000, 200_000));
    }

    #[test]
    fn load_control_file_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        write_load_ctl(dir.path(), 500.0).unwrap();
        write_load_ctl(dir.path(), 250.5).unwrap();
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("loadgen.ctl")).unwrap()).unwrap();
        assert_eq!(v, json!({"rate": 250.5}));
        assert!(!dir.path().join(".loadgen.ctl.tmp").exists());
    }
}
