//! From a topology file to a runnable experiment: load, plan, and translate into the run
//! engine's terms (commands resolved, resources scaled by the TDF, durations virtual).

use std::path::{Path, PathBuf};
use std::time::Duration;

use catalog::fault::Fault;
use catalog::plan::{Inventory, Plan, PlanOptions};
use catalog::topology::{self, ReadySpec, Topology};
use catalog::units;
use testbed::{DiskLimit, FilesystemView, NodeResources, NodeSpec, ReadyCheck, TestbedSpec};

use crate::Error;

/// Command-line overrides of topology settings.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub tdf: Option<f64>,
    pub duration: Option<String>,
    pub sample_every: Option<String>,
    pub headroom: Option<f64>,
    /// The network backend (`--net`; default `auto`).
    pub net: Option<testbed::NetBackend>,
    /// A scenario file whose `faults:` run in addition to the topology's.
    pub scenario: Option<PathBuf>,
}

/// A loaded and planned experiment.
pub struct Experiment {
    pub topology: Topology,
    pub plan: Plan,
    pub spec: TestbedSpec,
    pub plan_table: String,
    /// The fault timeline: the topology's faults, then the scenario's.
    pub faults: Vec<Fault>,
}

fn invalid(file: &Path, field: &str, topology: Option<&Topology>, message: String) -> Error {
    let pos = topology.map(|t| t.source.locate(field));
    let at = pos.map_or_else(|| file.display().to_string(), |p| format!("{}:{}:{}", file.display(), p.line, p.col));
    Error::Reference { at, field: field.to_owned(), message }
}

/// Loads a topology, its faults checked.
pub fn load(file: &Path) -> Result<Topology, Error> {
    Ok(catalog::load::topology(file)?)
}

/// Plans a topology on the inventory it names (default: this machine).
pub fn plan(topology: &Topology, tdf: Option<f64>, headroom: Option<f64>) -> Result<Plan, Error> {
    let inventory =
        Inventory::from_decls(&topology.hosts, Path::new("/proc")).map_err(|e| Error::Inventory(e.to_string()))?;
    let opts = PlanOptions {
        tdf,
        headroom: headroom.unwrap_or(topology.headroom),
        cpu_period_us: u64::try_from(topology.cpu_period.as_micros()).unwrap_or(100_000),
        reserve_cores: catalog::plan::default_reserve(!topology.links.is_empty()),
    };
    catalog::plan::plan(topology, &inventory, &opts)
        .map_err(|reason| Error::Plan { file: topology.file.clone(), reason })
}

fn parse_duration(flag: &str, text: &str) -> Result<Duration, Error> {
    units::Duration::parse(text).map(|d| d.0).map_err(|e| Error::Usage(format!("{flag}: {e}")))
}

/// Resolves `program` like the node will (PATH), so a missing binary is refused up front.
fn find_program(program: &str) -> Option<PathBuf> {
    testbed::container::find_program(std::ffi::OsStr::new(program), std::env::var_os("PATH").as_deref())
}

