//! The fast path's FFI edge: the bytes of the injected code (from symbols of
//! [`super::code`]'s `global_asm!`) and an in-process mapping of it ([`Local`]), through
//! which the tests run the very bytes the tracer injects. Every `unsafe` block of the fast
//! path is here.

extern "C" {
    static diorama_fastpath_start: u8;
    static diorama_fastpath_end: u8;
    static diorama_fastpath_clock_gettime: u8;
    static diorama_fastpath_gettimeofday: u8;
    static diorama_fastpath_time: u8;
}

/// The injected code and the offsets of its entry points.
#[derive(Clone, Copy, Debug)]
pub struct Code {
    pub bytes: &'static [u8],
    pub clock_gettime: usize,
    pub gettimeofday: usize,
    pub time: usize,
}

/// The code as assembled into this binary.
pub fn code() -> Code {
    let start = &raw const diorama_fastpath_start as usize;
    let end = &raw const diorama_fastpath_end as usize;
    let off = |p: *const u8| p as usize - start;
    // SAFETY: `diorama_fastpath_start..diorama_fastpath_end` delimit one contiguous,
    // initialised, read-only block of this binary's `.rodata` (one `global_asm!` section,
    // emitted in order), alive for the whole program.
    let bytes = unsafe { std::slice::from_raw_parts(start as *const u8, end - start) };
    Code {
        bytes,
        clock_gettime: off(&raw const diorama_fastpath_clock_gettime),
        gettimeofday: off(&raw const diorama_fastpath_gettimeofday),
        time: off(&raw const diorama_fastpath_time),
    }
}

/// The code mapped and run in this process, for the tests of the very bytes injected.
#[cfg(test)]
mod local {
    use std::ffi::c_void;

    use super::super::layout::{Data, LayoutError, PAGE};
    use super::*;

