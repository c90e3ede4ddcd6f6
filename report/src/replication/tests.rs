use super::*;

fn write(dir: &Path, node: &str, file: &str, text: &str) {
    std::fs::create_dir_all(dir.join(node)).unwrap();
    std::fs::write(dir.join(node).join(file), text).unwrap();
}

const MIB: u64 = 1 << 20;

#[test]
fn no_records_no_section() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "writer", "verdict.json", "{}");
    assert_eq!(read(dir.path()).unwrap(), None);
}

#[test]
fn size_classes_are_the_issues() {
    assert_eq!(size_class(0).0, "1 MiB");
    assert_eq!(size_class(MIB).0, "1 MiB");
    assert_eq!(size_class(MIB + 1).0, "128 MiB");
    assert_eq!(size_class(128 * MIB).0, "128 MiB");
    assert_eq!(size_class(128 * MIB + 1).0, "1 GiB");
    assert_eq!(size_class(1 << 40).0, "1 GiB");
}

#[test]
fn records_of_the_first_replicator_are_summarized() {
    // Records without `system`, `writes` or `slo_s`: one write per copy, its own delay.
    let dir = tempfile::tempdir().unwrap();
    let mut lines = String::new();
    for i in 1..=100 {
        lines.push_str(&format!(
            "{{\"record\":\"replicated\",\"key\":\"k{i}\",\"seq\":{i},\"bytes\":1000,\"written_ms\":1,\"done_ms\":2,\"delay_s\":{},\"region\":\"a\",\"instances\":1,\"predicted_s\":0.1}}\n",
            f64::from(i) / 100.0
        ));
    }
    lines.push_str("{\"record\":\"replicated\",\"key\":\"big\",\"seq\":1,\"bytes\":200000000,\"delay_s\":3.0}\n");
    lines.push_str(
        "{\"record\":\"replicated\",\"key\":\"d\",\"seq\":1,\"bytes\":0,\"deleted\":true,\"delay_s\":null}\n",
    );
    lines.push_str("{\"record\":\"violation\",\"key\":\"big\",\"seq\":1,\"at_ms\":5,\"cause\":\"plan\",\"reason\":\"needs 3 s\"}\n");
    lines.push_str(
        "{\"record\":\"violation\",\"key\":\"big\",\"seq\":1,\"at_ms\":6,\"cause\":\"delay\",\"reason\":\"late\"}\n",
    );
    lines.push_str(
        "{\"record\":\"repair\",\"at_ms\":7,\"repairs\":{\"unseen\":1,\"orphans\":0,\"corrected\":0,\"drifted\":2}}\n",
    );
    lines.push_str(
        "{\"record\":\"repair\",\"at_ms\":8,\"repairs\":{\"unseen\":0,\"orphans\":0,\"corrected\":1,\"drifted\":1}}\n",
    );
    write(dir.path(), "replicator", "replication.jsonl", &lines);
    let inv = "{\"ok\":true,\"gb_seconds\":0.5,\"requests\":2,\"egress_bytes\":1000,\"cost\":0.001}\n\
               {\"ok\":false,\"gb_seconds\":0.25,\"requests\":1,\"egress_bytes\":0,\"cost\":0.0005}\n";
    write(dir.path(), "fn-a", "invocations.jsonl", inv);
    write(
        dir.path(),
        "fn-b",
        "invocations.jsonl",
        "{\"ok\":true,\"gb_seconds\":1,\"requests\":3,\"egress_bytes\":5,\"cost\":0.002}\n{\"ok\":tr",
    );
    write(dir.path(), "fn-b", "deadletter.jsonl", "{\"attempts\":3}\n");
    let s = ReplicationSummary::of(&read(dir.path()).unwrap().unwrap());
    let a = &s.all;
    assert_eq!((a.objects_replicated, a.deletes, a.bytes), (102, 1, 100_000 + 200_000_000));
    assert_eq!(a.wan_bytes, a.bytes, "byte copies move their size");
    let d = a.delay_s.as_ref().unwrap();
    assert_eq!((d.count, d.p50, d.p99, d.p9999, d.max), (101, 0.51, 1.0, 3.0, 3.0));
    assert_eq!(
        a.size_classes.iter().map(|c| (c.class.as_str(), c.objects)).collect::<Vec<_>>(),
        [("1 MiB", 100), ("1 GiB", 1)]
    );
    assert_eq!(a.size_classes[0].regions, BTreeMap::from([("a".into(), 100)]));
    assert_eq!(a.size_classes[0].instances, BTreeMap::from([("1".into(), 100)]));
    assert_eq!(a.size_classes[1].delay_s.as_ref().unwrap().p50, 3.0);
    assert_eq!(s.slo_violations, 2);
    assert_eq!(s.violations_by_cause, BTreeMap::from([("delay".into(), 1), ("plan".into(), 1)]));
    assert!((a.slo_attainment.unwrap() - (1.0 - 1.0 / 101.0)).abs() < 1e-12);
    assert_eq!(s.repairs["drifted"], 3);
    assert_eq!(s.repairs["unseen"], 1);
    assert_eq!((a.cost.invocations, a.cost.failed, a.cost.dead_letters), (3, 1, 1), "the partial last line is skipped");
    assert_eq!((a.cost.requests, a.cost.egress_bytes), (6, 1005));
    assert!((a.cost.total_usd - 0.0035).abs() < 1e-12 && (a.cost.gb_seconds - 1.75).abs() < 1e-12);
    assert!((a.cost_per_object_usd.unwrap() - 0.0035 / 101.0).abs() < 1e-15);
    assert_eq!(s.by_system.keys().collect::<Vec<_>>(), ["lambda"]);
    assert_eq!(s.by_system["lambda"], s.all, "one system: its figures are all figures");
    assert_eq!(s.verified, None);
    assert!(s.planner.is_empty() && s.planner_updates == 0, "no model records");
    let json = serde_json::to_value(&s).unwrap();
    assert!(json.get("planner").is_none(), "absent, not empty: {json}");
}

