//! The kernel backend under `diorama run --net kernel` (root): htb rates against the real
//! kernel, netem delay and loss where the kernel has `sch_netem` (SKIPPED with the reason
//! otherwise), and `--net auto` recording its choice in run.json.

#![expect(clippy::unwrap_used, reason = "test helpers fail loudly on a broken precondition")]

use std::path::Path;

use diorama_tests::{diorama, need_root, need_tool, require, run_json, topology};

fn mine(out: &Path) -> Vec<String> {
    diorama_tests::leftovers_of(out)
}

fn probe() -> String {
    diorama_tests::netprobe()
}

/// Runs `yaml` with `--net NET` at `tdf`; returns the client's numbers and the results dir.
fn run(dir: &Path, name: &str, yaml: &str, tdf: f64, net: &str) -> (Vec<f64>, std::path::PathBuf) {
    let topo = topology(dir, name, yaml);
    let out = dir.join(format!("{name}-{net}-{tdf}"));
    let r = diorama(&[
        "run",
        topo.to_str().unwrap(),
        "--tdf",
        &tdf.to_string(),
        "--net",
        net,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(0), "{name} at TDF {tdf}: {r:?}");
    let stdout = std::fs::read_to_string(out.join("nodes/client/stdout")).unwrap();
    assert!(mine(&out).is_empty(), "{:?}", mine(&out));
    (stdout.split_whitespace().filter_map(|w| w.parse().ok()).collect(), out)
}

fn need_netem() -> Result<(), String> {
    match netemu::kernel::probe() {
        Ok(s) if s.netem => Ok(()),
        Ok(_) => {
            Err("this kernel lacks sch_netem (adding a netem qdisc to a fresh namespace's lo fails with ENOENT)".into())
        }
        Err(e) => Err(format!("probing the kernel's qdiscs failed: {e}")),
    }
}

fn need_htb() -> Result<(), String> {
    match netemu::kernel::probe() {
        Ok(s) if s.htb => Ok(()),
        Ok(_) => Err("this kernel lacks sch_htb".into()),
        Err(e) => Err(format!("probing the kernel's qdiscs failed: {e}")),
    }
}

#[test]
fn kernel_htb_limits_tcp_goodput() {
    require!("kernel_htb_limits_tcp_goodput", need_root(), need_tool("python3"), need_htb());
    let tmp = tempfile::tempdir().unwrap();
    let p = probe();
    let yaml = format!(
        r#"
name: krate
defaults: {{cpus: 0.4, memory: 128MiB}}
switches: [sw]
nodes:
  - name: server
    run: {{command: ["python3", "{p}", "sink", "5001"]}}
    ready: {{tcp: 5001}}
    link: {{to: sw, rate: 100Mbit}}
  - name: client
    main: true
    depends_on: [server]
    # 4 MB: 3.2 s at 10 Mbit/s, so at least two whole 1 s intervals of links.csv are
    # saturated whatever the transfer's alignment with the sampling grid.
    run: {{command: ["python3", "{p}", "source", "server", "5001", "4000000"]}}
    link: {{to: sw, rate: 10Mbit, queue: 64KB}}
"#
    );
    for tdf in [1.0, 10.0] {
        let (v, out) = run(tmp.path(), "krate", &yaml, tdf, "kernel");
        let mbps = v[0];
        println!(
            "kernel htb: TDF {tdf}: TCP goodput {mbps:.3} Mbit/s virtual over a 10 Mbit/s link (frames: 9.564 max)"
        );
        // htb shapes whole Ethernet frames: a full 1,514-byte frame carries 1,448 bytes of
        // TCP payload (timestamps on), so 10 Mbit/s of frames is 9.564 Mbit/s of goodput.
        let ideal = 10.0 * 1448.0 / 1514.0;
        assert!(
            (mbps - ideal).abs() <= 0.05 * ideal,
            "TDF {tdf}: goodput {mbps} Mbit/s virtual, expected {ideal:.3} ± 5%"
        );
        let net = &run_json(&out)["network"];
        assert_eq!(net["backend"], "kernel", "{net}");
        // links.csv counts the kernel's own bytes on the bottleneck.
        let csv = std::fs::read_to_string(out.join("links.csv")).unwrap();
        let util = csv
            .lines()
            .filter(|l| l.contains(",client--sw,forward,"))
            .filter_map(|l| l.split(',').nth(7)?.parse::<f64>().ok())
            .fold(0.0, f64::max);
        println!("kernel htb: TDF {tdf}: links.csv peak utilization of client--sw {util:.3}");
        assert!((0.9..=1.1).contains(&util), "links.csv peak utilization {util} of the bottleneck:\n{csv}");
    }
}

#[test]
fn kernel_netem_delays_and_drops() {
    require!("kernel_netem_delays_and_drops", need_root(), need_tool("python3"), need_netem());
    let tmp = tempfile::tempdir().unwrap();
    let p = probe();
    let yaml = format!(
        r#"
name: kdelay
defaults: {{cpus: 0.2, memory: 64MiB}}
switches: [s1, s2]
nodes:
  - name: server
    run: {{command: ["python3", "{p}", "echo", "9000"]}}
    link: {{to: s2, delay: 3ms}}
  - name: client
    main: true
    depends_on: [server]
    run: {{command: ["python3", "{p}", "rtt", "server", "9000", "30"]}}
    link: {{to: s1, delay: 2ms}}
links:
  - {{between: [s1, s2], delay: 5ms}}
"#
    );
    for tdf in [1.0, 10.0] {
        let rtt = run(tmp.path(), "kdelay", &yaml, tdf, "kernel").0[0];
        println!("kernel netem: TDF {tdf}: median RTT {rtt:.3} ms virtual (expected 20)");
        assert!((rtt - 20.0).abs() <= 1.0, "TDF {tdf}: RTT {rtt} ms virtual, expected 20 ± 5%");
    }
    let yaml = format!(
        r#"
name: kloss
defaults: {{cpus: 0.5, memory: 128MiB}}
switches: [sw]
nodes:
  - name: server
    cpus: 1
    run: {{command: ["python3", "{p}", "udpsink", "7000"]}}
    link: {{to: sw, delay: 1ms}}
  - name: client
    main: true
    depends_on: [server]
    run: {{command: ["python3", "{p}", "udpsource", "server", "7000", "50000", "10000"]}}
    link: {{to: sw, delay: 1ms, loss: 1%}}
"#
    );
    let v = run(tmp.path(), "kloss", &yaml, 1.0, "kernel").0;
    let lost = 1.0 - v[0] / v[1];
    println!("kernel netem: {:.3}% of {} UDP datagrams lost (link loss 1%)", lost * 100.0, v[1]);
    assert!((lost - 0.01).abs() <= 0.003, "lost {:.3}%", lost * 100.0);
}

#[test]
fn auto_picks_a_backend_and_records_why() {
    require!("auto_picks_a_backend_and_records_why", need_root(), need_tool("python3"));
    let tmp = tempfile::tempdir().unwrap();
    let p = probe();
    let yaml = format!(
        r#"
name: auto
defaults: {{cpus: 0.2, memory: 64MiB}}
switches: [sw]
nodes:
  - name: server
    run: {{command: ["python3", "{p}", "echo", "9000"]}}
    link: {{to: sw}}
  - name: client
    main: true
    depends_on: [server]
    run: {{command: ["python3", "{p}", "rtt", "server", "9000", "5"]}}
    link: {{to: sw}}
"#
    );
    let (_, out) = run(tmp.path(), "auto", &yaml, 1.0, "auto");
    let net = &run_json(&out)["network"];
    let netem = netemu::kernel::probe().unwrap().netem;
    assert_eq!(net["backend"], if netem { "kernel" } else { "userspace" }, "{net}");
    assert_eq!(net["requested"], "auto");
    assert!(net["reason"].as_str().unwrap().contains("sch_netem"), "{net}");
    println!("auto: picked {} ({})", net["backend"], net["reason"]);
}
