//! The end of a run: each node's fate, the fidelity verdict, and `run.json`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use super::Testbed;
use crate::metrics::{Fidelity, FidelityFlag};

/// Bytes of a failed node's stderr shown in the error.
const STDERR_TAIL: usize = 2000;

/// The fate of one node.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeOutcome {
    pub name: String,
    pub main: bool,
    pub started: bool,
    /// Exit code (128 + signal when killed); `None` if it was still running at the end.
    pub exit: Option<i32>,
    /// Whether the harness stopped it at the end of the run (then any exit is expected).
    pub stopped_by_harness: bool,
    pub restarts: u32,
    /// Down at the end because of a fault (killed or stopped and not started again): its
    /// exit does not fail the run.
    pub faulted: bool,
    /// Whether `libdilation.so` was mapped in the node's command (`null`: not seen, e.g.
    /// it exited before the check).
    pub shim_loaded: Option<bool>,
    /// The mechanism that dilated the node (`shim`, `trap`, `undilated`), its program and
    /// reason, and what the in-node checks found (`null` in an undilated run).
    pub dilation: Option<serde_json::Value>,
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub results_dir: PathBuf,
    pub success: bool,
    pub interrupted: bool,
    pub reason: String,
    pub nodes: Vec<NodeOutcome>,
    pub virtual_elapsed: Duration,
    pub real_elapsed: Duration,
    pub fidelity: Fidelity,
}

impl Testbed<'_> {
    pub(super) fn outcome(&mut self, reason: &str, interrupted: bool) -> RunOutcome {
        let nodes: Vec<NodeOutcome> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| NodeOutcome {
                name: n.spec.name.clone(),
                main: n.spec.main,
                started: n.process.is_some(),
                exit: n.exit,
                stopped_by_harness: n.stopped_by_harness,
                restarts: n.restarts,
                faulted: n.faulted,
                shim_loaded: n.shim_loaded,
                dilation: self.dilation_record(i),
            })
            .collect();
        let mains: Vec<&NodeOutcome> = nodes.iter().filter(|n| n.main).collect();
        let success = !interrupted
            && nodes.iter().all(|n| n.started)
            && if mains.is_empty() {
                nodes.iter().all(|n| n.stopped_by_harness || n.faulted || n.exit == Some(0))
            } else {
                mains.iter().all(|n| n.exit == Some(0))
            };
        RunOutcome {
            results_dir: self.opts.results_dir.clone(),
            success,
            interrupted,
            reason: reason.to_owned(),
            nodes,
            virtual_elapsed: Duration::from_secs_f64(self.now_virtual()),
            real_elapsed: self.started.elapsed(),
            fidelity: self.fidelity.finish([self.shim_flags(), self.dilation_flags()].concat()),
        }
    }

    /// `shim_missing` and `shim_error` flags, from the shim checks and each node's control file.
    fn shim_flags(&self) -> Vec<FidelityFlag> {
        let mut flags = Vec::new();
        if self.opts.shim.is_none() {
            return flags;
        }
        for n in &self.nodes {
            if n.shim_loaded == Some(false) {
                flags.push(FidelityFlag {
                    kind: "shim_missing",
                    node: Some(n.spec.name.clone()),
                    link: None,
                    detail: "the clock shim was not loaded in the node's command (statically linked?): its time was not dilated".into(),
                });
            }
            match dilation::control::ControlFile::open(&n.control).and_then(|c| c.stats()) {
                Ok(st) if st.errors > 0 => flags.push(FidelityFlag {
                    kind: "shim_error",
                    node: Some(n.spec.name.clone()),
                    link: None,
                    detail: format!(
                        "the clock shim counted {} internal errors (each fell back to the undilated call)",
                        st.errors
                    ),
                }),
                Ok(_) => {}
                Err(err) => tracing::warn!(?err, node = %n.spec.name, "failed to read the shim's error counter"),
            }
        }
        flags
    }

    pub(super) fn write_run_json(
        &self,
        outcome: &RunOutcome,
        timings: serde_json::Value,
        cache: Option<&crate::cache_decay::DecayRecord>,
    ) {
        let mut host = host_facts();
        if let (Some(c), Some(h)) = (cache.and_then(|c| c.to_json(self.spec.tdf)), host.as_object_mut()) {
            h.insert("cache_decay".into(), c);
        }
        let run = json!({
            "schema": 1,
            "name": self.spec.name,
            "topology_file": self.spec.topology_file,
            "tdf": self.spec.tdf,
            "epoch": {"real_ns": self.model.epoch.real_ns, "virt_ns": self.model.epoch.virt_ns},
            "plan": self.spec.plan,
            "topology": self.spec.topology,
            "host": host,
            "versions": {"diorama": env!("CARGO_PKG_VERSION")},
            "started_at": chrono::Utc::now().checked_sub_signed(chrono::Duration::from_std(outcome.real_elapsed).unwrap_or_default()).map(|t| t.to_rfc3339()),
            "ended_at": chrono::Utc::now().to_rfc3339(),
            "virtual_duration_s": outcome.virtual_elapsed.as_secs_f64(),
            "real_duration_s": outcome.real_elapsed.as_secs_f64(),
            "shim": self.opts.shim,
            "trap": self.opts.trap,
            "allow_undilated": self.spec.allow_undilated,
            "network": self.net_record,
            "nodes": outcome.nodes,
            "status": if outcome.success { "succeeded" } else { "failed" },
            "success": outcome.success,
            "interrupted": outcome.interrupted,
            "end_reason": outcome.reason,
            "fidelity": outcome.fidelity,
            "faults": self.timeline.faults().iter().map(|f| json!({
                "id": f.id, "name": f.name, "fault": f.kind, "targets": f.targets,
                "at_s": f.at.as_secs_f64(), "for_s": f.undo_after.map(|d| d.as_secs_f64()),
            })).collect::<Vec<_>>(),
            "timings": timings,
        });
        let path = self.opts.results_dir.join("run.json");
        if let Err(err) =
            serde_json::to_vec_pretty(&run).map_err(std::io::Error::other).and_then(|b| std::fs::write(&path, b))
        {
            tracing::error!(?err, path = %path.display(), "failed to write run.json");
        }
    }
}

