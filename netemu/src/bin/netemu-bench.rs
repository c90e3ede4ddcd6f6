//! `netemu-bench`: measures the userspace core against a plain veth pair between two
//! namespaces (root). Run by `bench/netem.sh`; prints one `key value` line per figure.
//!
//! - `throughput`: one iperf3 TCP flow over a veth pair, then through the core (one
//!   unconstrained link, MTU 1500), and their ratio;
//! - `latency`: UDP ping-pong round trips over both; the core's added latency per traversal;
//! - `lateness`: the core's lateness p99 while forwarding a paced UDP load across 100 links;
//! - `idle`: the core with N idle nodes: its CPU use and memory per node;
//! - `l4-throughput`: one iperf3 TCP flow through the core to a node's address, then to an
//!   L4 balancer's VIP whose one backend is that node (DSR: the backend holds the VIP on
//!   its loopback), and their ratio: what the balancer in the core's path costs a flow.

use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use netemu::graph::{Graph, LinkSpec, NetSpec};
use netemu::link::LinkParams;
use netemu::netns::NetNs;
use netemu::rtnl::Rtnl;
use netemu::userspace::{Core, Port};

#[derive(Debug, Parser)]
#[command(about = "Benchmarks of diorama's userspace network core against a raw veth pair")]
struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// Single-flow TCP throughput (iperf3): veth vs core.
    Throughput {
        #[arg(long, default_value_t = 5)]
        secs: u32,
    },
    /// UDP round trips: veth vs core.
    Latency {
        #[arg(long, default_value_t = 20_000)]
        count: usize,
    },
    /// Core lateness under a paced UDP load through 100 links.
    Lateness {
        /// Offered load, Mbit/s real.
        #[arg(long, default_value_t = 1000.0)]
        mbps: f64,
        #[arg(long, default_value_t = 5)]
        secs: u64,
    },
    /// Single-flow TCP throughput through the core: to a node, and to an L4 VIP on it.
    L4Throughput {
        #[arg(long, default_value_t = 5)]
        secs: u32,
        /// `maglev` or `inband`.
        #[arg(long, default_value = "inband")]
        policy: String,
    },
    /// Idle cost of the core with N nodes.
    Idle {
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
        #[arg(long, default_value_t = 10)]
        secs: u64,
    },
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !nix::unistd::geteuid().is_root() {
        bail!("netemu-bench needs root (namespaces, TUN, veth)");
    }
    match args.what {
        What::Throughput { secs } => throughput(secs),
        What::Latency { count } => latency(count),
        What::Lateness { mbps, secs } => lateness(mbps, secs),
        What::Idle { nodes, secs } => idle(nodes, secs),
        What::L4Throughput { secs, policy } => l4_throughput(secs, &policy),
    }
}

/// Two namespaces joined by a plain veth pair (default offloads), 10.88.0.1 and .2.
fn veth_pair() -> anyhow::Result<(NetNs, NetNs)> {
    let (a, b) = (NetNs::create()?, NetNs::create()?);
    let ra = Rtnl::open_in(&a)?;
    let rb = Rtnl::open_in(&b)?;
    ra.add_veth_plain("veth0", "veth0", b.as_fd().as_raw_fd())?;
    for (r, addr) in [(&ra, Ipv4Addr::new(10, 88, 0, 1)), (&rb, Ipv4Addr::new(10, 88, 0, 2))] {
        let lo = r.index("lo")?;
        r.set_up(lo, true)?;
        let i = r.index("veth0")?;
        r.add_address(i, addr, 24)?;
        r.set_up(i, true)?;
    }
    Ok((a, b))
}

/// `n` nodes through the core, with `links` (node pairs or switch), returning the core and
/// the namespaces in node order.
fn core_net(spec: NetSpec) -> anyhow::Result<(Core, Vec<NetNs>)> {
    let graph = Graph::build(spec)?;
    let (ports, namespaces) = ports(&graph)?;
    Ok((Core::start(graph, 1.0, ports)?, namespaces))
}

