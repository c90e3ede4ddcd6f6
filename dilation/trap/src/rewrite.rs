//! What the tracer does with each trapped system call: the virtual-time semantics of the
//! shim, expressed as register and memory edits.
//!
//! - **Clock reads** (`clock_gettime` on a dilated clock, `gettimeofday`, `time`) are
//!   emulated: the virtual time is written to the caller's buffer and the call is skipped
//!   with the right return value. One stop.
//! - **Waits** get their timeout converted into real time (relative: × TDF, rounded up;
//!   absolute: the model's inverse on the same clock). A pointer argument is redirected to
//!   a converted copy in a scratch area 128–192 bytes below the stack pointer (below the
//!   x86-64 red zone; the kernel copies timeouts in at the start of the call), an integer
//!   argument is replaced. At the syscall-exit stop the original registers are restored
//!   (callers may rely on them being preserved), remainders the kernel wrote (`select`'s
//!   timeout, `nanosleep`'s `rem`, `*_gettime`, old timer values, `alarm`'s return) are
//!   scaled back to virtual time. A restarted call re-enters the filter with the original
//!   registers, so it is converted once, never twice.
//!
//! # Limitations
//! A relative wait that the kernel restarts after a stop signal through `restart_syscall`
//! keeps its real deadline (right) but a later `rem` it writes is not scaled back.
//! `SO_RCVTIMEO`/`SO_SNDTIMEO` and io_uring timeouts are not converted.

use crate::clock::VirtualClock;
use crate::filter::SYS_IO_PGETEVENTS;
use crate::memory::Memory;
use crate::model;

/// A trapped call: number, arguments, stack pointer.
#[derive(Clone, Copy, Debug)]
pub struct Call {
    pub nr: i64,
    pub args: [u64; 6],
    pub sp: u64,
}

/// Shapes of timeout structures (all fields 64-bit on x86-64).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Timespec,
    Timeval,
    /// `{interval, value}` as two timespecs.
    Itimerspec,
    /// `{interval, value}` as two timevals.
    Itimerval,
}

impl Layout {
    fn words(self) -> usize {
        match self {
            Layout::Timespec | Layout::Timeval => 2,
            Layout::Itimerspec | Layout::Itimerval => 4,
        }
    }
    fn unit(self) -> i64 {
        match self {
            Layout::Timespec | Layout::Itimerspec => 1,
            Layout::Timeval | Layout::Itimerval => 1_000,
        }
    }
}

/// What to do at the syscall-exit stop.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExitFix {
    /// Argument registers to put back.
    pub restore: Vec<(usize, u64)>,
    /// A relative remainder at this address to scale back to virtual time.
    pub rescale: Option<(u64, Layout, Condition)>,
    /// Copy the remainder the kernel wrote into scratch back to the caller's buffer, scaled.
    pub copy_back: Option<(u64, u64, Layout)>,
    /// The return value is seconds of real time (`alarm`).
    pub ret_seconds: bool,
}

/// When [`ExitFix::rescale`] applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    Success,
    /// The call was interrupted by a signal: at the syscall-exit stop it returns `EINTR` or
    /// one of the kernel's restart codes (see [`interrupted`]).
    Interrupted,
}

/// Whether a return value seen at the syscall-exit stop means "interrupted by a signal".
/// The tracer sees the kernel's internal restart codes there (a `nanosleep` interrupted by a
/// handled signal returns `ERESTART_RESTARTBLOCK`, which becomes `EINTR` only when the
/// signal is delivered, after this stop), with the remainder already written.
fn interrupted(ret: i64) -> bool {
    const ERESTARTSYS: i64 = -512;
    const ERESTARTNOINTR: i64 = -513;
    const ERESTARTNOHAND: i64 = -514;
    const ERESTART_RESTARTBLOCK: i64 = -516;
    matches!(ret, EINTR | ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND | ERESTART_RESTARTBLOCK)
}

/// The tracer's answer to a trapped call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Run the call unchanged.
    Pass,
    /// Skip the call; it returns this value (buffers already written).
    Emulate(i64),
    /// Set these argument registers, run the call, stop at its exit.
    Rewrite { set: Vec<(usize, u64)>, exit: ExitFix },
}

/// Clocks of kernel timer objects, which only the kernel knows.
pub trait TimerClocks {
    /// The clock of timerfd `fd` in the calling process.
    fn timerfd(&self, fd: i32) -> Option<i32>;
    /// The clock of POSIX timer `id` in the calling process.
    fn posix_timer(&self, id: i32) -> Option<i32>;
}

