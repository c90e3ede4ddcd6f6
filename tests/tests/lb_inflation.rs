//! The load-balancer inflation experiment (`topologies/lb-inflation.yaml`, docs/l4lb.md)
//! under `diorama run` with real memcached (root): two memcached servers behind a
//! balancer, 16 closed-loop clients with a 50:50 GET/SET mix over connections that
//! reconnect every 10 requests, and 1 ms of `inflate` on `mc1` at 6 s.
//!
//! Runs the L7 balancer in memcache mode with `peak-ewma` (full information) and with
//! `round-robin` (static), at the TDF given by `DIORAMA_LB_TDF` (default 10: at TDF 1 a
//! busy 2-core host's scheduling noise is larger than the 1 ms being measured). Prints the
//! figures docs/l4lb.md records, and checks what must hold whatever the host's load: the
//! balancer measured the inflation on mc1 (+1 ms, virtual), peak-EWMA moved requests away
//! from mc1, round-robin did not.
//!
//! It also measures the L4 balancer's in-band estimator on this real traffic: `tcpdump`
//! in the balancer node captures the client→balancer packets (exactly what a DSR balancer
//! sees), the capture is replayed into `balancer::Balancer` with kernel timestamps turned
//! into virtual time (real since the epoch / TDF), and each epoch's estimate is compared
//! with the latency the client measured in that epoch.

use std::collections::BTreeMap;
use std::path::Path;

use balancer::config::{Aggregation, EstimatorConfig};
use balancer::{Balancer, BalancerConfig, PacketMeta, Policy};
use diorama_tests::{artifact, diorama, need_root, need_tool, pcap, repo_root, require};

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Figures of one run.
#[derive(Debug)]
struct Figures {
    get_p50_pre_ms: f64,
    get_p95_pre_ms: f64,
    get_p50_post_ms: f64,
    get_p95_post_ms: f64,
    /// mc1's share of the balancer's requests in the 2 s before and the 2 s after the
    /// fault (from 0.2 s after it).
    mc1_share_pre: f64,
    mc1_share_post: f64,
    /// The balancer's per-interval p50 latency of mc1 (median of intervals), ms.
    mc1_lb_p50_pre_ms: f64,
    mc1_lb_p50_post_ms: f64,
    /// In-band estimator against the client, epochs before the fault: median of
    /// |estimate − client median| / client median, and the number of epochs compared.
    estimator_error: f64,
    estimator_epochs: usize,
    /// The timeouts ENSEMBLETIMEOUT chose (µs), with how many epochs chose each.
    timeouts: BTreeMap<u64, usize>,
}

/// Replays the balancer node's capture into the in-band estimator (one backend: the L7
/// balancer itself stands where the L4 one would) and compares each epoch's estimate with
/// the client's median latency over the epoch's requests that completed in it.
fn estimator(out: &Path, tdf: f64, fault_s: f64) -> (f64, usize, BTreeMap<u64, usize>) {
    let run = json(&out.join("run.json"));
    let epoch_real = run["epoch"]["real_ns"].as_i64().expect("epoch");
    let epoch_virt = run["epoch"]["virt_ns"].as_i64().expect("epoch");
    let packets = pcap::read(&out.join("nodes/lb/lb.pcap")).unwrap_or_else(|e| panic!("{e}"));
    assert!(packets.len() > 1000, "the capture holds {} packets", packets.len());
    let config = BalancerConfig {
        policy: Policy::Maglev,
        estimator: EstimatorConfig {
            aggregation: Aggregation::WindowMedian { window: 64 },
            ..EstimatorConfig::default()
        },
        ..BalancerConfig::default()
    };
    let mut b = Balancer::new(config, vec!["lb".into()], vec![1.0]).expect("a balancer");
    for p in &packets {
        let Some((flow, flags, payload_len)) = balancer::packet::parse_ipv4(&p.ip, 0) else {
            continue;
        };
        if flow.dst_port != 11211 || p.real_ns < epoch_real {
            continue;
        }
        let now_ns = balancer::packet::virtual_ns((p.real_ns - epoch_real) as u64, tdf);
        b.route(&PacketMeta { flow, flags, payload_len, now_ns }).expect("route a packet");
    }
    let t = b.take_telemetry();
    let mut timeouts = BTreeMap::new();
    for e in &t.epochs {
        *timeouts.entry(e.chosen_timeout_ns / 1_000).or_default() += 1;
    }
    let csv = std::fs::read_to_string(out.join("nodes/client/requests.csv")).expect("read a result file");
    let done: Vec<(f64, f64)> = csv
        .lines()
        .skip(1)
        .filter_map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            if !c[8].is_empty() {
                return None;
            }
            let t = (c[3].parse::<i64>().ok()? - epoch_virt) as f64 / 1e9;
            Some((t, c[4].parse::<f64>().ok()? / 1e6))
        })
        .collect();
    let load_start = done.iter().map(|d| d.0).fold(f64::INFINITY, f64::min);
    let mut errors = Vec::new();
    for r in &t.estimates {
        let end = r.t_ns as f64 / 1e9;
        let Some(est) = r.estimate_ns.map(|e| e / 1e6) else {
            continue;
        };
        // Stable latency: from 1 s into the load to the fault.
        if end < load_start + 1.0 || end >= fault_s {
            continue;
        }
        let mut client: Vec<f64> = done.iter().filter(|d| d.0 > end - 0.064 && d.0 <= end).map(|d| d.1).collect();
        if client.len() < 10 {
            continue;
        }
        let med = quantile(&mut client, 0.5);
        errors.push((est - med).abs() / med);
    }
    let n = errors.len();
    (quantile(&mut errors, 0.5), n, timeouts)
}

