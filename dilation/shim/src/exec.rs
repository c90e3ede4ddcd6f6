//! The exec family: a process under the shim that executes a Go or static program hands it
//! to `dilation-trap`, which reaches what the shim cannot (a script file that runs etcd, a
//! supervisor that spawns a Go program).
//!
//! # Design
//! At `execve`, `execv`, `execvp`, `execvpe`, `fexecve`, `execveat`, `syscall(SYS_execve |
//! SYS_execveat)`, `posix_spawn` and `posix_spawnp`, the hook classifies the program the call
//! would execute ([`crate::elf`]): the path as given; for `execvp` and friends the first
//! regular executable file of the `PATH` search (glibc's `execvp` calls its internal
//! `execve`, not ours, so the hook searches itself); a descriptor's file through
//! `/proc/self/fd`; a `#!` script by the interpreter the kernel would run for it (one
//! level: an interpreter that is a script is left alone). When it is a native Go or static
//! program and the environment the new image gets asks for dilation (`DILATION_TDF` set, and
//! `DILATION_TRAP`, the path of the trap the harness gives every node), the call executes
//! `dilation-trap` instead:
//! - with the caller's `argv` unchanged (so `argv[0]` and arguments of any count and
//!   encoding reach the program as they are);
//! - with the caller's environment less the shim's entry of `LD_PRELOAD` (the trap dilates
//!   the program; the shim in the launcher would dilate the tracer's own clock) plus
//!   `DILATION_TRAP_PROGRAM=<path>`, the program the trap runs with that `argv`. The
//!   `DILATION_*` variables go through as they are: the trap reads its model and control
//!   file from them.
//!
//! Anything else — the environment does not ask for it, a table too small, a file that
//! cannot be read or that the caller may not execute, a path that cannot be named, the
//! trap's own exec failing — makes the call exactly as asked: never a broken exec. The
//! coverage check of the harness then flags a program that ran undilated.
//!
//! Rules of [`crate::hooks`] apply: no allocation, no lock, no log, errno as the plain call
//! leaves it. The hooks also run in `vfork` children, so the room they need (~12 KiB) is on
//! the stack, and a call made on a signal handler's alternate stack (which may be small) is
//! never redirected.
//!
//! # Limitations
//! - `execl`, `execlp` and `execle` (C variadics) and libc's internal execs are not seen
//!   (`system` and `popen` execute `/bin/sh`, which is dynamic: its own execs are).
//! - `posix_spawn` and `posix_spawnp` are redirected only for an absolute path (their file
//!   actions may change the directory a relative one is resolved in).
//! - At most [`MAX_ENV`] environment entries, paths of `PATH_MAX` bytes, an `LD_PRELOAD` of
//!   [`PRELOAD_MAX`] bytes.
//! - The trap is a process between the caller and the program: the program's pid is not the
//!   one the caller got (signals the caller sends are forwarded, and the exit status is the
//!   program's; see `dilation-trap`).
//! - An exec that fails only once the trap runs (the file replaced meanwhile, `ETXTBSY`)
//!   ends the trap with 127 instead of returning the error to the caller.

use core::ffi::{c_char, c_int, c_long, CStr};

use dilation_abi::env::{TDF, TRAP, TRAP_PROGRAM};
use dilation_abi::exe::SHIM_NAME;
use libc::{pid_t, posix_spawn_file_actions_t, posix_spawnattr_t};

use crate::cpu::around_exec;
use crate::elf::{self, Kind, Source, HEAD};
use crate::hooks::{env, errno, real, set_errno, sys};

type Argv = *const *const c_char;

/// Environment entries handed to the trap, at most.
const MAX_ENV: usize = 512;
const PATH_MAX: usize = 4096;
/// Bytes of the rewritten `LD_PRELOAD=…` entry, at most.
const PRELOAD_MAX: usize = 1024;
/// `DILATION_TRAP_PROGRAM=`
const PROGRAM_PREFIX: usize = TRAP_PROGRAM.len() + 1;

