//! Pass 3: names, references, cycles and links; the resolved model.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::model::{
    CommandDecl, DiskDecl, HostDecl, JitterDistDecl, LinkParamsDecl, NetworkDecl, NodeDecl, Placement, QueueDecl,
    TdfChoice, TopologyDecl,
};
use super::names::{expand, Declared};
use crate::diagnostics::Diagnostics;
use crate::source::SourceMap;

/// Defaults when neither the node nor `defaults` says.
const DEFAULT_CPUS: f64 = 1.0;
/// The most cores a node's original machine may have (the kernel's own `NR_CPUS` limit on
/// x86-64 is 8192; machines beyond a few hundred cores are rare). Beyond this a `cpus` is
/// a typo, and it would ask the planner for an astronomical TDF.
const MAX_CPUS: f64 = 4096.0;
const DEFAULT_MEMORY: u64 = 512 << 20;
const DEFAULT_PIDS: u64 = 4096;
const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The smallest memory limit a node can start under.
const MIN_MEMORY: u64 = 1 << 20;
/// The smallest pids limit a node can start under: its program (the supervisor is not
/// counted, the program joins the cgroups alone).
const MIN_PIDS: u64 = 1;

/// What a node runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSpec {
    /// For `command:` the argv; for `workload:` empty until the harness resolves the program.
    pub argv: Vec<String>,
    /// `(name, args)` of a diorama workload.
    #[serde(skip)]
    pub workload: Option<(String, serde_yaml_ng::Mapping)>,
    pub env: BTreeMap<String, String>,
    pub workdir: Option<PathBuf>,
    pub user: Option<String>,
}

/// A readiness check (durations virtual).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ReadySpec {
    Tcp { port: u16, timeout: Duration },
    Command { argv: Vec<String>, timeout: Duration },
    Delay(Duration),
}

/// One resolved node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    pub name: String,
    pub group: Option<String>,
    /// Where it is declared (`nodes[3]`), for diagnostics.
    pub path: String,
    pub cpus: f64,
    pub memory: u64,
    pub pids: u64,
    pub disk: Option<DiskDecl>,
    pub run: RunSpec,
    pub main: bool,
    pub depends_on: Vec<String>,
    pub ready: Option<ReadySpec>,
    pub placement: Placement,
    /// The node's filesystem view, if it has one.
    pub filesystem: Option<FilesystemSpec>,
}

/// A node's filesystem view, paths checked absolute.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct FilesystemSpec {
    pub private: Vec<PathBuf>,
    pub read_only: Vec<PathBuf>,
}

/// One direction of a link, in plain numbers (perceived, not yet scaled by the TDF).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct LinkParams {
    pub rate_bps: Option<u64>,
    pub delay_ns: u64,
    pub jitter_ns: u64,
    pub loss: f64,
    pub queue_bytes: Option<u64>,
    pub queue_packets: Option<u64>,
    pub jitter_dist: JitterDistDecl,
    /// Gilbert–Elliott loss `[p, r, loss_good, loss_bad]`, instead of `loss`.
    pub gilbert_elliott: Option<[f64; 4]>,
    pub reorder: f64,
    pub duplicate: f64,
    pub corrupt: f64,
}

/// A link between two endpoints (nodes or switches), each direction independent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Link {
    pub name: String,
    pub a: String,
    pub b: String,
    /// a → b.
    pub forward: LinkParams,
    /// b → a.
    pub reverse: LinkParams,
    pub path: String,
}

/// A validated topology.
#[derive(Debug, Clone, Serialize)]
pub struct Topology {
    pub file: PathBuf,
    pub name: String,
    pub tdf: TdfChoice,
    pub duration: Option<Duration>,
    pub hosts: Vec<HostDecl>,
    pub headroom: f64,
    pub cpu_period: Duration,
    pub grace: Duration,
    /// Nodes no dilation mechanism reaches run undilated instead of being refused.
    pub allow_undilated: bool,
    pub nodes: Vec<Node>,
    pub groups: BTreeMap<String, Vec<String>>,
    pub switches: Vec<String>,
    pub links: Vec<Link>,
    pub network: NetworkDecl,
    pub balancers: Vec<super::balancers::Balancer>,
    /// Fault events as written, with their paths (`faults[2]`), for the fault module.
    #[serde(skip)]
    pub faults: Vec<(String, serde_yaml_ng::Value)>,
    #[serde(skip)]
    pub source: SourceMap,
}

