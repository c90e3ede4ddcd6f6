//! Tests of the whole report on synthetic results directories.

use super::fixture::{self, Fixture};
use super::*;

fn ms(v: u64) -> u64 {
    v * 1_000_000
}

#[test]
fn summary_figures_match_what_ran() {
    let dir = tempfile::tempdir().unwrap();
    // 1000 requests, latencies 1..=1000 ms, one every 10 ms: a 10 s load window.
    let lat: Vec<u64> = (1..=1000).map(ms).collect();
    fixture::write(dir.path(), &Fixture { latencies_ns: &lat, ..Fixture::default() });
    let s = write(dir.path()).unwrap();
    assert_eq!(s.schema, 1);
    assert_eq!(s.run.name, "fixture");
    assert_eq!(s.fidelity.verdict, "ok");
    assert_eq!((s.requests.total, s.requests.completed, s.requests.errors), (1000, 1000, 0));
    let l = s.latency_ms.as_ref().unwrap();
    assert!((l.p50 - 500.0).abs() <= 0.5, "{l:?}");
    assert!((l.p90 - 900.0).abs() <= 1.0, "{l:?}");
    assert!((l.p99 - 990.0).abs() <= 1.0, "{l:?}");
    assert!((l.p999 - 999.0).abs() <= 1.0, "{l:?}");
    assert!((l.mean - 500.5).abs() <= 0.5, "{l:?}");
    assert!((l.min - 1.0).abs() < 0.01 && (l.max - 1000.0).abs() <= 1.0, "{l:?}");
    // Window: first scheduled at 1.0 s, last completion at 1 + 9.99 + 1.0 s.
    assert!((s.throughput_rps - 1000.0 / 10.99).abs() < 0.01, "{}", s.throughput_rps);
    assert_eq!(s.throughput_series.first().map(|p| p.0), Some(1.0));
    assert_eq!(s.throughput_series.iter().map(|p| p.1).sum::<u64>(), 1000);
    let tiers = s.tiers_ms.as_ref().unwrap();
    assert!((tiers["fs"].p50 - 250.0).abs() <= 0.5, "{tiers:?}");
    assert_eq!(s.faults.len(), 1);
    assert_eq!(s.faults[0].undone_at_s, Some(6.0));
    assert!((s.nodes["a"].cpu_perceived_mean - 0.5).abs() < 1e-9);
    assert!((s.nodes["a"].cpu_perceived_max - 0.55).abs() < 1e-9);
    assert_eq!(s.nodes["b"].memory_max_bytes, 10 * 1_048_576);
    assert!((s.links["l0/forward"].utilization_max - 0.275).abs() < 1e-9);
    assert_eq!(s.links["l0/reverse"].bytes, 10_000);
    // What was written is what was returned.
    let text = std::fs::read_to_string(dir.path().join("summary.json")).unwrap();
    let back: Summary = serde_json::from_str(&text).unwrap();
    assert_eq!((back.requests, back.faults, back.nodes.len()), (s.requests.clone(), s.faults.clone(), 2));
    assert!((back.latency_ms.unwrap().mean - l.mean).abs() < 1e-9);
}

#[test]
fn html_is_self_contained_and_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let lat: Vec<u64> = (1..=200).map(ms).collect();
    fixture::write(
        dir.path(),
        &Fixture {
            latencies_ns: &lat,
            loadgen: "lg&<1>",
            fault_name: "<script>alert(1)</script>",
            ..Fixture::default()
        },
    );
    write(dir.path()).unwrap();
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.matches("<svg").count() >= 6, "latency CDF, percentiles, throughput, tiers, cpu, memory, links");
    for attr in ["src=", "href=", "@import", "url("] {
        for (i, _) in html.match_indices(attr) {
            let rest = &html[i..(i + 40).min(html.len())];
            assert!(!rest.contains("http://") && !rest.contains("https://"), "external reference: {rest}");
        }
    }
    assert!(!html.contains("<script"), "no scripts, and the fault name is escaped");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("lg&amp;&lt;1&gt;"));
    assert!(html.contains("Fidelity") && html.contains("badge ok"));
}

