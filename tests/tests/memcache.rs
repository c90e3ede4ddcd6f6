//! The memcache workloads against real memcached (Debian `memcached`):
//! - on loopback (no root): two memcached servers behind `diorama-lb --protocol memcache
//!   --policy peak-ewma`, driven by `diorama-loadgen --protocol memcache` in closed loop
//!   with reconnecting connections; checks the per-operation figures, the latency series,
//!   real hits after sets, and that both backends served requests;
//! - under `diorama run` (root): the same three programs as nodes of an emulated network.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diorama_tests::{artifact, diorama, need_root, need_tool, require, topology};

/// A memcached child, killed on drop.
struct Memcached(Child);

impl Drop for Memcached {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free loopback port").port()
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn memcached(port: u16) -> Memcached {
    let child = Command::new("memcached")
        .args(["-u", "root", "-l", "127.0.0.1", "-p", &port.to_string(), "-U", "0", "-t", "1", "-m", "16"])
        .stdout(Stdio::null())
        .spawn()
        .expect("start memcached");
    wait_port(port);
    Memcached(child)
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Checks a memcache load generator's results: everything completed, both operations
/// measured, sets made later gets hit, and a latency series exists.
fn check_loadgen(dir: &Path, expected: u64) {
    let s = json(&dir.join("summary.json"));
    assert_eq!(s["requests"].as_u64(), Some(expected), "{s}");
    assert_eq!(s["errors"].as_u64(), Some(0), "{s}");
    let by = &s["latency_by_class_us"];
    for op in ["get", "set"] {
        let n = by[op]["count"].as_u64().unwrap_or(0);
        // 1:1 mix: each operation is about half.
        assert!(n > expected / 3, "{op}: {n} of {expected}: {s}");
        assert!(by[op]["p95"].as_f64().unwrap_or(0.0) > 0.0, "{op} p95: {s}");
    }
    let csv = std::fs::read_to_string(dir.join("requests.csv")).expect("read a result file");
    let statuses: Vec<&str> = csv.lines().skip(1).map(|l| l.split(',').nth(6).unwrap_or("")).collect();
    let hits = statuses.iter().filter(|s| **s == "200").count();
    let misses = statuses.iter().filter(|s| **s == "404").count();
    // A key space of 50 with ~half sets: most gets after the first few hit real data.
    assert!(misses > 0 || hits > 0);
    assert!(hits > misses, "hits {hits}, misses {misses}");
    let series = std::fs::read_to_string(dir.join("latency_series.csv")).expect("read a result file");
    assert!(series.starts_with("t_virtual_ms,class,completed,p50_us,p95_us,p99_us\n"), "{series}");
    assert!(series.lines().any(|l| l.contains(",get,")) && series.lines().any(|l| l.contains(",set,")));
}

#[test]
fn loadgen_and_lb_against_real_memcached() {
    const T: &str = "loadgen_and_lb_against_real_memcached";
    require!(T, need_tool("memcached"));
    let (p1, p2, lbp) = (free_port(), free_port(), free_port());
    let _m1 = memcached(p1);
    let _m2 = memcached(p2);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut lb = Command::new(artifact("diorama-lb"))
        .args(["--protocol", "memcache", "--policy", "peak-ewma", "--listen", &format!("127.0.0.1:{lbp}")])
        .args(["--backend", &format!("127.0.0.1:{p1},127.0.0.1:{p2}"), "--report-interval", "200ms"])
        .arg("--csv")
        .arg(dir.path().join("backends.csv"))
        .spawn()
        .expect("start diorama-lb");
    wait_port(lbp);
    let count = 2_000u64;
    let out = Command::new(artifact("diorama-loadgen"))
        .args(["--protocol", "memcache", "--mode", "closed", "--clients", "8", "--count", &count.to_string()])
        .args(["--target", &format!("memcache://127.0.0.1:{lbp}"), "--requests-per-connection", "10"])
        .args(["--key-space", "50", "--value-size", "100", "--start-delay", "100ms", "--node-name", "c"])
        .arg("--out")
        .arg(dir.path())
        .output()
        .expect("run diorama-loadgen");
    let _ = Command::new("kill").args(["-TERM", &lb.id().to_string()]).status();
    let _ = lb.wait();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    check_loadgen(dir.path(), count);
    // Open loop, straight to one memcached: 400 requests at 400/s.
    let open = tempfile::tempdir().expect("a temporary directory");
    let out = Command::new(artifact("diorama-loadgen"))
        .args(["--protocol", "memcache", "--rate", "400", "--count", "400"])
        .args(["--target", &format!("memcache://127.0.0.1:{p1}"), "--requests-per-connection", "5"])
        .args(["--key-space", "50", "--start-delay", "100ms", "--node-name", "o"])
        .arg("--out")
        .arg(open.path())
        .output()
        .expect("run diorama-loadgen");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    check_loadgen(open.path(), 400);
    // Both memcached servers served through the balancer.
    let csv = std::fs::read_to_string(dir.path().join("backends.csv")).expect("read a result file");
    for p in [p1, p2] {
        let served: u64 = csv
            .lines()
            .filter(|l| l.contains(&format!("127.0.0.1:{p}")))
            .filter_map(|l| l.split(',').nth(2).and_then(|v| v.parse::<u64>().ok()))
            .sum();
        assert!(served > 0, "backend {p} served nothing: {csv}");
    }
}

#[test]
fn memcache_nodes_under_diorama_run() {
    const T: &str = "memcache_nodes_under_diorama_run";
    require!(T, need_root(), need_tool("memcached"));
    let dir = tempfile::tempdir().expect("a temporary directory");
    let yaml = r#"
name: mcl7
duration: 60s
defaults: {cpus: 0.3, memory: 128MiB}
switches: [sw]
nodes:
  - name: mc[0..2]
    run: {command: ["memcached", "-u", "root", "-p", "11211", "-U", "0", "-t", "1", "-m", "16"]}
    ready: {tcp: 11211}
    link: {to: sw, rate: 1Gbit, delay: 200us}
  - name: lb
    depends_on: [mc]
    run: {workload: lb, args: {protocol: memcache, policy: peak-ewma, backend: "mc[0..2]:11211", listen: "0.0.0.0:11211", report-interval: 200ms}}
    ready: {tcp: 11211}
    link: {to: sw, rate: 1Gbit, delay: 200us}
  - name: client
    main: true
    depends_on: [lb]
    run: {workload: loadgen, args: {protocol: memcache, mode: closed, clients: 8, count: 1500, target: "memcache://lb:11211", requests-per-connection: 10, key-space: 50}}
    link: {to: sw, rate: 1Gbit, delay: 200us}
"#;
    let topo = topology(dir.path(), "mcl7", yaml);
    let results = dir.path().join("results");
    let o = diorama(&[
        "run",
        topo.to_str().expect("a UTF-8 path"),
        "--tdf",
        "1",
        "--out",
        results.to_str().expect("a UTF-8 path"),
    ]);
    assert_eq!(o.code, Some(0), "{}\n{}", o.stdout, o.stderr);
    check_loadgen(&results.join("nodes/client"), 1500);
}
