//! CPU pacing hooks: every thread of a dilated process runs at the perceived speed of the
//! original machine's core, burst by burst, not only on average.
//!
//! With `DILATION_CPU_SPEED=s` (the perceived per-thread speed in host cores, `min(1, cpus)`
//! of the node), each thread owes `t/s − 1` nanoseconds of waiting per nanosecond of CPU at
//! TDF `t` ([`crate::pace`]). It pays:
//! - after every quantum of CPU (`DILATION_CPU_QUANTUM_US`, default 1 ms): a software
//!   `task-clock` perf event, whose sampling runs on a high-resolution timer, sends the
//!   thread `SIGTRAP` (`perf_event_attr.sigtrap`, inherited by every thread and child,
//!   removed at exec where the new image's shim arms its own);
//! - before it emits output (`write`, `send` and friends) and before it blocks (the wait
//!   hooks of [`crate::hooks`]), so a burst shorter than the quantum is paced too.
//!
//! Rules of [`crate::hooks`] apply: no allocation, no locks that a signal handler could wait
//! on, raw syscalls for the sleep and the clock reads, errno preserved.
//!
//! # Limitations
//! - A program that blocks `SIGTRAP` in a thread is paced in that thread only at its pay
//!   points. A program's own `SIGTRAP` handler is kept and called for every `SIGTRAP` that
//!   is not ours (through the `sigaction`/`signal` hooks).
//! - If the perf event cannot be opened (`perf_event_paranoid`, seccomp), pacing falls back
//!   to the pay points and the error is counted in the control page.

use core::cell::{Cell, UnsafeCell};
use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, AtomicUsize, Ordering::*};

use libc::{iovec, msghdr, sigaction as SigAction, siginfo_t, size_t, sockaddr, socklen_t, ssize_t};

use dilation_abi::pace::{self, Pace, Tuning};
use dilation_abi::perf::{
    PerfEventAttr, FLAG_EXCLUDE_HV, FLAG_EXCLUDE_KERNEL, FLAG_INHERIT, FLAG_REMOVE_ON_EXEC, FLAG_SIGTRAP,
    PERF_FLAG_FD_CLOEXEC, TRAP_PERF,
};

use crate::hooks::{count_error, env, errno, params, raw_clock, real, set_errno, sys};
use crate::model;
const DEFAULT_QUANTUM_NS: u64 = 1_000_000;

/// 1 once pacing is armed in this process.
static ENABLED: AtomicU8 = AtomicU8::new(0);
/// The perceived per-thread speed (f64 bits).
static SPEED: AtomicU64 = AtomicU64::new(0);
/// The perceived cores of the node (f64 bits; 0: no node-wide ledger).
static CORES: AtomicU64 = AtomicU64::new(0);
/// The event's sampling period (ns).
static QUANTUM: AtomicU64 = AtomicU64::new(DEFAULT_QUANTUM_NS);
/// CPU the kernel spends delivering the event's signal (ns), measured at arming.
static DELIVERY: AtomicI64 = AtomicI64::new(0);

thread_local! {
    static STATE: Cell<Pace> = const { Cell::new(Pace::NEW) };
    /// Set while this thread is inside [`pay`] (a signal arriving then must not re-enter).
    static PAYING: Cell<bool> = const { Cell::new(false) };
    static SLACK_SET: Cell<bool> = const { Cell::new(false) };
}

/// Arms pacing for this process when the environment asks for it. Called once from the
/// shim's initialization, after the time parameters are known.
pub(crate) fn arm() {
    let Some(speed) = env(dilation_abi::env::CPU_SPEED_C).and_then(model::parse_f64) else { return };
    if pace::stretch(speed, params().tdf).is_none() {
        return;
    }
    let quantum = env(dilation_abi::env::CPU_QUANTUM_US_C)
        .and_then(model::parse_f64)
        .filter(|q| q.is_finite() && *q >= 5.0)
        .map_or(DEFAULT_QUANTUM_NS, |q| (q * 1000.0) as u64);
    SPEED.store(speed.to_bits(), Relaxed);
    if let Some(cores) = env(dilation_abi::env::CPU_CORES_C).and_then(model::parse_f64).filter(|c| *c > 0.0) {
        CORES.store(cores.to_bits(), Relaxed);
    }
    QUANTUM.store(quantum, Relaxed);
    // Without the event (or its handler) the pay points still pace; the harness sees the
    // error count.
    if install_handler() {
        DELIVERY.store(measure_delivery(), Relaxed);
    }
    learn_wake_latency();
    if DELIVERY.load(Relaxed) < 0 || open_event(quantum, true).is_none() {
        count_error();
    }
    // The arming thread's CPU so far (loading, the measurements above) is not the
    // program's work; a thread's first pay point otherwise charges all its CPU.
    if let (Some(cpu), Some(now)) = (raw_clock(libc::CLOCK_THREAD_CPUTIME_ID), raw_clock(libc::CLOCK_MONOTONIC)) {
        STATE.with(|s| s.set(Pace::fresh(cpu, now)));
    }
    ENABLED.store(1, Release);
}