/// What an exec call names.
#[derive(Clone, Copy)]
enum Target {
    /// A path (`execve`, `execv`, `posix_spawn`).
    Path(*const c_char),
    /// A name looked up in `PATH` unless it holds a `/` (`execvp`, `execvpe`, `posix_spawnp`).
    Search(*const c_char),
    /// An open file (`fexecve`).
    Fd(c_int),
    /// `execveat(dirfd, path, …, flags)`.
    At(c_int, *const c_char, c_int),
}

/// The room a hand-off needs, on the caller's stack.
struct Handoff {
    /// The trap's environment, NULL-terminated.
    envp: [*const c_char; MAX_ENV + 2],
    /// `DILATION_TRAP_PROGRAM=<path>`, NUL-terminated.
    program: [u8; PROGRAM_PREFIX + PATH_MAX],
    /// `LD_PRELOAD=` without the shim, NUL-terminated.
    preload: [u8; PRELOAD_MAX],
}

impl Handoff {
    fn new() -> Self {
        Self {
            envp: [core::ptr::null(); MAX_ENV + 2],
            program: [0; PROGRAM_PREFIX + PATH_MAX],
            preload: [0; PRELOAD_MAX],
        }
    }
}

// ---------------------------------------------------------------------------------------
// Files, through raw system calls.

/// An open file descriptor, closed when dropped.
struct Fd(i64);

impl Fd {
    /// `openat(dirfd, path, O_RDONLY | O_CLOEXEC | extra)`; `path` is NUL-terminated.
    fn open(dirfd: c_int, path: *const c_char, extra: c_int) -> Option<Fd> {
        let flags = libc::O_RDONLY | libc::O_CLOEXEC | extra;
        let fd = sys(libc::SYS_openat, [i64::from(dirfd), path as i64, i64::from(flags), 0, 0, 0]);
        (fd >= 0).then_some(Fd(fd))
    }

    fn stat(&self) -> Option<libc::stat> {
        stat_at(self.0 as c_int, c"".as_ptr(), libc::AT_EMPTY_PATH)
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        sys(libc::SYS_close, [self.0, 0, 0, 0, 0, 0]);
    }
}

impl Source for Fd {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Option<usize> {
        let offset = i64::try_from(offset).ok()?;
        let n = sys(libc::SYS_pread64, [self.0, buf.as_mut_ptr() as i64, buf.len() as i64, offset, 0, 0]);
        usize::try_from(n).ok()
    }
}

fn stat_at(dirfd: c_int, path: *const c_char, flags: c_int) -> Option<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    let r = sys(libc::SYS_newfstatat, [i64::from(dirfd), path as i64, &raw mut st as i64, i64::from(flags), 0, 0]);
    (r == 0).then_some(st)
}

fn is_regular(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFREG
}

/// Whether this process may execute `path` (NUL-terminated): an execute bit it is granted,
/// on a file system not mounted `noexec`.
fn may_execute(path: *const c_char) -> bool {
    sys(libc::SYS_faccessat, [i64::from(libc::AT_FDCWD), path as i64, i64::from(libc::X_OK), 0, 0, 0]) == 0
}