/// One namespace with a TUN device per node of `graph`, in node order.
fn ports(graph: &Graph) -> anyhow::Result<(Vec<Port>, Vec<NetNs>)> {
    let mut ports = Vec::new();
    let mut namespaces = Vec::new();
    for node in graph.spec.nodes.clone() {
        let addr = graph.addresses()[&node];
        let ns = NetNs::create()?;
        let tun = netemu::tun::create_in(&ns, "eth0", addr, graph.spec.prefix_len, 1500)?;
        ports.push(Port { node, addr, tun });
        namespaces.push(ns);
    }
    Ok((ports, namespaces))
}

fn pair_spec() -> NetSpec {
    NetSpec {
        prefix: Ipv4Addr::new(10, 77, 0, 0),
        prefix_len: 16,
        nodes: vec!["a".into(), "b".into()],
        switches: vec![],
        links: vec![LinkSpec {
            name: "a--b".into(),
            a: "a".into(),
            b: "b".into(),
            forward: LinkParams::default(),
            reverse: LinkParams::default(),
        }],
    }
}

/// Runs a command inside `ns` through nsenter on this process's descriptor.
fn in_ns(ns: &NetNs, program: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/proc/{}/fd/{}", std::process::id(), ns.as_fd().as_raw_fd())).arg(program).args(args);
    cmd
}