/// Installs the `SIGTRAP` handler with the real `sigaction`, keeping any existing action as
/// the program's.
fn install_handler() -> bool {
    let Some(real_sigaction) = real!("sigaction", SigactionFn) else { return false };
    // SAFETY: an all-zero sigaction is a valid value (SIG_DFL, empty mask, no flags).
    let mut act: SigAction = unsafe { core::mem::zeroed() };
    act.sa_sigaction = on_sigtrap as *const () as usize;
    act.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_ONSTACK;
    // SAFETY: an all-zero sigaction is a valid value.
    let mut old: SigAction = unsafe { core::mem::zeroed() };
    // SAFETY: both pointers are to valid sigaction structs.
    if unsafe { real_sigaction(libc::SIGTRAP, &raw const act, &raw mut old) } != 0 {
        return false;
    }
    // An ignored SIGTRAP is what a paced parent's exec leaves behind (see `around_exec`):
    // the program's own disposition is the default one.
    if old.sa_sigaction == libc::SIG_IGN {
        old.sa_sigaction = libc::SIG_DFL;
    }
    APP.store(&old);
    true
}

/// Opens a `task-clock` event that sends `SIGTRAP` after each `quantum` ns of CPU of the
/// calling thread (and, `inherit`, of every thread and child it creates later).
fn open_event(quantum: u64, inherit: bool) -> Option<i64> {
    let mut attr = PerfEventAttr::task_clock(quantum, 0);
    // Kernel time is CPU the original machine spends too; unprivileged users may only
    // count their own user time.
    let inherit = if inherit { FLAG_INHERIT } else { 0 };
    for extra in [0, FLAG_EXCLUDE_KERNEL | FLAG_EXCLUDE_HV] {
        attr.flags = inherit | FLAG_REMOVE_ON_EXEC | FLAG_SIGTRAP | extra;
        let fd = sys(libc::SYS_perf_event_open, [&raw const attr as i64, 0, -1, -1, PERF_FLAG_FD_CLOEXEC, 0]);
        if fd >= 0 {
            return Some(fd);
        }
    }
    None
}

/// Calibration samples of the delivery cost: the thread's CPU time read by a spinning loop
/// (`LAST_SPIN`) and in the handler.
static CALIBRATING: AtomicU8 = AtomicU8::new(0);
static LAST_SPIN: AtomicI64 = AtomicI64::new(0);
static SAMPLES: [AtomicI64; 7] = [const { AtomicI64::new(-1) }; 7];
static TAKEN: AtomicUsize = AtomicUsize::new(0);

/// Measures how much CPU the kernel spends delivering the event's signal (interrupt, perf
/// overflow, signal frame: some µs on bare metal, 15–30 µs on a VM): a private event with a
/// short period fires while this thread spins reading its CPU clock. The median is
/// subtracted from every quantum, or the overhead would be paced as if it were the
/// program's work. Costs about 0.3 ms of CPU once per process. -1 when it cannot measure.
fn measure_delivery() -> i64 {
    let Some(fd) = open_event(30_000, false) else { return -1 };
    CALIBRATING.store(1, Release);
    let start = raw_clock(libc::CLOCK_THREAD_CPUTIME_ID).unwrap_or(0);
    while let Some(cpu) = raw_clock(libc::CLOCK_THREAD_CPUTIME_ID) {
        LAST_SPIN.store(cpu, Relaxed);
        if TAKEN.load(Acquire) >= SAMPLES.len() || cpu - start > 5_000_000 {
            break;
        }
    }
    CALIBRATING.store(0, Release);
    sys(libc::SYS_close, [fd, 0, 0, 0, 0, 0]);
    let mut v = [0i64; 7];
    for (slot, s) in v.iter_mut().zip(&SAMPLES) {
        *slot = s.load(Relaxed);
    }
    pace::median_delivery(&mut v).unwrap_or(-1)
}

