//! `dilation-trap`: dilates programs that the LD_PRELOAD shim cannot reach — Go programs
//! (whose runtime reads the vDSO and makes raw syscalls) and static binaries — with a
//! mechanism that does not depend on libc.
//!
//! # Design
//! The launcher forks the program under `ptrace` and, before `execve`, installs a seccomp
//! filter that returns `SECCOMP_RET_TRACE` for the clock and timeout system calls (with
//! argument checks, so that e.g. `epoll_pwait` with a zero timeout or a CPU-time
//! `clock_gettime` never stops). The tracer then:
//! - at every `execve` (`PTRACE_EVENT_EXEC`), hides the vDSO from the new image by turning
//!   its `AT_SYSINFO_EHDR` auxiliary-vector entry into `AT_IGNORE` ([`auxv`]); glibc and
//!   the Go runtime then read the clock through the `clock_gettime` system call, which the
//!   filter traps;
//! - at every trapped call (`PTRACE_EVENT_SECCOMP`), emulates clock reads in virtual time
//!   (writes the result, skips the call) and rewrites timeouts into real time in a scratch
//!   area below the thread's red zone, restoring the registers at the syscall-exit stop
//!   and scaling remainders back ([`rewrite`]).
//!
//! The filter and the ptrace options (`TRACEFORK|TRACEVFORK|TRACECLONE|TRACEEXEC`) are
//! inherited, so every thread and descendant is covered; signals (Go's SIGURG preemption)
//! are re-injected unchanged. `PTRACE_O_EXITKILL` kills the tree if the tracer dies: a
//! trapped call without a tracer would fail with `ENOSYS`, never run undilated.
//!
//! The time model is the shim's own code ([`model`] is `dilation/shim/src/model.rs`), so
//! both mechanisms compute identical virtual time from one epoch and control page.
//!
//! # Limitations
//! x86_64 only. Each dilated clock read costs a ptrace round trip (microseconds, not the
//! tens of nanoseconds of the vDSO; see `docs/decisions/020-*`). A program that finds the
//! vDSO through `/proc/self/maps` instead of the auxiliary vector, or that reads `rdtsc`,
//! escapes. See `docs/dilation.md`.

#[cfg(not(target_arch = "x86_64"))]
compile_error!("dilation-trap supports x86_64 only");

pub mod auxv;
pub mod clock;
pub mod filter;
pub mod memory;
#[path = "../../shim/src/model.rs"]
pub mod model;
pub mod rewrite;
pub mod spawn;
pub mod tracer;
