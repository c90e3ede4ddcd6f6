//! The kernel backend: the emulated network built from namespaces, veth pairs and the
//! kernel's own queueing disciplines, like Mininet, configured through rtnetlink.
//!
//! # Design
//! Every node and every switch gets a network namespace held by descriptor only (never
//! bind-mounted, so everything vanishes with the harness and its nodes). A link is a veth
//! pair created in one endpoint's namespace with its peer moved straight into the other's:
//! no device ever exists in the root namespace. Switches are routers: forwarding on, proxy
//! ARP on (with no proxy delay), and one `/32` route per node out of the interface of the
//! first hop of the graph's shortest path; a node's first interface holds its address with
//! the prefix's length, so it ARPs for every peer and the switch answers for it.
//!
//! Each direction of a link is shaped on the egress end of its veth: `htb` (rate, class
//! 1:1) with a leaf that is either `netem` (delay, jitter with netem's distribution tables,
//! loss random or Gilbert–Elliott, reorder, duplicate, corrupt, packet limit) or a FIFO
//! (queue limit); or `netem` alone without a rate. Parameters are scaled by the TDF through
//! [`crate::link::scale`] like the userspace core's.
//!
//! Runtime changes: `set_link` replaces the direction's disciplines; `set_down` replaces
//! both directions' disciplines with a `pfifo` of limit 0, which drops every packet (the
//! veths stay up: the kernel re-attaches queueing disciplines after a carrier-up only
//! lazily, up to a second later), and restores the shaping when up; `partition` installs
//! blackhole `/32` routes in each node's namespace for the nodes of the other groups;
//! `heal` removes them.
//!
//! # Limitations
//! `sch_netem` is needed for delay, jitter, loss, reorder, duplicate and corrupt (probed at
//! start); without it only rates and queue limits are available. A byte queue limit under
//! netem becomes packets of 1,500 bytes. `inflate` is not supported. Lateness is not
//! observable (the kernel schedules packets itself). `set_link` replaces the disciplines,
//! dropping the packets queued in that direction at that moment.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use netlink_packet_route::tc::TcHandle;

use crate::emulator::{Emulator, EmulatorError, LinkSample};
use crate::graph::{Dir, Graph};
use crate::link::{scale, JitterDist, LinkError, LinkParams, Loss, QueueLimit};
use crate::netns::NetNs;
use crate::rtnl::{Rtnl, RtnlError, ROOT};

