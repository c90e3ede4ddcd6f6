//! Cross-region object replication in the style of λReplica, on real S3-protocol stores.
//!
//! - [`store`], [`server`], [`notify`], [`event`]: an S3 store (`s3s` + `s3s-fs`) that POSTs
//!   AWS-shaped event notifications for every created and removed object;
//! - [`coordinator`], [`platform`], [`task`]: the replicator: orchestrator, per-region function
//!   platform and the instances' copy work, through the real S3 client ([`client`]);
//! - [`state`]: the shared state in SQLite (versions, the {seq, etag} lock, the part pool);
//! - [`planner`]: the SLO planner (pure), planning with [`fit`]'s models measured at run time;
//!   [`changelog`]: COPY, MOVE, CONCAT and APPEND hints;
//! - [`etag`]: S3 ETags; [`writer`] and [`verify`]: the test writer and the end check;
//! - the baselines run by the same coordinator ([`coordinator::System`]): provider-style in
//!   the coordinator's process, VM-style on a [`vm`] pool.
//!
//! This crate never depends on `harness`: its binary is a workload like any other.
#![forbid(unsafe_code)]

pub mod changelog;
pub mod cli;
pub mod client;
pub mod coordinator;
pub mod etag;
pub mod event;
pub mod fit;
pub mod notify;
pub mod planner;
pub mod platform;
pub mod record;
pub mod server;
pub mod state;
pub mod store;
pub mod task;
pub mod verify;
pub mod vm;
pub mod writer;

/// `err` and its sources as one line (`a: b: c`).
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cur = e.source();
    }
    out
}

#[cfg(test)]
mod tests;
