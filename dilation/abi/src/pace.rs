//! CPU pacing arithmetic: how long a thread must wait so that its CPU bursts take, in
//! virtual time, as long as they would on the original machine.
//!
//! Shared by both pacers: the shim's, in each thread (`dilation/shim/src/cpu.rs`), and the
//! trap's, in the tracer (`dilation/trap/src/pacer.rs`); a node mixing shim and trap
//! processes pays into one ledger ([`charge_ledger`]) with the same arithmetic.
//!
//! A node with `cpus: c` perceives, per thread, a core of speed `s = min(1, c)` (in host
//! cores). At TDF `t`, one nanosecond of CPU work must therefore take `t / s` real
//! nanoseconds: the thread runs for a slice of CPU, then waits `(t/s − 1)` times as long.
//! A CFS quota only bounds the *average* over a period (≥ 1 ms, enforced at the scheduler
//! tick), so a short burst would run `t/s` times too fast; pacing bounds the speed of every
//! burst down to the pacing quantum.
//!
//! # Design
//! The thread's debt is kept as an absolute real-time *target*: the instant at which the
//! CPU it has used so far would be done on a machine of the perceived speed. At each pay
//! point (a signal after every quantum of CPU, and before the thread emits output or blocks)
//! the thread sleeps until the target. Two rules make bursts exact despite late wake-ups:
//! - **chaining:** while the thread ran without blocking since it last woke, the next target
//!   extends the previous one, so a sleep that woke late is refunded by the next (up to
//!   [`Tuning::credit_cap_ns`]);
//! - **new bursts:** after the thread blocked (or was kept off the CPU) for longer than
//!   [`Tuning::chain_gap_ns`], the burst starts afresh at the moment its CPU began.
//!
//! The CPU spent paying (clock reads, the sleep call) is not charged: the original machine
//! would not have spent it.
//!
//! # Limitations
//! The CPU a thread uses after its last pay point before it blocks without passing through
//! a hooked call is not paced (at most one quantum per burst).

use core::sync::atomic::{AtomicU64, Ordering::*};

/// How finely pacing follows the debt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuning {
    /// A thread that started its current CPU within this long after it last woke is still in
    /// the same burst.
    pub chain_gap_ns: i64,
    /// The most oversleep a later sleep of the same burst may refund.
    pub credit_cap_ns: i64,
    /// Debts shorter than this are carried, not slept.
    pub min_sleep_ns: i64,
}

impl Tuning {
    pub const DEFAULT: Tuning = Tuning { chain_gap_ns: 50_000, credit_cap_ns: 500_000, min_sleep_ns: 2_000 };
}

/// Per-thread pacing state (kept in thread-local storage by the hooks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pace {
    /// The thread's CPU time when it last settled (ns).
    pub last_cpu: i64,
    /// Real monotonic instant at which the CPU used so far is paid for.
    pub target: i64,
    /// Real monotonic instant at which the thread last left a pay point.
    pub woke: i64,
    pub started: bool,
}

impl Pace {
    pub const NEW: Pace = Pace { last_cpu: 0, target: 0, woke: 0, started: false };

    /// A burst that starts now, owing nothing.
    pub fn fresh(cpu: i64, now: i64) -> Pace {
        Pace { last_cpu: cpu, target: now, woke: now, started: true }
    }

    /// The thread is at a pay point with CPU time `cpu` at real monotonic time `now`; with
    /// `stretch` real ns owed per ns of CPU (see [`stretch`]). Returns the real monotonic
    /// instant to sleep until, if the debt is worth a sleep.
    #[cfg(test)]
    fn due(&mut self, cpu: i64, now: i64, stretch: f64, t: &Tuning) -> Option<i64> {
        self.charge(cpu, now, stretch, t)?;
        self.sleep_until(now, t)
    }

    /// Charges the CPU used since the thread last settled and moves its target; returns
    /// what the node-wide ledger needs (see [`ledger_after`]), or `None` when nothing is owed.
    pub fn charge(&mut self, cpu: i64, now: i64, stretch: f64, t: &Tuning) -> Option<Charge> {
        if !self.started || cpu < self.last_cpu {
            // First pay point of a new thread (or of a forked child, whose CPU clock started
            // again at zero): all its CPU so far is its first burst. Starting afresh here
            // let every new thread run its first quantum unpaced.
            *self = Pace::fresh(0, now - cpu);
        }
        let used = cpu - self.last_cpu;
        if used <= 0 {
            return None;
        }
        let began = now - used;
        let base =
            if began - self.woke <= t.chain_gap_ns { self.target.max(self.woke - t.credit_cap_ns) } else { began };
        self.target = base.saturating_add((used as f64 * stretch) as i64);
        Some(Charge { base, used })
    }

    /// The instant to sleep until at `now`, if the debt is worth a sleep.
    pub fn sleep_until(&self, now: i64, t: &Tuning) -> Option<i64> {
        (self.target - now > t.min_sleep_ns).then_some(self.target)
    }

    /// Leaves a pay point: `cpu` is the thread's CPU time now (after any sleep), `now` the
    /// real monotonic time.
    pub fn settle(&mut self, cpu: i64, now: i64) {
        self.last_cpu = cpu;
        self.woke = now;
    }