#[test]
fn the_planners_last_model_of_each_region_is_summarized() {
    let dir = tempfile::tempdir().unwrap();
    let term = |source: &str, dist: &str, samples: u32| {
        format!("{{\"source\":\"{source}\",\"dist\":{dist},\"mean_s\":0.1,\"samples\":{samples},\"total\":{samples}}}")
    };
    let model = |at: u64, region: &str, samples: u32| {
        let c = "{\"kind\":\"const\",\"value\":0.1}";
        let fitted = "{\"kind\":\"lognormal\",\"mu\":-2.3,\"sigma\":0.2}";
        let s = if samples >= 8 { term("fitted", fitted, samples) } else { term("configured", c, samples) };
        format!(
            "{{\"record\":\"model\",\"system\":\"lambda\",\"at_ms\":{at},\"region\":\"{region}\",\"chunk\":1048576,\"invoke\":{i},\"ready\":{i},\"setup\":{s},\"per_chunk\":{s}}}\n",
            i = term("configured", c, 0)
        )
    };
    let lines = model(1, "a", 0) + &model(1, "b", 0) + &model(5, "a", 9) + &model(3, "b", 4);
    write(dir.path(), "replicator", "replication.jsonl", &lines);
    let s = ReplicationSummary::of(&read(dir.path()).unwrap().unwrap());
    assert_eq!(s.planner_updates, 4);
    let a = &s.planner["a"];
    assert_eq!((a.at_ms, a.per_chunk.source.as_str(), a.per_chunk.samples), (5, "fitted", 9));
    assert_eq!(a.per_chunk.dist["kind"], "lognormal");
    assert_eq!(a.invoke.source, "configured");
    assert_eq!((s.planner["b"].at_ms, s.planner["b"].setup.source.as_str()), (3, "configured"));
}

