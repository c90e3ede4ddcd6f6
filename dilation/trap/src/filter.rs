//! The seccomp filter: which system calls stop at the tracer.
//!
//! Only calls that carry a clock or a timeout stop, and where an argument decides it the
//! filter checks it, because every stop costs a ptrace round trip: `epoll_pwait` with a zero
//! or infinite timeout (the Go scheduler's non-blocking polls), futex operations without a
//! timeout, and `clock_gettime` on CPU-time clocks run at full speed.
//!
//! A 64-bit process can also enter the kernel through the two other ABIs of x86-64: the
//! i386 one (`int $0x80`, or any call of a 32-bit program it executes) and x32 (numbers
//! with bit 30 set). The tracer converts native calls only, so the clock and timeout calls
//! of those ABIs stop with [`DATA_FOREIGN`] in `SECCOMP_RET_DATA`, and the tracer fails them
//! with `ENOSYS` and counts them (decision 020, addendum "Calls of the other ABIs"): a
//! trapped program never reads real time through them. Their other calls pass.
//!
//! # Design
//! A small classic-BPF assembler with labels. The program has one section per ABI, each a
//! list of numbers and its argument checks; the native one comes first and the others are
//! reached through `BPF_JA` (32-bit offsets), so that a native call runs the same four
//! instructions before its table as before. Hand-written rather than through a filter crate
//! because the argument tests (32-bit signed timeouts, masked futex commands) are the whole
//! point, and the program is tested here by interpreting it.

use libc::{sock_filter, SECCOMP_RET_ALLOW, SECCOMP_RET_TRACE};

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JGE_K: u16 = 0x35;
const BPF_JSET_K: u16 = 0x45;
const BPF_AND_K: u16 = 0x54;
const BPF_RET_K: u16 = 0x06;
const BPF_JA: u16 = 0x05;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// The bit that marks an x32 system call number.
pub const X32_BIT: u32 = 0x4000_0000;

/// `SECCOMP_RET_DATA` of a native call to convert.
pub const DATA_NATIVE: u16 = 0;
/// `SECCOMP_RET_DATA` of a clock or timeout call of the i386 or x32 ABI, to refuse.
pub const DATA_FOREIGN: u16 = 1;

const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
fn arg_lo(i: u32) -> u32 {
    16 + 8 * i
}
fn arg_hi(i: u32) -> u32 {
    20 + 8 * i
}

/// When a system call stops at the tracer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    Always,
    /// Argument `i` (a pointer) is not NULL.
    NonZero(u32),
    /// Argument `i` (a C `int` of milliseconds) is > 0.
    PositiveInt(u32),
    /// Argument `i` is a dilated clock id.
    DilatedClock(u32),
    /// A futex command that waits with a timeout, and the timeout pointer is not NULL.
    FutexTimedWait,
    /// The low 16 bits of argument 0 are this sub-call of a multiplexer (i386 `ipc`,
    /// `socketcall`).
    SubCall(u32),
}

/// `io_pgetevents` on x86-64 (not in every libc crate version).
pub const SYS_IO_PGETEVENTS: i64 = 333;

/// Clock ids that are dilated (see the shim's model).
pub const DILATED_CLOCKS: [u32; 9] = [0, 1, 4, 5, 6, 7, 8, 9, 11];
/// `FUTEX_WAIT`, `FUTEX_LOCK_PI`, `FUTEX_WAIT_BITSET`, `FUTEX_WAIT_REQUEUE_PI`, `FUTEX_LOCK_PI2`.
pub const FUTEX_TIMED_CMDS: [u32; 5] = [0, 6, 9, 11, 13];

