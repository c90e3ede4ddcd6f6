//! Prints the L4 balancer's cost figures (not a timed test): per-packet decision cost in
//! ns for packets of known connections and for new connections, under both policies;
//! Maglev table build time for 65,537 slots; one controller slot move.
//!
//! Each figure is the median of `--reps` repetitions (default 7), with min and max.
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

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn report(what: &str, unit: &str, samples: Vec<f64>) {
    let (med, min, max) = stats(samples);
    println!("{what:<58} {med:>10.1} {unit}  (min {min:.1}, max {max:.1})");
}

fn balancer(policy: Policy, backends: usize) -> Result<Balancer, balancer::BalancerError> {
    let names = (0..backends).map(|i| format!("server{i}")).collect();
    Balancer::new(
        BalancerConfig {
            policy,
            ..BalancerConfig::default()
        },
        names,
        vec![1.0; backends],
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let reps: usize = std::env::args()
        .skip_while(|a| a != "--reps")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let flows = 10_000u32;
    let packets = 2_000_000u32;
    for policy in [Policy::Maglev, Policy::Inband] {
        let mut known = Vec::new();
        let mut fresh = Vec::new();
        for _ in 0..reps {
            let mut b = balancer(policy, 2)?;
            let syn = TcpFlags::from_byte(0x02);
            let ack = TcpFlags::from_byte(0x18);
            // New connections: every packet an opening SYN of a new 5-tuple.
            let t0 = Instant::now();
            for i in 0..flows {
                black_box(b.route(&PacketMeta {
                    flow: flow(i),
                    flags: syn,
                    now_ns: u64::from(i),
                })?);
            }
            fresh.push(t0.elapsed().as_nanos() as f64 / f64::from(flows));
            // Known connections: round-robin over the flows, 20 µs of virtual time apart,
            // so the estimator sees gaps and takes samples.
            let t0 = Instant::now();
            for k in 0..packets {
                let now = 1_000_000 + u64::from(k) * 20_000;
                black_box(b.route(&PacketMeta {
                    flow: flow(k % flows),
                    flags: ack,
                    now_ns: now,
                })?);
            }
            known.push(t0.elapsed().as_nanos() as f64 / f64::from(packets));
        }
        report(
            &format!("route, packet of a known connection ({policy}, {flows} flows)"),
            "ns",
            known,
        );
        report(
            &format!("route, opening SYN of a new connection ({policy})"),
            "ns",
            fresh,
        );
    }
    for n in [2usize, 10, 100] {
        let names: Vec<String> = (0..n).map(|i| format!("server{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let w = vec![1.0; n];
        let mut v = Vec::new();
        for _ in 0..reps {
            let t0 = Instant::now();
            black_box(MaglevTable::build(65_537, &refs, &w)?);
            v.push(t0.elapsed().as_secs_f64() * 1e6);
        }
        report(
            &format!("Maglev build, 65,537 slots, {n} backends"),
            "µs",
            v,
        );
    }
    let names = ["server0", "server1"];
    let mut v = Vec::new();
    for _ in 0..reps {
        let mut t = MaglevTable::build(65_537, &names, &[1.0, 1.0])?;
        let t0 = Instant::now();
        black_box(t.move_slots(1, 0, 6_554)?);
        v.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    report("controller step: move 6,554 slots (δ = 10 %)", "µs", v);
    println!(
        "single-flow throughput through the balancer: measured by bench/l4lb.sh in the emulator"
    );
    Ok(())
}