impl Experiment {
    pub fn load(file: &Path, overrides: &Overrides) -> Result<Self, Error> {
        let topology = load(file)?;
        // Faults are validated before anything is planned or created.
        let mut faults = catalog::load::topology_faults(&topology)?;
        if let Some(scenario) = &overrides.scenario {
            faults.extend(catalog::fault::load_scenario(scenario, &topology)?);
        }
        let plan = plan(&topology, overrides.tdf, overrides.headroom)?;
        let duration = match &overrides.duration {
            Some(d) => Some(parse_duration("--duration", d)?),
            None => topology.duration,
        };
        if let (Some(d), Some(flag)) = (duration, overrides.duration.as_deref()) {
            if d.is_zero() {
                return Err(Error::Usage("--duration must be positive".into()));
            }
            // The topology's own duration was checked against its faults by the catalog.
            if let Some(f) = faults.iter().find(|f| f.at >= d) {
                return Err(Error::Usage(format!(
                    "--duration {flag}: fault {} at {:?} would never fire; give a longer --duration",
                    f.id, f.at
                )));
            }
        }
        let sample_every = match &overrides.sample_every {
            Some(d) => parse_duration("--sample-every", d)?,
            None => Duration::from_secs(1),
        };
        if sample_every.is_zero() {
            return Err(Error::Usage("--sample-every must be positive".into()));
        }
        let harness_exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("diorama"));
        let mut nodes = Vec::with_capacity(topology.nodes.len());
        for (node, placed) in topology.nodes.iter().zip(&plan.nodes) {
            let argv = match &node.run.workload {
                Some((name, args)) => {
                    let program = crate::workload::locate(name, &harness_exe).map_err(|e| {
                        invalid(file, &format!("{}.run.workload", node.path), Some(&topology), e.to_string())
                    })?;
                    let mut argv = vec![program.display().to_string()];
                    argv.extend(crate::workload::args_to_flags(name, args).map_err(|e| {
                        invalid(file, &format!("{}.run.args", node.path), Some(&topology), e.to_string())
                    })?);
                    argv
                }
                None => {
                    let program = &node.run.argv[0];
                    if find_program(program).is_none() {
                        return Err(invalid(
                            file,
                            &format!("{}.run.command", node.path),
                            Some(&topology),
                            format!("program {program:?} of node {} not found on PATH", node.name),
                        ));
                    }
                    node.run.argv.clone()
                }
            };
            let ready = node.ready.as_ref().map(|r| match r {
                ReadySpec::Tcp { port, timeout } => ReadyCheck::Tcp { port: *port, timeout: *timeout },
                ReadySpec::Command { argv, timeout } => ReadyCheck::Command { argv: argv.clone(), timeout: *timeout },
                ReadySpec::Delay(d) => ReadyCheck::Delay(*d),
            });
            let io = match &node.disk {
                Some(disk) => disk_limits(disk, &node.name, plan.tdf, file, &topology, &node.path)?,
                None => Vec::new(),
            };
            nodes.push(NodeSpec {
                name: node.name.clone(),
                group: node.group.clone(),
                argv,
                env: node.run.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                workdir: node.run.workdir.clone(),
                user: node.run.user.clone(),
                main: node.main,
                ready,
                resources: NodeResources {
                    cpu_quota_us: Some(placed.cpu_quota_us),
                    cpu_period_us: placed.cpu_period_us,
                    memory_bytes: Some(node.memory),
                    pids_max: Some(node.pids),
                    io,
                    cpus: node.cpus,
                    // A node of `cpus` cores has cores of full speed, or one core of
                    // speed `cpus` when it has less than one.
                    pace_speed: Some(node.cpus.min(1.0)),
                    pace_cores: Some(node.cpus),
                },
                filesystem: node
                    .filesystem
                    .as_ref()
                    .map(|fs| FilesystemView { private: fs.private.clone(), read_only: fs.read_only.clone() }),
            });
        }
        let network = network_spec(&topology).map_err(|m| invalid(file, "network", Some(&topology), m))?;
        if let (Some(b), Some(testbed::NetBackend::Kernel)) = (topology.balancers.first(), overrides.net) {
            return Err(invalid(
                file,
                &b.path,
                Some(&topology),
                format!("balancer {}: the kernel network backend has no per-packet hook for an L4 balancer; run with --net userspace (or auto)", b.name),
            ));
        }
        let balancers = topology
            .balancers
            .iter()
            .map(|b| netemu::l4::VipSpec {
                name: b.name.clone(),
                vip: b.vip,
                port: b.port,
                backends: b.backends.clone(),
                weights: b.weights.clone(),
                config: b.config.clone(),
                telemetry_dir: None,
                epoch_real_ns: None,
            })
            .collect();
        let spec = TestbedSpec {
            name: topology.name.clone(),
            topology_file: file.canonicalize().unwrap_or_else(|_| file.to_owned()),
            tdf: plan.tdf,
            duration,
            nodes,
            levels: topology.start_levels(),
            grace: topology.grace,
            allow_undilated: topology.allow_undilated,
            sample_every,
            network,
            net_backend: overrides.net.unwrap_or_default(),
            balancers,
            plan: serde_json::to_value(&plan).unwrap_or_default(),
            topology: serde_json::to_value(&topology).unwrap_or_default(),
        };
        let plan_table = plan.to_string();
        Ok(Self { topology, plan, spec, plan_table, faults })
    }
}