fn figures(out: &Path) -> Figures {
    let run = json(&out.join("run.json"));
    let epoch = run["epoch"]["virt_ns"].as_i64().expect("epoch");
    let events = std::fs::read_to_string(out.join("events.jsonl")).expect("read a result file");
    let fault = events
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["fault"] == "inflate")
        .and_then(|e| e["t_virtual_s"].as_f64())
        .expect("the inflate fault fired");
    let csv = std::fs::read_to_string(out.join("nodes/client/requests.csv")).expect("read a result file");
    let (mut pre, mut post) = (Vec::new(), Vec::new());
    for l in csv.lines().skip(1) {
        let c: Vec<&str> = l.split(',').collect();
        if c[9] != "get" || !c[8].is_empty() {
            continue;
        }
        let t = (c[1].parse::<i64>().expect("a number") - epoch) as f64 / 1e9;
        let ms = c[4].parse::<f64>().expect("a number") / 1e6;
        if (fault - 3.0..fault).contains(&t) {
            pre.push(ms);
        } else if t >= fault + 0.5 {
            post.push(ms);
        }
    }
    let lb = std::fs::read_to_string(out.join("nodes/lb/backends.csv")).expect("read a result file");
    let mut requests: BTreeMap<(bool, bool), f64> = BTreeMap::new();
    let (mut lat_pre, mut lat_post) = (Vec::new(), Vec::new());
    for l in lb.lines().skip(1) {
        let c: Vec<&str> = l.split(',').collect();
        let t: f64 = c[0].parse().expect("a number");
        let is_mc1 = c[1].starts_with("mc1");
        let n: f64 = c[2].parse().expect("a number");
        let after = if (fault - 2.0..fault).contains(&t) {
            false
        } else if (fault + 0.2..fault + 2.2).contains(&t) {
            true
        } else {
            continue;
        };
        *requests.entry((after, is_mc1)).or_default() += n;
        if let (true, Ok(p50)) = (is_mc1, c[5].parse::<f64>()) {
            if after { &mut lat_post } else { &mut lat_pre }.push(p50 / 1e3);
        }
    }
    let tdf = run["tdf"].as_f64().expect("tdf");
    let (estimator_error, estimator_epochs, timeouts) = estimator(out, tdf, fault);
    let share = |after: bool| {
        let mc1 = requests.get(&(after, true)).copied().unwrap_or(0.0);
        mc1 / (mc1 + requests.get(&(after, false)).copied().unwrap_or(0.0))
    };
    Figures {
        get_p50_pre_ms: quantile(&mut pre.clone(), 0.5),
        get_p95_pre_ms: quantile(&mut pre, 0.95),
        get_p50_post_ms: quantile(&mut post.clone(), 0.5),
        get_p95_post_ms: quantile(&mut post, 0.95),
        mc1_share_pre: share(false),
        mc1_share_post: share(true),
        mc1_lb_p50_pre_ms: quantile(&mut lat_pre, 0.5),
        mc1_lb_p50_post_ms: quantile(&mut lat_post, 0.5),
        estimator_error,
        estimator_epochs,
        timeouts,
    }
}