impl crate::fault::Targets for Topology {
    fn select(&self, reference: &str) -> Result<Vec<String>, String> {
        Topology::select(self, reference)
    }

    fn links(&self) -> Box<dyn Iterator<Item = (&str, &str, &str)> + '_> {
        Box::new(self.links.iter().map(|l| (l.name.as_str(), l.a.as_str(), l.b.as_str())))
    }

    fn duration(&self) -> Option<Duration> {
        self.duration
    }
}

impl Topology {
    /// Node names selected by a reference: a node, a group, or a range `fs[0..3]`.
    pub fn select(&self, reference: &str) -> Result<Vec<String>, String> {
        let nodes: HashSet<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
        select(reference, &nodes, &self.groups)
    }

    /// Start order: levels of node indices; every node's dependencies are in earlier levels.
    pub fn start_levels(&self) -> Vec<Vec<usize>> {
        let index: HashMap<&str, usize> = self.nodes.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
        let mut level = vec![usize::MAX; self.nodes.len()];
        fn depth(i: usize, nodes: &[Node], index: &HashMap<&str, usize>, level: &mut [usize], guard: usize) -> usize {
            if level[i] != usize::MAX {
                return level[i];
            }
            // Cycles were refused by validation; the guard keeps a bug from recursing forever.
            if guard > nodes.len() {
                return 0;
            }
            let d = nodes[i]
                .depends_on
                .iter()
                .filter_map(|dep| index.get(dep.as_str()))
                .map(|&j| depth(j, nodes, index, level, guard + 1) + 1)
                .max()
                .unwrap_or(0);
            level[i] = d;
            d
        }
        for i in 0..self.nodes.len() {
            depth(i, &self.nodes, &index, &mut level, 0);
        }
        let max = level.iter().copied().max().unwrap_or(0);
        let mut levels = vec![Vec::new(); if self.nodes.is_empty() { 0 } else { max + 1 }];
        for (i, l) in level.iter().enumerate() {
            levels[*l].push(i);
        }
        levels
    }
}

fn select(
    reference: &str,
    nodes: &HashSet<&str>,
    groups: &BTreeMap<String, Vec<String>>,
) -> Result<Vec<String>, String> {
    if nodes.contains(reference) {
        return Ok(vec![reference.to_owned()]);
    }
    if let Some(members) = groups.get(reference) {
        return Ok(members.clone());
    }
    match expand(reference) {
        Ok(Declared::Group { members, .. }) => {
            let missing: Vec<&String> = members.iter().filter(|m| !nodes.contains(m.as_str())).collect();
            if missing.is_empty() {
                Ok(members)
            } else {
                Err(format!("{reference:?} names unknown nodes {missing:?}"))
            }
        }
        Ok(Declared::Single(_)) => Err(format!("unknown node or group {reference:?}")),
        Err(e) => Err(e),
    }
}

fn params(decl: &LinkParamsDecl) -> LinkParams {
    let (queue_bytes, queue_packets) = match decl.queue {
        Some(QueueDecl::Bytes(b)) => (Some(b), None),
        Some(QueueDecl::Packets(p)) => (None, Some(p)),
        None => (None, None),
    };
    LinkParams {
        rate_bps: decl.rate.map(|r| r.0),
        delay_ns: decl.delay.map_or(0, |d| d.as_nanos()),
        jitter_ns: decl.jitter.map_or(0, |d| d.as_nanos()),
        loss: decl.loss.map_or(0.0, |p| p.0),
        queue_bytes,
        queue_packets,
        jitter_dist: decl.jitter_dist.unwrap_or_default(),
        gilbert_elliott: decl
            .gilbert_elliott
            .map(|g| [g.p.0, g.r.0, g.loss_good.map_or(0.0, |p| p.0), g.loss_bad.map_or(1.0, |p| p.0)]),
        reorder: decl.reorder.map_or(0.0, |p| p.0),
        duplicate: decl.duplicate.map_or(0.0, |p| p.0),
        corrupt: decl.corrupt.map_or(0.0, |p| p.0),
    }
}

