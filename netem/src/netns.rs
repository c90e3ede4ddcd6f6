//! Network namespaces held by file descriptor.
//!
//! A namespace is created by a short-lived thread that `unshare`s and opens
//! `/proc/thread-self/ns/net`; it is never bind-mounted, so it disappears when the last
//! descriptor and process holding it go — a crashed harness leaves none behind once its
//! nodes are dead.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::sched::{setns, unshare, CloneFlags};

/// A network namespace.
#[derive(Debug)]
pub struct NetNs {
    fd: OwnedFd,
}

impl NetNs {
    /// Creates a new, empty network namespace.
    pub fn create() -> io::Result<Self> {
        std::thread::spawn(|| -> io::Result<Self> {
            // Only this thread moves; the process's other threads stay where they are.
            unshare(CloneFlags::CLONE_NEWNET)?;
            let fd = OwnedFd::from(File::open("/proc/thread-self/ns/net")?);
            Ok(Self { fd })
        })
        .join()
        .map_err(|_| io::Error::other("namespace thread panicked"))?
    }

    /// Runs `f` on a thread inside this namespace and returns its result.
    pub fn run_in<T: Send + 'static>(&self, f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
        let fd = self.fd.try_clone()?;
        std::thread::spawn(move || -> io::Result<T> {
            setns(&fd, CloneFlags::CLONE_NEWNET)?;
            f()
        })
        .join()
        .map_err(|_| io::Error::other("namespace thread panicked"))?
    }
}

impl AsFd for NetNs {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