/// Whether `path` (NUL-terminated) is the file open as `fd`.
fn same_file(path: *const c_char, fd: &Fd) -> bool {
    match (stat_at(libc::AT_FDCWD, path, 0), fd.stat()) {
        (Some(a), Some(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
        _ => false,
    }
}

/// Copies `bytes` into `buf` at `at`, leaving room for a NUL after them; the end.
fn put(buf: &mut [u8], at: usize, bytes: &[u8]) -> Option<usize> {
    let end = at.checked_add(bytes.len())?;
    if end >= buf.len() {
        return None;
    }
    buf.get_mut(at..end)?.copy_from_slice(bytes);
    Some(end)
}

/// NUL-terminates `buf` at `end`.
fn terminate(buf: &mut [u8], end: usize) -> Option<()> {
    *buf.get_mut(end)? = 0;
    Some(())
}

/// `/proc/self/fd/<fd>`, NUL-terminated, in `buf`.
fn proc_fd(fd: c_int, buf: &mut [u8; 32]) -> Option<*const c_char> {
    let mut digits = [0u8; 10];
    let mut n = u32::try_from(fd).ok()?;
    let mut i = digits.len();
    loop {
        i -= 1;
        *digits.get_mut(i)? = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let at = put(buf, 0, b"/proc/self/fd/")?;
    let end = put(buf, at, digits.get(i..)?)?;
    terminate(buf, end)?;
    Some(buf.as_ptr().cast())
}

/// Writes the path of the file or directory open as `fd` into `buf` at `at`; the end.
/// Only an absolute path that still names something (not `… (deleted)`, not `memfd:…`).
fn fd_path(fd: c_int, buf: &mut [u8], at: usize) -> Option<usize> {
    let mut link = [0u8; 32];
    let link = proc_fd(fd, &mut link)?;
    let room = buf.len().checked_sub(at + 1)?;
    let dest = buf.get_mut(at..)?.as_mut_ptr();
    let n = sys(libc::SYS_readlinkat, [i64::from(libc::AT_FDCWD), link as i64, dest as i64, room as i64, 0, 0]);
    let n = usize::try_from(n).ok().filter(|&n| n > 0 && n < room)?;
    let path = buf.get(at..at + n)?;
    (path.starts_with(b"/") && !path.ends_with(b" (deleted)")).then_some(at + n)
}

// ---------------------------------------------------------------------------------------
// The decision.

/// The value of `entry` when it is `name=value`.
fn value<'a>(entry: &'a [u8], name: &str) -> Option<&'a [u8]> {
    entry.strip_prefix(name.as_bytes())?.strip_prefix(b"=")
}

/// `LD_PRELOAD=<list>` without the shim, written into `buf`: `Some(None)` when nothing is
/// left (the entry is dropped), `None` when it does not fit.
fn without_shim(list: &[u8], buf: &mut [u8]) -> Option<Option<*const c_char>> {
    let start = put(buf, 0, b"LD_PRELOAD=")?;
    let mut at = start;
    // ld.so separates the list with colons or blanks.
    for lib in list.split(|&b| b == b':' || b == b' ').filter(|l| !l.is_empty() && !l.ends_with(SHIM_NAME.as_bytes())) {
        if at > start {
            at = put(buf, at, b":")?;
        }
        at = put(buf, at, lib)?;
    }
    if at == start {
        return Some(None);
    }
    terminate(buf, at)?;
    Some(Some(buf.as_ptr().cast()))
}

/// The bytes of a C string.
///
/// # Safety
/// `p` is a valid NUL-terminated string that outlives `'a`.
unsafe fn bytes<'a>(p: *const c_char) -> &'a [u8] {
    // SAFETY: as the caller guarantees.
    unsafe { CStr::from_ptr(p) }.to_bytes()
}

/// The `i`-th pointer of a NULL-terminated array.
///
/// # Safety
/// `array` is a NULL-terminated array with at least `i + 1` entries up to its NULL.
unsafe fn nth(array: Argv, i: usize) -> *const c_char {
    // SAFETY: as the caller guarantees.
    unsafe { *array.add(i) }
}

/// Writes `dir/name` (`./name` for an empty `dir`, as a `PATH` element) into `buf` at
/// `at`, NUL-terminated; a pointer to it.
fn candidate(buf: &mut [u8], at: usize, dir: &[u8], name: &[u8]) -> Option<*const c_char> {
    let end = match dir {
        b"" => put(buf, at, b"./")?,
        _ => {
            let end = put(buf, at, dir)?;
            put(buf, end, b"/")?
        }
    };
    let end = put(buf, end, name)?;
    terminate(buf, end)?;
    Some(buf.get(at..)?.as_ptr().cast())
}

/// The file `target` executes, opened, with its path written into `buf` at
/// [`PROGRAM_PREFIX`] (NUL-terminated). `absolute`: only an absolute path will do.
///
/// # Safety
/// The pointers of `target` are NUL-terminated strings (or null).
unsafe fn resolve(target: Target, absolute: bool, buf: &mut [u8]) -> Option<Fd> {
    let at = PROGRAM_PREFIX;
    match target {
        Target::Path(p) if !p.is_null() => {
            // SAFETY: `p` is the caller's NUL-terminated path.
            let path = unsafe { bytes(p) };
            if path.is_empty() || (absolute && !path.starts_with(b"/")) {
                return None;
            }
            // The trap would look a name without `/` up in PATH; exec takes it from here.
            let dir = if path.contains(&b'/') { at } else { put(buf, at, b"./")? };
            let end = put(buf, dir, path)?;
            terminate(buf, end)?;
            Fd::open(libc::AT_FDCWD, p, 0)
        }
        Target::Search(p) if !p.is_null() => {
            // SAFETY: `p` is the caller's NUL-terminated name.
            let name = unsafe { bytes(p) };
            if name.is_empty() || name.contains(&b'/') {
                // SAFETY: as above.
                return unsafe { resolve(Target::Path(p), absolute, buf) };
            }
            // glibc's default when PATH is unset.
            let search = env(b"PATH\0").unwrap_or(b"/bin:/usr/bin");
            for dir in search.split(|&b| b == b':') {
                if absolute && !dir.starts_with(b"/") {
                    continue;
                }
                let Some(cand) = candidate(buf, at, dir, name) else { continue };
                // The first regular file we may execute: where execvp's search ends.
                if !may_execute(cand) {
                    continue;
                }
                if let Some(fd) = Fd::open(libc::AT_FDCWD, cand, 0) {
                    if fd.stat().is_some_and(|st| is_regular(&st)) {
                        return Some(fd);
                    }
                }
            }
            None
        }
        Target::Fd(fd) => {
            let mut link = [0u8; 32];
            let file = Fd::open(libc::AT_FDCWD, proc_fd(fd, &mut link)?, 0)?;
            let end = fd_path(fd, buf, at)?;
            terminate(buf, end)?;
            same_file(buf.get(at..)?.as_ptr().cast(), &file).then_some(file)
        }
        Target::At(dirfd, p, flags) if !p.is_null() => {
            // SAFETY: `p` is the caller's NUL-terminated path.
            let path = unsafe { bytes(p) };
            if path.is_empty() {
                if flags & libc::AT_EMPTY_PATH == 0 {
                    return None;
                }
                // SAFETY: a descriptor target holds no pointer.
                return unsafe { resolve(Target::Fd(dirfd), absolute, buf) };
            }
            let dir = if path.starts_with(b"/") {
                at
            } else if dirfd == libc::AT_FDCWD {
                put(buf, at, b"./")?
            } else {
                let end = fd_path(dirfd, buf, at)?;
                put(buf, end, b"/")?
            };
            let end = put(buf, dir, path)?;
            terminate(buf, end)?;
            let nofollow = if flags & libc::AT_SYMLINK_NOFOLLOW != 0 { libc::O_NOFOLLOW } else { 0 };
            let file = Fd::open(dirfd, p, nofollow)?;
            same_file(buf.get(at..)?.as_ptr().cast(), &file).then_some(file)
        }
        _ => None,
    }
}

/// When `target` is a Go or static program and `envp` asks for dilation, fills `h` and
/// returns the trap's path and the environment to execute it with.
///
/// # Safety
/// `argv` and `envp` are exec's arrays (or null); the pointers of `target` as for
/// [`resolve`].
unsafe fn prepare(
    target: Target,
    argv: Argv,
    envp: Argv,
    absolute: bool,
    h: &mut Handoff,
) -> Option<(*const c_char, *const *const c_char)> {
    // SAFETY: `argv` is null or exec's NULL-terminated array.
    if !cfg!(target_arch = "x86_64") || argv.is_null() || envp.is_null() || unsafe { nth(argv, 0) }.is_null() {
        return None;
    }
    // The environment the program would get: is it to be dilated, and by which trap?
    let (mut count, mut tdf, mut trap) = (0, false, None);
    loop {
        // SAFETY: `envp` is exec's NULL-terminated array; `count` stops at its NULL.
        let e = unsafe { nth(envp, count) };
        if e.is_null() {
            break;
        }
        count += 1;
        if count > MAX_ENV {
            return None;
        }
        // SAFETY: every entry up to the NULL is a NUL-terminated string.
        let entry = unsafe { bytes(e) };
        tdf |= value(entry, TDF).is_some_and(|v| !v.is_empty());
        if let Some(path) = value(entry, TRAP).filter(|v| !v.is_empty()) {
            trap = Some(path.as_ptr().cast::<c_char>());
        }
    }
    let trap = trap.filter(|_| tdf)?;

    // SAFETY: as this function's caller guarantees.
    let file = unsafe { resolve(target, absolute, &mut h.program) }?;
    // Once the trap runs, the program's exec can only fail inside it (exit 127), not return
    // an error to the caller: hand over only what the kernel will execute.
    if !may_execute(h.program.get(PROGRAM_PREFIX..)?.as_ptr().cast()) {
        return None;
    }
    let mut head = [0u8; HEAD];
    let mut kind = elf::classify(&file, &mut head);
    drop(file);
    if kind == Kind::Script {
        // The kernel executes the interpreter (one level).
        let interpreter = elf::interpreter(&mut head)?.as_ptr();
        if !may_execute(interpreter) {
            return None;
        }
        let interpreter = Fd::open(libc::AT_FDCWD, interpreter, 0)?;
        kind = elf::classify(&interpreter, &mut head);
    }
    if !kind.needs_trap() {
        return None;
    }

    h.program.get_mut(..PROGRAM_PREFIX - 1)?.copy_from_slice(TRAP_PROGRAM.as_bytes());
    *h.program.get_mut(PROGRAM_PREFIX - 1)? = b'=';
    let mut k = 0;
    for i in 0..count {
        // SAFETY: `i` is below the count of entries before the NULL.
        let e = unsafe { nth(envp, i) };
        // SAFETY: an entry of `envp`.
        let entry = unsafe { bytes(e) };
        if value(entry, TRAP_PROGRAM).is_some() {
            continue;
        }
        let kept = match value(entry, "LD_PRELOAD") {
            Some(list) => match without_shim(list, &mut h.preload)? {
                Some(rewritten) => rewritten,
                None => continue,
            },
            None => e,
        };
        *h.envp.get_mut(k)? = kept;
        k += 1;
    }
    *h.envp.get_mut(k)? = h.program.as_ptr().cast();
    *h.envp.get_mut(k + 1)? = core::ptr::null();
    Some((trap, h.envp.as_ptr()))
}

/// Whether this thread runs on its signal alternate stack, which may be too small for a
/// [`Handoff`].
fn on_alternate_stack() -> bool {
    let mut ss = libc::stack_t { ss_sp: core::ptr::null_mut(), ss_flags: 0, ss_size: 0 };
    sys(libc::SYS_sigaltstack, [0, &raw mut ss as i64, 0, 0, 0, 0]) == 0 && ss.ss_flags & libc::SS_ONSTACK != 0
}

/// Executes `dilation-trap` in place of the program `target` names when [`prepare`] says
/// so; returns when it does not apply or the trap's exec failed, with errno as it was.
///
/// # Safety
/// As [`prepare`].
unsafe fn exec_via_trap(target: Target, argv: Argv, envp: Argv) {
    if on_alternate_stack() {
        return;
    }
    let saved = errno();
    // SAFETY: as this function's caller guarantees.
    unsafe { exec_prepared(target, argv, envp) };
    set_errno(saved);
}

/// The part of [`exec_via_trap`] with the [`Handoff`] on its stack frame.
///
/// # Safety
/// As [`prepare`].
#[inline(never)]
unsafe fn exec_prepared(target: Target, argv: Argv, envp: Argv) {
    let mut h = Handoff::new();
    // SAFETY: as this function's caller guarantees.
    if let Some((trap, env)) = unsafe { prepare(target, argv, envp, false, &mut h) } {
        sys(libc::SYS_execve, [trap as i64, argv as i64, env as i64, 0, 0, 0]);
    }
}

/// `posix_spawn` of the trap in place of the program `target` names, through `spawn`
/// (given the trap's path and environment); `None` when it does not apply.
///
/// # Safety
/// As [`prepare`].
#[inline(never)]
unsafe fn spawn_via_trap(
    target: Target,
    argv: Argv,
    envp: Argv,
    spawn: impl FnOnce(*const c_char, Argv) -> c_int,
) -> Option<c_int> {
    if on_alternate_stack() {
        return None;
    }
    let saved = errno();
    let mut h = Handoff::new();
    // SAFETY: as this function's caller guarantees.
    let r = unsafe { prepare(target, argv, envp, true, &mut h) }.map(|(trap, env)| spawn(trap, env));
    set_errno(saved);
    r
}

/// The process's environment (`execv`, `execvp`).
fn environ() -> Argv {
    // SAFETY: reads libc's `environ` pointer, which is always initialised.
    unsafe { libc::environ }.cast_const().cast()
}

// ---------------------------------------------------------------------------------------
// The hooks.

macro_rules! exec_hook {
    ($name:ident, ($($arg:ident: $ty:ty),*), $target:expr, $argv:expr, $envp:expr) => {
        /// # Safety
        /// As the libc function of the same name.
        #[no_mangle]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> c_int {
            type F = unsafe extern "C" fn($($ty),*) -> c_int;
            let Some(f) = real!(stringify!($name), F) else {
                set_errno(libc::ENOSYS);
                return -1;
            };
            around_exec(|| {
                // SAFETY: the caller's arguments: exec's program, and argv and envp as
                // NULL-terminated arrays of NUL-terminated strings.
                unsafe { exec_via_trap($target, $argv, $envp) };
                // SAFETY: forwarding the caller's arguments.
                unsafe { f($($arg),*) }
            })
        }
    };
}

