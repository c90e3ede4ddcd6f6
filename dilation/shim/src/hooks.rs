//! Every exported hook and every other `unsafe` operation of the shim.
//!
//! # Rules (for every function in this module)
//! 1. **No allocation, no locks, no logging** on any path: hooks run inside malloc,
//!    signal handlers, other libraries' constructors and between fork and exec.
//! 2. **No call to an interposed name through the PLT**: inside this library, `clock_gettime`,
//!    `syscall` and friends resolve to *our* hooks. Real functions are reached through
//!    pointers resolved once with `dlsym(RTLD_NEXT, …)`, or through raw `syscall`
//!    instructions ([`raw`]) before resolution or when resolution failed.
//! 3. **Reentrancy**: initialization is a once-only state machine; a hook entered while
//!    initialization is in progress (from `dlsym`, or another library's constructor) behaves
//!    as a pass-through instead of waiting.
//! 4. **Never unwind**: no panicking operations (checked arithmetic saturates, no indexing
//!    without bounds checks that cannot fail).
//! 5. On an internal failure, fall back to the real call and count the error in the control
//!    page, where the harness reads it.
//! 6. Every `unsafe` block carries a `// SAFETY:` note.

use core::ffi::{c_char, c_int, c_long, c_uint, c_void};
use core::sync::atomic::{fence, AtomicI64, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering::*};

use libc::{clockid_t, itimerspec, itimerval, pollfd, sigset_t, socklen_t, time_t, timespec, timeval};

use crate::model::{self, Kind, Params};

// ---------------------------------------------------------------------------------------
// Raw system calls (used before the real functions are resolved, and for `syscall()`).

mod raw {
    #[cfg(target_arch = "x86_64")]
    pub unsafe fn syscall6(n: i64, a: [i64; 6]) -> i64 {
        let ret: i64;
        // SAFETY: the Linux x86_64 syscall ABI: number in rax, arguments in rdi, rsi, rdx,
        // r10, r8, r9; rcx and r11 are clobbered. The caller guarantees valid arguments.
        unsafe {
            core::arch::asm!(
                "syscall",
                inlateout("rax") n => ret,
                in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
                in("r10") a[3], in("r8") a[4], in("r9") a[5],
                lateout("rcx") _, lateout("r11") _,
                options(nostack)
            );
        }
        ret
    }

    #[cfg(target_arch = "aarch64")]
    pub unsafe fn syscall6(n: i64, a: [i64; 6]) -> i64 {
        let ret: i64;
        // SAFETY: the Linux aarch64 syscall ABI: number in x8, arguments in x0–x5, result
        // in x0. The caller guarantees valid arguments.
        unsafe {
            core::arch::asm!(
                "svc 0",
                in("x8") n,
                inlateout("x0") a[0] => ret,
                in("x1") a[1], in("x2") a[2], in("x3") a[3], in("x4") a[4], in("x5") a[5],
                options(nostack)
            );
        }
        ret
    }
}

/// Sets errno.
pub(crate) fn set_errno(e: c_int) {
    // SAFETY: __errno_location returns this thread's errno slot, always valid.
    unsafe {
        *libc::__errno_location() = e;
    }
}

pub(crate) fn errno() -> c_int {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() }
}

/// A raw syscall with libc's convention: -1 and errno on failure.
pub(crate) fn sys(n: c_long, a: [i64; 6]) -> c_long {
    // SAFETY: arguments come from the caller of the hook, who passed them for this syscall.
    let r = unsafe { raw::syscall6(n, a) };
    if (-4095..0).contains(&r) {
        set_errno((-r) as c_int);
        -1
    } else {
        r as c_long
    }
}

pub(crate) fn raw_clock(clock: clockid_t) -> Option<i64> {
    let mut ts = timespec { tv_sec: 0, tv_nsec: 0 };
    (sys(libc::SYS_clock_gettime, [clock as i64, &raw mut ts as i64, 0, 0, 0, 0]) == 0)
        .then(|| model::ts_ns(ts.tv_sec, ts.tv_nsec))
}

// ---------------------------------------------------------------------------------------
// Resolution of real functions.

/// `dlsym(RTLD_NEXT, name)` as an address, 0 if absent. `name` ends with NUL.
pub(crate) fn next(name: &[u8]) -> usize {
    // SAFETY: `name` is NUL-terminated; dlsym is not interposed by this library.
    unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr().cast::<c_char>()) as usize }
}

/// The vDSO's own `clock_gettime`, skipping libc's wrapper on the hot path.
fn vdso_clock_gettime() -> Option<usize> {
    // SAFETY: RTLD_NOLOAD only looks up the already-mapped vDSO; the names are NUL-terminated.
    let handle = unsafe { libc::dlopen(c"linux-vdso.so.1".as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD) };
    if handle.is_null() {
        return None;
    }
    #[cfg(target_arch = "aarch64")]
    let name = c"__kernel_clock_gettime";
    #[cfg(not(target_arch = "aarch64"))]
    let name = c"__vdso_clock_gettime";
    // SAFETY: `handle` is valid; the name is NUL-terminated.
    let p = unsafe { libc::dlsym(handle, name.as_ptr()) } as usize;
    (p != 0).then_some(p)
}

fn next_versioned(name: &[u8], version: &[u8]) -> usize {
    // SAFETY: both strings are NUL-terminated.
    let p = unsafe { libc::dlvsym(libc::RTLD_NEXT, name.as_ptr().cast(), version.as_ptr().cast()) } as usize;
    if p == 0 {
        next(name)
    } else {
        p
    }
}

/// The real function `$name` with the given signature, resolved once.
macro_rules! real {
    ($name:expr, $ty:ty) => {{
        static PTR: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);
        let mut p = PTR.load(core::sync::atomic::Ordering::Relaxed);
        if p == 0 {
            p = $crate::hooks::next(concat!($name, "\0").as_bytes());
            PTR.store(p, core::sync::atomic::Ordering::Relaxed);
        }
        if p == 0 {
            None
        } else {
            // SAFETY: `p` is the address dlsym returned for this symbol, whose C prototype
            // is `$ty`.
            Some(unsafe { core::mem::transmute::<usize, $ty>(p) })
        }
    }};
}

pub(crate) use real;

// ---------------------------------------------------------------------------------------
// State.

const UNINIT: u8 = 0;
const INITIALIZING: u8 = 1;
const ACTIVE: u8 = 2;
const INACTIVE: u8 = 3;

static STATE: AtomicU8 = AtomicU8::new(UNINIT);
static TDF_BITS: AtomicU64 = AtomicU64::new(0);
/// Fixed-point multiplier of the environment's TDF (see `model::mult_of`).
static MULT: AtomicI64 = AtomicI64::new(0);
/// Last TDF seen in the control page and its multiplier (a benign race: both are
/// recomputed from the same value by whoever loses it).
static CACHED_TDF: AtomicU64 = AtomicU64::new(0);
static CACHED_MULT: AtomicI64 = AtomicI64::new(0);

/// The fixed-point multiplier of `tdf`, cached so the hot path avoids a division.
fn multiplier(tdf: f64) -> i64 {
    let bits = tdf.to_bits();
    if CACHED_TDF.load(Relaxed) == bits {
        return CACHED_MULT.load(Relaxed);
    }
    let m = model::mult_of(tdf);
    CACHED_MULT.store(m, Relaxed);
    CACHED_TDF.store(bits, Relaxed);
    m
}
static EPOCH_REAL: AtomicI64 = AtomicI64::new(0);
static EPOCH_VIRT: AtomicI64 = AtomicI64::new(0);
/// `ev₀ − er₀` of the initial epoch (see `model`).
static D0: AtomicI64 = AtomicI64::new(0);
/// Offset of each clock from CLOCK_REALTIME, sampled at start-up.
static OFFSETS: [AtomicI64; model::MAX_CLOCK + 1] = [const { AtomicI64::new(0) }; model::MAX_CLOCK + 1];
/// The mapped control page, or null.
static CONTROL: AtomicPtr<u8> = AtomicPtr::new(core::ptr::null_mut());
static CLOCK_GETTIME: AtomicUsize = AtomicUsize::new(0);
static DILATE_STAT: AtomicU8 = AtomicU8::new(0);
/// `times()` ticks at start-up.
static TIMES_BASE: AtomicI64 = AtomicI64::new(i64::MIN);