/// Reads `/proc/<pid>/fdinfo/<fd>` and `/proc/<pid>/timers`.
#[derive(Clone, Copy, Debug)]
pub struct ProcTimerClocks(pub i32);

impl TimerClocks for ProcTimerClocks {
    fn timerfd(&self, fd: i32) -> Option<i32> {
        let text = std::fs::read_to_string(format!("/proc/{}/fdinfo/{fd}", self.0)).ok()?;
        text.lines().find_map(|l| l.strip_prefix("clockid:")).and_then(|v| v.trim().parse().ok())
    }
    fn posix_timer(&self, id: i32) -> Option<i32> {
        let text = std::fs::read_to_string(format!("/proc/{}/timers", self.0)).ok()?;
        posix_timer_clock(&text, id)
    }
}

fn posix_timer_clock(text: &str, id: i32) -> Option<i32> {
    let mut current = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("ID:") {
            current = v.trim().parse::<i32>().ok();
        } else if let Some(v) = line.strip_prefix("ClockID:") {
            if current == Some(id) {
                return v.trim().parse().ok();
            }
        }
    }
    None
}

const NS: i64 = 1_000_000_000;
const EINTR: i64 = -(libc::EINTR as i64);
const ABSTIME_FLAG: u64 = 1;

fn scratch(sp: u64) -> u64 {
    (sp.wrapping_sub(128 + 64)) & !15
}

/// A relative real remainder back to virtual, same layout.
fn words_to_virtual(w: &mut [i64], unit: i64, tdf: f64) {
    for pair in w.chunks_mut(2) {
        let ns = model::ts_ns(pair[0], pair[1].saturating_mul(unit));
        let (s, sub) = model::ns_ts(model::virtual_wait(ns, tdf));
        pair[0] = s;
        pair[1] = sub / unit;
    }
}

fn read_words(mem: &impl Memory, addr: u64, n: usize) -> Option<Vec<i64>> {
    let mut b = vec![0u8; 8 * n];
    mem.read(addr, &mut b).ok()?;
    Some(b.chunks(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default())).collect())
}

fn write_words(mem: &impl Memory, addr: u64, w: &[i64]) -> bool {
    let b: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
    mem.write(addr, &b).is_ok()
}

/// How one time value of a wait is converted.
#[derive(Clone, Copy, Debug)]
enum Conv {
    Relative,
    /// Absolute on this clock.
    Absolute(i32),
}

/// Converts one `(sec, sub)` pair; `None` when invalid (the kernel will say EINVAL).
fn convert(clock: &mut VirtualClock, sec: i64, sub: i64, unit: i64, conv: Conv) -> Option<(i64, i64)> {
    if sec < 0 || sub < 0 || sub.saturating_mul(unit) >= NS {
        return None;
    }
    let ns = model::ts_ns(sec, sub * unit);
    let real = match conv {
        Conv::Relative => model::real_wait(ns, clock.tdf()),
        Conv::Absolute(c) => clock.deadline(c, ns),
    };
    let (s, n) = model::ns_ts(real);
    Some((s, n / unit))
}

/// Redirects pointer argument `arg` to a converted copy of the value it points to.
fn redirect(
    mem: &impl Memory,
    clock: &mut VirtualClock,
    c: &Call,
    arg: usize,
    layout: Layout,
    conv: [Conv; 2],
) -> Option<(u64, ExitFix)> {
    let ptr = c.args[arg];
    let mut w = read_words(mem, ptr, layout.words())?;
    for (i, pair) in w.chunks_mut(2).enumerate() {
        // A zero it_value disarms a timer: keep it zero, whatever the clock.
        if layout.words() == 4 && i == 1 && pair[0] == 0 && pair[1] == 0 {
            continue;
        }
        if layout.words() == 4 && i == 0 && pair[0] == 0 && pair[1] == 0 {
            continue;
        }
        let (s, sub) = convert(clock, pair[0], pair[1], layout.unit(), conv[i.min(1)])?;
        pair[0] = s;
        pair[1] = sub;
    }
    let at = scratch(c.sp);
    write_words(mem, at, &w).then(|| (at, ExitFix { restore: vec![(arg, ptr)], ..ExitFix::default() }))
}

fn rewrite_ptr(
    mem: &impl Memory,
    clock: &mut VirtualClock,
    c: &Call,
    arg: usize,
    layout: Layout,
    conv: Conv,
) -> Decision {
    match redirect(mem, clock, c, arg, layout, [conv, conv]) {
        Some((at, exit)) => Decision::Rewrite { set: vec![(arg, at)], exit },
        None => Decision::Pass,
    }
}

