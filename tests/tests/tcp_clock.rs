//! The kernel's TCP clock of a dilated node (crate `tcpclock`), checked against the kernel.
//!
//! Each test builds its own pair of network namespaces joined by a veth pair, puts the
//! endpoints' processes into a scratch cgroup2 directory, attaches the programs and observes
//! the effect through the kernel's own reports (`ss -ti`, iperf3's JSON).
//! Needs root, iproute2 (`ip`, `ss`, `tc`), iperf3 and a cgroup2 mount.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use diorama_tests::{diorama, need_root, need_tool, require, topology};
use tcpclock::{cgroup2, DilatedCubic, NodeCgroup, SockClock};

/// Two namespaces `a` and `b`, 10.77.9.1 and 10.77.9.2 on a veth pair; removed on drop.
struct Pair {
    a: String,
    b: String,
}

fn sh(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0]).args(&args[1..]).output().map_err(|e| format!("{}: {e}", args[0]))?;
    if !out.status.success() {
        return Err(format!("{}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Pair {
    fn new(tag: &str) -> Self {
        let id = std::process::id();
        let pair = Self { a: format!("tc-{tag}-a-{id}"), b: format!("tc-{tag}-b-{id}") };
        let (a, b) = (pair.a.as_str(), pair.b.as_str());
        let va = format!("tc{id}a");
        let vb = format!("tc{id}b");
        for cmd in [
            vec!["ip", "netns", "add", a],
            vec!["ip", "netns", "add", b],
            vec!["ip", "link", "add", &va, "netns", a, "type", "veth", "peer", "name", &vb, "netns", b],
            vec!["ip", "-n", a, "addr", "add", "10.77.9.1/24", "dev", &va],
            vec!["ip", "-n", b, "addr", "add", "10.77.9.2/24", "dev", &vb],
            vec!["ip", "-n", a, "link", "set", &va, "up"],
            vec!["ip", "-n", b, "link", "set", &vb, "up"],
            vec!["ip", "-n", a, "link", "set", "lo", "up"],
            vec!["ip", "-n", b, "link", "set", "lo", "up"],
        ] {
            sh(&cmd).expect("set up the namespace pair");
        }
        pair
    }

    fn sysctl(&self, ns: &str, key: &str, value: &str) -> Result<String, String> {
        sh(&["ip", "netns", "exec", ns, "sysctl", "-w", &format!("{key}={value}")])
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "del", &self.a]);
        let _ = sh(&["ip", "netns", "del", &self.b]);
    }
}

/// A scratch cgroup2 directory for this test's endpoints.
fn scratch_cgroup(tag: &str) -> Result<NodeCgroup, String> {
    let root = cgroup2::host_cgroup2_mount().map_err(|e| e.to_string())?;
    NodeCgroup::create(&root.join(format!("diorama-test-tcpclock-{tag}-{}", std::process::id())))
        .map_err(|e| e.to_string())
}

/// Starts `args` inside network namespace `ns` as a member of cgroup `cg` from its first
/// instruction (the shell joins the cgroup, then execs), so its sockets belong to `cg`.
fn spawn_in(cg: &Path, ns: &str, args: &[&str], stdout: Stdio) -> Child {
    let script = format!("echo $$ > {}/cgroup.procs && exec ip netns exec {ns} \"$@\"", cg.display());
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .args(args)
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn")
}

fn need_cgroup2() -> Result<PathBuf, String> {
    cgroup2::host_cgroup2_mount().map_err(|e| e.to_string())
}

/// The `rto:` of the first socket `ss -tin state <state>` lists in `ns`, in ms.
fn ss_rto(ns: &str, state: &str) -> Option<f64> {
    let out = sh(&["ip", "netns", "exec", ns, "ss", "-tin", "state", state]).ok()?;
    out.split_whitespace().find_map(|w| w.strip_prefix("rto:")).and_then(|v| v.parse().ok())
}