/// Writes `yaml` as `name` into a fresh directory and runs it at `tdf`; the directory (kept
/// alive by the first value) and the results directory in it. A failed run fails the test.
/// With `DIORAMA_LB_KEEP=DIR` the directory is made in DIR and kept (for `diorama report`).
fn run_topology(name: &str, yaml: &str, tdf: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let keep = std::env::var_os("DIORAMA_LB_KEEP");
    let mut dir = match &keep {
        Some(root) => {
            std::fs::create_dir_all(root).expect("create DIORAMA_LB_KEEP");
            tempfile::Builder::new().prefix(&format!("{name}-tdf{tdf}-")).tempdir_in(root)
        }
        None => tempfile::tempdir(),
    }
    .expect("a temporary directory");
    dir.disable_cleanup(keep.is_some());
    let topo = dir.path().join(name);
    std::fs::write(&topo, yaml).expect("write the topology");
    let out = dir.path().join("results");
    let o = diorama(&[
        "run",
        topo.to_str().expect("a UTF-8 path"),
        "--tdf",
        tdf,
        "--out",
        out.to_str().expect("a UTF-8 path"),
    ]);
    assert_eq!(o.code, Some(0), "{}\n{}", o.stdout, o.stderr);
    (dir, out)
}

fn run(policy: &str, tdf: &str) -> Figures {
    let yaml = std::fs::read_to_string(repo_root().join("topologies/lb-inflation.yaml")).expect("read a result file");
    // The balancer node runs under a shell that starts tcpdump beside it: inbound packets
    // to port 11211 are the clients' (its own requests to memcached are outbound).
    let lb_line = yaml.lines().find(|l| l.contains("workload: lb")).expect("the lb node").to_owned();
    let lb = artifact("diorama-lb");
    let wrapped = format!(
        "    run: {{command: [\"sh\", \"-c\", \"tcpdump -Q in -i any -n -U --time-stamp-precision=nano -w lb.pcap 'tcp dst port 11211' 2>tcpdump.err & exec {} --protocol memcache --policy {policy} --ewma-decay 100ms --backend 'mc[0..2]:11211' --listen 0.0.0.0:11211 --report-interval 50ms\"]}}",
        lb.display()
    );
    let yaml = yaml.replace(&lb_line, &wrapped);
    let (_dir, out) = run_topology("lb-inflation.yaml", &yaml, tdf);
    let s = json(&out.join("nodes/client/summary.json"));
    assert_eq!(s["errors"].as_u64(), Some(0), "{s}");
    let f = figures(&out);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "lb-inflation policy={policy} tdf={tdf}: GET p50 {:.3} -> {:.3} ms, p95 {:.3} -> {:.3} ms; \
         mc1 share {:.3} -> {:.3}; balancer-measured mc1 p50 {:.3} -> {:.3} ms; \
         in-band estimator median error {:.1}% over {} epochs, timeouts chosen {:?}; loadavg {}",
        f.get_p50_pre_ms,
        f.get_p50_post_ms,
        f.get_p95_pre_ms,
        f.get_p95_post_ms,
        f.mc1_share_pre,
        f.mc1_share_post,
        f.mc1_lb_p50_pre_ms,
        f.mc1_lb_p50_post_ms,
        f.estimator_error * 100.0,
        f.estimator_epochs,
        f.timeouts,
        load.trim()
    );
    f
}

#[test]
#[ignore = "a measurement, for a quiet host (flaky on 2026-12-02: 1 of 3 runs failed). Last run 2026-12-07 \
            12:58 UTC on a quiet host: passed (peak-EWMA mc1 share 0.49 -> 0.29, GET p95 2.64 -> 3.83 ms; round-robin \
            p95 3.38 -> 3.76 ms; in-band replay error 5-7%); docs/l4lb.md"]
fn lb_inflation_l7_reference() {
    const T: &str = "lb_inflation_l7_reference";
    require!(T, need_root(), need_tool("memcached"), need_tool("tcpdump"));
    let tdf = std::env::var("DIORAMA_LB_TDF").unwrap_or_else(|_| "10".into());
    let ewma = run("peak-ewma", &tdf);
    let rr = run("round-robin", &tdf);
    for f in [&ewma, &rr] {
        // The fault is visible to the balancer: 1 ms more on mc1 (half of it is enough on
        // a busy host).
        assert!(f.mc1_lb_p50_post_ms - f.mc1_lb_p50_pre_ms > 0.5, "{f:?}");
    }
    // The in-band estimator, from client packets alone, is within the 20 % of
    // the client-measured latency while latency is stable (median over epochs).
    for f in [&ewma, &rr] {
        assert!(f.estimator_epochs >= 20 && f.estimator_error <= 0.2, "{f:?}");
    }
    // Round-robin is static; peak-EWMA, which sees responses, moves load off mc1.
    assert!((rr.mc1_share_post - 0.5).abs() < 0.05, "{rr:?}");
    assert!(ewma.mc1_share_post < ewma.mc1_share_pre - 0.1, "{ewma:?}");
}