exec_hook!(execve, (path: *const c_char, argv: Argv, envp: Argv), Target::Path(path), argv, envp);
exec_hook!(execv, (path: *const c_char, argv: Argv), Target::Path(path), argv, environ());
exec_hook!(execvp, (file: *const c_char, argv: Argv), Target::Search(file), argv, environ());
exec_hook!(execvpe, (file: *const c_char, argv: Argv, envp: Argv), Target::Search(file), argv, envp);
exec_hook!(fexecve, (fd: c_int, argv: Argv, envp: Argv), Target::Fd(fd), argv, envp);
exec_hook!(
    execveat,
    (dirfd: c_int, path: *const c_char, argv: Argv, envp: Argv, flags: c_int),
    Target::At(dirfd, path, flags),
    argv,
    envp
);

/// `syscall(SYS_execve | SYS_execveat, …)` through the generic entry.
///
/// # Safety
/// `args` are the arguments the caller of `syscall` passed for system call `n`.
pub(crate) unsafe fn exec_syscall(n: c_long, args: [i64; 6]) -> Option<c_long> {
    let (target, argv, envp) = match n {
        libc::SYS_execve => (Target::Path(args[0] as *const c_char), args[1], args[2]),
        libc::SYS_execveat => {
            (Target::At(args[0] as c_int, args[1] as *const c_char, args[4] as c_int), args[2], args[3])
        }
        _ => return None,
    };
    let mut r = 0;
    around_exec(|| {
        // SAFETY: the caller passed execve's or execveat's arguments.
        unsafe { exec_via_trap(target, argv as Argv, envp as Argv) };
        r = sys(n, args);
        r as c_int
    });
    Some(r)
}

