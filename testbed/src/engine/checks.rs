//! Dilation of every node: the mechanism chosen before the node starts, and the fidelity
//! monitor's checks from inside the node while it runs — the coverage of every process of
//! its tree (`dilation::coverage`) and its virtual clock read by a probe run in the node's
//! namespaces under the node's mechanism, against the model.

use std::path::Path;
use std::time::{Duration, Instant};

use dilation::program::Mechanism;
use serde_json::json;

use super::{children, Testbed, TestbedError, SHIM_GRACE};
use crate::container;
use crate::dilation_choice::{ClockReading, NodeDilation, UndilatedProcess};
use crate::metrics::FidelityFlag;
use crate::spec::NodeSpec;

/// How often a node's clock is read again from inside it (real time).
const CLOCK_EVERY: Duration = Duration::from_secs(20);
/// Nodes whose clock is read per sample (round robin, oldest reading first): the probe is a
/// process start inside the node, too dear for every node of a large topology every sample.
const CLOCKS_PER_SAMPLE: usize = 4;
/// Real time the clock probes of one sample may take before the rest wait for the next.
const PROBE_BUDGET: Duration = Duration::from_millis(200);
/// No probe when a fault is due within this much real time (the probes block the loop).
const FAULT_MARGIN: Duration = Duration::from_secs(1);

