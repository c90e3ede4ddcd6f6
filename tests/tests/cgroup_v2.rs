//! cgroup v2 on this host's real unified hierarchy.
//!
//! This host mounts cgroup v1 for every controller diorama limits (cpu, cpuacct, memory,
//! pids, blkio, freezer) and a cgroup2 hierarchy without them (`/sys/fs/cgroup/unified`).
//! A controller bound to a v1 hierarchy that holds cgroups cannot move to v2, so:
//! - `v2_core_files_on_the_real_unified_hierarchy` drives `testbed::cgroup::v2::V2` on the
//!   real cgroup2 mount (the one mounted, or a fresh mount of it in a temporary directory):
//!   create with delegation, join through `cgroup.procs`, `cgroup.threads`, freeze and thaw
//!   through `cgroup.freeze` / `cgroup.events` on a live process, kill and remove. It also
//!   checks that a limit whose controller v2 does not hold here (`cpu.max`) fails with
//!   its file named rather than silently;
//! - `node_limits_on_cgroup_v2` runs a whole node on v2 where v2 has the cpu controller,
//!   and reports SKIPPED here with that reason. The limit files (`cpu.max`, `memory.max`,
//!   `pids.max`, `io.max`) are unit-tested against a tempdir in `testbed/src/cgroup/`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use diorama_tests::{diorama, leftovers, need_root, require, topology};
use testbed::cgroup::v2::V2;
use testbed::cgroup::Cgroup;

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

/// The cgroup2 hierarchy: where it is mounted, or a fresh mount of it (unmounted on drop).
struct Unified {
    root: PathBuf,
    _mount: Option<(tempfile::TempDir, FreshMount)>,
}

struct FreshMount(PathBuf);

impl Drop for FreshMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount(&self.0);
    }
}

fn unified() -> Result<Unified, String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").map_err(|e| e.to_string())?;
    if let Some(root) = mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
    }) {
        return Ok(Unified { root, _mount: None });
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    nix::mount::mount(Some("cgroup2"), dir.path(), Some("cgroup2"), nix::mount::MsFlags::empty(), None::<&str>)
        .map_err(|e| format!("no cgroup2 mount and mounting one failed: {e}"))?;
    let root = dir.path().to_owned();
    Ok(Unified { root: root.clone(), _mount: Some((dir, FreshMount(root))) })
}

fn freeze_supported(root: &Path) -> Result<(), String> {
    // cgroup.freeze exists in every non-root cgroup of kernels >= 5.2; probe on a scratch one.
    let probe = root.join(format!("diorama-probe-{}", std::process::id()));
    std::fs::create_dir(&probe).map_err(|e| format!("cannot create a cgroup in {}: {e}", root.display()))?;
    let ok = probe.join("cgroup.freeze").exists();
    let _ = std::fs::remove_dir(&probe);
    if ok {
        Ok(())
    } else {
        Err("the kernel's cgroup2 has no cgroup.freeze (needs Linux 5.2)".into())
    }
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// CPU time (utime + stime, in ticks) of a process, from `/proc/<pid>/stat`.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the process is alive");
    // Fields after the command name `(…)`: state is the first, utime the 12th, stime the 13th.
    let after = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let f: Vec<u64> = after.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn v2_core_files_on_the_real_unified_hierarchy() {
    require!("v2_core_files_on_the_real_unified_hierarchy", need_root());
    let u = match unified() {
        Ok(u) => u,
        Err(reason) => return diorama_tests::skip("v2_core_files_on_the_real_unified_hierarchy", &reason),
    };
    require!("v2_core_files_on_the_real_unified_hierarchy", freeze_supported(&u.root));
    let run = format!("diorama-v2test-{}", std::process::id());
    let cg = V2::new(&u.root, &format!("{run}/node"));
    cg.create().unwrap();
    assert!(cg.dir().is_dir());

    // A busy process joins the cgroup through cgroup.procs, as a node's command does.
    let child = Reaped(Command::new("sh").args(["-c", "while :; do :; done"]).spawn().unwrap());
    let pid = child.0.id();
    let procs = cg.procs_files();
    assert_eq!(procs, vec![cg.dir().join("cgroup.procs")]);
    std::fs::write(&procs[0], pid.to_string()).unwrap();
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(own.lines().any(|l| l.starts_with("0::/") && l.ends_with(&format!("{run}/node"))), "{own}");
    assert_eq!(cg.threads(), vec![pid]);

    // Freeze: the kernel reports it frozen and the process stops using CPU; thaw: it runs.
    cg.freeze(true).unwrap();
    wait_for("cgroup.events to say frozen", || cg.frozen());
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(cpu_ticks(pid), before, "a frozen process used CPU");
    cg.freeze(false).unwrap();
    wait_for("cgroup.events to say thawed", || !cg.frozen());
    wait_for("the thawed process to run", || cpu_ticks(pid) > before);

    // The limits need controllers that cgroup v1 holds on this host: refused, file named.
    let limits = testbed::NodeResources { cpu_quota_us: Some(10_000), cpu_period_us: 100_000, ..Default::default() };
    let err = cg.apply(&limits).unwrap_err();
    assert!(err.to_string().contains("cpu.max"), "{err}");
    // Counters of absent controllers read as zero rather than failing the sampler.
    assert_eq!(cg.stats().memory_bytes, 0);

    drop(child);
    wait_for("the cgroup to empty", || cg.threads().is_empty());
    std::fs::remove_dir(cg.dir()).unwrap();
    std::fs::remove_dir(u.root.join(&run)).unwrap();
}
