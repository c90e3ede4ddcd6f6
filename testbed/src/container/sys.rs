//! The container module's FFI: `pre_exec` hooks and `fork`.
//!
//! Rules for code in `pre_exec` hooks (they run in a forked child of a possibly
//! multi-threaded process): only async-signal-safe system calls, no allocation, no locks,
//! no logging. Everything they need (file descriptors, C strings) is prepared by the parent
//! and captured by value.

use std::ffi::CString;
use std::os::fd::{BorrowedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};

/// Makes `cmd`'s child join the node: network namespace, fresh mount/UTS/IPC namespaces,
/// a PID namespace for its children, its own session, and death with the harness.
pub(super) fn install_launch_hook(cmd: &mut Command, netns: Option<RawFd>, fresh_net: bool) {
    let harness = nix::unistd::getpid();
    let hook = move || -> std::io::Result<()> {
        // The harness's death (even SIGKILL) must take the node with it.
        nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
        orphaned_check(harness)?;
        if let Some(fd) = netns {
            // SAFETY: as above, the parent holds the namespace descriptor open.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            setns(fd, CloneFlags::CLONE_NEWNET)?;
        }
        let mut flags =
            CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWPID;
        if fresh_net {
            flags |= CloneFlags::CLONE_NEWNET;
        }
        unshare(flags)?;
        // A terminal's Ctrl-C goes to the harness only; it stops nodes in order.
        nix::unistd::setsid()?;
        Ok(())
    };
    // SAFETY: the hook only makes async-signal-safe system calls on pre-opened descriptors
    // and captured plain data; it neither allocates nor locks.
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// Fails when the harness died between the fork and `PR_SET_PDEATHSIG` (the request then
/// came too late to be honoured): the child must not outlive it. Async-signal-safe.
fn orphaned_check(harness: nix::unistd::Pid) -> std::io::Result<()> {
    if nix::unistd::getppid() == harness {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error(libc::ESRCH))
    }
}

/// Makes `cmd`'s child enter the namespaces of a running node, then change into `workdir`
/// (entering a mount namespace resets the working directory to its root).
pub(super) fn install_enter_hook(cmd: &mut Command, namespaces: Vec<(RawFd, CloneFlags)>, workdir: CString) {
    let harness = nix::unistd::getpid();
    let hook = move || -> std::io::Result<()> {
        nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
        orphaned_check(harness)?;
        for (fd, kind) in &namespaces {
            // SAFETY: the parent keeps these descriptors open until `spawn` returns.
            let fd = unsafe { BorrowedFd::borrow_raw(*fd) };
            setns(fd, *kind)?;
        }
        nix::unistd::chdir(workdir.as_c_str())?;
        Ok(())
    };
    // SAFETY: the hook only makes async-signal-safe system calls on pre-opened descriptors
    // and captured plain data; it neither allocates nor locks.
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// Restores an empty signal mask, asks for SIGKILL when PID 1 of the node dies, and joins
/// the node's cgroups (writing `0` into pre-opened `cgroup.procs` files) so the command is
/// accounted and limited from its first instruction.
pub(super) fn install_command_hook(cmd: &mut Command, cgroup_procs: Vec<RawFd>) {
    let hook = move || -> std::io::Result<()> {
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
        nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
        for fd in &cgroup_procs {
            // SAFETY: PID 1 keeps these descriptors open until `spawn` returns, and the fork
            // duplicated them into this child.
            let fd = unsafe { BorrowedFd::borrow_raw(*fd) };
            nix::unistd::write(fd, b"0")?;
        }
        Ok(())
    };
    // SAFETY: sigprocmask, prctl and write are async-signal-safe; nothing is allocated.
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// `fork()` for `__init`, which is single-threaded when it calls this.
pub(super) fn fork() -> nix::Result<nix::unistd::ForkResult> {
    // SAFETY: `__init` has started no threads (it is freshly exec'd and never spawns any),
    // so the child may run arbitrary code after the fork.
    unsafe { nix::unistd::fork() }
}

/// Brings the loopback interface of the current network namespace up (a new namespace
/// starts with `lo` down, and most programs expect `localhost` to work).
pub(super) fn loopback_up() -> std::io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: plain socket(2) call; the result is checked before use.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads into `req`, a properly sized ifreq naming "lo".
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the union member ifru_flags is the one SIOCGIFFLAGS filled in.
    unsafe {
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
    }
    // SAFETY: SIOCSIFFLAGS reads `req`, which names "lo" with the updated flags.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Puts the calling thread in the `SCHED_IDLE` class: it runs only when no other task of
/// the CPU wants to (the host's awake spinners).
pub(crate) fn set_idle_class() -> nix::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param that outlives the call; pid 0 is this thread.
    let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &raw const param) };
    nix::errno::Errno::result(r).map(drop)
}

/// `struct __user_cap_header_struct` of capget(2)/capset(2).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

/// `struct __user_cap_data_struct`; version 3 takes two of them (capabilities 0-31, 32-63).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_VERSION_3: u32 = 0x2008_0522;

/// Removes every capability but `kept` from this process's bounding set and clears its
/// inheritable and ambient sets, so that nothing it executes (even as root, even a
/// set-uid or file-capability program) gains the others. This process keeps its own.
pub(super) fn drop_capabilities(kept: &[u32]) -> std::io::Result<()> {
    let last: u32 =
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(40);
    for cap in (0..=last).filter(|c| !kept.contains(c)) {
        // SAFETY: prctl with plain integer arguments.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) } < 0 {
            let err = std::io::Error::last_os_error();
            // EINVAL: a capability this kernel does not know.
            if err.raw_os_error() != Some(libc::EINVAL) {
                return Err(err);
            }
        }
    }
    let mut header = CapHeader { version: CAP_VERSION_3, pid: 0 };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget fills two CapData structs for version 3; both pointers are valid.
    if unsafe { libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    for d in &mut data {
        d.inheritable = 0;
    }
    // SAFETY: capset reads the header and two CapData structs, all valid.
    if unsafe { libc::syscall(libc::SYS_capset, &raw const header, data.as_ptr()) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: prctl with plain integer arguments; EINVAL (no ambient capabilities before
    // Linux 4.3) leaves nothing to clear.
    let r = unsafe {
        libc::prctl(libc::PR_CAP_AMBIENT, libc::c_ulong::from(libc::PR_CAP_AMBIENT_CLEAR_ALL as u32), 0, 0, 0)
    };
    if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