// Control page layout: shared with the `dilation` crate through `dilation-abi`.
use dilation_abi::control::{
    MAGIC, OFF_ATTACHED, OFF_EPOCH_REAL, OFF_EPOCH_VIRT, OFF_ERRORS, OFF_MAGIC, OFF_SEQ, OFF_STEPS, OFF_TDF,
    SIZE as PAGE,
};

pub(crate) fn control_word(off: usize) -> Option<&'static AtomicU64> {
    let base = CONTROL.load(Acquire);
    if base.is_null() || off + 8 > PAGE || off % 8 != 0 {
        return None;
    }
    // SAFETY: `base` is a page-aligned MAP_SHARED mapping of PAGE bytes that is never
    // unmapped; `off` is 8-aligned and in bounds, so the word is valid for the program's life.
    Some(unsafe { &*base.add(off).cast::<AtomicU64>() })
}

/// Counts an internal error where the harness can see it.
pub(crate) fn count_error() {
    if let Some(w) = control_word(OFF_ERRORS) {
        w.fetch_add(1, Relaxed);
    }
}

/// Reads an environment variable without allocating.
pub(crate) fn env(name: &[u8]) -> Option<&'static [u8]> {
    // SAFETY: `name` is NUL-terminated; getenv returns null or a pointer into the
    // environment, which lives as long as the process unless the program modifies it.
    let p = unsafe { libc::getenv(name.as_ptr().cast()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: getenv returned a NUL-terminated string.
    Some(unsafe { core::ffi::CStr::from_ptr(p) }.to_bytes())
}

/// Maps the control file named by `DILATION_CONTROL`, if any.
fn map_control() {
    let Some(path) = env(dilation_abi::env::CONTROL_C) else { return };
    let mut buf = [0u8; 4096];
    if path.len() >= buf.len() {
        count_error();
        return;
    }
    buf[..path.len()].copy_from_slice(path);
    let fd = sys(
        libc::SYS_openat,
        [libc::AT_FDCWD as i64, buf.as_ptr() as i64, (libc::O_RDWR | libc::O_CLOEXEC) as i64, 0, 0, 0],
    );
    if fd < 0 {
        return;
    }
    let addr = sys(
        libc::SYS_mmap,
        [0, PAGE as i64, (libc::PROT_READ | libc::PROT_WRITE) as i64, libc::MAP_SHARED as i64, fd, 0],
    );
    sys(libc::SYS_close, [fd, 0, 0, 0, 0, 0]);
    if addr == -1 || addr == 0 {
        return;
    }
    CONTROL.store(addr as *mut u8, Release);
    match control_word(OFF_MAGIC) {
        Some(m) if m.load(Relaxed) == MAGIC => {
            if let Some(a) = control_word(OFF_ATTACHED) {
                a.fetch_add(1, Relaxed);
            }
        }
        _ => CONTROL.store(core::ptr::null_mut(), Release),
    }
}

fn init() {
    // Below 2^-14 the fixed-point multiplier would overflow; such a speed-up is no model.
    let Some(tdf) =
        env(dilation_abi::env::TDF_C).and_then(model::parse_f64).filter(|t| t.is_finite() && *t >= 1.0 / 16384.0)
    else {
        STATE.store(INACTIVE, Release);
        return;
    };
    let Some(now) = raw_clock(libc::CLOCK_REALTIME) else {
        STATE.store(INACTIVE, Release);
        return;
    };
    let real = env(dilation_abi::env::EPOCH_REAL_NS_C).and_then(model::parse_i64).unwrap_or(now);
    let virt = env(dilation_abi::env::EPOCH_VIRT_NS_C).and_then(model::parse_i64).unwrap_or(real);
    TDF_BITS.store(tdf.to_bits(), Relaxed);
    MULT.store(model::mult_of(tdf), Relaxed);
    EPOCH_REAL.store(real, Relaxed);
    EPOCH_VIRT.store(virt, Relaxed);
    D0.store(virt - real, Relaxed);
    for (id, slot) in OFFSETS.iter().enumerate() {
        let clock = id as clockid_t;
        if model::kind(clock) != Kind::Steady {
            continue;
        }
        // Sample realtime on both sides and take the midpoint.
        if let (Some(a), Some(c), Some(b)) = (raw_clock(0), raw_clock(clock), raw_clock(0)) {
            slot.store(c - (a + (b - a) / 2), Relaxed);
        }
    }
    if env(dilation_abi::env::DILATE_STAT_C) == Some(b"1") {
        DILATE_STAT.store(1, Relaxed);
    }
    map_control();
    CLOCK_GETTIME.store(vdso_clock_gettime().unwrap_or_else(|| next(b"clock_gettime\0")), Relaxed);
    crate::cpu::arm();
    STATE.store(ACTIVE, Release);
}

/// Initializes once; `true` when dilation is on. Reentrant calls during initialization
/// see `false` (pass-through) rather than waiting.
fn active() -> bool {
    match STATE.load(Acquire) {
        ACTIVE => true,
        UNINIT => {
            if STATE.compare_exchange(UNINIT, INITIALIZING, AcqRel, Acquire).is_ok() {
                init();
            }
            STATE.load(Acquire) == ACTIVE
        }
        _ => false,
    }
}

/// The current parameters (from the control page when there is one).
#[inline]
pub(crate) fn params() -> Params {
    let fixed = || Params {
        tdf: f64::from_bits(TDF_BITS.load(Relaxed)),
        mult: MULT.load(Relaxed),
        epoch_real: EPOCH_REAL.load(Relaxed),
        epoch_virt: EPOCH_VIRT.load(Relaxed),
        steps: 0,
        d0: D0.load(Relaxed),
    };
    let base = CONTROL.load(Acquire);
    if base.is_null() {
        return fixed();
    }
    let word = |off: usize| {
        // SAFETY: `base` is a page-aligned MAP_SHARED mapping of PAGE bytes that is never
        // unmapped; every offset used here is 8-aligned and below 72.
        unsafe { &*base.add(off).cast::<AtomicU64>() }
    };
    let (seq, t, r, v, st) =
        (word(OFF_SEQ), word(OFF_TDF), word(OFF_EPOCH_REAL), word(OFF_EPOCH_VIRT), word(OFF_STEPS));
    for _ in 0..128 {
        let s1 = seq.load(Acquire);
        if s1 % 2 == 1 {
            core::hint::spin_loop();
            continue;
        }
        let tdf = f64::from_bits(t.load(Relaxed));
        let p = Params {
            tdf,
            mult: multiplier(tdf),
            epoch_real: r.load(Relaxed) as i64,
            epoch_virt: v.load(Relaxed) as i64,
            steps: st.load(Relaxed) as i64,
            d0: D0.load(Relaxed),
        };
        fence(Acquire);
        if seq.load(Relaxed) == s1 && p.tdf.is_finite() && p.tdf >= 1.0 / 16384.0 {
            return p;
        }
    }
    count_error();
    fixed()
}

fn offset(clock: clockid_t) -> i64 {
    usize::try_from(clock).ok().and_then(|i| OFFSETS.get(i)).map_or(0, |o| o.load(Relaxed))
}

// ---------------------------------------------------------------------------------------
// Conversions.

fn ts_of(ts: &timespec) -> i64 {
    model::ts_ns(ts.tv_sec, ts.tv_nsec)
}

fn to_ts(ns: i64) -> timespec {
    let (s, n) = model::ns_ts(ns);
    timespec { tv_sec: s as time_t, tv_nsec: n as c_long }
}

fn tv_of(tv: &timeval) -> i64 {
    model::ts_ns(tv.tv_sec, tv.tv_usec.saturating_mul(1_000))
}

fn to_tv(ns: i64) -> timeval {
    let (s, n) = model::ns_ts(ns);
    timeval { tv_sec: s as time_t, tv_usec: (n / 1_000) as libc::suseconds_t }
}

/// Virtual time on `clock` now (for the wrappers that are not clock_gettime).
fn now_virtual(clock: clockid_t) -> Option<i64> {
    let mut ts = timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec.
    (unsafe { clock_gettime(clock, &raw mut ts) } == 0).then(|| ts_of(&ts))
}

/// A relative virtual timespec → the real one.
fn rel_real(ts: &timespec, p: &Params) -> timespec {
    to_ts(model::real_wait(ts_of(ts), p.tdf))
}

/// A relative real remainder → virtual.
fn rel_virtual(ts: &timespec, p: &Params) -> timespec {
    to_ts(model::virtual_wait(ts_of(ts), p.tdf))
}

/// An absolute virtual deadline on `clock` → the real one.
fn abs_real(clock: clockid_t, ts: &timespec, p: &Params) -> timespec {
    let k = model::kind(clock);
    to_ts(model::to_real(p, k, offset(clock), ts_of(ts)))
}

fn itimerspec_real(v: &itimerspec, p: &Params, abs_clock: Option<clockid_t>) -> itimerspec {
    let zero = |t: &timespec| t.tv_sec == 0 && t.tv_nsec == 0;
    itimerspec {
        it_interval: if zero(&v.it_interval) { v.it_interval } else { rel_real(&v.it_interval, p) },
        it_value: match abs_clock {
            _ if zero(&v.it_value) => v.it_value,
            Some(c) => abs_real(c, &v.it_value, p),
            None => rel_real(&v.it_value, p),
        },
    }
}

fn itimerspec_virtual(v: &itimerspec, p: &Params) -> itimerspec {
    itimerspec { it_interval: rel_virtual(&v.it_interval, p), it_value: rel_virtual(&v.it_value, p) }
}

fn itimerval_real(v: &itimerval, p: &Params) -> itimerval {
    itimerval {
        it_interval: to_tv(model::real_wait(tv_of(&v.it_interval), p.tdf)),
        it_value: to_tv(model::real_wait(tv_of(&v.it_value), p.tdf)),
    }
}

fn itimerval_virtual(v: &itimerval, p: &Params) -> itimerval {
    itimerval {
        it_interval: to_tv(model::virtual_wait(tv_of(&v.it_interval), p.tdf)),
        it_value: to_tv(model::virtual_wait(tv_of(&v.it_value), p.tdf)),
    }
}

/// Copies `*p` if it is not null.
fn read<T: Copy>(p: *const T) -> Option<T> {
    // SAFETY: the C caller passes either null or a valid pointer to a `T`.
    (!p.is_null()).then(|| unsafe { *p })
}

fn write<T>(p: *mut T, v: T) {
    if !p.is_null() {
        // SAFETY: the C caller passes either null or a valid, writable pointer to a `T`.
        unsafe { p.write(v) }
    }
}

// ---------------------------------------------------------------------------------------
// Clocks.

type ClockGettime = unsafe extern "C" fn(clockid_t, *mut timespec) -> c_int;

/// The real clock_gettime (vDSO through libc), or the raw syscall.
pub(crate) fn real_clock_gettime(clock: clockid_t, ts: *mut timespec) -> c_int {
    let p = CLOCK_GETTIME.load(Relaxed);
    if p != 0 {
        // SAFETY: `p` was resolved by dlsym for clock_gettime, whose prototype this is;
        // `ts` comes from the caller.
        let f = unsafe { core::mem::transmute::<usize, ClockGettime>(p) };
        // SAFETY: forwarding the caller's arguments.
        return unsafe { f(clock, ts) };
    }
    sys(libc::SYS_clock_gettime, [clock as i64, ts as i64, 0, 0, 0, 0]) as c_int
}

/// # Safety
/// `ts` must be valid for writes (as for `clock_gettime(2)`).
#[no_mangle]
pub unsafe extern "C" fn clock_gettime(clock: clockid_t, ts: *mut timespec) -> c_int {
    if model::kind(clock) != Kind::Passthrough {
        crate::cpu::pay_at_clock_read();
    }
    let r = real_clock_gettime(clock, ts);
    if r != 0 || ts.is_null() || !active() {
        return r;
    }
    let k = model::kind(clock);
    if k != Kind::Passthrough {
        if let Some(real) = read(ts) {
            let v = model::to_virtual(&params(), k, offset(clock), ts_of(&real));
            write(ts, to_ts(v));
        }
    }
    r
}

/// # Safety
/// As `gettimeofday(2)`.
#[no_mangle]
pub unsafe extern "C" fn gettimeofday(tv: *mut timeval, tz: *mut c_void) -> c_int {
    if !active() {
        let Some(f) = real!("gettimeofday", unsafe extern "C" fn(*mut timeval, *mut c_void) -> c_int) else {
            return sys(libc::SYS_gettimeofday, [tv as i64, tz as i64, 0, 0, 0, 0]) as c_int;
        };
        // SAFETY: forwarding the caller's arguments to the real function.
        return unsafe { f(tv, tz) };
    }
    if !tz.is_null() {
        // Time zones are not dilated; let the kernel fill it in.
        sys(libc::SYS_gettimeofday, [0, tz as i64, 0, 0, 0, 0]);
    }
    match now_virtual(libc::CLOCK_REALTIME) {
        Some(v) => {
            write(tv, to_tv(v));
            0
        }
        None => -1,
    }
}

/// # Safety
/// As `time(2)`.
#[no_mangle]
pub unsafe extern "C" fn time(tloc: *mut time_t) -> time_t {
    let secs = match now_virtual(libc::CLOCK_REALTIME) {
        Some(v) => model::ns_ts(v).0 as time_t,
        None => return -1,
    };
    write(tloc, secs);
    secs
}

/// `struct timeb` of `ftime(3)`.
#[repr(C)]
pub struct Timeb {
    pub time: time_t,
    pub millitm: u16,
    pub timezone: i16,
    pub dstflag: i16,
}

/// # Safety
/// As `ftime(3)`.
#[no_mangle]
pub unsafe extern "C" fn ftime(tp: *mut Timeb) -> c_int {
    let Some(v) = now_virtual(libc::CLOCK_REALTIME) else { return -1 };
    let (s, n) = model::ns_ts(v);
    write(tp, Timeb { time: s as time_t, millitm: (n / 1_000_000) as u16, timezone: 0, dstflag: 0 });
    0
}

/// # Safety
/// As `timespec_get(3)`.
#[no_mangle]
pub unsafe extern "C" fn timespec_get(ts: *mut timespec, base: c_int) -> c_int {
    const TIME_UTC: c_int = 1;
    if base != TIME_UTC {
        return 0;
    }
    // SAFETY: forwarding the caller's pointer to our clock_gettime.
    if unsafe { clock_gettime(libc::CLOCK_REALTIME, ts) } == 0 {
        base
    } else {
        0
    }
}

/// # Safety
/// As `times(2)`. CPU times are not dilated; the elapsed ticks are.
#[no_mangle]
pub unsafe extern "C" fn times(buf: *mut libc::tms) -> libc::clock_t {
    let ticks = sys(libc::SYS_times, [buf as i64, 0, 0, 0, 0, 0]);
    if ticks == -1 || !active() {
        return ticks as libc::clock_t;
    }
    let base = match TIMES_BASE.compare_exchange(i64::MIN, ticks, Relaxed, Relaxed) {
        Ok(_) => ticks,
        Err(b) => b,
    };
    (base + ((ticks - base) as f64 / params().tdf) as i64) as libc::clock_t
}

// ---------------------------------------------------------------------------------------
// Sleeps.

type Nanosleep = unsafe extern "C" fn(*const timespec, *mut timespec) -> c_int;

fn real_nanosleep(req: *const timespec, rem: *mut timespec) -> c_int {
    match real!("nanosleep", Nanosleep) {
        // SAFETY: forwarding valid pointers to the real nanosleep.
        Some(f) => unsafe { f(req, rem) },
        None => sys(libc::SYS_nanosleep, [req as i64, rem as i64, 0, 0, 0, 0]) as c_int,
    }
}

/// # Safety
/// As `nanosleep(2)`.
#[no_mangle]
pub unsafe extern "C" fn nanosleep(req: *const timespec, rem: *mut timespec) -> c_int {
    let _wait = crate::cpu::wait();
    let Some(r) = read(req) else { return real_nanosleep(req, rem) };
    if !active() {
        return real_nanosleep(req, rem);
    }
    let p = params();
    let real = rel_real(&r, &p);
    let mut left = timespec { tv_sec: 0, tv_nsec: 0 };
    let ret = real_nanosleep(&raw const real, &raw mut left);
    if ret == -1 && errno() == libc::EINTR {
        write(rem, rel_virtual(&left, &p));
    }
    ret
}

type ClockNanosleep = unsafe extern "C" fn(clockid_t, c_int, *const timespec, *mut timespec) -> c_int;

fn real_clock_nanosleep(clock: clockid_t, flags: c_int, req: *const timespec, rem: *mut timespec) -> c_int {
    match real!("clock_nanosleep", ClockNanosleep) {
        // SAFETY: forwarding valid pointers to the real function.
        Some(f) => unsafe { f(clock, flags, req, rem) },
        None => {
            let r = sys(libc::SYS_clock_nanosleep, [clock as i64, flags as i64, req as i64, rem as i64, 0, 0]);
            if r == -1 {
                errno()
            } else {
                0
            }
        }
    }
}

/// # Safety
/// As `clock_nanosleep(2)`.
#[no_mangle]
pub unsafe extern "C" fn clock_nanosleep(
    clock: clockid_t,
    flags: c_int,
    req: *const timespec,
    rem: *mut timespec,
) -> c_int {
    let _wait = crate::cpu::wait();
    let Some(r) = read(req) else { return real_clock_nanosleep(clock, flags, req, rem) };
    if !active() || model::kind(clock) == Kind::Passthrough {
        return real_clock_nanosleep(clock, flags, req, rem);
    }
    let p = params();
    if flags & libc::TIMER_ABSTIME != 0 {
        let real = abs_real(clock, &r, &p);
        return real_clock_nanosleep(clock, flags, &raw const real, core::ptr::null_mut());
    }
    let real = rel_real(&r, &p);
    let mut left = timespec { tv_sec: 0, tv_nsec: 0 };
    let ret = real_clock_nanosleep(clock, flags, &raw const real, &raw mut left);
    if ret == libc::EINTR {
        write(rem, rel_virtual(&left, &p));
    }
    ret
}

/// # Safety
/// As `usleep(3)`.
#[no_mangle]
pub unsafe extern "C" fn usleep(usec: libc::useconds_t) -> c_int {
    let req = to_ts(i64::from(usec) * 1_000);
    // SAFETY: `req` is a valid timespec; the remainder is not wanted.
    unsafe { nanosleep(&raw const req, core::ptr::null_mut()) }
}

/// # Safety
/// As `sleep(3)`.
#[no_mangle]
pub unsafe extern "C" fn sleep(secs: c_uint) -> c_uint {
    let req = timespec { tv_sec: secs as time_t, tv_nsec: 0 };
    let mut rem = timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: both timespecs are valid.
    if unsafe { nanosleep(&raw const req, &raw mut rem) } == -1 {
        return (rem.tv_sec + i64::from(rem.tv_nsec > 0)) as c_uint;
    }
    0
}

// ---------------------------------------------------------------------------------------
// Waits on file descriptors.

/// # Safety
/// As `select(2)`.
#[no_mangle]
pub unsafe extern "C" fn select(
    nfds: c_int,
    r: *mut libc::fd_set,
    w: *mut libc::fd_set,
    e: *mut libc::fd_set,
    timeout: *mut timeval,
) -> c_int {
    let _wait = crate::cpu::wait();
    type F =
        unsafe extern "C" fn(c_int, *mut libc::fd_set, *mut libc::fd_set, *mut libc::fd_set, *mut timeval) -> c_int;
    let Some(f) = real!("select", F) else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    let Some(t) = read(timeout).filter(|_| active()) else {
        // SAFETY: forwarding the caller's arguments.
        return unsafe { f(nfds, r, w, e, timeout) };
    };
    let p = params();
    let mut real = to_tv(model::real_wait(tv_of(&t), p.tdf));
    // SAFETY: forwarding the caller's sets and our own timeout.
    let ret = unsafe { f(nfds, r, w, e, &raw mut real) };
    // Linux reports the time not slept; keep that contract in virtual time.
    write(timeout, to_tv(model::virtual_wait(tv_of(&real), p.tdf)));
    ret
}

/// # Safety
/// As `pselect(2)`.
#[no_mangle]
pub unsafe extern "C" fn pselect(
    nfds: c_int,
    r: *mut libc::fd_set,
    w: *mut libc::fd_set,
    e: *mut libc::fd_set,
    timeout: *const timespec,
    mask: *const sigset_t,
) -> c_int {
    let _wait = crate::cpu::wait();
    type F = unsafe extern "C" fn(
        c_int,
        *mut libc::fd_set,
        *mut libc::fd_set,
        *mut libc::fd_set,
        *const timespec,
        *const sigset_t,
    ) -> c_int;
    let Some(f) = real!("pselect", F) else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    match read(timeout).filter(|_| active()) {
        Some(t) => {
            let real = rel_real(&t, &params());
            // SAFETY: forwarding the caller's arguments with our timeout.
            unsafe { f(nfds, r, w, e, &raw const real, mask) }
        }
        // SAFETY: forwarding the caller's arguments.
        None => unsafe { f(nfds, r, w, e, timeout, mask) },
    }
}

/// # Safety
/// As `poll(2)`.
#[no_mangle]
pub unsafe extern "C" fn poll(fds: *mut pollfd, n: libc::nfds_t, timeout: c_int) -> c_int {
    let _wait = crate::cpu::wait();
    let t = if active() { model::real_ms(timeout, params().tdf) } else { timeout };
    match real!("poll", unsafe extern "C" fn(*mut pollfd, libc::nfds_t, c_int) -> c_int) {
        // SAFETY: forwarding the caller's arguments.
        Some(f) => unsafe { f(fds, n, t) },
        None => {
            let ts = to_ts(i64::from(t) * 1_000_000);
            let tp = if t < 0 { 0 } else { &raw const ts as i64 };
            sys(libc::SYS_ppoll, [fds as i64, n as i64, tp, 0, 8, 0]) as c_int
        }
    }
}

/// # Safety
/// As `ppoll(2)`.
#[no_mangle]
pub unsafe extern "C" fn ppoll(
    fds: *mut pollfd,
    n: libc::nfds_t,
    timeout: *const timespec,
    mask: *const sigset_t,
) -> c_int {
    let _wait = crate::cpu::wait();
    type F = unsafe extern "C" fn(*mut pollfd, libc::nfds_t, *const timespec, *const sigset_t) -> c_int;
    let Some(f) = real!("ppoll", F) else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    match read(timeout).filter(|_| active()) {
        Some(t) => {
            let real = rel_real(&t, &params());
            // SAFETY: forwarding the caller's arguments with our timeout.
            unsafe { f(fds, n, &raw const real, mask) }
        }
        // SAFETY: forwarding the caller's arguments.
        None => unsafe { f(fds, n, timeout, mask) },
    }
}

/// # Safety
/// As `epoll_wait(2)`.
#[no_mangle]
pub unsafe extern "C" fn epoll_wait(epfd: c_int, ev: *mut libc::epoll_event, max: c_int, timeout: c_int) -> c_int {
    let _wait = crate::cpu::wait();
    let t = if active() { model::real_ms(timeout, params().tdf) } else { timeout };
    match real!("epoll_wait", unsafe extern "C" fn(c_int, *mut libc::epoll_event, c_int, c_int) -> c_int) {
        // SAFETY: forwarding the caller's arguments.
        Some(f) => unsafe { f(epfd, ev, max, t) },
        None => sys(libc::SYS_epoll_pwait, [epfd as i64, ev as i64, max as i64, t as i64, 0, 8]) as c_int,
    }
}

/// # Safety
/// As `epoll_pwait(2)`.
#[no_mangle]
pub unsafe extern "C" fn epoll_pwait(
    epfd: c_int,
    ev: *mut libc::epoll_event,
    max: c_int,
    timeout: c_int,
    mask: *const sigset_t,
) -> c_int {
    let _wait = crate::cpu::wait();
    type F = unsafe extern "C" fn(c_int, *mut libc::epoll_event, c_int, c_int, *const sigset_t) -> c_int;
    let t = if active() { model::real_ms(timeout, params().tdf) } else { timeout };
    match real!("epoll_pwait", F) {
        // SAFETY: forwarding the caller's arguments.
        Some(f) => unsafe { f(epfd, ev, max, t, mask) },
        None => {
            set_errno(libc::ENOSYS);
            -1
        }
    }
}

/// # Safety
/// As `epoll_pwait2(2)`.
#[no_mangle]
pub unsafe extern "C" fn epoll_pwait2(
    epfd: c_int,
    ev: *mut libc::epoll_event,
    max: c_int,
    timeout: *const timespec,
    mask: *const sigset_t,
) -> c_int {
    let _wait = crate::cpu::wait();
    type F = unsafe extern "C" fn(c_int, *mut libc::epoll_event, c_int, *const timespec, *const sigset_t) -> c_int;
    let Some(f) = real!("epoll_pwait2", F) else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    match read(timeout).filter(|_| active()) {
        Some(t) => {
            let real = rel_real(&t, &params());
            // SAFETY: forwarding the caller's arguments with our timeout.
            unsafe { f(epfd, ev, max, &raw const real, mask) }
        }
        // SAFETY: forwarding the caller's arguments.
        None => unsafe { f(epfd, ev, max, timeout, mask) },
    }
}

// ---------------------------------------------------------------------------------------
// Absolute-deadline waits: semaphores, pthread objects, message queues.

/// Calls `f` with `abstime` converted from virtual to real on `clock`.
fn with_deadline(clock: clockid_t, abstime: *const timespec, f: impl FnOnce(*const timespec) -> c_int) -> c_int {
    let _wait = crate::cpu::wait();
    match read(abstime).filter(|_| active() && model::kind(clock) != Kind::Passthrough) {
        Some(t) => {
            let real = abs_real(clock, &t, &params());
            f(&raw const real)
        }
        None => f(abstime),
    }
}

macro_rules! deadline_hook {
    ($(#[$doc:meta])* $name:ident, $sym:literal, ($($arg:ident: $ty:ty),*), clock = $clock:expr, abstime = $abs:ident, err = $err:expr) => {
        $(#[$doc])*
        /// # Safety
        /// As the libc function of the same name.
        #[no_mangle]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> c_int {
            type F = unsafe extern "C" fn($($ty),*) -> c_int;
            let Some(f) = real!($sym, F) else { return $err };
            with_deadline($clock, $abs, |$abs| {
                // SAFETY: forwarding the caller's arguments, with the deadline converted.
                unsafe { f($($arg),*) }
            })
        }
    };
}

fn enosys_errno() -> c_int {
    set_errno(libc::ENOSYS);
    -1
}

deadline_hook!(sem_timedwait, "sem_timedwait", (sem: *mut libc::sem_t, abstime: *const timespec), clock = libc::CLOCK_REALTIME, abstime = abstime, err = enosys_errno());
deadline_hook!(sem_clockwait, "sem_clockwait", (sem: *mut libc::sem_t, clock: clockid_t, abstime: *const timespec), clock = clock, abstime = abstime, err = enosys_errno());
deadline_hook!(pthread_mutex_timedlock, "pthread_mutex_timedlock", (m: *mut libc::pthread_mutex_t, abstime: *const timespec), clock = libc::CLOCK_REALTIME, abstime = abstime, err = libc::ENOSYS);
deadline_hook!(pthread_mutex_clocklock, "pthread_mutex_clocklock", (m: *mut libc::pthread_mutex_t, clock: clockid_t, abstime: *const timespec), clock = clock, abstime = abstime, err = libc::ENOSYS);
deadline_hook!(pthread_rwlock_timedrdlock, "pthread_rwlock_timedrdlock", (l: *mut libc::pthread_rwlock_t, abstime: *const timespec), clock = libc::CLOCK_REALTIME, abstime = abstime, err = libc::ENOSYS);
deadline_hook!(pthread_rwlock_timedwrlock, "pthread_rwlock_timedwrlock", (l: *mut libc::pthread_rwlock_t, abstime: *const timespec), clock = libc::CLOCK_REALTIME, abstime = abstime, err = libc::ENOSYS);
deadline_hook!(pthread_rwlock_clockrdlock, "pthread_rwlock_clockrdlock", (l: *mut libc::pthread_rwlock_t, clock: clockid_t, abstime: *const timespec), clock = clock, abstime = abstime, err = libc::ENOSYS);
deadline_hook!(pthread_rwlock_clockwrlock, "pthread_rwlock_clockwrlock", (l: *mut libc::pthread_rwlock_t, clock: clockid_t, abstime: *const timespec), clock = clock, abstime = abstime, err = libc::ENOSYS);
deadline_hook!(pthread_timedjoin_np, "pthread_timedjoin_np", (t: libc::pthread_t, ret: *mut *mut c_void, abstime: *const timespec), clock = libc::CLOCK_REALTIME, abstime = abstime, err = libc::ENOSYS);
deadline_hook!(pthread_clockjoin_np, "pthread_clockjoin_np", (t: libc::pthread_t, ret: *mut *mut c_void, clock: clockid_t, abstime: *const timespec), clock = clock, abstime = abstime, err = libc::ENOSYS);
deadline_hook!(pthread_cond_clockwait, "pthread_cond_clockwait", (c: *mut libc::pthread_cond_t, m: *mut libc::pthread_mutex_t, clock: clockid_t, abstime: *const timespec), clock = clock, abstime = abstime, err = libc::ENOSYS);
deadline_hook!(mq_timedsend, "mq_timedsend", (q: libc::mqd_t, msg: *const c_char, len: usize, prio: c_uint, abstime: *const timespec), clock = libc::CLOCK_REALTIME, abstime = abstime, err = enosys_errno());

/// # Safety
/// As `mq_timedreceive(3)`.
#[no_mangle]
pub unsafe extern "C" fn mq_timedreceive(
    q: libc::mqd_t,
    msg: *mut c_char,
    len: usize,
    prio: *mut c_uint,
    abstime: *const timespec,
) -> libc::ssize_t {
    type F = unsafe extern "C" fn(libc::mqd_t, *mut c_char, usize, *mut c_uint, *const timespec) -> libc::ssize_t;
    let Some(f) = real!("mq_timedreceive", F) else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    match read(abstime).filter(|_| active()) {
        Some(t) => {
            let real = abs_real(libc::CLOCK_REALTIME, &t, &params());
            // SAFETY: forwarding the caller's arguments with the converted deadline.
            unsafe { f(q, msg, len, prio, &raw const real) }
        }
        // SAFETY: forwarding the caller's arguments.
        None => unsafe { f(q, msg, len, prio, abstime) },
    }
}

/// The clock a condition variable waits on: glibc keeps it in bit 1 of `__wrefs`
/// (offset 36 of `pthread_cond_t` on 64-bit Linux), set by `pthread_condattr_setclock`.
fn cond_clock(cond: *const libc::pthread_cond_t) -> clockid_t {
    const WREFS_OFFSET: usize = 36;
    const CLOCK_MONOTONIC_BIT: u32 = 2;
    if cond.is_null() {
        return libc::CLOCK_REALTIME;
    }
    // SAFETY: `cond` points to a pthread_cond_t (48 bytes); offset 36 is 4-aligned and in
    // bounds; the word is read atomically as glibc itself does.
    let wrefs = unsafe { &*cond.cast::<u8>().add(WREFS_OFFSET).cast::<core::sync::atomic::AtomicU32>() }.load(Relaxed);
    if wrefs & CLOCK_MONOTONIC_BIT != 0 {
        libc::CLOCK_MONOTONIC
    } else {
        libc::CLOCK_REALTIME
    }
}

/// # Safety
/// As `pthread_cond_timedwait(3)`; honours the clock the condition variable was made with.
#[no_mangle]
pub unsafe extern "C" fn pthread_cond_timedwait(
    c: *mut libc::pthread_cond_t,
    m: *mut libc::pthread_mutex_t,
    abstime: *const timespec,
) -> c_int {
    let _wait = crate::cpu::wait();
    type F = unsafe extern "C" fn(*mut libc::pthread_cond_t, *mut libc::pthread_mutex_t, *const timespec) -> c_int;
    static PTR: AtomicUsize = AtomicUsize::new(0);
    let mut p = PTR.load(Relaxed);
    if p == 0 {
        // dlsym alone may return the compatibility (GLIBC_2.2.5) version of the symbol.
        #[cfg(target_arch = "x86_64")]
        let version: &[u8] = b"GLIBC_2.3.2\0";
        #[cfg(not(target_arch = "x86_64"))]
        let version: &[u8] = b"GLIBC_2.17\0";
        p = next_versioned(b"pthread_cond_timedwait\0", version);
        PTR.store(p, Relaxed);
    }
    if p == 0 {
        return libc::ENOSYS;
    }
    // SAFETY: `p` is the address of pthread_cond_timedwait with this prototype.
    let f = unsafe { core::mem::transmute::<usize, F>(p) };
    with_deadline(cond_clock(c), abstime, |abstime| {
        // SAFETY: forwarding the caller's arguments with the converted deadline.
        unsafe { f(c, m, abstime) }
    })
}

/// # Safety
/// As `sigtimedwait(2)`.
#[no_mangle]
pub unsafe extern "C" fn sigtimedwait(
    set: *const sigset_t,
    info: *mut libc::siginfo_t,
    timeout: *const timespec,
) -> c_int {
    let _wait = crate::cpu::wait();
    type F = unsafe extern "C" fn(*const sigset_t, *mut libc::siginfo_t, *const timespec) -> c_int;
    let Some(f) = real!("sigtimedwait", F) else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    match read(timeout).filter(|_| active()) {
        Some(t) => {
            let real = rel_real(&t, &params());
            // SAFETY: forwarding the caller's arguments with our timeout.
            unsafe { f(set, info, &raw const real) }
        }
        // SAFETY: forwarding the caller's arguments.
        None => unsafe { f(set, info, timeout) },
    }
}

// ---------------------------------------------------------------------------------------
// Timers.

/// Clock of each timerfd (clock id + 1; 0 = unknown), by descriptor number.
static TIMERFD_CLOCKS: [AtomicU8; 4096] = [const { AtomicU8::new(0) }; 4096];
/// POSIX timers: (timer id, clock id + 1) slots, hashed by id.
static TIMER_IDS: [AtomicUsize; 256] = [const { AtomicUsize::new(usize::MAX) }; 256];
static TIMER_CLOCKS: [AtomicU8; 256] = [const { AtomicU8::new(0) }; 256];

fn timerfd_clock(fd: c_int) -> clockid_t {
    usize::try_from(fd)
        .ok()
        .and_then(|i| TIMERFD_CLOCKS.get(i))
        .map(|c| c.load(Relaxed))
        .filter(|&c| c != 0)
        .map_or(libc::CLOCK_MONOTONIC, |c| clockid_t::from(c) - 1)
}

/// # Safety
/// As `timerfd_create(2)`.
#[no_mangle]
pub unsafe extern "C" fn timerfd_create(clock: clockid_t, flags: c_int) -> c_int {
    let fd = match real!("timerfd_create", unsafe extern "C" fn(clockid_t, c_int) -> c_int) {
        // SAFETY: forwarding the caller's arguments.
        Some(f) => unsafe { f(clock, flags) },
        None => sys(libc::SYS_timerfd_create, [clock as i64, flags as i64, 0, 0, 0, 0]) as c_int,
    };
    if let (Some(slot), Ok(c)) = (usize::try_from(fd).ok().and_then(|i| TIMERFD_CLOCKS.get(i)), u8::try_from(clock + 1))
    {
        slot.store(c, Relaxed);
    }
    fd
}

/// # Safety
/// As `timerfd_settime(2)`.
#[no_mangle]
pub unsafe extern "C" fn timerfd_settime(
    fd: c_int,
    flags: c_int,
    new: *const itimerspec,
    old: *mut itimerspec,
) -> c_int {
    type F = unsafe extern "C" fn(c_int, c_int, *const itimerspec, *mut itimerspec) -> c_int;
    let Some(f) = real!("timerfd_settime", F) else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    let Some(n) = read(new).filter(|_| active()) else {
        // SAFETY: forwarding the caller's arguments.
        return unsafe { f(fd, flags, new, old) };
    };
    let p = params();
    let abs = (flags & libc::TFD_TIMER_ABSTIME != 0).then(|| timerfd_clock(fd));
    let real = itimerspec_real(&n, &p, abs);
    let mut prev = itimerspec { it_interval: to_ts(0), it_value: to_ts(0) };
    // SAFETY: our own valid itimerspecs.
    let ret = unsafe { f(fd, flags, &raw const real, &raw mut prev) };
    if ret == 0 {
        write(old, itimerspec_virtual(&prev, &p));
    }
    ret
}

/// # Safety
/// As `timerfd_gettime(2)`.
#[no_mangle]
pub unsafe extern "C" fn timerfd_gettime(fd: c_int, cur: *mut itimerspec) -> c_int {
    type F = unsafe extern "C" fn(c_int, *mut itimerspec) -> c_int;
    let Some(f) = real!("timerfd_gettime", F) else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    // SAFETY: forwarding the caller's arguments.
    let ret = unsafe { f(fd, cur) };
    if ret == 0 && active() {
        if let Some(c) = read(cur) {
            write(cur, itimerspec_virtual(&c, &params()));
        }
    }
    ret
}

fn timer_slot(id: libc::timer_t) -> usize {
    (id as usize).wrapping_mul(0x9E37_79B9) % TIMER_IDS.len()
}

fn timer_clock(id: libc::timer_t) -> clockid_t {
    let s = timer_slot(id);
    match (TIMER_IDS.get(s), TIMER_CLOCKS.get(s)) {
        (Some(k), Some(c)) if k.load(Relaxed) == id as usize && c.load(Relaxed) != 0 => {
            clockid_t::from(c.load(Relaxed)) - 1
        }
        _ => libc::CLOCK_REALTIME,
    }
}

/// # Safety
/// As `timer_create(2)`.
#[no_mangle]
pub unsafe extern "C" fn timer_create(clock: clockid_t, sev: *mut libc::sigevent, id: *mut libc::timer_t) -> c_int {
    type F = unsafe extern "C" fn(clockid_t, *mut libc::sigevent, *mut libc::timer_t) -> c_int;
    let Some(f) = real!("timer_create", F) else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    // SAFETY: forwarding the caller's arguments.
    let ret = unsafe { f(clock, sev, id) };
    if let (0, Some(t)) = (ret, read(id)) {
        let s = timer_slot(t);
        if let (Some(k), Some(c), Ok(cl)) = (TIMER_IDS.get(s), TIMER_CLOCKS.get(s), u8::try_from(clock + 1)) {
            k.store(t as usize, Relaxed);
            c.store(cl, Relaxed);
        }
    }
    ret
}

/// # Safety
/// As `timer_settime(2)`.
#[no_mangle]
pub unsafe extern "C" fn timer_settime(
    id: libc::timer_t,
    flags: c_int,
    new: *const itimerspec,
    old: *mut itimerspec,
) -> c_int {
    type F = unsafe extern "C" fn(libc::timer_t, c_int, *const itimerspec, *mut itimerspec) -> c_int;
    let Some(f) = real!("timer_settime", F) else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    let Some(n) = read(new).filter(|_| active() && model::kind(timer_clock(id)) != Kind::Passthrough) else {
        // SAFETY: forwarding the caller's arguments.
        return unsafe { f(id, flags, new, old) };
    };
    let p = params();
    let abs = (flags & libc::TIMER_ABSTIME != 0).then(|| timer_clock(id));
    let real = itimerspec_real(&n, &p, abs);
    let mut prev = itimerspec { it_interval: to_ts(0), it_value: to_ts(0) };
    // SAFETY: our own valid itimerspecs.
    let ret = unsafe { f(id, flags, &raw const real, &raw mut prev) };
    if ret == 0 {
        write(old, itimerspec_virtual(&prev, &p));
    }
    ret
}

/// # Safety
/// As `timer_gettime(2)`.
#[no_mangle]
pub unsafe extern "C" fn timer_gettime(id: libc::timer_t, cur: *mut itimerspec) -> c_int {
    type F = unsafe extern "C" fn(libc::timer_t, *mut itimerspec) -> c_int;
    let Some(f) = real!("timer_gettime", F) else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    // SAFETY: forwarding the caller's arguments.
    let ret = unsafe { f(id, cur) };
    if ret == 0 && active() && model::kind(timer_clock(id)) != Kind::Passthrough {
        if let Some(c) = read(cur) {
            write(cur, itimerspec_virtual(&c, &params()));
        }
    }
    ret
}

/// # Safety
/// As `alarm(2)`.
#[no_mangle]
pub unsafe extern "C" fn alarm(secs: c_uint) -> c_uint {
    let new = itimerval { it_interval: to_tv(0), it_value: to_tv(i64::from(secs) * 1_000_000_000) };
    let mut old = itimerval { it_interval: to_tv(0), it_value: to_tv(0) };
    // SAFETY: our own valid itimervals.
    if unsafe { setitimer(libc::ITIMER_REAL, &raw const new, &raw mut old) } != 0 {
        return 0;
    }
    (old.it_value.tv_sec + i64::from(old.it_value.tv_usec >= 500_000)) as c_uint
}

/// # Safety
/// As `ualarm(3)`.
#[no_mangle]
pub unsafe extern "C" fn ualarm(usecs: libc::useconds_t, interval: libc::useconds_t) -> libc::useconds_t {
    let new = itimerval { it_interval: to_tv(i64::from(interval) * 1_000), it_value: to_tv(i64::from(usecs) * 1_000) };
    let mut old = itimerval { it_interval: to_tv(0), it_value: to_tv(0) };
    // SAFETY: our own valid itimervals.
    if unsafe { setitimer(libc::ITIMER_REAL, &raw const new, &raw mut old) } != 0 {
        return 0;
    }
    (old.it_value.tv_sec * 1_000_000 + old.it_value.tv_usec) as libc::useconds_t
}

type Setitimer = unsafe extern "C" fn(c_int, *const itimerval, *mut itimerval) -> c_int;

/// # Safety
/// As `setitimer(2)`. Only `ITIMER_REAL` is dilated: the others count CPU time.
#[no_mangle]
pub unsafe extern "C" fn setitimer(which: c_int, new: *const itimerval, old: *mut itimerval) -> c_int {
    let call = |n: *const itimerval, o: *mut itimerval| match real!("setitimer", Setitimer) {
        // SAFETY: forwarding valid pointers.
        Some(f) => unsafe { f(which, n, o) },
        None => sys(libc::SYS_setitimer, [which as i64, n as i64, o as i64, 0, 0, 0]) as c_int,
    };
    let Some(n) = read(new).filter(|_| which == libc::ITIMER_REAL && active()) else {
        return call(new, old);
    };
    let p = params();
    let real = itimerval_real(&n, &p);
    let mut prev = itimerval { it_interval: to_tv(0), it_value: to_tv(0) };
    let ret = call(&raw const real, &raw mut prev);
    if ret == 0 {
        write(old, itimerval_virtual(&prev, &p));
    }
    ret
}

/// # Safety
/// As `getitimer(2)`.
#[no_mangle]
pub unsafe extern "C" fn getitimer(which: c_int, cur: *mut itimerval) -> c_int {
    let ret = match real!("getitimer", unsafe extern "C" fn(c_int, *mut itimerval) -> c_int) {
        // SAFETY: forwarding the caller's arguments.
        Some(f) => unsafe { f(which, cur) },
        None => sys(libc::SYS_getitimer, [which as i64, cur as i64, 0, 0, 0, 0]) as c_int,
    };
    if ret == 0 && which == libc::ITIMER_REAL && active() {
        if let Some(c) = read(cur) {
            write(cur, itimerval_virtual(&c, &params()));
        }
    }
    ret
}

// ---------------------------------------------------------------------------------------
// Socket timeouts.

const SO_RCVTIMEO_NEW: c_int = 66;
const SO_SNDTIMEO_NEW: c_int = 67;

fn is_timeout_opt(level: c_int, name: c_int) -> bool {
    level == libc::SOL_SOCKET
        && matches!(name, libc::SO_RCVTIMEO | libc::SO_SNDTIMEO | SO_RCVTIMEO_NEW | SO_SNDTIMEO_NEW)
}

/// # Safety
/// As `setsockopt(2)`.
#[no_mangle]
pub unsafe extern "C" fn setsockopt(fd: c_int, level: c_int, name: c_int, val: *const c_void, len: socklen_t) -> c_int {
    type F = unsafe extern "C" fn(c_int, c_int, c_int, *const c_void, socklen_t) -> c_int;
    let Some(f) = real!("setsockopt", F) else {
        return sys(libc::SYS_setsockopt, [fd as i64, level as i64, name as i64, val as i64, len as i64, 0]) as c_int;
    };
    if is_timeout_opt(level, name) && len as usize >= core::mem::size_of::<timeval>() && active() {
        if let Some(tv) = read(val.cast::<timeval>()) {
            let real = to_tv(model::real_wait(tv_of(&tv), params().tdf));
            // SAFETY: our own timeval of the size the option expects.
            return unsafe {
                f(fd, level, name, (&raw const real).cast(), core::mem::size_of::<timeval>() as socklen_t)
            };
        }
    }
    // SAFETY: forwarding the caller's arguments.
    unsafe { f(fd, level, name, val, len) }
}

/// # Safety
/// As `getsockopt(2)`.
#[no_mangle]
pub unsafe extern "C" fn getsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *mut c_void,
    len: *mut socklen_t,
) -> c_int {
    type F = unsafe extern "C" fn(c_int, c_int, c_int, *mut c_void, *mut socklen_t) -> c_int;
    let ret = match real!("getsockopt", F) {
        // SAFETY: forwarding the caller's arguments.
        Some(f) => unsafe { f(fd, level, name, val, len) },
        None => sys(libc::SYS_getsockopt, [fd as i64, level as i64, name as i64, val as i64, len as i64, 0]) as c_int,
    };
    if ret == 0
        && is_timeout_opt(level, name)
        && active()
        && read(len).is_some_and(|l| l as usize >= core::mem::size_of::<timeval>())
    {
        if let Some(tv) = read(val.cast::<timeval>()) {
            write(val.cast::<timeval>(), to_tv(model::virtual_wait(tv_of(&tv), params().tdf)));
        }
    }
    ret
}

// ---------------------------------------------------------------------------------------
// Receive timestamps. `SO_TIMESTAMP*` hands the program the kernel's CLOCK_REALTIME stamp
// of each packet in a control message; `traceroute` and `ping` without `-U` subtract it
// from a send time read through the (dilated) libc clock, so an undilated stamp reads as
// the whole real-minus-virtual offset (seconds at TDF 10). Rewritten to virtual time.

/// SOL_SOCKET control-message types that carry receive timestamps (the `_OLD` and `_NEW`
/// forms have the same 64-bit layout on x86_64 and aarch64).
const SCM_TIMESTAMP_OLD: c_int = 29;
const SCM_TIMESTAMPNS_OLD: c_int = 35;
const SCM_TIMESTAMPING_OLD: c_int = 37;
const SCM_TIMESTAMP_NEW: c_int = 63;
const SCM_TIMESTAMPNS_NEW: c_int = 64;
const SCM_TIMESTAMPING_NEW: c_int = 65;

/// A CLOCK_REALTIME stamp → virtual (a zero stamp, "none", stays zero).
fn stamp_virtual(real_ns: i64, p: &Params) -> i64 {
    if real_ns == 0 {
        return 0;
    }
    model::to_virtual(p, Kind::Realtime, 0, real_ns)
}

/// Rewrites the receive timestamps in `msg`'s control messages to virtual time.
fn dilate_stamps(msg: *mut libc::msghdr) {
    if msg.is_null() || !active() {
        return;
    }
    let p = params();
    // SAFETY: `msg` is the caller's msghdr that the kernel just filled; CMSG_* walk only
    // within `msg_control[..msg_controllen]`, and each payload is checked to hold the type's
    // size before it is read or written (unaligned: a cmsg payload need not be aligned).
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            let h = &*c;
            let data = libc::CMSG_DATA(c);
            let len = (h.cmsg_len as usize).saturating_sub(data.offset_from(c.cast::<u8>()) as usize);
            if h.cmsg_level == libc::SOL_SOCKET {
                match h.cmsg_type {
                    SCM_TIMESTAMP_OLD | SCM_TIMESTAMP_NEW if len >= core::mem::size_of::<timeval>() => {
                        let t = data.cast::<timeval>();
                        let v = stamp_virtual(tv_of(&t.read_unaligned()), &p);
                        t.write_unaligned(to_tv(v));
                    }
                    SCM_TIMESTAMPNS_OLD | SCM_TIMESTAMPNS_NEW if len >= core::mem::size_of::<timespec>() => {
                        let t = data.cast::<timespec>();
                        let v = stamp_virtual(ts_of(&t.read_unaligned()), &p);
                        t.write_unaligned(to_ts(v));
                    }
                    // Three stamps: software, (deprecated), hardware. Only the software one
                    // is the host's realtime clock; a NIC's hardware clock is left alone.
                    SCM_TIMESTAMPING_OLD | SCM_TIMESTAMPING_NEW if len >= core::mem::size_of::<timespec>() => {
                        let t = data.cast::<timespec>();
                        let v = stamp_virtual(ts_of(&t.read_unaligned()), &p);
                        t.write_unaligned(to_ts(v));
                    }
                    _ => {}
                }
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
}

/// # Safety
/// As `recvmsg(2)`.
#[no_mangle]
pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut libc::msghdr, flags: c_int) -> libc::ssize_t {
    // A blocking input, like `read` (cpu.rs): pay first, start a new burst after.
    let _wait = crate::cpu::wait();
    type F = unsafe extern "C" fn(c_int, *mut libc::msghdr, c_int) -> libc::ssize_t;
    let ret = match real!("recvmsg", F) {
        // SAFETY: forwarding the caller's arguments.
        Some(f) => unsafe { f(fd, msg, flags) },
        None => sys(libc::SYS_recvmsg, [fd as i64, msg as i64, flags as i64, 0, 0, 0]) as libc::ssize_t,
    };
    if ret >= 0 {
        dilate_stamps(msg);
    }
    ret
}

/// # Safety
/// As `recvmmsg(2)`.
#[no_mangle]
pub unsafe extern "C" fn recvmmsg(
    fd: c_int,
    msgs: *mut libc::mmsghdr,
    n: c_uint,
    flags: c_int,
    timeout: *mut timespec,
) -> c_int {
    let _wait = crate::cpu::wait();
    type F = unsafe extern "C" fn(c_int, *mut libc::mmsghdr, c_uint, c_int, *mut timespec) -> c_int;
    let Some(f) = real!("recvmmsg", F) else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    let ret = match read(timeout).filter(|_| active()) {
        // SAFETY: forwarding the caller's arguments.
        None => unsafe { f(fd, msgs, n, flags, timeout) },
        Some(t) => {
            let p = params();
            let mut real = rel_real(&t, &p);
            // SAFETY: forwarding the caller's arguments with our timeout.
            let ret = unsafe { f(fd, msgs, n, flags, &raw mut real) };
            write(timeout, rel_virtual(&real, &p));
            ret
        }
    };
    for i in 0..usize::try_from(ret).unwrap_or(0) {
        // SAFETY: the kernel filled the first `ret` entries of the caller's array.
        dilate_stamps(unsafe { &raw mut (*msgs.add(i)).msg_hdr });
    }
    ret
}

// ---------------------------------------------------------------------------------------
// The generic syscall() entry (Rust's std waits through syscall(SYS_futex, …)).

const FUTEX_WAIT: i64 = 0;
const FUTEX_LOCK_PI: i64 = 6;
const FUTEX_WAIT_BITSET: i64 = 9;
const FUTEX_WAIT_REQUEUE_PI: i64 = 11;
const FUTEX_LOCK_PI2: i64 = 13;
const FUTEX_PRIVATE_FLAG: i64 = 128;
const FUTEX_CLOCK_REALTIME: i64 = 256;

/// `syscall(number, …)`. Declared with six fixed arguments: on x86_64 and aarch64 Linux,
/// variadic integer arguments are passed exactly like fixed ones, and extra arguments the
/// caller did not pass are ignored by the kernel for that call.
///
/// # Safety
/// As `syscall(2)`.
#[no_mangle]
pub unsafe extern "C" fn syscall(
    n: c_long,
    a1: c_long,
    a2: c_long,
    a3: c_long,
    a4: c_long,
    a5: c_long,
    a6: c_long,
) -> c_long {
    let args = [a1, a2, a3, a4, a5, a6];
    // SAFETY: the caller passed the arguments of system call `n`.
    if let Some(r) = unsafe { crate::exec::exec_syscall(n, args) } {
        return r;
    }
    if n == libc::SYS_clock_gettime {
        // SAFETY: the caller passed clock_gettime's arguments.
        return c_long::from(unsafe { clock_gettime(a1 as clockid_t, a2 as *mut timespec) });
    }
    if n == libc::SYS_clock_nanosleep {
        // SAFETY: the caller passed clock_nanosleep's arguments.
        let r = unsafe { clock_nanosleep(a1 as clockid_t, a2 as c_int, a3 as *const timespec, a4 as *mut timespec) };
        return if r == 0 {
            0
        } else {
            set_errno(r);
            -1
        };
    }
    if n == libc::SYS_nanosleep {
        // SAFETY: the caller passed nanosleep's arguments.
        return c_long::from(unsafe { nanosleep(a1 as *const timespec, a2 as *mut timespec) });
    }
    // A thread about to block pays for what it computed first (dropped after the call).
    let _wait = (n == libc::SYS_futex
        && matches!(
            a2 & !(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME),
            FUTEX_WAIT | FUTEX_WAIT_BITSET | FUTEX_LOCK_PI | FUTEX_LOCK_PI2
        ))
    .then(crate::cpu::wait);
    if n == libc::SYS_futex && a4 != 0 && active() {
        let op = a2 & !(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);
        let clock = if a2 & FUTEX_CLOCK_REALTIME != 0 { libc::CLOCK_REALTIME } else { libc::CLOCK_MONOTONIC };
        // The fourth argument is a timeout only for the waiting operations; for the others
        // (FUTEX_WAKE_OP, FUTEX_CMP_REQUEUE, …) it is an integer and must not be read.
        let timeout = || read(a4 as *const timespec);
        let converted = match op {
            FUTEX_WAIT => timeout().map(|t| rel_real(&t, &params())),
            FUTEX_WAIT_BITSET | FUTEX_WAIT_REQUEUE_PI | FUTEX_LOCK_PI2 => {
                timeout().map(|t| abs_real(clock, &t, &params()))
            }
            FUTEX_LOCK_PI => timeout().map(|t| abs_real(libc::CLOCK_REALTIME, &t, &params())),
            _ => None,
        };
        if let Some(real) = converted {
            let mut a = args;
            a[3] = &raw const real as c_long;
            return sys(n, a);
        }
    }
    sys(n, args)
}

// ---------------------------------------------------------------------------------------
// Optional: file timestamps (`DILATION_STAT=1`), as libfaketime offers.

fn dilate_stat(st: *mut libc::stat) {
    if DILATE_STAT.load(Relaxed) == 0 || !active() {
        return;
    }
    let Some(mut s) = read(st) else { return };
    let p = params();
    let conv = |sec: &mut i64, nsec: &mut i64| {
        let (a, b) = model::ns_ts(model::to_virtual(&p, Kind::Realtime, 0, model::ts_ns(*sec, *nsec)));
        *sec = a;
        *nsec = b;
    };
    conv(&mut s.st_atime, &mut s.st_atime_nsec);
    conv(&mut s.st_mtime, &mut s.st_mtime_nsec);
    conv(&mut s.st_ctime, &mut s.st_ctime_nsec);
    write(st, s);
}

macro_rules! stat_hook {
    ($name:ident, $sym:literal, ($($arg:ident: $ty:ty),*), $st:ident) => {
        /// # Safety
        /// As the libc function of the same name.
        #[no_mangle]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> c_int {
            type F = unsafe extern "C" fn($($ty),*) -> c_int;
            let Some(f) = real!($sym, F) else {
                set_errno(libc::ENOSYS);
                return -1;
            };
            // SAFETY: forwarding the caller's arguments.
            let r = unsafe { f($($arg),*) };
            if r == 0 {
                dilate_stat($st);
            }
            r
        }
    };
}

