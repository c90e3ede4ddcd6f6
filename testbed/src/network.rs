//! Setting up a run's emulated network: the backend choice (`--net`), every node's network
//! namespace, the backend itself, and the TCP timers of each node's namespace scaled by the
//! TDF. The run engine calls [`build`] before any node starts and holds the result through
//! the [`netemu::emulator::Emulator`] trait; dropping it (and the namespaces) tears it down.
//!
//! # Design
//! `auto` probes the kernel for `sch_netem` (by adding one to a throwaway namespace's `lo`)
//! and picks the kernel backend where it exists, the userspace core otherwise; the choice
//! and its reason are logged and recorded in `run.json` under `network`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde_json::json;

use crate::spec::{NetBackend, TestbedSpec};

/// Errors of network set-up.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("invalid network")]
    Graph(#[from] netemu::graph::GraphError),
    #[error("create the network namespace of node {node}")]
    Namespace {
        node: String,
        #[source]
        source: std::io::Error,
    },
    #[error("create the TUN device of node {node}")]
    Tun {
        node: String,
        #[source]
        source: std::io::Error,
    },
    #[error("scale the TCP timers of node {node}")]
    Timers {
        node: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("start the userspace core")]
    Core(#[from] netemu::userspace::CoreError),
    #[error("build the kernel network")]
    Kernel(#[from] netemu::kernel::KernelError),
    #[error("the kernel network backend cannot carry L4 balancers (no per-packet hook); use --net userspace")]
    BalancerOnKernel,
    #[error("give node {node} the VIP of balancer {balancer}")]
    Vip {
        node: String,
        balancer: String,
        #[source]
        source: netemu::rtnl::RtnlError,
    },
}

/// A built network.
pub struct Built {
    pub emulator: Box<dyn netemu::emulator::Emulator>,
    /// Each node's namespace, in the spec's node order.
    pub namespaces: Vec<netemu::netns::NetNs>,
    pub addresses: BTreeMap<String, Ipv4Addr>,
    /// What `run.json` records under `network`.
    pub record: serde_json::Value,
    /// The dilated CUBIC every node namespace defaults to; dropping it (with the run)
    /// unregisters it. `None` where the kernel refused it (recorded as a gap).
    pub _congestion_control: Option<tcpclock::DilatedCubic>,
}

/// Builds the network of `spec`, or `None` without links.
/// `epoch_real_ns` is the run's epoch (CLOCK_REALTIME ns), the origin of the L4 balancers'
/// virtual clock.
pub fn build(
    spec: &TestbedSpec,
    results_dir: &std::path::Path,
    epoch_real_ns: i64,
) -> Result<Option<Built>, NetworkError> {
    let Some(net) = &spec.network else { return Ok(None) };
    let graph = netemu::graph::Graph::build(net.clone())?;
    let addresses = graph.addresses().clone();
    let (backend, reason, support) = if spec.balancers.is_empty() || spec.net_backend == NetBackend::Kernel {
        choose(spec.net_backend)
    } else {
        (NetBackend::Userspace, "the topology has L4 balancers, which only the userspace core carries".into(), None)
    };
    if backend == NetBackend::Kernel && !spec.balancers.is_empty() {
        return Err(NetworkError::BalancerOnKernel);
    }
    tracing::info!(backend = backend.name(), %reason, "network backend");
    let (emulator, namespaces): (Box<dyn netemu::emulator::Emulator>, Vec<netemu::netns::NetNs>) =
        if backend == NetBackend::Kernel {
            let support = support.unwrap_or(netemu::kernel::Support { netem: false, htb: false });
            let (k, namespaces) = netemu::kernel::KernelNet::start(&graph, spec.tdf, support)?;
            (Box::new(k), namespaces)
        } else {
            let mut ports = Vec::with_capacity(addresses.len());
            let mut namespaces = Vec::with_capacity(addresses.len());
            for node in &spec.nodes {
                let ns = netemu::netns::NetNs::create()
                    .map_err(|source| NetworkError::Namespace { node: node.name.clone(), source })?;
                let addr = addresses[&node.name];
                let tun = netemu::tun::create_in(&ns, "eth0", addr, net.prefix_len, 1500)
                    .map_err(|source| NetworkError::Tun { node: node.name.clone(), source })?;
                ports.push(netemu::userspace::Port { node: node.name.clone(), addr, tun });
                namespaces.push(ns);
            }
            vips(spec, &namespaces)?;
            let balancers = spec
                .balancers
                .iter()
                .map(|b| netemu::l4::VipSpec {
                    telemetry_dir: Some(results_dir.to_owned()),
                    epoch_real_ns: Some(epoch_real_ns),
                    ..b.clone()
                })
                .collect();
            (Box::new(netemu::userspace::Core::start_with(graph, spec.tdf, ports, balancers)?), namespaces)
        };
    let timers = scale_timers(spec, &namespaces, net)?;
    let (congestion_control, clock_record) = dilated_cubic(spec, &namespaces);
    tracing::info!(nodes = addresses.len(), links = net.links.len(), backend = backend.name(), "network up");
    let record = json!({
        "backend": backend,
        "requested": spec.net_backend,
        "reason": reason,
        "kernel_support": support,
        "tcp_timers": timers,
        "tcp_clock": clock_record,
    });
    Ok(Some(Built { emulator, namespaces, addresses, record, _congestion_control: congestion_control }))
}

/// Direct server return: every backend holds its balancer's VIP as a /32 on `lo` (so its
/// kernel accepts the steered packets and answers from the VIP), and every node routes
/// the VIP out of `eth0` (into the core, where the balancer steers it). A backend's local
/// address wins over the route (the local table is consulted first).
fn vips(spec: &TestbedSpec, namespaces: &[netemu::netns::NetNs]) -> Result<(), NetworkError> {
    for (node, ns) in spec.nodes.iter().zip(namespaces) {
        for b in &spec.balancers {
            let err = |source| NetworkError::Vip { node: node.name.clone(), balancer: b.name.clone(), source };
            let rtnl = netemu::rtnl::Rtnl::open_in(ns).map_err(|e| err(netemu::rtnl::RtnlError::from(e)))?;
            if b.backends.contains(&node.name) {
                let lo = rtnl.index("lo").map_err(err)?;
                rtnl.add_address(lo, b.vip, 32).map_err(err)?;
            } else {
                let eth0 = rtnl.index("eth0").map_err(err)?;
                // The same rto_min as the node's prefix route (see `scale_timers`).
                let rto_min = (spec.tdf != 1.0).then(|| netemu::tcp::rto_min_route_ms(spec.tdf));
                rtnl.replace_route(b.vip, 32, Some(eth0), rto_min).map_err(err)?;
            }
        }
    }
    Ok(())
}

/// The backend to use (never `Auto`), why, and the kernel's support when it was probed.
fn choose(requested: NetBackend) -> (NetBackend, String, Option<netemu::kernel::Support>) {
    use NetBackend::{Kernel, Userspace};
    if requested == Userspace {
        return (Userspace, "requested with --net userspace".into(), None);
    }
    let support = match netemu::kernel::probe() {
        Ok(s) => s,
        Err(err) => {
            let why = format!("probing the kernel's queueing disciplines failed: {err}");
            return if requested == Kernel { (Kernel, why, None) } else { (Userspace, why, None) };
        }
    };
    match requested {
        Kernel => (Kernel, format!("requested with --net kernel (sch_netem {})", yes(support.netem)), Some(support)),
        _ if support.netem => (Kernel, "auto: this kernel has sch_netem".into(), Some(support)),
        _ => (Userspace, "auto: this kernel lacks sch_netem".into(), Some(support)),
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "present"
    } else {
        "absent"
    }
}

/// Registers CUBIC on the node's virtual clock (crate `tcpclock`) and makes it every node
/// namespace's default congestion control. Where the kernel refuses (no BTF, no struct_ops),
/// the namespaces keep the host's default on real time and the gap is recorded.
fn dilated_cubic(
    spec: &TestbedSpec,
    namespaces: &[netemu::netns::NetNs],
) -> (Option<tcpclock::DilatedCubic>, serde_json::Value) {
    const KEY: &str = tcpclock::DEFAULT_CC_SYSCTL;
    let cubic = match tcpclock::DilatedCubic::register(spec.tdf) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "dilated CUBIC unavailable: nodes keep the host's congestion control on real time");
            return (None, json!({"congestion_control": null, "gap": format!("dilated CUBIC unavailable: {e}")}));
        }
    };
    for (node, ns) in spec.nodes.iter().zip(namespaces) {
        if let Err(e) = ns.sysctl_write(KEY, cubic.name()) {
            tracing::warn!(node = %node.name, error = %e, "setting the dilated CUBIC as the namespace default failed");
            return (
                None,
                json!({"congestion_control": null, "gap": format!("{KEY} refused in node {}: {e}", node.name)}),
            );
        }
    }
    let record = json!({
        "congestion_control": cubic.name(),
        "not_scaled": ["initial RTO (1 s): needs the node in a cgroup2 directory with tcpclock's sock_ops program (not wired yet)", "delayed-ACK timers (40-200 ms): no kernel hook", "TIME-WAIT (60 s): no kernel hook"],
    });
    (Some(cubic), record)
}

