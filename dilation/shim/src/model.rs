//! The shim's time arithmetic: plain integers and floats, no FFI, no allocation.
//!
//! For a clock `c` whose real reading is `x` (ns), with TDF `t`, epoch `(er, ev)` on
//! CLOCK_REALTIME, clock steps `s` (clock faults, realtime only) and `off_c` the offset of
//! `c` from CLOCK_REALTIME sampled at start-up:
//!
//! ```text
//! realtime family:  v = ev + (x − er) / t
//! other clocks:     v = (ev − s − d0) + (x − off_c − er) / t + off_c
//! ```
//!
//! where `d0 = ev₀ − er₀` is the wall-clock offset of the *initial* epoch (from the
//! environment, identical in every process of a run). So every clock runs `t` times slower,
//! virtual CLOCK_MONOTONIC equals real CLOCK_MONOTONIC at the start whatever virtual date
//! the run pretends, TDF changes (which move `er`, `ev`) keep it continuous, and a backward
//! step of the realtime clock never makes the monotonic clocks go back. The inverse maps a
//! virtual deadline to the real one.

/// A consistent snapshot of the parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    pub tdf: f64,
    /// `2^48 / tdf`: the hot path multiplies in fixed point instead of dividing.
    pub mult: i64,
    pub epoch_real: i64,
    pub epoch_virt: i64,
    pub steps: i64,
    /// `ev₀ − er₀` of the initial epoch.
    pub d0: i64,
}

/// Clock ids (Linux).
pub const CLOCK_REALTIME: i32 = 0;
pub const CLOCK_MONOTONIC: i32 = 1;
pub const CLOCK_MONOTONIC_RAW: i32 = 4;
pub const CLOCK_REALTIME_COARSE: i32 = 5;
pub const CLOCK_MONOTONIC_COARSE: i32 = 6;
pub const CLOCK_BOOTTIME: i32 = 7;
pub const CLOCK_REALTIME_ALARM: i32 = 8;
pub const CLOCK_BOOTTIME_ALARM: i32 = 9;
pub const CLOCK_TAI: i32 = 11;
/// Highest clock id handled (array size - 1).
pub const MAX_CLOCK: usize = 11;

/// How a clock is treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Wall clock: follows the epoch and clock steps.
    Realtime,
    /// Monotonic-like: dilated, never stepped.
    Steady,
    /// CPU-time and unknown clocks: not dilated (a node with 1/t of a CPU for t·s real
    /// seconds used s CPU-seconds, exactly what the original machine would have used).
    Passthrough,
}

pub fn kind(clock: i32) -> Kind {
    match clock {
        CLOCK_REALTIME | CLOCK_REALTIME_COARSE | CLOCK_REALTIME_ALARM => Kind::Realtime,
        CLOCK_MONOTONIC
        | CLOCK_MONOTONIC_RAW
        | CLOCK_MONOTONIC_COARSE
        | CLOCK_BOOTTIME
        | CLOCK_BOOTTIME_ALARM
        | CLOCK_TAI => Kind::Steady,
        _ => Kind::Passthrough,
    }
}

/// Virtual ns on clock `kind` for real reading `x`; `off` is the clock's offset from realtime.
pub fn to_virtual(p: &Params, kind: Kind, off: i64, x: i64) -> i64 {
    match kind {
        Kind::Realtime => p.epoch_virt + scale_down(x - p.epoch_real, p.mult),
        Kind::Steady => p.epoch_virt - p.steps - p.d0 + scale_down(x - off - p.epoch_real, p.mult) + off,
        Kind::Passthrough => x,
    }
}

/// Real ns on the clock at which it reads virtual `v` (rounded up: never wake early).
pub fn to_real(p: &Params, kind: Kind, off: i64, v: i64) -> i64 {
    match kind {
        Kind::Realtime => p.epoch_real + mul_up(v - p.epoch_virt, p.tdf),
        Kind::Steady => p.epoch_real + off + mul_up(v - off - p.epoch_virt + p.steps + p.d0, p.tdf),
        Kind::Passthrough => v,
    }
}

/// Fixed-point shift of [`Params::mult`].
pub const MULT_SHIFT: u32 = 48;

/// `2^48 / tdf`, for [`Params::mult`]; valid for TDFs from 2^-14 up.
pub fn mult_of(tdf: f64) -> i64 {
    ((1u64 << MULT_SHIFT) as f64 / tdf).round() as i64
}

