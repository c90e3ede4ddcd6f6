//! System tests of node confinement (root), each rule tried from inside a node: cgroupfs,
//! the rest of `/sys` and the host-wide `/proc/sys` are read-only, the node's own network
//! sysctls are writable, mounts cannot be undone; every node, with or without a filesystem
//! view, can write its own results directory and clock control file but not another node's
//! directory, the run's results directory or the harness's state; and a view adds private
//! directories and read-only host paths.

use diorama_tests::{diorama, leftovers_of, need_root, require, topology};

/// Shell helpers: `try_write FILE VALUE LABEL` prints `WROTE LABEL` or `DENIED LABEL: why`.
const HELPERS: &str = r#"
try_write() {
  if ( printf '%s\n' "$2" > "$1" ) 2>"$DIORAMA_NODE_DIR/err"; then echo "WROTE $3"; else echo "DENIED $3: $(cat "$DIORAMA_NODE_DIR/err")"; fi
}
cgroup_files() {
  while IFS=: read -r _ ctrls path; do
    case $ctrls in name=*) continue ;; "") d=/sys/fs/cgroup$path ;; *) d=/sys/fs/cgroup/${ctrls%%,*}$path ;; esac
    for f in cpu.cfs_quota_us cpu.max memory.limit_in_bytes memory.max pids.max freezer.state cgroup.freeze; do
      [ -f "$d/$f" ] && echo "$d/$f"
    done
  done < /proc/self/cgroup
}
"#;

/// What a node tries, whatever its view.
const LIMITS: &str = r#"
for f in $(cgroup_files); do
  case $f in
    *cpu.cfs_quota_us) try_write "$f" 200000 "cgroup cpu" ;;
    *cpu.max) try_write "$f" "max 100000" "cgroup cpu" ;;
    *memory*) try_write "$f" 9000000000 "cgroup memory" ;;
    *pids.max) try_write "$f" max "cgroup pids" ;;
    *freezer.state) try_write "$f" THAWED "cgroup freezer" ;;
    *cgroup.freeze) try_write "$f" 0 "cgroup freezer" ;;
  esac
done
try_write /sys/class/net/lo/mtu "$(cat /sys/class/net/lo/mtu)" "sys lo mtu"
try_write /proc/sys/vm/swappiness "$(cat /proc/sys/vm/swappiness)" "proc/sys vm"
try_write /proc/sys/net/ipv4/tcp_keepalive_time 1234 "proc/sys net"
echo "NET $(cat /proc/sys/net/ipv4/tcp_keepalive_time)"
if mount -o remount,rw,bind /sys 2>/dev/null; then echo "WROTE remount /sys"; else echo "DENIED remount /sys"; fi
if umount /sys 2>/dev/null; then echo "WROTE umount /sys"; else echo "DENIED umount /sys"; fi
"#;

/// What every node tries of the run's files: its own directory and control file (owned),
/// the other node's directory, the results directory, its state, the state root and the
/// `/etc/hosts` every node shares (not).
const RUN_FILES: &str = r#"
case $DIORAMA_NODE in ca-guarded) other=cb-open ;; *) other=ca-guarded ;; esac
state=$(ls -d /run/diorama/"$(basename "$DIORAMA_RUN_DIR")"*/nodes/"$DIORAMA_NODE" | head -1)
# Not found: the writes below fail with ENOENT, which the test does not take for a refusal.
state=${state:-/nonexistent-diorama-state}
try_write "$DIORAMA_RUN_DIR/nodes/$other/from-$DIORAMA_NODE" x "other node's directory"
try_write "$DIORAMA_RUN_DIR/intrude-$DIORAMA_NODE" x "results directory"
try_write "$state/intrude" x "state directory"
try_write "/run/diorama/intrude-$DIORAMA_NODE" x "state root"
try_write /etc/hosts "$(cat /etc/hosts)" "hosts file"
try_write "$DIORAMA_NODE_DIR/own" x "own directory"
if ( : >> "$state/clock" ) 2>/dev/null; then echo "WROTE control file"; else echo "DENIED control file"; fi
"#;

fn lines_with<'a>(stdout: &'a str, prefix: &str) -> Vec<&'a str> {
    stdout.lines().filter(|l| l.starts_with(prefix)).collect()
}

/// Asserts that `rule` was refused once, with EROFS or EACCES.
fn denied(stdout: &str, rule: &str) {
    let line = lines_with(stdout, &format!("DENIED {rule}"));
    assert!(
        line.len() == 1 && (line[0].contains("Read-only file system") || line[0].contains("Permission denied")),
        "{rule} not refused with EROFS/EACCES:\n{stdout}"
    );
}

