//! Tests of the whole catalog: every error class reports file, line, column and field.

use std::path::Path;

use super::{read_str as load_str, CatalogError, ReadySpec};

fn errors(text: &str) -> CatalogError {
    load_str(Path::new("t.yaml"), text).expect_err("should be refused")
}

/// Asserts one diagnostic at `line` for `field` whose message contains `needle`.
fn has(err: &CatalogError, line: usize, field: &str, needle: &str) {
    assert!(
        err.diagnostics.iter().any(|d| d.pos.line == line && d.field == field && d.message.contains(needle)),
        "no diagnostic at line {line} for {field} containing {needle:?} in:\n{err}"
    );
}

const GOOD: &str = r#"
name: shop
tdf: auto
duration: 30s
defaults: {cpus: 1, memory: 256MiB}
switches: [core, rack-a]
nodes:
  - name: db
    run: {command: ["postgres", "-D", "data"]}
    ready: {tcp: 5432}
    link: {to: rack-a, rate: 1Gbit, delay: 100us}
  - name: web[0..3]
    cpus: 2
    depends_on: [db]
    run: {workload: isaac, args: {tier: front}}
    link: {to: rack-a, rate: 1Gbit, delay: 100us, loss: 0.1%, queue: 100KB}
  - name: client
    main: true
    depends_on: [web]
    run: {command: "curl web0"}
    link: {to: core, rate: 10Mbit, delay: 5ms, jitter: 1ms}
links:
  - {between: [rack-a, core], rate: 10Gbit, delay: 200us, reverse: {rate: 1Gbit}}
faults:
  - {at: 10s, kill: db}
"#;

#[test]
fn a_good_topology_resolves() {
    let t = load_str(Path::new("t.yaml"), GOOD).unwrap();
    let names: Vec<&str> = t.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["db", "web0", "web1", "web2", "client"]);
    assert_eq!(t.groups["web"], ["web0", "web1", "web2"]);
    let web1 = &t.nodes[2];
    assert_eq!(web1.cpus, 2.0);
    assert_eq!(web1.memory, 256 << 20);
    assert_eq!(web1.depends_on, ["db"]);
    assert_eq!(t.nodes[4].depends_on, ["web0", "web1", "web2"]);
    assert_eq!(t.nodes[0].ready, Some(ReadySpec::Tcp { port: 5432, timeout: std::time::Duration::from_secs(60) }));
    assert_eq!(t.nodes[4].run.argv, ["sh", "-c", "curl web0"]);
    assert_eq!(t.start_levels(), vec![vec![0], vec![1, 2, 3], vec![4]]);
    let core = t.links.iter().find(|l| l.name == "rack-a--core").unwrap();
    assert_eq!(core.forward.rate_bps, Some(10_000_000_000));
    assert_eq!(core.reverse.rate_bps, Some(1_000_000_000));
    assert_eq!(core.reverse.delay_ns, 200_000);
    let web_link = t.links.iter().find(|l| l.a == "web1").unwrap();
    assert_eq!(web_link.forward.queue_bytes, Some(100_000));
    assert!((web_link.forward.loss - 0.001).abs() < 1e-12);
    assert_eq!(t.faults.len(), 1);
    assert_eq!(t.select("web[1..3]").unwrap(), ["web1", "web2"]);
}

#[test]
fn malformed_yaml_names_the_position() {
    let err = errors("name: x\nnodes:\n  - name: a\n    run: {command: [a, b}\n");
    assert_eq!(err.diagnostics.len(), 1);
    assert!(err.diagnostics[0].message.contains("malformed YAML"), "{err}");
    assert_eq!(err.diagnostics[0].pos.line, 4, "{err}");
    assert!(err.to_string().starts_with("invalid topology (1 problem):\n  t.yaml:4:"), "{err}");
}

#[test]
fn unknown_fields_are_refused_at_their_line() {
    let err = errors("name: x\nnodes:\n  - name: a\n    cpu: 2\n    run: {command: a}\n");
    has(&err, 4, "nodes[0].cpu", "unknown field `cpu`");
    let err = errors("name: x\ncolour: red\nnodes:\n  - name: a\n    run: {command: a}\n");
    has(&err, 2, "colour", "unknown field `colour`");
}

#[test]
fn bad_units_name_the_field() {
    let err = errors("name: x\nnodes:\n  - name: a\n    memory: 12 furlongs\n    run: {command: a}\n");
    has(&err, 4, "nodes[0].memory", "unknown size unit");
    let err =
        errors("name: x\nswitches: [s]\nnodes:\n  - name: a\n    run: {command: a}\n    link: {to: s, delay: 10}\n");
    assert!(err.diagnostics[0].message.contains("needs a unit"), "{err}");
    assert_eq!(err.diagnostics[0].pos.line, 6, "{err}");
}

