//! Fault execution: applies each step of the fault schedule when it is due, from the
//! engine's loop (kill, stop, start, freeze, CPU limits, clocks, links, load).
//!
//! # Design
//! A node down because of a fault (killed, stopped) is marked `faulted`: its exit does not
//! fail the run. A restarted node's readiness check is polled by [`Testbed::watch_faulted`]
//! rather than waited for, so the other faults keep their times.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::json;

use super::{Testbed, TestbedError};
use crate::schedule::{CpuLimit, FaultStep, Operation};
use crate::spec::ReadyCheck;
use crate::state::ProcessId;

/// The fault engine: applies each step of the schedule when it is due.
impl Testbed<'_> {
    fn index_of(&self, node: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.spec.name == node)
    }

    /// Applies every step due by now.
    pub(super) fn fire_faults(&mut self) -> Result<(), TestbedError> {
        loop {
            let now = Duration::from_secs_f64(self.now_virtual());
            let Some(step) = self.timeline.pop_due(now) else { return Ok(()) };
            self.apply(step)?;
        }
    }

    /// Writes the `fault` / `recover` event of a step (contract 5).
    fn fault_event(&mut self, step: &FaultStep) {
        let fault = &self.timeline.faults()[step.fault];
        let kind = if step.recover { "recover" } else { "fault" };
        let mut fields = json!({
            "fault": fault.kind,
            "id": fault.id,
            "name": fault.name,
            "targets": fault.targets,
            "scheduled_s": step.at.as_secs_f64(),
        });
        if let (serde_json::Value::Object(f), serde_json::Value::Object(p)) = (&mut fields, step.params.clone()) {
            if !step.undo {
                f.extend(p);
            }
        }
        let (id, fault_kind, targets) = (fault.id.clone(), fault.kind, fault.targets.join(","));
        let t = self.now_virtual();
        self.events.write(t, kind, fields);
        self.progress.event(&format!("{kind} {fault_kind} {targets}"));
        let phase = if step.undo { "Undo" } else { "Do" };
        tracing::info!(%id, fault = fault_kind, phase, t_virtual_s = t, "fault step");
    }

    fn apply(&mut self, step: FaultStep) -> Result<(), TestbedError> {
        self.fault_event(&step);
        let (id, kind) = {
            let f = &self.timeline.faults()[step.fault];
            (f.id.clone(), f.kind)
        };
        let fail = |what: String| TestbedError::Fault { id: id.clone(), fault: kind, what };
        match &step.operation {
            Operation::Kill(nodes) => self.each(nodes, |bed, i| bed.kill(i, Signal::SIGKILL))?,
            Operation::Stop(nodes) => self.each(nodes, |bed, i| bed.kill(i, Signal::SIGTERM))?,
            Operation::Start { nodes, kill_first } => self.each(nodes, |bed, i| bed.start_again(i, *kill_first))?,
            Operation::Freeze { nodes, frozen } => self.each(nodes, |bed, i| bed.pause(i, *frozen).map_err(&fail))?,
            Operation::Cpu { limits, fraction } => {
                for (node, limit) in limits {
                    if let Some(i) = self.index_of(node) {
                        self.set_cpu(i, *limit, *fraction).map_err(&fail)?;
                    }
                }
            }
            Operation::ClockStep { nodes, offset_ns } => {
                self.each(nodes, |bed, i| bed.clock(i, Some(*offset_ns), None).map_err(&fail))?;
            }
            Operation::ClockRate { nodes, rate } => {
                self.each(nodes, |bed, i| bed.clock(i, None, Some(*rate)).map_err(&fail))?;
            }
            Operation::LinkDown { links, down } => {
                for l in links {
                    self.net_mut().map_err(&fail)?.set_down(l, *down).map_err(|e| fail(e.to_string()))?;
                    self.link_event(json!({"link": l, "state": if *down { "down" } else { "up" }}));
                }
            }
            Operation::Partition(sides) => {
                self.net_mut().map_err(&fail)?.partition(sides).map_err(|e| fail(e.to_string()))?;
                self.link_event(json!({"link": null, "state": "partitioned", "sides": sides}));
            }
            Operation::Heal => {
                self.net_mut().map_err(&fail)?.heal().map_err(|e| fail(e.to_string()))?;
                self.link_event(json!({"link": null, "state": "healed"}));
            }
            Operation::Degrade(d) => self.degrade(step.fault, d).map_err(&fail)?,
            Operation::RestoreLinks => self.restore_links(step.fault).map_err(&fail)?,
            Operation::Inflate { nodes, delay } => {
                let extra = delay.unwrap_or(Duration::ZERO);
                let state = if delay.is_some() { "inflated" } else { "normal" };
                for n in nodes {
                    self.net_mut().map_err(&fail)?.inflate(n, extra).map_err(|e| fail(e.to_string()))?;
                    self.link_event(
                        json!({"link": null, "node": n, "state": state, "extra_delay_s": extra.as_secs_f64()}),
                    );
                }
            }
            Operation::Load { nodes, rate } => {
                for n in nodes {
                    let Some(i) = self.index_of(n) else { continue };
                    let dir = self.nodes[i].spec.workdir.clone().unwrap_or_else(|| self.nodes[i].dir.clone());
                    write_load_ctl(&dir, *rate)
                        .map_err(|e| fail(format!("write {}/loadgen.ctl: {e}", dir.display())))?;
                    let t = self.now_virtual();
                    self.events.write(
                        t,
                        "load_state",
                        json!({"node": n, "rate": rate, "file": dir.join("loadgen.ctl")}),
                    );
                }
            }
        }
        Ok(())
    }

    fn each(
        &mut self,
        nodes: &[String],
        mut f: impl FnMut(&mut Self, usize) -> Result<(), TestbedError>,
    ) -> Result<(), TestbedError> {
        for n in nodes {
            if let Some(i) = self.index_of(n) {
                f(self, i)?;
            }
        }
        Ok(())
    }

    fn net_mut(&mut self) -> Result<&mut Box<dyn netemu::emulator::Emulator>, String> {
        self.net.as_mut().ok_or_else(|| "the run has no emulated network".to_owned())
    }

    fn link_event(&mut self, fields: serde_json::Value) {
        let t = self.now_virtual();
        self.events.write(t, "link_state", fields);
    }

    fn node_event(&mut self, idx: usize, state: &str, extra: serde_json::Value) {
        let mut fields = json!({"node": self.nodes[idx].spec.name, "state": state});
        if let (serde_json::Value::Object(f), serde_json::Value::Object(e)) = (&mut fields, extra) {
            f.extend(e);
        }
        let t = self.now_virtual();
        self.events.write(t, "node_state", fields);
    }

    /// `kill` (SIGKILL) or `stop` (SIGTERM, SIGKILL after the grace period) of one node.
    /// SIGKILL of `__init` takes the node's PID 1 with it (PDEATHSIG), and with PID 1 every
    /// process of the node's PID namespace.
    fn kill(&mut self, idx: usize, signal: Signal) -> Result<(), TestbedError> {
        let grace = self.real(self.spec.grace);
        let node = &mut self.nodes[idx];
        node.faulted = true;
        node.ready_by = None;
        if node.paused {
            // Frozen tasks act on no signal, SIGKILL included, until thawed.
            if let Some(cg) = &node.cgroup {
                let _ = cg.freeze(false);
            }
            node.paused = false;
        }
        if let (Some(p), None) = (&node.process, node.exit) {
            let _ = p.signal(signal);
            if signal != Signal::SIGKILL {
                node.kill_at = Some(Instant::now() + grace);
            }
        }
        Ok(())
    }

    /// Starts a node's command again through the container code path: same configuration,
    /// cgroups and network namespace. `kill_first`: a running node is killed first (restart).
    fn start_again(&mut self, idx: usize, kill_first: bool) -> Result<(), TestbedError> {
        if self.nodes[idx].exit.is_none() && self.nodes[idx].process.is_some() {
            // A node a fault killed or stopped whose exit the loop has not reaped yet (the
            // undo of a short `kill … for:` can come in the same pass of the loop) is on its
            // way down, not running: it is reaped below and started, as the fault says.
            if !kill_first && !self.nodes[idx].faulted {
                tracing::info!(node = %self.nodes[idx].spec.name, "start: the node is running; nothing to do");
                return Ok(());
            }
            self.nodes[idx].faulted = true;
            if let Some(p) = &self.nodes[idx].process {
                let _ = p.signal(Signal::SIGKILL);
            }
            if let Some(p) = self.nodes[idx].process.as_mut() {
                let _ = p.wait();
            }
            self.poll_exits();
        }
        let node = &mut self.nodes[idx];
        if node.paused {
            if let Some(cg) = &node.cgroup {
                let _ = cg.freeze(false);
            }
            node.paused = false;
        }
        node.kill_at = None;
        node.restarts += 1;
        if node.shim_loaded == Some(true) {
            node.shim_loaded = None;
        }
        node.shim_missing_since = None;
        let name = node.spec.name.clone();
        self.fidelity.reset_node(&name);
        self.spawn_node(idx)?;
        self.nodes[idx].faulted = false;
        if let Some(id) = self.nodes[idx].process.as_ref().and_then(|p| ProcessId::of(p.pid())) {
            self.state().update(|r| {
                r.nodes.insert(name.clone(), id);
            })?;
        }
        let timeout = match &self.nodes[idx].spec.ready {
            Some(ReadyCheck::Tcp { timeout, .. } | ReadyCheck::Command { timeout, .. }) => Some(*timeout),
            Some(ReadyCheck::Delay(d)) => Some(*d),
            None => None,
        };
        match timeout {
            Some(t) => self.nodes[idx].ready_by = Some(Instant::now() + self.real(t)),
            None => {
                let t = self.now_virtual();
                self.events.write(
                    t,
                    "node_ready",
                    json!({"node": name, "check": null, "restarts": self.nodes[idx].restarts}),
                );
            }
        }
        Ok(())
    }

    /// Follows up nodes that faults act on: SIGKILL after a `stop`'s grace period, and the
    /// readiness check of restarted nodes (polled, so other faults keep their times).
    pub(super) fn watch_faulted(&mut self) -> Result<(), TestbedError> {
        for idx in 0..self.nodes.len() {
            let node = &mut self.nodes[idx];
            if let (Some(at), Some(p), None) = (node.kill_at, &node.process, node.exit) {
                if Instant::now() >= at {
                    let _ = p.signal(Signal::SIGKILL);
                    node.kill_at = None;
                }
            }
            let Some(deadline) = self.nodes[idx].ready_by else { continue };
            if let Some(code) = self.nodes[idx].exit {
                return Err(
                    self.node_failed(idx, &format!("exited with status {code} before it was ready after a restart"))
                );
            }
            let ready = match self.nodes[idx].spec.ready.clone() {
                Some(ReadyCheck::Delay(_)) | None => Instant::now() >= deadline,
                Some(ReadyCheck::Tcp { port, .. }) => self.nodes[idx]
                    .process
                    .as_ref()
                    .is_some_and(|p| crate::readiness::tcp_listening(Path::new("/proc"), p.pid(), port)),
                Some(ReadyCheck::Command { argv, .. }) => self.run_check(idx, &argv),
            };
            if ready {
                self.nodes[idx].ready_by = None;
                let t = self.now_virtual();
                let name = self.nodes[idx].spec.name.clone();
                self.events.write(t, "node_ready", json!({"node": name, "restarts": self.nodes[idx].restarts}));
                self.progress.event(&format!("{name} ready again"));
            } else if Instant::now() >= deadline {
                return Err(self.node_failed(idx, "was not ready in time after a restart"));
            }
        }
        Ok(())
    }

    /// Freezes or thaws a node (cgroup freezer); records whether the kernel reports it frozen.
    fn pause(&mut self, idx: usize, freeze: bool) -> Result<(), String> {
        let node = &mut self.nodes[idx];
        let Some(cg) = &node.cgroup else { return Ok(()) };
        cg.freeze(freeze).map_err(|e| {
            format!("{e}: {}", std::error::Error::source(&e).map(ToString::to_string).unwrap_or_default())
        })?;
        node.paused = freeze;
        // Freezing completes asynchronously; wait briefly so the event can say it took.
        let deadline = Instant::now() + Duration::from_millis(200);
        while freeze && !cg.frozen() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let frozen = cg.frozen();
        self.node_event(idx, if freeze { "paused" } else { "resumed" }, json!({"frozen": frozen}));
        Ok(())
    }

    /// Sets a node's CPU limit (`None`: back to the planned one); `fraction` is recorded.
    fn set_cpu(&mut self, idx: usize, limit: Option<CpuLimit>, fraction: Option<f64>) -> Result<(), String> {
        let node = &mut self.nodes[idx];
        let r = &node.spec.resources;
        let (quota, period) = match limit {
            Some(l) => (Some(l.quota_us), l.period_us),
            None => (node.cgroup_quota_us, r.cpu_period_us),
        };
        let Some(cg) = &node.cgroup else { return Ok(()) };
        cg.set_cpu(quota, period).map_err(|e| e.to_string())?;
        node.cpu_override = limit.map(|l| (l.quota_us, l.period_us));
        self.node_event(idx, "cpu", json!({"quota_us": quota, "period_us": period, "fraction": fraction}));
        Ok(())
    }

    /// Steps (`step_ns`) or sets the rate (`rate`, relative to the run's) of a node's
    /// virtual clock through its control file.
    fn clock(&mut self, idx: usize, step_ns: Option<i64>, rate: Option<f64>) -> Result<(), String> {
        if self.opts.shim.is_none() {
            return Err("clock faults need the clock shim (the run is undilated)".into());
        }
        let cf = dilation::control::ControlFile::open(&self.nodes[idx].control).map_err(|e| e.to_string())?;
        if let Some(s) = step_ns {
            cf.step(s).map_err(|e| e.to_string())?;
        }
        if let Some(r) = rate {
            cf.set_tdf(self.spec.tdf / r).map_err(|e| e.to_string())?;
        }
        let m = cf.model().map_err(|e| e.to_string())?;
        self.node_event(idx, "clock", json!({"step_s": step_ns.map(|s| s as f64 / 1e9), "rate": rate, "tdf": m.tdf}));
        Ok(())
    }

    /// Worsens links: adds delay, jitter and loss, caps the rate; remembers the old
    /// parameters for the undo.
    fn degrade(&mut self, fault: usize, d: &crate::schedule::Degrade) -> Result<(), String> {
        for link in &d.links {
            for &dir in &d.dirs {
                let net = self.net_mut()?;
                let old = net.link_params(link, dir).map_err(|e| e.to_string())?;
                let mut new = old;
                new.delay += d.delay;
                new.jitter += d.jitter;
                if d.loss > 0.0 {
                    new.loss = match old.loss {
                        netemu::link::Loss::Random(p) => netemu::link::Loss::Random(1.0 - (1.0 - p) * (1.0 - d.loss)),
                        other => {
                            tracing::warn!(
                                link,
                                "degrade: a Gilbert-Elliott loss model is kept; the added loss is ignored"
                            );
                            other
                        }
                    };
                }
                if let Some(r) = d.rate_bps {
                    new.rate_bps = Some(old.rate_bps.map_or(r, |o| o.min(r)));
                }
                net.set_link(link, dir, new).map_err(|e| e.to_string())?;
                self.saved_links.push((fault, link.clone(), dir, old));
                self.link_event(json!({
                    "link": link, "dir": dir_name(dir), "state": "degraded",
                    "delay_s": new.delay.as_secs_f64(), "jitter_s": new.jitter.as_secs_f64(),
                    "loss": match new.loss { netemu::link::Loss::Random(p) => Some(p), _ => None },
                    "rate_bps": new.rate_bps,
                }));
            }
        }
        Ok(())
    }

    /// Puts back the parameters a `degrade` replaced.
    fn restore_links(&mut self, fault: usize) -> Result<(), String> {
        let saved: Vec<_> = self.saved_links.iter().filter(|s| s.0 == fault).cloned().collect();
        self.saved_links.retain(|s| s.0 != fault);
        for (_, link, dir, params) in saved {
            // Keep a link's administrative state: it may have gone down since.
            let net = self.net_mut()?;
            let down = net.link_params(&link, dir).map(|p| p.down).unwrap_or(false);
            net.set_link(&link, dir, netemu::link::LinkParams { down, ..params }).map_err(|e| e.to_string())?;
            self.link_event(
                json!({"link": link, "dir": dir_name(dir), "state": "restored", "delay_s": params.delay.as_secs_f64()}),
            );
        }
        Ok(())
    }
}

fn dir_name(dir: netemu::graph::Dir) -> &'static str {
    match dir {
        netemu::graph::Dir::Forward => "forward",
        netemu::graph::Dir::Reverse => "reverse",
    }
}

/// Replaces `dir/loadgen.ctl` atomically (write a temporary file, rename): contract 4.
fn write_load_ctl(dir: &Path, rate: f64) -> std::io::Result<()> {
    let tmp = dir.join(".loadgen.ctl.tmp");
    std::fs::write(&tmp, format!("{}\n", json!({"rate": rate})))?;
    std::fs::rename(&tmp, dir.join("loadgen.ctl"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_control_file_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        write_load_ctl(dir.path(), 500.0).unwrap();
        write_load_ctl(dir.path(), 250.5).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("loadgen.ctl")).unwrap()).unwrap();
        assert_eq!(v, json!({"rate": 250.5}));
        assert!(!dir.path().join(".loadgen.ctl.tmp").exists());
    }
}