/// Prints the fidelity verdict and its flags.
pub(super) fn print_fidelity(f: &Fidelity) {
    if f.flags.is_empty() {
        crate::note!("fidelity: ok");
        return;
    }
    crate::note!("fidelity: UNFAITHFUL ({} flag{})", f.flags.len(), if f.flags.len() == 1 { "" } else { "s" });
    for flag in &f.flags {
        let at = flag.node.as_deref().or(flag.link.as_deref()).map(|x| format!(" {x}")).unwrap_or_default();
        crate::note!("  {}{at}: {}", flag.kind, flag.detail);
    }
}

/// The last lines of a file, for error messages.
pub fn tail(path: &Path) -> String {
    let Ok(bytes) = std::fs::read(path) else { return String::from("(no stderr)") };
    let start = bytes.len().saturating_sub(STDERR_TAIL);
    let text = String::from_utf8_lossy(&bytes[start..]).into_owned();
    if text.trim().is_empty() {
        "(empty)".to_owned()
    } else {
        text
    }
}

/// Facts about this host for `run.json`.
pub fn host_facts() -> serde_json::Value {
    let uname = nix::sys::utsname::uname().ok();
    serde_json::json!({
        "hostname": nix::unistd::gethostname().ok().map(|h| h.to_string_lossy().into_owned()),
        "kernel": uname.as_ref().map(|u| u.release().to_string_lossy().into_owned()),
        "cores": std::thread::available_parallelism().map(|n| n.get()).ok(),
    })
}
