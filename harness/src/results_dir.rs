//! Claiming a results directory: one run (or one `test` or `validate`) per directory, and
//! never into the leftovers of another.
//!
//! # Design
//! [`ResultsDir::claim`] takes an exclusive, non-blocking `flock` on the directory itself
//! (its own file descriptor, opened close-on-exec) before anything is written into it, and
//! holds it until the [`ResultsDir`] is dropped. The kernel releases a `flock` when the last
//! descriptor of its open file closes, so the lock ends with the harness on every path:
//! a normal return, an error, Ctrl-C (an orderly stop that returns), a panic, or `kill -9`.
//! Node processes never hold it: they are exec'd, and the descriptor is close-on-exec.
//!
//! A directory that is not empty is refused, whatever it holds (a finished run, a crashed
//! run's `nodes/` with no `run.json`, anything else), unless `force` is given: then its
//! content is moved, under the lock, into a new sibling `DIR.replaced-<UTC time>`, so
//! nothing old is ever mixed into the new run. No lock file is created: a directory
//! holding only a lock file would look like a used one.
//!
//! # Limitations
//! `flock` is advisory, local to this host, and not reliable on some network filesystems
//! (NFS emulates it with POSIX locks): two hosts sharing a results tree are not protected.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::Error;

/// A results directory held for one run: empty when claimed, locked until dropped.
#[derive(Debug)]
pub struct ResultsDir {
    path: PathBuf,
    _lock: Flock<File>,
}

/// The `status` of a `run.json` stub: the run that holds the directory has not ended.
pub const STUB_STATUS: &str = "running";
/// The `status` of a stub turned into the record of a run that failed before its run engine
/// wrote `run.json` (a setup failure).
pub const FAILED_STATUS: &str = "failed";

impl ResultsDir {
    /// Creates `dir` if needed, locks it and makes sure it is empty (moving its content
    /// aside when `force`). `flag` names the option in messages (`--out`).
    pub fn claim(dir: &Path, force: bool, flag: &str) -> Result<Self, Error> {
        let files = |what: String| move |e: std::io::Error| Error::Files(format!("{what}: {e}"));
        if let Ok(meta) = std::fs::metadata(dir) {
            if !meta.is_dir() {
                return Err(Error::Usage(format!(
                    "{flag} {}: is a file, not a directory; name a new or empty directory",
                    dir.display()
                )));
            }
        }
        std::fs::create_dir_all(dir).map_err(files(format!("create {}", dir.display())))?;
        let path = dir.canonicalize().map_err(files(format!("resolve {}", dir.display())))?;
        let handle = File::open(&path).map_err(files(format!("open {}", path.display())))?;
        let lock = match Flock::lock(handle, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                return Err(Error::Usage(format!(
                    "{flag} {}: another diorama is writing into this directory{}; choose another {flag}",
                    path.display(),
                    holder(&path).map(|pid| format!(" (pid {pid})")).unwrap_or_default()
                )))
            }
            Err((_, errno)) => return Err(Error::Files(format!("lock {}: {errno}", path.display()))),
        };
        let entries = entries(&path).map_err(files(format!("read {}", path.display())))?;
        if !entries.is_empty() {
            if !force {
                let what = if path.join("run.json").exists() { "already holds a run" } else { "is not empty" };
                return Err(Error::Usage(format!(
                    "{flag} {}: {what} ({} entries); choose another {flag}, or --force to move its content aside",
                    path.display(),
                    entries.len()
                )));
            }
            let aside = move_aside(&path, &entries)?;
            testbed::note!("{}: moved its old content to {}", path.display(), aside.display());
        }
        Ok(Self { path, _lock: lock })
    }

    /// The directory, canonical.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the `run.json` stub that marks the directory as a run in progress (the run
    /// engine replaces it with the real `run.json` at the end).
    pub fn write_stub(&self, name: &str, topology_file: &Path, tdf: f64) -> Result<(), Error> {
        let stub = serde_json::json!({
            "schema": 1,
            "name": name,
            "topology_file": topology_file,
            "tdf": tdf,
            "status": STUB_STATUS,
            "pid": std::process::id(),
            "started_utc": chrono::Utc::now().to_rfc3339(),
        });
        self.write_run_json(&stub, "the run.json stub")
    }

    /// Ends this run's stub as a failed run, `error` its reason, when the run engine did not
    /// replace it (it failed before any node started: a cgroup, the network, a node that no
    /// mechanism dilates). Without this the directory would read as a run still in
    /// progress, or one that crashed. A `run.json` the engine wrote is left as it is.
    /// Returns whether the stub was replaced.
    pub fn fail_stub(&self, error: &str) -> Result<bool, Error> {
        let path = self.path.join("run.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::Files(format!("read {}: {e}", path.display())))?;
        let Ok(serde_json::Value::Object(mut run)) = serde_json::from_str::<serde_json::Value>(&text) else {
            return Ok(false);
        };
        let ours = run.get("pid").and_then(serde_json::Value::as_u64) == Some(u64::from(std::process::id()));
        if run.get("status").and_then(serde_json::Value::as_str) != Some(STUB_STATUS) || !ours {
            return Ok(false);
        }
        for (key, value) in [
            ("status", serde_json::json!(FAILED_STATUS)),
            ("success", serde_json::json!(false)),
            ("error", serde_json::json!(error)),
            ("end_reason", serde_json::json!(error)),
            ("ended_utc", serde_json::json!(chrono::Utc::now().to_rfc3339())),
        ] {
            run.insert(key.to_owned(), value);
        }
        self.write_run_json(&serde_json::Value::Object(run), "the failed run's run.json")?;
        Ok(true)
    }

    fn write_run_json(&self, run: &serde_json::Value, what: &str) -> Result<(), Error> {
        std::fs::write(self.path.join("run.json"), run.to_string())
            .map_err(|e| Error::Files(format!("write {what} in {}: {e}", self.path.display())))
    }
}

