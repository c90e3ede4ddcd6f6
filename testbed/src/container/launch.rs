//! The harness side of starting a node.

use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use super::sys;

/// Errors of starting or supervising a node.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("start node {node} with {exe}")]
    Spawn {
        node: String,
        exe: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("signal node {node}")]
    Signal {
        node: String,
        #[source]
        source: nix::Error,
    },
    #[error("wait for node {node}")]
    Wait {
        node: String,
        #[source]
        source: std::io::Error,
    },
    #[error("node {node} is still setting up (its confinement is not applied yet)")]
    SettingUp { node: String },
    #[error("open namespace {path}")]
    Namespace {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What the harness needs to start one node.
pub struct Launch<'a> {
    pub node: &'a str,
    /// The `diorama` executable that provides `__init`.
    pub init_exe: &'a Path,
    /// The node's [`super::InitConfig`], written as JSON.
    pub config_path: &'a Path,
    pub stdout: File,
    pub stderr: File,
    /// The node's network namespace; `None` gives it a fresh, empty one.
    pub netns: Option<BorrowedFd<'a>>,
}

/// A running node: the outer `__init` process.
#[derive(Debug)]
pub struct NodeProcess {
    pub node: String,
    child: Child,
}

/// Starts a node. Returns once `__init` has been exec'd.
pub fn spawn(launch: Launch<'_>) -> Result<NodeProcess, ContainerError> {
    let mut cmd = Command::new(launch.init_exe);
    cmd.arg0(format!("diorama:{}", launch.node))
        .arg("__init")
        .arg(launch.config_path)
        .stdin(Stdio::null())
        .stdout(launch.stdout)
        .stderr(launch.stderr)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()));
    // A node without a network of its own still gets an isolated, empty network namespace.
    let mut fresh_net = false;
    let netns = match launch.netns {
        Some(fd) => Some(fd.as_raw_fd()),
        None => {
            fresh_net = true;
            None
        }
    };
    sys::install_launch_hook(&mut cmd, netns, fresh_net);
    let child = cmd.spawn().map_err(|source| ContainerError::Spawn {
        node: launch.node.to_owned(),
        exe: launch.init_exe.to_owned(),
        source,
    })?;
    Ok(NodeProcess { node: launch.node.to_owned(), child })
}

impl NodeProcess {
    /// PID of the outer `__init` (in the harness's PID namespace). It shares the node's
    /// network, mount, UTS and IPC namespaces, so `/proc/<pid>/net/*` and
    /// `/proc/<pid>/ns/*` describe the node.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the node; `__init` relays it to the node's command.
    pub fn signal(&self, signal: nix::sys::signal::Signal) -> Result<(), ContainerError> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        match nix::sys::signal::kill(pid, signal) {
            // Already gone (and perhaps not yet reaped): nothing to signal.
            Ok(()) | Err(nix::Error::ESRCH) => Ok(()),
            Err(source) => Err(ContainerError::Signal { node: self.node.clone(), source }),
        }
    }

    /// Non-blocking: the node's exit status if it has exited.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, ContainerError> {
        self.child.try_wait().map_err(|source| ContainerError::Wait { node: self.node.clone(), source })
    }

    /// Blocks until the node has exited.
    pub fn wait(&mut self) -> Result<ExitStatus, ContainerError> {
        self.child.wait().map_err(|source| ContainerError::Wait { node: self.node.clone(), source })
    }
}