fn iperf(server_ns: &NetNs, client_ns: &NetNs, server_addr: Ipv4Addr, secs: u32) -> anyhow::Result<f64> {
    let mut server: Child = in_ns(server_ns, "iperf3", &["-s", "-1", "-p", "5299"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start iperf3 (is it installed?)")?;
    std::thread::sleep(Duration::from_millis(300));
    let out =
        in_ns(client_ns, "iperf3", &["-c", &server_addr.to_string(), "-p", "5299", "-t", &secs.to_string(), "-J"])
            .output()?;
    let _ = server.wait();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("iperf3's JSON")?;
    v["end"]["sum_received"]["bits_per_second"].as_f64().context("iperf3 reported no throughput")
}

fn throughput(secs: u32) -> anyhow::Result<()> {
    let (a, b) = veth_pair()?;
    let veth = iperf(&b, &a, Ipv4Addr::new(10, 88, 0, 2), secs)?;
    drop((a, b));
    let (mut core, ns) = core_net(pair_spec())?;
    let through = iperf(&ns[1], &ns[0], Ipv4Addr::new(10, 77, 0, 2), secs)?;
    let bad = core.bad_packets();
    core.shutdown();
    println!("throughput_veth_gbps {:.3}", veth / 1e9);
    println!("throughput_core_gbps {:.3}", through / 1e9);
    println!("throughput_ratio {:.3}", through / veth);
    println!("core_bad_packets {}", bad.malformed + bad.truncated + bad.non_ip + bad.unroutable);
    Ok(())
}

/// The VIP of `l4-throughput` (no node's address).
const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 255, 1);

fn l4_throughput(secs: u32, policy: &str) -> anyhow::Result<()> {
    let (mut core, ns) = core_net(pair_spec())?;
    let direct = iperf(&ns[1], &ns[0], Ipv4Addr::new(10, 77, 0, 2), secs)?;
    core.shutdown();
    drop(ns);
    let graph = Graph::build(pair_spec())?;
    let (ports, namespaces) = ports(&graph)?;
    // As the testbed does (docs/l4lb.md): the backend holds the VIP on `lo`, the client
    // routes it out of its TUN device.
    let rb = Rtnl::open_in(&namespaces[1])?;
    let lo = rb.index("lo")?;
    rb.set_up(lo, true)?;
    rb.add_address(lo, VIP, 32)?;
    let ra = Rtnl::open_in(&namespaces[0])?;
    ra.replace_route(VIP, 32, Some(ra.index("eth0")?), None)?;
    let config = balancer::BalancerConfig { policy: policy.parse()?, ..balancer::BalancerConfig::default() };
    let vip = netemu::l4::VipSpec {
        name: "bench".into(),
        vip: VIP,
        port: 5299,
        backends: vec!["b".into()],
        weights: vec![1.0],
        config,
        telemetry_dir: None,
        epoch_real_ns: None,
    };
    let mut core = Core::start_with(graph, 1.0, ports, vec![vip])?;
    let balanced = iperf(&namespaces[1], &namespaces[0], VIP, secs)?;
    let bad = core.bad_packets();
    core.shutdown();
    println!("throughput_core_gbps {:.3}", direct / 1e9);
    println!("throughput_core_l4_{policy}_gbps {:.3}", balanced / 1e9);
    println!("throughput_l4_ratio {:.3}", balanced / direct);
    println!("core_bad_packets {}", bad.malformed + bad.truncated + bad.non_ip + bad.unroutable);
    Ok(())
}

/// Round trips of 64-byte UDP datagrams; returns sorted RTTs.
fn ping_pong(client: UdpSocket, server: UdpSocket, to: &str, count: usize) -> anyhow::Result<Vec<Duration>> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stop);
    server.set_read_timeout(Some(Duration::from_millis(100)))?;
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 128];
        while !s.load(Ordering::Relaxed) {
            if let Ok((n, from)) = server.recv_from(&mut buf) {
                let _ = server.send_to(&buf[..n], from);
            }
        }
    });
    client.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut rtts = Vec::with_capacity(count);
    let mut buf = [0u8; 128];
    for i in 0..count + 200 {
        let t = Instant::now();
        client.send_to(&[7u8; 64], to)?;
        if client.recv(&mut buf).is_ok() && i >= 200 {
            rtts.push(t.elapsed());
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = echo.join();
    rtts.sort_unstable();
    Ok(rtts)
}

fn pct(v: &[Duration], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6
}

fn latency(count: usize) -> anyhow::Result<()> {
    let (a, b) = veth_pair()?;
    let c = a.run_in(|| UdpSocket::bind("10.88.0.1:0"))?;
    let s = b.run_in(|| UdpSocket::bind("10.88.0.2:5300"))?;
    let veth = ping_pong(c, s, "10.88.0.2:5300", count)?;
    let (mut core, ns) = core_net(pair_spec())?;
    let c = ns[0].run_in(|| UdpSocket::bind("10.77.0.1:0"))?;
    let s = ns[1].run_in(|| UdpSocket::bind("10.77.0.2:5300"))?;
    let through = ping_pong(c, s, "10.77.0.2:5300", count)?;
    core.shutdown();
    for (name, v) in [("veth", &veth), ("core", &through)] {
        println!("rtt_{name}_p50_us {:.1}", pct(v, 0.5));
        println!("rtt_{name}_p99_us {:.1}", pct(v, 0.99));
    }
    // A round trip crosses the core twice.
    println!("core_added_p50_us {:.1}", (pct(&through, 0.5) - pct(&veth, 0.5)) / 2.0);
    println!("core_added_p99_us {:.1}", (pct(&through, 0.99) - pct(&veth, 0.99)) / 2.0);
    println!("samples {}", through.len());
    Ok(())
}

fn lateness(mbps: f64, secs: u64) -> anyhow::Result<()> {
    // 100 nodes on one switch: 100 links; 50 flows from node 2i to node 2i+1 cross two links.
    let nodes: Vec<String> = (0..100).map(|i| format!("n{i}")).collect();
    let links = nodes
        .iter()
        .map(|n| {
            let p = LinkParams { delay: Duration::from_millis(1), ..LinkParams::default() };
            LinkSpec { name: format!("{n}--sw"), a: n.clone(), b: "sw".into(), forward: p, reverse: p }
        })
        .collect();
    let spec =
        NetSpec { prefix: Ipv4Addr::new(10, 77, 0, 0), prefix_len: 16, nodes, switches: vec!["sw".into()], links };
    let (mut core, ns) = core_net(spec)?;
    let mut pairs = Vec::new();
    for f in 0..50 {
        let src = Ipv4Addr::new(10, 77, 0, (2 * f + 1) as u8);
        let dst = Ipv4Addr::new(10, 77, 0, (2 * f + 2) as u8);
        let tx = ns[2 * f].run_in(move || UdpSocket::bind((src, 0)))?;
        let rx = ns[2 * f + 1].run_in(move || UdpSocket::bind((dst, 5400)))?;
        rx.set_nonblocking(true)?;
        pairs.push((tx, rx, format!("{dst}:5400")));
    }
    let payload = 1400usize;
    let wire_bits = ((payload + 28) * 8) as f64;
    let pps = mbps * 1e6 / wire_bits;
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let rxs: Vec<UdpSocket> = pairs.iter().map(|(_, rx, _)| rx.try_clone()).collect::<Result<_, _>>()?;
    let sink = {
        let (stop, received) = (Arc::clone(&stop), Arc::clone(&received));
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                let mut got = 0;
                for rx in &rxs {
                    while rx.recv(&mut buf).is_ok() {
                        got += 1;
                    }
                }
                received.fetch_add(got, Ordering::Relaxed);
                if got == 0 {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        })
    };
    // Two paced sender threads, each with half of the flows and half of the load.
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(secs);
    let mut senders = Vec::new();
    let mut halves: [Vec<(UdpSocket, String)>; 2] = [Vec::new(), Vec::new()];
    for (k, (tx, _, to)) in pairs.into_iter().enumerate() {
        halves[k % 2].push((tx, to));
    }
    for half in halves {
        let sent = Arc::clone(&sent);
        senders.push(std::thread::spawn(move || {
            let buf = vec![0u8; payload];
            let rate = pps / 2.0;
            let mut i: u64 = 0;
            while Instant::now() < deadline {
                // Paced: packet i of this thread leaves at i / rate, round-robin over its flows.
                let due = t0 + Duration::from_secs_f64(i as f64 / rate);
                let now = Instant::now();
                if due > now + Duration::from_micros(100) {
                    std::thread::sleep(due - now);
                }
                let (tx, to) = &half[(i % half.len() as u64) as usize];
                if tx.send_to(&buf, to.as_str()).is_ok() {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        }));
    }
    for s in senders {
        let _ = s.join();
    }
    let elapsed = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let _ = sink.join();
    let delivered = received.load(Ordering::Relaxed) as f64;
    println!("offered_mbps {:.1}", sent.load(Ordering::Relaxed) as f64 * wire_bits / elapsed / 1e6);
    println!("delivered_mbps {:.1}", delivered * wire_bits / elapsed / 1e6);
    for q in [0.5, 0.99, 0.999] {
        let l = core.lateness(q).map_or(f64::NAN, |d| d.as_secs_f64() * 1e6);
        println!("core_lateness_p{}_us {l:.1}", (q * 1000.0).round() / 10.0);
    }
    core.shutdown();
    Ok(())
}

/// (user + system CPU seconds of this process, resident KiB).
fn usage() -> (f64, u64) {
    let cpu = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).map_or(0.0, |u| {
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
        t(u.user_time()) + t(u.system_time())
    });
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0);
    (cpu, rss)
}