// ---------------------------------------------------------------------------------------
// The L4 balancer in the emulated data path (`topologies/lb-inflation-l4.yaml`): static
// Maglev and in-band, at TDF 10 and TDF 1. Shortened to 3 s of load from 0.5 s with the
// inflation at 2 s (virtual), so a run at TDF 10 takes about 35 s of real time plus start-up.
//
// Under DSR the client cannot see which backend answered it. The load generator records
// each request's local port (`requests.csv` `local_port`) and the balancer each connection
// it placed (`balancers/l4/connections.csv`), so every request is attributed to its
// backend, and the in-band estimates are compared with the latency the client measured
// on the same backend.

/// One L4 run's results directory (kept in `_dir`).
struct L4Run {
    _dir: tempfile::TempDir,
    out: std::path::PathBuf,
    policy: String,
    tdf: f64,
    fault_s: f64,
    /// `/proc/loadavg` before and after the run.
    load_before: String,
    load_after: String,
}

/// A CSV file as rows of fields, and the index of each header name.
fn csv_table(path: &Path) -> (BTreeMap<String, usize>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default().split(',').enumerate().map(|(i, h)| (h.to_owned(), i)).collect();
    (header, lines.map(|l| l.split(',').map(str::to_owned).collect()).collect())
}

fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    csv_table(path).1
}

/// Runs the L4 topology with `policy` at `tdf`, with the replacements `edits` (text of the
/// topology → replacement) on top of the shortening.
fn run_l4(policy: &str, tdf: &str, edits: &[(&str, &str)]) -> L4Run {
    let mut yaml =
        std::fs::read_to_string(repo_root().join("topologies/lb-inflation-l4.yaml")).expect("read the topology");
    for (from, to) in [
        ("policy: inband", format!("policy: {policy}").as_str()),
        ("duration: 8s,", "duration: 3s,"),
        ("at: 6s,", "at: 2s,"),
    ]
    .iter()
    .map(|(a, b)| (*a, *b))
    .chain(edits.iter().copied())
    {
        assert!(yaml.contains(from), "the topology holds {from:?}");
        yaml = yaml.replace(from, to);
    }
    let load_before = loadavg();
    let (dir, out) = run_topology(&format!("lb-inflation-l4-{policy}.yaml"), &yaml, tdf);
    let load_after = loadavg();
    let events = std::fs::read_to_string(out.join("events.jsonl")).expect("read events.jsonl");
    let fault_s = events
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["kind"] == "fault")
        .and_then(|e| e["t_virtual_s"].as_f64())
        .expect("the fault fired");
    L4Run {
        _dir: dir,
        out,
        policy: policy.to_owned(),
        tdf: tdf.parse().expect("a TDF"),
        fault_s,
        load_before,
        load_after,
    }
}

/// A completed request of an L4 run.
#[derive(Debug, Clone)]
struct L4Request {
    /// Completion, virtual s since the epoch.
    done: f64,
    /// Latency as the client measured it (from the end of its previous request, so the
    /// first request of a connection includes the connection's handshake), ms.
    ms: f64,
    /// The request's own time on its connection (`uncorrected_ns`: without the
    /// handshake), ms.
    own_ms: f64,
    get: bool,
    /// The backend that served it, from its connection's local port and the balancer's
    /// `connections.csv`.
    backend: Option<String>,
}

fn l4_requests(r: &L4Run) -> Vec<L4Request> {
    let epoch = json(&r.out.join("run.json"))["epoch"]["virt_ns"].as_i64().expect("epoch");
    let since = |ns: &str| (ns.parse::<i64>().expect("a timestamp") - epoch) as f64 / 1e9;
    // Client port → the connections the balancer placed from it: (virtual s, backend).
    let mut placed: BTreeMap<String, Vec<(f64, String)>> = BTreeMap::new();
    for c in csv_rows(&r.out.join("balancers/l4/connections.csv")) {
        let port = c[1].rsplit(':').next().unwrap_or_default().to_owned();
        placed.entry(port).or_default().push((c[0].parse::<f64>().expect("t") / 1e3, c[2].clone()));
    }
    let (h, rows) = csv_table(&r.out.join("nodes/client/requests.csv"));
    let col = |name: &str| *h.get(name).unwrap_or_else(|| panic!("requests.csv has no {name}"));
    let (dispatch, complete, latency, own, error, class, port) = (
        col("dispatch_ns"),
        col("complete_ns"),
        col("latency_ns"),
        col("uncorrected_ns"),
        col("error"),
        col("class"),
        col("local_port"),
    );
    rows.into_iter()
        .filter(|c| c[error].is_empty())
        .map(|c| {
            // The connection was placed at its SYN, before the request was dispatched on
            // it (1 ms of slack for the two clocks); a port used again later is a newer row.
            let sent = since(&c[dispatch]);
            let backend = placed
                .get(&c[port])
                .and_then(|v| v.iter().rev().find(|(t, _)| *t <= sent + 0.001))
                .map(|(_, b)| b.clone());
            L4Request {
                done: since(&c[complete]),
                ms: c[latency].parse::<f64>().expect("latency_ns") / 1e6,
                own_ms: c[own].parse::<f64>().expect("uncorrected_ns") / 1e6,
                get: c[class] == "get",
                backend,
            }
        })
        .collect()
}

