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
fn run_topology(name: &str, yaml: &str, tdf: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory");
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
#[ignore = "flaky (2026-12-02): failed 1 of 3 runs on main at TDF 10 on a quiet host; the peak-EWMA run's pre-fault \
            balancer-measured mc1 p50 was 2.08 ms (1.2-1.3 ms in the other runs), so the fault's +0.5 ms was not seen; \
            GET p95 is ~75 ms virtual against p50 ~2.7 ms, unexplained (docs/l4lb.md); run with --ignored"]
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
// Maglev and in-band, at TDF 1 and TDF 10. Shortened so that each test stays within about
// a minute of wall time: 3 s of load from 0.5 s, the inflation at 2 s (virtual).

/// One L4 run's results directory (kept in `_dir`).
struct L4Run {
    _dir: tempfile::TempDir,
    out: std::path::PathBuf,
    tdf: f64,
    fault_s: f64,
}

fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().skip(1).map(|l| l.split(',').map(str::to_owned).collect()).collect()
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
    let (dir, out) = run_topology("lb-inflation-l4.yaml", &yaml, tdf);
    let events = std::fs::read_to_string(out.join("events.jsonl")).expect("read events.jsonl");
    let fault_s = events
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["kind"] == "fault")
        .and_then(|e| e["t_virtual_s"].as_f64())
        .expect("the fault fired");
    L4Run { _dir: dir, out, tdf: tdf.parse().expect("a TDF"), fault_s }
}

/// (virtual s of completion since the epoch, latency ms, GET?) of every completed request.
fn l4_requests(r: &L4Run) -> Vec<(f64, f64, bool)> {
    let epoch = json(&r.out.join("run.json"))["epoch"]["virt_ns"].as_i64().expect("epoch");
    csv_rows(&r.out.join("nodes/client/requests.csv"))
        .into_iter()
        .filter(|c| c[8].is_empty())
        .map(|c| {
            let done = (c[3].parse::<i64>().expect("complete_ns") - epoch) as f64 / 1e9;
            (done, c[4].parse::<f64>().expect("latency_ns") / 1e6, c[9] == "get")
        })
        .collect()
}