type SpawnFn = unsafe extern "C" fn(
    *mut pid_t,
    *const c_char,
    *const posix_spawn_file_actions_t,
    *const posix_spawnattr_t,
    *const *mut c_char,
    *const *mut c_char,
) -> c_int;

macro_rules! spawn_hook {
    ($name:ident, $target:ident) => {
        /// # Safety
        /// As the libc function of the same name.
        #[no_mangle]
        pub unsafe extern "C" fn $name(
            pid: *mut pid_t,
            file: *const c_char,
            actions: *const posix_spawn_file_actions_t,
            attr: *const posix_spawnattr_t,
            argv: *const *mut c_char,
            envp: *const *mut c_char,
        ) -> c_int {
            let (Some(f), Some(spawn)) = (real!(stringify!($name), SpawnFn), real!("posix_spawn", SpawnFn)) else {
                return libc::ENOSYS;
            };
            // Also keeps a pacing quantum that ends in the child before its exec from
            // killing it (see `around_exec`).
            around_exec(|| {
                // SAFETY: the caller's arguments, as for exec; the trap is spawned with the
                // caller's pid slot, file actions, attributes and argv.
                let trapped = unsafe {
                    spawn_via_trap(Target::$target(file), argv.cast(), envp.cast(), |trap, env| {
                        spawn(pid, trap, actions, attr, argv, env.cast())
                    })
                };
                match trapped {
                    Some(0) => 0,
                    // SAFETY: forwarding the caller's arguments.
                    _ => unsafe { f(pid, file, actions, attr, argv, envp) },
                }
            })
        }
    };
}

