//! Starting the program: fork, become traceable, stop for the tracer, install the seccomp
//! filter, exec. The only `unsafe` code of the crate.
//!
//! # Invariants
//! Between `fork` and `execve` the child only makes async-signal-safe raw calls on data
//! prepared before the fork (the parent may be multi-threaded). The filter is installed
//! *after* the tracer has seen the child's stop, so a trapped call always has a tracer
//! (without one, `SECCOMP_RET_TRACE` fails the call with `ENOSYS`).

use std::ffi::{c_char, CString};

use libc::sock_filter;
use nix::unistd::Pid;

/// Errors of starting the program.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("{0:?} contains a NUL byte")]
    Nul(String),
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

fn cstring(s: &str) -> Result<CString, SpawnError> {
    CString::new(s).map_err(|_| SpawnError::Nul(s.to_owned()))
}

impl Prepared {
    pub fn new(
        path: &str,
        argv: &[String],
        env: &[(String, String)],
        filter: Vec<sock_filter>,
    ) -> Result<Self, SpawnError> {
        let path = cstring(path)?;
        let argv: Vec<CString> = argv.iter().map(|a| cstring(a)).collect::<Result<_, _>>()?;
        let envp: Vec<CString> = env.iter().map(|(k, v)| cstring(&format!("{k}={v}"))).collect::<Result<_, _>>()?;
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
