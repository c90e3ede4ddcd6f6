//! The L4 load balancer of diorama as pure state: packets in (with their virtual
//! timestamps), backend choices and telemetry out. No I/O, no clock, no threads, so the
//! network emulator, tests and benchmarks drive it alike.
//!
//! # Design
//! - [`flow`]: the 5-tuple and its hash.
//! - [`maglev`]: the Maglev lookup table with per-backend slot quotas (weights).
//! - [`conntrack`]: pins each connection to its backend, with idle expiry.
//! - [`estimator`]: FIXEDTIMEOUT and ENSEMBLETIMEOUT in-band latency estimation.
//! - [`controller`]: the δ-shift controller that moves Maglev slots.
//! - [`balancer`]: ties them together behind one `route` call per client→server packet.
//! - [`telemetry`]: the time series the balancer records, and their CSV form.
//! - [`packet`]: the 5-tuple and flags from a raw IPv4 packet; real → virtual time.
//! - [`spec`]: checks of a balancer's declaration against its topology.
//!
//! All times are nanoseconds of the nodes' *virtual* time (the caller converts: at a
//! time-dilation factor TDF, virtual = real elapsed / TDF). Nothing here reads a clock.
#![forbid(unsafe_code)]

pub mod balancer;
pub mod config;
pub mod conntrack;
pub mod controller;
pub mod estimator;
pub mod flow;
pub mod maglev;
pub mod packet;
pub mod spec;
pub mod telemetry;

pub use balancer::{Balancer, BalancerError, Decision};
pub use config::{Aggregation, BalancerConfig, ControllerConfig, EstimatorConfig, Policy, Timed};
pub use flow::{FiveTuple, PacketMeta, TcpFlags};
pub use maglev::{MaglevError, MaglevTable};
pub use spec::{BalancerSpec, Problem};