/// Pays this thread's CPU debt: sleeps until the CPU it used would be done on the perceived
/// machine. Cheap when pacing is off (one atomic load).
#[inline]
pub(crate) fn pay() {
    if ENABLED.load(Relaxed) == 0 {
        return;
    }
    pay_slow(false);
}

/// A thread entering a blocking wait: pays its debt now; when dropped (the wait returned),
/// starts a new burst, so the CPU the kernel spent putting the thread to sleep and waking
/// it (tens of µs on a VM) is not paced as if it were the program's work.
pub(crate) struct Wait(bool);

#[inline]
pub(crate) fn wait() -> Wait {
    let on = ENABLED.load(Relaxed) != 0;
    if on {
        pay_slow(false);
    }
    Wait(on)
}

impl Drop for Wait {
    fn drop(&mut self) {
        if self.0 && !PAYING.with(Cell::get) {
            let saved = errno();
            if let (Some(cpu), Some(now)) = (raw_clock(libc::CLOCK_THREAD_CPUTIME_ID), raw_clock(libc::CLOCK_MONOTONIC))
            {
                STATE.with(|s| s.set(Pace::fresh(cpu, now)));
            }
            set_errno(saved);
        }
    }
}

/// Pays at a clock read when the thread may have computed since it last paid: a burst's end
/// is often a timestamp. The check costs one vDSO clock read; the payment itself only
/// happens when `GAP` of real time passed since the last one.
#[inline]
pub(crate) fn pay_at_clock_read() {
    const GAP: i64 = 20_000;
    if ENABLED.load(Relaxed) == 0 {
        return;
    }
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    if crate::hooks::real_clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) != 0 {
        return;
    }
    if model::ts_ns(ts.tv_sec, ts.tv_nsec) - STATE.with(Cell::get).woke > GAP {
        pay_slow(false);
    }
}

/// `overflow`: called from the event's signal; the delivery cost measured at arming is not
/// charged (see [`measure_delivery`]).
#[cold]
fn pay_slow(overflow: bool) {
    if PAYING.with(|p| p.replace(true)) {
        return;
    }
    let saved = errno();
    if !SLACK_SET.with(|s| s.replace(true)) {
        // Sleeps of tens of µs need a precise wake-up (the default slack is 50 µs).
        sys(libc::SYS_prctl, [libc::PR_SET_TIMERSLACK as i64, 1, 0, 0, 0, 0]);
    }
    let speed = f64::from_bits(SPEED.load(Relaxed));
    if let (Some(stretch), Some(cpu), Some(now)) =
        (pace::stretch(speed, params().tdf), raw_clock(libc::CLOCK_THREAD_CPUTIME_ID), raw_clock(libc::CLOCK_MONOTONIC))
    {
        let mut st = STATE.with(Cell::get);
        let cpu = if overflow { (cpu - DELIVERY.load(Relaxed).max(0)).max(st.last_cpu) } else { cpu };
        if let Some(charge) = st.charge(cpu, now, stretch, &Tuning::DEFAULT) {
            if let Some(ledger) = charge_node(charge) {
                st.defer_to(ledger);
            }
            if let Some(until) = st.sleep_until(now, &Tuning::DEFAULT) {
                // Mid-burst (the event's quantum) a late wake-up is refunded by the next
                // target's chaining, so only a pay point, where a burst may end, spins.
                sleep_until(until, !overflow);
            }
        }
        if let (Some(cpu), Some(now)) = (raw_clock(libc::CLOCK_THREAD_CPUTIME_ID), raw_clock(libc::CLOCK_MONOTONIC)) {
            st.settle(cpu, now);
        }
        STATE.with(|s| s.set(st));
    }
    set_errno(saved);
    PAYING.with(|p| p.set(false));
}

/// Adds a thread's charge to the node's ledger in the control page; returns the ledger's new
/// instant (`None` without a ledger: the node's cores unknown or no control page).
fn charge_node(charge: pace::Charge) -> Option<i64> {
    let node_stretch = pace::node_stretch(f64::from_bits(CORES.load(Relaxed)), params().tdf)?;
    let word = crate::hooks::control_word(dilation_abi::control::OFF_CPU_LEDGER)?;
    Some(pace::charge_ledger(word, charge, node_stretch))
}

