//! Confinement of a node's processes: what of the host they may write.
//!
//! # Design
//! Everything here happens in the node's own mount namespace (made private first), so the
//! host and the other nodes keep their views. As runc's `readonlyPaths` do, a tree is made
//! read-only by bind-mounting it over itself and remounting every mount of the new copy
//! read-only (a bind remount changes the flags of this namespace's mount only, never the
//! filesystem's). The copy goes *over* the original so that descriptors opened before (the
//! node's `cgroup.procs` files, which join the command to its cgroups) keep writing
//! through the covered original: a mount with open writers cannot be remounted read-only.
//!
//! - `/sys` (with the cgroup hierarchies under it) is read-only: a node cannot raise its
//!   CPU quota, memory or pids limit, or freeze and thaw itself; reads keep working.
//! - `/etc/hosts`, one file of the run's state bound in every node, is read-only.
//! - `/proc/sys` is read-only except `/proc/sys/net`, which is the node's own network
//!   namespace's; so are `/proc/sysrq-trigger` and the other host-wide files of `/proc`.
//! - The node's command loses the capabilities that would undo this (`CAP_SYS_ADMIN`:
//!   mount, umount, setns) or reach around it ([`KEPT_CAPABILITIES`]).
//! - A [`View`], which every node has: the run's results directory and the harness's state
//!   read-only with writable holes (the node's own directory and its clock control file),
//!   plus the topology's optional fresh private directories and read-only host paths.
//!   Paths are resolved (symbolic links followed) before they are mounted, since mountinfo
//!   lists resolved mount points, and a read-only tree that mountinfo does not show fails
//!   the node's set-up rather than staying writable.
//!
//! # Limitations
//! Nodes run as root: the rest of the host's filesystem stays writable unless the view
//! makes it read-only. See `docs/security.md` for the threat model.

use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use serde::{Deserialize, Serialize};

/// A node's filesystem view, applied in its mount namespace before its command starts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct View {
    /// Directories that get a fresh, empty tmpfs seen by this node only.
    pub private: Vec<PathBuf>,
    /// Host paths the node sees read-only (with every mount below them).
    pub read_only: Vec<PathBuf>,
    /// Paths inside `read_only` trees that stay writable (applied last).
    pub writable: Vec<PathBuf>,
}

/// Host-wide files of `/proc` that a node must not write (after runc's defaults).
const PROC_READ_ONLY: [&str; 5] = ["/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs"];

/// Capabilities the node's command keeps (Docker's default set, plus `CAP_NET_ADMIN` for
/// its own network namespace and `CAP_IPC_LOCK`). Notably dropped: `CAP_SYS_ADMIN` (mounts:
/// it would unmount the read-only copies), `CAP_SYS_NICE` (real-time scheduling escapes
/// the CFS quota), `CAP_SYS_RESOURCE`, `CAP_SYS_TIME` (the host clock), `CAP_MKNOD` (raw
/// disks), `CAP_DAC_READ_SEARCH` (`open_by_handle_at` reaches any file), `CAP_SYS_MODULE`,
/// `CAP_SYS_RAWIO`, `CAP_SYS_PTRACE`, `CAP_SYS_BOOT`, `CAP_BPF`. Kept beyond Docker's set:
/// `CAP_PERFMON`, because the shim's CPU pacing counts each thread's kernel time with a
/// `task-clock` perf event, which `perf_event_paranoid` 2 denies without it (the shim would
/// fall back to user time only, and a node's system calls would run unpaced).
pub(super) const KEPT_CAPABILITIES: [u32; 19] = [
    0,  // CAP_CHOWN
    1,  // CAP_DAC_OVERRIDE
    3,  // CAP_FOWNER
    4,  // CAP_FSETID
    5,  // CAP_KILL
    6,  // CAP_SETGID
    7,  // CAP_SETUID
    8,  // CAP_SETPCAP
    10, // CAP_NET_BIND_SERVICE
    11, // CAP_NET_BROADCAST
    12, // CAP_NET_ADMIN
    13, // CAP_NET_RAW
    14, // CAP_IPC_LOCK
    15, // CAP_IPC_OWNER
    18, // CAP_SYS_CHROOT
    28, // CAP_LEASE
    29, // CAP_AUDIT_WRITE
    31, // CAP_SETFCAP
    38, // CAP_PERFMON: the pacing's task-clock event with kernel time
];

/// Makes `/sys` read-only in the current mount namespace.
pub(super) fn read_only_sys() -> Result<(), String> {
    read_only_tree(Path::new("/sys"))
}

/// Makes the host-wide parts of a freshly mounted `/proc` read-only, leaving
/// `/proc/sys/net` writable.
pub(super) fn read_only_proc() -> Result<(), String> {
    for path in PROC_READ_ONLY.map(Path::new).into_iter().filter(|p| p.exists()) {
        read_only_tree(path)?;
    }
    writable(Path::new("/proc/sys/net"))
}