    /// Errors of mapping the code in this process.
    #[derive(Debug, thiserror::Error)]
    pub enum LocalError {
        #[error("map the fast path in this process")]
        Map(#[source] std::io::Error),
        #[error("build the data page")]
        Layout(#[from] LayoutError),
    }

    /// The code, its data page and a writable control page mapped in this process, laid out as
    /// in a traced process (code, data one page later, control one page after that).
    #[derive(Debug)]
    pub struct Local {
        base: std::ptr::NonNull<c_void>,
        code: Code,
    }

    type ClockGettime = unsafe extern "C" fn(i32, *mut libc::timespec) -> i32;
    type Gettimeofday = unsafe extern "C" fn(*mut libc::timeval, *mut c_void) -> i32;
    type Time = unsafe extern "C" fn(*mut i64) -> i64;

    impl Local {
        /// Maps the pages; `data.control` is replaced by the local control page when it is
        /// `Some` (the page starts zeroed: fill it with [`Local::set_control`]).
        pub fn new(mut data: Data) -> Result<Self, LocalError> {
            let os = |r: i32| if r == 0 { Ok(()) } else { Err(LocalError::Map(std::io::Error::last_os_error())) };
            // SAFETY: a fresh private anonymous mapping; nothing else refers to it.
            let raw = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    3 * PAGE,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if raw == libc::MAP_FAILED {
                return Err(LocalError::Map(std::io::Error::last_os_error()));
            }
            let base = std::ptr::NonNull::new(raw).ok_or(LocalError::Map(std::io::Error::other("null mapping")))?;
            let local = Self { base, code: code() };
            let at = raw as u64;
            if data.control.is_some() {
                data.control = Some(at + 2 * PAGE as u64);
            }
            let page = data.bytes(at + PAGE as u64)?;
            // SAFETY: both copies stay inside the 3-page mapping made above (the code is
            // smaller than a page, checked by the tests) and do not overlap their sources.
            unsafe {
                let dst = raw.cast::<u8>();
                std::ptr::copy_nonoverlapping(local.code.bytes.as_ptr(), dst, local.code.bytes.len().min(PAGE));
                std::ptr::copy_nonoverlapping(page.as_ptr(), dst.add(PAGE), PAGE);
            }
            // SAFETY: changes the protection of pages of our own mapping, which only `local`
            // refers to.
            unsafe {
                os(libc::mprotect(raw, PAGE, libc::PROT_READ | libc::PROT_EXEC))?;
                os(libc::mprotect(raw.cast::<u8>().add(PAGE).cast(), PAGE, libc::PROT_READ))?;
            }
            Ok(local)
        }

        fn entry(&self, off: usize) -> *const c_void {
            // SAFETY: `off` is an entry offset of the code, inside the first page.
            unsafe { self.base.as_ptr().cast::<u8>().add(off).cast() }
        }

        /// Writes word `off` of the local control page.
        pub fn set_control(&self, off: usize, v: u64) {
            assert!(off % 8 == 0 && off < PAGE);
            // SAFETY: an aligned word of the third (writable) page of our mapping; the injected
            // code only reads it or adds to it atomically, and never concurrently with this
            // thread unless the caller shares `self` (then the word is updated with a plain
            // store, as the harness's `pwrite` does to the real page).
            unsafe {
                let p = self.base.as_ptr().cast::<u8>().add(2 * PAGE + off).cast::<u64>();
                std::ptr::write_volatile(p, v);
            }
        }

        /// Reads word `off` of the local control page.
        pub fn control(&self, off: usize) -> u64 {
            assert!(off % 8 == 0 && off < PAGE);
            // SAFETY: as in `set_control`, a read.
            unsafe { std::ptr::read_volatile(self.base.as_ptr().cast::<u8>().add(2 * PAGE + off).cast::<u64>()) }
        }

        /// Calls the injected `clock_gettime`.
        pub fn clock_gettime(&self, clock: i32, ts: &mut libc::timespec) -> i32 {
            // SAFETY: the entry is SysV `int clock_gettime(clockid_t, struct timespec *)` code
            // of our own mapping; its data page names an original that follows the same ABI.
            unsafe {
                let f: ClockGettime = std::mem::transmute(self.entry(self.code.clock_gettime));
                f(clock, ts)
            }
        }

        /// Calls the injected `gettimeofday` (`tz`: a `struct timezone`, two ints).
        pub fn gettimeofday(&self, tv: Option<&mut libc::timeval>, tz: Option<&mut [i32; 2]>) -> i32 {
            let tv = tv.map_or(std::ptr::null_mut(), |t| t as *mut libc::timeval);
            let tz = tz.map_or(std::ptr::null_mut(), |t| (t as *mut [i32; 2]).cast::<c_void>());
            // SAFETY: as for `clock_gettime`; `tv` is null or a valid buffer, `tz` is the
            // caller's (null or a `struct timezone`).
            unsafe {
                let f: Gettimeofday = std::mem::transmute(self.entry(self.code.gettimeofday));
                f(tv, tz)
            }
        }

        /// Calls the injected `time`.
        pub fn time(&self, t: Option<&mut i64>) -> i64 {
            let t = t.map_or(std::ptr::null_mut(), |t| t as *mut i64);
            // SAFETY: as for `clock_gettime`; `t` is null or valid.
            unsafe {
                let f: Time = std::mem::transmute(self.entry(self.code.time));
                f(t)
            }
        }
    }

    impl Drop for Local {
        fn drop(&mut self) {
            // SAFETY: unmaps the mapping made in `new`, which nothing refers to any more.
            unsafe {
                libc::munmap(self.base.as_ptr(), 3 * PAGE);
            }
        }
    }

    /// An address as the original-entry field of a data page: `f`'s.
    pub fn address_of_clock_gettime(f: ClockGettime) -> u64 {
        f as usize as u64
    }

    /// As [`address_of_clock_gettime`] for a `gettimeofday`.
    pub fn address_of_gettimeofday(f: Gettimeofday) -> u64 {
        f as usize as u64
    }
}

#[cfg(test)]
pub use local::*;

#[cfg(test)]
mod tests {
    use std::ffi::c_void;

    use super::super::layout::{Data, PAGE};
    use super::*;
    use crate::model::{self, Kind, Params};
    use dilation::control::{OFF_EPOCH_REAL, OFF_EPOCH_VIRT, OFF_ERRORS, OFF_SEQ, OFF_STEPS, OFF_TDF};
    use std::cell::Cell;

