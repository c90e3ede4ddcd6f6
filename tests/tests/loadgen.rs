//! The load generator under `diorama run` (root): a controller and three workers, each a
//! node, drive a `diorama-loadgen serve` node over the emulated network, at TDF 1 and TDF 4.
//! Checks the gathered results (every request completed, each worker sent its share,
//! latencies sane), the dispatch-delay figures of summary.json, the calibration, and that the
//! virtual rate is achieved at both TDFs. Figures are virtual (the nodes' dilated clocks).

use std::path::Path;

use diorama_tests::{artifact, diorama, leftovers, need_root, require, topology};

const RATE: f64 = 150.0;
const SECONDS: f64 = 3.0;

fn yaml(loadgen: &str) -> String {
    format!(
        r#"
name: lgdist
duration: 120s
defaults: {{cpus: 0.3, memory: 128MiB}}
switches: [sw]
nodes:
  - name: server
    cpus: 0.5
    run: {{command: ["{loadgen}", "serve", "--port", "8080"]}}
    ready: {{tcp: 8080}}
    link: {{to: sw, rate: 1Gbit, delay: 1ms}}
  - name: w[0..3]
    run: {{workload: loadgen, args: {{role: worker, listen: "0.0.0.0:7070"}}}}
    ready: {{tcp: 7070}}
    link: {{to: sw, rate: 1Gbit, delay: 1ms}}
  - name: ctl
    main: true
    depends_on: [server, w]
    run:
      workload: loadgen
      args: {{role: controller, workers: "w0:7070,w1:7070,w2:7070", target: "http://server:8080/", rate: {RATE}, duration: {SECONDS}s, pattern: uniform, calibrate: 5}}
    link: {{to: sw, rate: 1Gbit, delay: 1ms}}
"#
    )
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn f(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn check_run(out: &Path, tdf: f64) {
    let ctl = out.join("nodes/ctl");
    let s = json(&ctl.join("summary.json"));
    let expected = (RATE * SECONDS).round() as u64;
    assert_eq!(s["schema"], 1);
    assert_eq!(s["requests"].as_u64(), Some(expected), "TDF {tdf}: {s}");
    assert_eq!(s["completed"].as_u64(), Some(expected), "TDF {tdf}: every request completed: {s}");
    assert_eq!(s["errors"].as_u64(), Some(0));

    // Every request of every worker was gathered: each sent its third, all answered 200.
    let csv = std::fs::read_to_string(ctl.join("requests.csv")).expect("the controller wrote requests.csv");
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("id,scheduled_ns,dispatch_ns,complete_ns,latency_ns,uncorrected_ns,status,bytes,error,class,node,timing,local_port")
    );
    let mut per_node = std::collections::BTreeMap::<String, u64>::new();
    for l in lines {
        let c: Vec<&str> = l.split(',').collect();
        assert_eq!(c[6], "200", "{l}");
        *per_node.entry(c[10].to_owned()).or_default() += 1;
    }
    assert_eq!(
        per_node,
        [("w0".to_owned(), expected / 3), ("w1".to_owned(), expected / 3), ("w2".to_owned(), expected / 3)].into()
    );
    for w in ["w0", "w1", "w2"] {
        let own = json(&out.join(format!("nodes/{w}/summary.json")));
        assert_eq!(own["requests"].as_u64(), Some(expected / 3), "{w} keeps its own results");
    }
    for hdr in ["latency.hdr", "latency_uncorrected.hdr", "throughput.csv"] {
        assert!(ctl.join(hdr).exists(), "{hdr}");
    }

    // Latency: one round trip over 2 × 2 ms of links (4 ms) plus service, virtual.
    let lat = &s["latency_us"];
    let unc = &s["uncorrected_us"];
    let dd = &s["dispatch_delay_us"];
    for k in ["min", "q1", "median", "q3", "max", "mean", "sd", "cv_pct", "p90", "p99", "p999"] {
        for fig in [lat, unc, dd] {
            assert!(fig[k].is_number(), "{k} in {fig}");
        }
    }
    let median_ms = f(&lat["median"]) / 1e3;
    assert!((3.5..50.0).contains(&median_ms), "TDF {tdf}: median latency {median_ms} ms virtual");
    assert!(f(&unc["median"]) <= f(&lat["median"]) + 1.0);

    // The virtual rate is achieved: dispatches span the schedule at the target rate.
    let achieved = f(&s["dispatch_rps"]);
    let err = (achieved - RATE).abs() / RATE;

    // Calibration measured each worker's one-way arrival latency (2 links of 1 ms).
    let cal = json(&ctl.join("calibration.json"));
    for w in ["w0", "w1", "w2"] {
        let ms = f(&cal["workers"][w]["time_adjustment_ms"]);
        assert_eq!(cal["workers"][w]["method"], "one_way");
        assert!((1.5..10.0).contains(&ms), "TDF {tdf}: {w} offset {ms} ms");
    }
    println!(
        "loadgen: TDF {tdf}: {} requests, rate {achieved:.3}/s virtual (target {RATE}, error {:.3}%), latency median {median_ms:.3} ms, \
         dispatch delay median {:.1} µs mean {:.1} µs p99 {:.1} µs, behind {}, offsets w0 {:.3} ms",
        s["requests"],
        err * 100.0,
        f(&dd["median"]),
        f(&dd["mean"]),
        f(&dd["p99"]),
        s["behind"],
        f(&cal["workers"]["w0"]["time_adjustment_ms"]),
    );
    assert!(err < 0.01, "TDF {tdf}: achieved {achieved}/s virtual, target {RATE}");
    // Sane dispatch: far below the 6.7 ms interval even on a busy host.
    assert!(f(&dd["median"]) < 2000.0, "TDF {tdf}: dispatch delay {dd}");
}

#[test]
fn distributed_load_at_tdf_1_and_4() {
    require!("distributed_load_at_tdf_1_and_4", need_root());
    let tmp = tempfile::tempdir().unwrap();
    let loadgen = artifact("diorama-loadgen");
    let topo = topology(tmp.path(), "lgdist", &yaml(&loadgen.display().to_string()));
    for tdf in [1.0, 4.0] {
        let out = tmp.path().join(format!("lgdist-tdf{tdf}"));
        let r = diorama(&["run", topo.to_str().unwrap(), "--tdf", &tdf.to_string(), "--out", out.to_str().unwrap()]);
        assert_eq!(r.code, Some(0), "TDF {tdf}: {r:?}");
        check_run(&out, tdf);
        // Other runs may share this machine: only this run's leftovers count.
        let mine: Vec<String> = leftovers().into_iter().filter(|l| l.contains("lgdist")).collect();
        assert!(mine.is_empty(), "{mine:?}");
    }
}

/// An open-loop node without a duration: the run's end (SIGTERM) makes it flush every file
/// and exit 0, and a `loadgen.ctl` written during the run (contract 4) changes its rate.
#[test]
fn rate_change_and_sigterm_under_diorama_run() {
    require!("rate_change_and_sigterm_under_diorama_run", need_root());
    let tmp = tempfile::tempdir().unwrap();
    let loadgen = artifact("diorama-loadgen");
    let yaml = format!(
        r#"
name: lgctl
duration: 5s
defaults: {{cpus: 0.4, memory: 128MiB}}
switches: [sw]
nodes:
  - name: server
    run: {{command: ["{}", "serve", "--port", "8080"]}}
    ready: {{tcp: 8080}}
    link: {{to: sw, delay: 1ms}}
  - name: client
    depends_on: [server]
    run: {{workload: loadgen, args: {{target: "http://server:8080/", rate: 100, start_delay: 100ms}}}}
    link: {{to: sw, delay: 1ms}}
"#,
        loadgen.display()
    );
    let topo = topology(tmp.path(), "lgctl", &yaml);
    let out = tmp.path().join("lgctl-out");
    let node_dir = out.join("nodes/client");
    let writer = {
        let node_dir = node_dir.clone();
        std::thread::spawn(move || {
            // Once the client runs, wait a little and raise its rate (atomic replace).
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while !node_dir.join("stderr").exists() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            std::thread::sleep(std::time::Duration::from_millis(1500));
            std::fs::write(node_dir.join("loadgen.ctl.tmp"), r#"{"rate": 300.0}"#).unwrap();
            std::fs::rename(node_dir.join("loadgen.ctl.tmp"), node_dir.join("loadgen.ctl")).unwrap();
        })
    };
    let r = diorama(&["run", topo.to_str().unwrap(), "--tdf", "1", "--out", out.to_str().unwrap()]);
    writer.join().unwrap();
    assert_eq!(r.code, Some(0), "{r:?}");
    let s = json(&node_dir.join("summary.json"));
    assert_eq!(s["rate_changes"], 1, "{s}");
    let requests = s["requests"].as_u64().unwrap();
    let completed = s["completed"].as_u64().unwrap();
    // Every request but those cut off by the stop completed; none vanished.
    assert!(completed + 5 >= requests && completed > 300, "{s}");
    let tp = std::fs::read_to_string(node_dir.join("throughput.csv")).unwrap();
    let started: Vec<u64> = tp.lines().skip(1).map(|l| l.split(',').nth(1).unwrap().parse().unwrap()).collect();
    println!("loadgen: rate change 100 -> 300/s under diorama run: started per second {started:?}, {requests} requests, {completed} completed");
    assert!(started.first().is_some_and(|&n| (90..=110).contains(&n)), "{started:?}");
    assert!(started.iter().any(|&n| (285..=315).contains(&n)), "{started:?}");
    let mine: Vec<String> = leftovers().into_iter().filter(|l| l.contains("lgctl")).collect();
    assert!(mine.is_empty(), "{mine:?}");
}
