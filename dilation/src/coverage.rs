//! Which mechanism, if any, dilates a running process — read from `/proc`, so that a run
//! never reports an undilated process as faithful.
//!
//! A process is covered when
//! - the syscall trap traces it: `TracerPid` is a `dilation-trap` process and a seccomp
//!   filter is installed (`Seccomp: 2`) — whether the harness started the trap for the node
//!   or the shim handed it the exec of a Go or static program (the launcher itself, between
//!   the shim process and the program, is left out of a tree), or
//! - the shim is mapped **and** the program is one the shim can reach: a Go program with
//!   the shim mapped is not dilated (its runtime bypasses libc), which is exactly the case
//!   the old "is the shim mapped" check let through.
//!
//! # Limitations
//! This is a structural check; the fidelity monitor's in-node clock comparison is the
//! behavioural one. `/proc/PID/exe` of a process in another mount namespace still reads.

use std::path::{Path, PathBuf};

use crate::program::{Mechanism, ProgramKind};

/// Name of the trap launcher's executable.
pub const TRAP_NAME: &str = "dilation-trap";

/// How a process's time is dilated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Coverage {
    Preload,
    Trap,
    Undilated { reason: String },
}

/// One process of a tree and its coverage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessCoverage {
    pub pid: u32,
    /// `comm` of the process.
    pub program: String,
    pub coverage: Coverage,
}

fn field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).map(str::trim)
}

fn shim_mapped(maps: &str) -> bool {
    maps.lines().any(|l| l.split_whitespace().nth(5).is_some_and(|p| p.ends_with(crate::probe::SHIM_NAME)))
}

/// The coverage of process `pid` under `proc_root` (normally `/proc`).
pub fn process_coverage(proc_root: &Path, pid: u32) -> std::io::Result<Coverage> {
    let dir = proc_root.join(pid.to_string());
    let status = std::fs::read_to_string(dir.join("status"))?;
    let tracer = field(&status, "TracerPid").and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
    let filtered = field(&status, "Seccomp") == Some("2");
    if tracer != 0 && filtered {
        let comm = std::fs::read_to_string(proc_root.join(tracer.to_string()).join("comm")).unwrap_or_default();
        if comm.trim() == TRAP_NAME {
            return Ok(Coverage::Trap);
        }
    }
    // Kernel threads and zombies have no executable; they read no clock.
    let kind = crate::elf::classify_file(&dir.join("exe")).ok().flatten();
    let mapped = shim_mapped(&std::fs::read_to_string(dir.join("maps")).unwrap_or_default());
    Ok(match (mapped, kind) {
        (true, Some(k)) if k.mechanism() == Some(Mechanism::Preload) => Coverage::Preload,
        (true, None) => Coverage::Preload,
        (true, Some(k)) => Coverage::Undilated { reason: format!("the shim is loaded but cannot dilate a {k}") },
        (false, Some(ProgramKind::Dynamic) | None) => {
            Coverage::Undilated { reason: "the LD_PRELOAD shim is not loaded".into() }
        }
        (false, Some(k)) => Coverage::Undilated { reason: format!("{k}, not traced by {TRAP_NAME}") },
    })
}

/// Whether process `pid` under `proc_root` is the trap's launcher (`dilation-trap`), which
/// reads no clock for the program it traces.
pub fn is_launcher(proc_root: &Path, pid: u32) -> bool {
    std::fs::read_to_string(proc_root.join(pid.to_string()).join("comm")).is_ok_and(|c| c.trim() == TRAP_NAME)
}

/// Every process's parent, read once from `proc_root`, for [`Processes::tree`].
#[derive(Clone, Debug, Default)]
pub struct Processes {
    root: PathBuf,
    parent_of: Vec<(u32, u32)>,
}

impl Processes {
    /// Reads the `PPid` of every process under `proc_root`.
    pub fn scan(proc_root: &Path) -> std::io::Result<Self> {
        let mut parent_of = Vec::new();
        for entry in std::fs::read_dir(proc_root)?.flatten() {
            let Some(p) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
            if let Some(pp) = field(&status, "PPid").and_then(|v| v.parse::<u32>().ok()) {
                parent_of.push((p, pp));
            }
        }
        Ok(Self { root: proc_root.to_owned(), parent_of })
    }

