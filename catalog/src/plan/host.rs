//! The host inventory: the machines a plan may use. The default is this machine, measured.

use std::path::Path;

use serde::Serialize;

use crate::topology::model::HostDecl;

/// One host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Host {
    pub name: String,
    pub cores: f64,
    pub memory: u64,
}

/// The hosts of a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inventory {
    pub hosts: Vec<Host>,
}

/// Errors of measuring this host.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no MemTotal in {0}")]
    NoMemTotal(String),
    #[error("host {0:?} of the inventory needs `cores` and `memory` (only `local` is measured)")]
    Incomplete(String),
}

/// Memory of this machine from `<proc>/meminfo`.
fn mem_total(proc_root: &Path) -> Result<u64, HostError> {
    let path = proc_root.join("meminfo");
    let text = std::fs::read_to_string(&path)
        .map_err(|source| HostError::Read { path: path.display().to_string(), source })?;
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or_else(|| HostError::NoMemTotal(path.display().to_string()))
}

/// Cores this process may run on (its affinity mask, which containers and `taskset` narrow).
fn cores() -> f64 {
    nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .map(|set| (0..nix::sched::CpuSet::count()).filter(|&i| set.is_set(i).unwrap_or(false)).count())
        .ok()
        .filter(|&n| n > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1) as f64
}

impl Host {
    /// This machine, measured through `proc_root` (normally `/proc`).
    pub fn local(proc_root: &Path) -> Result<Self, HostError> {
        let name =
            nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "local".into());
        Ok(Self { name, cores: cores(), memory: mem_total(proc_root)? })
    }
}

impl Inventory {
    /// The inventory a topology asks for; `local` (or an empty list) is this machine.
    pub fn from_decls(decls: &[HostDecl], proc_root: &Path) -> Result<Self, HostError> {
        if decls.is_empty() {
            return Ok(Self { hosts: vec![Host::local(proc_root)?] });
        }
        let mut hosts = Vec::new();
        for d in decls {
            hosts.push(match d {
                HostDecl::Name(n) if n == "local" => Host::local(proc_root)?,
                HostDecl::Name(n) => return Err(HostError::Incomplete(n.clone())),
                HostDecl::Spec(s) if s.name == "local" => {
                    let mut h = Host::local(proc_root)?;
                    h.cores = s.cores.unwrap_or(h.cores);
                    h.memory = s.memory.map_or(h.memory, |m| m.0);
                    h
                }
                HostDecl::Spec(s) => match (s.cores, s.memory) {
                    (Some(cores), Some(m)) => Host { name: s.name.clone(), cores, memory: m.0 },
                    _ => return Err(HostError::Incomplete(s.name.clone())),
                },
            });
        }
        Ok(Self { hosts })
    }

    /// `n` identical hosts (tests, what-if plans).
    pub fn uniform(n: usize, cores: f64, memory: u64) -> Self {
        Self { hosts: (0..n).map(|i| Host { name: format!("host{i}"), cores, memory }).collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_read_from_meminfo() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("meminfo"), "MemTotal:       24576000 kB\nMemFree: 1 kB\n").unwrap();
        assert_eq!(mem_total(dir.path()).unwrap(), 24_576_000 * 1024);
        std::fs::write(dir.path().join("meminfo"), "nothing\n").unwrap();
        assert!(mem_total(dir.path()).is_err());
    }

    #[test]
    fn this_machine_is_measured() {
        let h = Host::local(Path::new("/proc")).unwrap();
        assert!(h.cores >= 1.0);
        assert!(h.memory > 64 << 20);
    }

    #[test]
    fn named_hosts_need_their_sizes() {
        let decls = vec![HostDecl::Name("rack1".into())];
        assert!(matches!(Inventory::from_decls(&decls, Path::new("/proc")), Err(HostError::Incomplete(_))));
    }
}