fn syn_rto_ms(tdf: Option<f64>) -> (Option<f64>, u64) {
    let pair = Pair::new(if tdf.is_some() { "syn" } else { "synref" });
    // Nobody answers 10.77.9.3: its SYNs go unanswered (ARP fails), the socket stays in
    // SYN-SENT with its initial RTO.
    let cg = scratch_cgroup("syn").expect("scratch cgroup");
    let clock = tdf.map(|t| SockClock::attach(cg.path(), t).expect("attach sock_ops"));
    let mut client =
        spawn_in(cg.path(), &pair.a, &["timeout", "5", "bash", "-c", ": <>/dev/tcp/10.77.9.3/9"], Stdio::null());
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut rto = None;
    while rto.is_none() && Instant::now() < deadline {
        sleep(Duration::from_millis(200));
        rto = ss_rto(&pair.a, "syn-sent");
    }
    cg.kill_all(Duration::from_secs(5)).expect("empty the scratch cgroup");
    let _ = client.wait();
    let answered = clock.map_or(0, |c| c.outcomes().expect("outcomes").timeout_init_answered);
    cg.remove().expect("remove the scratch cgroup");
    (rto, answered)
}

#[test]
fn sock_ops_stretches_the_syn_retransmission_timer() {
    require!(
        "sock_ops_stretches_the_syn_retransmission_timer",
        need_root(),
        need_tool("ip"),
        need_tool("ss"),
        need_tool("bash"),
        need_cgroup2()
    );
    let (plain, _) = syn_rto_ms(None);
    let (stretched, answered) = syn_rto_ms(Some(10.0));
    println!("SYN-SENT rto: {plain:?} ms without the program, {stretched:?} ms with it at TDF 10 ({answered} answers)");
    assert_eq!(plain, Some(1000.0), "the kernel's initial RTO is 1 s");
    assert_eq!(stretched, Some(10_000.0), "TDF 10 makes it 10 s");
    assert!(answered >= 1);
}

#[test]
fn sock_ops_reports_what_the_kernel_accepts() {
    require!(
        "sock_ops_reports_what_the_kernel_accepts",
        need_root(),
        need_tool("ip"),
        need_tool("iperf3"),
        need_cgroup2()
    );
    let pair = Pair::new("est");
    let cg = scratch_cgroup("est").expect("scratch cgroup");
    let clock = SockClock::attach(cg.path(), 10.0).expect("attach sock_ops");
    let mut server = spawn_in(cg.path(), &pair.b, &["iperf3", "-s", "-1"], Stdio::null());
    sleep(Duration::from_millis(500));
    let client =
        spawn_in(cg.path(), &pair.a, &["iperf3", "-c", "10.77.9.2", "-t", "1"], Stdio::null()).wait_with_output();
    assert!(client.is_ok_and(|o| o.status.success()), "iperf3 ran");
    cg.kill_all(Duration::from_secs(5)).expect("empty the scratch cgroup");
    let _ = server.wait();
    let o = clock.outcomes().expect("outcomes");
    println!("outcomes at TDF 10: {o:?}");
    // Both ends of two connections (control and data) were established inside the cgroup.
    assert!(o.delack_max_set + o.delack_max_refused >= 4, "every established socket asked");
    assert_eq!(o.rto_min_set + o.rto_min_refused, o.delack_max_set + o.delack_max_refused);
    // This kernel caps both at 200 ms; a kernel that accepts them would change the coverage
    // report (probe::coverage), which this test then flags.
    assert_eq!(
        (o.delack_max_set, o.rto_min_set),
        (0, 0),
        "the kernel accepted a stretched timer: update probe::coverage"
    );
    drop(clock);
    cg.remove().expect("remove the scratch cgroup");
}

/// iperf3's JSON: (congestion control of the sender, goodput in bit/s at the receiver).
fn iperf(pair: &Pair, cg: &Path, bytes: u64) -> (String, f64) {
    let mut server = spawn_in(cg, &pair.b, &["iperf3", "-s", "-1"], Stdio::null());
    sleep(Duration::from_millis(400));
    let out = spawn_in(cg, &pair.a, &["iperf3", "-J", "-c", "10.77.9.2", "-n", &bytes.to_string()], Stdio::piped())
        .wait_with_output()
        .expect("iperf3 client");
    let _ = server.wait();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("iperf3 JSON");
    let cc = v["end"]["sender_tcp_congestion"].as_str().unwrap_or("").to_string();
    let bps = v["end"]["sum_received"]["bits_per_second"].as_f64().unwrap_or(0.0);
    (cc, bps)
}