/// Applies `view`: read-only trees, then private directories (created first, since a
/// read-only tree may hold them), then writable holes.
pub(super) fn apply_view(view: &View) -> Result<(), String> {
    for dir in &view.private {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    for path in &view.read_only {
        read_only_tree(path)?;
    }
    for dir in &view.private {
        mount(Some("tmpfs"), dir, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=1777"))
            .map_err(|e| format!("mount a private tmpfs on {}: {e}", dir.display()))?;
    }
    for path in &view.writable {
        writable(path)?;
    }
    Ok(())
}

/// Bind-mounts `path` over itself with every mount below it, then remounts each mount of
/// the copy read-only, keeping its other per-mount flags.
pub(super) fn read_only_tree(path: &Path) -> Result<(), String> {
    let path = &resolve(path)?;
    mount(Some(path), path, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(|e| format!("bind {} over itself: {e}", path.display()))?;
    let table = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| format!("read mountinfo: {e}"))?;
    let mounts = mounts_under(&table, path);
    if mounts.is_empty() {
        // Never left writable because its name did not match: fail the node instead.
        return Err(format!("{} is not in mountinfo after its bind", path.display()));
    }
    // Parents come before their children in mountinfo; a path listed twice (the covered
    // original and the copy) resolves to the copy both times.
    for (point, flags) in mounts {
        remount_read_only(&point, flags)?;
    }
    Ok(())
}

/// A bind remount read-only fails with `EBUSY` while any file is open for writing through
/// that mount (or an atime update holds it for an instant). Nothing of this node writes
/// there during set-up, but a process that enters the namespace can (the harness waits for
/// set-up before entering: `enter_command`); retried for up to about 0.2 s, then reported.
fn remount_read_only(point: &Path, flags: MsFlags) -> Result<(), String> {
    let flags = flags | MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
    let mut tries = 0;
    loop {
        match mount(None::<&str>, point, None::<&str>, flags, None::<&str>) {
            Err(nix::Error::EBUSY) if tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            r => return r.map_err(|e| format!("remount {} read-only: {e}", point.display())),
        }
    }
}

/// Makes `path` (inside a read-only tree) writable again: a bind over itself inherits the
/// read-only flag, which a bind remount then clears.
fn writable(path: &Path) -> Result<(), String> {
    let path = &resolve(path)?;
    mount(Some(path), path, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| format!("bind {} over itself: {e}", path.display()))?;
    let table = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| format!("read mountinfo: {e}"))?;
    let flags = mounts_under(&table, path).into_iter().find(|(p, _)| p == path).map_or(MsFlags::empty(), |(_, f)| f);
    mount(None::<&str>, path, None::<&str>, flags | MsFlags::MS_REMOUNT | MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| format!("remount {} writable: {e}", path.display()))
}

/// `path` with every symbolic link resolved: how mountinfo names its mount point.
fn resolve(path: &Path) -> Result<PathBuf, String> {
    std::fs::canonicalize(path).map_err(|e| format!("resolve {}: {e}", path.display()))
}

/// Mount points at or below `root` in a mountinfo table, with the per-mount flags a bind
/// remount must keep (`nosuid`, `nodev`, `noexec`, the atime mode).
fn mounts_under(table: &str, root: &Path) -> Vec<(PathBuf, MsFlags)> {
    table
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let point = PathBuf::from(unescape(fields.nth(4)?));
            let options = fields.next()?;
            point.starts_with(root).then(|| (point, per_mount_flags(options)))
        })
        .collect()
}

fn per_mount_flags(options: &str) -> MsFlags {
    options.split(',').fold(MsFlags::empty(), |acc, o| {
        acc | match o {
            "nosuid" => MsFlags::MS_NOSUID,
            "nodev" => MsFlags::MS_NODEV,
            "noexec" => MsFlags::MS_NOEXEC,
            "noatime" => MsFlags::MS_NOATIME,
            "nodiratime" => MsFlags::MS_NODIRATIME,
            "relatime" => MsFlags::MS_RELATIME,
            _ => MsFlags::empty(),
        }
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,nosuid,nodev,noexec,relatime - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 27 0:40 / /system\\040files rw - ext4 /dev/sda rw
";

    #[test]
    fn finds_every_mount_of_a_tree_and_keeps_their_flags() {
        let found = mounts_under(TABLE, Path::new("/sys"));
        let points: Vec<_> = found.iter().map(|(p, _)| p.to_str().unwrap()).collect();
        assert_eq!(points, ["/sys", "/sys/fs/cgroup", "/sys/fs/cgroup/cpu"], "/system is not under /sys");
        assert_eq!(found[0].1, MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RELATIME);
        assert_eq!(found[1].1, MsFlags::MS_RELATIME);
    }

    #[test]
    fn mount_points_are_unescaped() {
        assert_eq!(unescape("/system\\040files"), "/system files");
        assert_eq!(unescape("/a\\134b"), "/a\\b");
        assert_eq!(unescape("/plain\\"), "/plain\\", "a trailing backslash stays");
        let found = mounts_under(TABLE, Path::new("/system files"));
        assert_eq!(found.len(), 1);
    }

    #[test]
    fn the_command_keeps_no_capability_that_undoes_the_mounts() {
        for cap in [21, 23, 24, 25, 27, 2, 16, 17, 19, 39] {
            assert!(!KEPT_CAPABILITIES.contains(&cap), "capability {cap} must be dropped");
        }
        assert!(KEPT_CAPABILITIES.contains(&38), "CAP_PERFMON: the pacing's task-clock event with kernel time");
        assert!(KEPT_CAPABILITIES.contains(&12), "CAP_NET_ADMIN: the node's own network namespace");
    }
}
