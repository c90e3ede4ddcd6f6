//! The Isaac service and the load balancer for real.
//!
//! - A DB that hangs, dies and comes back (stand-alone on loopback, processes this test
//!   spawns; no root): the app server times out and answers errors, then the service
//!   recovers by itself, and `isaac.csv` counts it all.
//! - Closed-loop clients against Isaac through `diorama-lb` under `diorama run` at TDF 1 and
//!   TDF 10 (root): requests complete, per-tier timings come back, both front ends get
//!   load, and the virtual latency agrees between the two TDFs.
//! - The PostgreSQL DB tier: stand-alone (root) and inside a node under `diorama run`.
#![expect(clippy::unwrap_used, reason = "helpers of a test fail it loudly, like the test itself")]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diorama_tests::{artifact, diorama, need_root, require, target_dir, topology};

/// A spawned process, killed if the test fails before it is stopped.
struct Proc(Child);

impl Proc {
    fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0.id() as i32), sig).unwrap();
    }
    /// SIGTERM, then the exit code (must come within 10 s).
    fn stop(mut self) -> Option<i32> {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("process {} ignored SIGTERM", self.0.id());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn spawn(dir: &Path, args: &[&str]) -> Proc {
    std::fs::create_dir_all(dir).unwrap();
    let child = Command::new(artifact("diorama-isaac"))
        .args(args)
        .current_dir(dir)
        .env("DIORAMA_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    Proc(child)
}

fn wait_listening(port: u16) {
    let end = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One `GET /` with its own connection: (status, lowercase headers, body).
fn get(port: u16) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    write!(s, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, head.to_lowercase(), body.to_owned())
}

/// Sums the columns of `isaac.csv`: (requests, errors, timeouts).
fn totals(csv: &Path) -> (u64, u64, u64) {
    let text = std::fs::read_to_string(csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("t_virtual_s,tier,requests,errors,timeouts"), "{}", csv.display());
    lines.fold((0, 0, 0), |acc, l| {
        let f: Vec<u64> = l.split(',').skip(2).map(|v| v.parse().unwrap()).collect();
        (acc.0 + f[0], acc.1 + f[1], acc.2 + f[2])
    })
}

#[test]
fn db_failure_gives_errors_then_the_service_recovers() {
    use nix::sys::signal::Signal;
    let tmp = tempfile::tempdir().unwrap();
    let (dbp, asp, fsp) = (free_port(), free_port(), free_port());
    let (dbp_s, asp_s, fsp_s) = (format!("127.0.0.1:{dbp}"), format!("127.0.0.1:{asp}"), format!("127.0.0.1:{fsp}"));
    let db_args = ["--tier", "db", "--listen", &dbp_s, "--keys", "200", "--report-interval", "200ms"];
    let mut db = spawn(&tmp.path().join("db"), &db_args);
    let app = spawn(
        &tmp.path().join("as"),
        &[
            "--tier",
            "app",
            "--listen",
            &asp_s,
            "--db",
            &dbp_s,
            "--keys",
            "200",
            "--db-timeout",
            "300ms",
            "--report-interval",
            "200ms",
        ],
    );
    let front = spawn(
        &tmp.path().join("fs"),
        &[
            "--tier",
            "front",
            "--listen",
            &fsp_s,
            "--app",
            &asp_s,
            "--fanout",
            "2",
            "--as-hashes",
            "20",
            "--fs-hashes",
            "200",
            "--as-timeout",
            "3s",
            "--report-interval",
            "200ms",
        ],
    );
    for p in [dbp, asp, fsp] {
        wait_listening(p);
    }

    // Healthy: 200s with a per-tier breakdown, fs ≥ as ≥ db.
    for _ in 0..5 {
        let (status, head, body) = get(fsp);
        assert_eq!(status, 200, "{head}{body}");
        let timing = head.lines().find_map(|l| l.strip_prefix("diorama-timing: ")).expect("timing header").to_owned();
        let us: Vec<u64> = timing.split(';').map(|kv| kv.split_once('=').unwrap().1.parse().unwrap()).collect();
        assert!(timing.starts_with("fs=") && us.len() == 3, "{timing}");
        assert!(us[0] >= us[1] && us[1] >= us[2] && us[2] > 0, "{timing}");
        assert!(body.contains("\"bytes\":20520"), "2 calls × (10 reads × 1 KiB + digest): {body}");
    }

    // A hung DB: the app server gives up after its 300 ms timeout and answers 504.
    db.signal(Signal::SIGSTOP);
    let t = Instant::now();
    let (status, head, _) = get(fsp);
    let took = t.elapsed();
    assert_eq!(status, 504, "{head}");
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(3), "{took:?}");

    // A dead DB: connection refused, 502.
    db.signal(Signal::SIGKILL);
    let _ = db.0.wait();
    let (status, head, _) = get(fsp);
    assert_eq!(status, 502, "{head}");

    // The DB comes back (same data directory): the service recovers by itself.
    db = spawn(&tmp.path().join("db"), &db_args);
    wait_listening(dbp);
    let statuses: Vec<u16> = (0..6).map(|_| get(fsp).0).collect();
    assert!(statuses[1..].iter().all(|&s| s == 200), "no recovery: {statuses:?}");

    assert_eq!(front.stop(), Some(0));
    assert_eq!(app.stop(), Some(0));
    assert_eq!(db.stop(), Some(0));
    let (requests, errors, timeouts) = totals(&tmp.path().join("as/isaac.csv"));
    println!("app tier: {requests} requests, {errors} errors, {timeouts} timeouts");
    assert!(timeouts >= 1 && errors >= 2, "app tier: {requests} requests, {errors} errors, {timeouts} timeouts");
    let (fs_req, fs_err, _) = totals(&tmp.path().join("fs/isaac.csv"));
    assert!(fs_req >= 12 && (2..=3).contains(&fs_err), "front: {fs_req} requests, {fs_err} errors");
    // The restarted DB appended to its predecessor's series and the data file persisted.
    let db_csv = std::fs::read_to_string(tmp.path().join("db/isaac.csv")).unwrap();
    assert_eq!(db_csv.matches("t_virtual_s").count(), 1, "{db_csv}");
    assert!(tmp.path().join("db/isaac.sqlite").exists());
}

fn need_postgres() -> Result<(), String> {
    let on_path =
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).any(|d| d.join("initdb").is_file());
    let packaged = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().any(|v| v.path().join("bin/initdb").is_file()))
        .unwrap_or(false);
    if on_path || packaged {
        Ok(())
    } else {
        Err("PostgreSQL is not installed (scripts/setup installs postgresql)".into())
    }
}