/// Errors of the kernel backend.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("create a network namespace")]
    Namespace(#[source] std::io::Error),
    #[error("set {key} in a namespace")]
    Sysctl {
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error("rtnetlink")]
    Rtnl(#[from] RtnlError),
    #[error("link {link} needs sch_netem (delay, jitter, loss, reorder, duplicate or corrupt), which this kernel lacks; use --net userspace")]
    NoNetem { link: String },
    #[error("link {link} needs sch_htb (a rate), which this kernel lacks; use --net userspace")]
    NoHtb { link: String },
    #[error("scale link parameters")]
    Params(#[from] LinkError),
}

/// What the running kernel offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Support {
    pub netem: bool,
    pub htb: bool,
}

/// Probes for `sch_netem` and `sch_htb` by adding each to `lo` of a throwaway namespace.
pub fn probe() -> Result<Support, KernelError> {
    let ns = NetNs::create().map_err(KernelError::Namespace)?;
    let rtnl = Rtnl::open_in(&ns).map_err(RtnlError::Io)?;
    let lo = rtnl.index("lo")?;
    let works = |kind: &str, options: Vec<u8>| -> Result<bool, KernelError> {
        rtnl.delete_root_qdisc(lo)?;
        match rtnl.replace_qdisc(lo, ROOT, TcHandle { major: 1, minor: 0 }, kind, options) {
            Ok(()) => Ok(true),
            Err(e) if matches!(e.errno(), Some(libc::ENOENT) | Some(libc::EOPNOTSUPP)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    };
    let netem = works("netem", netem_options(&LinkParams::default()))?;
    let htb = works("htb", htb_qdisc_options())?;
    Ok(Support { netem, htb })
}

/// Whether a direction needs `sch_netem`.
pub fn needs_netem(p: &LinkParams) -> bool {
    let lossy = match p.loss {
        Loss::Random(q) => q > 0.0,
        Loss::GilbertElliott { .. } => true,
    };
    !p.delay.is_zero() || !p.jitter.is_zero() || lossy || p.reorder > 0.0 || p.duplicate > 0.0 || p.corrupt > 0.0
}

// Attribute numbers of include/uapi/linux/pkt_sched.h.
const TCA_NETEM_DELAY_DIST: u16 = 2;
const TCA_NETEM_REORDER: u16 = 3;
const TCA_NETEM_CORRUPT: u16 = 4;
const TCA_NETEM_LOSS: u16 = 5;
const TCA_NETEM_LATENCY64: u16 = 10;
const TCA_NETEM_JITTER64: u16 = 11;
const NETEM_LOSS_GE: u16 = 2;
const TCA_HTB_PARMS: u16 = 1;
const TCA_HTB_INIT: u16 = 2;
const TCA_HTB_RATE64: u16 = 6;
const TCA_HTB_CEIL64: u16 = 7;
/// `NETEM_DIST_SCALE`: table entries are σ × 8192.
const DIST_SCALE: f64 = 8192.0;
/// Entries of a generated distribution table (iproute2's tables have 4,096 too).
pub const DIST_ENTRIES: usize = 4096;
/// Bytes per packet when a byte limit must become a packet limit.
const MTU: u64 = 1500;

/// A probability as netem's u32 fraction of 2³² − 1.
pub fn prob_u32(p: f64) -> u32 {
    (p.clamp(0.0, 1.0) * f64::from(u32::MAX)).round() as u32
}

fn nla(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(out.len() + ((4 - len % 4) % 4), 0);
}

fn u32s(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_ne_bytes()).collect()
}

/// A distribution table for `TCA_NETEM_DELAY_DIST`: the quantiles of `dist` (in σ) × 8192.
pub fn dist_table(dist: JitterDist) -> Vec<i16> {
    (0..DIST_ENTRIES)
        .map(|i| {
            let u = (i as f64 + 0.5) / DIST_ENTRIES as f64;
            (dist.quantile(u) * DIST_SCALE).round().clamp(-32767.0, 32767.0) as i16
        })
        .collect()
}

/// A packet limit for netem.
fn packet_limit(q: QueueLimit) -> u32 {
    let n = match q {
        QueueLimit::Packets(n) => n,
        QueueLimit::Bytes(b) => b.div_ceil(MTU),
    };
    u32::try_from(n.max(1)).unwrap_or(u32::MAX)
}

/// `TCA_OPTIONS` of a netem discipline for real (already scaled) parameters:
/// `struct tc_netem_qopt` followed by netem's attributes.
pub fn netem_options(p: &LinkParams) -> Vec<u8> {
    let random = match p.loss {
        Loss::Random(q) => q,
        Loss::GilbertElliott { .. } => 0.0,
    };
    let gap = u32::from(p.reorder > 0.0);
    // latency, limit, loss, gap, duplicate, jitter (the 64-bit attributes carry the times).
    let mut out = u32s(&[0, packet_limit(p.queue), prob_u32(random), gap, prob_u32(p.duplicate), 0]);
    nla(&mut out, TCA_NETEM_LATENCY64, &(p.delay.as_nanos() as i64).to_ne_bytes());
    nla(&mut out, TCA_NETEM_JITTER64, &(p.jitter.as_nanos() as i64).to_ne_bytes());
    if p.reorder > 0.0 {
        nla(&mut out, TCA_NETEM_REORDER, &u32s(&[prob_u32(p.reorder), 0]));
    }
    if p.corrupt > 0.0 {
        nla(&mut out, TCA_NETEM_CORRUPT, &u32s(&[prob_u32(p.corrupt), 0]));
    }
    if let Loss::GilbertElliott { p_good_to_bad, p_bad_to_good, loss_good, loss_bad } = p.loss {
        // struct tc_netem_gemodel {p, r, h, k1}: h is the chance to *deliver* in the bad state.
        let mut nested = Vec::new();
        nla(
            &mut nested,
            NETEM_LOSS_GE,
            &u32s(&[prob_u32(p_good_to_bad), prob_u32(p_bad_to_good), prob_u32(1.0 - loss_bad), prob_u32(loss_good)]),
        );
        nla(&mut out, TCA_NETEM_LOSS | 0x8000, &nested);
    }
    if !p.jitter.is_zero() && p.jitter_dist != JitterDist::Uniform {
        let table: Vec<u8> = dist_table(p.jitter_dist).iter().flat_map(|v| v.to_ne_bytes()).collect();
        nla(&mut out, TCA_NETEM_DELAY_DIST, &table);
    }
    out
}

/// What [`netem_options`] encodes, decoded back (for tests and diagnostics).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NetemDecoded {
    pub limit: u32,
    pub loss: u32,
    pub gap: u32,
    pub duplicate: u32,
    pub latency_ns: i64,
    pub jitter_ns: i64,
    pub reorder: Option<u32>,
    pub corrupt: Option<u32>,
    /// (p, r, h, k1).
    pub gemodel: Option<[u32; 4]>,
    pub dist: Option<Vec<i16>>,
}

fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([b[0], b[1]]));
        let kind = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            break;
        }
        out.push((kind, &b[4..len]));
        b = &b[((len + 3) & !3).min(b.len())..];
    }
    out
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    b.get(i * 4..i * 4 + 4).map_or(0, |s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

/// Decodes netem's `TCA_OPTIONS` payload.
pub fn decode_netem(b: &[u8]) -> NetemDecoded {
    let mut d = NetemDecoded {
        limit: u32_at(b, 1),
        loss: u32_at(b, 2),
        gap: u32_at(b, 3),
        duplicate: u32_at(b, 4),
        ..NetemDecoded::default()
    };
    let i64_of = |v: &[u8]| v.get(..8).map_or(0, |s| i64::from_ne_bytes(s.try_into().unwrap_or([0; 8])));
    for (kind, v) in attrs(b.get(24..).unwrap_or_default()) {
        match kind {
            TCA_NETEM_LATENCY64 => d.latency_ns = i64_of(v),
            TCA_NETEM_JITTER64 => d.jitter_ns = i64_of(v),
            TCA_NETEM_REORDER => d.reorder = Some(u32_at(v, 0)),
            TCA_NETEM_CORRUPT => d.corrupt = Some(u32_at(v, 0)),
            TCA_NETEM_LOSS => {
                for (k, g) in attrs(v) {
                    if k == NETEM_LOSS_GE {
                        d.gemodel = Some([u32_at(g, 0), u32_at(g, 1), u32_at(g, 2), u32_at(g, 3)]);
                    }
                }
            }
            TCA_NETEM_DELAY_DIST => {
                d.dist = Some(v.chunks_exact(2).map(|c| i16::from_ne_bytes([c[0], c[1]])).collect())
            }
            _ => {}
        }
    }
    d
}

/// `TCA_OPTIONS` of an htb root: `TCA_HTB_INIT` with version 3, r2q 10, default class 1.
pub fn htb_qdisc_options() -> Vec<u8> {
    let mut out = Vec::new();
    nla(&mut out, TCA_HTB_INIT, &u32s(&[3, 10, 1, 0, 0]));
    out
}

/// `TCA_OPTIONS` of an htb class of `rate_bps` (rate = ceil), burst 1 ms of traffic (at
/// least 1,600 bytes).
pub fn htb_class_options(rate_bps: u64) -> Vec<u8> {
    let bytes_ps = (rate_bps / 8).max(1);
    let burst = (bytes_ps / 1000).max(1600);
    // psched ticks are 64 ns.
    let buffer = u32::try_from((burst as u128 * 1_000_000_000 / u128::from(bytes_ps)) / 64).unwrap_or(u32::MAX);
    let quantum = u32::try_from((bytes_ps / 10).clamp(1600, 200_000)).unwrap_or(200_000);
    let rate32 = u32::try_from(bytes_ps).unwrap_or(u32::MAX);
    // struct tc_ratespec: cell_log, linklayer (1: ethernet, no rate table), overhead,
    // cell_align, mpu, rate.
    let ratespec = |rate: u32| -> Vec<u8> {
        let mut v = vec![0u8, 1u8];
        v.extend_from_slice(&0u16.to_ne_bytes());
        v.extend_from_slice(&0i16.to_ne_bytes());
        v.extend_from_slice(&0u16.to_ne_bytes());
        v.extend_from_slice(&rate.to_ne_bytes());
        v
    };
    let mut parms = ratespec(rate32);
    parms.extend(ratespec(rate32));
    parms.extend(u32s(&[buffer, buffer, quantum, 0, 0]));
    let mut out = Vec::new();
    if bytes_ps > u64::from(u32::MAX) {
        nla(&mut out, TCA_HTB_RATE64, &bytes_ps.to_ne_bytes());
        nla(&mut out, TCA_HTB_CEIL64, &bytes_ps.to_ne_bytes());
    }
    nla(&mut out, TCA_HTB_PARMS, &parms);
    out
}

/// Applies one direction's real parameters to the egress device `index`.
fn shape(rtnl: &Rtnl, index: u32, p: &LinkParams) -> Result<(), RtnlError> {
    rtnl.delete_root_qdisc(index)?;
    let root = TcHandle { major: 1, minor: 0 };
    match (p.rate_bps, needs_netem(p)) {
        (None, false) => Ok(()),
        (None, true) => rtnl.replace_qdisc(index, ROOT, root, "netem", netem_options(p)),
        (Some(rate), netem) => {
            rtnl.replace_qdisc(index, ROOT, root, "htb", htb_qdisc_options())?;
            let class = TcHandle { major: 1, minor: 1 };
            rtnl.replace_class(index, root, class, "htb", htb_class_options(rate))?;
            let leaf = TcHandle { major: 10, minor: 0 };
            if netem {
                rtnl.replace_qdisc(index, class, leaf, "netem", netem_options(p))
            } else {
                let (kind, limit) = match p.queue {
                    QueueLimit::Bytes(b) => ("bfifo", b),
                    QueueLimit::Packets(n) => ("pfifo", n),
                };
                rtnl.replace_qdisc(index, class, leaf, kind, u32s(&[u32::try_from(limit).unwrap_or(u32::MAX)]))
            }
        }
    }
}

/// One end of a link: the vertex whose namespace holds it and its interface.
#[derive(Debug, Clone)]
struct End {
    vertex: usize,
    index: u32,
}

/// A running kernel-backed network.
pub struct KernelNet {
    tdf: f64,
    support: Support,
    names: Vec<String>,
    ends_named: Vec<(String, String)>,
    nodes: Vec<String>,
    addrs: Vec<Ipv4Addr>,
    perceived: Vec<[LinkParams; 2]>,
    down: Vec<bool>,
    /// Per vertex (nodes, then switches): its namespace and socket.
    namespaces: Vec<NetNs>,
    rtnl: Vec<Rtnl>,
    /// Per link: the a end and the b end.
    ends: Vec<[End; 2]>,
    /// Per vertex: the /32 routes it holds (destination, out interface).
    routes: Vec<Vec<(Ipv4Addr, u32)>>,
    /// Per node: blackholed destinations of the current partition.
    blackholes: Vec<Vec<Ipv4Addr>>,
}

impl KernelNet {
    /// Builds the network for `graph` (perceived parameters) at TDF `tdf`. Returns the
    /// running network and each node's namespace, in node order.
    pub fn start(graph: &Graph, tdf: f64, support: Support) -> Result<(Self, Vec<NetNs>), KernelError> {
        let spec = &graph.spec;
        let mut real = Vec::with_capacity(spec.links.len());
        for l in &spec.links {
            let pair = [scale(&l.forward, tdf)?, scale(&l.reverse, tdf)?];
            for p in &pair {
                if needs_netem(p) && !support.netem {
                    return Err(KernelError::NoNetem { link: l.name.clone() });
                }
                if p.rate_bps.is_some() && !support.htb {
                    return Err(KernelError::NoHtb { link: l.name.clone() });
                }
            }
            real.push(pair);
        }
        let n_nodes = spec.nodes.len();
        let vertices: Vec<&String> = spec.nodes.iter().chain(&spec.switches).collect();
        let addrs: Vec<Ipv4Addr> = spec.nodes.iter().map(|n| graph.addresses()[n]).collect();
        let mut namespaces = Vec::with_capacity(vertices.len());
        let mut rtnl = Vec::with_capacity(vertices.len());
        for (v, _) in vertices.iter().enumerate() {
            let ns = NetNs::create().map_err(KernelError::Namespace)?;
            let sysctls: &[(&str, &str)] = if v < n_nodes {
                &[("net.ipv4.conf.all.rp_filter", "0"), ("net.ipv4.conf.default.rp_filter", "0")]
            } else {
                &[
                    ("net.ipv4.ip_forward", "1"),
                    ("net.ipv4.conf.all.rp_filter", "0"),
                    ("net.ipv4.conf.default.rp_filter", "0"),
                    ("net.ipv4.conf.all.proxy_arp", "1"),
                    ("net.ipv4.conf.default.proxy_arp", "1"),
                ]
            };
            for (key, value) in sysctls {
                ns.sysctl_write(key, value).map_err(|source| KernelError::Sysctl { key: (*key).to_owned(), source })?;
            }
            let r = Rtnl::open_in(&ns).map_err(RtnlError::Io)?;
            let lo = r.index("lo")?;
            r.set_up(lo, true)?;
            if let Some(&addr) = graph.switch_addresses().get(vertices[v]) {
                // A router's own address (`crate::graph`'s rule): the source of its ARP
                // requests and of the ICMP time-exceeded replies its forwarding sends.
                r.add_address(lo, addr, 32)?;
            }
            namespaces.push(ns);
            rtnl.push(r);
        }
        let vertex = |name: &str| vertices.iter().position(|v| v.as_str() == name);
        let mut node_ifaces: Vec<Vec<u32>> = vec![Vec::new(); n_nodes];
        let mut ends = Vec::with_capacity(spec.links.len());
        for (li, l) in spec.links.iter().enumerate() {
            let (Some(a), Some(b)) = (vertex(&l.a), vertex(&l.b)) else {
                return Err(KernelError::Rtnl(RtnlError::Decode {
                    op: format!("link {}", l.name),
                    detail: "unknown endpoint".into(),
                }));
            };
            let ifname = |v: usize| if v < n_nodes { format!("eth{}", node_ifaces[v].len()) } else { format!("l{li}") };
            let (na, nb) = (ifname(a), ifname(b));
            let (na, nb) = if a == b { (na, format!("{nb}b")) } else { (na, nb) };
            rtnl[a].add_veth(&na, &nb, namespaces[b].as_fd_raw())?;
            let ia = rtnl[a].index(&na)?;
            let ib = rtnl[b].index(&nb)?;
            for (v, name) in [(a, &na), (b, &nb)] {
                if v >= n_nodes {
                    // Proxy ARP answers after a random delay of up to 0.8 s unless told not to.
                    let key = format!("net.ipv4.neigh.{name}.proxy_delay");
                    namespaces[v].sysctl_write(&key, "0").map_err(|source| KernelError::Sysctl { key, source })?;
                }
            }
            if a < n_nodes {
                node_ifaces[a].push(ia);
            }
            if b < n_nodes {
                node_ifaces[b].push(ib);
            }
            ends.push([End { vertex: a, index: ia }, End { vertex: b, index: ib }]);
        }
        for (n, ifaces) in node_ifaces.iter().enumerate() {
            if let Some(&first) = ifaces.first() {
                rtnl[n].add_address(first, addrs[n], spec.prefix_len)?;
            }
        }
        for (li, [a, b]) in ends.iter().enumerate() {
            rtnl[a.vertex].set_up(a.index, true)?;
            rtnl[b.vertex].set_up(b.index, true)?;
            shape(&rtnl[a.vertex], a.index, &real[li][0])?;
            shape(&rtnl[b.vertex], b.index, &real[li][1])?;
        }
        // Routes: every switch, and every node with more than one interface, gets a /32 per
        // node out of the interface of its first hop.
        let mut routes = vec![Vec::new(); vertices.len()];
        for (v, name) in vertices.iter().enumerate() {
            if v < n_nodes && node_ifaces[v].len() < 2 {
                continue;
            }
            for (d, dst) in spec.nodes.iter().enumerate() {
                if d == v {
                    continue;
                }
                let Some(route) = graph.route(name, dst) else { continue };
                let Some(&(link, dir)) = route.first() else { continue };
                let end = &ends[link][match dir {
                    Dir::Forward => 0,
                    Dir::Reverse => 1,
                }];
                rtnl[v].replace_route(addrs[d], 32, Some(end.index), None)?;
                routes[v].push((addrs[d], end.index));
            }
        }
        let node_ns = namespaces[..n_nodes]
            .iter()
            .map(NetNs::try_clone)
            .collect::<Result<Vec<_>, _>>()
            .map_err(KernelError::Namespace)?;
        let net = Self {
            tdf,
            support,
            names: spec.links.iter().map(|l| l.name.clone()).collect(),
            ends_named: spec.links.iter().map(|l| (l.a.clone(), l.b.clone())).collect(),
            nodes: spec.nodes.clone(),
            addrs,
            perceived: spec.links.iter().map(|l| [l.forward, l.reverse]).collect(),
            down: vec![false; spec.links.len()],
            namespaces,
            rtnl,
            ends,
            routes,
            blackholes: vec![Vec::new(); n_nodes],
        };
        Ok((net, node_ns))
    }

    fn link(&self, name: &str) -> Result<usize, EmulatorError> {
        self.names.iter().position(|n| n == name).ok_or_else(|| EmulatorError::UnknownLink(name.to_owned()))
    }

    fn node(&self, name: &str) -> Result<usize, EmulatorError> {
        self.nodes.iter().position(|n| n == name).ok_or_else(|| EmulatorError::UnknownNode(name.to_owned()))
    }

    /// Applies direction `d` of link `i`: its shaping, or a discipline that drops
    /// everything while the link is down. (Setting the veth down instead would take up to a
    /// second to undo: the kernel's link watcher re-attaches qdiscs on carrier-up lazily.)
    fn apply(&self, i: usize, d: usize) -> Result<(), RtnlError> {
        let end = &self.ends[i][d];
        let rtnl = &self.rtnl[end.vertex];
        if self.down[i] {
            rtnl.delete_root_qdisc(end.index)?;
            // A pfifo of limit 0 drops every packet, counted as drops.
            return rtnl.replace_qdisc(end.index, ROOT, TcHandle { major: 1, minor: 0 }, "pfifo", u32s(&[0]));
        }
        let real = scale(&self.perceived[i][d], self.tdf)
            .map_err(|e| RtnlError::Decode { op: "scale".into(), detail: e.to_string() })?;
        shape(rtnl, end.index, &real)
    }
}

fn kernel_err(e: impl std::error::Error + Send + Sync + 'static) -> EmulatorError {
    EmulatorError::Kernel(Box::new(e))
}

impl NetNs {
    fn as_fd_raw(&self) -> std::os::fd::RawFd {
        std::os::fd::AsFd::as_fd(self).as_raw_fd()
    }
}

impl Emulator for KernelNet {
    fn backend(&self) -> &'static str {
        "kernel"
    }

    fn links(&self) -> Vec<String> {
        self.names.clone()
    }

    fn access_links(&self, node: &str) -> Vec<String> {
        self.names
            .iter()
            .zip(&self.ends_named)
            .filter(|(_, (a, b))| a == node || b == node)
            .map(|(n, _)| n.clone())
            .collect()
    }

    fn link_params(&self, link: &str, dir: Dir) -> Result<LinkParams, EmulatorError> {
        let i = self.link(link)?;
        let mut p = self.perceived[i][dir_index(dir)];
        p.down = self.down[i];
        Ok(p)
    }

    fn set_link(&mut self, link: &str, dir: Dir, params: LinkParams) -> Result<(), EmulatorError> {
        let i = self.link(link)?;
        params.validate()?;
        let real = scale(&params, self.tdf)?;
        if needs_netem(&real) && !self.support.netem {
            return Err(EmulatorError::Unsupported {
                backend: "kernel",
                what: "delay, jitter or loss without sch_netem in this kernel",
            });
        }
        self.perceived[i][dir_index(dir)] = LinkParams { down: false, ..params };
        if params.down != self.down[i] {
            return self.set_down(link, params.down);
        }
        self.apply(i, dir_index(dir)).map_err(kernel_err)
    }

    fn set_down(&mut self, link: &str, down: bool) -> Result<(), EmulatorError> {
        let i = self.link(link)?;
        self.down[i] = down;
        for d in 0..2 {
            self.apply(i, d).map_err(kernel_err)?;
        }
        Ok(())
    }

    fn partition(&mut self, groups: &[Vec<String>]) -> Result<(), EmulatorError> {
        let mut of = vec![None; self.nodes.len()];
        for (g, members) in groups.iter().enumerate() {
            for m in members {
                let n = self.node(m)?;
                if of[n].is_some_and(|other| other != g) {
                    return Err(EmulatorError::Overlap(m.clone()));
                }
                of[n] = Some(g);
            }
        }
        self.heal()?;
        for n in 0..self.nodes.len() {
            let Some(g) = of[n] else { continue };
            for (m, group) in of.iter().enumerate() {
                if group.is_some_and(|h| h != g) {
                    self.rtnl[n].replace_route(self.addrs[m], 32, None, None).map_err(kernel_err)?;
                    self.blackholes[n].push(self.addrs[m]);
                }
            }
        }
        Ok(())
    }

    fn heal(&mut self) -> Result<(), EmulatorError> {
        for n in 0..self.nodes.len() {
            for dst in std::mem::take(&mut self.blackholes[n]) {
                match self.routes[n].iter().find(|(d, _)| *d == dst) {
                    Some(&(_, oif)) => self.rtnl[n].replace_route(dst, 32, Some(oif), None),
                    None => self.rtnl[n].delete_route(dst, 32, true),
                }
                .map_err(kernel_err)?;
            }
        }
        Ok(())
    }

    fn inflate(&mut self, _node: &str, _extra: Duration) -> Result<(), EmulatorError> {
        Err(EmulatorError::Unsupported {
            backend: "kernel",
            what: "inflate a node's sending delay (use --net userspace)",
        })
    }

    fn samples(&self) -> Vec<LinkSample> {
        let mut by_vertex: HashMap<usize, HashMap<u32, crate::rtnl::DevCounters>> = HashMap::new();
        let mut out = Vec::with_capacity(self.names.len() * 2);
        for (i, name) in self.names.iter().enumerate() {
            for dir in [Dir::Forward, Dir::Reverse] {
                let end = &self.ends[i][dir_index(dir)];
                let counters = by_vertex
                    .entry(end.vertex)
                    .or_insert_with(|| self.rtnl[end.vertex].counters().unwrap_or_default())
                    .get(&end.index)
                    .copied()
                    .unwrap_or_default();
                out.push(LinkSample {
                    link: name.clone(),
                    dir,
                    bytes: counters.tx_bytes,
                    packets: counters.tx_packets,
                    drops: counters.drops,
                    queue_bytes: counters.backlog,
                    rate_bps: self.perceived[i][dir_index(dir)].rate_bps,
                });
            }
        }
        out
    }

    fn lateness(&self, _q: f64) -> Option<Duration> {
        None
    }

    fn bad_packets(&self) -> crate::packet::BadPackets {
        crate::packet::BadPackets::default()
    }

    fn shutdown(&mut self) {
        // Closing the last descriptors of the switch namespaces deletes them and every veth
        // end in them; node namespaces go with the nodes.
        self.rtnl.clear();
        self.namespaces.clear();
    }
}