/// Scales the TCP timers of every node namespace; where the kernel lacks
/// `tcp_rto_min_us`, sets the route metric `rto_min` on the node's prefix route instead.
fn scale_timers(
    spec: &TestbedSpec,
    namespaces: &[netemu::netns::NetNs],
    net: &netemu::graph::NetSpec,
) -> Result<serde_json::Value, NetworkError> {
    let mut first = None;
    for (node, ns) in spec.nodes.iter().zip(namespaces) {
        let err =
            |source: Box<dyn std::error::Error + Send + Sync>| NetworkError::Timers { node: node.name.clone(), source };
        let settings = netemu::tcp::scale_timers(ns, spec.tdf).map_err(|e| err(Box::new(e)))?;
        let missing_rto_min = settings.iter().any(|s| s.key == "net.ipv4.tcp_rto_min_us" && s.default.is_none());
        if missing_rto_min && spec.tdf != 1.0 {
            let rtnl = netemu::rtnl::Rtnl::open_in(ns).map_err(|e| err(Box::new(e)))?;
            let eth0 = rtnl.index("eth0").map_err(|e| err(Box::new(e)))?;
            rtnl.replace_route(net.prefix, net.prefix_len, Some(eth0), Some(netemu::tcp::rto_min_route_ms(spec.tdf)))
                .map_err(|e| err(Box::new(e)))?;
        }
        if first.is_none() {
            first = Some(json!({
                "settings": settings,
                "route_rto_min_ms": (missing_rto_min && spec.tdf != 1.0).then(|| netemu::tcp::rto_min_route_ms(spec.tdf)),
                "not_scaled": ["initial RTO (1 s) and SYN/SYN-ACK retransmission timing", "delayed-ACK timers (40-200 ms)", "TIME-WAIT (60 s)"],
            }));
        }
    }
    Ok(first.unwrap_or(serde_json::Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userspace_is_chosen_without_probing_when_requested() {
        let (backend, reason, support) = choose(NetBackend::Userspace);
        assert_eq!(backend, NetBackend::Userspace);
        assert!(reason.contains("--net userspace"));
        assert!(support.is_none());
    }

    #[test]
    fn auto_follows_the_probe() {
        if !nix::unistd::geteuid().is_root() {
            println!("SKIPPED: auto_follows_the_probe: needs root");
            return;
        }
        let (backend, _, support) = choose(NetBackend::Auto);
        let support = support.unwrap();
        assert_eq!(backend, if support.netem { NetBackend::Kernel } else { NetBackend::Userspace });
    }
}