#[test]
fn postgres_db_tier_serves_the_app_servers() {
    // Root: postgres runs as the unprivileged user `nobody`, which only root can switch to.
    require!("postgres_db_tier_serves_the_app_servers", need_root(), need_postgres());
    let tmp = tempfile::tempdir().unwrap();
    // `nobody` must traverse to its data directory.
    std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (pgp, dbp, asp, fsp) = (free_port(), free_port(), free_port(), free_port());
    let (pgp_s, dbp_s, asp_s, fsp_s) =
        (pgp.to_string(), format!("127.0.0.1:{dbp}"), format!("127.0.0.1:{asp}"), format!("127.0.0.1:{fsp}"));
    let db = spawn(
        &tmp.path().join("db"),
        &[
            "--tier",
            "db",
            "--store",
            "postgres",
            "--pg-port",
            &pgp_s,
            "--listen",
            &dbp_s,
            "--keys",
            "200",
            "--report-interval",
            "200ms",
        ],
    );
    let pg_addr = format!("127.0.0.1:{pgp}");
    let app = spawn(
        &tmp.path().join("as"),
        &[
            "--tier",
            "app",
            "--listen",
            &asp_s,
            "--db-store",
            "postgres",
            "--db",
            &pg_addr,
            "--keys",
            "200",
            "--report-interval",
            "200ms",
        ],
    );
    let front = spawn(
        &tmp.path().join("fs"),
        &[
            "--tier",
            "front",
            "--listen",
            &fsp_s,
            "--app",
            &asp_s,
            "--fanout",
            "2",
            "--as-hashes",
            "20",
            "--fs-hashes",
            "200",
        ],
    );
    // The DB tier listens once postgres is up and the table is filled (initdb takes seconds).
    let end = Instant::now() + Duration::from_secs(90);
    while TcpStream::connect(("127.0.0.1", dbp)).is_err() {
        assert!(
            Instant::now() < end,
            "postgres DB tier not ready: {}",
            std::fs::read_to_string(tmp.path().join("db/stderr")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_listening(asp);
    wait_listening(fsp);
    for _ in 0..5 {
        let (status, head, body) = get(fsp);
        assert_eq!(status, 200, "{head}{body}");
        assert!(body.contains("\"bytes\":20520"), "2 calls × (10 reads × 1 KiB + digest): {body}");
        assert!(head.contains("diorama-timing: fs="), "{head}");
    }
    assert_eq!(front.stop(), Some(0));
    assert_eq!(app.stop(), Some(0));
    // The app server's postgres backends flush their statistics as they exit.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(db.stop(), Some(0));
    assert!(!tmp.path().join("db/pgdata/postmaster.pid").exists(), "postgres still running");
    assert!(tmp.path().join("db/pgdata/PG_VERSION").exists());
    // 5 requests × 2 calls × 12 statements, counted by the server itself.
    let (requests, errors, _) = totals(&tmp.path().join("db/isaac.csv"));
    println!("postgres DB tier: {requests} transactions, {errors} rolled back");
    assert!(requests >= 120 && errors == 0, "{requests} transactions, {errors} rolled back");
}

fn need_loadgen() -> Result<(), String> {
    let p: PathBuf = target_dir().join("diorama-loadgen");
    if p.exists() {
        Ok(())
    } else {
        Err(format!("{} is not built (the load generator lives on branch loadgen)", p.display()))
    }
}

/// A small Isaac behind the balancer: client → lb → fs[0..2] → as[0..2] → db.
const TOPOLOGY: &str = r#"
name: isaac-lb
duration: 30s
defaults: {cpus: 0.25, memory: 128MiB}
switches: [sw]
nodes:
  - name: db
    run: {workload: isaac, args: {tier: db, keys: 200, report_interval: 500ms}}
    ready: {tcp: 7000}
    link: {to: sw, rate: 1Gbit, delay: 5ms}
  - name: as[0..2]
    depends_on: [db]
    run: {workload: isaac, args: {tier: app, db: "db:7000", keys: 200, report_interval: 500ms}}
    ready: {tcp: 9000}
    link: {to: sw, rate: 1Gbit, delay: 5ms}
  - name: fs[0..2]
    depends_on: [as]
    run: {workload: isaac, args: {tier: front, app: "as[0..2]:9000", fanout: 2, reads: 4, writes: 1, as_hashes: 50, fs_hashes: 500, report_interval: 500ms}}
    ready: {tcp: 8080}
    link: {to: sw, rate: 1Gbit, delay: 5ms}
  - name: lb
    depends_on: [fs]
    run: {workload: lb, args: {backend: "fs[0..2]:8080", policy: least-conn, report_interval: 500ms}}
    ready: {tcp: 80}
    link: {to: sw, rate: 1Gbit, delay: 5ms}
  - name: client
    main: true
    depends_on: [lb]
    run: {workload: loadgen, args: {mode: closed, target: "http://lb:80/", clients: 4, duration: 3s}}
    link: {to: sw, rate: 1Gbit, delay: 5ms}
"#;

/// Runs the topology at `tdf`; returns the client's median latency (µs, virtual).
fn run_isaac(dir: &Path, tdf: f64) -> f64 {
    let topo = topology(dir, "isaac-lb", TOPOLOGY);
    let out = dir.join(format!("isaac-lb-tdf{tdf}-{}", std::process::id()));
    let started = Instant::now();
    let r = diorama(&["run", topo.to_str().unwrap(), "--tdf", &tdf.to_string(), "--out", out.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "TDF {tdf}: {r:?}");
    let real = started.elapsed();
    let node = |n: &str, f: &str| {
        std::fs::read_to_string(out.join("nodes").join(n).join(f)).unwrap_or_else(|e| panic!("{n}/{f}: {e}"))
    };

    let summary: serde_json::Value = serde_json::from_str(&node("client", "summary.json")).unwrap();
    let completed = summary["completed"].as_u64().unwrap();
    let errors = summary["errors"].as_u64().unwrap();
    let median = summary["latency_us"]["median"].as_f64().unwrap();
    println!("isaac via lb at TDF {tdf}: {completed} completed, {errors} errors, median {median:.0} µs virtual, p99 {} µs, {real:?} real", summary["latency_us"]["p99"]);
    assert!(completed >= 20, "TDF {tdf}: only {completed} requests completed");
    // The emulated network's floor, in virtual time: 3 round trips (client–lb, lb–fs,
    // fs–as) and 5 DB operations, each 20 ms (two 5 ms links each way).
    assert!(median >= 160_000.0, "TDF {tdf}: median {median} µs is below the network's 160 ms");
    assert_eq!(errors, 0, "TDF {tdf}: {summary}");

    // Every answer carried the per-tier breakdown through the balancer.
    let requests = node("client", "requests.csv");
    let rows: Vec<&str> = requests.lines().skip(1).collect();
    assert!(
        rows.iter().filter(|r| r.contains("fs=") && r.contains(";as=") && r.contains(";db=")).count() as u64
            >= completed,
        "timing missing: {}",
        rows.first().unwrap_or(&"")
    );

    // The balancer spread the load over both front ends, and every tier counted requests.
    let backends = node("lb", "backends.csv");
    for fs in ["fs0:8080", "fs1:8080"] {
        let n: u64 = backends
            .lines()
            .filter(|l| l.split(',').nth(1) == Some(fs))
            .map(|l| l.split(',').nth(2).unwrap().parse::<u64>().unwrap())
            .sum();
        assert!(n >= 5, "{fs} got {n} requests:\n{backends}");
    }
    for n in ["fs0", "fs1", "as0", "as1", "db"] {
        let (req, err, _) = totals(&out.join("nodes").join(n).join("isaac.csv"));
        assert!(req > 0 && err == 0, "{n}: {req} requests, {err} errors");
    }
    let left = own_leftovers(&out);
    assert!(left.is_empty(), "{left:?}");
    median
}

#[test]
fn loadgen_through_lb_at_tdf_1_and_10() {
    require!("loadgen_through_lb_at_tdf_1_and_10", need_root(), need_loadgen());
    let tmp = tempfile::tempdir().unwrap();
    let m1 = run_isaac(tmp.path(), 1.0);
    let m10 = run_isaac(tmp.path(), 10.0);
    // The scale model's point: the same virtual latency at both TDFs. Each request is
    // dominated by 8 sequential 20 ms round trips of emulated network. The emulator's own
    // lateness is real time (p99 ≈ 0.8 ms per link at TDF 1 on the shared 2-core host), so
    // long link delays keep it small against the virtual delays at TDF 1 too.
    let ratio = m10 / m1;
    println!("median latency TDF 10 / TDF 1 = {ratio:.3}");
    assert!((0.85..1.15).contains(&ratio), "virtual median at TDF 10 {m10} µs vs TDF 1 {m1} µs");
}

/// Leftovers of this test's run only: other engineers' runs may share the machine, so
/// cgroups and state are matched by the run id (the results directory's name) and
/// processes by a working directory under `out`.
fn own_leftovers(out: &std::path::Path) -> Vec<String> {
    let id = out.file_name().unwrap().to_string_lossy().into_owned();
    let mut found: Vec<String> = diorama_tests::leftovers()
        .into_iter()
        .filter(|l| !l.starts_with("process ") && (l.ends_with(&format!("/{id}")) || l.contains(&format!("/{id}/"))))
        .collect();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cwd) = std::fs::read_link(p.path().join("cwd")) {
            if cwd.starts_with(out) {
                found.push(format!("process {} in {}", p.file_name().to_string_lossy(), cwd.display()));
            }
        }
    }
    found
}

#[test]
fn postgres_db_tier_inside_a_node() {
    require!("postgres_db_tier_inside_a_node", need_root(), need_postgres(), need_loadgen());
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let yaml = r#"
name: isaac-pg
duration: 60s
defaults: {cpus: 0.3, memory: 256MiB}
switches: [sw]
nodes:
  - name: db
    run: {workload: isaac, args: {tier: db, store: postgres, keys: 200}}
    ready: {tcp: 7000, timeout: 120s}
    link: {to: sw, rate: 1Gbit, delay: 1ms}
  - name: as
    depends_on: [db]
    run: {workload: isaac, args: {tier: app, db_store: postgres, db: "db:5432", keys: 200}}
    ready: {tcp: 9000}
    link: {to: sw, rate: 1Gbit, delay: 1ms}
  - name: fs
    depends_on: [as]
    run: {workload: isaac, args: {tier: front, app: "as:9000", fanout: 1, reads: 4, writes: 1, fs_hashes: 500}}
    ready: {tcp: 8080}
    link: {to: sw, rate: 1Gbit, delay: 1ms}
  - name: client
    main: true
    depends_on: [fs]
    run: {workload: loadgen, args: {mode: closed, target: "http://fs:8080/", clients: 2, duration: 2s}}
    link: {to: sw, rate: 1Gbit, delay: 1ms}
"#;
    let topo = topology(tmp.path(), "isaac-pg", yaml);
    let out = tmp.path().join(format!("isaac-pg-{}", std::process::id()));
    let r = diorama(&["run", topo.to_str().unwrap(), "--tdf", "2", "--out", out.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let node = |n: &str, f: &str| {
        std::fs::read_to_string(out.join("nodes").join(n).join(f)).unwrap_or_else(|e| panic!("{n}/{f}: {e}"))
    };
    let summary: serde_json::Value = serde_json::from_str(&node("client", "summary.json")).unwrap();
    println!(
        "isaac with postgres in a node: {} completed, {} errors, median {} µs virtual",
        summary["completed"], summary["errors"], summary["latency_us"]["median"]
    );
    assert!(summary["completed"].as_u64().unwrap() >= 10 && summary["errors"] == 0, "{summary}");
    assert!(node("db", "postgres.log").contains("database system is ready to accept connections"));
    assert!(node("db", "postgres.log").contains("database system is shut down"), "postgres stopped with the node");
    let (requests, errors, _) = totals(&out.join("nodes/db/isaac.csv"));
    assert!(requests >= 50 && errors == 0, "postgres counted {requests} transactions, {errors} rolled back");
    let left = own_leftovers(&out);
    assert!(left.is_empty(), "{left:?}");
}