fn dir_index(dir: Dir) -> usize {
    match dir {
        Dir::Forward => 0,
        Dir::Reverse => 1,
    }
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
    use netlink_packet_route::tc::{TcAttribute, TcOption};
    use netlink_packet_route::RouteNetlinkMessage;

    use super::*;
    use crate::rtnl::{encode, tc_message};

    /// Builds the netem request the backend sends, parses it with netlink-packet-route and
    /// returns the kind and the raw options.
    fn round_trip(options: Vec<u8>) -> (String, Vec<u8>) {
        let msg = tc_message(3, ROOT, TcHandle { major: 1, minor: 0 }, "netem", options);
        let bytes = encode(RouteNetlinkMessage::NewQueueDiscipline(msg));
        let back = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes).unwrap();
        let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewQueueDiscipline(tc)) = back.payload else {
            panic!("{back:?}")
        };
        assert_eq!(tc.header.index, 3);
        assert_eq!(tc.header.parent, ROOT);
        let mut kind = String::new();
        let mut raw = Vec::new();
        for a in tc.attributes {
            match a {
                TcAttribute::Kind(k) => kind = k,
                TcAttribute::Options(opts) => {
                    for o in opts {
                        if let TcOption::Other(nla) = o {
                            let mut v = vec![0u8; netlink_packet_utils::nla::Nla::value_len(&nla)];
                            netlink_packet_utils::nla::Nla::emit_value(&nla, &mut v);
                            raw = v;
                        }
                    }
                }
                _ => {}
            }
        }
        (kind, raw)
    }

    #[test]
    fn netem_options_encode_every_parameter() {
        let p = LinkParams {
            delay: Duration::from_millis(20),
            jitter: Duration::from_millis(5),
            jitter_dist: JitterDist::Normal,
            loss: Loss::Random(0.01),
            reorder: 0.25,
            duplicate: 0.001,
            corrupt: 0.0001,
            queue: QueueLimit::Bytes(150_000),
            ..LinkParams::default()
        };
        let (kind, raw) = round_trip(netem_options(&p));
        assert_eq!(kind, "netem");
        let d = decode_netem(&raw);
        assert_eq!(d.latency_ns, 20_000_000);
        assert_eq!(d.jitter_ns, 5_000_000);
        assert_eq!(d.limit, 100);
        assert_eq!(d.loss, prob_u32(0.01));
        assert_eq!((d.gap, d.reorder), (1, Some(prob_u32(0.25))));
        assert_eq!(d.duplicate, prob_u32(0.001));
        assert_eq!(d.corrupt, Some(prob_u32(0.0001)));
        let table = d.dist.unwrap();
        assert_eq!(table.len(), DIST_ENTRIES);
        // A normal table: symmetric, σ = 8192.
        let mean = table.iter().map(|&v| f64::from(v)).sum::<f64>() / table.len() as f64;
        let sd = (table.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / table.len() as f64).sqrt();
        assert!(mean.abs() < 5.0 && (sd - 8192.0).abs() < 100.0, "{mean} {sd}");
    }

    #[test]
    fn gilbert_elliott_maps_to_netem_gemodel() {
        let p = LinkParams {
            loss: Loss::GilbertElliott { p_good_to_bad: 0.01, p_bad_to_good: 0.3, loss_good: 0.0, loss_bad: 0.9 },
            ..LinkParams::default()
        };
        let (_, raw) = round_trip(netem_options(&p));
        let d = decode_netem(&raw);
        assert_eq!(d.loss, 0);
        assert_eq!(d.gemodel, Some([prob_u32(0.01), prob_u32(0.3), prob_u32(1.0 - 0.9), 0]));
        assert_eq!(d.dist, None, "no table for uniform jitter");
        assert_eq!(d.limit, 1000);
    }

    #[test]
    fn htb_options_carry_the_rate() {
        let o = htb_class_options(10_000_000);
        let a = attrs(&o);
        assert_eq!(a.len(), 1);
        let (kind, parms) = a[0];
        assert_eq!(kind, TCA_HTB_PARMS);
        assert_eq!(parms.len(), 44);
        assert_eq!(u32_at(parms, 2), 1_250_000, "rate in bytes/s");
        assert_eq!(u32_at(parms, 5), 1_250_000, "ceil");
        assert_eq!(parms[1], 1, "ethernet link layer: no rate table needed");
        // 40 Gbit/s needs the 64-bit attributes.
        assert_eq!(attrs(&htb_class_options(40_000_000_000)).len(), 3);
    }

    #[test]
    fn needs_netem_only_for_netem_features() {
        assert!(!needs_netem(&LinkParams { rate_bps: Some(1000), ..LinkParams::default() }));
        assert!(needs_netem(&LinkParams { delay: Duration::from_millis(1), ..LinkParams::default() }));
        assert!(needs_netem(&LinkParams { corrupt: 0.1, ..LinkParams::default() }));
    }
}