/// `over` with unset fields taken from `base`.
fn overlay(base: &LinkParamsDecl, over: &LinkParamsDecl) -> LinkParamsDecl {
    LinkParamsDecl {
        rate: over.rate.or(base.rate),
        delay: over.delay.or(base.delay),
        jitter: over.jitter.or(base.jitter),
        loss: over.loss.or(base.loss),
        queue: over.queue.clone().or_else(|| base.queue.clone()),
        jitter_dist: over.jitter_dist.or(base.jitter_dist),
        gilbert_elliott: over.gilbert_elliott.or(base.gilbert_elliott),
        reorder: over.reorder.or(base.reorder),
        duplicate: over.duplicate.or(base.duplicate),
        corrupt: over.corrupt.or(base.corrupt),
    }
}

/// A node's filesystem view; every path must be absolute, and a private directory cannot
/// be `/` (it would hide the whole filesystem, the program included).
fn filesystem(decl: &super::model::FilesystemDecl, path: &str, diags: &mut Diagnostics<'_>) -> FilesystemSpec {
    let mut check = |list: &[String], key: &str| -> Vec<PathBuf> {
        let mut out = Vec::with_capacity(list.len());
        for (i, p) in list.iter().enumerate() {
            let field = format!("{path}.filesystem.{key}[{i}]");
            let pb = PathBuf::from(p);
            if !pb.is_absolute() {
                diags.at_value(&field, format!("{p:?} is not an absolute path"));
            } else if key == "private" && pb.parent().is_none() {
                diags.at_value(&field, "a private `/` would hide the whole filesystem");
            } else {
                out.push(pb);
            }
        }
        out
    };
    FilesystemSpec { private: check(&decl.private, "private"), read_only: check(&decl.read_only, "read_only") }
}

/// A node's fields with `defaults` filled in.
fn merged(node: &NodeDecl, defaults: &NodeDecl) -> NodeDecl {
    let run = match (&node.run, &defaults.run) {
        (Some(n), Some(d)) => {
            let mut env = d.env.clone();
            env.extend(n.env.clone());
            Some(super::model::RunDecl {
                command: n.command.clone(),
                workload: n.workload.clone(),
                args: n.args.clone(),
                env,
                workdir: n.workdir.clone().or_else(|| d.workdir.clone()),
                user: n.user.clone().or_else(|| d.user.clone()),
            })
        }
        (n, d) => n.clone().or_else(|| d.clone()),
    };
    NodeDecl {
        name: node.name.clone(),
        cpus: node.cpus.or(defaults.cpus),
        memory: node.memory.or(defaults.memory),
        disk: node.disk.clone().or_else(|| defaults.disk.clone()),
        pids: node.pids.or(defaults.pids),
        run,
        main: node.main.or(defaults.main),
        depends_on: node.depends_on.clone().or_else(|| defaults.depends_on.clone()),
        ready: node.ready.clone().or_else(|| defaults.ready.clone()),
        link: node.link.clone().or_else(|| defaults.link.clone()),
        placement: node.placement.or(defaults.placement),
        filesystem: node.filesystem.clone().or_else(|| defaults.filesystem.clone()),
    }
}

