//! Access to a traced process's memory.
//!
//! [`Memory`] is a trait so that the auxiliary-vector walk and the syscall rewriting can be
//! unit-tested on a byte buffer. [`ProcessMemory`] uses `process_vm_readv`/`writev`: one
//! syscall per access, no file descriptor to cache per process.

use std::io::{IoSlice, IoSliceMut};

use nix::sys::uio::{process_vm_readv, process_vm_writev, RemoteIoVec};
use nix::unistd::Pid;

/// Reads and writes another address space.
pub trait Memory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> std::io::Result<()>;
    fn write(&self, addr: u64, buf: &[u8]) -> std::io::Result<()>;

    fn read_u64(&self, addr: u64) -> std::io::Result<u64> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Two consecutive 64-bit words (a `timespec`, `timeval`).
    fn read_pair(&self, addr: u64) -> std::io::Result<(i64, i64)> {
        let mut b = [0u8; 16];
        self.read(addr, &mut b)?;
        let (a, c) = b.split_at(8);
        Ok((i64::from_le_bytes(a.try_into().unwrap_or_default()), i64::from_le_bytes(c.try_into().unwrap_or_default())))
    }

    fn write_pair(&self, addr: u64, a: i64, b: i64) -> std::io::Result<()> {
        let mut buf = [0u8; 16];
        buf[..8].copy_from_slice(&a.to_le_bytes());
        buf[8..].copy_from_slice(&b.to_le_bytes());
        self.write(addr, &buf)
    }
}

/// The memory of process (thread) `pid`.
#[derive(Clone, Copy, Debug)]
pub struct ProcessMemory(pub Pid);

fn short(done: usize, want: usize) -> std::io::Result<()> {
    if done == want {
        Ok(())
    } else {
        Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("partial access: {done} of {want} bytes")))
    }
}

impl Memory for ProcessMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let want = buf.len();
        let remote = [RemoteIoVec { base: addr as usize, len: want }];
        let n = process_vm_readv(self.0, &mut [IoSliceMut::new(buf)], &remote)?;
        short(n, want)
    }

    fn write(&self, addr: u64, buf: &[u8]) -> std::io::Result<()> {
        let remote = [RemoteIoVec { base: addr as usize, len: buf.len() }];
        let n = process_vm_writev(self.0, &[IoSlice::new(buf)], &remote)?;
        short(n, buf.len())
    }
}

/// A byte buffer mapped at `base`: the test double.
#[derive(Debug, Default)]
pub struct BufferMemory {
    pub base: u64,
    pub bytes: std::cell::RefCell<Vec<u8>>,
}

impl BufferMemory {
    fn range(&self, addr: u64, len: usize) -> std::io::Result<std::ops::Range<usize>> {
        let start = addr.checked_sub(self.base).map(|o| o as usize);
        match start {
            Some(s) if s + len <= self.bytes.borrow().len() => Ok(s..s + len),
            _ => Err(std::io::Error::from_raw_os_error(libc::EFAULT)),
        }
    }
}

impl Memory for BufferMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let r = self.range(addr, buf.len())?;
        buf.copy_from_slice(&self.bytes.borrow()[r]);
        Ok(())
    }

    fn write(&self, addr: u64, buf: &[u8]) -> std::io::Result<()> {
        let r = self.range(addr, buf.len())?;
        self.bytes.borrow_mut()[r].copy_from_slice(buf);
        Ok(())
    }
}
