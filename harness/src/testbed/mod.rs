//! The run engine: prepares, starts, supervises, stops and tears down one experiment.

mod events;
mod metrics;
mod progress;
mod resources;
mod run;
mod spec;

pub use resources::{remove_run_parent, NodeCgroup, ResourceError};
pub use metrics::{Fidelity, FidelityFlag, FidelityThresholds, LinkSampler};
pub use run::{run, tail, NodeOutcome, RunOptions, RunOutcome, TestbedError};
pub use spec::{DiskLimit, NodeResources, NodeSpec, ReadyCheck, TestbedSpec};

/// Facts about this host for `run.json`.
pub fn host_facts() -> serde_json::Value {
    let uname = nix::sys::utsname::uname().ok();
    serde_json::json!({
        "hostname": nix::unistd::gethostname().ok().map(|h| h.to_string_lossy().into_owned()),
        "kernel": uname.as_ref().map(|u| u.release().to_string_lossy().into_owned()),
        "cores": std::thread::available_parallelism().map(|n| n.get()).ok(),
    })
}