impl Experiment {
    /// Refuses, at its field, a node that a dilated run refuses before any node starts: one
    /// whose program no dilation mechanism reaches (`docs/dilation.md`), unless the topology
    /// sets `allow_undilated`. `trap`: the trap launcher (`None`: not installed here).
    pub fn check_dilation(&self, trap: Option<&Path>) -> Result<(), Error> {
        for (decl, node) in self.topology.nodes.iter().zip(&self.spec.nodes) {
            if let Some(reason) = testbed::dilation_refusal(node, self.spec.allow_undilated, trap) {
                let field = if decl.run.workload.is_some() { "run.workload" } else { "run.command" };
                let refused = testbed::TestbedError::Undilatable { node: node.name.clone(), reason };
                return Err(invalid(
                    &self.topology.file,
                    &format!("{}.{field}", decl.path),
                    Some(&self.topology),
                    refused.to_string(),
                ));
            }
        }
        Ok(())
    }

    /// Refuses, at its field, a private directory that would hide the run's own results or
    /// state from a node: the node's tmpfs would cover the directory the harness hands it,
    /// and it would fail to start with a bare "no such file". `results` need not exist yet.
    pub fn check_views(&self, results: &Path, state_root: &Path) -> Result<(), Error> {
        let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
        let (results, state_root) = (absolute(results), absolute(state_root));
        for (decl, node) in self.topology.nodes.iter().zip(&self.spec.nodes) {
            let Some(view) = &node.filesystem else { continue };
            for (i, dir) in view.private.iter().enumerate() {
                let hidden = [(&results, "the results directory"), (&state_root, "the run's state directory")]
                    .into_iter()
                    .find(|(p, _)| p.starts_with(dir));
                if let Some((path, what)) = hidden {
                    return Err(invalid(
                        &self.topology.file,
                        &format!("{}.filesystem.private[{i}]", decl.path),
                        Some(&self.topology),
                        format!(
                            "node {}: a private {} would hide {what} {} from the node; write the results elsewhere (--out) or make another directory private",
                            node.name,
                            dir.display(),
                            path.display()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Plain multiplexing (`diorama validate`'s naive run): keeps the plan's resources
    /// divided by its TDF (CPU quotas, disk throttles, and here link rates) but runs at
    /// TDF 1: no clock dilation and link delays unchanged.
    #[must_use]
    pub fn into_naive(mut self) -> Self {
        let divisor = self.plan.tdf;
        // The run engine scales links by its TDF, which becomes 1: divide the rates here.
        for link in self.spec.network.iter_mut().flat_map(|n| n.links.iter_mut()) {
            for p in [&mut link.forward, &mut link.reverse] {
                p.rate_bps = p.rate_bps.map(|r| ((r as f64 / divisor).round() as u64).max(1));
            }
        }
        // Without dilation, a node gets `1/divisor` of the host's speed at every time scale,
        // and its CFS period is the topology's own (virtual time is real time at TDF 1).
        let period_us = u64::try_from(self.topology.cpu_period.as_micros()).unwrap_or(100_000);
        for node in &mut self.spec.nodes {
            node.resources.pace_speed = node.resources.pace_speed.map(|s| s / divisor);
            node.resources.pace_cores = node.resources.pace_cores.map(|c| c / divisor);
            let r = &mut node.resources;
            if let Some(quota) = r.cpu_quota_us {
                let share = quota as f64 / r.cpu_period_us.max(1) as f64;
                if let Some((q, p)) = catalog::plan::cfs(share, period_us) {
                    (r.cpu_quota_us, r.cpu_period_us) = (Some(q), p);
                }
            }
        }
        if let Some(obj) = self.spec.plan.as_object_mut() {
            obj.insert("naive".into(), serde_json::json!({"resources_divided_by": divisor, "run_tdf": 1.0}));
        }
        self.spec.tdf = 1.0;
        self
    }
}

/// Disk throttles divided by the TDF, on the device given or the one holding `/`.
fn disk_limits(
    disk: &topology::model::DiskDecl,
    node: &str,
    tdf: f64,
    file: &Path,
    topology: &Topology,
    path: &str,
) -> Result<Vec<DiskLimit>, Error> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let target = disk.device.clone().unwrap_or_else(|| "/".into());
    let meta = std::fs::metadata(&target)
        .map_err(|e| invalid(file, &format!("{path}.disk.device"), Some(topology), format!("{target}: {e}")))?;
    // A block device names itself; a path is throttled on the device holding it.
    let dev = if meta.file_type().is_block_device() { meta.rdev() } else { meta.dev() };
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    // Partitions are not throttleable in blkio; use the whole disk.
    let (major, minor) = whole_disk(major, minor);
    let scale = |v: Option<u64>| v.map(|v| ((v as f64 / tdf).round() as u64).max(1));
    tracing::debug!(node, major, minor, "disk throttle device");
    Ok(vec![DiskLimit {
        major,
        minor,
        read_bps: scale(disk.read_bps.map(|b| b.0)),
        write_bps: scale(disk.write_bps.map(|b| b.0)),
        read_iops: scale(disk.iops),
        write_iops: scale(disk.iops),
    }])
}

/// The emulated network of a topology (perceived parameters), when it has links.
fn network_spec(t: &Topology) -> Result<Option<netemu::graph::NetSpec>, String> {
    if t.links.is_empty() {
        return Ok(None);
    }
    let (prefix, len) = nodeaddr::parse_prefix(t.network.prefix.as_deref()).map_err(|e| e.to_string())?;
    let params = |p: &topology::LinkParams| netemu::link::LinkParams {
        rate_bps: p.rate_bps,
        delay: Duration::from_nanos(p.delay_ns),
        jitter: Duration::from_nanos(p.jitter_ns),
        jitter_dist: match p.jitter_dist {
            topology::model::JitterDistDecl::Uniform => netemu::link::JitterDist::Uniform,
            topology::model::JitterDistDecl::Normal => netemu::link::JitterDist::Normal,
            topology::model::JitterDistDecl::ParetoNormal => netemu::link::JitterDist::ParetoNormal,
        },
        loss: match p.gilbert_elliott {
            Some([p_good_to_bad, p_bad_to_good, loss_good, loss_bad]) => {
                netemu::link::Loss::GilbertElliott { p_good_to_bad, p_bad_to_good, loss_good, loss_bad }
            }
            None => netemu::link::Loss::Random(p.loss),
        },
        reorder: p.reorder,
        duplicate: p.duplicate,
        corrupt: p.corrupt,
        queue: match (p.queue_bytes, p.queue_packets) {
            (Some(b), _) => netemu::link::QueueLimit::Bytes(b),
            (None, Some(n)) => netemu::link::QueueLimit::Packets(n),
            (None, None) => netemu::link::DEFAULT_QUEUE,
        },
        ..netemu::link::LinkParams::default()
    };
    Ok(Some(netemu::graph::NetSpec {
        prefix,
        prefix_len: len,
        nodes: t.nodes.iter().map(|n| n.name.clone()).collect(),
        switches: t.switches.clone(),
        links: t
            .links
            .iter()
            .map(|l| netemu::graph::LinkSpec {
                name: l.name.clone(),
                a: l.a.clone(),
                b: l.b.clone(),
                forward: params(&l.forward),
                reverse: params(&l.reverse),
            })
            .collect(),
    }))
}

/// The whole disk of a partition, from sysfs (`/sys/dev/block/M:m/..`).
fn whole_disk(major: u64, minor: u64) -> (u64, u64) {
    let part = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    if part.join("partition").exists() {
        if let Ok(dev) = std::fs::read_to_string(part.join("../dev")) {
            if let Some((a, b)) = dev.trim().split_once(':') {
                if let (Ok(a), Ok(b)) = (a.parse(), b.parse()) {
                    return (a, b);
                }
            }
        }
    }
    (major, minor)
}
