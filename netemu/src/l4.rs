//! L4 balancers in the userspace core (issue 14): packets to a VIP:port are steered to a
//! backend's port by a [`balancer::Balancer`], unchanged, and take the route from the
//! client to that backend. The backend holds the VIP on its loopback (the testbed puts it
//! there), so its kernel accepts them and answers from the VIP straight to the client:
//! direct server return, the replies never pass here.
//!
//! # Design
//! - The balancer sits where the packet enters the emulated network (the client's
//!   ingress), like an XDP balancer on the path: the packet then crosses every link from
//!   the client to the backend, so a `degrade` of a backend's link or an `inflate` of the
//!   backend delays it as it would without the balancer.
//! - Time: the balancer's clock is the run's virtual time, the real time since the run's
//!   epoch (`VipSpec::epoch_real_ns`, CLOCK_REALTIME) divided by the TDF, so that its
//!   telemetry lines up with `events.jsonl` and the nodes' results. It is read as the
//!   CLOCK_REALTIME offset of the epoch when the table is built plus the core's monotonic
//!   `Instant` since then (a step of the wall clock during the run does not move it).
//! - Telemetry (shares, epochs, estimates; see `balancer::telemetry`) is appended to
//!   buffered CSV files under `<dir>/balancers/<name>/` as the balancer records it (at
//!   most a few rows per 64 ms epoch), and the per-backend connection and packet counts
//!   are written to `flows.csv` when the core stops.
//! - `connections.csv` has one row per connection placed (`t_virtual_ms,client,backend`,
//!   the client as `address:port`): under DSR the client cannot tell which backend
//!   answered it, so this is how a client's per-request latency is attributed to a
//!   backend (with the load generator's `local_port` per request; tests/tests/lb_inflation.rs).
//!
//! # Limitations
//! The balancer's CPU is the core thread's: it is charged to no node, and at high packet
//! rates shows as the core's lateness (recorded per run). TCP only; IPv4 only.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Instant;

use balancer::telemetry::{Telemetry, ESTIMATES_HEADER, SHARES_HEADER};
use balancer::{Balancer, BalancerConfig, PacketMeta};

/// One balancer of a topology.
#[derive(Debug, Clone)]
pub struct VipSpec {
    pub name: String,
    pub vip: Ipv4Addr,
    pub port: u16,
    /// Node names.
    pub backends: Vec<String>,
    /// Each backend's weight (relative Maglev slot share), in `backends` order.
    pub weights: Vec<f64>,
    pub config: BalancerConfig,
    /// Where telemetry goes (`<dir>/balancers/<name>/`); `None`: nowhere.
    pub telemetry_dir: Option<PathBuf>,
    /// The run's epoch (CLOCK_REALTIME ns), the origin of the balancer's virtual clock;
    /// `None`: the moment the core starts.
    pub epoch_real_ns: Option<i64>,
}