/// Asserts that `rule` was allowed once.
fn wrote(stdout: &str, rule: &str) {
    assert_eq!(lines_with(stdout, &format!("WROTE {rule}")).len(), 1, "{rule} not writable:\n{stdout}");
}

#[test]
fn a_node_cannot_write_its_limits_the_host_or_other_nodes() {
    require!("a_node_cannot_write_its_limits_the_host_or_other_nodes", need_root());
    let tmp = tempfile::tempdir().unwrap();
    let host_ro = tmp.path().join("host-ro");
    std::fs::create_dir(&host_ro).unwrap();
    let guarded = format!(
        r#"{HELPERS}{LIMITS}{RUN_FILES}
try_write "{ro}/intrude" x "read-only host path"
try_write /var/tmp/containment-private x "private tmp"
"#,
        ro = host_ro.display()
    );
    let open = format!("{HELPERS}{LIMITS}{RUN_FILES}");
    let yaml = format!(
        "name: containment\ntdf: 1\ndefaults: {{cpus: 0.2, memory: 64MiB}}\nnodes:\n  - name: ca-guarded\n    main: true\n    filesystem: {{private: [/var/tmp], read_only: [{ro}]}}\n    run:\n      command: {guarded:?}\n  - name: cb-open\n    main: true\n    run:\n      command: {open:?}\n",
        ro = host_ro.display(),
    );
    let topo = topology(tmp.path(), "containment", &yaml);
    let out = tmp.path().join(format!("containment-{}", std::process::id()));
    let host_keepalive = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_keepalive_time").unwrap();
    let r = diorama(&["run", topo.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let node_file = |node: &str, file: &str| std::fs::read_to_string(out.join("nodes").join(node).join(file));
    let stdout = node_file("ca-guarded", "stdout").unwrap_or_default();
    let stderr = node_file("ca-guarded", "stderr").unwrap_or_default();
    assert_eq!(r.code, Some(0), "{r:?}\nnode stdout:\n{stdout}\nnode stderr:\n{stderr}");
    let open_out = node_file("cb-open", "stdout").unwrap_or_default();

    // The node found its limits (else the rest proves nothing) and could write none of them.
    for kind in ["cgroup cpu", "cgroup memory", "cgroup pids", "cgroup freezer"] {
        let denied = lines_with(&stdout, &format!("DENIED {kind}"));
        assert!(!denied.is_empty(), "no {kind} file tried:\n{stdout}");
        assert!(lines_with(&stdout, &format!("WROTE {kind}")).is_empty(), "{kind} writable:\n{stdout}");
        assert!(denied.iter().all(|l| l.contains("Read-only file system")), "{denied:?}");
    }
    for rule in ["sys lo mtu", "proc/sys vm", "read-only host path"] {
        denied(&stdout, rule);
    }
    for rule in ["remount /sys", "umount /sys"] {
        assert_eq!(lines_with(&stdout, &format!("DENIED {rule}")).len(), 1, "{rule}:\n{stdout}");
    }
    // What the node owns stays writable.
    for rule in ["proc/sys net", "private tmp"] {
        wrote(&stdout, rule);
    }
    assert!(stdout.contains("NET 1234"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/tcp_keepalive_time").unwrap(),
        host_keepalive,
        "the node's sysctl reached the host's namespace"
    );
    assert!(!std::path::Path::new("/var/tmp/containment-private").exists(), "the private /var/tmp is the host's");
    assert!(std::fs::read_dir(&host_ro).unwrap().next().is_none(), "wrote into the read-only host path");

    // The run's files: the same rules for a node with a view and one without.
    for (node, other, text) in [("ca-guarded", "cb-open", &stdout), ("cb-open", "ca-guarded", &open_out)] {
        for rule in ["other node's directory", "results directory", "state directory", "state root", "hosts file"] {
            denied(text, rule);
        }
        for rule in ["own directory", "control file"] {
            wrote(text, rule);
        }
        assert!(!out.join("nodes").join(other).join(format!("from-{node}")).exists(), "{node} wrote into {other}");
        assert!(!out.join(format!("intrude-{node}")).exists(), "{node} wrote into the results directory");
        assert!(!std::path::Path::new(&format!("/run/diorama/intrude-{node}")).exists(), "{node}: state root");
        assert!(out.join("nodes").join(node).join("own").exists(), "{node}: own directory");
    }
    // The rest holds for every node.
    assert!(!lines_with(&open_out, "DENIED cgroup cpu").is_empty() && !open_out.contains("WROTE cgroup"), "{open_out}");
    assert!(open_out.contains("WROTE proc/sys net") && open_out.contains("DENIED proc/sys vm"), "{open_out}");
    assert!(leftovers_of(&out).is_empty(), "{:?}", leftovers_of(&out));
}
