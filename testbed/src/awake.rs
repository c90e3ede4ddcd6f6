//! Keeps the host's CPUs awake during a run: one spinning thread of `SCHED_IDLE` priority per
//! CPU the harness may use.
//!
//! A scale model leaves its cores idle most of the time: at TDF 10 a paced thread sleeps
//! nine tenths of every burst. On a virtual machine an idle vCPU halts and is descheduled by
//! the hypervisor; waking it costs time and the work that follows runs slower. Measured on
//! this 2-vCPU KVM guest: a 1 ms sleep overslept by 40 µs and cost 17 µs of CPU, against
//! 12 µs and 7 µs with the CPUs kept awake; a 100 µs compute burst after a 20 ms sleep took
//! 98–180 µs of CPU, against 93–96 µs awake. Both grow with the idle time, which grows with
//! the TDF, so they bias a scaled run against its baseline. A `SCHED_IDLE` thread keeps the
//! vCPU running without taking CPU from anything else: any other runnable task preempts it.
//!
//! # Design
//! Threads of the harness process, pinned one per CPU; each publishes its CPU time, which
//! the fidelity monitor discounts from the host's busy share.
//!
//! # Limitations
//! The spinners burn power and, on a metered cloud VM, CPU credits: `--no-awake` turns them
//! off. They change nothing a node may use: nodes are limited by their cgroups.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use nix::sched::CpuSet;
use nix::time::{clock_gettime, ClockId};
use nix::unistd::Pid;

/// Errors of starting the spinners.
#[derive(Debug, thiserror::Error)]
pub enum AwakeError {
    #[error("read the harness's CPU affinity")]
    Affinity(#[source] nix::Error),
    #[error("start a spinner thread")]
    Spawn(#[source] std::io::Error),
}

/// The running spinners; stopped and joined on drop.
#[derive(Debug)]
pub struct Awake {
    stop: Arc<AtomicBool>,
    cpu_ns: Arc<Vec<AtomicU64>>,
    threads: Vec<JoinHandle<()>>,
}

impl Awake {
    /// Starts one spinner per CPU the harness may run on.
    pub fn start() -> Result<Self, AwakeError> {
        let mine = nix::sched::sched_getaffinity(Pid::from_raw(0)).map_err(AwakeError::Affinity)?;
        let cpus: Vec<usize> = (0..CpuSet::count()).filter(|&c| mine.is_set(c).unwrap_or(false)).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let cpu_ns = Arc::new((0..cpus.len()).map(|_| AtomicU64::new(0)).collect::<Vec<_>>());
        let mut awake = Self { stop, cpu_ns, threads: Vec::with_capacity(cpus.len()) };
        for (slot, cpu) in cpus.into_iter().enumerate() {
            let (stop, cpu_ns) = (Arc::clone(&awake.stop), Arc::clone(&awake.cpu_ns));
            let t = std::thread::Builder::new()
                .name(format!("diorama:awake{cpu}"))
                .spawn(move || spin(cpu, slot, &stop, &cpu_ns))
                .map_err(AwakeError::Spawn)?;
            awake.threads.push(t);
        }
        Ok(awake)
    }

    /// A reader of the CPU time the spinners have used so far (ns).
    pub fn cpu_reader(&self) -> SpinnerCpu {
        SpinnerCpu(Arc::clone(&self.cpu_ns))
    }
}

impl Drop for Awake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The spinners' CPU time, for the fidelity monitor.
#[derive(Debug, Clone)]
pub struct SpinnerCpu(Arc<Vec<AtomicU64>>);

impl SpinnerCpu {
    /// Nanoseconds of CPU the spinners have used so far.
    pub fn ns(&self) -> u64 {
        self.0.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

fn thread_cpu_ns() -> Option<u64> {
    let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).ok()?;
    u64::try_from(t.tv_sec()).ok()?.checked_mul(1_000_000_000)?.checked_add(u64::try_from(t.tv_nsec()).ok()?)
}

fn spin(cpu: usize, slot: usize, stop: &AtomicBool, cpu_ns: &[AtomicU64]) {
    let mut set = CpuSet::new();
    // Unpinned, or at normal priority, a spinner would compete with the nodes: give up.
    let pinned = set.set(cpu).is_ok() && nix::sched::sched_setaffinity(Pid::from_raw(0), &set).is_ok();
    if let Err(err) = pinned.then(crate::container::sys::set_idle_class).unwrap_or(Err(nix::Error::EINVAL)) {
        tracing::warn!(cpu, %err, "could not pin a spinner at idle priority; this CPU is not kept awake");
        return;
    }
    let publish = || {
        if let (Some(c), Some(slot)) = (thread_cpu_ns(), cpu_ns.get(slot)) {
            slot.store(c, Ordering::Relaxed);
        }
    };
    let mut n = 0u32;
    while !stop.load(Ordering::Relaxed) {
        std::hint::spin_loop();
        n = n.wrapping_add(1);
        if n % (1 << 16) == 0 {
            publish();
        }
    }
    publish();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spinners_run_at_idle_priority_and_stop_on_drop() {
        let awake = Awake::start().unwrap();
        let cpu = awake.cpu_reader();
        std::thread::sleep(std::time::Duration::from_millis(50));
        // Each spinner's policy, read back from /proc: SCHED_IDLE is 5.
        for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            if comm.starts_with("diorama:awake") {
                let stat = std::fs::read_to_string(t.path().join("stat")).unwrap();
                let policy: u32 = stat.rsplit(')').next().unwrap().split_whitespace().nth(38).unwrap().parse().unwrap();
                assert_eq!(policy, 5, "{comm}: {stat}");
            }
        }
        assert!(cpu.ns() > 0, "the spinners used no CPU");
        drop(awake);
        let after = cpu.ns();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(cpu.ns(), after, "a spinner still runs after drop");
    }
}