/// How late this process's sleeps wake up (ns, an exponential average): sleeps end that
/// much early and the rest is spun on the vDSO clock, since the last sleep of a burst has
/// no later one to refund its lateness (on a VM tens of µs, a tenth of that in virtual time
/// at TDF 10: 5% of a 0.1 ms burst).
static WAKE_LATENCY: AtomicI64 = AtomicI64::new(0);
const MAX_EARLY_NS: i64 = 200_000;

fn mono_now() -> Option<i64> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    (crate::hooks::real_clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) == 0)
        .then(|| model::ts_ns(ts.tv_sec, ts.tv_nsec))
}

/// Seeds the wake-up lateness with four short sleeps, so that a process's first payments
/// already wake on time (the average otherwise needs a dozen sleeps to converge).
fn learn_wake_latency() {
    sys(libc::SYS_prctl, [libc::PR_SET_TIMERSLACK as i64, 1, 0, 0, 0, 0]);
    let mut late = [0i64; 4];
    for slot in &mut late {
        let Some(now) = mono_now() else { return };
        let until = now + 50_000;
        let (s, n) = model::ns_ts(until);
        let ts = libc::timespec { tv_sec: s as libc::time_t, tv_nsec: n as libc::c_long };
        sys(
            libc::SYS_clock_nanosleep,
            [libc::CLOCK_MONOTONIC as i64, libc::TIMER_ABSTIME as i64, &raw const ts as i64, 0, 0, 0],
        );
        *slot = mono_now().map_or(0, |t| t - until);
    }
    late.sort_unstable();
    WAKE_LATENCY.store(late[1].clamp(0, MAX_EARLY_NS), Relaxed);
}

/// Sleeps on the real monotonic clock until `until` (ns), through interruptions; with
/// `spin`, wakes early by the usual lateness and spins the rest. The spin is CPU the node
/// spends beyond its share (up to `MAX_EARLY_NS` a payment where wake-ups are late), so
/// it is spent only where a late wake-up would not be refunded.
fn sleep_until(until: i64, spin: bool) {
    let early = if spin { WAKE_LATENCY.load(Relaxed).clamp(0, MAX_EARLY_NS) } else { 0 };
    let wake = until - early;
    let (s, n) = model::ns_ts(wake);
    let ts = libc::timespec { tv_sec: s as libc::time_t, tv_nsec: n as libc::c_long };
    let before = mono_now().unwrap_or(wake);
    if wake > before {
        for _ in 0..64 {
            let r = sys(
                libc::SYS_clock_nanosleep,
                [libc::CLOCK_MONOTONIC as i64, libc::TIMER_ABSTIME as i64, &raw const ts as i64, 0, 0, 0],
            );
            if r == 0 || errno() != libc::EINTR {
                break;
            }
        }
        if let Some(woke) = mono_now() {
            let late = pace::ewma(WAKE_LATENCY.load(Relaxed), woke - wake);
            WAKE_LATENCY.store(late, Relaxed);
        }
    }
    while mono_now().is_some_and(|t| t < until) {
        core::hint::spin_loop();
    }
}

// ---------------------------------------------------------------------------------------
// SIGTRAP: ours (from the perf event) or the program's.

type SigactionFn = unsafe extern "C" fn(c_int, *const SigAction, *mut SigAction) -> c_int;

/// The program's own SIGTRAP action, reported and chained while ours is installed.
struct AppAction {
    busy: AtomicBool,
    action: UnsafeCell<Option<SigAction>>,
}

// SAFETY: `action` is only accessed while `busy` is held (a try-lock: the signal handler
// never waits for it).
unsafe impl Sync for AppAction {}

static APP: AppAction = AppAction { busy: AtomicBool::new(false), action: UnsafeCell::new(None) };

impl AppAction {
    fn with<R>(&self, f: impl FnOnce(&mut Option<SigAction>) -> R) -> Option<R> {
        if self.busy.swap(true, Acquire) {
            return None;
        }
        // SAFETY: `busy` is held, so no one else accesses `action`.
        let r = f(unsafe { &mut *self.action.get() });
        self.busy.store(false, Release);
        Some(r)
    }

    fn store(&self, a: &SigAction) {
        while self.with(|slot| *slot = Some(*a)).is_none() {
            core::hint::spin_loop();
        }
    }

    fn load(&self) -> Option<SigAction> {
        self.with(|slot| *slot).flatten()
    }
}