pub(super) fn resolve(
    file: &Path,
    decl: TopologyDecl,
    source: &SourceMap,
    diags: &mut Diagnostics<'_>,
) -> Option<Topology> {
    if decl.defaults.name.is_some() {
        diags.at("defaults.name", "`defaults` cannot set a name");
    }
    if !super::names::valid_name(&decl.name) {
        diags.at_value("name", format!("{:?} is not a valid name (letters, digits, '-' and '_')", decl.name));
    }
    if let Some(h) = decl.headroom {
        if !(h > 0.0 && h <= 1.0) {
            diags.at_value("headroom", format!("headroom {h} must be in (0, 1]"));
        }
    }
    if decl.nodes.is_empty() {
        diags.at("nodes", "a topology needs at least one node");
    }
    for (field, value) in [("duration", decl.duration), ("cpu_period", decl.cpu_period)] {
        if value.is_some_and(|d| d.0.is_zero()) {
            diags.at_value(field, format!("{field} must be positive"));
        }
    }
    let hosts = decl.hosts.clone().unwrap_or_default();
    let largest_host = declared_memory(&hosts);
    let base = file.parent().unwrap_or(Path::new("."));

    // Names: switches, then nodes and groups; all share one namespace.
    let mut taken: HashMap<String, String> = HashMap::new();
    let mut claim = |name: &str, path: &str, diags: &mut Diagnostics<'_>| {
        if let Some(first) = taken.get(name) {
            diags.at_value(path, format!("duplicate name {name:?} (first declared at {first})"));
        } else {
            taken.insert(name.to_owned(), path.to_owned());
        }
    };
    for (i, s) in decl.switches.iter().enumerate() {
        let path = format!("switches[{i}]");
        if super::names::valid_name(s) {
            claim(s, &path, diags);
        } else {
            diags.at_value(&path, format!("{s:?} is not a valid switch name"));
        }
    }
    let mut expanded: Vec<(usize, String, Option<String>)> = Vec::new();
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (i, node) in decl.nodes.iter().enumerate() {
        let path = format!("nodes[{i}].name");
        let Some(name) = &node.name else {
            diags.at(&format!("nodes[{i}]"), "missing field `name`");
            continue;
        };
        match expand(name) {
            Ok(Declared::Single(n)) => {
                claim(&n, &path, diags);
                expanded.push((i, n, None));
            }
            Ok(Declared::Group { group, members }) => {
                claim(&group, &path, diags);
                for m in &members {
                    claim(m, &path, diags);
                    expanded.push((i, m.clone(), Some(group.clone())));
                }
                groups.insert(group, members);
            }
            Err(e) => diags.at_value(&path, e),
        }
    }
    let node_names: HashSet<&str> = expanded.iter().map(|(_, n, _)| n.as_str()).collect();
    let switches: HashSet<&str> = decl.switches.iter().map(String::as_str).collect();

    let mut nodes = Vec::with_capacity(expanded.len());
    let mut links = Vec::new();
    for (i, name, group) in &expanded {
        let path = format!("nodes[{i}]");
        let n = merged(&decl.nodes[*i], &decl.defaults);
        let cpus = n.cpus.unwrap_or(DEFAULT_CPUS);
        if !(cpus > 0.0 && cpus.is_finite()) {
            diags.at_value(&format!("{path}.cpus"), format!("cpus must be a positive number, got {cpus}"));
        } else if cpus > MAX_CPUS {
            diags.at_value(&format!("{path}.cpus"), format!("cpus must be at most {MAX_CPUS}, got {cpus}"));
        }
        let memory = n.memory.map_or(DEFAULT_MEMORY, |m| m.0);
        let pids = n.pids.unwrap_or(DEFAULT_PIDS);
        check_limits(&path, memory, pids, largest_host, diags);
        if let Some(t) = n.ready.as_ref().and_then(|r| r.timeout) {
            if t.0.is_zero() {
                diags.at_value(&format!("{path}.ready.timeout"), "the readiness timeout must be positive");
            }
        }
        let run = match &n.run {
            None => {
                diags.at(&path, "missing field `run` (command: … or workload: …)");
                continue;
            }
            Some(run) => {
                let argv = match (&run.command, &run.workload) {
                    (Some(c), None) => {
                        let argv = c.argv();
                        if argv.is_empty() || argv[0].is_empty() {
                            diags.at_value(&format!("{path}.run.command"), "the command is empty");
                        }
                        argv
                    }
                    (None, Some(_)) => Vec::new(),
                    (Some(_), Some(_)) => {
                        diags.at(&format!("{path}.run"), "give either `command` or `workload`, not both");
                        Vec::new()
                    }
                    (None, None) => {
                        diags.at(&format!("{path}.run"), "missing `command` or `workload`");
                        Vec::new()
                    }
                };
                RunSpec {
                    argv,
                    workload: run.workload.clone().map(|w| (w, run.args.clone().unwrap_or_default())),
                    env: run.env.clone(),
                    workdir: run.workdir.as_ref().map(|w| base.join(w)),
                    user: run.user.clone(),
                }
            }
        };
        let mut depends_on = Vec::new();
        for (j, dep) in n.depends_on.iter().flatten().enumerate() {
            let field = format!("{path}.depends_on[{j}]");
            match select(dep, &node_names, &groups) {
                Ok(sel) => {
                    for s in sel {
                        if &s == name {
                            diags.at_value(&field, format!("{name} depends on itself"));
                        } else if !depends_on.contains(&s) {
                            depends_on.push(s);
                        }
                    }
                }
                Err(e) => diags.at_value(&field, e),
            }
        }
        let ready = n.ready.as_ref().and_then(|r| {
            let timeout = r.timeout.map_or(DEFAULT_READY_TIMEOUT, |t| t.0);
            match (r.tcp, &r.command, r.delay) {
                (Some(port), None, None) => Some(ReadySpec::Tcp { port, timeout }),
                (None, Some(c), None) => Some(ReadySpec::Command { argv: c.argv(), timeout }),
                (None, None, Some(d)) => Some(ReadySpec::Delay(d.0)),
                _ => {
                    diags.at(&format!("{path}.ready"), "expected exactly one of `tcp`, `command` or `delay`");
                    None
                }
            }
        });
        for (j, l) in n.link.iter().flat_map(|l| l.to_vec()).enumerate() {
            let field = if matches!(n.link, Some(super::model::OneOrMany::Many(_))) {
                format!("{path}.link[{j}].to")
            } else {
                format!("{path}.link.to")
            };
            if !switches.contains(l.to.as_str()) && !node_names.contains(l.to.as_str()) {
                diags.at_value(&field, format!("link to unknown switch or node {:?}", l.to));
                continue;
            }
            if l.to == *name {
                diags.at_value(&field, "a node cannot link to itself");
                continue;
            }
            let p = params(&l.params());
            links.push(Link {
                name: format!("{name}--{}", l.to),
                a: name.clone(),
                b: l.to.clone(),
                forward: p,
                reverse: p,
                path: field,
            });
        }
        let filesystem = n.filesystem.as_ref().map(|fs| filesystem(fs, &path, diags));
        nodes.push(Node {
            name: name.clone(),
            group: group.clone(),
            path,
            cpus,
            memory,
            pids,
            disk: n.disk.clone(),
            run,
            main: n.main.unwrap_or(false),
            depends_on,
            ready,
            placement: n.placement.unwrap_or_default(),
            filesystem,
        });
    }
    for (i, l) in decl.links.iter().enumerate() {
        let path = format!("links[{i}]");
        let mut ok = true;
        for (k, end) in l.between.iter().enumerate() {
            if !switches.contains(end.as_str()) && !node_names.contains(end.as_str()) {
                diags.at_value(&format!("{path}.between[{k}]"), format!("link to unknown switch or node {end:?}"));
                ok = false;
            }
        }
        if l.between[0] == l.between[1] {
            diags.at_value(&format!("{path}.between"), "a link needs two different endpoints");
            ok = false;
        }
        if !ok {
            continue;
        }
        let both = l.params();
        let forward = params(&overlay(&both, l.forward.as_ref().unwrap_or(&LinkParamsDecl::default())));
        let reverse = params(&overlay(&both, l.reverse.as_ref().unwrap_or(&LinkParamsDecl::default())));
        let name = l.name.clone().unwrap_or_else(|| format!("{}--{}", l.between[0], l.between[1]));
        links.push(Link { name, a: l.between[0].clone(), b: l.between[1].clone(), forward, reverse, path });
    }
    let mut link_names: HashMap<&str, &str> = HashMap::new();
    for l in &links {
        if let Some(first) = link_names.insert(&l.name, &l.path) {
            diags.at_value(&l.path, format!("duplicate link {:?} (also at {first})", l.name));
        }
    }
    for l in &links {
        // The field a problem is about: an access link's path ends in `.to`; a field set only
        // in `forward:`/`reverse:` is located there by the source map's fallback.
        let base = l.path.strip_suffix(".to").unwrap_or(&l.path);
        let at = |field: &str| format!("{base}.{field}");
        for (dir, p) in [("forward", &l.forward), ("reverse", &l.reverse)] {
            if p.jitter_ns > 0 && p.delay_ns == 0 {
                diags.at(&at("jitter"), format!("{dir} direction has jitter but no delay"));
            }
            if p.reorder > 0.0 && p.delay_ns == 0 {
                diags.at(
                    &at("reorder"),
                    format!("{dir} direction has reorder but no delay (reordered packets skip the delay)"),
                );
            }
            if p.gilbert_elliott.is_some() && p.loss > 0.0 {
                diags.at(
                    &at("gilbert_elliott"),
                    format!("{dir} direction has both loss and gilbert_elliott; choose one"),
                );
            }
            if p.queue_bytes == Some(0) || p.queue_packets == Some(0) {
                diags.at(&at("queue"), format!("{dir} direction: a queue of 0 drops every packet"));
            }
            for (field, v) in [("reorder", p.reorder), ("duplicate", p.duplicate), ("corrupt", p.corrupt)] {
                if !(0.0..=1.0).contains(&v) {
                    diags.at(&at(field), format!("{dir} direction: {field} {v} is not a probability"));
                }
            }
        }
    }
    check_cycles(&nodes, diags);
    let network = decl.network.unwrap_or_default();
    let balancers = {
        let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
        let set: HashSet<&str> = names.iter().map(String::as_str).collect();
        super::balancers::resolve(
            &decl.balancers,
            &network,
            &names,
            &decl.switches,
            |r| select(r, &set, &groups),
            diags,
        )
    };
    let faults = decl.faults.iter().enumerate().map(|(i, v)| (format!("faults[{i}]"), v.clone())).collect();
    Some(Topology {
        file: file.to_owned(),
        name: decl.name,
        tdf: decl.tdf,
        duration: decl.duration.map(|d| d.0),
        hosts,
        headroom: decl.headroom.unwrap_or(0.9),
        cpu_period: decl.cpu_period.map_or(Duration::from_millis(100), |d| d.0),
        grace: decl.grace.map_or(Duration::from_secs(2), |d| d.0),
        allow_undilated: decl.allow_undilated.unwrap_or(false),
        nodes,
        groups,
        switches: decl.switches,
        links,
        network,
        balancers,
        faults,
        source: source.clone(),
    })
}