fn entries(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut list = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        list.push(entry?.path());
    }
    list.sort();
    Ok(list)
}

/// The pid in the directory's `run.json` stub, if it is one.
fn holder(dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join("run.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    (v.get("status")?.as_str()? == STUB_STATUS).then(|| v.get("pid")?.as_u64())?
}

/// Moves `entries` of `dir` into a new sibling `DIR.replaced-<time>`; returns it.
fn move_aside(dir: &Path, entries: &[PathBuf]) -> Result<PathBuf, Error> {
    let name = dir.file_name().map_or_else(|| "results".into(), |n| n.to_string_lossy().into_owned());
    let parent = dir.parent().unwrap_or(Path::new("/"));
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let mut aside = parent.join(format!("{name}.replaced-{stamp}"));
    let mut n = 1;
    // `create_dir` (not `_all`) fails on an existing name, so two forced runs never share one.
    while let Err(e) = std::fs::create_dir(&aside) {
        if e.kind() != std::io::ErrorKind::AlreadyExists || n > 100 {
            return Err(Error::Files(format!("create {}: {e}", aside.display())));
        }
        n += 1;
        aside = parent.join(format!("{name}.replaced-{stamp}-{n}"));
    }
    for entry in entries {
        let target = aside.join(entry.file_name().unwrap_or_default());
        std::fs::rename(entry, &target)
            .map_err(|e| Error::Files(format!("move {} to {}: {e}", entry.display(), target.display())))?;
    }
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_directory_is_created_and_claimed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        let claimed = ResultsDir::claim(&dir, false, "--out").unwrap();
        assert!(claimed.path().is_dir());
    }

    #[test]
    fn a_second_claim_is_refused_while_the_first_holds_and_granted_after() {
        let tmp = tempfile::tempdir().unwrap();
        let first = ResultsDir::claim(tmp.path(), false, "--out").unwrap();
        first.write_stub("t", Path::new("t.yaml"), 2.0).unwrap();
        let err = ResultsDir::claim(tmp.path(), true, "--out").unwrap_err().to_string();
        assert!(err.contains("another diorama is writing"), "{err}");
        assert!(err.contains(&format!("(pid {})", std::process::id())), "{err}");
        // Even --force does not move a live run's files away.
        assert!(tmp.path().join("run.json").is_file());
        drop(first);
        let err = ResultsDir::claim(tmp.path(), false, "--out").unwrap_err().to_string();
        assert!(err.contains("already holds a run"), "{err}");
    }

    #[test]
    fn a_stub_ends_as_a_failed_run_and_then_reads_as_a_finished_one() {
        let tmp = tempfile::tempdir().unwrap();
        let claimed = ResultsDir::claim(tmp.path(), false, "--out").unwrap();
        claimed.write_stub("t", Path::new("/x/t.yaml"), 4.0).unwrap();
        assert!(claimed.fail_stub("the run failed: node a cannot be dilated").unwrap());
        let run: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(tmp.path().join("run.json")).unwrap()).unwrap();
        assert_eq!(run["status"], FAILED_STATUS);
        assert_eq!(run["success"], false);
        assert_eq!(run["error"], "the run failed: node a cannot be dilated");
        assert_eq!((run["name"].as_str(), run["tdf"].as_f64()), (Some("t"), Some(4.0)));
        assert!(run["started_utc"].is_string() && run["ended_utc"].is_string(), "{run}");
        assert!(!claimed.fail_stub("again").unwrap(), "only a stub is replaced");
        drop(claimed);
        let err = ResultsDir::claim(tmp.path(), false, "--out").unwrap_err().to_string();
        assert!(err.contains("already holds a run"), "{err}");
    }

    #[test]
    fn a_run_json_the_engine_wrote_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let claimed = ResultsDir::claim(tmp.path(), false, "--out").unwrap();
        claimed.write_stub("t", Path::new("t.yaml"), 1.0).unwrap();
        let full = r#"{"schema":1,"name":"t","success":false,"end_reason":"node a died"}"#;
        std::fs::write(tmp.path().join("run.json"), full).unwrap();
        assert!(!claimed.fail_stub("the run failed").unwrap());
        assert_eq!(std::fs::read_to_string(tmp.path().join("run.json")).unwrap(), full);
    }

    #[test]
    fn a_non_empty_directory_without_run_json_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("nodes")).unwrap();
        let err = ResultsDir::claim(tmp.path(), false, "--out").unwrap_err();
        assert!(matches!(err, Error::Usage(_)), "{err:?}");
        assert!(err.to_string().contains("is not empty"), "{err}");
    }

    #[test]
    fn force_moves_the_old_content_aside_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("out");
        std::fs::create_dir_all(dir.join("nodes/a")).unwrap();
        std::fs::write(dir.join("nodes/a/stdout"), "old").unwrap();
        std::fs::write(dir.join("run.json"), "{}").unwrap();
        let claimed = ResultsDir::claim(&dir, true, "--out").unwrap();
        assert_eq!(std::fs::read_dir(claimed.path()).unwrap().count(), 0);
        let aside: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("out.replaced-"))
            .collect();
        assert_eq!(aside.len(), 1);
        assert_eq!(std::fs::read_to_string(aside[0].path().join("nodes/a/stdout")).unwrap(), "old");
        assert!(aside[0].path().join("run.json").is_file());
    }

    #[test]
    fn a_regular_file_is_refused_as_usage() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let err = ResultsDir::claim(&file, true, "--out").unwrap_err();
        assert!(matches!(err, Error::Usage(_)), "{err:?}");
        assert!(err.to_string().contains("is a file"), "{err}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
    }
}