/// Quantile `q` of `f(request)` over the GETs completing in `[from, to)` virtual s (served
/// by `backend` when given), and how many there were.
fn get_quantile(
    reqs: &[L4Request],
    (from, to): (f64, f64),
    backend: Option<&str>,
    f: fn(&L4Request) -> f64,
    q: f64,
) -> (f64, usize) {
    let mut v: Vec<f64> = reqs
        .iter()
        .filter(|r| r.get && (from..to).contains(&r.done) && backend.is_none_or(|b| r.backend.as_deref() == Some(b)))
        .map(f)
        .collect();
    let n = v.len();
    (quantile(&mut v, q), n)
}

/// mc1's slot share over time: (virtual s, share).
fn mc1_shares(r: &L4Run) -> Vec<(f64, f64)> {
    csv_rows(&r.out.join("balancers/l4/shares.csv"))
        .into_iter()
        .filter(|c| c[1] == "mc1")
        .map(|c| (c[0].parse::<f64>().expect("t") / 1e3, c[2].parse().expect("share")))
        .collect()
}

/// The in-band estimator against the client, per backend: for every epoch ending in
/// `[from, to)` and each backend, |estimate − median latency the client measured on that
/// backend's requests completing in the epoch| / that median (at least 10 requests). The
/// estimate is the median of the backend's last 64 samples (the default aggregation), so
/// it is compared with a median. Returns the median of those errors, how many there
/// were, and the median estimate and client median of `backend` over the window.
fn l4_estimator_error(r: &L4Run, reqs: &[L4Request], (from, to): (f64, f64), backend: &str) -> (f64, usize, f64, f64) {
    let mut errors = Vec::new();
    let (mut est_b, mut client_b) = (Vec::new(), Vec::new());
    for c in csv_rows(&r.out.join("balancers/l4/estimates.csv")) {
        let end = c[0].parse::<f64>().expect("t") / 1e3;
        let Ok(est) = c[2].parse::<f64>() else { continue };
        if !(from..to).contains(&end) {
            continue;
        }
        let mut client: Vec<f64> = reqs
            .iter()
            .filter(|q| q.backend.as_deref() == Some(c[1].as_str()) && q.done > end - 0.064 && q.done <= end)
            .map(|q| q.ms)
            .collect();
        if client.len() < 10 {
            continue;
        }
        let med = quantile(&mut client, 0.5);
        errors.push((est - med).abs() / med);
        if c[1] == backend {
            est_b.push(est);
            client_b.push(med);
        }
    }
    let n = errors.len();
    (quantile(&mut errors, 0.5), n, quantile(&mut est_b, 0.5), quantile(&mut client_b, 0.5))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_owned()
}

/// The figures of an L4 run, printed for docs/l4lb.md. GET latency windows: the 1 s before
/// the fault, and from 0.2 s after it to the end.
#[derive(Debug)]
#[expect(dead_code, reason = "some figures are printed, not checked")]
struct L4Figures {
    policy: String,
    tdf: f64,
    p50_pre_ms: f64,
    p50_post_ms: f64,
    p95_pre_ms: f64,
    p95_post_ms: f64,
    /// The same p95 of the requests' own time (without a reconnecting client's handshake).
    own_p95_pre_ms: f64,
    own_p95_post_ms: f64,
    /// GET p50 of the requests mc1 served, before and after (the injected 1 ms).
    mc1_p50_pre_ms: f64,
    mc1_p50_post_ms: f64,
    /// mc1's share of the GETs before and after.
    mc1_requests_pre: f64,
    mc1_requests_post: f64,
    /// Requests whose backend was not found (should be none).
    unattributed: usize,
    /// mc1's first share below 10 % after the fault, virtual ms after it.
    drained_after_ms: Option<f64>,
    /// The first 50 ms window after the fault whose GET p95 is within 10 % of before,
    /// virtual ms after the fault (window start).
    recovered_after_ms: Option<f64>,
    /// Slot moves of the controller (drain or relax) before the fault.
    moves_before_fault: usize,
    /// In-band estimator against the client (per backend, from 0.5 s into the load to the
    /// fault): median relative error and the number of (epoch, backend) pairs.
    estimator_error: f64,
    estimator_epochs: usize,
    /// mc1's median estimate and client median (ms) before the fault and after it (from
    /// 0.2 s after, while mc1 still serves: static Maglev only).
    mc1_estimate_pre_ms: f64,
    mc1_client_pre_ms: f64,
    mc1_estimate_post_ms: f64,
    mc1_client_post_ms: f64,
    /// The timeouts ENSEMBLETIMEOUT chose before the fault (µs → epochs).
    timeouts: BTreeMap<u64, usize>,
    requests: usize,
    load_before: String,
    load_after: String,
}