/// The memory of the largest host, when every host of the inventory declares its memory
/// (a `local` host is measured by the planner, so `check --plan` catches it there).
fn declared_memory(hosts: &[HostDecl]) -> Option<u64> {
    if hosts.is_empty() {
        return None;
    }
    hosts
        .iter()
        .map(|h| match h {
            HostDecl::Spec(s) if s.name != "local" => s.memory.map(|m| m.0),
            _ => None,
        })
        .collect::<Option<Vec<u64>>>()
        .and_then(|m| m.into_iter().max())
}

/// Memory and pids limits that no node could run under.
fn check_limits(path: &str, memory: u64, pids: u64, largest_host: Option<u64>, diags: &mut Diagnostics<'_>) {
    let field = format!("{path}.memory");
    if memory < MIN_MEMORY {
        // Below this the kernel kills the node's first process at once (exit 137).
        diags.at_value(&field, format!("memory {memory} B is too small to run a process (at least 1MiB)"));
    } else if let Some(host) = largest_host.filter(|h| memory > *h) {
        diags.at_value(
            &field,
            format!("memory {} MiB is more than the largest host has ({} MiB)", memory >> 20, host >> 20),
        );
    }
    if pids < MIN_PIDS {
        diags.at_value(
            &format!("{path}.pids"),
            format!("pids {pids} cannot run a node: it needs at least {MIN_PIDS} (its program)"),
        );
    }
}