/// Like [`rewrite_ptr`] for calls whose kernel writes the remaining time back.
fn rewrite_ptr_copy_back(
    mem: &impl Memory,
    clock: &mut VirtualClock,
    c: &Call,
    arg: usize,
    layout: Layout,
) -> Decision {
    match redirect(mem, clock, c, arg, layout, [Conv::Relative; 2]) {
        Some((at, mut exit)) => {
            exit.copy_back = Some((at, c.args[arg], layout));
            Decision::Rewrite { set: vec![(arg, at)], exit }
        }
        None => Decision::Pass,
    }
}

fn rewrite_ms(clock: &mut VirtualClock, c: &Call, arg: usize) -> Decision {
    let ms = c.args[arg] as u32 as i32;
    let real = model::real_ms(ms, clock.tdf());
    if real == ms {
        return Decision::Pass;
    }
    Decision::Rewrite {
        set: vec![(arg, real as u32 as u64)],
        exit: ExitFix { restore: vec![(arg, c.args[arg])], ..ExitFix::default() },
    }
}

/// A `settime` call: the new value converted, the old one scaled back on success.
fn settime(
    mem: &impl Memory,
    clock: &mut VirtualClock,
    c: &Call,
    new: usize,
    old: usize,
    layout: Layout,
    value_conv: Conv,
) -> Decision {
    let mut exit = ExitFix::default();
    let mut set = Vec::new();
    if c.args[new] != 0 {
        let Some((at, e)) = redirect(mem, clock, c, new, layout, [Conv::Relative, value_conv]) else {
            return Decision::Pass;
        };
        set.push((new, at));
        exit = e;
    }
    if c.args[old] != 0 {
        exit.rescale = Some((c.args[old], layout, Condition::Success));
    }
    Decision::Rewrite { set, exit }
}

fn gettime(c: &Call, cur: usize, layout: Layout) -> Decision {
    if c.args[cur] == 0 {
        return Decision::Pass;
    }
    Decision::Rewrite {
        set: vec![],
        exit: ExitFix { rescale: Some((c.args[cur], layout, Condition::Success)), ..ExitFix::default() },
    }
}