fn l4_figures(r: &L4Run) -> L4Figures {
    let s = json(&r.out.join("nodes/client/summary.json"));
    assert_eq!(s["errors"].as_u64(), Some(0), "{s}");
    let reqs = l4_requests(r);
    let f = r.fault_s;
    let end = reqs.iter().map(|q| q.done).fold(0.0, f64::max);
    let start = reqs.iter().map(|q| q.done).fold(f64::INFINITY, f64::min);
    let (pre, post) = ((f - 1.0, f), (f + 0.2, end));
    let ms: fn(&L4Request) -> f64 = |q| q.ms;
    let own: fn(&L4Request) -> f64 = |q| q.own_ms;
    let (p95_pre, n_pre) = get_quantile(&reqs, pre, None, ms, 0.95);
    let (p95_post, n_post) = get_quantile(&reqs, post, None, ms, 0.95);
    assert!(n_pre > 200 && n_post > 200, "GETs before {n_pre}, after {n_post}");
    let share = |w: (f64, f64)| {
        let n = get_quantile(&reqs, w, None, ms, 0.5).1;
        get_quantile(&reqs, w, Some("mc1"), ms, 0.5).1 as f64 / n as f64
    };
    let shares = mc1_shares(r);
    let drained = shares.iter().find(|&&(t, s)| t >= f && s < 0.1).map(|(t, _)| (t - f) * 1e3);
    let moves = csv_rows(&r.out.join("balancers/l4/shares.csv"))
        .iter()
        .filter(|c| c[1] == "mc1" && (c[3] == "drain" || c[3] == "relax"))
        .filter(|c| c[0].parse::<f64>().expect("t") / 1e3 < f)
        .count();
    let recovered = (0..40).map(|k| f + 0.01 * k as f64).find_map(|from| {
        let (p, n) = get_quantile(&reqs, (from, from + 0.05), None, ms, 0.95);
        (n >= 20 && p <= 1.1 * p95_pre).then_some((from - f) * 1e3)
    });
    let (estimator_error, estimator_epochs, mc1_estimate_pre_ms, mc1_client_pre_ms) =
        l4_estimator_error(r, &reqs, (start + 0.5, f), "mc1");
    let (_, _, mc1_estimate_post_ms, mc1_client_post_ms) = l4_estimator_error(r, &reqs, post, "mc1");
    let mut timeouts = BTreeMap::new();
    for c in csv_rows(&r.out.join("balancers/l4/epochs.csv")) {
        if c[0].parse::<f64>().expect("t") / 1e3 < f {
            *timeouts.entry(c[1].parse::<u64>().expect("µs")).or_default() += 1;
        }
    }
    let fig = L4Figures {
        policy: r.policy.clone(),
        tdf: r.tdf,
        p50_pre_ms: get_quantile(&reqs, pre, None, ms, 0.5).0,
        p50_post_ms: get_quantile(&reqs, post, None, ms, 0.5).0,
        p95_pre_ms: p95_pre,
        p95_post_ms: p95_post,
        own_p95_pre_ms: get_quantile(&reqs, pre, None, own, 0.95).0,
        own_p95_post_ms: get_quantile(&reqs, post, None, own, 0.95).0,
        mc1_p50_pre_ms: get_quantile(&reqs, pre, Some("mc1"), ms, 0.5).0,
        mc1_p50_post_ms: get_quantile(&reqs, post, Some("mc1"), ms, 0.5).0,
        mc1_requests_pre: share(pre),
        mc1_requests_post: share(post),
        unattributed: reqs.iter().filter(|q| q.backend.is_none()).count(),
        drained_after_ms: drained,
        recovered_after_ms: recovered,
        moves_before_fault: moves,
        estimator_error,
        estimator_epochs,
        mc1_estimate_pre_ms,
        mc1_client_pre_ms,
        mc1_estimate_post_ms,
        mc1_client_post_ms,
        timeouts,
        requests: reqs.len(),
        load_before: r.load_before.clone(),
        load_after: r.load_after.clone(),
    };
    println!("lb-inflation-l4 {}: {fig:#?}", r.out.display());
    // One line per run, for sweeps to collect.
    println!(
        "l4-row policy={} tdf={} p50_pre={:.3} p95_pre={:.3} p95_post={:.3} drained={:?} recovered={:?} \
         moves_before={} est_err={:.3} est_epochs={} load_before=\"{}\" load_after=\"{}\"",
        fig.policy,
        fig.tdf,
        fig.p50_pre_ms,
        fig.p95_pre_ms,
        fig.p95_post_ms,
        fig.drained_after_ms,
        fig.recovered_after_ms,
        fig.moves_before_fault,
        fig.estimator_error,
        fig.estimator_epochs,
        fig.load_before,
        fig.load_after
    );
    fig
}