#[test]
fn writes_systems_classes_costs_and_the_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = String::new();
    // λReplica: a 1 MiB object copied by one instance, two writes covered (a batched hot
    // key), the older one late; a 1 GiB object by 8 instances in the destination region; a
    // 64 MiB object made from a changelog hint (nothing crossed the WAN).
    lines.push_str(&format!(
        "{{\"record\":\"replicated\",\"system\":\"lambda\",\"key\":\"hot\",\"seq\":7,\"bytes\":{MIB},\"delay_s\":2.5,\"slo_s\":2.0,\"region\":\"a\",\"instances\":1,\"writes\":[{{\"seq\":5,\"delay_s\":2.5}},{{\"seq\":7,\"delay_s\":0.5}}]}}\n"
    ));
    lines.push_str(&format!(
        "{{\"record\":\"replicated\",\"system\":\"lambda\",\"key\":\"big\",\"seq\":3,\"bytes\":{},\"delay_s\":1.5,\"slo_s\":2.0,\"region\":\"b\",\"instances\":8,\"writes\":[{{\"seq\":3,\"delay_s\":1.5}}]}}\n",
        1024 * MIB
    ));
    lines.push_str(&format!(
        "{{\"record\":\"replicated\",\"system\":\"lambda\",\"key\":\"cat\",\"seq\":4,\"bytes\":{},\"delay_s\":0.2,\"slo_s\":2.0,\"region\":\"b\",\"instances\":1,\"via\":\"concat\",\"wan_bytes\":0,\"writes\":[{{\"seq\":4,\"delay_s\":0.2}}]}}\n",
        64 * MIB
    ));
    // A write flagged at its deadline and never replicated, one flagged and covered later.
    lines.push_str("{\"record\":\"violation\",\"system\":\"lambda\",\"key\":\"lost\",\"seq\":9,\"at_ms\":1,\"cause\":\"deadline\",\"reason\":\"not replicated\",\"writes\":[9]}\n");
    lines.push_str("{\"record\":\"violation\",\"system\":\"lambda\",\"key\":\"hot\",\"seq\":5,\"at_ms\":1,\"cause\":\"deadline\",\"reason\":\"not replicated\",\"writes\":[5]}\n");
    write(dir.path(), "replicator", "replication.jsonl", &lines);
    // The provider baseline: per-object fees, one 1 MiB copy, late.
    write(
        dir.path(),
        "provider",
        "replication.jsonl",
        &format!("{{\"record\":\"replicated\",\"system\":\"provider\",\"key\":\"hot\",\"seq\":7,\"bytes\":{MIB},\"slo_s\":2.0,\"cost_usd\":0.5,\"writes\":[{{\"seq\":7,\"delay_s\":9.0}}]}}\n{{\"record\":\"cost\",\"system\":\"provider\",\"what\":\"x\",\"usd\":0.25}}\n"),
    );
    let inv = format!(
        "{{\"ok\":true,\"gb_seconds\":1,\"requests\":2,\"egress_bytes\":{MIB},\"cost\":0.01,\"system\":\"lambda\",\"size\":{MIB}}}\n\
         {{\"ok\":true,\"gb_seconds\":1,\"requests\":2,\"egress_bytes\":1,\"cost\":0.08,\"system\":\"lambda\",\"size\":{}}}\n\
         {{\"ok\":true,\"gb_seconds\":1,\"requests\":1,\"egress_bytes\":0,\"cost\":0.001,\"system\":\"lambda\"}}\n",
        1024 * MIB
    );
    write(dir.path(), "fn-a", "invocations.jsonl", &inv);
    write(
        dir.path(),
        "writer",
        "verdict.json",
        "{\"written\":{\"puts\":3},\"verdict\":{\"source_objects\":4,\"equal\":3,\"mismatched\":[\"lost: missing at the destination\"]}}",
    );
    let s = ReplicationSummary::of(&read(dir.path()).unwrap().unwrap());
    assert_eq!(s.by_system.keys().collect::<Vec<_>>(), ["lambda", "provider"]);
    let l = &s.by_system["lambda"];
    assert_eq!(l.objects_replicated, 3);
    assert_eq!(l.delay_s.as_ref().unwrap().count, 4, "one sample per write");
    assert_eq!(l.bytes, MIB + 1088 * MIB);
    assert_eq!(l.wan_bytes, MIB + 1024 * MIB, "the concatenation moved nothing");
    assert_eq!(l.via, BTreeMap::from([("bytes".into(), 2), ("concat".into(), 1)]));
    assert_eq!(l.writes_coalesced, 1, "the hot key's copy covered a second write");
    // Writes: 3 of 4 timed ones within 2 s, and one never replicated: 3 / 5.
    assert!((l.slo_attainment.unwrap() - 0.6).abs() < 1e-12, "{:?}", l.slo_attainment);
    let classes: Vec<(&str, usize)> = l.size_classes.iter().map(|c| (c.class.as_str(), c.objects)).collect();
    assert_eq!(classes, [("1 MiB", 1), ("128 MiB", 1), ("1 GiB", 1)]);
    let gib = &l.size_classes[2];
    assert_eq!(
        (gib.regions.clone(), gib.instances.clone()),
        (BTreeMap::from([("b".into(), 1)]), BTreeMap::from([("8".into(), 1)]))
    );
    assert!((gib.cost_per_object_usd.unwrap() - 0.08).abs() < 1e-12);
    assert!((l.size_classes[0].cost_per_object_usd.unwrap() - 0.01).abs() < 1e-12);
    assert_eq!(l.size_classes[1].cost_per_object_usd, Some(0.0));
    assert!((l.cost.total_usd - 0.091).abs() < 1e-12);
    let p = &s.by_system["provider"];
    assert!((p.cost.fees_usd - 0.5).abs() < 1e-12 && (p.cost.machines_usd - 0.25).abs() < 1e-12);
    assert!((p.cost_per_object_usd.unwrap() - 0.75).abs() < 1e-12);
    assert!((p.size_classes[0].cost_per_object_usd.unwrap() - 0.5).abs() < 1e-12);
    assert_eq!(p.slo_attainment, Some(0.0));
    assert_eq!(s.all.objects_replicated, 4);
    assert_eq!(s.violations_by_cause["deadline"], 2);
    let v = s.verified.unwrap();
    assert_eq!((v.source_objects, v.equal, v.mismatched), (4, 3, 1));
    assert_eq!(v.examples, ["lost: missing at the destination"]);
}

