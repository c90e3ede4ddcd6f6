//! `dilation-trap`: dilates programs that the LD_PRELOAD shim cannot reach — Go programs
//! (whose runtime reads the vDSO and makes raw syscalls) and static binaries — with a
//! mechanism that does not depend on libc.
//!
//! # Design
//! The launcher forks the program under `ptrace` and, before `execve`, installs a seccomp
//! filter that returns `SECCOMP_RET_TRACE` for the clock and timeout system calls (with
//! argument checks, so that e.g. `epoll_pwait` with a zero timeout or a CPU-time
//! `clock_gettime` never stops). The tracer then:
//! - at every `execve` (`PTRACE_EVENT_EXEC`), injects the vDSO fast path ([`fastpath`]):
//!   dilating code after the vDSO, which the vDSO's own symbols are rewritten to point at,
//!   so clock reads through the vDSO (glibc, the Go runtime) cost no trap. When that fails
//!   (or with `--vdso hide`) it hides the vDSO by turning the `AT_SYSINFO_EHDR`
//!   auxiliary-vector entry into `AT_IGNORE` ([`auxv`]); glibc and the Go runtime then read
//!   the clock through the `clock_gettime` system call, which the filter traps;
//! - at every trapped call (`PTRACE_EVENT_SECCOMP`), emulates clock reads in virtual time
//!   (writes the result, skips the call) and rewrites timeouts into real time in a scratch
//!   area below the thread's red zone, restoring the registers at the syscall-exit stop
//!   and scaling remainders back ([`rewrite`]).
//!
//! With `DILATION_CPU_SPEED` (a paced node), the tracer also paces every thread's CPU
//! ([`pacer`]): a perf event stops the thread after each quantum of CPU, and the tracer holds
//! it until the CPU is paid for, with the shim's arithmetic and the node's shared ledger.
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
//! x86_64 only. A trapped clock read (raw syscall, or a hidden vDSO) costs a ptrace round
//! trip (microseconds, not the tens of nanoseconds of the vDSO; see `docs/decisions/020-*`).
//! A program that calls the vDSO without its symbol table, or that reads `rdtsc`, escapes.
//! See `docs/dilation.md` and `docs/decisions/022-*`.

#[cfg(not(target_arch = "x86_64"))]
compile_error!("dilation-trap supports x86_64 only");

pub mod auxv;
pub mod clock;
pub mod fastpath;
pub mod filter;
pub mod memory;
#[path = "../../shim/src/model.rs"]
pub mod model;
pub mod pacer;
pub mod remote;
pub mod rewrite;
pub mod spawn;
pub mod tracer;
pub mod vdso;