/// `d / tdf` as `(d × 2^48/tdf) >> 48` in 128 bits: exact to ~3.5e-15 relative, floored
/// (monotonic in `d`, which is what clocks need), and cheaper than a float round trip.
#[inline]
fn scale_down(d: i64, mult: i64) -> i64 {
    ((i128::from(d) * i128::from(mult)) >> MULT_SHIFT) as i64
}

fn mul_up(d: i64, tdf: f64) -> i64 {
    let r = (d as f64 * tdf).ceil();
    if r >= i64::MAX as f64 {
        i64::MAX
    } else if r <= i64::MIN as f64 {
        i64::MIN
    } else {
        r as i64
    }
}

/// A relative virtual wait in ns → real ns (rounded up, saturating).
pub fn real_wait(virt_ns: i64, tdf: f64) -> i64 {
    if virt_ns <= 0 {
        virt_ns
    } else {
        mul_up(virt_ns, tdf)
    }
}

/// A relative real remainder in ns → virtual ns.
pub fn virtual_wait(real_ns: i64, tdf: f64) -> i64 {
    if real_ns <= 0 {
        real_ns
    } else {
        (real_ns as f64 / tdf).ceil() as i64
    }
}

/// A `poll`-style millisecond timeout (negative = forever, 0 = no wait) → real ms.
pub fn real_ms(ms: i32, tdf: f64) -> i32 {
    if ms <= 0 {
        return ms;
    }
    let r = (f64::from(ms) * tdf).ceil();
    if r >= f64::from(i32::MAX) {
        i32::MAX
    } else {
        r as i32
    }
}

/// Seconds and nanoseconds → ns, saturating.
pub fn ts_ns(sec: i64, nsec: i64) -> i64 {
    sec.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// ns → (seconds, nanoseconds) with 0 ≤ nanoseconds < 1e9.
#[inline]
pub fn ns_ts(ns: i64) -> (i64, i64) {
    if ns >= 0 {
        // The common case, and division by a constant of a non-negative value is a
        // multiply and a shift.
        let n = ns as u64;
        ((n / 1_000_000_000) as i64, (n % 1_000_000_000) as i64)
    } else {
        (ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000))
    }
}

/// Parses a decimal float without allocating (`DILATION_TDF`).
pub fn parse_f64(s: &[u8]) -> Option<f64> {
    let mut i = 0;
    let neg = s.first() == Some(&b'-');
    if neg || s.first() == Some(&b'+') {
        i = 1;
    }
    let mut int: f64 = 0.0;
    let mut any = false;
    while i < s.len() && s[i].is_ascii_digit() {
        int = int * 10.0 + f64::from(s[i] - b'0');
        i += 1;
        any = true;
    }
    if i < s.len() && s[i] == b'.' {
        i += 1;
        let mut scale = 0.1;
        while i < s.len() && s[i].is_ascii_digit() {
            int += f64::from(s[i] - b'0') * scale;
            scale /= 10.0;
            i += 1;
            any = true;
        }
    }
    if i < s.len() && (s[i] == b'e' || s[i] == b'E') {
        let exp = parse_i64(&s[i + 1..])?;
        int *= 10f64.powi(i32::try_from(exp).ok()?);
        i = s.len();
    }
    if !any || i != s.len() {
        return None;
    }
    Some(if neg { -int } else { int })
}