#[test]
fn several_errors_are_reported_at_once() {
    let err = errors(
        "name: x\nnodes:\n  - name: a\n    memory: lots\n    run: {command: a}\n  - name: b\n    cpus: many\n    run: {command: b}\n",
    );
    has(&err, 4, "nodes[0].memory", "number");
    has(&err, 7, "nodes[1].cpus", "");
    assert_eq!(err.diagnostics.len(), 2, "{err}");
}

#[test]
fn duplicate_names_point_at_both() {
    let err = errors("name: x\nnodes:\n  - name: a\n    run: {command: a}\n  - name: a\n    run: {command: a}\n");
    has(&err, 5, "nodes[1].name", "duplicate name \"a\" (first declared at nodes[0].name)");
    let err =
        errors("name: x\nnodes:\n  - name: web[0..2]\n    run: {command: a}\n  - name: web1\n    run: {command: a}\n");
    has(&err, 5, "nodes[1].name", "duplicate name \"web1\"");
}

#[test]
fn dangling_references_are_refused() {
    let err = errors("name: x\nnodes:\n  - name: a\n    depends_on: [ghost]\n    run: {command: a}\n");
    has(&err, 4, "nodes[0].depends_on[0]", "unknown node or group \"ghost\"");
    let err = errors("name: x\nnodes:\n  - name: a\n    depends_on: [\"b[0..5]\"]\n    run: {command: a}\n  - name: b[0..2]\n    run: {command: a}\n");
    has(&err, 4, "nodes[0].depends_on[0]", "unknown nodes");
}

#[test]
fn dependency_cycles_are_refused() {
    let err = errors(
        "name: x\nnodes:\n  - name: a\n    depends_on: [c]\n    run: {command: a}\n  - name: b\n    depends_on: [a]\n    run: {command: a}\n  - name: c\n    depends_on: [b]\n    run: {command: a}\n",
    );
    assert_eq!(err.diagnostics.len(), 1, "{err}");
    assert!(err.diagnostics[0].message.contains("dependency cycle: a → c → b → a"), "{err}");
    let err = errors("name: x\nnodes:\n  - name: a\n    depends_on: [a]\n    run: {command: a}\n");
    has(&err, 4, "nodes[0].depends_on[0]", "depends on itself");
}

#[test]
fn links_to_unknown_switches_are_refused() {
    let err = errors("name: x\nswitches: [core]\nnodes:\n  - name: a\n    run: {command: a}\n    link: {to: cor, rate: 1Gbit}\nlinks:\n  - {between: [core, nowhere]}\n");
    has(&err, 6, "nodes[0].link.to", "unknown switch or node \"cor\"");
    has(&err, 8, "links[0].between[1]", "unknown switch or node \"nowhere\"");
}

#[test]
fn empty_ranges_are_refused() {
    let err = errors("name: x\nnodes:\n  - name: web[3..3]\n    run: {command: a}\n");
    has(&err, 3, "nodes[0].name", "expands to nothing");
}

#[test]
fn missing_run_and_bad_ready_are_refused() {
    let err =
        errors("name: x\nnodes:\n  - name: a\n  - name: b\n    run: {command: b}\n    ready: {tcp: 80, delay: 1s}\n");
    has(&err, 3, "nodes[0]", "missing field `run`");
    has(&err, 6, "nodes[1].ready", "exactly one of");
}

#[test]
fn bad_tdf_is_refused() {
    let err = errors("name: x\ntdf: fast\nnodes:\n  - name: a\n    run: {command: a}\n");
    has(&err, 2, "tdf", "positive number or `auto`");
    let err = errors("name: x\ntdf: -2\nnodes:\n  - name: a\n    run: {command: a}\n");
    has(&err, 2, "tdf", "positive");
}

#[test]
fn schema_describes_the_format() {
    let schema = super::schema();
    let text = schema.to_string();
    for field in ["nodes", "links", "switches", "depends_on", "ready", "tdf"] {
        assert!(text.contains(field), "schema lacks {field}");
    }
}

