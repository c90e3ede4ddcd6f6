//! The tracer: one event loop over every thread of the program's process tree.
//!
//! # Design
//! - The first stop of a thread not seen before is its attach stop (`SIGSTOP`): it is
//!   swallowed (for the root, the ptrace options are set there).
//! - `PTRACE_EVENT_EXEC`: inject the vDSO fast path into the new image
//!   ([`crate::fastpath::inject`]) when it is on; when it is off or fails, hide the vDSO
//!   ([`crate::auxv`]), so that clock reads become trapped syscalls.
//! - A trapped clock call made from inside an injected process's vDSO (its fallback to the
//!   kernel: a clock the vDSO does not read itself, or a clock source without vDSO
//!   support) passes undilated: the injected code that called the vDSO dilates its result.
//! - `PTRACE_EVENT_SECCOMP`: [`crate::rewrite::on_enter`]; calls with an exit fix-up are
//!   resumed with `PTRACE_SYSCALL`, so the next stop of that thread is its syscall exit.
//!   A clock or timeout call of the i386 or x32 ABI (the filter tags it
//!   [`filter::DATA_FOREIGN`]) is refused with `ENOSYS` and counted: the rewrites know the
//!   x86-64 ABI only, and such a call must not read real time.
//! - A 32-bit image (an i386 program executed by a trapped process) gets no fast path: its
//!   vDSO is hidden, so its clock reads become i386 calls, which are refused.
//! - With CPU pacing ([`crate::pacer`]): every thread gets a quantum event at its first
//!   stop and at every exec; its `SIGTRAP` (a signal-delivery stop) is suppressed and the
//!   thread is held until its CPU is paid for; every trapped call first pays, then is
//!   served. Held threads wait in the pacer's queue while the loop serves the others.
//! - Any other signal stop is a signal delivery (re-injected unchanged, Go's SIGURG
//!   included) or a group stop (resumed).
//!
//! A thread that vanishes between a stop and our request (`ESRCH`) is simply forgotten.

use std::collections::{BTreeMap, HashMap, HashSet};

use nix::errno::Errno;
use nix::sys::ptrace::{self, Event, Options};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::auxv::Width;
use crate::clock::VirtualClock;
use crate::fastpath::inject::{self, InjectError};
use crate::filter;
use crate::memory::ProcessMemory;
use crate::pacer::{self, Pacer, Then};
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
    /// Executed images given the vDSO fast path.
    pub vdso_injected: u64,
    /// Executed images whose vDSO was hidden because the fast path failed in them.
    pub vdso_fallbacks: u64,
    /// Trapped clock calls made by an injected vDSO itself, passed undilated.
    pub vdso_passed: u64,
    /// Trapped calls passed through unchanged (CPU clocks, invalid arguments).
    pub passed: u64,
    /// Signals re-injected.
    pub signals: u64,
    /// Clock and timeout calls of the i386 or x32 ABI, refused with `ENOSYS`.
    pub foreign_refused: u64,
    /// 32-bit images executed (the trap cannot dilate them; their vDSO was hidden).
    pub foreign_execs: u64,
    /// Failures (register or memory access) that left a call unconverted.
    pub errors: u64,
    /// CPU pacing's counters (all zero when the program is not paced).
    pub pace: pacer::PaceStats,
}

/// How the program (the root of the traced tree) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

