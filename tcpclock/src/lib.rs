//! The kernel's own TCP clock of a dilated node.
//!
//! A node's TCP stack runs in the host kernel on real time. The harness already stretches
//! the per-namespace TCP sysctls by the TDF; this crate reaches what sysctls cannot, with BPF:
//! - [`SockClock`]: a sock_ops program on the node's cgroup2 directory that makes the initial
//!   RTO (SYN and SYN-ACK retransmissions) TDF seconds;
//! - [`DilatedCubic`]: CUBIC as a BPF struct_ops congestion control whose time base is the
//!   node's virtual time, to be made the default of each node's network namespace;
//! - [`RunClock`]: the above for one run, its `run.json` report and its cleanup ([`clean`]);
//! - [`Probe`] and [`coverage`]: which hooks this kernel has, and for each TCP timer whether
//!   it is stretched by BPF, by a sysctl, or not at all (the gap a run reports).
//!
//! # Design
//! Programs are written in C (`src/bpf/`), compiled by clang at build time and loaded with
//! libbpf-rs (docs/decisions/050-bpf-loader.md). Kernel structures are declared with CO-RE
//! relocations, so the objects do not depend on the build host's kernel headers. Every
//! attachment is a BPF link held by a value of this crate: it goes away when the value is
//! dropped or the holding process dies, so nothing outlives a run.
//!
//! # Limitations
//! Raising the delayed-ACK maximum, the ATO floor and TIME-WAIT have no hook in the kernel;
//! [`coverage`] reports them as unscaled.

pub mod cgroup2;
mod cubic;
mod error;
pub mod probe;
mod run;
mod scale;
mod skel;
mod sockclock;

pub use cgroup2::NodeCgroup;
pub use cubic::DilatedCubic;
pub use error::Error;
pub use probe::{coverage, Coverage, Mechanism, Probe};
pub use run::{clean, ClockReport, NodeClock, NodeReport, RunClock};
pub use scale::{cubic_name, tdf_milli};
pub use sockclock::{Outcomes, SockClock};

/// The per-namespace sysctl that selects the default congestion control.
pub const DEFAULT_CC_SYSCTL: &str = "net.ipv4.tcp_congestion_control";