#[test]
fn a_run_without_workload_outputs_still_reports() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("run.json"), r#"{"schema":1,"name":"bare","tdf":2,"success":false}"#).unwrap();
    let s = write(dir.path()).unwrap();
    assert!(s.latency_ms.is_none() && s.tiers_ms.is_none() && s.throughput_series.is_empty());
    assert_eq!(s.requests.total, 0);
    assert_eq!(s.fidelity.verdict, "unknown");
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(html.contains("no load generator output"));
    assert!(html.contains("badge unknown"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json")).unwrap()).unwrap();
    assert!(json["latency_ms"].is_null());
    assert!(json["run"].get("host_cache_decay").is_none() && !html.contains("Host cache decay"));
}

#[test]
fn the_host_s_cache_decay_is_reported_and_explained_when_large() {
    for (ratio, warning) in [(2.6, Some("caches decay in real time: the same work costs 2.60x the CPU")), (1.1, None)] {
        let dir = tempfile::tempdir().unwrap();
        let w = warning.map_or("null".to_owned(), |w| format!("{w:?}"));
        let run = format!(
            r#"{{"schema":1,"name":"bare","tdf":10,"success":true,"host":{{"cache_decay":{{"ratio":{ratio},"warning":{w}}}}}}}"#
        );
        std::fs::write(dir.path().join("run.json"), run).unwrap();
        let s = write(dir.path()).unwrap();
        assert_eq!(s.run.host_cache_decay, Some(ratio));
        let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
        assert!(html.contains(&format!("costs {ratio:.2}x the CPU")), "{ratio}");
        assert_eq!(html.contains("caches decay in real time"), warning.is_some(), "{ratio}");
    }
}

#[test]
fn errors_count_in_the_error_rate() {
    let dir = tempfile::tempdir().unwrap();
    fixture::write(dir.path(), &Fixture { latencies_ns: &[ms(5); 4], ..Fixture::default() });
    let path = dir.path().join("nodes/client/requests.csv");
    let mut text = std::fs::read_to_string(&path).unwrap();
    let s0 = fixture::EPOCH + 2_000_000_000;
    text.push_str(&format!("9,{s0},{s0},{},,,0,0,timeout,get,srv,\n", s0 + 1_000_000_000));
    std::fs::write(&path, text).unwrap();
    let s = summarize(dir.path()).unwrap();
    assert_eq!((s.requests.total, s.requests.errors), (5, 1));
    assert!((s.requests.error_rate - 0.2).abs() < 1e-12);
    assert!((s.latency_ms.unwrap().max - 5.0).abs() < 0.01, "the timeout is not a latency");
}

#[test]
fn a_far_timestamp_lists_the_seconds_seen_instead_of_filling_the_gap() {
    // Found by the fuzzer: two requests 10^7 s apart made the series allocate 40 GB.
    let dir = tempfile::tempdir().unwrap();
    let lat = [ms(1), ms(1)];
    fixture::write(
        dir.path(),
        &Fixture { latencies_ns: &lat, interval_ns: 10_000_000 * 1_000_000_000, ..Fixture::default() },
    );
    let s = write(dir.path()).unwrap();
    assert_eq!(s.throughput_series.iter().map(|p| p.0).collect::<Vec<_>>(), vec![1.0, 10_000_001.0]);
}

#[test]
fn replication_records_make_a_section_of_both_files() {
    let dir = tempfile::tempdir().unwrap();
    fixture::write(dir.path(), &Fixture::default());
    let node = dir.path().join("nodes/replicator");
    std::fs::create_dir_all(&node).unwrap();
    let mut lines = String::new();
    for i in 1..=20 {
        lines.push_str(&format!(
            "{{\"record\":\"replicated\",\"key\":\"k{i}\",\"seq\":{i},\"bytes\":100,\"delay_s\":{}}}\n",
            f64::from(i) / 10.0
        ));
    }
    lines.push_str("{\"record\":\"violation\",\"key\":\"<k>\",\"seq\":1,\"at_ms\":1,\"cause\":\"plan\",\"reason\":\"needs 9 s & more\"}\n");
    std::fs::write(node.join("replication.jsonl"), lines).unwrap();
    let s = write(dir.path()).unwrap();
    let r = s.replication.as_ref().unwrap();
    assert_eq!((r.all.objects_replicated, r.slo_violations), (20, 1));
    assert_eq!(r.all.delay_s.as_ref().unwrap().p50, 1.0);
    let back: Summary =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(back.replication, s.replication);
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(html.contains("<h2>Replication</h2>") && html.contains("Replication delay CDF"));
    assert!(html.contains("needs 9 s &amp; more") && html.contains("&lt;k&gt;"), "escaped");
    // A run without a replicator has no section (and no key in summary.json).
    let plain = tempfile::tempdir().unwrap();
    fixture::write(plain.path(), &Fixture::default());
    assert!(write(plain.path()).unwrap().replication.is_none());
    assert!(!std::fs::read_to_string(plain.path().join("summary.json")).unwrap().contains("replication"));
}

#[test]
fn the_three_replicators_have_their_rows_in_both_files() {
    // Lines as diorama-replica writes them: λReplica's copy (its platform bills it), the
    // provider baseline's copy with its fee, the VM baseline's copy with its requests and
    // egress and its pool's VM time.
    let dir = tempfile::tempdir().unwrap();
    fixture::write(dir.path(), &Fixture::default());
    let copy = |system: &str, key: &str, cost: &str| {
        format!("{{\"record\":\"replicated\",\"system\":\"{system}\",\"key\":\"{key}\",\"seq\":1,\"bytes\":1000,\"deleted\":false,\"written_ms\":1,\"done_ms\":1001,\"delay_s\":1.0,\"writes\":[{{\"seq\":1,\"delay_s\":1.0}}],\"slo_s\":2.0,\"region\":\"region-a\",\"instances\":1,\"predicted_s\":null,\"via\":\"bytes\",\"wan_bytes\":1000,\"cost_usd\":{cost},\"coalesced\":0}}\n")
    };
    for (node, system, cost) in
        [("replicator", "lambda", "null"), ("provider", "provider", "0.25"), ("vm", "vm", "0.125")]
    {
        let node = dir.path().join("nodes").join(node);
        std::fs::create_dir_all(&node).unwrap();
        std::fs::write(node.join("replication.jsonl"), copy(system, "a", cost) + &copy(system, "b", cost)).unwrap();
    }
    let vms = dir.path().join("nodes/vms");
    std::fs::create_dir_all(&vms).unwrap();
    std::fs::write(
        vms.join("replication.jsonl"),
        "{\"record\":\"cost\",\"system\":\"vm\",\"what\":\"vm-0 ran 2.000 s\",\"usd\":0.5,\"at_ms\":5}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("nodes/replicator/invocations.jsonl"),
        "{\"ok\":true,\"gb_seconds\":1,\"requests\":2,\"egress_bytes\":1000,\"cost\":0.0625,\"system\":\"lambda\",\"size\":1000}\n",
    )
    .unwrap();
    let s = write(dir.path()).unwrap();
    let r = s.replication.as_ref().unwrap();
    assert_eq!(r.by_system.keys().collect::<Vec<_>>(), ["lambda", "provider", "vm"]);
    let total = |system: &str| r.by_system[system].cost.total_usd;
    assert_eq!((total("lambda"), total("provider"), total("vm")), (0.0625, 0.5, 0.75));
    assert_eq!((r.by_system["vm"].cost.fees_usd, r.by_system["vm"].cost.machines_usd), (0.25, 0.5));
    assert!(r.by_system.values().all(|f| f.objects_replicated == 2 && f.delay_s.is_some()));
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    for system in ["lambda", "provider", "vm"] {
        assert!(html.contains(&format!("<tr><th class=\"l\">{system}</th>")), "{system}'s cost row");
        assert!(html.contains(&format!("{system}: replication delay")), "{system}'s CDF");
    }
}

#[test]
fn probe_results_make_rtt_tables_in_both_files() {
    let dir = tempfile::tempdir().unwrap();
    fixture::write(dir.path(), &Fixture::default());
    let server = dir.path().join("nodes/server");
    std::fs::create_dir_all(&server).unwrap();
    let tasks = serde_json::json!([{"id": 1, "type": "RECURRING", "state": "RUNNING", "measurement": {"kind": "ping"},
        "locations": ["eu", "<us>"], "skipped_firings": 0,
        "tally": {"eu": {"next_seq": 3}, "<us>": {"next_seq": 3}}}]);
    let results = vec![
        fixture::ping(1, "eu", 1, "ep-eu", &[0.4, 0.4, 0.5]),
        fixture::ping(1, "eu", 2, "ep-us", &[60.4, 60.5, 60.6]),
        fixture::ping(1, "<us>", 1, "ep-eu", &[60.5, 60.5, 60.7]),
        fixture::lease_failure(1, "<us>", 2),
    ];
    std::fs::write(server.join("probe-results.json"), fixture::export(tasks, results)).unwrap();
    let s = write(dir.path()).unwrap();
    let p = &s.probes.as_ref().unwrap().servers["server"];
    assert_eq!(p.rtt.len(), 3);
    assert_eq!((p.runs.issued, p.runs.missed), (4, 1));
    let back: Summary =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(back.probes, s.probes);
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(html.contains("<h2>Probes: server server</h2>"));
    assert!(html.contains("Median RTT (ms), ping"));
    // The matrix: eu reached both endpoints, <us> only ep-eu (escaped, and a dash for ep-us).
    assert!(html.contains("<td class=\"l\">eu</td><td>0.400</td><td>60.500</td>"), "the eu row");
    assert!(html.contains("<td class=\"l\">&lt;us&gt;</td><td>60.500</td><td>–</td>"), "the <us> row");
    assert!(!html.contains("<us>"));
    // A run without probes has no section, and no key in summary.json.
    let plain = tempfile::tempdir().unwrap();
    fixture::write(plain.path(), &Fixture::default());
    assert!(write(plain.path()).unwrap().probes.is_none());
    assert!(!std::fs::read_to_string(plain.path().join("summary.json")).unwrap().contains("probes"));
}