    /// The node's ledger is later than this thread's own target: the thread waits for it,
    /// and that wait is not oversleep to refund later.
    pub fn defer_to(&mut self, ledger: i64) {
        self.target = self.target.max(ledger);
    }
}

/// A thread's charge at a pay point: `used` ns of CPU, counted from `base` (its chained
/// target, or the burst's start).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Charge {
    pub base: i64,
    pub used: i64,
}

/// The node-wide ledger after a thread's charge: the real instant at which the node's
/// perceived cores would have done all the CPU its threads used. A node of `c` cores at TDF
/// `t` works `used` off in `used × t / c` real ns (`node_stretch`), from whichever is later,
/// the ledger or the charge's base: idle cores do not save up. With one thread computing,
/// the ledger follows that thread's own target; with more threads than cores, each one's
/// charge lands after the others', so they share the cores as on the original machine.
pub fn ledger_after(ledger: i64, charge: Charge, node_stretch: f64) -> i64 {
    ledger.max(charge.base).saturating_add((charge.used as f64 * node_stretch) as i64)
}

/// Adds `charge` to the node's ledger `word` (the control page's
/// [`crate::control::OFF_CPU_LEDGER`], shared by every process of the node, shim and trap
/// alike) with compare-and-swap; returns the ledger's new instant.
pub fn charge_ledger(word: &AtomicU64, charge: Charge, node_stretch: f64) -> i64 {
    let mut old = word.load(Relaxed);
    loop {
        let new = ledger_after(old as i64, charge, node_stretch);
        match word.compare_exchange_weak(old, new as u64, AcqRel, Relaxed) {
            Ok(_) => return new,
            Err(seen) => old = seen,
        }
    }
}

/// Real ns the node needs per ns of CPU of any of its threads (`tdf / cores`), or `None`
/// when the inputs make no sense. Unlike [`stretch`] this may be below 1 (a node of many
/// cores at a small TDF).
pub fn node_stretch(cores: f64, tdf: f64) -> Option<f64> {
    (cores.is_finite() && tdf.is_finite() && cores > 0.0 && tdf > 0.0).then(|| tdf / cores)
}

/// Real nanoseconds one nanosecond of CPU must take for a thread of perceived speed `speed`
/// (host cores) at TDF `tdf`, or `None` when no pacing is needed (`speed / tdf ≥ 1`) or the
/// inputs make no sense.
pub fn stretch(speed: f64, tdf: f64) -> Option<f64> {
    if !(speed.is_finite() && tdf.is_finite() && speed > 0.0 && tdf > 0.0) {
        return None;
    }
    let s = tdf / speed;
    (s > 1.0 + 1e-9).then_some(s)
}

/// The median of the valid (non-negative) delivery-cost samples, skipping the first (cold
/// caches); `None` with fewer than three.
pub fn median_delivery(samples: &mut [i64]) -> Option<i64> {
    let rest = samples.get_mut(1..)?;
    rest.sort_unstable();
    let valid = rest.iter().position(|&v| v >= 0).map_or(&rest[..0], |i| &rest[i..]);
    (valid.len() >= 3).then(|| valid[valid.len() / 2])
}