extern "C" fn on_sigtrap(sig: c_int, info: *mut siginfo_t, ctx: *mut c_void) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    let code = if info.is_null() { 0 } else { unsafe { (*info).si_code } };
    if code == TRAP_PERF {
        if CALIBRATING.load(Relaxed) != 0 {
            if let Some(cpu) = raw_clock(libc::CLOCK_THREAD_CPUTIME_ID) {
                let i = TAKEN.fetch_add(1, AcqRel);
                if let Some(slot) = SAMPLES.get(i) {
                    slot.store(cpu - LAST_SPIN.load(Relaxed), Relaxed);
                }
            }
            return;
        }
        if ENABLED.load(Relaxed) != 0 {
            pay_slow(true);
        }
        return;
    }
    let Some(app) = APP.load() else { return };
    match app.sa_sigaction {
        libc::SIG_IGN => {}
        libc::SIG_DFL => {
            // Restore the default action and deliver the signal again, as if we were absent.
            let Some(real_sigaction) = real!("sigaction", SigactionFn) else { return };
            // SAFETY: `app` is a valid sigaction (SIG_DFL).
            unsafe { real_sigaction(sig, &raw const app, core::ptr::null_mut()) };
            let tid = sys(libc::SYS_gettid, [0; 6]);
            let pid = sys(libc::SYS_getpid, [0; 6]);
            sys(libc::SYS_tgkill, [pid as i64, tid as i64, i64::from(sig), 0, 0, 0]);
        }
        h if app.sa_flags & libc::SA_SIGINFO != 0 => {
            // SAFETY: the program installed `h` as an SA_SIGINFO handler for this signal.
            let f = unsafe { core::mem::transmute::<usize, extern "C" fn(c_int, *mut siginfo_t, *mut c_void)>(h) };
            f(sig, info, ctx);
        }
        h => {
            // SAFETY: the program installed `h` as a plain handler for this signal.
            let f = unsafe { core::mem::transmute::<usize, extern "C" fn(c_int)>(h) };
            f(sig);
        }
    }
}

/// # Safety
/// As `sigaction(2)`.
#[no_mangle]
pub unsafe extern "C" fn sigaction(sig: c_int, act: *const SigAction, old: *mut SigAction) -> c_int {
    let Some(f) = real!("sigaction", SigactionFn) else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    if sig != libc::SIGTRAP || ENABLED.load(Acquire) == 0 {
        // SAFETY: forwarding the caller's arguments.
        return unsafe { f(sig, act, old) };
    }
    // SAFETY: an all-zero sigaction is SIG_DFL with an empty mask.
    let previous = APP.load().unwrap_or_else(|| unsafe { core::mem::zeroed() });
    if !act.is_null() {
        // SAFETY: the caller passes a valid sigaction when `act` is not null.
        APP.store(unsafe { &*act });
    }
    if !old.is_null() {
        // SAFETY: the caller passes a writable sigaction when `old` is not null.
        unsafe { old.write(previous) };
    }
    0
}

/// # Safety
/// As `signal(3)`.
#[no_mangle]
pub unsafe extern "C" fn signal(sig: c_int, handler: libc::sighandler_t) -> libc::sighandler_t {
    if sig != libc::SIGTRAP || ENABLED.load(Acquire) == 0 {
        type F = unsafe extern "C" fn(c_int, libc::sighandler_t) -> libc::sighandler_t;
        return match real!("signal", F) {
            // SAFETY: forwarding the caller's arguments.
            Some(f) => unsafe { f(sig, handler) },
            None => libc::SIG_ERR,
        };
    }
    // SAFETY: an all-zero sigaction is valid; BSD semantics as glibc's signal().
    let mut act: SigAction = unsafe { core::mem::zeroed() };
    act.sa_sigaction = handler;
    act.sa_flags = libc::SA_RESTART;
    // SAFETY: as above.
    let mut old: SigAction = unsafe { core::mem::zeroed() };
    // SAFETY: valid pointers to our own structs.
    if unsafe { sigaction(sig, &raw const act, &raw mut old) } != 0 {
        return libc::SIG_ERR;
    }
    old.sa_sigaction
}

// ---------------------------------------------------------------------------------------
// Output: a thread pays its debt before anything it computed becomes visible.