#[test]
fn dilated_cubic_is_the_namespace_default_and_carries_data() {
    require!(
        "dilated_cubic_is_the_namespace_default_and_carries_data",
        need_root(),
        need_tool("ip"),
        need_tool("iperf3"),
        need_cgroup2()
    );
    let cubic = DilatedCubic::register(10.0).expect("register the dilated CUBIC");
    let available = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_congestion_control").unwrap_or_default();
    assert!(available.split_whitespace().any(|n| n == cubic.name()), "{} in {available}", cubic.name());
    let pair = Pair::new("cc");
    for ns in [&pair.a, &pair.b] {
        pair.sysctl(ns, tcpclock::DEFAULT_CC_SYSCTL, cubic.name())
            .expect("a non-restricted CC can be a namespace default");
    }
    let cg = scratch_cgroup("cc").expect("scratch cgroup");
    let (cc, bps) = iperf(&pair, cg.path(), 20_000_000);
    println!("{} carried 20 MB at {:.1} Mbit/s", cc, bps / 1e6);
    assert_eq!(cc, cubic.name());
    assert!(bps > 1e6);
    // A second run at the same TDF (another harness) gets its own registration.
    let second = DilatedCubic::register(10.0).expect("a second registration");
    assert_ne!(second.name(), cubic.name());
    assert!(second.name().starts_with(cubic.name()), "{}", second.name());
    drop(second);
    let name = cubic.name().to_string();
    drop(pair);
    drop(cubic);
    cg.remove().expect("remove the scratch cgroup");
    // Unregistration is asynchronous to the sockets' release: give it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let available =
            std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_congestion_control").unwrap_or_default();
        if !available.split_whitespace().any(|n| n == name) {
            break;
        }
        assert!(Instant::now() < deadline, "{name} still registered after the link was dropped");
        sleep(Duration::from_millis(100));
    }
}

/// One leg of the CUBIC scale model under `diorama run`: the 5%-loss experiment of the
/// network tests (100 Mbit/s, 20 ms RTT, 5% loss on the data direction, 1.5 MB), with the
/// sender's socket on congestion control `cc`. The harness scales the links and the netns
/// TCP sysctls; the sender's CUBIC clock is the one under test. Returns the virtual goodput
/// in Mbit/s.
fn lossy_goodput(dir: &Path, tdf: f64, cc: &str, run: usize) -> f64 {
    let p = diorama_tests::netprobe();
    let yaml = format!(
        r#"
name: cubicloss
defaults: {{cpus: 0.8, memory: 128MiB}}
switches: [sw]
nodes:
  - name: server
    run: {{command: ["python3", "{p}", "sink", "5001"]}}
    ready: {{tcp: 5001}}
    link: {{to: sw, rate: 100Mbit, delay: 5ms}}
  - name: client
    main: true
    depends_on: [server]
    run: {{command: ["python3", "{p}", "source", "server", "5001", "1500000", "{cc}"]}}
links:
  - {{between: [client, sw], rate: 100Mbit, delay: 5ms, forward: {{loss: 5%}}}}
"#
    );
    let name = format!("cubicloss-{}-{run}", cc.replace('.', "_"));
    let topo = topology(dir, &name, &yaml);
    let out = dir.join(format!("{name}-{tdf}"));
    let r =
        diorama(&["run", &topo.display().to_string(), "--tdf", &tdf.to_string(), "--out", &out.display().to_string()]);
    assert_eq!(r.code, Some(0), "{name} at TDF {tdf}: {r:?}");
    let stdout = std::fs::read_to_string(out.join("nodes/client/stdout")).unwrap_or_default();
    assert!(diorama_tests::leftovers_of(&out).is_empty(), "{:?}", diorama_tests::leftovers_of(&out));
    stdout
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("client printed no goodput: {stdout}"))
}