/// One step of the exponential average (weight 1/8) of wake-up lateness, in ns; negative
/// samples (early wake-ups) count as zero.
pub fn ewma(avg: i64, sample: i64) -> i64 {
    avg + (sample.max(0) - avg) / 8
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Tuning = Tuning::DEFAULT;

    #[test]
    fn delivery_cost_is_the_median_of_the_valid_samples_after_the_first() {
        assert_eq!(median_delivery(&mut [90_000, 20_000, 15_000, 30_000, -1, 18_000, 22_000]), Some(20_000));
        assert_eq!(median_delivery(&mut [5, -1, -1, -1, 4, 3]), None);
        assert_eq!(median_delivery(&mut []), None);
    }

    #[test]
    fn lateness_average_moves_an_eighth_of_the_way() {
        assert_eq!(ewma(0, 80_000), 10_000);
        assert_eq!(ewma(80_000, 80_000), 80_000);
        assert_eq!(ewma(16_000, -5_000), 14_000);
    }

    #[test]
    fn stretch_follows_speed_and_tdf() {
        assert_eq!(stretch(1.0, 10.0), Some(10.0));
        assert_eq!(stretch(0.5, 1.0), Some(2.0));
        assert_eq!(stretch(1.0, 1.0), None, "a full core at TDF 1 is not paced");
        assert_eq!(stretch(2.0, 1.5), None);
        assert_eq!(stretch(0.0, 10.0), None);
        assert_eq!(stretch(f64::NAN, 10.0), None);
    }

    #[test]
    fn a_continuous_burst_takes_stretch_times_its_cpu() {
        let mut p = Pace::NEW;
        assert_eq!(p.due(0, 1_000_000, 10.0, &T), None);
        // 100 µs of CPU in 100 µs of real time: owe 1 ms in total.
        let until = p.due(100_000, 1_100_000, 10.0, &T).unwrap();
        assert_eq!(until, 2_000_000);
        p.settle(100_000, until);
        // Another 100 µs right after: the next target chains from the previous one.
        assert_eq!(p.due(200_000, until + 100_000, 10.0, &T), Some(3_000_000));
    }

    #[test]
    fn one_thread_alone_is_not_slowed_by_the_ledger() {
        // cpus 0.5 at TDF 10: thread and node both owe 20 ns per ns of CPU.
        let (mut p, mut ledger) = (Pace::NEW, 0);
        p.due(0, 0, 20.0, &T);
        for k in 1..=3 {
            let now = p.woke + 100_000;
            let c = p.charge(k * 100_000, now, 20.0, &T).unwrap();
            ledger = ledger_after(ledger, c, 20.0);
            assert_eq!(ledger, p.target, "burst {k}");
            p.settle(k * 100_000, p.target + 30_000); // each sleep wakes 30 µs late
        }
        assert_eq!(p.target, 6_000_000, "chained bursts of 300 µs end at 6 ms: lateness refunded");
    }

    #[test]
    fn threads_computing_at_once_share_the_node_cores() {
        // Two threads of a one-core node (cpus 0.5, TDF 1: 2 ns per ns) each compute 1 ms
        // from t = 0: together they need 4 ms of the node's one half-speed core.
        let (mut a, mut b, mut ledger) = (Pace::NEW, Pace::NEW, 0);
        a.due(0, 0, 2.0, &T);
        b.due(0, 0, 2.0, &T);
        let ca = a.charge(1_000_000, 1_000_000, 2.0, &T).unwrap();
        ledger = ledger_after(ledger, ca, 2.0);
        a.defer_to(ledger);
        let cb = b.charge(1_000_000, 1_000_000, 2.0, &T).unwrap();
        ledger = ledger_after(ledger, cb, 2.0);
        b.defer_to(ledger);
        assert_eq!((a.target, b.target), (2_000_000, 4_000_000));
        // The same two threads on a node of two cores (node stretch 1): no extra wait.
        let l2 = ledger_after(ledger_after(0, ca, 1.0), cb, 1.0);
        assert_eq!(l2, 2_000_000);
    }

    #[test]
    fn the_shared_ledger_word_accumulates_charges() {
        let word = AtomicU64::new(0);
        let c = Charge { base: 1_000, used: 100 };
        assert_eq!(charge_ledger(&word, c, 2.0), 1_200);
        assert_eq!(charge_ledger(&word, c, 2.0), 1_400, "a second charge lands after the first");
        assert_eq!(word.load(Relaxed), 1_400);
    }

    #[test]
    fn idle_cores_do_not_save_up() {
        let c = Charge { base: 50_000_000, used: 1_000_000 };
        assert_eq!(ledger_after(1_000_000, c, 2.0), 52_000_000);
        assert_eq!(node_stretch(0.5, 10.0), Some(20.0));
        assert_eq!(node_stretch(4.0, 2.0), Some(0.5));
        assert_eq!(node_stretch(0.0, 2.0), None);
    }

    #[test]
    fn a_late_wake_up_is_refunded_by_the_next_sleep() {
        let mut p = Pace::NEW;
        p.due(0, 0, 10.0, &T);
        let until = p.due(100_000, 100_000, 10.0, &T).unwrap();
        let woke = until + 60_000; // woke 60 µs late
        p.settle(100_000, woke);
        let next = p.due(200_000, woke + 100_000, 10.0, &T).unwrap();
        assert_eq!(next, 2_000_000, "the burst of 200 µs ends at 2 ms whatever the late wake-up");
    }

    #[test]
    fn a_thread_that_blocked_starts_a_new_burst() {
        let mut p = Pace::NEW;
        p.due(0, 0, 10.0, &T);
        let until = p.due(100_000, 100_000, 10.0, &T).unwrap();
        p.settle(100_000, until);
        // Blocked for 5 ms, then 50 µs of CPU.
        let now = until + 5_000_000 + 50_000;
        assert_eq!(p.due(150_000, now, 10.0, &T), Some(now - 50_000 + 500_000));
    }

    #[test]
    fn small_debts_are_carried_not_slept() {
        let mut p = Pace::NEW;
        p.due(0, 0, 2.0, &T);
        assert_eq!(p.due(1_000, 1_000, 2.0, &T), None, "1 µs owed: below the minimum sleep");
        p.settle(1_000, 1_000);
        // The carried debt is still owed after more CPU.
        assert_eq!(p.due(11_000, 11_000, 2.0, &T), Some(22_000));
    }

    #[test]
    fn a_fresh_cpu_clock_restarts_the_state() {
        let mut p = Pace::NEW;
        p.due(0, 0, 10.0, &T);
        p.settle(5_000_000, 1_000);
        assert_eq!(p.due(10, 2_000, 10.0, &T), None, "a forked child's CPU clock starts near 0");
        assert!(p.started && p.last_cpu == 0);
        // A child (or a new thread) that computed 1 ms before its first pay point owes it.
        let mut child = Pace::NEW;
        assert_eq!(child.due(1_000_000, 5_000_000, 10.0, &T), Some(14_000_000));
    }
}
