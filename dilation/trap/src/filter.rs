//! The seccomp filter: which system calls stop at the tracer.
//!
//! Only calls that carry a clock or a timeout stop, and where an argument decides it the
//! filter checks it, because every stop costs a ptrace round trip: `epoll_pwait` with a zero
//! or infinite timeout (the Go scheduler's non-blocking polls), futex operations without a
//! timeout, and `clock_gettime` on CPU-time clocks run at full speed.
//!
//! # Design
//! A small classic-BPF assembler with labels; the program is ~100 instructions, well under
//! the 4096 limit and the 8-bit jump range. Hand-written rather than through a filter
//! crate because the argument tests (32-bit signed timeouts, masked futex commands) are
//! the whole point, and the program is tested here by interpreting it.

use libc::{sock_filter, SECCOMP_RET_ALLOW, SECCOMP_RET_TRACE};

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JGE_K: u16 = 0x35;
const BPF_JSET_K: u16 = 0x45;
const BPF_AND_K: u16 = 0x54;
const BPF_RET_K: u16 = 0x06;
const BPF_JA: u16 = 0x05;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_BIT: u32 = 0x4000_0000;

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

const ALLOW: usize = 0;
const TRACE: usize = 1;

/// Errors of the filter assembler.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("seccomp filter jump too long ({0} instructions)")]
    JumpTooLong(usize),
}

/// The filter program.
pub fn program() -> Result<Vec<sock_filter>, FilterError> {
    let mut code = vec![
        Insn::Stmt(BPF_LD_W_ABS, OFF_ARCH),
        Insn::Jump(BPF_JEQ_K, AUDIT_ARCH_X86_64, Target::Next, Target::Label(ALLOW)),
        Insn::Stmt(BPF_LD_W_ABS, OFF_NR),
        Insn::Jump(BPF_JGE_K, X32_BIT, Target::Label(ALLOW), Target::Next),
    ];
    let table = traced();
    let mut blocks = Vec::new();
    let mut next_label = 2;
    for (nr, when) in table {
        let target = if when == When::Always {
            TRACE
        } else {
            let l = next_label;
            next_label += 1;
            blocks.push(Insn::Label(l));
            block(&mut blocks, when, &mut next_label);
            l
        };
        code.push(Insn::Jump(BPF_JEQ_K, nr as u32, Target::Label(target), Target::Next));
    }
    // Classic BPF only jumps forward: the shared returns come last.
    code.push(Insn::Stmt(BPF_RET_K, SECCOMP_RET_ALLOW));
    code.extend(blocks);
    code.push(Insn::Label(ALLOW));
    code.push(Insn::Stmt(BPF_RET_K, SECCOMP_RET_ALLOW));
    code.push(Insn::Label(TRACE));
    code.push(Insn::Stmt(BPF_RET_K, SECCOMP_RET_TRACE));
    assemble(&code)
}

fn non_zero(out: &mut Vec<Insn>, i: u32) {
    out.push(Insn::Stmt(BPF_LD_W_ABS, arg_lo(i)));
    out.push(Insn::Jump(BPF_JEQ_K, 0, Target::Next, Target::Label(TRACE)));
    out.push(Insn::Stmt(BPF_LD_W_ABS, arg_hi(i)));
    out.push(Insn::Jump(BPF_JEQ_K, 0, Target::Label(ALLOW), Target::Label(TRACE)));
}

fn block(out: &mut Vec<Insn>, when: When, next_label: &mut usize) {
    match when {
        When::Always => out.push(Insn::Jump(BPF_JA, 0, Target::Label(TRACE), Target::Label(TRACE))),
        When::NonZero(i) => non_zero(out, i),
        When::PositiveInt(i) => {
            out.push(Insn::Stmt(BPF_LD_W_ABS, arg_lo(i)));
            out.push(Insn::Jump(BPF_JEQ_K, 0, Target::Label(ALLOW), Target::Next));
            out.push(Insn::Jump(BPF_JSET_K, 0x8000_0000, Target::Label(ALLOW), Target::Label(TRACE)));
        }
        When::DilatedClock(i) => {
            out.push(Insn::Stmt(BPF_LD_W_ABS, arg_lo(i)));
            for c in DILATED_CLOCKS {
                out.push(Insn::Jump(BPF_JEQ_K, c, Target::Label(TRACE), Target::Next));
            }
            out.push(Insn::Jump(BPF_JA, 0, Target::Label(ALLOW), Target::Label(ALLOW)));
        }
        When::FutexTimedWait => {
            let check = *next_label;
            *next_label += 1;
            out.push(Insn::Stmt(BPF_LD_W_ABS, arg_lo(1)));
            out.push(Insn::Stmt(BPF_AND_K, 0x7f));
            for c in FUTEX_TIMED_CMDS {
                out.push(Insn::Jump(BPF_JEQ_K, c, Target::Label(check), Target::Next));
            }
            out.push(Insn::Jump(BPF_JA, 0, Target::Label(ALLOW), Target::Label(ALLOW)));
            out.push(Insn::Label(check));
            non_zero(out, 3);
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

    /// A classic-BPF interpreter for the instructions the assembler emits.
    fn run(prog: &[sock_filter], nr: i64, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&(nr as u32).to_le_bytes());
        data[4..8].copy_from_slice(&AUDIT_ARCH_X86_64.to_le_bytes());
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
    fn other_architectures_pass() {
        let p = program().unwrap();
        // x32 numbers have bit 30 set.
        assert_eq!(run(&p, libc::SYS_nanosleep | 0x4000_0000, [0; 6]), SECCOMP_RET_ALLOW);
    }
}