/// Runs per leg: one in the suite (its bound is 20 %; single runs varied by 6 % here), more
/// in `bench/tcp_clock.sh`, which quotes the figure.
fn runs() -> usize {
    std::env::var("TCPCLOCK_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(1)
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// CUBIC under 5% loss keeps its virtual goodput at TDF 10 when its clock is dilated. Set
/// `TCPCLOCK_RUNS` for more runs per leg and `TCPCLOCK_KERNEL_CUBIC=1` to also measure the
/// kernel's own CUBIC (on real time) at TDF 10 for comparison (bench/tcp_clock.sh does both).
#[test]
fn dilated_cubic_keeps_its_lossy_goodput_at_tdf_10() {
    require!("dilated_cubic_keeps_its_lossy_goodput_at_tdf_10", need_root(), need_tool("python3"));
    let tmp = tempfile::tempdir().expect("temporary directory");
    let d1 = DilatedCubic::register(1.0).expect("register cubic_d1");
    let d10 = DilatedCubic::register(10.0).expect("register cubic_d10");
    let at1: Vec<f64> = (0..runs()).map(|i| lossy_goodput(tmp.path(), 1.0, d1.name(), i)).collect();
    let at10: Vec<f64> = (0..runs()).map(|i| lossy_goodput(tmp.path(), 10.0, d10.name(), i)).collect();
    let (m1, m10) = (mean(&at1), mean(&at10));
    println!("5% loss, 100 Mbit/s, 20 ms RTT, 1.5 MB: {} {at1:.3?} mean {m1:.3} Mbit/s at TDF 1; {} {at10:.3?} mean {m10:.3} Mbit/s virtual at TDF 10 ({:+.1}%)", d1.name(), d10.name(), (m10 / m1 - 1.0) * 100.0);
    if std::env::var_os("TCPCLOCK_KERNEL_CUBIC").is_some() {
        let k1: Vec<f64> = (0..runs()).map(|i| lossy_goodput(tmp.path(), 1.0, "cubic", i)).collect();
        let k10: Vec<f64> = (0..runs()).map(|i| lossy_goodput(tmp.path(), 10.0, "cubic", i)).collect();
        let (n1, n10) = (mean(&k1), mean(&k10));
        println!("kernel cubic (real-time clock): {k1:.3?} mean {n1:.3} Mbit/s at TDF 1; {k10:.3?} mean {n10:.3} Mbit/s virtual at TDF 10 ({:+.1}%)", (n10 / n1 - 1.0) * 100.0);
    }
    // Random loss varies from run to run; the 5% target is the benchmark's, this bound
    // catches a clock that is not dilated at all or a broken window.
    assert!((m10 / m1 - 1.0).abs() < 0.20, "TDF 10 {m10:.3} against TDF 1 {m1:.3} Mbit/s");
}

#[test]
fn the_probe_finds_this_kernels_hooks_and_leaves_nothing() {
    require!("the_probe_finds_this_kernels_hooks_and_leaves_nothing", need_root(), need_cgroup2());
    let probe = tcpclock::Probe::run(None);
    println!("probe: {probe:?}");
    assert_eq!(probe.sock_ops, Ok(()));
    assert_eq!(probe.struct_ops_cc, Ok(()));
    assert!(probe.hz > 0, "libbpf found the kernel's HZ");
    let coverage = tcpclock::coverage(&probe, true);
    for c in &coverage {
        println!("  {:<16} {:?}: {}", c.timer, c.mechanism, c.note);
    }
    let by = |t: &str| coverage.iter().find(|c| c.timer == t).map(|c| c.mechanism);
    assert_eq!(by("initial_rto"), Some(tcpclock::Mechanism::Bpf));
    assert_eq!(by("cubic_time_base"), Some(tcpclock::Mechanism::Bpf));
    let root = probe.cgroup2.clone().unwrap_or_default();
    let scratch = std::fs::read_dir(&root)
        .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("diorama-tcpclock-probe-")).count())
        .unwrap_or(0);
    assert_eq!(scratch, 0, "the probe's scratch cgroup is gone");
    let available = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_congestion_control").unwrap_or_default();
    assert!(!available.split_whitespace().any(|n| n == "cubic_d1"), "the probe's registration is gone: {available}");
}

/// Not a test of its own: the process `a_killed_run_leaves_nothing_behind` kills. It holds a
/// run's TCP clock (CUBIC registration, one node's attachment) until it is killed.
#[test]
#[ignore = "helper process of a_killed_run_leaves_nothing_behind"]
fn holder_of_a_run_clock() {
    let Some(run) = std::env::var_os("TCPCLOCK_HOLDER_RUN") else {
        return;
    };
    let run = run.to_string_lossy().into_owned();
    let mut clock = tcpclock::RunClock::start(&run, 7.0, None);
    clock.add_node("n1").expect("node cgroup");
    println!("holding {}", clock.congestion_control().unwrap_or("-"));
    sleep(Duration::from_secs(60));
}

