//! CPU pacing of trapped programs, from the tracer (decision 060, "Addendum: pacing under
//! the trap"): every traced thread's CPU bursts take, in virtual time, as long as on the
//! original machine's core, with the shim's arithmetic ([`dilation_abi::pace`]) and the
//! node's shared ledger, so that shim and trap processes of one node share its cores.
//!
//! # Design
//! - For every traced thread (at its first stop and at every exec) the tracer opens a
//!   software `task-clock` perf event on that thread with `sample_period` = the quantum and
//!   `sigtrap` (+ `remove_on_exec`, which `sigtrap` requires; re-armed at the exec stop).
//!   The kernel lets a tracer do this (`sigtrap` on another task needs ptrace-attach
//!   rights). After each quantum of the thread's CPU the thread gets `SIGTRAP` (`si_code`
//!   `TRAP_PERF`, `si_perf_data` = [`SIG_DATA`]), which stops it for the tracer; the tracer
//!   suppresses the signal.
//! - At that stop and at every trapped system call (the wait and clock calls of the
//!   filter), the tracer charges the thread's CPU (the event's count, one `read`) to the
//!   thread's [`Pace`] and the node's ledger, and leaves the thread stopped until its
//!   target ([`Pacer::pay`]): a timer queue, served by the tracer's loop between other
//!   threads' stops. A trapped call is served after the payment, so a clock read or a
//!   timeout starts when the burst before it is done.
//! - The stop's own cost is not charged: at a quantum's stop the count is rounded down to
//!   the quantum ([`overflow_cpu`]); the CPU between the event's overflow and the stop (the
//!   interrupt, the signal, the ptrace stop) is not the program's work. A wait's exit stop
//!   starts a new burst, as the shim's wait hooks do.
//! - Sleeps end early by the tracer's learned wake-up lateness, so that the thread resumes
//!   on time on average without spinning (the tracer serves every thread: it must not spin).
//!
//! # Limitations
//! Clock reads through the vDSO fast path never stop at the tracer, so they cannot be pay
//! points as they are in the shim: a burst's end shorter than a quantum is paced only when
//! the thread next stops (a wait, a quantum). The trap's default quantum is therefore
//! shorter than the shim's ([`DEFAULT_QUANTUM_NS`]). Output calls are not trapped (see
//! decision 060).

use std::collections::{BTreeSet, HashMap};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::path::Path;
use std::sync::atomic::AtomicU64;

use dilation_abi::pace::{self, Pace, Tuning};
use dilation_abi::perf::{
    PerfEventAttr, FLAG_EXCLUDE_HV, FLAG_EXCLUDE_KERNEL, FLAG_REMOVE_ON_EXEC, FLAG_SIGTRAP, PERF_FLAG_FD_CLOEXEC,
    TRAP_PERF,
};
use nix::time::{clock_gettime, ClockId};
use nix::unistd::Pid;

/// The trap's pacing quantum when `DILATION_CPU_QUANTUM_US` is unset: 200 µs of CPU. The
/// shim's is 1 ms because it also pays at every clock read; here a burst's end is not seen
/// until the next stop, so the quantum bounds the unpaced tail of every burst. A quantum's
/// stop costs the thread 15–30 µs of CPU on this VM, not charged (see decision 060).
pub const DEFAULT_QUANTUM_NS: u64 = 200_000;

/// `si_perf_data` of the tracer's events, to tell them from a program's own perf events.
pub const SIG_DATA: u64 = 0xd1a7_10c0_9ace_0001;

/// Longest time a thread resumes early to make up for the tracer's wake-up lateness (ns).
const MAX_EARLY_NS: i64 = 200_000;

/// What the pacer reads from the node's environment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Config {
    /// Perceived speed of each thread, in host cores (`DILATION_CPU_SPEED`).
    pub speed: f64,
    /// Perceived cores the node's threads share (`DILATION_CPU_CORES`); `None`: no ledger.
    pub cores: Option<f64>,
    /// CPU ns between two quantum stops.
    pub quantum_ns: u64,
}