impl Testbed<'_> {
    /// The mechanism for a node's command; refuses a program no mechanism reaches unless
    /// the topology allows undilated nodes. `None` in an undilated run.
    pub(super) fn choose_dilation(&self, spec: &NodeSpec) -> Result<Option<NodeDilation>, TestbedError> {
        if self.opts.shim.is_none() {
            return Ok(None);
        }
        let dilation = crate::dilation_choice::choose(spec, self.opts.trap.as_deref());
        if dilation.mechanism().is_none() {
            if !self.spec.allow_undilated {
                return Err(TestbedError::Undilatable { node: spec.name.clone(), reason: dilation.choice.reason });
            }
            tracing::warn!(node = %spec.name, reason = %dilation.choice.reason, "running the node UNDILATED, as the topology allows");
        }
        Ok(Some(dilation))
    }

    /// One line per mechanism and program: which nodes each gets.
    pub(super) fn announce_dilation(&self) {
        let mut groups: Vec<(&'static str, &str, Vec<&str>)> = Vec::new();
        for n in &self.nodes {
            let Some(d) = &n.dilation else { continue };
            let key = (d.mechanism_name(), d.choice.reason.as_str());
            match groups.iter_mut().find(|g| (g.0, g.1) == key) {
                Some(g) => g.2.push(&n.spec.name),
                None => groups.push((key.0, key.1, vec![&n.spec.name])),
            }
        }
        for (mechanism, reason, nodes) in groups {
            let shown = match nodes.len() {
                0..=6 => nodes.join(", "),
                k => format!("{}, … ({k} nodes)", nodes[..4].join(", ")),
            };
            crate::note!("dilation: {mechanism} for {shown} ({reason})");
        }
    }

    /// Coverage of every process of every running node's tree; warns once per program
    /// confirmed undilated.
    pub(super) fn check_coverage(&mut self) {
        if self.opts.shim.is_none() {
            return;
        }
        let Ok(procs) = dilation::coverage::Processes::scan(Path::new("/proc")) else { return };
        let now = Instant::now();
        let t = self.now_virtual();
        for node in &mut self.nodes {
            let undilated_by_choice = node.dilation.as_ref().is_some_and(|d| d.mechanism().is_none());
            if node.exit.is_some() || undilated_by_choice {
                continue;
            }
            let Some(p) = &node.process else { continue };
            let Some(cmd) = children(p.pid()).into_iter().flat_map(children).next() else { continue };
            let Ok(tree) = procs.tree(cmd) else { continue };
            let seen = tree
                .into_iter()
                .filter_map(|pc| match pc.coverage {
                    dilation::coverage::Coverage::Undilated { reason } => {
                        Some(UndilatedProcess { pid: pc.pid, program: pc.program, reason })
                    }
                    _ => None,
                })
                .collect();
            for u in node.checks.observe(seen, now, SHIM_GRACE) {
                crate::note!(
                    "warning: node {}: {} (pid {}) runs UNDILATED: {}",
                    node.spec.name,
                    u.program,
                    u.pid,
                    u.reason
                );
                self.events.write(
                    t,
                    "undilated",
                    json!({"node": node.spec.name, "program": u.program, "pid": u.pid, "reason": u.reason}),
                );
            }
        }
    }

    /// Reads the virtual clock inside up to [`CLOCKS_PER_SAMPLE`] running nodes (those read
    /// longest ago) and compares it with the node's model.
    pub(super) fn check_clocks(&mut self) {
        let now = Instant::now();
        // The probes run on the engine's thread: never let them delay a fault.
        if let Some(at) = self.timeline.next_at() {
            if (self.started + self.real(at)).saturating_duration_since(now) < FAULT_MARGIN {
                return;
            }
        }
        let mut due: Vec<(Option<Instant>, usize)> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| {
                n.exit.is_none()
                    && n.process.is_some()
                    && n.dilation.as_ref().is_some_and(|d| d.mechanism().is_some())
                    && n.checks.clock_at.is_none_or(|at| now.duration_since(at) >= CLOCK_EVERY)
            })
            .map(|(i, n)| (n.checks.clock_at, i))
            .collect();
        due.sort();
        for (_, idx) in due.into_iter().take(CLOCKS_PER_SAMPLE) {
            if now.elapsed() >= PROBE_BUDGET {
                break;
            }
            match self.read_node_clock(idx) {
                Ok(reading) => {
                    let node = &mut self.nodes[idx];
                    if !reading.within_tolerance() && node.checks.clock_failure.is_none() {
                        crate::note!(
                            "warning: node {}: its virtual clock reads {:.3} s off the model inside the node: time is NOT dilated",
                            node.spec.name,
                            (reading.observed_ns - reading.expected_to_ns) as f64 / 1e9
                        );
                    }
                    node.checks.record_clock(reading, Instant::now());
                }
                Err(err) => {
                    tracing::debug!(node = %self.nodes[idx].spec.name, %err, "in-node clock read failed");
                    self.nodes[idx].checks.clock_at = Some(Instant::now());
                }
            }
        }
    }

    /// Runs `date +%s%N` inside the node (its namespaces and environment, under its
    /// mechanism) and brackets it with the model's virtual time before and after.
    fn read_node_clock(&self, idx: usize) -> Result<ClockReading, String> {
        let node = &self.nodes[idx];
        let p = node.process.as_ref().ok_or("not running")?;
        let d = node.dilation.as_ref().ok_or("undilated run")?;
        let mechanism = d.mechanism();
        let probe = ["date", "+%s%N"];
        let (program, args): (&Path, Vec<&str>) = match (mechanism, &d.trap) {
            (Some(Mechanism::Trap), Some(trap)) => (trap, [&["--"][..], &probe].concat()),
            _ => (Path::new("date"), probe[1..].to_vec()),
        };
        let (mut cmd, _held) = container::enter_command(p.pid(), program, &node.dir).map_err(|e| e.to_string())?;
        let env = self.node_env(&node.spec, &node.dir, &node.control, mechanism);
        cmd.args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let model =
            dilation::control::ControlFile::open(&node.control).and_then(|c| c.model()).map_err(|e| e.to_string())?;
        let before = dilation::realtime_ns();
        let out = cmd.output().map_err(|e| e.to_string())?;
        let after = dilation::realtime_ns();
        if !out.status.success() {
            return Err(format!("probe exited with {}", out.status));
        }
        let observed_ns: i64 =
            String::from_utf8_lossy(&out.stdout).trim().parse().map_err(|_| "probe printed no integer".to_owned())?;
        Ok(ClockReading {
            observed_ns,
            expected_from_ns: model.virtual_ns(before),
            expected_to_ns: model.virtual_ns(after),
            real_ns: after,
        })
    }

    /// `undilated` and `clock_not_dilated` flags of the fidelity verdict.
    pub(super) fn dilation_flags(&self) -> Vec<FidelityFlag> {
        let mut flags = Vec::new();
        for n in &self.nodes {
            let node = Some(n.spec.name.clone());
            if let Some(d) = n.dilation.as_ref().filter(|d| d.mechanism().is_none()) {
                flags.push(FidelityFlag {
                    kind: "undilated",
                    node: node.clone(),
                    link: None,
                    detail: format!("{} ran UNDILATED, as the topology allows: {}", d.choice.program, d.choice.reason),
                });
            }
            for u in &n.checks.undilated {
                flags.push(FidelityFlag {
                    kind: "undilated",
                    node: node.clone(),
                    link: None,
                    detail: format!("{} (pid {}) ran undilated: {}", u.program, u.pid, u.reason),
                });
            }
            if let Some(r) = n.checks.clock_failure {
                flags.push(FidelityFlag {
                    kind: "clock_not_dilated",
                    node,
                    link: None,
                    detail: format!(
                        "the node's virtual clock read inside the node was {:.3} s off the model (observed {} ns, expected {}–{} ns; real {} ns)",
                        r.error_ns() as f64 / 1e9,
                        r.observed_ns,
                        r.expected_from_ns,
                        r.expected_to_ns,
                        r.real_ns
                    ),
                });
            }
        }
        flags
    }

    /// The node's dilation for `run.json`: mechanism, program, reason, and the checks.
    pub(super) fn dilation_record(&self, idx: usize) -> Option<serde_json::Value> {
        let n = &self.nodes[idx];
        let d = n.dilation.as_ref()?;
        let mut record = d.record();
        record["undilated_processes"] = n
            .checks
            .undilated
            .iter()
            .map(|u| json!({"pid": u.pid, "program": u.program, "reason": u.reason}))
            .collect();
        record["clock_check"] = match n.checks.clock {
            Some(r) => json!({
                "ok": n.checks.clock_failure.is_none(),
                "last_error_ns": r.error_ns(),
                "worst": n.checks.clock_failure,
                "tolerance_ns": crate::dilation_choice::CLOCK_TOLERANCE_NS,
            }),
            None => serde_json::Value::Null,
        };
        Some(record)
    }
}