stat_hook!(stat, "stat", (path: *const c_char, st: *mut libc::stat), st);
stat_hook!(lstat, "lstat", (path: *const c_char, st: *mut libc::stat), st);
stat_hook!(fstat, "fstat", (fd: c_int, st: *mut libc::stat), st);
stat_hook!(fstatat, "fstatat", (dirfd: c_int, path: *const c_char, st: *mut libc::stat, flags: c_int), st);

/// # Safety
/// As `statx(2)`.
#[no_mangle]
pub unsafe extern "C" fn statx(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mask: c_uint,
    sx: *mut libc::statx,
) -> c_int {
    type F = unsafe extern "C" fn(c_int, *const c_char, c_int, c_uint, *mut libc::statx) -> c_int;
    let Some(f) = real!("statx", F) else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    // SAFETY: forwarding the caller's arguments.
    let r = unsafe { f(dirfd, path, flags, mask, sx) };
    if r == 0 && DILATE_STAT.load(Relaxed) == 1 && active() {
        if let Some(mut s) = read(sx) {
            let p = params();
            for t in [&mut s.stx_atime, &mut s.stx_btime, &mut s.stx_ctime, &mut s.stx_mtime] {
                let v = model::to_virtual(&p, Kind::Realtime, 0, model::ts_ns(t.tv_sec, i64::from(t.tv_nsec)));
                let (a, b) = model::ns_ts(v);
                t.tv_sec = a;
                t.tv_nsec = b as u32;
            }
            write(sx, s);
        }
    }
    r
}

// ---------------------------------------------------------------------------------------
// Start-up.

extern "C" fn constructor() {
    active();
}

/// Runs at load, before `main`; hooks called earlier (from other constructors) initialize
/// on first use instead.
#[used]
#[link_section = ".init_array"]
static CONSTRUCTOR: extern "C" fn() = constructor;