fn idle(n: usize, secs: u64) -> anyhow::Result<()> {
    let nodes: Vec<String> = (0..n).map(|i| format!("n{i}")).collect();
    let links = nodes
        .iter()
        .map(|x| LinkSpec {
            name: format!("{x}--sw"),
            a: x.clone(),
            b: "sw".into(),
            forward: LinkParams::default(),
            reverse: LinkParams::default(),
        })
        .collect();
    let spec =
        NetSpec { prefix: Ipv4Addr::new(10, 77, 0, 0), prefix_len: 16, nodes, switches: vec!["sw".into()], links };
    let graph = Graph::build(spec)?;
    let mut ports = Vec::new();
    let mut namespaces = Vec::new();
    let (_, rss0) = usage();
    let t = Instant::now();
    for node in graph.spec.nodes.clone() {
        let addr = graph.addresses()[&node];
        let ns = NetNs::create()?;
        let tun = netemu::tun::create_in(&ns, "eth0", addr, 16, 1500)?;
        ports.push(Port { node, addr, tun });
        namespaces.push(ns);
    }
    let setup = t.elapsed();
    let (_, rss1) = usage();
    let mut core = Core::start(graph, 1.0, ports)?;
    std::thread::sleep(Duration::from_secs(1));
    let (cpu0, rss2) = usage();
    std::thread::sleep(Duration::from_secs(secs));
    let (cpu1, rss3) = usage();
    core.shutdown();
    println!("idle_nodes {n}");
    println!("idle_setup_s {:.2}", setup.as_secs_f64());
    println!("idle_cpu_percent {:.3}", (cpu1 - cpu0) / secs as f64 * 100.0);
    println!("idle_core_rss_kib_per_node {:.2}", rss3.saturating_sub(rss1) as f64 / n as f64);
    println!("idle_setup_rss_kib_per_node {:.2}", rss1.saturating_sub(rss0) as f64 / n as f64);
    println!("idle_rss_kib_total {rss3} (after core start {rss2})");
    drop(namespaces);
    Ok(())
}
