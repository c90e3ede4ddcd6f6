//! The diorama network emulator: link models and two backends that carry them. See
//! `docs/network.md` and docs/decisions/012-network-crate-name.md.
//!
//! - [`link`]: the link model and the one TDF-scaling function ([`link::scale`]);
//! - [`graph`]: nodes, switches and links; addresses; shortest-path routes;
//! - [`hop`]: what a switch does to a packet's TTL (decrement; ICMP time exceeded);
//! - [`netns`], [`tun`]: per-node network namespaces and TUN devices;
//! - [`userspace`]: the userspace backend, one thread that forwards packets between TUN
//!   devices; [`packet`]: the checks (and drop counts) of the frames it reads;
//! - [`l4`]: L4 balancers (VIP → backend, direct server return) in the userspace core;
//! - [`kernel`]: the kernel backend, netem and htb queueing disciplines on veth pairs;
//! - [`emulator`]: the runtime interface of a running network, whatever its backend.
//!
//! All `unsafe` code (ioctls) is in the private `sys` module.

pub mod emulator;
pub mod graph;
pub mod hop;
pub mod kernel;
pub mod l4;
pub mod link;
pub mod netns;
pub mod packet;
pub mod rtnl;
mod sys;
pub mod tcp;
pub mod tun;
pub mod userspace;
