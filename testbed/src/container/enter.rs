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
pub fn enter_command(pid: u32, program: &Path, workdir: &Path) -> Result<(Command, Vec<OwnedFd>), ContainerError> {
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