/// Errors of building the balancers.
#[derive(Debug, thiserror::Error)]
pub enum L4Error {
    #[error("balancer {balancer}: backend {backend} is not a node of the network")]
    UnknownBackend { balancer: String, backend: String },
    #[error("balancer {balancer}")]
    Balancer {
        balancer: String,
        #[source]
        source: balancer::BalancerError,
    },
    #[error("balancer {balancer}: create its telemetry file {path}")]
    Telemetry {
        balancer: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

struct Files {
    dir: PathBuf,
    shares: BufWriter<File>,
    epochs: BufWriter<File>,
    estimates: BufWriter<File>,
    connections: BufWriter<File>,
}

/// Header of `connections.csv`.
pub const CONNECTIONS_HEADER: &str = "t_virtual_ms,client,backend";

struct Vip {
    vip: Ipv4Addr,
    port: u16,
    balancer: Balancer,
    /// Port (node) index of each backend.
    ports: Vec<usize>,
    /// New connections and packets per backend.
    connections: Vec<u64>,
    packets: Vec<u64>,
    files: Option<Files>,
}

/// Every balancer of the core.
pub struct Steering {
    vips: Vec<Vip>,
    start: Instant,
    /// Real ns from the run's epoch to `start`.
    start_real_ns: u64,
    tdf: f64,
}

/// Real ns from `epoch_real_ns` (CLOCK_REALTIME) to now; 0 for an epoch in the future.
fn since_epoch(epoch_real_ns: Option<i64>) -> u64 {
    let Some(epoch) = epoch_real_ns else { return 0 };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    u64::try_from(now.saturating_sub(epoch)).unwrap_or(0)
}

fn create(name: &str, path: PathBuf, header: &str) -> Result<BufWriter<File>, L4Error> {
    let err = |source| L4Error::Telemetry { balancer: name.to_owned(), path: path.clone(), source };
    let mut w = BufWriter::new(File::create(&path).map_err(err)?);
    writeln!(w, "{header}").map_err(err)?;
    Ok(w)
}

impl Steering {
    /// No balancers.
    pub fn none() -> Self {
        Self { vips: Vec::new(), start: Instant::now(), start_real_ns: 0, tdf: 1.0 }
    }

    /// Balancers for `specs`; `nodes` are the core's node names in port order.
    pub fn new(specs: Vec<VipSpec>, nodes: &[String], tdf: f64) -> Result<Self, L4Error> {
        let mut vips = Vec::with_capacity(specs.len());
        let epoch = specs.iter().find_map(|s| s.epoch_real_ns);
        for s in specs {
            let ports = s
                .backends
                .iter()
                .map(|b| {
                    nodes
                        .iter()
                        .position(|n| n == b)
                        .ok_or_else(|| L4Error::UnknownBackend { balancer: s.name.clone(), backend: b.clone() })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let balancer = Balancer::new(s.config.clone(), s.backends.clone(), s.weights.clone())
                .map_err(|source| L4Error::Balancer { balancer: s.name.clone(), source })?;
            let files = match &s.telemetry_dir {
                None => None,
                Some(root) => {
                    let dir = root.join("balancers").join(&s.name);
                    std::fs::create_dir_all(&dir).map_err(|source| L4Error::Telemetry {
                        balancer: s.name.clone(),
                        path: dir.clone(),
                        source,
                    })?;
                    Some(Files {
                        shares: create(&s.name, dir.join("shares.csv"), SHARES_HEADER)?,
                        epochs: create(
                            &s.name,
                            dir.join("epochs.csv"),
                            &Telemetry::epochs_header(balancer.ladder_ns()),
                        )?,
                        estimates: create(&s.name, dir.join("estimates.csv"), ESTIMATES_HEADER)?,
                        connections: create(&s.name, dir.join("connections.csv"), CONNECTIONS_HEADER)?,
                        dir,
                    })
                }
            };
            let n = ports.len();
            vips.push(Vip {
                vip: s.vip,
                port: s.port,
                balancer,
                ports,
                connections: vec![0; n],
                packets: vec![0; n],
                files,
            });
        }
        Ok(Self { vips, start: Instant::now(), start_real_ns: since_epoch(epoch), tdf })
    }

    /// The port of the backend a packet addressed to a VIP goes to (`packet` holds the IP
    /// datagram at `offset`); `None` when it is for no balanced VIP:port.
    pub fn steer(&mut self, packet: &[u8], offset: usize, now: Instant) -> Option<usize> {
        if self.vips.is_empty() {
            return None;
        }
        let (flow, flags, payload_len) = balancer::packet::parse_ipv4(packet, offset)?;
        let IpAddr::V4(dst) = flow.dst else { return None };
        let vip = self
            .vips
            .iter_mut()
            .find(|v| v.vip == dst && v.port == flow.dst_port && flow.protocol == balancer::packet::TCP)?;
        let elapsed = u64::try_from(now.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX);
        let real = self.start_real_ns.saturating_add(elapsed);
        let meta = PacketMeta { flow, flags, payload_len, now_ns: balancer::packet::virtual_ns(real, self.tdf) };
        let decision = vip.balancer.route(&meta).ok()?;
        let i = decision.backend;
        vip.packets[i] += 1;
        if decision.new_connection {
            vip.connections[i] += 1;
        }
        let t = vip.balancer.take_telemetry();
        if let Some(f) = vip.files.as_mut() {
            let names = vip.balancer.names();
            let (ms, us) = (meta.now_ns / 1_000_000, meta.now_ns / 1_000 % 1_000);
            let name = names.get(i).map_or("?", String::as_str);
            let ok = (!decision.new_connection
                || writeln!(f.connections, "{ms}.{us:03},{}:{},{name}", flow.src, flow.src_port).is_ok())
                && (t.is_empty()
                    || (t.write_shares(&mut f.shares, names).is_ok()
                        && t.write_epochs(&mut f.epochs).is_ok()
                        && t.write_estimates(&mut f.estimates, names).is_ok()));
            if !ok {
                tracing::warn!(dir = %f.dir.display(), "writing balancer telemetry failed; no more is written");
                vip.files = None;
            }
        }
        vip.ports.get(i).copied()
    }
}

impl Drop for Steering {
    fn drop(&mut self) {
        for v in &mut self.vips {
            let Some(f) = v.files.as_mut() else { continue };
            let _ = f.shares.flush();
            let _ = f.epochs.flush();
            let _ = f.estimates.flush();
            let _ = f.connections.flush();
            let path = f.dir.join("flows.csv");
            let mut text = String::from("backend,connections,packets\n");
            for (b, name) in v.balancer.names().iter().enumerate() {
                text.push_str(&format!("{name},{},{}\n", v.connections[b], v.packets[b]));
            }
            if let Err(err) = std::fs::write(&path, text) {
                tracing::warn!(%err, path = %path.display(), "writing the balancer's flow counts failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syn(src_port: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&40u16.to_be_bytes());
        p[9] = 6;
        p[32] = 5 << 4;
        p[12..16].copy_from_slice(&[10, 77, 0, 3]);
        p[16..20].copy_from_slice(&dst);
        p[20..22].copy_from_slice(&src_port.to_be_bytes());
        p[22..24].copy_from_slice(&dport.to_be_bytes());
        p[33] = 0x02;
        p
    }

    #[test]
    fn packets_to_the_vip_are_steered_and_counted() {
        let dir = std::env::temp_dir().join(format!("l4-steer-{}", std::process::id()));
        let nodes: Vec<String> = ["mc0", "mc1", "client"].map(String::from).to_vec();
        let spec = VipSpec {
            name: "l4".into(),
            vip: Ipv4Addr::new(10, 77, 255, 1),
            port: 11211,
            backends: vec!["mc0".into(), "mc1".into()],
            weights: vec![1.0, 1.0],
            config: BalancerConfig::default(),
            telemetry_dir: Some(dir.clone()),
            epoch_real_ns: None,
        };
        let mut s = Steering::new(vec![spec.clone()], &nodes, 10.0).unwrap();
        let now = Instant::now();
        let mut seen = [0u32; 3];
        for p in 0..200 {
            let port = s.steer(&syn(10_000 + p, [10, 77, 255, 1], 11211), 0, now).unwrap();
            seen[port] += 1;
        }
        assert_eq!(seen[2], 0, "never the client");
        assert!(seen[0] > 60 && seen[1] > 60, "{seen:?}");
        assert!(s.steer(&syn(1, [10, 77, 255, 1], 80), 0, now).is_none(), "another port");
        assert!(s.steer(&syn(1, [10, 77, 255, 2], 11211), 0, now).is_none(), "another address");
        drop(s);
        let flows = std::fs::read_to_string(dir.join("balancers/l4/flows.csv")).unwrap();
        assert_eq!(flows, format!("backend,connections,packets\nmc0,{0},{0}\nmc1,{1},{1}\n", seen[0], seen[1]));
        let shares = std::fs::read_to_string(dir.join("balancers/l4/shares.csv")).unwrap();
        assert!(shares.starts_with(SHARES_HEADER) && shares.contains(",mc1,0.49"), "{shares}");
        // One row per connection placed, naming the client's address:port and its backend.
        let conns = std::fs::read_to_string(dir.join("balancers/l4/connections.csv")).unwrap();
        let rows: Vec<Vec<&str>> = conns.lines().skip(1).map(|l| l.split(',').collect()).collect();
        assert!(conns.starts_with(CONNECTIONS_HEADER) && rows.len() == 200, "{conns}");
        assert_eq!(rows[0][1], "10.77.0.3:10000");
        assert_eq!(rows.iter().filter(|r| r[2] == "mc1").count(), seen[1] as usize);
        let bad = VipSpec { backends: vec!["web".into()], weights: vec![1.0], ..spec };
        assert!(matches!(Steering::new(vec![bad], &nodes, 1.0), Err(L4Error::UnknownBackend { .. })));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_clock_is_the_runs_virtual_time_and_weights_are_slot_shares() {
        let dir = std::env::temp_dir().join(format!("l4-clock-{}", std::process::id()));
        let nodes: Vec<String> = ["mc0", "mc1", "client"].map(String::from).to_vec();
        let now_real = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
        let spec = VipSpec {
            name: "l4".into(),
            vip: Ipv4Addr::new(10, 77, 255, 1),
            port: 11211,
            backends: vec!["mc0".into(), "mc1".into()],
            weights: vec![3.0, 1.0],
            config: BalancerConfig::default(),
            telemetry_dir: Some(dir.clone()),
            // The run began 2 s (real) ago: at TDF 10 that is 200 ms of virtual time.
            epoch_real_ns: Some(now_real - 2_000_000_000),
        };
        let mut s = Steering::new(vec![spec], &nodes, 10.0).unwrap();
        s.steer(&syn(10_000, [10, 77, 255, 1], 11211), 0, Instant::now()).unwrap();
        drop(s);
        let shares = std::fs::read_to_string(dir.join("balancers/l4/shares.csv")).unwrap();
        let first: Vec<&str> = shares.lines().nth(1).unwrap().split(',').collect();
        let t: f64 = first[0].parse().unwrap();
        assert!((200.0..260.0).contains(&t), "start row at {t} ms virtual: {shares}");
        assert!(shares.contains(",mc0,0.750") && shares.contains(",mc1,0.249"), "{shares}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