#[test]
fn type_and_reference_problems_are_reported_together() {
    let err = errors(
        "name: t
nodes:
  - name: db
    cpus: lots
    run: {command: \"true\"}
  - name: web
    depends_on: [db, cache]
    run: {command: \"true\"}
",
    );
    has(&err, 4, "nodes[0].cpus", "");
    has(&err, 7, "nodes[1].depends_on[1]", "cache");
    // `db` failed to type but is still declared: no dangling reference to it, and nothing
    // more about its own fields.
    assert_eq!(err.diagnostics.len(), 2, "{err}");
    let lines: Vec<usize> = err.diagnostics.iter().map(|d| d.pos.line).collect();
    assert_eq!(lines, [4, 7], "sorted by position: {err}");
}

#[test]
fn a_node_without_a_usable_name_still_lets_the_others_be_checked() {
    let err = errors(
        "name: t
nodes:
  - name: [not, a, name]
    run: {command: \"true\"}
  - name: web
    memory: 1GiB
    depends_on: [nowhere]
    run: {command: \"true\"}
",
    );
    has(&err, 3, "nodes[0].name", "");
    has(&err, 7, "nodes[1].depends_on[0]", "nowhere");
}

#[test]
fn a_filesystem_view_is_carried_and_its_paths_checked() {
    let text = r#"
name: fs
nodes:
  - name: a
    run: {command: "true"}
    filesystem: {private: [/tmp], read_only: [/srv]}
  - name: b
    run: {command: "true"}
    filesystem:
      private: [tmp, /]
"#;
    let err = errors(text);
    has(&err, 10, "nodes[1].filesystem.private[0]", "not an absolute path");
    has(&err, 10, "nodes[1].filesystem.private[1]", "hide the whole filesystem");
    let good = text.replace("private: [tmp, /]", "read_only: [/etc]");
    let t = load_str(Path::new("t.yaml"), &good).unwrap();
    let a = t.nodes[0].filesystem.as_ref().unwrap();
    assert_eq!((a.private[0].to_str(), a.read_only[0].to_str()), (Some("/tmp"), Some("/srv")));
    assert_eq!(t.nodes[1].filesystem.as_ref().unwrap().read_only[0].to_str(), Some("/etc"));
}

/// One node linked to a switch, with `extra` lines added to the node.
fn one_node(extra: &str) -> String {
    format!("name: v\nswitches: [sw]\nnodes:\n  - name: a\n    run: {{command: x}}\n{extra}")
}

#[test]
fn bad_link_values_are_reported_at_their_own_field() {
    for (value, field, needle) in [
        ("delay: -5ms", "delay", "negative"),
        ("rate: 0", "rate", "needs a unit"),
        ("rate: 0bit", "rate", "must be positive"),
        ("loss: 150%", "loss", "not between 0% and 100%"),
    ] {
        let err = errors(&one_node(&format!("    link: {{to: sw, {value}}}\n")));
        has(&err, 6, &format!("nodes[0].link.{field}"), needle);
        // Also in a list of links, and in the block style, where the column is the field's.
        let err = errors(&one_node(&format!("    link:\n      - to: sw\n        {value}\n")));
        has(&err, 8, &format!("nodes[0].link[0].{field}"), needle);
        assert_eq!(err.diagnostics[0].pos.col, 9, "{err}");
    }
}

#[test]
fn zero_and_absurd_resources_are_refused() {
    has(&errors(&one_node("    memory: 0\n")), 6, "nodes[0].memory", "too small");
    has(&errors(&one_node("    memory: 100000000TiB\n")), 6, "nodes[0].memory", "too large");
    has(&errors(&one_node("    pids: 0\n")), 6, "nodes[0].pids", "at least 1");
    let big = "hosts: [{name: h, cores: 4, memory: 8GiB}]\n";
    has(
        &errors(&format!("{big}{}", one_node("    memory: 9GiB\n"))),
        7,
        "nodes[0].memory",
        "more than the largest host",
    );
    load_str(Path::new("t.yaml"), &format!("{big}{}", one_node("    memory: 8GiB\n"))).unwrap();
    // A measured host is the planner's to check (`check --plan`).
    load_str(Path::new("t.yaml"), &one_node("    memory: 9TiB\n")).unwrap();
}

#[test]
fn zero_durations_are_refused() {
    has(&errors(&format!("duration: 0s\n{}", one_node(""))), 1, "duration", "must be positive");
    has(&errors(&format!("cpu_period: 0ms\n{}", one_node(""))), 1, "cpu_period", "must be positive");
    has(&errors(&one_node("    ready: {tcp: 80, timeout: 0s}\n")), 6, "nodes[0].ready.timeout", "must be positive");
    has(&errors(&one_node("    link: {to: sw, queue: 0p}\n")), 6, "nodes[0].link.queue", "drops every packet");
}

#[test]
fn a_fault_after_the_duration_is_refused_at_its_time() {
    let text = format!("duration: 10s\n{}faults:\n  - {{at: 5s, kill: a}}\n  - {{at: 10s, kill: a}}\n", one_node(""));
    let err = crate::load::topology_str(Path::new("t.yaml"), &text).unwrap_err();
    has(&err, 9, "faults[1].at", "would never fire");
    assert_eq!(err.diagnostics.len(), 1, "{err}");
    // Without a duration the run lasts until its nodes exit: any time can fire.
    crate::load::topology_str(Path::new("t.yaml"), &text.replacen("duration: 10s\n", "", 1)).unwrap();
}

#[test]
fn an_absurd_cpus_is_refused_where_it_is_written() {
    // Found by the fuzzer: 1.8e19 cores sent `tdf: auto` into a search that did not end.
    let err = errors(
        "name: t
tdf: auto
defaults: {cpus: 18446744073709551616.1}
nodes:
  - name: a
    run: {command: \"true\"}
  - name: b
    cpus: 5000
    run: {command: \"true\"}
",
    );
    has(&err, 5, "nodes[0].cpus", "at most 4096");
    has(&err, 8, "nodes[1].cpus", "at most 4096");
}