/// Decides what to do with trapped call `c` at its seccomp stop.
pub fn on_enter(clock: &mut VirtualClock, mem: &impl Memory, timers: &impl TimerClocks, c: &Call) -> Decision {
    let a = c.args;
    let clk = |i: usize| a[i] as u32 as i32;
    match c.nr {
        libc::SYS_clock_gettime => {
            let Ok(Some(v)) = clock.now(clk(0)) else {
                return Decision::Pass;
            };
            let (s, ns) = model::ns_ts(v);
            if mem.write_pair(a[1], s, ns).is_err() {
                return Decision::Pass;
            }
            Decision::Emulate(0)
        }
        libc::SYS_gettimeofday => {
            let Ok(Some(v)) = clock.now(model::CLOCK_REALTIME) else {
                return Decision::Pass;
            };
            let (s, ns) = model::ns_ts(v);
            if a[0] != 0 && mem.write_pair(a[0], s, ns / 1_000).is_err() {
                return Decision::Pass;
            }
            if a[1] != 0 && mem.write(a[1], &[0u8; 8]).is_err() {
                return Decision::Pass;
            }
            Decision::Emulate(0)
        }
        libc::SYS_time => {
            let Ok(Some(v)) = clock.now(model::CLOCK_REALTIME) else {
                return Decision::Pass;
            };
            let s = v.div_euclid(NS);
            if a[0] != 0 && mem.write(a[0], &s.to_le_bytes()).is_err() {
                return Decision::Pass;
            }
            Decision::Emulate(s)
        }
        libc::SYS_nanosleep => with_rem(rewrite_ptr(mem, clock, c, 0, Layout::Timespec, Conv::Relative), a[1]),
        libc::SYS_clock_nanosleep => {
            if model::kind(clk(0)) == model::Kind::Passthrough {
                return Decision::Pass;
            }
            if a[1] & ABSTIME_FLAG != 0 {
                rewrite_ptr(mem, clock, c, 2, Layout::Timespec, Conv::Absolute(clk(0)))
            } else {
                with_rem(rewrite_ptr(mem, clock, c, 2, Layout::Timespec, Conv::Relative), a[3])
            }
        }
        libc::SYS_futex => {
            let op = a[1] as u32;
            let on = if op & 256 != 0 { model::CLOCK_REALTIME } else { model::CLOCK_MONOTONIC };
            let conv = match op & 0x7f {
                0 => Conv::Relative,
                6 => Conv::Absolute(model::CLOCK_REALTIME),
                9 | 11 | 13 => Conv::Absolute(on),
                _ => return Decision::Pass,
            };
            rewrite_ptr(mem, clock, c, 3, Layout::Timespec, conv)
        }
        libc::SYS_futex_waitv => rewrite_ptr(mem, clock, c, 3, Layout::Timespec, Conv::Absolute(clk(4))),
        libc::SYS_epoll_wait | libc::SYS_epoll_pwait => rewrite_ms(clock, c, 3),
        libc::SYS_poll => rewrite_ms(clock, c, 2),
        libc::SYS_epoll_pwait2 => rewrite_ptr(mem, clock, c, 3, Layout::Timespec, Conv::Relative),
        libc::SYS_ppoll => rewrite_ptr_copy_back(mem, clock, c, 2, Layout::Timespec),
        libc::SYS_pselect6 => rewrite_ptr_copy_back(mem, clock, c, 4, Layout::Timespec),
        libc::SYS_select => rewrite_ptr_copy_back(mem, clock, c, 4, Layout::Timeval),
        libc::SYS_recvmmsg => rewrite_ptr_copy_back(mem, clock, c, 4, Layout::Timespec),
        libc::SYS_rt_sigtimedwait => rewrite_ptr(mem, clock, c, 2, Layout::Timespec, Conv::Relative),
        libc::SYS_io_getevents | SYS_IO_PGETEVENTS => rewrite_ptr(mem, clock, c, 4, Layout::Timespec, Conv::Relative),
        libc::SYS_semtimedop => rewrite_ptr(mem, clock, c, 3, Layout::Timespec, Conv::Relative),
        libc::SYS_mq_timedsend | libc::SYS_mq_timedreceive => {
            rewrite_ptr(mem, clock, c, 4, Layout::Timespec, Conv::Absolute(model::CLOCK_REALTIME))
        }
        libc::SYS_timerfd_settime | libc::SYS_timer_settime => {
            let id = clk(0);
            let conv = if a[1] & ABSTIME_FLAG != 0 {
                let on = if c.nr == libc::SYS_timerfd_settime { timers.timerfd(id) } else { timers.posix_timer(id) };
                match on {
                    Some(k) if model::kind(k) != model::Kind::Passthrough => Conv::Absolute(k),
                    _ => return Decision::Pass,
                }
            } else {
                Conv::Relative
            };
            settime(mem, clock, c, 2, 3, Layout::Itimerspec, conv)
        }
        libc::SYS_timerfd_gettime | libc::SYS_timer_gettime => gettime(c, 1, Layout::Itimerspec),
        libc::SYS_setitimer if a[0] == 0 => settime(mem, clock, c, 1, 2, Layout::Itimerval, Conv::Relative),
        libc::SYS_getitimer if a[0] == 0 => gettime(c, 1, Layout::Itimerval),
        libc::SYS_alarm => {
            let secs = a[0] as u32;
            let real = (f64::from(secs) * clock.tdf()).ceil().min(f64::from(u32::MAX)) as u32;
            Decision::Rewrite {
                set: vec![(0, u64::from(real))],
                exit: ExitFix { restore: vec![(0, a[0])], ret_seconds: true, ..ExitFix::default() },
            }
        }
        _ => Decision::Pass,
    }
}

fn with_rem(d: Decision, rem: u64) -> Decision {
    match d {
        Decision::Rewrite { set, mut exit } if rem != 0 => {
            exit.rescale = Some((rem, Layout::Timespec, Condition::Interrupted));
            Decision::Rewrite { set, exit }
        }
        d => d,
    }
}