/// The system calls that stop, and when.
pub fn traced() -> Vec<(i64, When)> {
    use libc::*;
    vec![
        (SYS_clock_gettime, When::DilatedClock(0)),
        (SYS_gettimeofday, When::Always),
        (SYS_time, When::Always),
        (SYS_nanosleep, When::Always),
        (SYS_clock_nanosleep, When::DilatedClock(0)),
        (SYS_futex, When::FutexTimedWait),
        (SYS_futex_waitv, When::NonZero(3)),
        (SYS_epoll_wait, When::PositiveInt(3)),
        (SYS_epoll_pwait, When::PositiveInt(3)),
        (SYS_epoll_pwait2, When::NonZero(3)),
        (SYS_poll, When::PositiveInt(2)),
        (SYS_ppoll, When::NonZero(2)),
        (SYS_select, When::NonZero(4)),
        (SYS_pselect6, When::NonZero(4)),
        (SYS_timerfd_settime, When::Always),
        (SYS_timerfd_gettime, When::Always),
        (SYS_timer_settime, When::Always),
        (SYS_timer_gettime, When::Always),
        (SYS_setitimer, When::Always),
        (SYS_getitimer, When::Always),
        (SYS_alarm, When::Always),
        (SYS_rt_sigtimedwait, When::NonZero(2)),
        (SYS_recvmmsg, When::NonZero(4)),
        (SYS_io_getevents, When::NonZero(4)),
        (SYS_IO_PGETEVENTS, When::NonZero(4)),
        (SYS_semtimedop, When::NonZero(3)),
        (SYS_mq_timedsend, When::NonZero(4)),
        (SYS_mq_timedreceive, When::NonZero(4)),
    ]
}

/// The x32 calls that are refused: every native one (x32 shares the numbers, bit 30 set)
/// and x32's own `rt_sigtimedwait` (523) and `recvmmsg` (537); numbers without bit 30.
pub fn x32_refused() -> Vec<(i64, When)> {
    let mut t = traced();
    t.push((523, When::NonZero(2)));
    t.push((537, When::NonZero(4)));
    t
}

/// The i386 calls that are refused, by name (`asm/unistd_32.h`) and number: the same calls
/// as [`traced`], their `_time64` variants, the old `select`, and the `ipc` and `socketcall`
/// multiplexers' `SEMTIMEDOP` (4) and `RECVMMSG` (19). The argument positions are the
/// native ones.
pub const I386_REFUSED: [(&str, i64, When); 45] = [
    ("time", 13, When::Always),
    ("alarm", 27, When::Always),
    ("gettimeofday", 78, When::Always),
    ("select", 82, When::Always),
    ("socketcall", 102, When::SubCall(19)),
    ("setitimer", 104, When::Always),
    ("getitimer", 105, When::Always),
    ("ipc", 117, When::SubCall(4)),
    ("_newselect", 142, When::NonZero(4)),
    ("nanosleep", 162, When::Always),
    ("poll", 168, When::PositiveInt(2)),
    ("rt_sigtimedwait", 177, When::NonZero(2)),
    ("futex", 240, When::FutexTimedWait),
    ("io_getevents", 247, When::NonZero(4)),
    ("epoll_wait", 256, When::PositiveInt(3)),
    ("timer_settime", 260, When::Always),
    ("timer_gettime", 261, When::Always),
    ("clock_gettime", 265, When::DilatedClock(0)),
    ("clock_nanosleep", 267, When::DilatedClock(0)),
    ("mq_timedsend", 279, When::NonZero(4)),
    ("mq_timedreceive", 280, When::NonZero(4)),
    ("pselect6", 308, When::NonZero(4)),
    ("ppoll", 309, When::NonZero(2)),
    ("epoll_pwait", 319, When::PositiveInt(3)),
    ("timerfd_settime", 325, When::Always),
    ("timerfd_gettime", 326, When::Always),
    ("recvmmsg", 337, When::NonZero(4)),
    ("io_pgetevents", 385, When::NonZero(4)),
    ("clock_gettime64", 403, When::DilatedClock(0)),
    ("clock_nanosleep_time64", 407, When::DilatedClock(0)),
    ("timer_gettime64", 408, When::Always),
    ("timer_settime64", 409, When::Always),
    ("timerfd_gettime64", 410, When::Always),
    ("timerfd_settime64", 411, When::Always),
    ("pselect6_time64", 413, When::NonZero(4)),
    ("ppoll_time64", 414, When::NonZero(2)),
    ("io_pgetevents_time64", 416, When::NonZero(4)),
    ("recvmmsg_time64", 417, When::NonZero(4)),
    ("mq_timedsend_time64", 418, When::NonZero(4)),
    ("mq_timedreceive_time64", 419, When::NonZero(4)),
    ("semtimedop_time64", 420, When::NonZero(3)),
    ("rt_sigtimedwait_time64", 421, When::NonZero(2)),
    ("futex_time64", 422, When::FutexTimedWait),
    ("epoll_pwait2", 441, When::NonZero(3)),
    ("futex_waitv", 449, When::NonZero(3)),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Next,
    Label(usize),
}

