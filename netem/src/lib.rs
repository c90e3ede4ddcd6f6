//! Link models and network emulation for diorama. See `docs/network.md`.
//!
//! - [`link`]: the link model and the one TDF-scaling function ([`link::scale`]);
//! - [`graph`]: nodes, switches and links; addresses; shortest-path routes;
//! - [`netns`], [`tun`]: per-node network namespaces and TUN devices;
//! - [`core`]: the userspace emulation core that forwards packets between TUN devices;
//! - [`emulator`]: the runtime interface of a running network, whatever its backend.
//!
//! All `unsafe` code (ioctls) is in the private `sys` module.

pub mod core;
pub mod emulator;
pub mod graph;
pub mod link;
pub mod netns;
mod sys;
pub mod tun;
