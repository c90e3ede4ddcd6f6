//! On a cgroup v2 host, a node's limits land in the unified hierarchy (root). This machine
//! mounts cgroup v1 (v2 only for pressure stall information), so here the test reports
//! SKIPPED with that reason; the v2 file handling is unit-tested against a tempdir in
//! `harness/src/testbed/resources.rs`.

use diorama_tests::{diorama, leftovers, need_root, require, topology};

fn v2_with_cpu() -> Result<(), String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").map_err(|e| e.to_string())?;
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.get(2) == Some(&"cgroup2") {
            let controllers = std::fs::read_to_string(format!("{}/cgroup.controllers", f[1])).unwrap_or_default();
            if controllers.split_whitespace().any(|c| c == "cpu") {
                return Ok(());
            }
        }
    }
    Err("this host's cgroup v2 hierarchy has no cpu controller (cgroups are v1 here)".into())
}

#[test]
fn node_limits_on_cgroup_v2() {
    require!("node_limits_on_cgroup_v2", need_root(), v2_with_cpu());
    let tmp = tempfile::tempdir().unwrap();
    let topo = topology(
        tmp.path(),
        "v2",
        "name: v2\ntdf: 4\nnodes:\n  - name: n\n    cpus: 1\n    memory: 64MiB\n    main: true\n    run: {command: \"cat /proc/self/cgroup; sleep 0.1\"}\n",
    );
    let out = tmp.path().join("r");
    let r = diorama(&["run", topo.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let cg = std::fs::read_to_string(out.join("nodes/n/stdout")).unwrap();
    assert!(cg.contains("diorama/"), "the node's command is not in its cgroup: {cg}");
    assert!(leftovers().is_empty(), "{:?}", leftovers());
}