/// TDF 10 against TDF 1: the scale model must hold for the balancer too. The figures
/// compared are the pre-fault GET p50 (virtual) and the p95 shift; within 25 % + 0.1 ms
/// (the run-to-run spread seen at one TDF on this host).
fn same_curves(a: &L4Figures, b: &L4Figures) -> Result<(), String> {
    let close = |x: f64, y: f64| (x - y).abs() <= 0.25 * x.abs().max(y.abs()) + 0.1;
    if !close(a.p50_pre_ms, b.p50_pre_ms) {
        return Err(format!(
            "p50 before: {:.3} ms at TDF {}, {:.3} ms at TDF {}",
            a.p50_pre_ms, a.tdf, b.p50_pre_ms, b.tdf
        ));
    }
    let (sa, sb) = (a.p95_post_ms - a.p95_pre_ms, b.p95_post_ms - b.p95_pre_ms);
    if !close(sa, sb) {
        return Err(format!("p95 shift: {sa:.3} ms at TDF {}, {sb:.3} ms at TDF {}", a.tdf, b.tdf));
    }
    Ok(())
}

/// Runs `policy` at TDF 10 and TDF 1, checks each run with `check` and the two against
/// each other, and fails with every failed check after printing every figure.
///
/// For sweeps (`bench/l4_sweep.sh`): `DIORAMA_LB_L4_CLIENT` replaces the client's
/// `mode: closed, clients: 16` (e.g. `mode: open, rate: 4000, connections: 64`), and
/// `DIORAMA_LB_L4_TDFS` the two TDFs compared (`10,1`: scaled first, reference second).
fn l4_experiment(policy: &str, check: fn(&L4Figures) -> Vec<String>) {
    let client = std::env::var("DIORAMA_LB_L4_CLIENT").ok();
    let edits: Vec<(&str, &str)> = client.as_deref().map(|c| ("mode: closed, clients: 16", c)).into_iter().collect();
    let tdfs = std::env::var("DIORAMA_LB_L4_TDFS").unwrap_or_else(|_| "10,1".into());
    let tdfs: Vec<&str> = tdfs.split(',').map(str::trim).collect();
    assert_eq!(tdfs.len(), 2, "DIORAMA_LB_L4_TDFS names two TDFs, e.g. 10,1");
    let mut figs = Vec::new();
    let mut failed = Vec::new();
    for tdf in &tdfs {
        let f = l4_figures(&run_l4(policy, tdf, &edits));
        failed.extend(check(&f).into_iter().map(|m| format!("{policy} TDF {tdf}: {m}")));
        figs.push(f);
    }
    if let Err(m) = same_curves(&figs[0], &figs[1]) {
        failed.push(format!("{policy}, TDF {} against TDF {}: {m}", tdfs[0], tdfs[1]));
    }
    println!(
        "l4-verdict {policy} tdfs={} client={:?}: {}",
        tdfs.join(","),
        client,
        if failed.is_empty() { "PASS".to_string() } else { failed.join(" | ") }
    );
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// What every L4 run must show: each request attributed, the estimator within the issue's
/// 20 % of the client's latency on the same backend before the fault.
fn estimator_checks(f: &L4Figures) -> Vec<String> {
    let mut failed = Vec::new();
    if f.unattributed > 0 {
        failed.push(format!("{} requests not attributed to a backend", f.unattributed));
    }
    if f.estimator_epochs < 20 || f.estimator_error > 0.2 {
        failed.push(format!("estimator error {:.3} over {} epochs", f.estimator_error, f.estimator_epochs));
    }
    failed
}

#[test]
#[ignore = "a measurement, for a quiet host. Last run 2026-12-07 12:53 UTC on a quiet host: passed (p95 shift \
            1.10 ms at TDF 10, 0.83 ms at TDF 1; estimator error 11-12%); a run 2 minutes earlier at load average \
            5-10 failed (TDF 1 p95 shift 0.54 ms); docs/l4lb.md"]