impl Exit {
    /// The shell's convention: the exit code, or 128 + the signal.
    pub fn code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

/// Errors of the tracer.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("set ptrace options on {0}")]
    Options(Pid, #[source] Errno),
    #[error("wait for the traced program")]
    Wait(#[source] Errno),
    #[error("set up the pacing's wake-ups (SIGCHLD descriptor)")]
    Wakeups(#[source] Errno),
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
    /// The fast path's settings; `None`: hide the vDSO of every image.
    fast: Option<inject::Config>,
    /// vDSO mappings of injected processes (start → end).
    vdsos: BTreeMap<u64, u64>,
    root: Pid,
    seen: HashSet<Pid>,
    pending: HashMap<Pid, ExitFix>,
    /// Foreign calls already logged, by ABI and number (each is logged once).
    warned: HashSet<(&'static str, u64)>,
    /// CPU pacing, when the node's threads are paced.
    pacer: Option<Pacer>,
    pub stats: Stats,
}

/// The code segment of a thread in 32-bit compatibility mode (`__USER32_CS`).
const USER32_CS: u64 = 0x23;

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
        Self {
            clock,
            fast: None,
            vdsos: BTreeMap::new(),
            root,
            seen: HashSet::new(),
            pending: HashMap::new(),
            warned: HashSet::new(),
            pacer: None,
            stats: Stats::default(),
        }
    }

    /// Paces every thread's CPU with `pacer` from now on.
    pub fn with_pacer(mut self, pacer: Pacer) -> Self {
        self.pacer = Some(pacer);
        self
    }

    /// Turns the vDSO fast path on for every image executed from now on.
    pub fn with_fast_path(mut self, cfg: inject::Config) -> Self {
        self.fast = Some(cfg);
        self
    }

    /// Runs until every traced process has exited; returns how the root ended.
    pub fn run(&mut self) -> Result<Exit, TraceError> {
        let mut code = Exit::Code(0);
        // With pacing, the loop also wakes to release held threads: it waits for the next
        // stop on a SIGCHLD descriptor, with the first release as its deadline.
        let wakeups = match &self.pacer {
            Some(_) => Some(Wakeups::new().map_err(TraceError::Wakeups)?),
            None => None,
        };
        loop {
            let next = self.release_due();
            let flags = if next.is_some() { WaitPidFlag::__WALL | WaitPidFlag::WNOHANG } else { WaitPidFlag::__WALL };
            let status = match waitpid(None, Some(flags)) {
                Ok(WaitStatus::StillAlive) => {
                    if let (Some(w), Some(at)) = (&wakeups, next) {
                        if w.wait_until(at) {
                            let now = pacer::mono_now();
                            if let Some(p) = &mut self.pacer {
                                p.woke(at, now);
                            }
                        }
                    }
                    continue;
                }
                Ok(s) => s,
                Err(Errno::ECHILD) => {
                    if let Some(p) = &self.pacer {
                        self.stats.pace = p.stats;
                    }
                    return Ok(code);
                }
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(TraceError::Wait(e)),
            };
            if let Some(c) = self.on_status(status)? {
                code = c;
            }
        }
    }

    /// Releases the held threads whose payment is over; returns the next release instant.
    fn release_due(&mut self) -> Option<i64> {
        let due = self.pacer.as_mut()?.due(pacer::mono_now());
        for (pid, then) in due {
            match then {
                Then::Resume => self.resume(pid, None),
                Then::Seccomp => self.serve_seccomp(pid),
            }
        }
        self.pacer.as_ref().and_then(Pacer::next_release)
    }

    /// Handles one wait status; returns how the root ended when it did.
    fn on_status(&mut self, status: WaitStatus) -> Result<Option<Exit>, TraceError> {
        match status {
            WaitStatus::Exited(pid, c) => {
                self.forget(pid);
                return Ok((pid == self.root).then_some(Exit::Code(c)));
            }
            WaitStatus::Signaled(pid, sig, _) => {
                self.forget(pid);
                return Ok((pid == self.root).then_some(Exit::Signal(sig as i32)));
            }
            WaitStatus::Stopped(pid, sig) => self.on_signal_stop(pid, sig)?,
            WaitStatus::PtraceEvent(pid, _, event) => {
                if let Some(ended) = self.on_event(pid, event) {
                    return self.on_status(ended);
                }
            }
            WaitStatus::PtraceSyscall(pid) => self.on_syscall_exit(pid),
            WaitStatus::Continued(_) | WaitStatus::StillAlive => {}
        }
        Ok(None)
    }

    fn forget(&mut self, pid: Pid) {
        self.seen.remove(&pid);
        self.pending.remove(&pid);
        if let Some(p) = &mut self.pacer {
            p.forget(pid);
        }
    }

    fn tdf(&mut self) -> f64 {
        self.clock.tdf()
    }

    /// Pays thread `pid`'s CPU at a stop; `true` when the pacer now holds it.
    fn pay(&mut self, pid: Pid, overflow: bool, then: Then) -> bool {
        if self.pacer.is_none() {
            return false;
        }
        let tdf = self.tdf();
        self.pacer.as_mut().is_some_and(|p| p.pay(pid, overflow, tdf, then))
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
            if let Some(p) = &mut self.pacer {
                p.arm(pid);
            }
            self.resume(pid, None);
            return Ok(());
        }
        if let Ok(info) = ptrace::getsiginfo(pid) {
            if self.pacer.is_some() && sig == Signal::SIGTRAP && pacer::is_quantum(&info) {
                // A quantum of the thread's CPU is over: the signal is the pacer's, not the
                // program's.
                if !self.pay(pid, true, Then::Resume) {
                    self.resume(pid, None);
                }
                return Ok(());
            }
            self.stats.signals += 1;
            self.resume(pid, Some(sig));
        } else {
            // A group stop: resume (job control inside a node is not supported).
            self.resume(pid, None);
        }
        Ok(())
    }

    /// Returns the status of a process that ended while the tracer worked on it.
    fn on_event(&mut self, pid: Pid, event: i32) -> Option<WaitStatus> {
        self.seen.insert(pid);
        if event == Event::PTRACE_EVENT_EXEC as i32 {
            if self.pacer.is_some() {
                // The exec removed the thread's event (`remove_on_exec`); a thread other than
                // the leader that executed took the leader's id.
                let former = ptrace::getevent(pid).ok().map(|t| Pid::from_raw(t as i32));
                if let Some(f) = former.filter(|&f| f != pid) {
                    self.forget(f);
                }
            }
            let ended = self.on_exec(pid);
            if ended.is_none() {
                if let Some(p) = &mut self.pacer {
                    p.arm(pid);
                }
                self.resume(pid, None);
            }
            return ended;
        } else if event == Event::PTRACE_EVENT_SECCOMP as i32 {
            self.on_seccomp(pid);
        } else {
            self.resume(pid, None);
        }
        None
    }

    /// A new image at its exec stop: the vDSO fast path, or the vDSO hidden. Leaves the
    /// thread stopped; returns the status of a process that ended meanwhile.
    fn on_exec(&mut self, pid: Pid) -> Option<WaitStatus> {
        self.pending.remove(&pid);
        self.stats.execs += 1;
        let (sp, cs) = match ptrace::getregs(pid) {
            Ok(r) => (r.rsp, r.cs),
            Err(e) => {
                if e != Errno::ESRCH {
                    tracing::warn!(%pid, error = %e, "no registers at exec");
                }
                self.failed(e);
                return None;
            }
        };
        if cs == USER32_CS {
            self.on_foreign_exec(pid, sp);
            return None;
        }
        if let Some(cfg) = &self.fast {
            match inject::inject(pid, sp, cfg) {
                Ok(done) => {
                    self.stats.vdso_injected += 1;
                    tracing::debug!(%pid, vdso = ?done.vdso, code = done.code, "vDSO fast path injected");
                    self.vdsos.insert(done.vdso.start, done.vdso.end);
                    return None;
                }
                Err(InjectError::Gone(status)) => return Some(status),
                Err(InjectError::NoVdso) => {}
                Err(e) => {
                    self.stats.vdso_fallbacks += 1;
                    tracing::warn!(%pid, error = ?e, "vDSO fast path failed: hiding the vDSO (clock reads are trapped, slower)");
                }
            }
        }
        match crate::auxv::hide_vdso(&ProcessMemory(pid), sp, Width::W64) {
            Ok(true) => {}
            Ok(false) => self.stats.vdso_missing += 1,
            Err(e) => {
                tracing::warn!(%pid, error = %e, "could not hide the vDSO of a new image: its clock reads are undilated");
                self.stats.errors += 1;
            }
        }
        None
    }

    /// A 32-bit image, at its exec stop: no mechanism converts its calls. Its vDSO is hidden
    /// so that it reads clocks through i386 system calls, which the filter hands to
    /// [`Self::refuse_foreign`]: it sees `ENOSYS`, never real time.
    fn on_foreign_exec(&mut self, pid: Pid, sp: u64) {
        self.stats.foreign_execs += 1;
        let program = std::fs::read_link(format!("/proc/{pid}/exe")).map(|p| p.display().to_string());
        let program = program.unwrap_or_else(|_| "?".into());
        // An error, not a warning: shown without DIORAMA_LOG, as the program is likely to fail.
        tracing::error!(
            %pid,
            %program,
            "a 32-bit program was executed: the trap cannot dilate it; its clock and timeout calls fail with ENOSYS"
        );
        match crate::auxv::hide_vdso(&ProcessMemory(pid), sp, Width::W32) {
            Ok(true) => {}
            Ok(false) => self.stats.vdso_missing += 1,
            Err(e) => {
                tracing::warn!(%pid, error = %e, "could not hide the vDSO of a 32-bit image: its clock reads are undilated");
                self.stats.errors += 1;
            }
        }
    }

    /// Fails a clock or timeout call of the i386 or x32 ABI with `ENOSYS`, and counts it.
    fn refuse_foreign(&mut self, pid: Pid, mut regs: libc::user_regs_struct) {
        let nr = regs.orig_rax;
        let abi = if nr & u64::from(filter::X32_BIT) != 0 { "x32" } else { "i386" };
        if self.warned.insert((abi, nr)) {
            tracing::warn!(
                %pid,
                abi,
                nr = nr & !u64::from(filter::X32_BIT),
                "refused a clock or timeout system call of another ABI with ENOSYS: the trap dilates x86-64 calls only"
            );
        }
        regs.orig_rax = u64::MAX;
        regs.rax = (-i64::from(libc::ENOSYS)) as u64;
        match ptrace::setregs(pid, regs) {
            Ok(()) => self.stats.foreign_refused += 1,
            Err(e) => self.failed(e),
        }
        self.resume(pid, None);
    }

    /// Whether `rip` of thread `pid` is in its own process's vDSO, which the fast path made
    /// visible: checked against the injected mappings, then against `/proc/PID/maps` (the
    /// mappings of different processes overlap in address).
    fn called_from_vdso(&self, pid: Pid, rip: u64) -> bool {
        let Some((&start, &end)) = self.vdsos.range(..=rip).next_back() else { return false };
        if rip >= end {
            return false;
        }
        let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else { return false };
        maps.lines().any(|l| {
            let range = l.split_whitespace().next().and_then(|r| r.split_once('-'));
            let parse = |s: &str| u64::from_str_radix(s, 16).ok();
            matches!(range.and_then(|(a, b)| Some((parse(a)?, parse(b)?))), Some((a, b)) if a == start && (a..b).contains(&rip))
                && l.trim_end().ends_with("[vdso]")
        })
    }

    /// Counts a failed ptrace call on `pid` as an error, unless the thread is gone: a thread
    /// of a program that is exiting (`exit_group`) can be killed while it waits at a stop,
    /// and its exit is reported on its own; nothing was left undilated.
    fn failed(&mut self, err: Errno) {
        if err != Errno::ESRCH {
            tracing::warn!(error = %err, "a ptrace call on a stopped thread failed");
            self.stats.errors += 1;
        }
    }

    /// A trapped call: the thread first pays its CPU (what the burst before the call
    /// computed is done before the call reads a clock or starts a timeout), then the call
    /// is served, now or when the pacer releases the thread.
    fn on_seccomp(&mut self, pid: Pid) {
        if !self.pay(pid, false, Then::Seccomp) {
            self.serve_seccomp(pid);
        }
    }

    fn serve_seccomp(&mut self, pid: Pid) {
        let mut regs = match ptrace::getregs(pid) {
            Ok(r) => r,
            Err(e) => {
                self.failed(e);
                return self.resume(pid, None);
            }
        };
        match ptrace::getevent(pid) {
            Ok(data) if data as u16 == filter::DATA_FOREIGN => return self.refuse_foreign(pid, regs),
            Ok(_) => {}
            Err(e) => {
                self.failed(e);
                return self.resume(pid, None);
            }
        }
        let call = Call {
            nr: regs.orig_rax as i64,
            args: [regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9],
            sp: regs.rsp,
        };
        let clock_call = matches!(call.nr, libc::SYS_clock_gettime | libc::SYS_gettimeofday | libc::SYS_time);
        if clock_call && !self.vdsos.is_empty() && self.called_from_vdso(pid, regs.rip) {
            self.stats.vdso_passed += 1;
            return self.resume(pid, None);
        }
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
                match ptrace::setregs(pid, regs) {
                    Ok(()) => self.stats.clock_reads += 1,
                    Err(e) => self.failed(e),
                }
                self.resume(pid, None);
            }
            Decision::Rewrite { set, exit } => {
                for (i, v) in set {
                    if let Some(r) = arg_mut(&mut regs, i) {
                        *r = v;
                    }
                }
                if let Err(e) = ptrace::setregs(pid, regs) {
                    self.failed(e);
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
                if let Err(e) = ptrace::setregs(pid, regs) {
                    self.failed(e);
                }
            }
            // The wait is over: a new burst starts.
            if let Some(p) = &mut self.pacer {
                p.fresh(pid);
            }
        }
        self.resume(pid, None);
    }
}