spawn_hook!(posix_spawn, Path);
spawn_hook!(posix_spawnp, Search);

#[cfg(test)]
mod tests {
    use super::*;

    fn text(p: *const c_char) -> String {
        // SAFETY: the tests pass pointers into NUL-terminated buffers.
        unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_owned()
    }

    #[test]
    fn the_shim_leaves_ld_preload() {
        let mut buf = [0u8; PRELOAD_MAX];
        assert_eq!(without_shim(b"/opt/d/libdilation.so", &mut buf), Some(None));
        let kept = without_shim(b"/a/liba.so /opt/d/libdilation.so:/b/libb.so", &mut buf).unwrap().unwrap();
        assert_eq!(text(kept), "LD_PRELOAD=/a/liba.so:/b/libb.so");
        let long = [b'x'; PRELOAD_MAX];
        assert_eq!(without_shim(&long, &mut buf), None, "does not fit: no hand-off");
    }

    #[test]
    fn descriptors_are_named_through_proc() {
        let mut buf = [0u8; 32];
        assert_eq!(text(proc_fd(0, &mut buf).unwrap()), "/proc/self/fd/0");
        assert_eq!(text(proc_fd(1_234_567, &mut buf).unwrap()), "/proc/self/fd/1234567");
        assert!(proc_fd(-1, &mut buf).is_none());
        let f = std::fs::File::open("/bin/sh").unwrap();
        let mut path = [0u8; 64];
        let end = fd_path(std::os::fd::AsRawFd::as_raw_fd(&f), &mut path, 3).unwrap();
        let named = std::fs::canonicalize("/bin/sh").unwrap();
        assert_eq!(&path[3..end], named.to_str().unwrap().as_bytes());
    }

    #[test]
    fn values_of_entries() {
        assert_eq!(value(b"DILATION_TDF=10", TDF), Some(&b"10"[..]));
        assert_eq!(value(b"DILATION_TDFX=10", TDF), None);
        assert_eq!(value(b"DILATION_TRAP_PROGRAM=/x", TRAP), None);
        assert_eq!(value(b"DILATION_TRAP=", TRAP), Some(&b""[..]));
    }
}
