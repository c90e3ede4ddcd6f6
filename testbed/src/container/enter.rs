//! Running a command inside a running node (readiness checks, `diorama exec --node`).

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sched::CloneFlags;

use super::launch::ContainerError;
use super::sys;

/// The namespaces a command entering a node joins. The PID namespace is left out: a
/// process cannot move itself into one, and a check needs the node's network and files.
const NAMESPACES: [(&str, CloneFlags); 4] = [
    ("net", CloneFlags::CLONE_NEWNET),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    // Last: entering a mount namespace resets the root and working directory.
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// A command prepared to run inside the namespaces of the node whose outer `__init` is
/// `pid` (outside its cgroups: a check is the harness's work, not the node's). The returned
/// descriptors must outlive `spawn()` of the command.
///
/// Refused ([`ContainerError::SettingUp`]) until `__init` has forked the node's command,
/// i.e. finished the node's set-up: a command that entered the mount namespace during it
/// (a readiness check, whose shim maps the clock file read-write) held a writer on a mount
/// that `__init` was remounting read-only, which then failed with `EBUSY`.
pub fn enter_command(pid: u32, program: &Path, workdir: &Path) -> Result<(Command, Vec<OwnedFd>), ContainerError> {
    if !set_up(Path::new("/proc"), pid) {
        return Err(ContainerError::SettingUp { node: format!("pid {pid}") });
    }
    let mut held = Vec::with_capacity(NAMESPACES.len());
    let mut namespaces = Vec::with_capacity(NAMESPACES.len());
    for (name, kind) in NAMESPACES {
        let path = PathBuf::from(format!("/proc/{pid}/ns/{name}"));
        let fd: OwnedFd =
            File::open(&path).map_err(|source| ContainerError::Namespace { path: path.clone(), source })?.into();
        namespaces.push((fd.as_raw_fd(), kind));
        held.push(fd);
    }
    let workdir = CString::new(workdir.as_os_str().as_bytes()).unwrap_or_else(|_| c"/".to_owned());
    let mut cmd = Command::new(program);
    sys::install_enter_hook(&mut cmd, namespaces, workdir);
    Ok((cmd, held))
}

/// Whether the `__init` process `pid` has finished the node's set-up: it forks the node's
/// command (its only child) only after the confinement is applied. A kernel built without
/// `CONFIG_PROC_CHILDREN` has no `children` file: there the gate cannot tell and lets the
/// command in (the read-only remount still retries `EBUSY`), rather than refuse it forever.
fn set_up(proc_root: &Path, pid: u32) -> bool {
    let task = proc_root.join(format!("{pid}/task/{pid}"));
    match std::fs::read_to_string(task.join("children")) {
        Ok(children) => !children.trim().is_empty(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => task.is_dir(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod set_up_tests {
    use super::*;

    #[test]
    fn a_node_is_set_up_once_its_init_has_a_child() {
        let dir = tempfile::tempdir().unwrap();
        let task = dir.path().join("7/task/7");
        assert!(!set_up(dir.path(), 7), "no such process");
        std::fs::create_dir_all(&task).unwrap();
        assert!(set_up(dir.path(), 7), "no children file (CONFIG_PROC_CHILDREN off): cannot tell, let in");
        std::fs::write(task.join("children"), "").unwrap();
        assert!(!set_up(dir.path(), 7), "no child yet");
        std::fs::write(task.join("children"), "12 ").unwrap();
        assert!(set_up(dir.path(), 7));
    }
}