#[derive(Clone, Copy, Debug)]
enum Insn {
    Stmt(u16, u32),
    Jump(u16, u32, Target, Target),
    Label(usize),
}

/// Errors of the filter assembler.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("seccomp filter jump too long ({0} instructions)")]
    JumpTooLong(usize),
}

/// Where one section's checks end.
#[derive(Clone, Copy)]
struct Exits {
    allow: usize,
    stop: usize,
    /// Arguments are 64-bit (native, x32); i386 arguments are the low halves only.
    wide: bool,
}

/// Hands out unique labels.
struct Labels(usize);

impl Labels {
    fn next(&mut self) -> usize {
        self.0 += 1;
        self.0
    }
}

/// The filter program.
pub fn program() -> Result<Vec<sock_filter>, FilterError> {
    let mut l = Labels(0);
    let (native, x32, i386, native64) = (l.next(), l.next(), l.next(), l.next());
    let mut code = vec![
        Insn::Stmt(BPF_LD_W_ABS, OFF_ARCH),
        Insn::Jump(BPF_JEQ_K, AUDIT_ARCH_X86_64, Target::Label(native), Target::Next),
        // Any other architecture a process of this kernel can call in is i386.
        Insn::Jump(BPF_JA, 0, Target::Label(i386), Target::Label(i386)),
        Insn::Label(native),
        Insn::Stmt(BPF_LD_W_ABS, OFF_NR),
        Insn::Jump(BPF_JGE_K, X32_BIT, Target::Next, Target::Label(native64)),
        Insn::Jump(BPF_JA, 0, Target::Label(x32), Target::Label(x32)),
        Insn::Label(native64),
    ];
    section(&mut code, &mut l, &traced(), SECCOMP_RET_TRACE | u32::from(DATA_NATIVE), true);
    code.push(Insn::Label(x32));
    code.push(Insn::Stmt(BPF_AND_K, !X32_BIT));
    section(&mut code, &mut l, &x32_refused(), SECCOMP_RET_TRACE | u32::from(DATA_FOREIGN), true);
    code.push(Insn::Label(i386));
    code.push(Insn::Stmt(BPF_LD_W_ABS, OFF_NR));
    let table: Vec<(i64, When)> = I386_REFUSED.iter().map(|&(_, nr, when)| (nr, when)).collect();
    section(&mut code, &mut l, &table, SECCOMP_RET_TRACE | u32::from(DATA_FOREIGN), false);
    assemble(&code)
}

/// One ABI's table, the system call number in the accumulator: a jump per number, then its
/// argument checks, then the section's own returns (classic BPF only jumps forward).
fn section(code: &mut Vec<Insn>, l: &mut Labels, table: &[(i64, When)], stop_ret: u32, wide: bool) {
    let ends = Exits { allow: l.next(), stop: l.next(), wide };
    let mut blocks = Vec::new();
    for &(nr, when) in table {
        let target = if when == When::Always {
            ends.stop
        } else {
            let b = l.next();
            blocks.push(Insn::Label(b));
            block(&mut blocks, when, ends, l);
            b
        };
        code.push(Insn::Jump(BPF_JEQ_K, nr as u32, Target::Label(target), Target::Next));
    }
    code.push(Insn::Stmt(BPF_RET_K, SECCOMP_RET_ALLOW));
    code.extend(blocks);
    code.push(Insn::Label(ends.allow));
    code.push(Insn::Stmt(BPF_RET_K, SECCOMP_RET_ALLOW));
    code.push(Insn::Label(ends.stop));
    code.push(Insn::Stmt(BPF_RET_K, stop_ret));
}

fn non_zero(out: &mut Vec<Insn>, i: u32, e: Exits) {
    out.push(Insn::Stmt(BPF_LD_W_ABS, arg_lo(i)));
    if e.wide {
        out.push(Insn::Jump(BPF_JEQ_K, 0, Target::Next, Target::Label(e.stop)));
        out.push(Insn::Stmt(BPF_LD_W_ABS, arg_hi(i)));
    }
    out.push(Insn::Jump(BPF_JEQ_K, 0, Target::Label(e.allow), Target::Label(e.stop)));
}

