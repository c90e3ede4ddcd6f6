//! Bad frames written into a node's TUN device (root): the userspace core counts each
//! class of them and drops them, the run goes on, and `run.json` → `network.dropped`
//! shows the counts.

use diorama_tests::{diorama, need_root, need_tool, repo_root, require, run_json, topology};

#[test]
fn malformed_frames_are_counted_and_dropped() {
    require!("malformed_frames_are_counted_and_dropped", need_root(), need_tool("python3"));
    let tmp = tempfile::tempdir().unwrap();
    let inject = repo_root().join("tests/netem/inject.py");
    let yaml = format!(
        r#"
name: malformed
defaults: {{cpus: 0.2, memory: 64MiB}}
nodes:
  - name: peer
    run: {{command: ["sleep", "30"]}}
  - name: injector
    main: true
    run: {{command: ["python3", "{}"]}}
links:
  - {{between: [injector, peer], delay: 1ms}}
"#,
        inject.display()
    );
    let topo = topology(tmp.path(), "malformed", &yaml);
    let out = tmp.path().join("out");
    let r = diorama(&["run", topo.to_str().unwrap(), "--net", "userspace", "--out", out.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let sent = std::fs::read_to_string(out.join("nodes/injector/stdout")).unwrap();
    println!("injected: {}", sent.replace('\n', ", "));
    let dropped = run_json(&out)["network"]["dropped"].clone();
    println!("run.json network.dropped: {dropped}");
    let count = |k: &str| dropped[k].as_u64().unwrap_or_else(|| panic!("no network.dropped.{k} in {dropped}"));
    let sent = |k: &str| -> u64 {
        sent.lines().find_map(|l| l.strip_prefix(k)?.trim().parse().ok()).unwrap_or_else(|| panic!("no {k} sent"))
    };
    // The node's own stack sends no bad IPv4 or non-IP frames: these counts are exact.
    for k in ["non_ip", "malformed", "truncated"] {
        assert_eq!(count(k), sent(k), "{k}: {dropped}");
    }
    // Its stack may add IPv6 (router solicitations, MLD), also unroutable here.
    assert!(count("unroutable") >= sent("unroutable"), "{dropped}");
    assert!(diorama_tests::leftovers_of(&out).is_empty(), "{:?}", diorama_tests::leftovers_of(&out));
}