/// Reports each dependency cycle once, at the first node on it.
fn check_cycles(nodes: &[Node], diags: &mut Diagnostics<'_>) {
    let index: HashMap<&str, usize> = nodes.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
    // 0 = unvisited, 1 = on the stack, 2 = done.
    let mut color = vec![0u8; nodes.len()];
    let mut reported: HashSet<String> = HashSet::new();
    for start in 0..nodes.len() {
        if color[start] != 0 {
            continue;
        }
        // Iterative DFS: (node, next dependency to look at).
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        color[start] = 1;
        while let Some(&mut (i, ref mut next)) = stack.last_mut() {
            if let Some(dep) = nodes[i].depends_on.get(*next) {
                *next += 1;
                let Some(&j) = index.get(dep.as_str()) else { continue };
                match color[j] {
                    0 => {
                        color[j] = 1;
                        stack.push((j, 0));
                    }
                    1 => {
                        let from = stack.iter().position(|&(k, _)| k == j).unwrap_or(0);
                        let mut cycle: Vec<&str> = stack[from..].iter().map(|&(k, _)| nodes[k].name.as_str()).collect();
                        cycle.push(nodes[j].name.as_str());
                        let mut key: Vec<&str> = cycle[..cycle.len() - 1].to_vec();
                        key.sort_unstable();
                        if reported.insert(key.join(",")) {
                            diags.at(
                                &format!("{}.depends_on", nodes[j].path),
                                format!("dependency cycle: {}", cycle.join(" → ")),
                            );
                        }
                    }
                    _ => {}
                }
            } else {
                color[i] = 2;
                stack.pop();
            }
        }
    }
}