    thread_local! {
        /// What the fake original `clock_gettime` returns: (sec, nsec, return code); and
        /// the clock it was last asked for.
        static FAKE: Cell<(i64, i64, i32)> = const { Cell::new((0, 0, 0)) };
        static ASKED: Cell<i32> = const { Cell::new(-100) };
        static TZ_CALLS: Cell<u32> = const { Cell::new(0) };
    }

    unsafe extern "C" fn fake_clock_gettime(clock: i32, ts: *mut libc::timespec) -> i32 {
        ASKED.set(clock);
        let (s, ns, r) = FAKE.get();
        if !ts.is_null() {
            // SAFETY: the code passes the caller's (valid) buffer or its own stack slot.
            unsafe { *ts = libc::timespec { tv_sec: s, tv_nsec: ns } };
        }
        r
    }

    unsafe extern "C" fn fake_gettimeofday(tv: *mut libc::timeval, tz: *mut c_void) -> i32 {
        assert!(tv.is_null(), "the injected code asks the original for the time zone only");
        if !tz.is_null() {
            TZ_CALLS.set(TZ_CALLS.get() + 1);
            // SAFETY: the caller's `struct timezone` (two ints).
            unsafe { *tz.cast::<[i32; 2]>() = [-60, 0] };
        }
        0
    }

    /// A small deterministic generator (xorshift), so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn range(&mut self, lo: i64, hi: i64) -> i64 {
            lo + (self.next() % (hi - lo) as u64) as i64
        }
    }

    fn data(initial: Params, offsets: [i64; 12], control: bool) -> Data {
        Data {
            orig_clock_gettime: address_of_clock_gettime(fake_clock_gettime),
            orig_gettimeofday: address_of_gettimeofday(fake_gettimeofday),
            control: control.then_some(0),
            initial,
            offsets,
            control_path: None,
        }
    }

    fn publish(l: &Local, seq: u64, p: &Params) {
        l.set_control(OFF_SEQ, seq);
        l.set_control(OFF_TDF, p.tdf.to_bits());
        l.set_control(OFF_EPOCH_REAL, p.epoch_real as u64);
        l.set_control(OFF_EPOCH_VIRT, p.epoch_virt as u64);
        l.set_control(OFF_STEPS, p.steps as u64);
    }

    fn read(l: &Local, clock: i32, x: i64) -> (i32, i64, i64) {
        FAKE.set((x.div_euclid(1_000_000_000), x.rem_euclid(1_000_000_000), 0));
        let mut ts = libc::timespec { tv_sec: -1, tv_nsec: -1 };
        let r = l.clock_gettime(clock, &mut ts);
        (r, ts.tv_sec, ts.tv_nsec)
    }

    fn expected(p: &Params, clock: i32, off: i64, x: i64) -> (i64, i64) {
        model::ns_ts(model::to_virtual(p, model::kind(clock), off, x))
    }

    #[test]
    fn the_code_fits_in_a_page() {
        let c = code();
        assert!(c.bytes.len() < PAGE, "{} bytes", c.bytes.len());
        assert!(c.clock_gettime < c.bytes.len() && c.gettimeofday < c.bytes.len() && c.time < c.bytes.len());
    }