#[test]
fn a_run_clock_reports_and_cleans_up() {
    require!(
        "a_run_clock_reports_and_cleans_up",
        need_root(),
        need_tool("ip"),
        need_tool("ss"),
        need_tool("bash"),
        need_cgroup2()
    );
    let run = format!("tcpclock-test-{}", std::process::id());
    let mut clock = tcpclock::RunClock::start(&run, 5.0, None);
    let cc = clock.congestion_control().map(str::to_string);
    assert!(cc.as_deref().is_some_and(|n| n.starts_with("cubic_d5")), "{cc:?}");
    let pair = Pair::new("run");
    let cg = clock.add_node("client").expect("node cgroup").cgroup().to_path_buf();
    let mut client = spawn_in(&cg, &pair.a, &["timeout", "5", "bash", "-c", ": <>/dev/tcp/10.77.9.3/9"], Stdio::null());
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut rto = None;
    while rto.is_none() && Instant::now() < deadline {
        sleep(Duration::from_millis(200));
        rto = ss_rto(&pair.a, "syn-sent");
    }
    assert_eq!(rto, Some(5000.0), "the node's initial RTO at TDF 5");
    let report = clock.report(true);
    let json = serde_json::to_string(&report).expect("report serializes");
    println!("report: {json}");
    assert!(json.contains("\"timeout_init_answered\":1"), "{json}");
    clock.finish().expect("finish");
    let _ = client.wait();
    assert!(!cg.exists(), "the node's cgroup2 directory is gone");
    assert!(!cg.parent().is_some_and(Path::exists), "the run's cgroup2 directory is gone");
}

#[test]
fn a_killed_run_leaves_nothing_behind() {
    require!("a_killed_run_leaves_nothing_behind", need_root(), need_cgroup2());
    let run = format!("tcpclock-kill-{}", std::process::id());
    let exe = std::env::current_exe().expect("test binary");
    let mut holder = Command::new(exe)
        .args(["--ignored", "--exact", "holder_of_a_run_clock", "--nocapture"])
        .env("TCPCLOCK_HOLDER_RUN", &run)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn the holder");
    let root = need_cgroup2().expect("cgroup2");
    let node = root.join("diorama").join(&run).join("n1");
    let available =
        || std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_congestion_control").unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(node.exists() && available().split_whitespace().any(|n| n.starts_with("cubic_d7"))) {
        assert!(Instant::now() < deadline, "the holder never set up: {}", available());
        sleep(Duration::from_millis(50));
    }
    // A node process still inside, as after a harness crash.
    let mut orphan = Command::new("sh")
        .arg("-c")
        .arg(format!("echo $$ > {}/cgroup.procs && exec sleep 60", node.display()))
        .spawn()
        .expect("spawn");
    sleep(Duration::from_millis(200));
    let _ = holder.kill(); // SIGKILL
    let _ = holder.wait();
    // The kernel drops the links with the process: the CUBIC is unregistered.
    let deadline = Instant::now() + Duration::from_secs(5);
    while available().split_whitespace().any(|n| n.starts_with("cubic_d7")) {
        assert!(Instant::now() < deadline, "cubic_d7 outlived its holder: {}", available());
        sleep(Duration::from_millis(50));
    }
    // What remains is the cgroup2 directory; clean removes it and what is inside.
    assert!(node.exists());
    let removed = tcpclock::clean(&root, Some(&[run.as_str()])).expect("clean");
    let _ = orphan.wait();
    assert_eq!(removed, vec![root.join("diorama").join(&run)]);
    assert!(!root.join("diorama").join(&run).exists());
}

#[test]
fn sock_ops_switches_every_socket_to_the_dilated_cubic() {
    require!(
        "sock_ops_switches_every_socket_to_the_dilated_cubic",
        need_root(),
        need_tool("ip"),
        need_tool("iperf3"),
        need_cgroup2()
    );
    let cubic = DilatedCubic::register(4.0).expect("register the dilated CUBIC");
    let pair = Pair::new("sw");
    let cg = scratch_cgroup("sw").expect("scratch cgroup");
    let clock = SockClock::attach_with_cc(cg.path(), 4.0, Some(cubic.name())).expect("attach sock_ops");
    // The namespaces keep the host's default; the program switches each socket.
    let (cc, bps) = iperf(&pair, cg.path(), 5_000_000);
    let o = clock.outcomes().expect("outcomes");
    println!("sender on {cc} at {:.1} Mbit/s; outcomes {o:?}", bps / 1e6);
    assert_eq!(cc, cubic.name());
    assert!(o.cc_set >= 2 && o.cc_refused == 0, "{o:?}");
    drop(clock);
    cg.kill_all(Duration::from_secs(5)).expect("empty the scratch cgroup");
    cg.remove().expect("remove the scratch cgroup");
}
