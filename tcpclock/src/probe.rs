//! Which of the kernel's hooks for a dilated TCP clock work on this host.
//!
//! The probe does the real thing once, briefly: it attaches the sock_ops program to a
//! scratch cgroup2 directory and registers the dilated CUBIC, then undoes both. What fails
//! is reported with the kernel's reason, and [`coverage`] tells for each TCP timer how it is
//! stretched (BPF, the namespace's sysctl, or not at all).
//!
//! # Limitations
//! Some timers have no hook at all (see [`coverage`]); the probe cannot find one that the
//! kernel does not have.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cgroup2::{self, NodeCgroup};
use crate::{DilatedCubic, SockClock};

/// What the probe found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Probe {
    /// Kernel BTF (`/sys/kernel/btf/vmlinux`), needed by the struct_ops congestion control.
    pub btf: bool,
    pub cgroup2: Option<PathBuf>,
    /// `Err` holds why the sock_ops program could not be attached.
    pub sock_ops: Result<(), String>,
    /// The kernel's HZ as seen by the programs; 0 = unknown (no kernel config).
    pub hz: u32,
    /// `Err` holds why the dilated CUBIC could not be registered.
    pub struct_ops_cc: Result<(), String>,
}

impl Probe {
    /// Probes the running kernel; `scratch_parent` is a cgroup2 directory below which a
    /// scratch directory is made and removed again.
    pub fn run(scratch_parent: Option<&Path>) -> Self {
        let btf = Path::new("/sys/kernel/btf/vmlinux").exists();
        let cgroup2 = cgroup2::host_cgroup2_mount().ok();
        let parent = scratch_parent.map(Path::to_path_buf).or_else(|| cgroup2.clone());
        let (sock_ops, hz) = match parent {
            None => (Err("no cgroup2 hierarchy is mounted".to_string()), 0),
            Some(parent) => probe_sock_ops(&parent),
        };
        let struct_ops_cc = DilatedCubic::register(1.0).map(drop).map_err(|e| e.to_string());
        Self { btf, cgroup2, sock_ops, hz, struct_ops_cc }
    }
}

fn probe_sock_ops(parent: &Path) -> (Result<(), String>, u32) {
    let dir = parent.join(format!("diorama-tcpclock-probe-{}", std::process::id()));
    let cg = match NodeCgroup::create(&dir) {
        Ok(cg) => cg,
        Err(e) => return (Err(e.to_string()), 0),
    };
    let result = SockClock::attach(cg.path(), 1.0).map(|c| c.hz()).map_err(|e| e.to_string());
    let removed = cg.remove();
    match (result, removed) {
        (Ok(hz), Ok(())) => (Ok(()), hz),
        (Ok(hz), Err(e)) => (Err(format!("scratch cgroup not removed: {e}")), hz),
        (Err(e), _) => (Err(e), 0),
    }
}

/// How one of the kernel's TCP timers is stretched by the TDF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    /// A BPF program stretches it.
    Bpf,
    /// A per-namespace sysctl stretches it (set by the caller).
    Sysctl,
    /// Nothing: the node perceives it TDF times shorter.
    Unscaled,
}

/// One timer's coverage, as reported in `run.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Coverage {
    pub timer: &'static str,
    pub mechanism: Mechanism,
    pub note: String,
}

/// For each kernel TCP timer: how it is stretched on this host. `rto_min_sysctl` says
/// whether the namespace has `net.ipv4.tcp_rto_min_us` (kernel 6.11 and later).
pub fn coverage(probe: &Probe, rto_min_sysctl: bool) -> Vec<Coverage> {
    let mut out = Vec::new();
    let mut add = |timer, mechanism, note: String| out.push(Coverage { timer, mechanism, note });
    match (&probe.sock_ops, probe.hz) {
        (Ok(()), hz) if hz > 0 => add(
            "initial_rto",
            Mechanism::Bpf,
            "sock_ops answers BPF_SOCK_OPS_TIMEOUT_INIT (SYN and SYN-ACK retransmissions); capped at 120 s real".into(),
        ),
        (Ok(()), _) => {
            add("initial_rto", Mechanism::Unscaled, "the kernel's HZ is unknown to BPF (no kernel config)".into())
        }
        (Err(e), _) => add("initial_rto", Mechanism::Unscaled, format!("sock_ops unavailable: {e}")),
    }
    add(
        "rto_min",
        Mechanism::Sysctl,
        if rto_min_sysctl {
            "net.ipv4.tcp_rto_min_us; TCP_BPF_RTO_MIN only lowers it (kernel cap 200 ms)".into()
        } else {
            "route metric rto_min; TCP_BPF_RTO_MIN only lowers it (kernel cap 200 ms)".into()
        },
    );
    add(
        "delayed_ack_max",
        Mechanism::Unscaled,
        "TCP_BPF_DELACK_MAX only lowers it (kernel cap 200 ms) and no sysctl exists".into(),
    );
    add("delayed_ack_min", Mechanism::Unscaled, "the 40 ms ATO floor is a kernel constant".into());
    add("time_wait", Mechanism::Unscaled, "TIME-WAIT (60 s) is a kernel constant".into());
    match &probe.struct_ops_cc {
        Ok(()) => add("cubic_time_base", Mechanism::Bpf, "dilated CUBIC (struct_ops) is the namespace default".into()),
        Err(e) => {
            add("cubic_time_base", Mechanism::Unscaled, format!("struct_ops congestion control unavailable: {e}"))
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(sock_ops: Result<(), String>, hz: u32, cc: Result<(), String>) -> Probe {
        Probe { btf: true, cgroup2: Some("/sys/fs/cgroup/unified".into()), sock_ops, hz, struct_ops_cc: cc }
    }

    fn mechanism(c: &[Coverage], timer: &str) -> Option<Mechanism> {
        c.iter().find(|c| c.timer == timer).map(|c| c.mechanism)
    }

    #[test]
    fn a_full_kernel_covers_the_initial_rto_and_cubic() {
        let c = coverage(&probe(Ok(()), 250, Ok(())), true);
        assert_eq!(mechanism(&c, "initial_rto"), Some(Mechanism::Bpf));
        assert_eq!(mechanism(&c, "cubic_time_base"), Some(Mechanism::Bpf));
        assert_eq!(mechanism(&c, "rto_min"), Some(Mechanism::Sysctl));
        assert_eq!(mechanism(&c, "time_wait"), Some(Mechanism::Unscaled));
        assert_eq!(mechanism(&c, "delayed_ack_max"), Some(Mechanism::Unscaled));
    }

    #[test]
    fn missing_hooks_are_gaps_with_their_reason() {
        let c = coverage(&probe(Err("EPERM".into()), 0, Err("no BTF".into())), false);
        let rto = c.iter().find(|c| c.timer == "initial_rto").unwrap();
        assert_eq!(rto.mechanism, Mechanism::Unscaled);
        assert!(rto.note.contains("EPERM"));
        assert_eq!(mechanism(&c, "cubic_time_base"), Some(Mechanism::Unscaled));
        let c = coverage(&probe(Ok(()), 0, Ok(())), true);
        assert_eq!(mechanism(&c, "initial_rto"), Some(Mechanism::Unscaled));
    }
}