    #[test]
    fn the_injected_arithmetic_is_the_models_over_many_inputs() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..200 {
            let tdf = match round % 5 {
                0 => [1.0, 10.0, 4.0, 0.5, 3.0][round / 5 % 5],
                1 => 2f64.powi(rng.range(-14, 20) as i32),
                _ => rng.range(1, 1_000_000) as f64 / rng.range(1, 10_000) as f64,
            };
            let er = rng.range(1_000_000_000_000_000_000, 1_900_000_000_000_000_000);
            let ev = er + rng.range(-1_000_000_000_000_000_000, 1_000_000_000_000_000_000);
            let d0 = rng.range(-1_000_000_000_000_000_000, 1_000_000_000_000_000_000);
            let steps = if round % 3 == 0 { 0 } else { rng.range(-100_000_000_000_000, 100_000_000_000_000) };
            let p = Params { tdf, mult: model::mult_of(tdf), epoch_real: er, epoch_virt: ev, steps, d0 };
            let mut offsets = [0i64; 12];
            for o in &mut offsets {
                *o = rng.range(-1_800_000_000_000_000_000, 0);
            }
            // Half the rounds through the control page, half through the start-up block.
            let via_control = round % 2 == 0;
            let init = if via_control {
                Params { tdf: 7.0, epoch_real: 1, epoch_virt: 2, steps: 0, ..p }
            } else {
                Params { steps: 0, ..p }
            };
            let p = if via_control { p } else { Params { steps: 0, ..p } };
            let l = Local::new(data(init, offsets, via_control)).unwrap();
            if via_control {
                publish(&l, 2 * round as u64, &p);
            }
            for _ in 0..200 {
                let clock = rng.range(-3, 14) as i32;
                let off = if (0..12).contains(&clock) { offsets[clock as usize] } else { 0 };
                // Real readings around the epoch, within ±50 years of it.
                let x = er + off + rng.range(-1_600_000_000_000_000_000, 1_600_000_000_000_000_000);
                let x = x.max(0);
                let (r, s, ns) = read(&l, clock, x);
                assert_eq!(r, 0);
                let want =
                    if model::kind(clock) == Kind::Passthrough { model::ns_ts(x) } else { expected(&p, clock, off, x) };
                assert_eq!((s, ns), want, "tdf {tdf} clock {clock} x {x} params {p:?} off {off}");
                if (0..12).contains(&clock) {
                    assert_eq!(ASKED.get(), clock, "the original was asked for the caller's clock");
                }
            }
            // gettimeofday and time over CLOCK_REALTIME.
            let x = er + rng.range(-1_000_000_000_000_000, 1_000_000_000_000_000);
            FAKE.set((x.div_euclid(1_000_000_000), x.rem_euclid(1_000_000_000), 0));
            let (vs, vns) = expected(&p, 0, 0, x);
            let mut tv = libc::timeval { tv_sec: 0, tv_usec: 0 };
            assert_eq!(l.gettimeofday(Some(&mut tv), None), 0);
            assert_eq!((tv.tv_sec, tv.tv_usec), (vs, vns / 1000));
            let mut t = 0;
            assert_eq!(l.time(Some(&mut t)), vs);
            assert_eq!(t, vs);
            assert_eq!(l.time(None), vs);
        }
    }

    #[test]
    fn tdf_changes_and_clock_steps_through_the_seqlock_are_followed_at_once() {
        let er = 1_700_000_000_000_000_000;
        let p = Params { tdf: 10.0, mult: model::mult_of(10.0), epoch_real: er, epoch_virt: er, steps: 0, d0: 0 };
        let mut offsets = [0i64; 12];
        offsets[1] = -1_699_000_000_000_000_000;
        let l = Local::new(data(p, offsets, true)).unwrap();
        publish(&l, 2, &p);
        let x = er + 10_000_000_000;
        assert_eq!(read(&l, 0, x).1, er / 1_000_000_000 + 1);
        // A TDF change as `ControlFile::set_tdf` makes it: epoch moved to now.
        let q = Params { tdf: 2.0, mult: model::mult_of(2.0), epoch_real: x, epoch_virt: er + 1_000_000_000, ..p };
        publish(&l, 4, &q);
        let (_, s, ns) = read(&l, 0, x + 4_000_000_000);
        assert_eq!((s, ns), model::ns_ts(er + 3_000_000_000));
        let mono = read(&l, 1, x + offsets[1] + 4_000_000_000);
        assert_eq!((mono.1, mono.2), expected(&q, 1, offsets[1], x + offsets[1] + 4_000_000_000));
        // A step of −5 s moves the wall clock only.
        let stepped = Params { epoch_virt: q.epoch_virt - 5_000_000_000, steps: -5_000_000_000, ..q };
        publish(&l, 6, &stepped);
        assert_eq!(read(&l, 0, x + 4_000_000_000).1, model::ns_ts(er - 2_000_000_000).0);
        let mono2 = read(&l, 1, x + offsets[1] + 4_000_000_000);
        assert_eq!((mono2.1, mono2.2), (mono.1, mono.2), "monotonic clocks ignore steps");
        assert_eq!(l.control(OFF_ERRORS), 0);
    }

    #[test]
    fn a_torn_control_page_falls_back_to_the_start_up_parameters_and_counts_an_error() {
        let er = 1_700_000_000_000_000_000;
        let init = Params { tdf: 10.0, mult: model::mult_of(10.0), epoch_real: er, epoch_virt: er, steps: 0, d0: 0 };
        let l = Local::new(data(init, [0; 12], true)).unwrap();
        publish(&l, 2, &Params { tdf: 2.0, ..init });
        l.set_control(OFF_SEQ, 3); // a writer that never finishes
        let x = er + 20_000_000_000;
        assert_eq!(read(&l, 0, x).1, er / 1_000_000_000 + 2, "TDF 10 of the start-up block");
        assert_eq!(l.control(OFF_ERRORS), 1);
        // An invalid TDF (NaN, 0, ∞, below 2⁻¹⁴) is treated as torn too.
        for bad in [f64::NAN, 0.0, f64::INFINITY, 1e-5] {
            l.set_control(OFF_SEQ, 4);
            l.set_control(OFF_TDF, bad.to_bits());
            assert_eq!(read(&l, 0, x).1, er / 1_000_000_000 + 2, "tdf {bad}");
        }
        assert_eq!(l.control(OFF_ERRORS), 5);
    }

    #[test]
    fn errors_cpu_clocks_and_null_buffers_go_to_the_original() {
        let init = Params { tdf: 10.0, mult: model::mult_of(10.0), epoch_real: 0, epoch_virt: 0, steps: 0, d0: 0 };
        let l = Local::new(data(init, [0; 12], false)).unwrap();
        FAKE.set((5, 6, -22));
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        assert_eq!(l.clock_gettime(1, &mut ts), -22, "the original's error is returned");
        assert_eq!((ts.tv_sec, ts.tv_nsec), (5, 6), "and its buffer left as the original wrote it");
        FAKE.set((5, 6, 0));
        assert_eq!(l.clock_gettime(2, &mut ts), 0);
        assert_eq!((ts.tv_sec, ts.tv_nsec), (5, 6), "CPU time is not dilated");
        assert_eq!(l.time(None), 0, "5 s real from the epoch at TDF 10 is 0 s");
        // gettimeofday lets the original fill the time zone.
        let mut tz = [0i32; 2];
        TZ_CALLS.set(0);
        assert_eq!(l.gettimeofday(None, Some(&mut tz)), 0);
        assert_eq!((tz, TZ_CALLS.get()), ([-60, 0], 1));
        FAKE.set((5, 6, -1));
        assert_eq!(l.time(None), -1);
    }

    #[test]
    fn over_this_kernels_vdso_time_is_dilated() {
        let (base, bytes) = crate::vdso::own_image().unwrap();
        let img = crate::vdso::Image::parse(&bytes).unwrap();
        let r = img.redirects().unwrap();
        let real_cgt = base.wrapping_add(img.address_of(r[0].value));
        let real_gtod = base.wrapping_add(img.address_of(r[1].value));
        let now = dilation::realtime_ns();
        let er = now - 10_000_000_000;
        let init = Params { tdf: 10.0, mult: model::mult_of(10.0), epoch_real: er, epoch_virt: er, steps: 0, d0: 0 };
        let d = Data { orig_clock_gettime: real_cgt, orig_gettimeofday: real_gtod, ..data(init, [0; 12], false) };
        let l = Local::new(d).unwrap();
        let before = dilation::realtime_ns();
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        assert_eq!(l.clock_gettime(0, &mut ts), 0);
        let after = dilation::realtime_ns();
        let v = model::ts_ns(ts.tv_sec, ts.tv_nsec);
        let lo = model::to_virtual(&init, Kind::Realtime, 0, before);
        let hi = model::to_virtual(&init, Kind::Realtime, 0, after);
        assert!((lo..=hi).contains(&v), "{lo} ≤ {v} ≤ {hi}");
        assert!(v < now - 8_000_000_000, "10 s real since the epoch read as 1 s");
        let mut tv = libc::timeval { tv_sec: 0, tv_usec: 0 };
        let mut tz = [0i32; 2];
        assert_eq!(l.gettimeofday(Some(&mut tv), Some(&mut tz)), 0);
        assert!((tv.tv_sec - ts.tv_sec).abs() <= 1);
    }
}
