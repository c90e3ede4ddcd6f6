//! `diorama-lb`: an L7 load balancer for HTTP, or for the memcache text protocol
//! (`--protocol memcache`, a request/response proxy over TCP: [`memcache`]).
//!
//! Policies: round-robin, random, least connections, power of two choices over in-flight
//! requests, and peak EWMA. Passive health checking ejects a backend after consecutive
//! failures and re-admits it after a virtual-time backoff. Per backend it records
//! requests, in-flight count, latency and errors in `backends.csv`.
//!
//! # Design
//! [`balancer::Balancer`] is pure state (time passed in), [`policy`] holds the policies
//! behind one trait plus an enum, [`proxy`] does the HTTP. A policy sees every request and
//! response event with its virtual timestamp, so a feedback controller is one more policy.
//!
//! # Limitations
//! Bodies are buffered whole (fine for the kilobyte requests of the workloads); no retries;
//! HTTP/1.1 only.

pub mod balancer;
pub mod health;
pub mod memcache;
pub mod policy;
pub mod proxy;
pub mod series;
pub mod service;

pub use service::{run, Args};
