//! The tracer: one event loop over every thread of the program's process tree.
//!
//! # Design
//! - The first stop of a thread not seen before is its attach stop (`SIGSTOP`): it is
//!   swallowed (for the root, the ptrace options are set there).
//! - `PTRACE_EVENT_EXEC`: hide the vDSO of the new image ([`crate::auxv`]).
//! - `PTRACE_EVENT_SECCOMP`: [`crate::rewrite::on_enter`]; calls with an exit fix-up are
//!   resumed with `PTRACE_SYSCALL`, so the next stop of that thread is its syscall exit.
//! - Any other signal stop is a signal delivery (re-injected unchanged, Go's SIGURG
//!   included) or a group stop (resumed).
//!
//! A thread that vanishes between a stop and our request (`ESRCH`) is simply forgotten.

use std::collections::{HashMap, HashSet};

use nix::errno::Errno;
use nix::sys::ptrace::{self, Event, Options};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::clock::VirtualClock;
use crate::memory::ProcessMemory;
use crate::rewrite::{self, Call, Decision, ExitFix, ProcTimerClocks};

/// Counters of one traced run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// Clock reads emulated in virtual time.
    pub clock_reads: u64,
    /// Waits whose timeout was converted.
    pub waits: u64,
    /// Images executed (each had its vDSO hidden, or `vdso_missing` counts it).
    pub execs: u64,
    /// Executed images in which no vDSO entry was found to hide.
    pub vdso_missing: u64,
    /// Trapped calls passed through unchanged (CPU clocks, invalid arguments).
    pub passed: u64,
    /// Signals re-injected.
    pub signals: u64,
    /// Failures (register or memory access) that left a call unconverted.
    pub errors: u64,
}

