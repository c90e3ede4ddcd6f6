//! Prints the L4 balancer's cost figures (not a timed test): per-packet decision cost in
//! ns for packets of known connections and for new connections, under both policies;
//! Maglev table build time for 65,537 slots; one controller slot move.
//!
//! Each figure is the median of `--reps` repetitions (default 7), with min and max, in
//! wall-clock time and in the thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`): on a busy
//! host the wall figure includes time spent waiting for a core, the CPU figure does not.
//! Run: `cargo run --release -p balancer --bin balancer-bench`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use balancer::{Balancer, BalancerConfig, FiveTuple, MaglevTable, PacketMeta, Policy, TcpFlags};

fn flow(i: u32) -> FiveTuple {
    FiveTuple {
        src: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (i >> 14))),
        dst: IpAddr::V4(Ipv4Addr::new(10, 99, 0, 1)),
        // Truncation is the intent: 14 bits of the index are the port's low bits.
        src_port: 20_000 + (i & 0x3fff) as u16,
        dst_port: 11211,
        protocol: 6,
    }
}

/// Wall and thread-CPU time of `f`, in ns.
fn timed<T>(f: impl FnOnce() -> T) -> (f64, f64, T) {
    let cpu = || {
        nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
            .map(|t| t.tv_sec() as f64 * 1e9 + t.tv_nsec() as f64)
            .unwrap_or(f64::NAN)
    };
    let (c0, w0) = (cpu(), Instant::now());
    let out = f();
    (w0.elapsed().as_nanos() as f64, cpu() - c0, out)
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn report(what: &str, unit: &str, wall: Vec<f64>, cpu: Vec<f64>) {
    let (med, min, max) = stats(wall);
    let (cmed, cmin, cmax) = stats(cpu);
    println!("{what:<62} wall {med:>9.1} {unit} ({min:.1}–{max:.1})  cpu {cmed:>9.1} {unit} ({cmin:.1}–{cmax:.1})");
}

fn balancer(policy: Policy, backends: usize) -> Result<Balancer, balancer::BalancerError> {
    let names = (0..backends).map(|i| format!("server{i}")).collect();
    Balancer::new(BalancerConfig { policy, ..BalancerConfig::default() }, names, vec![1.0; backends])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arg = |name: &str| std::env::args().skip_while(|a| a != name).nth(1).and_then(|v| v.parse::<u32>().ok());
    let reps = arg("--reps").unwrap_or(7) as usize;
    // `--flows 100` is the tiny check of bench/l4.sh; the packets scale with the flows.
    let flows = arg("--flows").unwrap_or(10_000).max(1);
    let packets = flows.saturating_mul(200);
    let syn = TcpFlags::from_byte(0x02);
    let ack = TcpFlags::from_byte(0x18);
    for policy in [Policy::Maglev, Policy::Inband] {
        let (mut known, mut known_cpu) = (Vec::new(), Vec::new());
        let (mut fresh, mut fresh_cpu) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            let mut b = balancer(policy, 2)?;
            // New connections: every packet an opening SYN of a new 5-tuple.
            let (w, c, r) = timed(|| {
                for i in 0..flows {
                    let p = PacketMeta { flow: flow(i), flags: syn, payload_len: 0, now_ns: u64::from(i) };
                    black_box(b.route(&p)?);
                }
                Ok::<(), balancer::MaglevError>(())
            });
            r?;
            fresh.push(w / f64::from(flows));
            fresh_cpu.push(c / f64::from(flows));
            // Known connections: round-robin over the flows, 20 µs of virtual time apart,
            // each a 20-byte request, so the estimator times them and takes samples.
            let (w, c, r) = timed(|| {
                for k in 0..packets {
                    let now = 1_000_000 + u64::from(k) * 20_000;
                    let p = PacketMeta { flow: flow(k % flows), flags: ack, payload_len: 20, now_ns: now };
                    black_box(b.route(&p)?);
                }
                Ok::<(), balancer::MaglevError>(())
            });
            r?;
            known.push(w / f64::from(packets));
            known_cpu.push(c / f64::from(packets));
        }
        let what = format!("route, packet of a known connection ({policy}, {flows} flows)");
        report(&what, "ns", known, known_cpu);
        let what = format!("route, opening SYN of a new connection ({policy})");
        report(&what, "ns", fresh, fresh_cpu);
    }
    for n in [2usize, 10, 100] {
        let names: Vec<String> = (0..n).map(|i| format!("server{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let w = vec![1.0; n];
        let (mut v, mut vc) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            let (wall, cpu, t) = timed(|| MaglevTable::build(65_537, &refs, &w));
            black_box(t?);
            v.push(wall / 1e3);
            vc.push(cpu / 1e3);
        }
        report(&format!("Maglev build, 65,537 slots, {n} backends"), "µs", v, vc);
    }
    let names = ["server0", "server1"];
    let (mut v, mut vc) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let mut t = MaglevTable::build(65_537, &names, &[1.0, 1.0])?;
        let (wall, cpu, moved) = timed(|| t.move_slots(1, 0, 6_554));
        black_box(moved?);
        v.push(wall / 1e3);
        vc.push(cpu / 1e3);
    }
    report("controller step: move 6,554 slots (δ = 10 %)", "µs", v, vc);
    println!("single-flow throughput through the balancer: netemu-bench l4-throughput (bench/l4.sh)");
    Ok(())
}