impl Config {
    /// The configuration of the environment's values, or `None` when no pacing is needed
    /// (no speed, or a thread as fast as a host core at `tdf`: a `cpus: 1` node at TDF 1 is
    /// not paced, as in the shim).
    pub fn parse(speed: Option<&str>, cores: Option<&str>, quantum_us: Option<&str>, tdf: f64) -> Option<Config> {
        let num = |v: Option<&str>| v.and_then(|s| s.trim().parse::<f64>().ok());
        let speed = num(speed)?;
        pace::stretch(speed, tdf)?;
        let cores = num(cores).filter(|c| c.is_finite() && *c > 0.0);
        let quantum_ns =
            num(quantum_us).filter(|q| q.is_finite() && *q >= 10.0).map_or(DEFAULT_QUANTUM_NS, |q| (q * 1000.0) as u64);
        Some(Config { speed, cores, quantum_ns })
    }

    /// [`Config::parse`] of this process's environment.
    pub fn from_env(tdf: f64) -> Option<Config> {
        use dilation_abi::env::{CPU_CORES, CPU_QUANTUM_US, CPU_SPEED};
        let var = |k| std::env::var(k).ok();
        Config::parse(var(CPU_SPEED).as_deref(), var(CPU_CORES).as_deref(), var(CPU_QUANTUM_US).as_deref(), tdf)
    }
}

/// The CPU (event count, ns) to charge at a quantum's stop: the count rounded down to the
/// quantum, since the event overflows at every multiple of it and what the thread ran
/// since then is the kernel delivering the stop. A count past more than half a quantum
/// (an event whose phase is unknown) is charged as it is.
pub fn overflow_cpu(count: i64, quantum: i64) -> i64 {
    if quantum <= 0 || count < quantum {
        return count;
    }
    let excess = count % quantum;
    if excess <= quantum / 2 {
        count - excess
    } else {
        count
    }
}

/// What the tracer does with a thread once its payment is over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    /// Resume it (a quantum's stop: the signal is suppressed).
    Resume,
    /// Serve the trapped system call it stopped at.
    Seccomp,
}

#[derive(Debug)]
struct Thread {
    /// The thread's task-clock event (`None` when it could not be opened).
    event: Option<OwnedFd>,
    pace: Pace,
    /// While held: the instant the tracer releases it, what then, and its count.
    held: Option<(i64, Then, i64)>,
}

/// Counters of the pacing.
#[derive(Clone, Copy, Debug, Default)]
pub struct PaceStats {
    /// Quantum stops (suppressed `SIGTRAP`s of the events).
    pub quanta: u64,
    /// Payments that held the thread.
    pub sleeps: u64,
    /// Real ns threads were held.
    pub held_ns: u64,
    /// CPU ns of quantum stops not charged (the delivery of the stop, [`overflow_cpu`]).
    pub delivery_ns: u64,
    /// Events that could not be opened (the thread is paced at its system calls only).
    pub event_errors: u64,
}

/// The node's ledger: the control page mapped shared.
struct Ledger {
    page: *mut libc::c_void,
}

impl Ledger {
    fn map(path: &Path) -> std::io::Result<Ledger> {
        let file = std::fs::OpenOptions::new().read(true).write(true).open(path)?;
        // SAFETY: maps SIZE bytes of an open file shared; the result is checked below and
        // the file may be closed afterwards (the mapping keeps it).
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                dilation_abi::control::SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if page == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Ledger { page })
    }

    fn word(&self) -> &AtomicU64 {
        // SAFETY: `page` is a page-aligned shared mapping of SIZE bytes that lives as long as
        // `self`; the ledger's offset is 8-aligned and in bounds. Other processes change the
        // word only atomically.
        unsafe { &*self.page.cast::<u8>().add(dilation_abi::control::OFF_CPU_LEDGER).cast::<AtomicU64>() }
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        // SAFETY: unmaps the mapping made in `map`, which nothing references any more.
        unsafe { libc::munmap(self.page, dilation_abi::control::SIZE) };
    }
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ledger")
    }
}