fn lb_inflation_l4_maglev() {
    const T: &str = "lb_inflation_l4_maglev";
    require!(T, need_root(), need_tool("memcached"));
    l4_experiment("maglev", |f| {
        let mut failed = estimator_checks(f);
        if f.drained_after_ms.is_some() || f.moves_before_fault > 0 {
            failed.push("static Maglev moved slots".into());
        }
        // Static Maglev: mc1 keeps half of the connections, so its requests take the
        // injected 1 ms more.
        let shift = f.mc1_p50_post_ms - f.mc1_p50_pre_ms;
        if !(0.7..=1.3).contains(&shift) {
            failed.push(format!("mc1's GET p50 shift {shift:.3} ms"));
        }
        let shift = f.p95_post_ms - f.p95_pre_ms;
        if !(0.6..=1.4).contains(&shift) {
            failed.push(format!("GET p95 shift {shift:.3} ms"));
        }
        failed
    });
}

#[test]
#[ignore = "a measurement, for a quiet host. Last run 2026-12-07 12:54 UTC on a quiet host: failed (TDF 10 p95 \
            1.60 -> 2.22 ms after the fault, bound +10%; p95 shift 0.62 ms at TDF 10 against 0.08 ms at TDF 1); \
            estimator 12-13%, drain 12-15 ms and recovery 40 ms passed; docs/l4lb.md"]
fn lb_inflation_l4_inband() {
    const T: &str = "lb_inflation_l4_inband";
    require!(T, need_root(), need_tool("memcached"));
    l4_experiment("inband", |f| {
        let mut failed = estimator_checks(f);
        // The expectations, as written: the slow server's share below 10 % within
        // 50 ms, p95 back within 10 % within 100 ms.
        if !f.drained_after_ms.is_some_and(|t| t <= 50.0) {
            failed.push(format!("drained after {:?} ms", f.drained_after_ms));
        }
        if !f.recovered_after_ms.is_some_and(|t| t <= 100.0) || f.p95_post_ms > 1.1 * f.p95_pre_ms {
            failed.push(format!(
                "p95 {:.3} -> {:.3} ms, recovered after {:?} ms",
                f.p95_pre_ms, f.p95_post_ms, f.recovered_after_ms
            ));
        }
        failed
    });
}

/// A backend that dies mid-run: `kill: mc1` at 2 s (its network namespace stays, so its
/// kernel resets SYNs to the VIP). The balancer sees only client packets: an opening SYN
/// followed by nothing more on its tuple for `handshake_timeout` (300 ms here) is a failed
/// handshake, two in a row mark the backend down and Maglev moves its slots. New
/// connections then stop going to mc1, so the client's errors stop.
#[test]
fn lb_l4_backend_that_dies() {
    const T: &str = "lb_l4_backend_that_dies";
    require!(T, need_root(), need_tool("memcached"));
    let r = run_l4(
        "maglev",
        "1",
        &[
            ("{at: 2s, inflate: mc1, delay: 1ms}", "{at: 2s, kill: mc1}"),
            ("    policy: maglev\n", "    policy: maglev\n    handshake_timeout: 300ms\n"),
        ],
    );
    let kill = r.fault_s;
    let down = mc1_down(&r).expect("mc1 was marked down");
    let epoch = json(&r.out.join("run.json"))["epoch"]["virt_ns"].as_i64().expect("epoch");
    let (h, rows) = csv_table(&r.out.join("nodes/client/requests.csv"));
    let col = |name: &str| *h.get(name).unwrap_or_else(|| panic!("requests.csv has no {name}"));
    let (complete, error) = (col("complete_ns"), col("error"));
    let at = |c: &Vec<String>| (c[complete].parse::<i64>().unwrap_or(0) - epoch) as f64 / 1e9;
    let errors: Vec<f64> = rows.iter().filter(|c| !c[error].is_empty()).map(at).collect();
    let ok_after = rows.iter().filter(|c| c[error].is_empty() && at(c) > down + 0.1).count();
    let late_errors = errors.iter().filter(|&&t| t > down + 0.1).count();
    println!(
        "backend dies: killed at {kill:.3} s, marked down at {down:.3} s (virtual); {} errors, {late_errors} later than 100 ms after; {ok_after} requests completed after; loadavg {}",
        errors.len(),
        loadavg()
    );
    // Learned from client packets within the handshake timeout plus a reconnect or two.
    assert!(down > kill && down < kill + 0.3 + 0.5, "down at {down}, killed at {kill}");
    assert!(!errors.is_empty(), "the kill was seen by the client");
    assert_eq!(late_errors, 0, "new connections still went to mc1 after it was marked down");
    assert!(ok_after > 1000, "the client went on through mc0: {ok_after}");
}

/// When mc1 was first marked down (virtual s).
fn mc1_down(r: &L4Run) -> Option<f64> {
    csv_rows(&r.out.join("balancers/l4/shares.csv"))
        .into_iter()
        .find(|c| c[1] == "mc1" && c[3] == "down")
        .map(|c| c[0].parse::<f64>().expect("t") / 1e3)
}