/// Applies `fix` at the syscall-exit stop of a call that returned `ret`; returns the
/// return value to set, if it changes.
pub fn on_exit(clock: &mut VirtualClock, mem: &impl Memory, fix: &ExitFix, ret: i64) -> Option<i64> {
    let tdf = clock.tdf();
    if let Some((addr, layout, when)) = fix.rescale {
        let applies = match when {
            Condition::Success => ret >= 0,
            Condition::Interrupted => interrupted(ret),
        };
        if applies {
            if let Some(mut w) = read_words(mem, addr, layout.words()) {
                words_to_virtual(&mut w, layout.unit(), tdf);
                write_words(mem, addr, &w);
            }
        }
    }
    if let Some((from, to, layout)) = fix.copy_back {
        if let Some(mut w) = read_words(mem, from, layout.words()) {
            words_to_virtual(&mut w, layout.unit(), tdf);
            // The caller's buffer may be read-only (the kernel tolerates that too).
            write_words(mem, to, &w);
        }
    }
    (fix.ret_seconds && ret > 0).then(|| (ret as f64 / tdf).ceil() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::BufferMemory;
    use dilation::{Epoch, TimeModel};

    struct NoTimers;
    impl TimerClocks for NoTimers {
        fn timerfd(&self, _: i32) -> Option<i32> {
            Some(1)
        }
        fn posix_timer(&self, _: i32) -> Option<i32> {
            None
        }
    }

    const BASE: u64 = 0x10_000;
    const SP: u64 = BASE + 0x800;

    fn setup() -> (VirtualClock, BufferMemory) {
        let m = TimeModel::new(10.0, Epoch::now()).unwrap();
        (VirtualClock::new(&m, None).unwrap(), BufferMemory { base: BASE, bytes: vec![0u8; 0x1000].into() })
    }

    fn call(nr: i64, args: [u64; 6]) -> Call {
        Call { nr, args, sp: SP }
    }

    #[test]
    fn clock_reads_are_emulated() {
        let (mut clock, mem) = setup();
        let d = on_enter(&mut clock, &mem, &NoTimers, &call(libc::SYS_clock_gettime, [0, BASE, 0, 0, 0, 0]));
        assert_eq!(d, Decision::Emulate(0));
        let (s, ns) = mem.read_pair(BASE).unwrap();
        assert!((model::ts_ns(s, ns) - dilation::realtime_ns()).abs() < 1_000_000_000);
        assert_eq!(
            on_enter(&mut clock, &mem, &NoTimers, &call(libc::SYS_clock_gettime, [3, BASE, 0, 0, 0, 0])),
            Decision::Pass
        );
        let d = on_enter(&mut clock, &mem, &NoTimers, &call(libc::SYS_time, [0, 0, 0, 0, 0, 0]));
        assert!(matches!(d, Decision::Emulate(s) if s > 1_700_000_000));
    }

    #[test]
    fn relative_sleeps_are_scaled_into_scratch_and_restored() {
        let (mut clock, mem) = setup();
        mem.write_pair(BASE, 0, 10_000_000).unwrap();
        let d = on_enter(&mut clock, &mem, &NoTimers, &call(libc::SYS_nanosleep, [BASE, BASE + 16, 0, 0, 0, 0]));
        let Decision::Rewrite { set, exit } = d else { panic!("{d:?}") };
        assert_eq!(set.len(), 1);
        let (arg, at) = set[0];
        assert_eq!(arg, 0);
        assert!((SP - 192..SP - 128).contains(&at), "below the red zone: {at:#x}");
        assert_eq!(mem.read_pair(at).unwrap(), (0, 100_000_000));
        assert_eq!(mem.read_pair(BASE).unwrap(), (0, 10_000_000), "the caller's request is untouched");
        assert_eq!(exit.restore, vec![(0, BASE)]);
        // Interrupted with 50 ms of real time left: 5 ms virtual.
        mem.write_pair(BASE + 16, 0, 50_000_000).unwrap();
        assert_eq!(on_exit(&mut clock, &mem, &exit, EINTR), None);
        assert_eq!(mem.read_pair(BASE + 16).unwrap(), (0, 5_000_000));
        // At the exit stop a handled signal shows as ERESTART_RESTARTBLOCK (-516), not yet EINTR.
        mem.write_pair(BASE + 16, 0, 50_000_000).unwrap();
        assert_eq!(on_exit(&mut clock, &mem, &exit, -516), None);
        assert_eq!(mem.read_pair(BASE + 16).unwrap(), (0, 5_000_000));
        // A completed sleep leaves the remainder alone.
        mem.write_pair(BASE + 16, 0, 50_000_000).unwrap();
        assert_eq!(on_exit(&mut clock, &mem, &exit, 0), None);
        assert_eq!(mem.read_pair(BASE + 16).unwrap(), (0, 50_000_000));
    }

    #[test]
    fn futex_timeouts_follow_their_command() {
        let (mut clock, mem) = setup();
        mem.write_pair(BASE, 1, 0).unwrap();
        let d = on_enter(&mut clock, &mem, &NoTimers, &call(libc::SYS_futex, [BASE + 64, 128, 0, BASE, 0, 0]));
        let Decision::Rewrite { set, .. } = d else { panic!() };
        assert_eq!(mem.read_pair(set[0].1).unwrap(), (10, 0));
        assert_eq!(
            on_enter(&mut clock, &mem, &NoTimers, &call(libc::SYS_futex, [BASE, 1, 0, BASE, 0, 0])),
            Decision::Pass
        );
        // An absolute monotonic deadline 1 s of virtual time ahead lies 10 s ahead in real time.
        let v = clock.now(model::CLOCK_MONOTONIC).unwrap().unwrap() + NS;
        let (s, ns) = model::ns_ts(v);
        mem.write_pair(BASE, s, ns).unwrap();
        let d = on_enter(&mut clock, &mem, &NoTimers, &call(libc::SYS_futex, [BASE + 64, 9 | 128, 0, BASE, 0, !0]));
        let Decision::Rewrite { set, .. } = d else { panic!() };
        let (s, ns) = mem.read_pair(set[0].1).unwrap();
        let mut real_mono = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
        real_mono.tv_sec = now.tv_sec();
        real_mono.tv_nsec = now.tv_nsec();
        let ahead = model::ts_ns(s, ns) - model::ts_ns(real_mono.tv_sec, real_mono.tv_nsec);
        assert!((ahead - 10 * NS).abs() < NS / 2, "{ahead}");
    }

    #[test]
    fn millisecond_timeouts_and_alarm() {
        let (mut clock, mem) = setup();
        let d = on_enter(&mut clock, &mem, &NoTimers, &call(libc::SYS_epoll_pwait, [3, BASE, 8, 7, 0, 8]));
        assert_eq!(
            d,
            Decision::Rewrite { set: vec![(3, 70)], exit: ExitFix { restore: vec![(3, 7)], ..ExitFix::default() } }
        );
        let d = on_enter(&mut clock, &mem, &NoTimers, &call(libc::SYS_alarm, [3, 0, 0, 0, 0, 0]));
        let Decision::Rewrite { set, exit } = d else { panic!() };
        assert_eq!(set, vec![(0, 30)]);
        assert_eq!(on_exit(&mut clock, &mem, &exit, 25), Some(3));
    }

    #[test]
    fn timers_keep_zero_values_and_scale_old_ones() {
        let (mut clock, mem) = setup();
        // interval 0, value 2 s, relative.
        for (i, w) in [0i64, 0, 2, 0].iter().enumerate() {
            mem.write(BASE + 8 * i as u64, &w.to_le_bytes()).unwrap();
        }
        let d = on_enter(&mut clock, &mem, &NoTimers, &call(libc::SYS_timerfd_settime, [4, 0, BASE, BASE + 64, 0, 0]));
        let Decision::Rewrite { set, exit } = d else { panic!() };
        assert_eq!(read_words(&mem, set[0].1, 4).unwrap(), vec![0, 0, 20, 0]);
        for (i, w) in [1i64, 0, 0, 500_000_000].iter().enumerate() {
            mem.write(BASE + 64 + 8 * i as u64, &w.to_le_bytes()).unwrap();
        }
        on_exit(&mut clock, &mem, &exit, 0);
        assert_eq!(read_words(&mem, BASE + 64, 4).unwrap(), vec![0, 100_000_000, 0, 50_000_000]);
    }

    #[test]
    fn invalid_timeouts_are_left_to_the_kernel() {
        let (mut clock, mem) = setup();
        mem.write_pair(BASE, 0, 2 * NS).unwrap();
        assert_eq!(
            on_enter(&mut clock, &mem, &NoTimers, &call(libc::SYS_nanosleep, [BASE, 0, 0, 0, 0, 0])),
            Decision::Pass
        );
        assert_eq!(
            on_enter(&mut clock, &mem, &NoTimers, &call(libc::SYS_nanosleep, [0x10, 0, 0, 0, 0, 0])),
            Decision::Pass
        );
    }

    #[test]
    fn posix_timer_clocks_are_parsed() {
        let text = "ID: 0\nsignal: 14/0000000000000000\nnotify: signal/pid.1\nClockID: 0\nID: 3\nsignal: 14/0\nnotify: signal/pid.1\nClockID: 1\n";
        assert_eq!(posix_timer_clock(text, 3), Some(1));
        assert_eq!(posix_timer_clock(text, 0), Some(0));
        assert_eq!(posix_timer_clock(text, 7), None);
    }
}