/// The tracer's pacer: per-thread state, the events, and the queue of held threads.
#[derive(Debug)]
pub struct Pacer {
    cfg: Config,
    ledger: Option<Ledger>,
    threads: HashMap<Pid, Thread>,
    /// Held threads by release instant (the instant minus the learned lateness).
    queue: BTreeSet<(i64, Pid)>,
    /// The tracer's wake-up lateness (ns, an exponential average).
    late: i64,
    pub stats: PaceStats,
}

/// Real `CLOCK_MONOTONIC` ns.
pub fn mono_now() -> i64 {
    clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(0, |ts| crate::model::ts_ns(ts.tv_sec(), ts.tv_nsec()))
}

/// Opens the quantum event on thread `tid`.
fn open_event(tid: Pid, quantum: u64) -> std::io::Result<OwnedFd> {
    let mut attr = PerfEventAttr::task_clock(quantum, 0);
    attr.sig_data = SIG_DATA;
    let mut last = std::io::Error::from_raw_os_error(libc::ENOSYS);
    // Kernel time counts too (the original machine spends it); without the privilege to
    // count it, user time only.
    for extra in [0, FLAG_EXCLUDE_KERNEL | FLAG_EXCLUDE_HV] {
        attr.flags = FLAG_REMOVE_ON_EXEC | FLAG_SIGTRAP | extra;
        // SAFETY: `attr` is a valid perf_event_attr of its declared size; the call returns
        // a new descriptor or -1 and touches no other memory.
        let fd = unsafe {
            libc::syscall(libc::SYS_perf_event_open, &raw const attr, tid.as_raw(), -1, -1, PERF_FLAG_FD_CLOEXEC)
        };
        if fd >= 0 {
            // SAFETY: `fd` is a descriptor this process just opened and owns alone.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        }
        last = std::io::Error::last_os_error();
    }
    Err(last)
}

/// The event's count: the thread's CPU ns since the event was opened.
fn read_count(fd: &OwnedFd) -> Option<i64> {
    let mut b = [0u8; 8];
    match nix::unistd::read(fd, &mut b) {
        Ok(8) => Some(u64::from_ne_bytes(b) as i64),
        _ => None,
    }
}

/// Whether `info` is the `SIGTRAP` of one of the pacer's events.
pub fn is_quantum(info: &libc::siginfo_t) -> bool {
    const _: () = assert!(std::mem::size_of::<libc::siginfo_t>() == 128);
    if info.si_signo != libc::SIGTRAP || info.si_code != TRAP_PERF {
        return false;
    }
    // SAFETY: siginfo_t is 128 bytes of plain data (asserted above); read as words it has
    // `si_perf_data` at byte 24 for a TRAP_PERF signal (after si_signo, si_errno, si_code,
    // padding and si_addr).
    let words: [u64; 16] = unsafe { std::mem::transmute_copy(info) };
    words[3] == SIG_DATA
}

impl Pacer {
    /// A pacer of `cfg`; `control` is the node's control page, whose ledger it shares.
    pub fn new(cfg: Config, control: Option<&Path>) -> Pacer {
        let ledger = match (cfg.cores, control) {
            (Some(_), Some(p)) => match Ledger::map(p) {
                Ok(l) => Some(l),
                Err(e) => {
                    tracing::warn!(error = %e, "no node CPU ledger: threads are paced alone");
                    None
                }
            },
            _ => None,
        };
        // Sleeps of tens of µs need a precise wake-up (the default slack is 50 µs).
        let _ = nix::sys::prctl::set_timerslack(1);
        Pacer { cfg, ledger, threads: HashMap::new(), queue: BTreeSet::new(), late: 0, stats: PaceStats::default() }
    }

    pub fn config(&self) -> Config {
        self.cfg
    }

    /// Arms thread `tid` (a new thread, or a new image after exec): a new event, a new burst.
    pub fn arm(&mut self, tid: Pid) {
        self.forget(tid);
        let event = match open_event(tid, self.cfg.quantum_ns) {
            Ok(fd) => Some(fd),
            Err(e) => {
                if self.stats.event_errors == 0 {
                    tracing::warn!(%tid, error = %e, "no CPU quantum event: the thread is paced at its trapped calls only");
                }
                self.stats.event_errors += 1;
                None
            }
        };
        self.threads.insert(tid, Thread { event, pace: Pace::fresh(0, mono_now()), held: None });
    }

    /// Forgets thread `tid` (it exited, or its image is replaced).
    pub fn forget(&mut self, tid: Pid) {
        if let Some(t) = self.threads.remove(&tid) {
            if let Some((until, _, _)) = t.held {
                self.queue.remove(&(until, tid));
            }
        }
    }

    fn count(&self, tid: Pid) -> Option<i64> {
        self.threads.get(&tid)?.event.as_ref().and_then(read_count)
    }

    /// Thread `tid` is stopped at a pay point (`overflow`: its quantum's stop). Charges its
    /// CPU; returns `true` when the thread is now held (the tracer then leaves it stopped
    /// until [`Pacer::due`] returns it with `then`), `false` when nothing is owed.
    pub fn pay(&mut self, tid: Pid, overflow: bool, tdf: f64, then: Then) -> bool {
        let Some(count) = self.count(tid) else { return false };
        let now = mono_now();
        let q = self.cfg.quantum_ns as i64;
        let Some(stretch) = pace::stretch(self.cfg.speed, tdf) else { return false };
        let node_stretch = self.cfg.cores.and_then(|c| pace::node_stretch(c, tdf));
        let Some(t) = self.threads.get_mut(&tid) else { return false };
        let cpu = if overflow {
            self.stats.quanta += 1;
            let c = overflow_cpu(count, q).max(t.pace.last_cpu);
            self.stats.delivery_ns += (count - c).max(0) as u64;
            c
        } else {
            count
        };
        let mut until = None;
        if let Some(charge) = t.pace.charge(cpu, now, stretch, &Tuning::DEFAULT) {
            if let (Some(l), Some(ns)) = (&self.ledger, node_stretch) {
                t.pace.defer_to(pace::charge_ledger(l.word(), charge, ns));
            }
            until = t.pace.sleep_until(now, &Tuning::DEFAULT);
        }
        match until {
            Some(u) => {
                // Released early by the usual lateness of the tracer's wake-up.
                let release = u - self.late.clamp(0, MAX_EARLY_NS);
                t.held = Some((release, then, count));
                self.queue.insert((release, tid));
                self.stats.sleeps += 1;
                self.stats.held_ns += (u - now).max(0) as u64;
                true
            }
            None => {
                // The thread does not run while stopped: its CPU now is the count read.
                t.pace.settle(count, now);
                false
            }
        }
    }

    /// Thread `tid` returned from a wait: a new burst starts (the kernel's CPU to put it to
    /// sleep and wake it is not the program's work).
    pub fn fresh(&mut self, tid: Pid) {
        if let Some(count) = self.count(tid) {
            if let Some(t) = self.threads.get_mut(&tid) {
                t.pace = Pace::fresh(count, mono_now());
            }
        }
    }

    /// The instant the tracer must wake to release the first held thread.
    pub fn next_release(&self) -> Option<i64> {
        self.queue.first().map(|&(at, _)| at)
    }

    /// The tracer slept until `planned` and woke at `now`: learns its lateness.
    pub fn woke(&mut self, planned: i64, now: i64) {
        self.late = pace::ewma(self.late, now - planned).clamp(0, MAX_EARLY_NS);
    }

    /// Releases the held threads whose instant has come; returns them and what to do.
    pub fn due(&mut self, now: i64) -> Vec<(Pid, Then)> {
        let mut out = Vec::new();
        while let Some(&(at, tid)) = self.queue.first() {
            if at > now {
                break;
            }
            self.queue.remove(&(at, tid));
            if let Some(t) = self.threads.get_mut(&tid) {
                if let Some((_, then, count)) = t.held.take() {
                    t.pace.settle(count, now);
                    out.push((tid, then));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_core_at_tdf_1_is_not_paced() {
        assert_eq!(Config::parse(Some("1"), Some("1"), None, 1.0), None);
        assert_eq!(Config::parse(None, Some("1"), None, 10.0), None);
        let c = Config::parse(Some("1"), Some("1"), None, 10.0).unwrap();
        assert_eq!(c, Config { speed: 1.0, cores: Some(1.0), quantum_ns: DEFAULT_QUANTUM_NS });
        let c = Config::parse(Some("0.5"), Some("x"), Some("50"), 1.0).unwrap();
        assert_eq!((c.cores, c.quantum_ns), (None, 50_000));
        assert_eq!(Config::parse(Some("0.5"), None, Some("2"), 1.0).unwrap().quantum_ns, DEFAULT_QUANTUM_NS);
    }

    #[test]
    fn a_quantum_stop_charges_whole_quanta() {
        assert_eq!(overflow_cpu(200_020, 200_000), 200_000, "20 µs of delivery not charged");
        assert_eq!(overflow_cpu(600_090, 200_000), 600_000);
        assert_eq!(overflow_cpu(150_000, 200_000), 150_000, "before the first overflow: as read");
        assert_eq!(overflow_cpu(390_000, 200_000), 390_000, "far from an overflow: as read");
        assert_eq!(overflow_cpu(5, 0), 5);
    }

    #[test]
    fn only_the_tracers_own_events_are_quanta() {
        // SAFETY: an all-zero siginfo_t is valid plain data.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        info.si_signo = libc::SIGTRAP;
        info.si_code = TRAP_PERF;
        assert!(!is_quantum(&info), "a program's own perf event");
        // SAFETY: as in `is_quantum`: byte 24 of a TRAP_PERF siginfo is si_perf_data.
        unsafe { std::ptr::from_mut(&mut info).cast::<u64>().add(3).write(SIG_DATA) };
        assert!(is_quantum(&info));
        info.si_code = 1; // TRAP_BRKPT
        assert!(!is_quantum(&info));
    }

    fn pacer(speed: f64) -> Pacer {
        Pacer::new(Config { speed, cores: None, quantum_ns: 1_000_000 }, None)
    }

    #[test]
    fn held_threads_are_released_in_order() {
        let mut p = pacer(0.1);
        let (a, b) = (Pid::from_raw(1_000_001), Pid::from_raw(1_000_002));
        for (tid, until) in [(a, 5_000), (b, 3_000)] {
            p.threads
                .insert(tid, Thread { event: None, pace: Pace::fresh(0, 0), held: Some((until, Then::Resume, 7)) });
            p.queue.insert((until, tid));
        }
        assert_eq!(p.next_release(), Some(3_000));
        assert_eq!(p.due(2_999), vec![]);
        assert_eq!(p.due(4_000), vec![(b, Then::Resume)]);
        assert_eq!(p.threads[&b].pace.last_cpu, 7, "settled at the count read when it stopped");
        p.forget(a);
        assert_eq!(p.next_release(), None, "a thread that exited while held leaves the queue");
    }

    #[test]
    fn lateness_is_learned_and_bounded() {
        let mut p = pacer(0.1);
        p.woke(0, 80_000);
        assert_eq!(p.late, 10_000);
        p.woke(0, -50_000);
        assert!(p.late >= 0);
        for _ in 0..100 {
            p.woke(0, 10_000_000);
        }
        assert_eq!(p.late, MAX_EARLY_NS);
    }

    /// The event on this very thread (the kernel allows it for oneself): it counts CPU, and
    /// a quantum's stop would come at a multiple of the quantum.
    #[test]
    fn a_task_clock_event_counts_the_threads_cpu() {
        let tid = nix::unistd::gettid();
        let fd = match open_event(tid, 1_000_000_000) {
            Ok(fd) => fd,
            // perf events may be forbidden (perf_event_paranoid, a container's seccomp).
            Err(e) => return eprintln!("skipped: perf_event_open: {e}"),
        };
        let t0 = std::time::Instant::now();
        let mut x = 0u64;
        while t0.elapsed() < std::time::Duration::from_millis(20) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let c = read_count(&fd).unwrap();
        assert!((5_000_000..=40_000_000).contains(&c), "20 ms of spinning counted {c} ns");
    }
}
