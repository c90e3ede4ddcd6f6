//! The cgroup2 directories the sock_ops program attaches to.
//!
//! BPF attaches to cgroup2 directories only. On a cgroup-v2 host a node's own cgroup is one;
//! on a v1 host (controllers in v1 hierarchies) every process is also in the separate
//! cgroup2 hierarchy (often mounted at `/sys/fs/cgroup/unified`), and a node's processes join
//! a directory there as well.
//!
//! # Invariants
//! A [`NodeCgroup`] removes its directory on [`NodeCgroup::remove`]; the kernel refuses while
//! a process is still inside, which is reported rather than ignored. Attachments made with
//! BPF links vanish with the link, so a removed directory leaves nothing behind.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::Error;

/// The mount point of the cgroup2 hierarchy, from a `/proc/self/mountinfo` text.
pub fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // "<id> <parent> <maj:min> <root> <mount point> <opts> [optional...] - <fstype> ..."
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        let mount_point = left.split_whitespace().nth(4)?;
        (fstype == "cgroup2").then(|| PathBuf::from(unescape_octal(mount_point)))
    })
}

/// The cgroup2 mount of this host.
pub fn host_cgroup2_mount() -> Result<PathBuf, Error> {
    let text = fs::read_to_string("/proc/self/mountinfo").map_err(|e| Error::Io("/proc/self/mountinfo".into(), e))?;
    cgroup2_mount(&text).ok_or(Error::NoCgroup2)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A node's cgroup2 directory.
#[derive(Debug)]
pub struct NodeCgroup {
    path: PathBuf,
    created: bool,
}

impl NodeCgroup {
    /// Creates `path` (and missing parents), or adopts it if it exists (a v2 host's node
    /// cgroup, made by the container layer; it is then not removed by [`Self::remove`]).
    pub fn create(path: &Path) -> Result<Self, Error> {
        let created = !path.exists();
        fs::create_dir_all(path).map_err(|e| Error::Io(path.to_path_buf(), e))?;
        Ok(Self { path: path.to_path_buf(), created })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves process `pid` (all its threads) into this cgroup.
    pub fn add(&self, pid: u32) -> Result<(), Error> {
        let procs = self.path.join("cgroup.procs");
        fs::write(&procs, pid.to_string()).map_err(|e| Error::Io(procs, e))
    }

    /// The processes inside.
    pub fn pids(&self) -> Result<Vec<u32>, Error> {
        let procs = self.path.join("cgroup.procs");
        let text = fs::read_to_string(&procs).map_err(|e| Error::Io(procs, e))?;
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// SIGKILLs every process inside (`cgroup.kill`, kernel 5.14) and waits up to `wait`
    /// for the cgroup to empty.
    pub fn kill_all(&self, wait: std::time::Duration) -> Result<(), Error> {
        let kill = self.path.join("cgroup.kill");
        fs::write(&kill, "1").map_err(|e| Error::Io(kill, e))?;
        let deadline = std::time::Instant::now() + wait;
        while !self.pids()?.is_empty() {
            if std::time::Instant::now() >= deadline {
                let busy = io::Error::from(io::ErrorKind::ResourceBusy);
                return Err(Error::Io(self.path.clone(), busy));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(())
    }

    /// Removes the directory if this value created it; fails while processes remain.
    pub fn remove(self) -> Result<(), Error> {
        if !self.created {
            return Ok(());
        }
        remove_tree(&self.path)
    }
}

/// Removes a cgroup2 directory and its empty children, deepest first; a missing directory is
/// not an error (cleanup runs after crashes too).
pub fn remove_tree(path: &Path) -> Result<(), Error> {
    let entries = match fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::Io(path.to_path_buf(), e)),
    };
    for entry in entries.flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_tree(&entry.path())?;
        }
    }
    match fs::remove_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io(path.to_path_buf(), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1_HOST: &str = "\
25 1 0:23 / /sys rw,nosuid shared:6 - sysfs sysfs rw
30 25 0:26 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate
33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw shared:12 - cgroup cgroup rw,cpu,cpuacct
";

    #[test]
    fn finds_the_unified_mount_on_a_v1_host() {
        assert_eq!(cgroup2_mount(V1_HOST), Some(PathBuf::from("/sys/fs/cgroup/unified")));
    }

    #[test]
    fn finds_the_v2_root_and_unescapes() {
        let v2 = "31 1 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount(v2), Some(PathBuf::from("/sys/fs/cgroup")));
        let odd = "31 1 0:27 / /mnt/cg\\040two rw - cgroup2 none rw\n";
        assert_eq!(cgroup2_mount(odd), Some(PathBuf::from("/mnt/cg two")));
        assert_eq!(cgroup2_mount("25 1 0:23 / /sys rw - sysfs sysfs rw\n"), None);
    }

    #[test]
    fn created_directories_are_removed_adopted_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("run/node");
        let cg = NodeCgroup::create(&node).unwrap();
        cg.remove().unwrap();
        assert!(!node.exists());
        fs::create_dir_all(&node).unwrap();
        let adopted = NodeCgroup::create(&node).unwrap();
        adopted.remove().unwrap();
        assert!(node.exists());
        remove_tree(&dir.path().join("run")).unwrap();
        assert!(!dir.path().join("run").exists());
        remove_tree(&dir.path().join("absent")).unwrap();
    }
}