/// Parses a decimal integer without allocating.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(i64::from(c - b'0'))?;
    }
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Params = Params {
        tdf: 10.0,
        mult: 28_147_497_671_066,
        epoch_real: 1_000_000_000,
        epoch_virt: 1_000_000_000,
        steps: 0,
        d0: 0,
    };

    #[test]
    fn realtime_runs_t_times_slower_from_the_epoch() {
        assert_eq!(to_virtual(&P, Kind::Realtime, 0, 1_000_000_000), 1_000_000_000);
        assert_eq!(to_virtual(&P, Kind::Realtime, 0, 11_000_000_000), 2_000_000_000);
        assert_eq!(to_real(&P, Kind::Realtime, 0, 2_000_000_000), 11_000_000_000);
    }

    #[test]
    fn steady_clocks_start_at_their_real_value_and_ignore_steps() {
        let off = -900_000_000; // monotonic is 0.9 s behind realtime
        let mono_at_epoch = P.epoch_real + off;
        assert_eq!(to_virtual(&P, Kind::Steady, off, mono_at_epoch), mono_at_epoch);
        assert_eq!(to_virtual(&P, Kind::Steady, off, mono_at_epoch + 10_000), mono_at_epoch + 1_000);
        let stepped = Params { epoch_virt: P.epoch_virt - 5_000_000_000, steps: -5_000_000_000, ..P };
        assert_eq!(to_virtual(&stepped, Kind::Steady, off, mono_at_epoch + 10_000), mono_at_epoch + 1_000);
        assert_eq!(to_virtual(&stepped, Kind::Realtime, 0, P.epoch_real), P.epoch_virt - 5_000_000_000);
        for v in [mono_at_epoch, mono_at_epoch + 123_456_789] {
            let x = to_real(&stepped, Kind::Steady, off, v);
            assert!((to_virtual(&stepped, Kind::Steady, off, x) - v).abs() <= 1);
        }
    }

    #[test]
    fn a_virtual_date_far_from_the_real_one_does_not_move_monotonic_clocks() {
        let d0 = 1_700_000_000_000_000_000 - P.epoch_real;
        let p = Params { epoch_virt: P.epoch_real + d0, d0, ..P };
        let off = -900_000_000;
        let mono_at_epoch = P.epoch_real + off;
        assert_eq!(to_virtual(&p, Kind::Steady, off, mono_at_epoch), mono_at_epoch);
        assert_eq!(to_virtual(&p, Kind::Realtime, 0, P.epoch_real), 1_700_000_000_000_000_000);
        let x = to_real(&p, Kind::Steady, off, mono_at_epoch + 5_000);
        assert_eq!(x, mono_at_epoch + 50_000);
    }

    #[test]
    fn fixed_point_matches_division_over_long_runs() {
        for tdf in [0.5, 1.0, 3.0, 4.0, 10.0, 1000.0] {
            let p = Params { tdf, mult: mult_of(tdf), ..P };
            for d in [0i64, 1, 999, 1_000_000_007, 86_400_000_000_000, 30 * 86_400_000_000_000] {
                let exact = (d as f64 / tdf).floor() as i64;
                let got = to_virtual(&p, Kind::Realtime, 0, P.epoch_real + d) - P.epoch_virt;
                assert!((got - exact).abs() <= 1 + (d as f64 * 1e-14) as i64, "tdf {tdf} d {d}: {got} vs {exact}");
            }
        }
        assert_eq!(mult_of(10.0), P.mult);
    }

    #[test]
    fn cpu_clocks_pass_through() {
        assert_eq!(kind(2), Kind::Passthrough);
        assert_eq!(kind(3), Kind::Passthrough);
        assert_eq!(kind(-6), Kind::Passthrough);
        assert_eq!(to_virtual(&P, Kind::Passthrough, 0, 42), 42);
    }

    #[test]
    fn waits_scale_and_never_shorten() {
        assert_eq!(real_wait(1_000, 10.0), 10_000);
        assert_eq!(real_wait(0, 10.0), 0);
        assert_eq!(real_wait(i64::MAX / 2, 10.0), i64::MAX);
        assert_eq!(virtual_wait(10_001, 10.0), 1_001);
        assert_eq!(real_ms(-1, 10.0), -1);
        assert_eq!(real_ms(0, 10.0), 0);
        assert_eq!(real_ms(7, 2.5), 18);
        assert_eq!(real_ms(i32::MAX, 10.0), i32::MAX);
        assert_eq!(real_wait(1_000, 0.5), 500);
    }

    #[test]
    fn timespec_conversions() {
        assert_eq!(ns_ts(1_500_000_000), (1, 500_000_000));
        assert_eq!(ns_ts(-1), (-1, 999_999_999));
        assert_eq!(ts_ns(2, 5), 2_000_000_005);
    }

    #[test]
    fn parsing_without_allocation() {
        assert_eq!(parse_f64(b"10"), Some(10.0));
        assert_eq!(parse_f64(b"0.25"), Some(0.25));
        assert_eq!(parse_f64(b"1e1"), Some(10.0));
        assert_eq!(parse_f64(b"x"), None);
        assert_eq!(parse_f64(b""), None);
        assert_eq!(parse_i64(b"-1763822000000000000"), Some(-1_763_822_000_000_000_000));
        assert_eq!(parse_i64(b"12a"), None);
    }
}