macro_rules! output_hook {
    ($name:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty, $nr:expr) => {
        /// # Safety
        /// As the libc function of the same name.
        #[no_mangle]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
            pay();
            type F = unsafe extern "C" fn($($ty),*) -> $ret;
            match real!(stringify!($name), F) {
                // SAFETY: forwarding the caller's arguments.
                Some(f) => unsafe { f($($arg),*) },
                None => {
                    let a = [$($arg as i64),*];
                    let mut args = [0i64; 6];
                    args[..a.len()].copy_from_slice(&a);
                    sys($nr, args) as $ret
                }
            }
        }
    };
}

output_hook!(write, (fd: c_int, buf: *const c_void, n: size_t) -> ssize_t, libc::SYS_write);
output_hook!(writev, (fd: c_int, iov: *const iovec, n: c_int) -> ssize_t, libc::SYS_writev);
output_hook!(send, (fd: c_int, buf: *const c_void, n: size_t, flags: c_int) -> ssize_t, libc::SYS_sendto);
output_hook!(
    sendto,
    (fd: c_int, buf: *const c_void, n: size_t, flags: c_int, to: *const sockaddr, len: socklen_t) -> ssize_t,
    libc::SYS_sendto
);
output_hook!(sendmsg, (fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t, libc::SYS_sendmsg);
output_hook!(sendmmsg, (fd: c_int, msgs: *mut libc::mmsghdr, n: libc::c_uint, flags: c_int) -> c_int, libc::SYS_sendmmsg);

// ---------------------------------------------------------------------------------------
// exec: a quantum that ends during exec's own CPU work leaves a SIGTRAP pending, and exec
// resets our handler to the default action (terminate) before the new image's shim can
// install its own. Ignoring SIGTRAP across the call discards such a signal (an ignored
// disposition survives exec, and the event itself is removed at exec).

/// Runs `exec` with SIGTRAP ignored; restores our handler if it returns (exec failed). The
/// exec and spawn hooks of [`crate::exec`] call it.
pub(crate) fn around_exec(exec: impl FnOnce() -> c_int) -> c_int {
    if ENABLED.load(Acquire) == 0 {
        return exec();
    }
    let Some(real_sigaction) = real!("sigaction", SigactionFn) else { return exec() };
    // SAFETY: an all-zero sigaction is valid; SIG_IGN is set below.
    let mut ign: SigAction = unsafe { core::mem::zeroed() };
    ign.sa_sigaction = libc::SIG_IGN;
    // SAFETY: as above.
    let mut ours: SigAction = unsafe { core::mem::zeroed() };
    // SAFETY: valid pointers to our own structs.
    unsafe { real_sigaction(libc::SIGTRAP, &raw const ign, &raw mut ours) };
    let r = exec();
    let saved = errno();
    // SAFETY: `ours` is the action read above.
    unsafe { real_sigaction(libc::SIGTRAP, &raw const ours, core::ptr::null_mut()) };
    set_errno(saved);
    r
}

// ---------------------------------------------------------------------------------------
// Blocking input: a thread that waits in `read`/`recv` pays first and starts a new burst
// when the call returns, like the wait hooks: the kernel's CPU to put it to sleep and wake
// it (tens of µs on a VM) is not the program's work.

macro_rules! input_hook {
    ($name:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty, $nr:expr) => {
        /// # Safety
        /// As the libc function of the same name.
        #[no_mangle]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
            let _wait = wait();
            type F = unsafe extern "C" fn($($ty),*) -> $ret;
            match real!(stringify!($name), F) {
                // SAFETY: forwarding the caller's arguments.
                Some(f) => unsafe { f($($arg),*) },
                None => {
                    let a = [$($arg as i64),*];
                    let mut args = [0i64; 6];
                    args[..a.len()].copy_from_slice(&a);
                    sys($nr, args) as $ret
                }
            }
        }
    };
}

input_hook!(read, (fd: c_int, buf: *mut c_void, n: size_t) -> ssize_t, libc::SYS_read);
input_hook!(recv, (fd: c_int, buf: *mut c_void, n: size_t, flags: c_int) -> ssize_t, libc::SYS_recvfrom);
input_hook!(
    recvfrom,
    (fd: c_int, buf: *mut c_void, n: size_t, flags: c_int, from: *mut sockaddr, len: *mut socklen_t) -> ssize_t,
    libc::SYS_recvfrom
);
// recvmsg: in hooks.rs (it also rewrites receive timestamps), with the same wait guard.
input_hook!(accept, (fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int, libc::SYS_accept);
input_hook!(
    accept4,
    (fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, flags: c_int) -> c_int,
    libc::SYS_accept4
);