    /// `pid` and all its descendants with their coverage (the trap launcher left out).
    pub fn tree(&self, pid: u32) -> std::io::Result<Vec<ProcessCoverage>> {
        let proc_root = &self.root;
        let mut tree = vec![pid];
        let mut i = 0;
        while i < tree.len() {
            let cur = tree[i];
            tree.extend(self.parent_of.iter().filter(|(_, pp)| *pp == cur).map(|(p, _)| *p));
            i += 1;
        }
        let mut out = Vec::new();
        for p in tree {
            // The launcher itself reads no clock for the program; skip it.
            if is_launcher(proc_root, p) {
                continue;
            }
            let comm = std::fs::read_to_string(proc_root.join(p.to_string()).join("comm"))
                .unwrap_or_default()
                .trim()
                .to_owned();
            match process_coverage(proc_root, p) {
                Ok(coverage) => out.push(ProcessCoverage { pid: p, program: comm, coverage }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

/// `pid` and all its descendants (from the `PPid` of every process), with their coverage.
pub fn tree_coverage(proc_root: &Path, pid: u32) -> std::io::Result<Vec<ProcessCoverage>> {
    Processes::scan(proc_root)?.tree(pid)
}

/// The default `/proc`.
pub fn proc_root() -> PathBuf {
    PathBuf::from("/proc")
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::elf::test_image as elf;

    #[expect(clippy::too_many_arguments, reason = "one fake /proc entry, field by field")]
    fn proc(root: &Path, pid: u32, ppid: u32, comm: &str, tracer: u32, seccomp: u32, exe: &[u8], shim: bool) {
        let d = root.join(pid.to_string());
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("status"),
            format!("Name:\t{comm}\nPPid:\t{ppid}\nTracerPid:\t{tracer}\nSeccomp:\t{seccomp}\n"),
        )
        .unwrap();
        std::fs::write(d.join("comm"), format!("{comm}\n")).unwrap();
        std::fs::write(d.join("exe"), exe).unwrap();
        let maps = if shim { "7f00-7f01 r-xp 00000000 08:01 1 /opt/libdilation.so\n" } else { "" };
        std::fs::write(d.join("maps"), maps).unwrap();
    }

    #[test]
    fn each_mechanism_and_each_gap_is_named() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let go = elf(true, b"\xff Go buildinf:");
        proc(r, 10, 1, "sh", 0, 0, &elf(true, b""), true);
        proc(r, 11, 10, "etcd", 0, 0, &go, true);
        proc(r, 12, 10, "dilation-trap", 0, 0, &elf(true, b""), false);
        proc(r, 13, 12, "etcd", 12, 2, &go, false);
        proc(r, 14, 10, "static", 0, 0, &elf(false, b""), false);
        proc(r, 15, 1, "other", 0, 0, &elf(true, b""), false);
        assert_eq!(process_coverage(r, 10).unwrap(), Coverage::Preload);
        assert!(
            matches!(process_coverage(r, 11).unwrap(), Coverage::Undilated { reason } if reason.contains("Go program"))
        );
        assert_eq!(process_coverage(r, 13).unwrap(), Coverage::Trap);
        assert!(
            matches!(process_coverage(r, 14).unwrap(), Coverage::Undilated { reason } if reason.contains("not traced"))
        );
        assert!(
            matches!(process_coverage(r, 15).unwrap(), Coverage::Undilated { reason } if reason.contains("not loaded"))
        );
        // 10 → 12 → 13 is also the shape of a shim process whose exec of a Go program the
        // shim handed to the trap.
        let tree = tree_coverage(r, 10).unwrap();
        let pids: Vec<u32> = tree.iter().map(|p| p.pid).collect();
        assert_eq!(pids, vec![10, 11, 14, 13], "the launcher is skipped, the unrelated process left out");
        assert!(is_launcher(r, 12) && !is_launcher(r, 13) && !is_launcher(r, 99));
    }

    #[test]
    fn this_process_is_not_dilated() {
        let me = std::process::id();
        assert!(matches!(process_coverage(&proc_root(), me).unwrap(), Coverage::Undilated { .. }));
    }
}
