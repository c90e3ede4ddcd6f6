//! The run report and the comparison on real runs (root): a client running the load
//! generator against `python3 -m http.server` over one emulated link, at TDF 2. Checks that
//! summary.json and report.html agree with what the load generator itself recorded, that
//! `diorama report` regenerates them, and that `diorama compare` passes a run against
//! itself and fails (exit 6) against a run over a slower link.

use std::path::{Path, PathBuf};

use diorama_tests::{artifact, diorama, leftovers, need_root, need_tool, require, topology};
use serde_json::Value;

const RATE: f64 = 40.0;

fn yaml(delay_ms: u32) -> String {
    format!(
        r#"
name: report-e2e
defaults: {{cpus: 0.4, memory: 128MiB}}
nodes:
  - name: server
    run: {{command: ["python3", "-m", "http.server", "8000"]}}
    ready: {{tcp: 8000}}
  - name: client
    main: true
    depends_on: [server]
    run: {{workload: loadgen, args: {{target: "http://server:8000/", rate: {RATE}, duration: 4s}}}}
links:
  - {{between: [client, server], rate: 100Mbit, delay: {delay_ms}ms}}
"#
    )
}

fn run(dir: &Path, name: &str, delay_ms: u32) -> PathBuf {
    let topo = topology(dir, name, &yaml(delay_ms));
    let out = dir.join(name);
    let (topo, out_arg) = (topo.display().to_string(), out.display().to_string());
    let r = diorama(&["run", &topo, "--tdf", "2", "--out", &out_arg]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stderr.contains("report: "), "the run reports: {}", r.stderr);
    // Only this test's run: on a shared machine other runs may be under way.
    let mine: Vec<String> = leftovers().into_iter().filter(|l| l.contains("report-e2e")).collect();
    assert!(mine.is_empty(), "{mine:?}");
    out
}

fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn f(v: &Value, pointer: &str) -> f64 {
    v.pointer(pointer).and_then(Value::as_f64).unwrap_or_else(|| panic!("{pointer} in {v}"))
}

fn assert_self_contained(html: &str) {
    assert!(html.contains("<svg"), "inline SVG plots");
    for attr in ["src=", "href=", "url("] {
        for (i, _) in html.match_indices(attr) {
            let rest = &html[i..(i + 40).min(html.len())];
            assert!(!rest.contains("http:") && !rest.contains("https:"), "external reference: {rest}");
        }
    }
    assert!(!html.contains("<script"), "no scripts");
}