/// GET latency quantile `q` (ms) over requests completing in `[from, to)` virtual s.
fn get_quantile(reqs: &[(f64, f64, bool)], from: f64, to: f64, q: f64) -> (f64, usize) {
    let mut v: Vec<f64> = reqs.iter().filter(|r| r.2 && (from..to).contains(&r.0)).map(|r| r.1).collect();
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

/// Median over epochs before the fault (from 0.5 s into the load) of |estimate − client
/// mean| / client mean, where the estimate is the mean of the backends' EWMA estimates
/// (equal servers before the fault) and the client mean is over the requests completing
/// in the epoch. The EWMA tracks a mean, so it is compared with the client's mean.
fn l4_estimator_error(r: &L4Run, reqs: &[(f64, f64, bool)]) -> (f64, usize) {
    let mut by_epoch: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for c in csv_rows(&r.out.join("balancers/l4/estimates.csv")) {
        if let Ok(ms) = c[2].parse::<f64>() {
            by_epoch.entry(c[0].clone()).or_default().push(ms);
        }
    }
    let load_start = reqs.iter().map(|r| r.0).fold(f64::INFINITY, f64::min);
    let mut errors = Vec::new();
    for (t, est) in &by_epoch {
        let end: f64 = t.parse::<f64>().expect("t") / 1e3;
        if end < load_start + 0.5 || end >= r.fault_s || est.len() < 2 {
            continue;
        }
        let client: Vec<f64> = reqs.iter().filter(|q| q.0 > end - 0.064 && q.0 <= end).map(|q| q.1).collect();
        if client.len() < 10 {
            continue;
        }
        let mean = client.iter().sum::<f64>() / client.len() as f64;
        let e = est.iter().sum::<f64>() / est.len() as f64;
        errors.push((e - mean).abs() / mean);
    }
    let n = errors.len();
    (quantile(&mut errors, 0.5), n)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_owned()
}

/// The figures of an L4 run, printed for docs/l4lb.md (some only printed).
#[derive(Debug)]
#[expect(dead_code, reason = "tdf, p50_post_ms and requests are printed, not checked")]
struct L4Figures {
    tdf: f64,
    p95_pre_ms: f64,
    p95_post_ms: f64,
    p50_pre_ms: f64,
    p50_post_ms: f64,
    /// mc1's first share below 10 % after the fault, virtual ms after it.
    drained_after_ms: Option<f64>,
    /// The first 50 ms window after the fault whose GET p95 is within 10 % of before,
    /// virtual ms after the fault (window start).
    recovered_after_ms: Option<f64>,
    estimator_error: f64,
    estimator_epochs: usize,
    requests: usize,
}

fn l4_figures(r: &L4Run) -> L4Figures {
    let s = json(&r.out.join("nodes/client/summary.json"));
    assert_eq!(s["errors"].as_u64(), Some(0), "{s}");
    let reqs = l4_requests(r);
    let f = r.fault_s;
    let end = reqs.iter().map(|q| q.0).fold(0.0, f64::max);
    let (p95_pre, n_pre) = get_quantile(&reqs, f - 1.0, f, 0.95);
    let (p95_post, n_post) = get_quantile(&reqs, f + 0.2, end, 0.95);
    assert!(n_pre > 200 && n_post > 200, "GETs before {n_pre}, after {n_post}");
    let drained = mc1_shares(r).into_iter().find(|&(t, s)| t >= f && s < 0.1).map(|(t, _)| (t - f) * 1e3);
    let recovered = (0..40).map(|k| f + 0.01 * k as f64).find_map(|from| {
        let (p, n) = get_quantile(&reqs, from, from + 0.05, 0.95);
        (n >= 20 && p <= 1.1 * p95_pre).then_some((from - f) * 1e3)
    });
    let (estimator_error, estimator_epochs) = l4_estimator_error(r, &reqs);
    let fig = L4Figures {
        tdf: r.tdf,
        p95_pre_ms: p95_pre,
        p95_post_ms: p95_post,
        p50_pre_ms: get_quantile(&reqs, f - 1.0, f, 0.5).0,
        p50_post_ms: get_quantile(&reqs, f + 0.2, end, 0.5).0,
        drained_after_ms: drained,
        recovered_after_ms: recovered,
        estimator_error,
        estimator_epochs,
        requests: reqs.len(),
    };
    println!("lb-inflation-l4 {}: {fig:?}; loadavg {}", r.out.display(), loadavg());
    fig
}

/// TDF 10 against TDF 1: the scale model must hold for the balancer too. The figures
/// compared are the pre-fault GET p50 (virtual) and the p95 shift; within 25 % + 0.1 ms
/// (the run-to-run spread seen at one TDF on this host).
fn same_curves(a: &L4Figures, b: &L4Figures, what: &str) {
    let close = |x: f64, y: f64| (x - y).abs() <= 0.25 * x.abs().max(y.abs()) + 0.1;
    assert!(close(a.p50_pre_ms, b.p50_pre_ms), "{what}: p50 before: {a:?} against {b:?}");
    assert!(
        close(a.p95_post_ms - a.p95_pre_ms, b.p95_post_ms - b.p95_pre_ms),
        "{what}: p95 shift: {a:?} against {b:?}"
    );
}

#[test]
#[ignore = "fails (2026-12-02, busy host only): GET p95 of 13-83 ms virtual swamps the 1 ms inflation it looks for; \
            not yet measured on a quiet host (docs/l4lb.md); run with --ignored"]
fn lb_inflation_l4_maglev() {
    const T: &str = "lb_inflation_l4_maglev";
    require!(T, need_root(), need_tool("memcached"));
    let mut figs = Vec::new();
    // TDF 10 first: on a busy host its figures are the meaningful ones.
    for tdf in ["10", "1"] {
        let f = l4_figures(&run_l4("maglev", tdf, &[]));
        // Static Maglev: mc1 keeps half of the slots, so the GET p95 (in mc1's half) rises
        // by the injected 1 ms: within ±0.4 ms (the p95's noise between windows of one run).
        assert!(f.drained_after_ms.is_none(), "static: no slot moves: {f:?}");
        let shift = f.p95_post_ms - f.p95_pre_ms;
        assert!((0.6..=1.4).contains(&shift), "p95 shift {shift:.3} ms: {f:?}");
        assert!(f.estimator_epochs >= 10 && f.estimator_error <= 0.2, "{f:?}");
        figs.push(f);
    }
    same_curves(&figs[0], &figs[1], "maglev");
}

#[test]
#[ignore = "fails (2026-12-02, busy host only): estimator error 66% at TDF 10, drain 53 ms > 50 ms at TDF 1; \
            not yet measured on a quiet host (docs/l4lb.md); run with --ignored"]
fn lb_inflation_l4_inband() {
    const T: &str = "lb_inflation_l4_inband";
    require!(T, need_root(), need_tool("memcached"));
    let mut figs = Vec::new();
    // TDF 10 first: on a busy host its figures are the meaningful ones.
    for tdf in ["10", "1"] {
        let f = l4_figures(&run_l4("inband", tdf, &[]));
        // The expectations, as written: the slow server's share below 10 % within
        // 50 ms, p95 back within 10 % within 100 ms, the estimator within 20 %.
        assert!(f.drained_after_ms.is_some_and(|t| t <= 50.0), "{f:?}");
        assert!(f.recovered_after_ms.is_some_and(|t| t <= 100.0), "{f:?}");
        assert!(f.p95_post_ms <= 1.1 * f.p95_pre_ms, "{f:?}");
        assert!(f.estimator_epochs >= 10 && f.estimator_error <= 0.2, "{f:?}");
        figs.push(f);
    }
    same_curves(&figs[0], &figs[1], "inband");
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
    let rows = csv_rows(&r.out.join("nodes/client/requests.csv"));
    let at = |c: &Vec<String>| (c[3].parse::<i64>().unwrap_or(0) - epoch) as f64 / 1e9;
    let errors: Vec<f64> = rows.iter().filter(|c| !c[8].is_empty()).map(at).collect();
    let ok_after = rows.iter().filter(|c| c[8].is_empty() && at(c) > down + 0.1).count();
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
