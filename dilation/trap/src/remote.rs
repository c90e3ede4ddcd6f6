//! System calls made by a stopped tracee on the tracer's behalf.
//!
//! # Design
//! The tracee's registers are saved; for each call, `rip` is set to a `syscall`
//! instruction that already exists in its memory (a `0f 05` pair of the vDSO, see
//! [`crate::vdso::Image::syscall_gadget`]), `rax` and the argument registers to the call,
//! and the thread is single-stepped: it runs that one instruction and stops with
//! `SIGTRAP`, `rax` holding the result. Nothing is written to the tracee's code. The
//! registers are restored at the end ([`Remote::finish`]). `orig_rax` is set to −1 so that
//! the kernel never treats the stop as an interrupted call to restart.
//!
//! A signal that arrives meanwhile is held (its stop is answered without it) and queued
//! again at [`Remote::finish`]. If the tracee dies, the wait status is handed back to the
//! tracer's loop, which must see every exit.

use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Errors of a remote call.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("access the registers of {0}")]
    Regs(Pid, #[source] Errno),
    #[error("single-step {0}")]
    Step(Pid, #[source] Errno),
    #[error("the traced process ended during a remote call")]
    Gone(WaitStatus),
    #[error("remote call stopped at {rip:#x}, not after the syscall instruction at {gadget:#x}")]
    Lost { rip: u64, gadget: u64 },
}

/// A stopped thread lent to the tracer.
#[derive(Debug)]
pub struct Remote {
    pid: Pid,
    saved: libc::user_regs_struct,
    gadget: u64,
    held: Vec<Signal>,
}

impl Remote {
    /// `gadget` is the address of a `0f 05` pair in the tracee.
    pub fn new(pid: Pid, gadget: u64) -> Result<Self, RemoteError> {
        let saved = ptrace::getregs(pid).map_err(|e| RemoteError::Regs(pid, e))?;
        Ok(Self { pid, saved, gadget, held: Vec::new() })
    }

    /// The thread's saved registers (its state at the stop).
    pub fn saved(&self) -> &libc::user_regs_struct {
        &self.saved
    }

    /// Makes the tracee run `syscall(nr, args…)`; returns the raw result (−errno on error).
    pub fn call(&mut self, nr: i64, args: [u64; 6]) -> Result<i64, RemoteError> {
        let mut r = self.saved;
        r.rip = self.gadget;
        r.rax = nr as u64;
        r.orig_rax = u64::MAX;
        (r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9) = (args[0], args[1], args[2], args[3], args[4], args[5]);
        ptrace::setregs(self.pid, r).map_err(|e| RemoteError::Regs(self.pid, e))?;
        ptrace::step(self.pid, None).map_err(|e| RemoteError::Step(self.pid, e))?;
        // The first step from a stop inside a system call (the exec stop) reports the exit
        // of that call, before the gadget ran: step again then.
        let mut early = 0;
        loop {
            match waitpid(self.pid, Some(WaitPidFlag::__WALL)) {
                Ok(WaitStatus::Stopped(_, Signal::SIGTRAP)) => {
                    let at = ptrace::getregs(self.pid).map_err(|e| RemoteError::Regs(self.pid, e))?;
                    if at.rip == self.gadget && early < 2 {
                        early += 1;
                        ptrace::step(self.pid, None).map_err(|e| RemoteError::Step(self.pid, e))?;
                        continue;
                    }
                    break;
                }
                Ok(WaitStatus::Stopped(_, sig)) => {
                    // A signal delivery stop before the instruction ran: hold the signal.
                    self.held.push(sig);
                    ptrace::step(self.pid, None).map_err(|e| RemoteError::Step(self.pid, e))?;
                }
                Ok(s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => return Err(RemoteError::Gone(s)),
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(RemoteError::Step(self.pid, e)),
            }
        }
        let after = ptrace::getregs(self.pid).map_err(|e| RemoteError::Regs(self.pid, e))?;
        if after.rip != self.gadget + 2 {
            return Err(RemoteError::Lost { rip: after.rip, gadget: self.gadget });
        }
        Ok(after.rax as i64)
    }

    /// Restores the registers and queues the held signals again.
    pub fn finish(self) -> Result<(), RemoteError> {
        ptrace::setregs(self.pid, self.saved).map_err(|e| RemoteError::Regs(self.pid, e))?;
        for sig in self.held {
            let _ = nix::sys::signal::kill(self.pid, sig);
        }
        Ok(())
    }
}
