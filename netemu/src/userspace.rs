//! The userspace emulation core: reads packets from every node's TUN device, passes each
//! through the queue of every link on its route, in real time scaled by the TDF, and writes
//! it to the destination node's TUN device.
//!
//! # Design
//! One thread owns every TUN descriptor and a timer heap. Each direction of each link is a
//! FIFO with a drop-tail limit: a packet's departure is `max(arrival, link busy until) +
//! size / rate`, its arrival at the far end `departure + delay (+ jitter)`; it then enters
//! the next link's queue, so a shared bottleneck (a dumbbell's middle link) is one queue for
//! every flow crossing it. Next events are scheduled at their planned times, not at the
//! time they were handled, so the core's own lateness does not accumulate along a path; the
//! lateness itself (handled − planned) is recorded: it is how a run knows it was faithful.
//!
//! Every switch a packet reaches (the vertex between two links of its route) passes it
//! through [`crate::hop::forward`], as a router would: TTL minus one, and on expiry the
//! packet is dropped and the switch's ICMP time-exceeded reply, from the switch's address
//! ([`crate::graph`]), enters the network at that switch on the route back to the sender,
//! so `traceroute` in a node sees one hop per switch with the links' delays between them.
//!
//! # Limitations
//! IPv4 only (IPv6 packets are counted as unroutable and dropped). One thread: measured
//! enough for tens of Mbit/s of emulated traffic; multi-queue TUN and offloads are future work.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, HashMap};
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::emulator::{Emulator, EmulatorError, LinkSample};
use crate::graph::{Dir, Graph, Hop};
use crate::link::{scale, LinkError, LinkParams, Loss, QueueLimit};
use crate::packet::{BadPackets, Counters};

/// A node's attachment: its TUN device and address.
#[derive(Debug)]
pub struct Port {
    pub node: String,
    pub addr: Ipv4Addr,
    pub tun: File,
}

/// Counters of one direction of one link (totals since the start).
#[derive(Debug, Default)]
pub struct DirCounters {
    pub bytes: AtomicU64,
    pub packets: AtomicU64,
    pub drops: AtomicU64,
    pub queue_bytes: AtomicU64,
}

/// Runtime changes, applied between packets.
#[derive(Debug)]
enum Change {
    Params {
        link: usize,
        dir: Dir,
        params: LinkParams,
    },
    Down {
        link: usize,
        down: bool,
    },
    /// The partition group of every port (`None`: in no group).
    Partition(Vec<Option<usize>>),
    /// Extra real delay before a port's packets enter their first link.
    Inflate {
        port: usize,
        extra: Duration,
    },
}