impl CommandDecl {
    /// A short description for messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Argv(v) => v.join(" "),
            Self::Shell(s) => s.clone(),
        }
    }
}

#[cfg(test)]
mod link_model_tests {
    use std::path::Path;

    use super::super::read_str as load_str;
    use super::JitterDistDecl;

    const YAML: &str = r#"
name: model
defaults: {cpus: 0.1, memory: 64MiB}
switches: [sw]
nodes:
  - name: a
    run: {command: "true"}
    link: {to: sw, delay: 10ms, jitter: 2ms, jitter_dist: pareto-normal, duplicate: 0.1%}
  - name: b
    run: {command: "true"}
links:
  - between: [b, sw]
    delay: 5ms
    forward: {gilbert_elliott: {p: 1%, r: 30%}}
    reverse: {reorder: 5%, corrupt: 0.01%, jitter: 1ms, jitter_dist: normal}
"#;

    #[test]
    fn every_netem_feature_is_expressible() {
        let t = load_str(Path::new("t.yaml"), YAML).unwrap();
        let a = t.links.iter().find(|l| l.a == "a").unwrap();
        assert_eq!(a.forward.jitter_dist, JitterDistDecl::ParetoNormal);
        assert!((a.forward.duplicate - 0.001).abs() < 1e-12);
        let b = t.links.iter().find(|l| l.a == "b").unwrap();
        assert_eq!(b.forward.gilbert_elliott, Some([0.01, 0.3, 0.0, 1.0]));
        assert_eq!(b.forward.reorder, 0.0);
        assert!((b.reverse.reorder - 0.05).abs() < 1e-12);
        assert_eq!(b.reverse.jitter_dist, JitterDistDecl::Normal);
        assert_eq!(b.reverse.gilbert_elliott, None);
    }

    #[test]
    fn conflicting_loss_models_and_reorder_without_delay_are_refused() {
        let bad = YAML
            .replace(
                "forward: {gilbert_elliott: {p: 1%, r: 30%}}",
                "forward: {loss: 1%, gilbert_elliott: {p: 1%, r: 30%}}",
            )
            .replace("    delay: 5ms\n", "");
        let err = load_str(Path::new("t.yaml"), &bad).unwrap_err().to_string();
        assert!(err.contains("both loss and gilbert_elliott"), "{err}");
        assert!(err.contains("reorder but no delay"), "{err}");
    }
}