#[test]
fn report_and_compare_real_runs() {
    require!("report_and_compare_real_runs", need_root(), need_tool("python3"));
    artifact("diorama-loadgen");
    let tmp = tempfile::tempdir().unwrap();
    let a = run(tmp.path(), "fast", 5);

    // summary.json agrees with the load generator's own files.
    let s = json(&a.join("summary.json"));
    let own = json(&a.join("nodes/client/summary.json"));
    let rows = std::fs::read_to_string(a.join("nodes/client/requests.csv")).unwrap().lines().count() as f64 - 1.0;
    println!(
        "report: {rows} requests, {:.1} req/s, p50 {:.3} ms, p99 {:.3} ms virtual; the load generator's median {:.3} ms",
        f(&s, "/throughput_rps"),
        f(&s, "/latency_ms/p50"),
        f(&s, "/latency_ms/p99"),
        f(&own, "/latency_us/median") / 1e3
    );
    assert_eq!(s["schema"], 1);
    assert_eq!(s["run"]["name"], "report-e2e");
    assert_eq!(f(&s, "/run/tdf"), 2.0);
    assert_eq!(s["run"]["success"], true);
    assert!(s["fidelity"]["verdict"].is_string());
    assert_eq!(f(&s, "/requests/total"), rows);
    assert_eq!(f(&s, "/requests/total"), f(&own, "/requests"));
    assert_eq!(f(&s, "/requests/errors"), f(&own, "/errors"));
    assert!(rows >= RATE * 4.0 * 0.9, "{rows} requests at {RATE}/s for 4 s");
    assert!((f(&s, "/throughput_rps") - RATE).abs() <= RATE * 0.1, "{s}");
    let p50 = f(&s, "/latency_ms/p50");
    // A new connection per request over a 5 ms link: at least two 10 ms round trips.
    assert!((20.0..200.0).contains(&p50), "p50 {p50} ms");
    let median = f(&own, "/latency_us/median") / 1e3;
    assert!((p50 - median).abs() <= median * 0.02 + 0.1, "p50 {p50} ms vs the load generator's {median} ms");
    let series_completed: f64 = s["throughput_series"].as_array().unwrap().iter().map(|p| p[1].as_f64().unwrap()).sum();
    assert_eq!(series_completed, f(&s, "/requests/completed"));
    assert!(s["nodes"]["client"].is_object() && s["nodes"]["server"].is_object(), "{}", s["nodes"]);
    assert!(f(&s, "/nodes/server/cpu_perceived_max") > 0.0);
    assert!(f(&s, "/links/client--server~1forward/bytes") > 0.0, "{}", s["links"]);
    let html = std::fs::read_to_string(a.join("report.html")).unwrap();
    assert_self_contained(&html);
    assert!(html.matches("<svg").count() >= 5, "latency CDF, percentiles, throughput, CPU, memory, links");

    // `diorama report` writes the same figures again.
    std::fs::remove_file(a.join("summary.json")).unwrap();
    std::fs::remove_file(a.join("report.html")).unwrap();
    let r = diorama(&["report", a.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(json(&a.join("summary.json"))["requests"], s["requests"]);
    assert!(a.join("report.html").is_file());

    // A run against itself passes.
    let r = diorama(&["compare", a.to_str().unwrap(), a.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let c = json(&a.join("compare.json"));
    assert_eq!(c["pass"], true);
    assert_eq!(c["checks"].as_array().unwrap().iter().find(|k| k["name"] == "ks").unwrap()["value"], 0.0);

    // A run over a link four times slower fails, naming each value beside its threshold.
    let b = run(tmp.path(), "slow", 20);
    let out = tmp.path().join("cmp");
    let r = diorama(&["compare", a.to_str().unwrap(), b.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    println!("{}", r.stdout);
    assert_eq!(r.code, Some(6), "{r:?}");
    assert!(r.stdout.contains("FAIL: latency distribution: tolerant KS distance"), "{}", r.stdout);
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("FAIL: p50 latency: relative error") && l.contains("exceeds threshold 0.0500 (A ")),
        "{}",
        r.stdout
    );
    let c = json(&out.join("compare.json"));
    assert_eq!(c["pass"], false);
    let ks = c["checks"].as_array().unwrap().iter().find(|k| k["name"] == "ks").unwrap()["value"].as_f64().unwrap();
    assert!(ks > 0.9, "10 ms against 40 ms round trips: KS {ks}");
    assert_self_contained(&std::fs::read_to_string(out.join("compare.html")).unwrap());

    // Thresholds that allow it pass; a bad thresholds file names its line and field.
    let loose = tmp.path().join("loose.yaml");
    std::fs::write(
        &loose,
        "distance: 1\nks: 1\np50: 10\np90: 10\np99: 10\nmean: 10\nthroughput: 1\ncpu: 100\nlink_util: 100\n",
    )
    .unwrap();
    let r = diorama(&[
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--thresholds",
        loose.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(0), "{r:?}");
    std::fs::write(&loose, "ks: 0.2\np99: lots\n").unwrap();
    let r = diorama(&["compare", a.to_str().unwrap(), b.to_str().unwrap(), "--thresholds", loose.to_str().unwrap()]);
    assert_eq!(r.code, Some(3), "{r:?}");
    assert!(r.stderr.contains("loose.yaml:2:") && r.stderr.contains("p99"), "{}", r.stderr);

    // Runs of another topology are refused.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let mut run_json = json(&b.join("run.json"));
    run_json["name"] = "something-else".into();
    std::fs::write(other.join("run.json"), run_json.to_string()).unwrap();
    let r = diorama(&["compare", a.to_str().unwrap(), other.to_str().unwrap()]);
    assert_eq!(r.code, Some(3), "{r:?}");
    assert!(r.stderr.contains("different topologies") && r.stderr.contains("something-else"), "{}", r.stderr);
}