/// The tracer's wake-ups while threads are held: `SIGCHLD` (blocked) on a descriptor, polled
/// with the next release as the deadline. `SIGCHLD` is blocked only in the tracer, after the
/// program was started (the program must not inherit the mask).
struct Wakeups {
    fd: nix::sys::signalfd::SignalFd,
}

impl Wakeups {
    fn new() -> Result<Self, Errno> {
        use nix::sys::signal::{SigSet, SigmaskHow};
        use nix::sys::signalfd::{SfdFlags, SignalFd};
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)?;
        let fd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(Self { fd })
    }

    /// Waits until a child changes state or the real monotonic instant `at` (ns) comes;
    /// `true` when the deadline ended the wait.
    fn wait_until(&self, at: i64) -> bool {
        use nix::poll::{ppoll, PollFd, PollFlags};
        use std::os::fd::AsFd as _;
        let left = at - pacer::mono_now();
        if left <= 0 {
            return true;
        }
        let timeout = nix::sys::time::TimeSpec::new(left / 1_000_000_000, left % 1_000_000_000);
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        let ready = ppoll(&mut fds, Some(timeout), None);
        // Drain: a stop after this read raises SIGCHLD again, so none is missed.
        while let Ok(Some(_)) = self.fd.read_signal() {}
        matches!(ready, Ok(0))
    }
}
