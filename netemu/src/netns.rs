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

impl NetNs {
    /// Another descriptor of the same namespace.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Self { fd: self.fd.try_clone()? })
    }

    /// Writes `value` to `/proc/sys/<key>` (dots as slashes) inside this namespace and
    /// returns what reads back.
    pub fn sysctl_write(&self, key: &str, value: &str) -> io::Result<String> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let value = value.to_owned();
        self.run_in(move || {
            std::fs::write(&path, &value)?;
            Ok(std::fs::read_to_string(&path)?.trim().to_owned())
        })
    }

    /// Reads `/proc/sys/<key>` inside this namespace (`None`: no such setting).
    pub fn sysctl_read(&self, key: &str) -> io::Result<Option<String>> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        self.run_in(move || match std::fs::read_to_string(&path) {
            Ok(v) => Ok(Some(v.trim().to_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctls_are_per_namespace() {
        if !nix::unistd::geteuid().is_root() {
            println!("SKIPPED: sysctls_are_per_namespace: needs root");
            return;
        }
        let ns = NetNs::create().unwrap();
        let host = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_fin_timeout").unwrap();
        assert_eq!(ns.sysctl_write("net.ipv4.tcp_fin_timeout", "77").unwrap(), "77");
        assert_eq!(std::fs::read_to_string("/proc/sys/net/ipv4/tcp_fin_timeout").unwrap(), host);
        assert_eq!(ns.sysctl_read("net.ipv4.no_such_thing").unwrap(), None);
        assert!(ns.try_clone().is_ok());
    }
}
