//! The run's state directory: a record of everything a run creates, so that
//! `diorama clean` can remove what a crashed or `kill -9`ed harness left behind.
//!
//! # Design
//! Each run owns `/run/diorama/<run-id>/` (tmpfs: it does not outlive a reboot, and neither
//! do the kernel objects it describes). `state.json` is rewritten atomically (write, then
//! rename) *before* each object is created, so a crash at any point leaves a record that
//! names everything that may exist. The record also names the harness by PID and start
//! time: a run whose harness is still alive is never cleaned unless forced.
//!
//! Node processes are named by PID *and* start time, so a recycled PID is never killed.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Default root of all run state directories.
pub const DEFAULT_ROOT: &str = "/run/diorama";

/// Errors of the state directory.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("create state directory {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("write state {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("read state {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parse state {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// A process identified so that PID reuse cannot fool us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat` (clock ticks after boot).
    pub start_time: u64,
}

impl ProcessId {
    /// Identifies a live process, or `None` if it is gone.
    pub fn of(pid: u32) -> Option<Self> {
        start_time(Path::new("/proc"), pid).map(|start_time| Self { pid, start_time })
    }

    /// Whether this very process (same PID and start time) still exists.
    pub fn alive(&self) -> bool {
        start_time(Path::new("/proc"), self.pid) == Some(self.start_time)
    }
}

/// Reads the start time of `pid` from `<proc>/<pid>/stat`.
fn start_time(proc_root: &Path, pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    parse_start_time(&stat)
}

/// Field 22 of a `/proc/<pid>/stat` line. The command name (field 2) may contain spaces and
/// parentheses, so fields are counted from the last `)`.
fn parse_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ')': field 3 (state) is the first token, so field 22 is the 20th.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Everything one run created.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    pub schema: u32,
    pub run_id: String,
    pub topology: String,
    pub harness: Option<ProcessId>,
    pub results_dir: PathBuf,
    /// Cgroup paths relative to each hierarchy's root, e.g. `diorama/<run>/<node>`,
    /// leaves after their parents.
    pub cgroups: Vec<String>,
    /// Node name → its outer `__init` process.
    pub nodes: BTreeMap<String, ProcessId>,
    /// Network devices created in the root network namespace (kernel backend), by name.
    pub devices: Vec<String>,
}

/// A run's state directory.
#[derive(Debug)]
pub struct StateDir {
    dir: PathBuf,
    record: RunRecord,
}

impl StateDir {
    /// Creates the state directory of a new run under `root` and writes its first record.
    /// The run id must be unique among live and crashed runs (it names the cgroups too):
    /// when `record.run_id` is taken, `-2`, `-3`, … are appended, and the record says which.
    pub fn create(root: &Path, mut record: RunRecord) -> Result<Self, StateError> {
        std::fs::create_dir_all(root).map_err(|source| StateError::Create { path: root.to_owned(), source })?;
        let base = record.run_id.clone();
        let mut n = 1u32;
        loop {
            let id = if n == 1 { base.clone() } else { format!("{base}-{n}") };
            let dir = root.join(&id);
            // `create_dir` is atomic: two harnesses racing for one name cannot both win it.
            match std::fs::create_dir(&dir) {
                Ok(()) => {
                    record.run_id = id;
                    let state = Self { dir, record };
                    state.save()?;
                    return Ok(state);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 10_000 => n += 1,
                Err(source) => return Err(StateError::Create { path: dir, source }),
            }
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn record(&self) -> &RunRecord {
        &self.record
    }

    /// Changes the record and persists it before returning.
    pub fn update(&mut self, change: impl FnOnce(&mut RunRecord)) -> Result<(), StateError> {
        change(&mut self.record);
        self.save()
    }

    fn save(&self) -> Result<(), StateError> {
        let path = self.dir.join("state.json");
        let tmp = self.dir.join("state.json.tmp");
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&serde_json::to_vec_pretty(&self.record).map_err(std::io::Error::other)?)?;
            file.sync_data()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|source| StateError::Write { path, source })
    }

    /// Removes the state directory (after everything it names is gone).
    pub fn remove(self) -> Result<(), StateError> {
        // The nodes' directories first, many at once (the state may sit on a journalled
        // disk, where 1,000 of them one by one took about a second).
        if let Ok(nodes) = std::fs::read_dir(self.dir.join("nodes")) {
            let dirs: Vec<PathBuf> = nodes.flatten().map(|e| e.path()).collect();
            for (dir, result) in crate::parallel::map(dirs.clone(), std::fs::remove_dir_all).into_iter().enumerate() {
                result.map_err(|source| StateError::Write { path: dirs[dir].clone(), source })?;
            }
        }
        std::fs::remove_dir_all(&self.dir).map_err(|source| StateError::Write { path: self.dir.clone(), source })
    }

    /// Every run recorded under `root`, with its record.
    pub fn list(root: &Path) -> Result<Vec<StateDir>, StateError> {
        let entries = match std::fs::read_dir(root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(StateError::Read { path: root.to_owned(), source }),
        };
        let mut runs = Vec::new();
        for entry in entries.flatten() {
            let dir = entry.path();
            if !dir.is_dir() {
                continue;
            }
            let path = dir.join("state.json");
            let record = match std::fs::read(&path) {
                Ok(bytes) => {
                    serde_json::from_slice(&bytes).map_err(|source| StateError::Parse { path: path.clone(), source })?
                }
                // A directory without a record holds nothing we created beyond itself.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    RunRecord { run_id: entry.file_name().to_string_lossy().into_owned(), ..RunRecord::default() }
                }
                Err(source) => return Err(StateError::Read { path, source }),
            };
            runs.push(StateDir { dir, record });
        }
        runs.sort_by(|a, b| a.record.run_id.cmp(&b.record.run_id));
        Ok(runs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_field_22_even_with_odd_command_names() {
        let stat = "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(stat), Some(987_654));
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn own_process_is_alive_and_identified() {
        let me = ProcessId::of(std::process::id()).unwrap();
        assert!(me.alive());
        let recycled = ProcessId { start_time: me.start_time + 1, ..me };
        assert!(!recycled.alive());
    }

    #[test]
    fn records_persist_and_list() {
        let root = tempfile::tempdir().unwrap();
        let mut state =
            StateDir::create(root.path(), RunRecord { schema: 1, run_id: "r1".into(), ..RunRecord::default() })
                .unwrap();
        state.update(|r| r.cgroups.push("diorama/r1/web0".into())).unwrap();
        let runs = StateDir::list(root.path()).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].record().cgroups, vec!["diorama/r1/web0".to_owned()]);
        runs.into_iter().next().unwrap().remove().unwrap();
        assert!(StateDir::list(root.path()).unwrap().is_empty());
    }

    #[test]
    fn a_taken_run_id_gets_a_suffix() {
        let root = tempfile::tempdir().unwrap();
        let rec = || RunRecord { schema: 1, run_id: "scaled".into(), ..RunRecord::default() };
        let a = StateDir::create(root.path(), rec()).unwrap();
        let b = StateDir::create(root.path(), rec()).unwrap();
        assert_eq!(a.record().run_id, "scaled");
        assert_eq!(b.record().run_id, "scaled-2");
        assert_ne!(a.dir(), b.dir());
    }
}