fn block(out: &mut Vec<Insn>, when: When, e: Exits, l: &mut Labels) {
    match when {
        When::Always => out.push(Insn::Jump(BPF_JA, 0, Target::Label(e.stop), Target::Label(e.stop))),
        When::NonZero(i) => non_zero(out, i, e),
        When::PositiveInt(i) => {
            out.push(Insn::Stmt(BPF_LD_W_ABS, arg_lo(i)));
            out.push(Insn::Jump(BPF_JEQ_K, 0, Target::Label(e.allow), Target::Next));
            out.push(Insn::Jump(BPF_JSET_K, 0x8000_0000, Target::Label(e.allow), Target::Label(e.stop)));
        }
        When::DilatedClock(i) => {
            out.push(Insn::Stmt(BPF_LD_W_ABS, arg_lo(i)));
            for c in DILATED_CLOCKS {
                out.push(Insn::Jump(BPF_JEQ_K, c, Target::Label(e.stop), Target::Next));
            }
            out.push(Insn::Jump(BPF_JA, 0, Target::Label(e.allow), Target::Label(e.allow)));
        }
        When::FutexTimedWait => {
            let check = l.next();
            out.push(Insn::Stmt(BPF_LD_W_ABS, arg_lo(1)));
            out.push(Insn::Stmt(BPF_AND_K, 0x7f));
            for c in FUTEX_TIMED_CMDS {
                out.push(Insn::Jump(BPF_JEQ_K, c, Target::Label(check), Target::Next));
            }
            out.push(Insn::Jump(BPF_JA, 0, Target::Label(e.allow), Target::Label(e.allow)));
            out.push(Insn::Label(check));
            non_zero(out, 3, e);
        }
        When::SubCall(k) => {
            out.push(Insn::Stmt(BPF_LD_W_ABS, arg_lo(0)));
            out.push(Insn::Stmt(BPF_AND_K, 0xffff));
            out.push(Insn::Jump(BPF_JEQ_K, k, Target::Label(e.stop), Target::Label(e.allow)));
        }
    }
}