#[test]
fn a_vms_time_counts_in_the_size_class_of_the_copy_it_was_charged_to() {
    let dir = tempfile::tempdir().unwrap();
    // Two VM copies (1 MiB and 1 GiB) with their request fees, the VM time of each job, and
    // the idle time until the VM's shutdown (charged to no copy).
    let copies = format!(
        "{{\"record\":\"replicated\",\"system\":\"vm\",\"key\":\"s\",\"seq\":1,\"bytes\":{MIB},\"cost_usd\":0.01,\"writes\":[{{\"seq\":1,\"delay_s\":1.0}}]}}\n\
         {{\"record\":\"replicated\",\"system\":\"vm\",\"key\":\"b\",\"seq\":2,\"bytes\":{},\"cost_usd\":0.02,\"writes\":[{{\"seq\":2,\"delay_s\":9.0}}]}}\n",
        1024 * MIB
    );
    write(dir.path(), "vm-replicator", "replication.jsonl", &copies);
    let pool = format!(
        "{{\"record\":\"cost\",\"system\":\"vm\",\"what\":\"vm-0 ran\",\"usd\":0.1,\"at_ms\":1,\"size\":{MIB}}}\n\
         {{\"record\":\"cost\",\"system\":\"vm\",\"what\":\"vm-0 ran\",\"usd\":0.4,\"at_ms\":2,\"size\":{}}}\n\
         {{\"record\":\"cost\",\"system\":\"vm\",\"what\":\"vm-0 up until shutdown\",\"usd\":0.2,\"at_ms\":3}}\n",
        1024 * MIB
    );
    write(dir.path(), "vms", "replication.jsonl", &pool);
    let s = ReplicationSummary::of(&read(dir.path()).unwrap().unwrap());
    let v = &s.by_system["vm"];
    let per_class: Vec<(&str, f64)> =
        v.size_classes.iter().map(|c| (c.class.as_str(), c.cost_per_object_usd.unwrap())).collect();
    assert_eq!(per_class.len(), 2, "{per_class:?}");
    assert!(per_class[0].0 == "1 MiB" && (per_class[0].1 - 0.11).abs() < 1e-12, "{per_class:?}");
    assert!(per_class[1].0 == "1 GiB" && (per_class[1].1 - 0.42).abs() < 1e-12, "{per_class:?}");
    // The totals keep every dollar, the idle tail included.
    assert!((v.cost.machines_usd - 0.7).abs() < 1e-12 && (v.cost.fees_usd - 0.03).abs() < 1e-12, "{:?}", v.cost);
    assert!((v.cost.total_usd - 0.73).abs() < 1e-12);
}

#[test]
fn a_malformed_line_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "r", "replication.jsonl", "{\"record\":\"replicated\"}\n{}\n");
    let err = read(dir.path()).unwrap_err().to_string();
    assert!(err.contains("replication.jsonl:1"), "{err}");
}

#[test]
fn a_verdict_without_counts_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "r", "replication.jsonl", "");
    write(dir.path(), "w", "verdict.json", "{\"verdict\":{\"equal\":1}}");
    let err = read(dir.path()).unwrap_err().to_string();
    assert!(err.contains("verdict.json") && err.contains("source_objects"), "{err}");
}
