//! The runtime interface of a built emulated network, whatever backend carries it.
//!
//! # Design
//! The harness (and its fault engine) sees a running network only through [`Emulator`]:
//! counters, the backend's own lateness, and the runtime changes faults need (change a
//! link, take it down, partition node groups, heal, inflate a node's sending delay). Every
//! parameter crosses this interface in *perceived* units; each backend scales with
//! [`crate::link::scale`] itself, so the TDF still meets link parameters in one place.
//! Changes apply without restarting anything.

use std::time::Duration;

use crate::graph::Dir;
use crate::link::{LinkError, LinkParams};

/// Errors of runtime operations.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("unknown link {0}")]
    UnknownLink(String),
    #[error("unknown node {0}")]
    UnknownNode(String),
    #[error("node {0} is in more than one partition group")]
    Overlap(String),
    #[error("scale link parameters")]
    Params(#[from] LinkError),
    #[error("the {backend} backend cannot {what}")]
    Unsupported { backend: &'static str, what: &'static str },
    #[error("the network backend is gone (its thread or namespace ended)")]
    Gone,
    #[error("configure the kernel network")]
    Kernel(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A snapshot of a direction's counters.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkSample {
    pub link: String,
    pub dir: Dir,
    pub bytes: u64,
    pub packets: u64,
    pub drops: u64,
    pub queue_bytes: u64,
    /// Perceived rate, for utilization.
    pub rate_bps: Option<u64>,
}

/// A running emulated network.
pub trait Emulator: Send {
    /// The backend's name for logs and `run.json` (`userspace`, `kernel`).
    fn backend(&self) -> &'static str;
    /// Names of every link, in declaration order.
    fn links(&self) -> Vec<String>;
    /// The links that touch `node` (its access links).
    fn access_links(&self, node: &str) -> Vec<String>;
    /// The current perceived parameters of one direction of a link.
    fn link_params(&self, link: &str, dir: Dir) -> Result<LinkParams, EmulatorError>;
    /// Replaces one direction's perceived parameters.
    fn set_link(&mut self, link: &str, dir: Dir, params: LinkParams) -> Result<(), EmulatorError>;
    /// Takes a link down (both directions drop everything) or back up.
    fn set_down(&mut self, link: &str, down: bool) -> Result<(), EmulatorError>;
    /// Cuts the network between groups of nodes: a packet between nodes of two different
    /// groups is dropped; nodes in no group are unaffected. Replaces an earlier partition.
    fn partition(&mut self, groups: &[Vec<String>]) -> Result<(), EmulatorError>;
    /// Undoes [`Emulator::partition`].
    fn heal(&mut self) -> Result<(), EmulatorError>;
    /// Adds `extra` (perceived) delay to every packet `node` sends; zero undoes it.
    fn inflate(&mut self, node: &str, extra: Duration) -> Result<(), EmulatorError>;
    /// Counters of every link direction.
    fn samples(&self) -> Vec<LinkSample>;
    /// The p-quantile (0..1) of how late the backend forwarded packets against their
    /// schedule (real time), where the backend can know it.
    fn lateness(&self, q: f64) -> Option<Duration>;
    /// Frames the backend dropped before routing, by reason (zeros where the kernel drops
    /// them unseen).
    fn bad_packets(&self) -> crate::packet::BadPackets;
    /// Stops forwarding and releases every device.
    fn shutdown(&mut self);
}
