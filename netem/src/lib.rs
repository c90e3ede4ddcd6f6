//! Link models and network emulation for diorama. See `docs/network.md`.
//!
//! Today: the link model with the one TDF-scaling function ([`link::scale`]) and the
//! topology graph with addressing and routes ([`graph`]). The emulation backends (a TUN-based
//! userspace core, kernel netem through rtnetlink) build on these.
#![forbid(unsafe_code)]

pub mod graph;
pub mod link;