/// Errors of the core.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("unknown link {0}")]
    UnknownLink(String),
    #[error("scale link parameters")]
    Params(#[from] LinkError),
    #[error("the core thread is gone")]
    Gone,
    #[error("create the core's wake-up socket or epoll set")]
    Wake(#[source] std::io::Error),
    #[error(transparent)]
    Balancer(#[from] crate::l4::L4Error),
}

/// Shared with the core thread.
struct Shared {
    counters: Vec<[DirCounters; 2]>,
    /// Frames dropped before routing (bad, unroutable, partitioned).
    bad: Counters,
    /// Lateness samples in ns (a bounded ring), for percentiles.
    lateness: Mutex<Vec<u64>>,
    stop: AtomicBool,
}

const LATENESS_SAMPLES: usize = 65_536;
/// A lateness slot not written yet.
const UNSET: u64 = u64::MAX;

/// A running core.
pub struct Core {
    shared: Arc<Shared>,
    changes: mpsc::Sender<Change>,
    /// Wakes the core's poll when a change is sent, so it applies at once.
    wake: UnixDatagram,
    /// The core thread; it hands its TUN devices back when it ends.
    thread: Option<JoinHandle<Vec<File>>>,
    names: Vec<String>,
    perceived: Vec<[LinkParams; 2]>,
    /// Node names in port order, and each link's endpoints.
    nodes: Vec<String>,
    ends: Vec<(String, String)>,
    tdf: f64,
    /// Second descriptors of the TUN devices, for offload changes.
    tuns: Vec<File>,
    /// Whether the devices hand the core TSO packets (every link is [`gso_safe`]).
    offloading: bool,
}

fn idx(dir: Dir) -> usize {
    match dir {
        Dir::Forward => 0,
        Dir::Reverse => 1,
    }
}

impl Core {
    /// Starts the core for `graph` (perceived parameters) at TDF `tdf`.
    pub fn start(graph: Graph, tdf: f64, ports: Vec<Port>) -> Result<Self, CoreError> {
        Self::start_with(graph, tdf, ports, Vec::new())
    }

    /// [`Core::start`] with L4 balancers in the data path (see [`crate::l4`]).
    pub fn start_with(
        graph: Graph,
        tdf: f64,
        ports: Vec<Port>,
        balancers: Vec<crate::l4::VipSpec>,
    ) -> Result<Self, CoreError> {
        let names: Vec<String> = graph.spec.links.iter().map(|l| l.name.clone()).collect();
        let ends = graph.spec.links.iter().map(|l| (l.a.clone(), l.b.clone())).collect();
        let nodes: Vec<String> = ports.iter().map(|p| p.node.clone()).collect();
        let l4 = crate::l4::Steering::new(balancers, &nodes, tdf)?;
        let perceived: Vec<[LinkParams; 2]> = graph.spec.links.iter().map(|l| [l.forward, l.reverse]).collect();
        let mut real = Vec::with_capacity(perceived.len());
        for p in &perceived {
            real.push([scale(&p[0], tdf)?, scale(&p[1], tdf)?]);
        }
        let shared = Arc::new(Shared {
            counters: (0..names.len()).map(|_| [DirCounters::default(), DirCounters::default()]).collect(),
            bad: Counters::default(),
            // Filled up front (with a value no sample takes), so that the ring is resident
            // from the start and the core's memory is flat over a long run (bench/soak.sh saw
            // it grow by the ring's 512 KiB while it filled).
            lateness: Mutex::new(vec![UNSET; LATENESS_SAMPLES]),
            stop: AtomicBool::new(false),
        });
        let tuns = ports.iter().map(|p| p.tun.try_clone()).collect::<Result<Vec<_>, _>>().map_err(CoreError::Wake)?;
        let (tx, rx) = mpsc::channel();
        let (wake, woken) = UnixDatagram::pair().map_err(CoreError::Wake)?;
        woken.set_nonblocking(true).map_err(CoreError::Wake)?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|e| CoreError::Wake(e.into()))?;
        for (i, p) in ports.iter().enumerate() {
            epoll
                .add(p.tun.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, i as u64))
                .map_err(|e| CoreError::Wake(e.into()))?;
        }
        epoll
            .add(woken.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, u64::MAX))
            .map_err(|e| CoreError::Wake(e.into()))?;
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("netem-core".into())
            .spawn(move || Engine { l4, ..Engine::new(graph, real, ports, s, rx, woken, epoll) }.run())
            .map_err(|_| CoreError::Gone)?;
        let mut core = Self {
            shared,
            changes: tx,
            wake,
            thread: Some(thread),
            names,
            perceived,
            nodes,
            ends,
            tdf,
            tuns,
            offloading: false,
        };
        core.update_offloads().map_err(CoreError::Wake)?;
        Ok(core)
    }

    /// Offloads on exactly when every link direction is [`gso_safe`]; when a change makes
    /// one unsafe, the kernel segments (and checksums) packets before the core sees them.
    fn update_offloads(&mut self) -> std::io::Result<()> {
        let safe = self.perceived.iter().flatten().all(gso_safe);
        if safe != self.offloading {
            for t in &self.tuns {
                crate::tun::set_offload(t, safe)?;
            }
            self.offloading = safe;
            tracing::debug!(offloads = safe, "TUN offloads");
        }
        Ok(())
    }

    /// Whether the TUN devices currently carry TSO packets.
    pub fn offloading(&self) -> bool {
        self.offloading
    }

    fn link(&self, name: &str) -> Result<usize, EmulatorError> {
        self.names.iter().position(|n| n == name).ok_or_else(|| EmulatorError::UnknownLink(name.to_owned()))
    }

    fn port(&self, node: &str) -> Result<usize, EmulatorError> {
        self.nodes.iter().position(|n| n == node).ok_or_else(|| EmulatorError::UnknownNode(node.to_owned()))
    }

    fn send(&self, change: Change) -> Result<(), EmulatorError> {
        self.changes.send(change).map_err(|_| EmulatorError::Gone)?;
        // A full wake-up socket already holds a wake-up: ignore that error.
        let _ = self.wake.send(&[1]);
        Ok(())
    }

    /// Counters of every link direction.
    pub fn samples(&self) -> Vec<LinkSample> {
        let mut out = Vec::with_capacity(self.names.len() * 2);
        for (i, name) in self.names.iter().enumerate() {
            for dir in [Dir::Forward, Dir::Reverse] {
                let c = &self.shared.counters[i][idx(dir)];
                out.push(LinkSample {
                    link: name.clone(),
                    dir,
                    bytes: c.bytes.load(Ordering::Relaxed),
                    packets: c.packets.load(Ordering::Relaxed),
                    drops: c.drops.load(Ordering::Relaxed),
                    queue_bytes: c.queue_bytes.load(Ordering::Relaxed),
                    rate_bps: self.perceived[i][idx(dir)].rate_bps,
                });
            }
        }
        out
    }

    /// Frames dropped before routing, by reason.
    pub fn bad_packets(&self) -> BadPackets {
        self.shared.bad.snapshot()
    }

    /// The p-quantile (0..1) of the core's lateness over recent packets.
    pub fn lateness(&self, q: f64) -> Option<Duration> {
        let mut v: Vec<u64> = self.shared.lateness.lock().ok()?.iter().copied().filter(|&x| x != UNSET).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let i = ((v.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
        Some(Duration::from_nanos(v[i]))
    }

    /// Stops the core and closes every TUN device (in parallel: see [`crate::tun::close_all`]).
    pub fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let _ = self.wake.send(&[1]);
        let mut devices = std::mem::take(&mut self.tuns);
        if let Some(t) = self.thread.take() {
            devices.extend(t.join().unwrap_or_default());
        }
        crate::tun::close_all(devices);
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Emulator for Core {
    fn backend(&self) -> &'static str {
        "userspace"
    }

    fn links(&self) -> Vec<String> {
        self.names.clone()
    }

    fn access_links(&self, node: &str) -> Vec<String> {
        self.names.iter().zip(&self.ends).filter(|(_, (a, b))| a == node || b == node).map(|(n, _)| n.clone()).collect()
    }

    fn link_params(&self, link: &str, dir: Dir) -> Result<LinkParams, EmulatorError> {
        let i = self.link(link)?;
        Ok(self.perceived[i][idx(dir)])
    }

    fn set_link(&mut self, link: &str, dir: Dir, params: LinkParams) -> Result<(), EmulatorError> {
        let i = self.link(link)?;
        let real = scale(&params, self.tdf)?;
        self.perceived[i][idx(dir)] = params;
        // Offloads go off before a per-packet feature applies (and on after it is gone).
        self.update_offloads().map_err(|e| EmulatorError::Kernel(Box::new(e)))?;
        self.send(Change::Params { link: i, dir, params: real })
    }

    fn set_down(&mut self, link: &str, down: bool) -> Result<(), EmulatorError> {
        let i = self.link(link)?;
        for p in &mut self.perceived[i] {
            p.down = down;
        }
        self.send(Change::Down { link: i, down })
    }

    fn partition(&mut self, groups: &[Vec<String>]) -> Result<(), EmulatorError> {
        let mut of = vec![None; self.nodes.len()];
        for (g, members) in groups.iter().enumerate() {
            for m in members {
                let p = self.port(m)?;
                if of[p].is_some_and(|other| other != g) {
                    return Err(EmulatorError::Overlap(m.clone()));
                }
                of[p] = Some(g);
            }
        }
        self.send(Change::Partition(of))
    }

    fn heal(&mut self) -> Result<(), EmulatorError> {
        self.send(Change::Partition(vec![None; self.nodes.len()]))
    }

    fn inflate(&mut self, node: &str, extra: Duration) -> Result<(), EmulatorError> {
        let port = self.port(node)?;
        // The same scaling as a link's delay: perceived × TDF.
        let probe = LinkParams { delay: extra, ..LinkParams::default() };
        let real = scale(&probe, self.tdf)?.delay;
        self.send(Change::Inflate { port, extra: real })
    }

    fn samples(&self) -> Vec<LinkSample> {
        Core::samples(self)
    }

    fn lateness(&self, q: f64) -> Option<Duration> {
        Core::lateness(self, q)
    }

    fn bad_packets(&self) -> BadPackets {
        Core::bad_packets(self)
    }

    fn shutdown(&mut self) {
        Core::shutdown(self);
    }
}

/// The bytes and packets a (possibly TSO) packet takes on the wire: a TSO packet of `s`
/// segments repeats its IP and transport headers `s − 1` more times.
fn wire_size(packet: &[u8]) -> (u64, u64) {
    let ip_len = packet.len().saturating_sub(HDR) as u64;
    let gso_type = packet.get(1).copied().unwrap_or(0) & 0x7f;
    let gso_size = packet.get(4..6).map_or(0, |b| u64::from(u16::from_le_bytes([b[0], b[1]])));
    if gso_type == 0 || gso_size == 0 || packet.len() < HDR + 20 {
        return (ip_len, 1);
    }
    let ip_hl = u64::from(packet[HDR] & 0x0f) * 4;
    let l4 = match packet[HDR + 9] {
        6 => packet.get(HDR + ip_hl as usize + 12).map_or(20, |b| u64::from(b >> 4) * 4),
        _ => 8,
    };
    let headers = ip_hl + l4;
    let segs = ip_len.saturating_sub(headers).div_ceil(gso_size).max(1);
    (ip_len + (segs - 1) * headers, segs)
}

/// Whether a direction may carry TSO packets whole: nothing in it acts per packet.
pub fn gso_safe(p: &LinkParams) -> bool {
    matches!(p.loss, Loss::Random(q) if q == 0.0)
        && p.duplicate == 0.0
        && p.corrupt == 0.0
        && p.reorder == 0.0
        && p.jitter.is_zero()
}

/// A timed event.
struct Event {
    at: Instant,
    seq: u64,
    kind: Kind,
}

enum Kind {
    /// A packet left a link's queue (for queue-depth accounting).
    Dequeue { hop: Hop, bytes: u64, packets: u64 },
    /// A packet reached the far end of hop `pos - 1` of its route.
    Arrive { packet: Vec<u8>, route: Rc<[Hop]>, pos: usize, dst: usize },
}

impl PartialEq for Event {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Event {}
impl PartialOrd for Event {
    fn partial_cmp(&self, o: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(o))
    }
}
impl Ord for Event {
    // Reversed: BinaryHeap is a max-heap, the earliest event must come first.
    fn cmp(&self, o: &Self) -> CmpOrdering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

struct DirState {
    params: LinkParams,
    busy_until: Instant,
    queued_bytes: u64,
    queued_packets: u64,
    /// Gilbert–Elliott: in the bad state.
    bad: bool,
}

struct Engine {
    graph: Graph,
    state: Vec<[DirState; 2]>,
    ports: Vec<Port>,
    by_addr: HashMap<Ipv4Addr, usize>,
    routes: HashMap<(usize, usize), Option<Rc<[Hop]>>>,
    heap: BinaryHeap<Event>,
    seq: u64,
    shared: Arc<Shared>,
    changes: mpsc::Receiver<Change>,
    rng: StdRng,
    lateness_at: usize,
    /// Partition group of each port (`None`: reaches everyone).
    groups: Vec<Option<usize>>,
    /// Extra real delay of each port's outgoing packets (`inflate`).
    inflate: Vec<Duration>,
    /// Readable when a change is waiting.
    woken: UnixDatagram,
    /// Every TUN device (data: port index) and the wake-up socket (data: `u64::MAX`).
    epoll: Epoll,
    /// L4 balancers: packets to a VIP go to the backend they choose.
    l4: crate::l4::Steering,
    /// Per link and direction: the switch the hop leads into (its name and address), if any.
    into_switch: Vec<[Option<SwitchEnd>; 2]>,
    /// Routes of time-exceeded replies: (switch, destination port) → hops.
    switch_routes: HashMap<(Rc<str>, usize), CachedRoute>,
}

/// A switch a hop leads into: its name and address.
type SwitchEnd = (Rc<str>, Ipv4Addr);
/// A route once computed (`None`: unreachable).
type CachedRoute = Option<Rc<[Hop]>>;

/// Largest packet read from a TUN device.
const MAX_PACKET: usize = 65_536 + 256;
/// SCHED_FIFO priority of the forwarding thread (low among real-time threads).
const CORE_PRIORITY: i32 = 10;
/// The virtio-net header before every packet.
const HDR: usize = crate::tun::VNET_HDR_LEN;

impl Engine {
    fn new(
        graph: Graph,
        real: Vec<[LinkParams; 2]>,
        ports: Vec<Port>,
        shared: Arc<Shared>,
        changes: mpsc::Receiver<Change>,
        woken: UnixDatagram,
        epoll: Epoll,
    ) -> Self {
        let now = Instant::now();
        let state = real
            .into_iter()
            .map(|[f, r]| {
                let mk = |params| DirState { params, busy_until: now, queued_bytes: 0, queued_packets: 0, bad: false };
                [mk(f), mk(r)]
            })
            .collect();
        let by_addr = ports.iter().enumerate().map(|(i, p)| (p.addr, i)).collect();
        let switch =
            |name: &String| graph.switch_addresses().get(name).map(|&addr| (Rc::<str>::from(name.as_str()), addr));
        let into_switch = graph.spec.links.iter().map(|l| [switch(&l.b), switch(&l.a)]).collect();
        // A fixed seed: runs are reproducible packet for packet given the same arrivals.
        let n = ports.len();
        Self {
            graph,
            state,
            ports,
            by_addr,
            routes: HashMap::new(),
            heap: BinaryHeap::new(),
            seq: 0,
            shared,
            changes,
            rng: StdRng::seed_from_u64(0x0064_696f_7261_6d61),
            lateness_at: 0,
            groups: vec![None; n],
            inflate: vec![Duration::ZERO; n],
            woken,
            epoll,
            l4: crate::l4::Steering::none(),
            into_switch,
            switch_routes: HashMap::new(),
        }
    }

    fn push(&mut self, at: Instant, kind: Kind) {
        self.seq += 1;
        self.heap.push(Event { at, seq: self.seq, kind });
    }

    /// Forwards until told to stop; returns the TUN devices for the caller to close.
    fn run(mut self) -> Vec<File> {
        if let Err(err) = crate::sys::realtime(CORE_PRIORITY) {
            tracing::warn!(%err, "the network core runs without real-time priority: expect lateness on a busy host");
        }
        let mut buf = vec![0u8; MAX_PACKET];
        let mut events = vec![EpollEvent::empty(); 256];
        let mut ready: Vec<usize> = Vec::with_capacity(256);
        while !self.shared.stop.load(Ordering::Relaxed) {
            while let Ok(change) = self.changes.try_recv() {
                match change {
                    Change::Params { link, dir, params } => self.state[link][idx(dir)].params = params,
                    Change::Down { link, down } => {
                        for d in &mut self.state[link] {
                            d.params.down = down;
                        }
                    }
                    Change::Partition(groups) => self.groups = groups,
                    Change::Inflate { port, extra } => {
                        if let Some(slot) = self.inflate.get_mut(port) {
                            *slot = extra;
                        }
                    }
                }
            }
            let now = Instant::now();
            // Sleep until the next event; a change or the stop request wakes the poll early
            // (through the wake-up socket, registered in the epoll set).
            let wait = self
                .heap
                .peek()
                .map_or(Duration::from_secs(1), |e| e.at.saturating_duration_since(now))
                .min(Duration::from_secs(1));
            {
                let mut fds = [PollFd::new(self.epoll.0.as_fd(), PollFlags::POLLIN)];
                let _ = nix::poll::ppoll(&mut fds, Some(nix::sys::time::TimeSpec::from_duration(wait)), None);
            }
            // ppoll has nanosecond timeouts (epoll_wait only milliseconds); epoll then names
            // the ready devices without scanning all of them.
            let n = self.epoll.wait(&mut events, EpollTimeout::ZERO).unwrap_or(0);
            ready.clear();
            let mut woken = false;
            for e in &events[..n] {
                match usize::try_from(e.data()) {
                    Ok(i) if i < self.ports.len() => ready.push(i),
                    _ => woken = true,
                }
            }
            if woken {
                let mut drain = [0u8; 64];
                while self.woken.recv(&mut drain).is_ok() {}
                // The change is applied at the top of the loop, before any packet.
                if ready.is_empty() {
                    continue;
                }
            }
            for &src in &ready {
                // Batch: drain each ready device.
                loop {
                    match self.ports[src].tun.read(&mut buf) {
                        Ok(n) if n > 0 => {
                            let packet = buf[..n].to_vec();
                            self.ingress(src, packet, Instant::now());
                        }
                        Ok(_) => break,
                        Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => break,
                        Err(_) => break,
                    }
                }
            }
            let now = Instant::now();
            while self.heap.peek().is_some_and(|e| e.at <= now) {
                let Some(ev) = self.heap.pop() else { break };
                self.record_lateness(now.saturating_duration_since(ev.at));
                self.handle(ev);
            }
        }
        self.ports.drain(..).map(|p| p.tun).collect()
    }

    /// Handles an event that is due.
    fn handle(&mut self, ev: Event) {
        match ev.kind {
            Kind::Dequeue { hop, bytes, packets } => {
                let st = &mut self.state[hop.0][idx(hop.1)];
                st.queued_bytes = st.queued_bytes.saturating_sub(bytes);
                st.queued_packets = st.queued_packets.saturating_sub(packets);
                self.shared.counters[hop.0][idx(hop.1)].queue_bytes.store(st.queued_bytes, Ordering::Relaxed);
            }
            Kind::Arrive { mut packet, route, pos, dst } => {
                if pos == route.len() {
                    let _ = self.ports[dst].tun.write(&packet);
                } else if pos == 0 || self.through_switch(&mut packet, route[pos - 1], ev.at) {
                    self.enqueue(packet, route, pos, dst, ev.at);
                }
            }
        }
    }

    fn record_lateness(&mut self, late: Duration) {
        if let Ok(mut v) = self.shared.lateness.lock() {
            let ns = u64::try_from(late.as_nanos()).unwrap_or(UNSET - 1).min(UNSET - 1);
            v[self.lateness_at % LATENESS_SAMPLES] = ns;
            self.lateness_at += 1;
        }
    }

    /// A packet from node `src`'s TUN device.
    fn ingress(&mut self, src: usize, packet: Vec<u8>, now: Instant) {
        let dst_addr = match crate::packet::check(&packet) {
            Ok(a) => a,
            Err(bad) => return self.shared.bad.reject(bad),
        };
        let Some(dst) = self.by_addr.get(&dst_addr).copied().or_else(|| self.l4.steer(&packet, HDR, now)) else {
            return self.shared.bad.unroutable();
        };
        if let (Some(a), Some(b)) = (self.groups[src], self.groups[dst]) {
            if a != b {
                return self.shared.bad.partitioned();
            }
        }
        let route = match self.routes.get(&(src, dst)) {
            Some(r) => r.clone(),
            None => {
                let r = self.graph.route(&self.ports[src].node, &self.ports[dst].node).map(Rc::from);
                self.routes.insert((src, dst), r.clone());
                r
            }
        };
        let Some(route) = route else {
            return self.shared.bad.unroutable();
        };
        if route.is_empty() {
            let _ = self.ports[dst].tun.write(&packet);
            return;
        }
        let extra = self.inflate[src];
        if extra.is_zero() {
            self.enqueue(packet, route, 0, dst, now);
        } else {
            // Inflation delays the packet before its first link, like a slow sender.
            self.push(now + extra, Kind::Arrive { packet, route, pos: 0, dst });
        }
    }

    /// A packet reached the switch `hop` leads into, at time `t`: decrements its TTL (see
    /// [`crate::hop`]); `false` when it expired there, after sending the switch's reply
    /// back to its source (routed like any packet, from the switch).
    fn through_switch(&mut self, packet: &mut [u8], hop: Hop, t: Instant) -> bool {
        let Some((switch, addr)) = self.into_switch[hop.0][idx(hop.1)].clone() else {
            return true;
        };
        let Some(ip) = packet.get_mut(HDR..) else { return true };
        let reply = match crate::hop::forward(ip, addr) {
            // Checked at ingress: a header `forward` cannot read never gets this far.
            crate::hop::Verdict::Forward | crate::hop::Verdict::Malformed => return true,
            crate::hop::Verdict::Expired { reply: None } => return false,
            crate::hop::Verdict::Expired { reply: Some(reply) } => reply,
        };
        let source = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let Some(&to) = self.by_addr.get(&source) else { return false };
        let key = (switch, to);
        let route = match self.switch_routes.get(&key) {
            Some(r) => r.clone(),
            None => {
                let r = self.graph.route(&key.0, &self.ports[to].node).map(Rc::from);
                self.switch_routes.insert(key, r.clone());
                r
            }
        };
        if let Some(route) = route.filter(|r| !r.is_empty()) {
            // A plain packet: a zero virtio header (no offload) before the reply.
            let mut frame = vec![0u8; HDR + reply.len()];
            frame[HDR..].copy_from_slice(&reply);
            self.enqueue(frame, route, 0, to, t);
        }
        false
    }

    /// Puts a packet into the queue of hop `pos` of its route at time `t`.
    fn enqueue(&mut self, mut packet: Vec<u8>, route: Rc<[Hop]>, pos: usize, dst: usize, t: Instant) {
        let hop = route[pos];
        let (len, segs) = wire_size(&packet);
        let counters = &self.shared.counters[hop.0][idx(hop.1)];
        let st = &mut self.state[hop.0][idx(hop.1)];
        let p = st.params;
        let lost = p.down
            || match p.loss {
                Loss::Random(q) => q > 0.0 && self.rng.random::<f64>() < q,
                Loss::GilbertElliott { p_good_to_bad, p_bad_to_good, loss_good, loss_bad } => {
                    let flip = if st.bad { p_bad_to_good } else { p_good_to_bad };
                    if self.rng.random::<f64>() < flip {
                        st.bad = !st.bad;
                    }
                    self.rng.random::<f64>() < if st.bad { loss_bad } else { loss_good }
                }
            };
        let full = match p.queue {
            QueueLimit::Bytes(b) => st.queued_bytes + len > b,
            QueueLimit::Packets(n) => st.queued_packets + segs > n,
        };
        if lost || full {
            counters.drops.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let start = st.busy_until.max(t);
        let depart = start + p.serialization(len as usize);
        st.busy_until = depart;
        st.queued_bytes += len;
        st.queued_packets += segs;
        counters.queue_bytes.store(st.queued_bytes, Ordering::Relaxed);
        counters.bytes.fetch_add(len, Ordering::Relaxed);
        counters.packets.fetch_add(segs, Ordering::Relaxed);
        // netem's reorder: a share of packets skips the delay and overtakes those in flight.
        let delay = if p.reorder > 0.0 && self.rng.random::<f64>() < p.reorder {
            Duration::ZERO
        } else if p.jitter.is_zero() {
            p.delay
        } else {
            p.jitter_dist.apply(p.delay, p.jitter, self.rng.random::<f64>())
        };
        if p.corrupt > 0.0 && self.rng.random::<f64>() < p.corrupt && packet.len() > HDR + 20 {
            let i = HDR + 20 + self.rng.random_range(0..packet.len() - HDR - 20);
            packet[i] ^= 1 << self.rng.random_range(0..8);
        }
        if p.duplicate > 0.0 && self.rng.random::<f64>() < p.duplicate {
            self.push(depart + delay, Kind::Arrive { packet: packet.clone(), route: route.clone(), pos: pos + 1, dst });
        }
        self.push(depart, Kind::Dequeue { hop, bytes: len, packets: segs });
        self.push(depart + delay, Kind::Arrive { packet, route, pos: pos + 1, dst });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TSO packet: virtio-net header (GSO TCPv4, gso_size) + IPv4 (20) + TCP (32) + payload.
    fn tso(payload: usize, gso_size: u16) -> Vec<u8> {
        let mut p = vec![0u8; HDR + 20 + 32 + payload];
        p[1] = 1; // VIRTIO_NET_HDR_GSO_TCPV4
        p[4..6].copy_from_slice(&gso_size.to_le_bytes());
        p[HDR] = 0x45;
        p[HDR + 9] = 6;
        p[HDR + 20 + 12] = 8 << 4; // data offset: 8 words
        p
    }

    #[test]
    fn tso_packets_count_their_segments_on_the_wire() {
        // 10 segments of 1448 bytes: headers (52 bytes) repeated 9 more times.
        assert_eq!(wire_size(&tso(14_480, 1448)), (52 + 14_480 + 9 * 52, 10));
        // A last, shorter segment still counts.
        assert_eq!(wire_size(&tso(1449, 1448)).1, 2);
        // Not GSO: the IP packet as it is.
        let mut plain = tso(100, 0);
        plain[1] = 0;
        assert_eq!(wire_size(&plain), (20 + 32 + 100, 1));
    }

    /// A line `a -- s1 -- s2 -- b` in 10.77.0.0/16, its engine with each port's "TUN
    /// device" a datagram socket, and the far ends where the frames written to them arrive.
    fn line() -> (Engine, Vec<UnixDatagram>) {
        use crate::graph::{LinkSpec, NetSpec};
        let link = |name: &str, a: &str, b: &str| LinkSpec {
            name: name.into(),
            a: a.into(),
            b: b.into(),
            forward: LinkParams::default(),
            reverse: LinkParams::default(),
        };
        let graph = Graph::build(NetSpec {
            prefix: Ipv4Addr::new(10, 77, 0, 0),
            prefix_len: 16,
            nodes: vec!["a".into(), "b".into()],
            switches: vec!["s1".into(), "s2".into()],
            links: vec![link("a--s1", "a", "s1"), link("s1--s2", "s1", "s2"), link("b--s2", "b", "s2")],
        })
        .unwrap();
        let mut ports = Vec::new();
        let mut far = Vec::new();
        for (node, addr) in graph.addresses().clone() {
            let (tun, other) = UnixDatagram::pair().unwrap();
            other.set_nonblocking(true).unwrap();
            ports.push(Port { node, addr, tun: File::from(std::os::fd::OwnedFd::from(tun)) });
            far.push(other);
        }
        let real = graph.spec.links.iter().map(|l| [l.forward, l.reverse]).collect();
        let shared = Arc::new(Shared {
            counters: (0..3).map(|_| [DirCounters::default(), DirCounters::default()]).collect(),
            bad: Counters::default(),
            lateness: Mutex::new(vec![UNSET; 16]),
            stop: AtomicBool::new(false),
        });
        let (_tx, rx) = mpsc::channel();
        let (_wake, woken) = UnixDatagram::pair().unwrap();
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).unwrap();
        (Engine::new(graph, real, ports, shared, rx, woken, epoll), far)
    }

    /// Sends a UDP probe with `ttl` from a (10.77.0.1) to b (10.77.0.2) through the line and
    /// returns the frames a and b received.
    fn probe_through_line(ttl: u8) -> [Vec<Vec<u8>>; 2] {
        let (mut engine, far) = line();
        let mut frame = vec![0u8; HDR + 20 + 8 + 4];
        let ip = &mut frame[HDR..];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&32u16.to_be_bytes());
        ip[8] = ttl;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&[10, 77, 0, 1]);
        ip[16..20].copy_from_slice(&[10, 77, 0, 2]);
        ip[20..22].copy_from_slice(&40000u16.to_be_bytes());
        ip[22..24].copy_from_slice(&33434u16.to_be_bytes());
        let sum = crate::hop::checksum(&ip[..20]);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        engine.ingress(0, frame, Instant::now());
        // Zero-delay links: every event is due now; handle them in their order.
        while let Some(ev) = engine.heap.pop() {
            engine.handle(ev);
        }
        let received = |s: &UnixDatagram| {
            let mut out = Vec::new();
            let mut buf = [0u8; 2048];
            while let Ok(n) = s.recv(&mut buf) {
                out.push(buf[..n].to_vec());
            }
            out
        };
        [received(&far[0]), received(&far[1])]
    }

    #[test]
    fn each_switch_decrements_the_ttl_and_the_last_delivers() {
        let [at_a, at_b] = probe_through_line(3);
        assert!(at_a.is_empty());
        assert_eq!(at_b.len(), 1);
        let ip = &at_b[0][HDR..];
        assert_eq!(ip[8], 1, "two switches, two decrements");
        assert_eq!(crate::hop::checksum(&ip[..20]), 0);
    }

    #[test]
    fn an_expiring_packet_is_answered_by_the_switch_it_expired_at() {
        // TTL 1 expires at s1, TTL 2 at s2: the sender hears from each switch's address.
        for (ttl, switch, reply_ttl) in [(1u8, [10, 77, 255, 254], 64u8), (2, [10, 77, 255, 253], 63)] {
            let [at_a, at_b] = probe_through_line(ttl);
            assert!(at_b.is_empty(), "ttl {ttl}: the probe went no further");
            assert_eq!(at_a.len(), 1, "ttl {ttl}");
            let frame = &at_a[0];
            assert_eq!(&frame[..HDR], &[0u8; HDR], "a plain packet");
            let ip = &frame[HDR..];
            assert_eq!(&ip[12..16], &switch, "ttl {ttl}: source");
            assert_eq!(&ip[16..20], &[10, 77, 0, 1]);
            assert_eq!((ip[9], ip[20]), (1, 11), "ICMP time exceeded");
            // The reply crossed the switches between its switch and a (s1 for s2's reply).
            assert_eq!(ip[8], reply_ttl, "ttl {ttl}");
            assert_eq!(crate::hop::checksum(&ip[..20]), 0);
        }
    }

    #[test]
    fn offloads_only_without_per_packet_features() {
        let base = LinkParams { rate_bps: Some(1_000_000), delay: Duration::from_millis(5), ..LinkParams::default() };
        assert!(gso_safe(&base));
        assert!(!gso_safe(&LinkParams { loss: Loss::Random(0.01), ..base }));
        assert!(!gso_safe(&LinkParams { jitter: Duration::from_millis(1), ..base }));
        assert!(!gso_safe(&LinkParams { reorder: 0.1, ..base }));
        assert!(!gso_safe(&LinkParams {
            loss: Loss::GilbertElliott { p_good_to_bad: 0.0, p_bad_to_good: 1.0, loss_good: 0.0, loss_bad: 0.0 },
            ..base
        }));
    }
}
