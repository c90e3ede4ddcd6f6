//! Starting the program (fork, become traceable, stop for the tracer, install the seccomp
//! filter, exec), forwarding signals to it, and ending as it ended: the launcher's process
//! code (the vDSO fast path's is in `fastpath::sys`).
//!
//! # Invariants
//! Between `fork` and `execve` the child only makes async-signal-safe raw calls on data
//! prepared before the fork (the parent may be multi-threaded). The filter is installed
//! *after* the tracer has seen the child's stop, so a trapped call always has a tracer
//! (without one, `SECCOMP_RET_TRACE` fails the call with `ENOSYS`). The forwarding handler
//! only makes async-signal-safe system calls and keeps errno.

use std::ffi::{c_char, c_int, c_void, CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering::Relaxed};

use libc::sock_filter;
use nix::unistd::Pid;

/// Errors of starting the program.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("{0:?} contains a NUL byte")]
    Nul(OsString),
    #[error("fork")]
    Fork(#[source] std::io::Error),
}

/// Everything the child needs, prepared before the fork.
#[derive(Debug)]
pub struct Prepared {
    path: CString,
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    argv_ptrs: Vec<*const c_char>,
    envp_ptrs: Vec<*const c_char>,
    filter: Vec<sock_filter>,
}

fn cstring(s: &OsStr) -> Result<CString, SpawnError> {
    CString::new(s.as_bytes()).map_err(|_| SpawnError::Nul(s.to_owned()))
}

impl Prepared {
    /// The program at `path` with `argv` (its `argv[0]` included) and `env`, in any
    /// encoding.
    pub fn new(
        path: &Path,
        argv: &[OsString],
        env: &[(OsString, OsString)],
        filter: Vec<sock_filter>,
    ) -> Result<Self, SpawnError> {
        let path = cstring(path.as_os_str())?;
        let argv: Vec<CString> = argv.iter().map(|a| cstring(a)).collect::<Result<_, _>>()?;
        let envp: Vec<CString> = env
            .iter()
            .map(|(k, v)| {
                let mut entry = k.clone();
                entry.push("=");
                entry.push(v);
                cstring(&entry)
            })
            .collect::<Result<_, _>>()?;
        let argv_ptrs = argv.iter().map(|c| c.as_ptr()).chain([std::ptr::null()]).collect();
        let envp_ptrs = envp.iter().map(|c| c.as_ptr()).chain([std::ptr::null()]).collect();
        Ok(Self { path, _argv: argv, _envp: envp, argv_ptrs, envp_ptrs, filter })
    }
}

fn say(msg: &[u8]) {
    // SAFETY: writes a valid buffer to stderr; async-signal-safe.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
    }
}

/// Forks the traced child; it stops with SIGSTOP before installing the filter and
/// executing. The caller must be the thread that will trace it.
pub fn spawn_traced(p: &Prepared) -> Result<Pid, SpawnError> {
    let prog = libc::sock_fprog { len: p.filter.len() as u16, filter: p.filter.as_ptr().cast_mut() };
    // SAFETY: fork has no memory-safety preconditions; the child below only makes raw
    // async-signal-safe calls on memory prepared before the fork and never returns.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(SpawnError::Fork(std::io::Error::last_os_error()));
    }
    if pid > 0 {
        return Ok(Pid::from_raw(pid));
    }
    // SAFETY: child after fork: raw syscalls with valid pointers (the filter program, the
    // NUL-terminated path and pointer arrays prepared before the fork); `_exit` never
    // returns.
    unsafe {
        if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) != 0 {
            say(b"dilation-trap: PTRACE_TRACEME failed\n");
            libc::_exit(126);
        }
        libc::kill(libc::getpid(), libc::SIGSTOP);
        // A paced shim that handed its exec over ignores SIGTRAP across it (a pacing signal
        // pending at exec would kill the new image), and an ignored signal stays ignored
        // through exec: the program gets the default action, as in the shim's own images.
        libc::signal(libc::SIGTRAP, libc::SIG_DFL);
        let install = || libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &raw const prog);
        if install() != 0 {
            // Without CAP_SYS_ADMIN a filter needs no_new_privs.
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            if install() != 0 {
                say(b"dilation-trap: installing the seccomp filter failed\n");
                libc::_exit(126);
            }
        }
        libc::execve(p.path.as_ptr(), p.argv_ptrs.as_ptr(), p.envp_ptrs.as_ptr());
        say(b"dilation-trap: execve failed: ");
        say(p.path.as_bytes());
        say(b"\n");
        libc::_exit(127);
    }
}

/// The program's pid for [`forward`] (0: none).
static ROOT: AtomicI32 = AtomicI32::new(0);

/// The signals forwarded to the program: those a supervisor sends to end, reload or steer
/// the process it started.
pub const FORWARDED: [c_int; 7] =
    [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2, libc::SIGWINCH];

/// Forwards the [`FORWARDED`] signals this process receives to `root` from now on.
pub fn forward_signals(root: Pid) -> std::io::Result<()> {
    ROOT.store(root.as_raw(), Relaxed);
    for sig in FORWARDED {
        // SAFETY: an all-zero sigaction is a valid value (empty mask, no flags); the handler
        // and flags are set below.
        let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
        act.sa_sigaction = forward as *const () as usize;
        act.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        // SAFETY: a valid sigaction for a handler that only makes async-signal-safe calls.
        if unsafe { libc::sigaction(sig, &raw const act, std::ptr::null_mut()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

extern "C" fn forward(sig: c_int, info: *mut libc::siginfo_t, _ctx: *mut c_void) {
    let root = ROOT.load(Relaxed);
    if root <= 0 {
        return;
    }
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let code = if info.is_null() { 0 } else { unsafe { (*info).si_code } };
    // SAFETY: errno is this thread's; getpgid and kill are async-signal-safe system calls.
    unsafe {
        let saved = *libc::__errno_location();
        // The terminal sends ^C, ^\, a hang-up or a resize to its whole foreground process
        // group: the program, still in ours, has it already.
        if !(code == libc::SI_KERNEL && libc::getpgid(root) == libc::getpgid(0)) {
            libc::kill(root, sig);
        }
        *libc::__errno_location() = saved;
    }
}

/// Ends this process by signal `sig` (without a core dump of the launcher), so that its
/// parent's `wait` sees how the program ended; returns when the signal does not end it.
pub fn die_by(sig: c_int) {
    let no_core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain system calls on values of this function: the default action for `sig`,
    // no core file, `sig` unblocked, then `sig` sent to this thread.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::setrlimit(libc::RLIMIT_CORE, &raw const no_core);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        libc::sigaddset(&raw mut set, sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &raw const set, std::ptr::null_mut());
        libc::raise(sig);
    }
}