fn assemble(code: &[Insn]) -> Result<Vec<sock_filter>, FilterError> {
    let mut at = std::collections::HashMap::new();
    let mut n = 0usize;
    for insn in code {
        match insn {
            Insn::Label(l) => {
                at.insert(*l, n);
            }
            _ => n += 1,
        }
    }
    let mut out = Vec::with_capacity(n);
    for insn in code {
        let here = out.len();
        let rel = |t: Target| -> Result<u8, FilterError> {
            match t {
                Target::Next => Ok(0),
                Target::Label(l) => {
                    let d = at.get(&l).copied().unwrap_or(here + 1).saturating_sub(here + 1);
                    u8::try_from(d).map_err(|_| FilterError::JumpTooLong(d))
                }
            }
        };
        match *insn {
            Insn::Label(_) => {}
            Insn::Stmt(code, k) => out.push(sock_filter { code, jt: 0, jf: 0, k }),
            Insn::Jump(BPF_JA, _, t, _) => {
                let Target::Label(l) = t else { continue };
                let d = at.get(&l).copied().unwrap_or(here + 1).saturating_sub(here + 1);
                out.push(sock_filter { code: BPF_JA, jt: 0, jf: 0, k: d as u32 });
            }
            Insn::Jump(code, k, jt, jf) => out.push(sock_filter { code, jt: rel(jt)?, jf: rel(jf)?, k }),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUDIT_ARCH_I386: u32 = 0x4000_0003;
    const FOREIGN: u32 = SECCOMP_RET_TRACE | DATA_FOREIGN as u32;

    /// A native call through the filter.
    fn run(prog: &[sock_filter], nr: i64, args: [u64; 6]) -> u32 {
        run_arch(prog, AUDIT_ARCH_X86_64, nr, args)
    }

    /// A classic-BPF interpreter for the instructions the assembler emits.
    fn run_arch(prog: &[sock_filter], arch: u32, nr: i64, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&(nr as u32).to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            let f = prog[pc];
            pc += 1;
            let k = f.k;
            let jump = |cond: bool| {
                if cond {
                    usize::from(f.jt)
                } else {
                    usize::from(f.jf)
                }
            };
            match f.code {
                BPF_LD_W_ABS => acc = u32::from_le_bytes(data[k as usize..k as usize + 4].try_into().unwrap()),
                BPF_AND_K => acc &= k,
                BPF_JEQ_K => pc += jump(acc == k),
                BPF_JGE_K => pc += jump(acc >= k),
                BPF_JSET_K => pc += jump(acc & k != 0),
                BPF_JA => pc += k as usize,
                BPF_RET_K => return k,
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    #[test]
    fn time_calls_stop_and_others_do_not() {
        let p = program().unwrap();
        let t = SECCOMP_RET_TRACE;
        let a = SECCOMP_RET_ALLOW;
        assert_eq!(run(&p, libc::SYS_clock_gettime, [1, 0x1000, 0, 0, 0, 0]), t);
        assert_eq!(run(&p, libc::SYS_clock_gettime, [2, 0x1000, 0, 0, 0, 0]), a, "CPU clock");
        assert_eq!(run(&p, libc::SYS_clock_gettime, [(-6i64) as u64, 0x1000, 0, 0, 0, 0]), a);
        assert_eq!(run(&p, libc::SYS_read, [0; 6]), a);
        assert_eq!(run(&p, libc::SYS_nanosleep, [0x1000, 0, 0, 0, 0, 0]), t);
        assert_eq!(run(&p, libc::SYS_gettimeofday, [0; 6]), t);
    }

    #[test]
    fn timeouts_are_checked() {
        let p = program().unwrap();
        let t = SECCOMP_RET_TRACE;
        let a = SECCOMP_RET_ALLOW;
        assert_eq!(run(&p, libc::SYS_epoll_pwait, [3, 0x1000, 128, 0, 0, 0]), a, "non-blocking poll");
        assert_eq!(run(&p, libc::SYS_epoll_pwait, [3, 0x1000, 128, 0xffff_ffff, 0, 0]), a, "infinite");
        assert_eq!(run(&p, libc::SYS_epoll_pwait, [3, 0x1000, 128, 10, 0, 0]), t);
        assert_eq!(run(&p, libc::SYS_futex, [0x1000, 128, 0, 0, 0, 0]), a, "wait without timeout");
        assert_eq!(run(&p, libc::SYS_futex, [0x1000, 128, 0, 0x7fff_0000_0000, 0, 0]), t, "private wait");
        assert_eq!(run(&p, libc::SYS_futex, [0x1000, 1 | 128, 1, 0x2000, 0, 0]), a, "wake");
        assert_eq!(run(&p, libc::SYS_futex, [0x1000, 9 | 256, 0, 0x2000, 0, 0]), t, "bitset realtime");
        assert_eq!(run(&p, libc::SYS_poll, [0x1000, 1, 0, 0, 0, 0]), a);
        assert_eq!(run(&p, libc::SYS_poll, [0x1000, 1, 5, 0, 0, 0]), t);
        assert_eq!(run(&p, libc::SYS_select, [1, 0, 0, 0, 0x2000, 0]), t);
        assert_eq!(run(&p, libc::SYS_select, [1, 0, 0, 0, 0, 0]), a);
    }

    #[test]
    fn native_calls_stop_with_the_native_tag() {
        let p = program().unwrap();
        for (nr, _) in traced() {
            let args = [1, 0, 0x1000, 0x1000, 0x1000, 0];
            let r = run(&p, nr, args);
            assert!(r == SECCOMP_RET_TRACE || r == SECCOMP_RET_ALLOW, "{nr}: {r:#x}");
        }
        assert_eq!(run(&p, libc::SYS_nanosleep, [0x1000, 0, 0, 0, 0, 0]), SECCOMP_RET_TRACE | u32::from(DATA_NATIVE));
    }

    #[test]
    fn x32_clock_and_timeout_calls_stop_as_foreign() {
        let p = program().unwrap();
        let a = SECCOMP_RET_ALLOW;
        let x32 = |nr: i64| nr | i64::from(X32_BIT);
        assert_eq!(run(&p, x32(libc::SYS_clock_gettime), [1, 0x1000, 0, 0, 0, 0]), FOREIGN);
        assert_eq!(run(&p, x32(libc::SYS_clock_gettime), [2, 0x1000, 0, 0, 0, 0]), a, "CPU clock");
        assert_eq!(run(&p, x32(libc::SYS_nanosleep), [0; 6]), FOREIGN);
        assert_eq!(run(&p, x32(libc::SYS_gettimeofday), [0; 6]), FOREIGN);
        assert_eq!(run(&p, x32(libc::SYS_futex), [0x1000, 128, 0, 0x2000, 0, 0]), FOREIGN);
        assert_eq!(run(&p, x32(libc::SYS_futex), [0x1000, 1 | 128, 1, 0, 0, 0]), a, "wake");
        assert_eq!(run(&p, x32(523), [0x1000, 0, 0x2000, 8, 0, 0]), FOREIGN, "x32 rt_sigtimedwait");
        assert_eq!(run(&p, x32(537), [3, 0x1000, 8, 0, 0x2000, 0]), FOREIGN, "x32 recvmmsg");
        assert_eq!(run(&p, x32(537), [3, 0x1000, 8, 0, 0, 0]), a, "x32 recvmmsg without a timeout");
        assert_eq!(run(&p, x32(libc::SYS_read), [0; 6]), a);
        assert_eq!(run(&p, x32(libc::SYS_write), [1, 0x1000, 1, 0, 0, 0]), a);
    }

    #[test]
    fn i386_clock_and_timeout_calls_stop_as_foreign() {
        let p = program().unwrap();
        let a = SECCOMP_RET_ALLOW;
        let i386 = |nr: i64, args: [u64; 6]| run_arch(&p, AUDIT_ARCH_I386, nr, args);
        assert_eq!(i386(265, [1, 0x1000, 0, 0, 0, 0]), FOREIGN, "clock_gettime(MONOTONIC)");
        assert_eq!(i386(265, [2, 0x1000, 0, 0, 0, 0]), a, "clock_gettime(PROCESS_CPUTIME)");
        assert_eq!(i386(403, [0, 0x1000, 0, 0, 0, 0]), FOREIGN, "clock_gettime64");
        assert_eq!(i386(78, [0x1000, 0, 0, 0, 0, 0]), FOREIGN, "gettimeofday");
        assert_eq!(i386(13, [0; 6]), FOREIGN, "time");
        assert_eq!(i386(162, [0x1000, 0, 0, 0, 0, 0]), FOREIGN, "nanosleep");
        assert_eq!(i386(240, [0x1000, 128, 0, 0x2000, 0, 0]), FOREIGN, "futex wait with a timeout");
        assert_eq!(i386(240, [0x1000, 128, 0, 0, 0, 0]), a, "futex wait without a timeout");
        assert_eq!(i386(240, [0x1000, 128, 0, 0xdead_0000_0000, 0, 0]), a, "only the low half is the i386 argument");
        assert_eq!(i386(422, [0x1000, 9, 0, 0x2000, 0, 0]), FOREIGN, "futex_time64");
        assert_eq!(i386(256, [3, 0x1000, 8, 10, 0, 0]), FOREIGN, "epoll_wait");
        assert_eq!(i386(256, [3, 0x1000, 8, 0, 0, 0]), a, "epoll_wait without waiting");
        assert_eq!(i386(117, [4, 1, 1, 0, 0x1000, 0x2000]), FOREIGN, "ipc(SEMTIMEDOP)");
        assert_eq!(i386(117, [1, 1, 1, 0, 0x1000, 0]), a, "ipc(SEMOP)");
        assert_eq!(i386(102, [19, 0x1000, 0, 0, 0, 0]), FOREIGN, "socketcall(RECVMMSG)");
        assert_eq!(i386(102, [1, 0x1000, 0, 0, 0, 0]), a, "socketcall(SOCKET)");
        assert_eq!(i386(20, [0; 6]), a, "getpid");
        assert_eq!(i386(4, [1, 0x1000, 1, 0, 0, 0]), a, "write");
        assert_eq!(i386(1, [0; 6]), a, "exit");
    }

    #[test]
    fn the_tables_name_each_call_once() {
        for table in [traced(), x32_refused(), I386_REFUSED.iter().map(|&(_, nr, w)| (nr, w)).collect()] {
            let mut nrs: Vec<i64> = table.iter().map(|t| t.0).collect();
            nrs.sort_unstable();
            let n = nrs.len();
            nrs.dedup();
            assert_eq!(nrs.len(), n, "a number twice in {table:?}");
        }
    }

    /// The i386 numbers are those of the kernel's headers, where they are installed.
    #[test]
    fn i386_numbers_match_the_kernel_headers() {
        let Ok(text) = std::fs::read_to_string("/usr/include/x86_64-linux-gnu/asm/unistd_32.h") else {
            eprintln!("no asm/unistd_32.h: the i386 numbers are not checked");
            return;
        };
        for (name, nr, _) in I386_REFUSED {
            let line = format!("#define __NR_{name} {nr}");
            assert!(text.lines().any(|l| l.trim() == line), "{line} is not in asm/unistd_32.h");
        }
    }
}