/// Errors of the tracer.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("set ptrace options on {0}")]
    Options(Pid, #[source] Errno),
    #[error("wait for the traced program")]
    Wait(#[source] Errno),
}

fn options() -> Options {
    Options::PTRACE_O_TRACESYSGOOD
        | Options::PTRACE_O_TRACESECCOMP
        | Options::PTRACE_O_TRACEEXEC
        | Options::PTRACE_O_TRACEFORK
        | Options::PTRACE_O_TRACEVFORK
        | Options::PTRACE_O_TRACECLONE
        | Options::PTRACE_O_EXITKILL
}

/// The tracer of one program.
#[derive(Debug)]
pub struct Tracer {
    clock: VirtualClock,
    root: Pid,
    seen: HashSet<Pid>,
    pending: HashMap<Pid, ExitFix>,
    pub stats: Stats,
}

fn arg_mut(regs: &mut libc::user_regs_struct, i: usize) -> Option<&mut u64> {
    Some(match i {
        0 => &mut regs.rdi,
        1 => &mut regs.rsi,
        2 => &mut regs.rdx,
        3 => &mut regs.r10,
        4 => &mut regs.r8,
        5 => &mut regs.r9,
        _ => return None,
    })
}

impl Tracer {
    /// `root` must be a child of this thread stopped (or about to stop) after
    /// `PTRACE_TRACEME` (see [`crate::spawn`]).
    pub fn new(clock: VirtualClock, root: Pid) -> Self {
        Self { clock, root, seen: HashSet::new(), pending: HashMap::new(), stats: Stats::default() }
    }

    /// Runs until every traced process has exited; returns the root's exit code (128 +
    /// signal number when killed by a signal).
    pub fn run(&mut self) -> Result<i32, TraceError> {
        let mut code = 0;
        loop {
            let status = match waitpid(None, Some(WaitPidFlag::__WALL)) {
                Ok(s) => s,
                Err(Errno::ECHILD) => return Ok(code),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(TraceError::Wait(e)),
            };
            match status {
                WaitStatus::Exited(pid, c) => {
                    self.forget(pid);
                    if pid == self.root {
                        code = c;
                    }
                }
                WaitStatus::Signaled(pid, sig, _) => {
                    self.forget(pid);
                    if pid == self.root {
                        code = 128 + sig as i32;
                    }
                }
                WaitStatus::Stopped(pid, sig) => self.on_signal_stop(pid, sig)?,
                WaitStatus::PtraceEvent(pid, _, event) => self.on_event(pid, event),
                WaitStatus::PtraceSyscall(pid) => self.on_syscall_exit(pid),
                WaitStatus::Continued(_) | WaitStatus::StillAlive => {}
            }
        }
    }

    fn forget(&mut self, pid: Pid) {
        self.seen.remove(&pid);
        self.pending.remove(&pid);
    }

    fn resume(&mut self, pid: Pid, sig: Option<Signal>) {
        // ESRCH: the thread died meanwhile (its exit will be reported).
        let _ = ptrace::cont(pid, sig);
    }

    fn on_signal_stop(&mut self, pid: Pid, sig: Signal) -> Result<(), TraceError> {
        if self.seen.insert(pid) && sig == Signal::SIGSTOP {
            if pid == self.root {
                ptrace::setoptions(pid, options()).map_err(|e| TraceError::Options(pid, e))?;
            }
            self.resume(pid, None);
            return Ok(());
        }
        if ptrace::getsiginfo(pid).is_ok() {
            self.stats.signals += 1;
            self.resume(pid, Some(sig));
        } else {
            // A group stop: resume (job control inside a node is not supported).
            self.resume(pid, None);
        }
        Ok(())
    }

    fn on_event(&mut self, pid: Pid, event: i32) {
        self.seen.insert(pid);
        if event == Event::PTRACE_EVENT_EXEC as i32 {
            self.pending.remove(&pid);
            self.stats.execs += 1;
            match ptrace::getregs(pid).map(|r| crate::auxv::hide_vdso(&ProcessMemory(pid), r.rsp)) {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => self.stats.vdso_missing += 1,
                Ok(Err(e)) => {
                    tracing::warn!(%pid, error = %e, "could not hide the vDSO of a new image: its clock reads are undilated");
                    self.stats.errors += 1;
                }
                Err(e) => {
                    tracing::warn!(%pid, error = %e, "no registers at exec");
                    self.stats.errors += 1;
                }
            }
            self.resume(pid, None);
        } else if event == Event::PTRACE_EVENT_SECCOMP as i32 {
            self.on_seccomp(pid);
        } else {
            self.resume(pid, None);
        }
    }

    fn on_seccomp(&mut self, pid: Pid) {
        let Ok(mut regs) = ptrace::getregs(pid) else {
            self.stats.errors += 1;
            return self.resume(pid, None);
        };
        let call = Call {
            nr: regs.orig_rax as i64,
            args: [regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9],
            sp: regs.rsp,
        };
        let mem = ProcessMemory(pid);
        match rewrite::on_enter(&mut self.clock, &mem, &ProcTimerClocks(pid.as_raw()), &call) {
            Decision::Pass => {
                self.stats.passed += 1;
                self.resume(pid, None);
            }
            Decision::Emulate(ret) => {
                // orig_rax = -1 skips the call; rax is what it returns.
                regs.orig_rax = u64::MAX;
                regs.rax = ret as u64;
                if ptrace::setregs(pid, regs).is_ok() {
                    self.stats.clock_reads += 1;
                } else {
                    self.stats.errors += 1;
                }
                self.resume(pid, None);
            }
            Decision::Rewrite { set, exit } => {
                for (i, v) in set {
                    if let Some(r) = arg_mut(&mut regs, i) {
                        *r = v;
                    }
                }
                if ptrace::setregs(pid, regs).is_err() {
                    self.stats.errors += 1;
                    return self.resume(pid, None);
                }
                self.stats.waits += 1;
                self.pending.insert(pid, exit);
                if ptrace::syscall(pid, None).is_err() {
                    self.pending.remove(&pid);
                }
            }
        }
    }

    fn on_syscall_exit(&mut self, pid: Pid) {
        if let Some(fix) = self.pending.remove(&pid) {
            if let Ok(mut regs) = ptrace::getregs(pid) {
                let ret = rewrite::on_exit(&mut self.clock, &ProcessMemory(pid), &fix, regs.rax as i64);
                for &(i, v) in &fix.restore {
                    if let Some(r) = arg_mut(&mut regs, i) {
                        *r = v;
                    }
                }
                if let Some(r) = ret {
                    regs.rax = r as u64;
                }
                if ptrace::setregs(pid, regs).is_err() {
                    self.stats.errors += 1;
                }
            }
        }
        self.resume(pid, None);
    }
}
