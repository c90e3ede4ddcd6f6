//! Which mechanism dilates each node's command, and what the in-node checks found.
//!
//! The rule is `dilation::program`'s: the LD_PRELOAD shim for dynamically linked non-Go
//! programs, the syscall trap (`dilation-trap`, seccomp + ptrace) for Go programs and
//! static binaries, looking through `sh -c SCRIPT` to the programs the script starts.
//! A trapped node runs `dilation-trap -- ARGV…` as its command, inside the node's
//! namespaces and cgroups, so the tracer's CPU is charged to the node's quota.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use dilation::program::{Choice, Mechanism};

use crate::spec::NodeSpec;

/// The dilation of one node's command.
#[derive(Debug, Clone)]
pub(crate) struct NodeDilation {
    pub choice: Choice,
    /// The launcher the command is wrapped in (trapped nodes only).
    pub trap: Option<PathBuf>,
}

impl NodeDilation {
    /// The mechanism that actually runs (`None`: undilated, as the topology allowed).
    pub fn mechanism(&self) -> Option<Mechanism> {
        match self.choice.mechanism {
            Some(Mechanism::Trap) if self.trap.is_none() => None,
            m => m,
        }
    }

    /// The name recorded in `run.json`, the report and the log.
    pub fn mechanism_name(&self) -> &'static str {
        match self.mechanism() {
            Some(Mechanism::Preload) => "shim",
            Some(Mechanism::Trap) => "trap",
            None => "undilated",
        }
    }

    pub fn record(&self) -> serde_json::Value {
        serde_json::json!({
            "mechanism": self.mechanism_name(),
            "program": self.choice.program,
            "kind": self.choice.kind.map(|k| k.to_string()),
            "reason": self.choice.reason,
        })
    }
}

/// The mechanism for `node`'s command in a dilated run: `dilation::program`'s rule on its
/// argv, resolved in its `PATH` (the harness's when it sets none); a trapped program whose
/// launcher is missing (`trap` is `None`) gets no mechanism, and the reason says why.
pub(crate) fn choose(node: &NodeSpec, trap: Option<&Path>) -> NodeDilation {
    let path =
        node.env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.clone()).or_else(|| std::env::var("PATH").ok());
    let mut choice = dilation::program::choose(&node.argv, path.as_deref());
    let trap = match (choice.mechanism, trap) {
        (Some(Mechanism::Trap), Some(t)) => Some(t.to_owned()),
        (Some(Mechanism::Trap), None) => {
            choice.reason = format!(
                "{}, and the trap launcher {} was not found (beside diorama, or $DIORAMA_TRAP)",
                choice.reason,
                dilation::coverage::TRAP_NAME
            );
            None
        }
        _ => None,
    };
    NodeDilation { choice, trap }
}

/// Why a dilated run refuses `node` before any node starts (no mechanism reaches its
/// program, and the topology does not set `allow_undilated`); `None` when it does not.
/// `trap`: the trap launcher, `None` when it is not installed. For `diorama check --plan`,
/// which refuses what the run would.
pub fn refusal(node: &NodeSpec, allow_undilated: bool, trap: Option<&Path>) -> Option<String> {
    let dilation = choose(node, trap);
    (dilation.mechanism().is_none() && !allow_undilated).then_some(dilation.choice.reason)
}

/// The node's argv, wrapped in the trap launcher when the node is trapped.
pub(crate) fn wrap_argv(argv: &[String], dilation: Option<&NodeDilation>) -> Vec<String> {
    match dilation.and_then(|d| d.trap.as_ref().filter(|_| d.mechanism() == Some(Mechanism::Trap))) {
        Some(trap) => {
            let mut wrapped = vec![trap.display().to_string(), "--".to_owned()];
            wrapped.extend(argv.iter().cloned());
            wrapped
        }
        None => argv.to_vec(),
    }
}

/// One process found running undilated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UndilatedProcess {
    pub pid: u32,
    pub program: String,
    pub reason: String,
}

/// What the fidelity monitor's checks from inside a node found.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodeChecks {
    /// Processes seen undilated, by pid, since when (confirmed after a grace period: a
    /// process between `exec` and the loader mapping the shim is not yet covered).
    pub suspects: BTreeMap<u32, (Instant, UndilatedProcess)>,
    /// Confirmed undilated processes, one per (program, reason).
    pub undilated: Vec<UndilatedProcess>,
    /// The last in-node clock reading: (observed − expected) virtual ns, and whether it
    /// fell outside the tolerance.
    pub clock: Option<ClockReading>,
    /// When the in-node clock was last read.
    pub clock_at: Option<Instant>,
    /// The worst clock reading outside the tolerance, if any.
    pub clock_failure: Option<ClockReading>,
}

/// One reading of a node's virtual clock from inside the node, against the model.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub(crate) struct ClockReading {
    /// The clock the probe printed (virtual CLOCK_REALTIME ns).
    pub observed_ns: i64,
    /// The expected virtual time when the probe started and when it ended.
    pub expected_from_ns: i64,
    pub expected_to_ns: i64,
    /// What an undilated clock would have read, roughly (the real time at the read).
    pub real_ns: i64,
}

/// Tolerance of the in-node clock check, virtual ns: the probe's own start-up is bracketed,
/// so this only absorbs rounding and the probe's ms-scale scheduling.
pub(crate) const CLOCK_TOLERANCE_NS: i64 = 20_000_000;

impl ClockReading {
    /// How far outside the bracket the observation fell (0 inside).
    pub fn error_ns(&self) -> i64 {
        if self.observed_ns < self.expected_from_ns {
            self.expected_from_ns - self.observed_ns
        } else {
            (self.observed_ns - self.expected_to_ns).max(0)
        }
    }

    pub fn within_tolerance(&self) -> bool {
        self.error_ns() <= CLOCK_TOLERANCE_NS
    }
}

impl NodeChecks {
    /// Adds one observation of undilated processes; returns the newly confirmed ones.
    pub fn observe(
        &mut self,
        seen: Vec<UndilatedProcess>,
        now: Instant,
        grace: std::time::Duration,
    ) -> Vec<UndilatedProcess> {
        let live: Vec<u32> = seen.iter().map(|p| p.pid).collect();
        self.suspects.retain(|pid, _| live.contains(pid));
        let mut confirmed = Vec::new();
        for p in seen {
            let entry = self.suspects.entry(p.pid).or_insert((now, p.clone()));
            // A process that exec'd another program since starts its grace again.
            if entry.1 != p {
                *entry = (now, p.clone());
            }
            if now.duration_since(entry.0) >= grace
                && !self.undilated.iter().any(|u| u.program == p.program && u.reason == p.reason)
            {
                self.undilated.push(p.clone());
                confirmed.push(p);
            }
        }
        confirmed
    }

    pub fn record_clock(&mut self, reading: ClockReading, now: Instant) {
        self.clock = Some(reading);
        self.clock_at = Some(now);
        if !reading.within_tolerance() && self.clock_failure.is_none_or(|w| reading.error_ns() > w.error_ns()) {
            self.clock_failure = Some(reading);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn choice(m: Option<Mechanism>) -> Choice {
        Choice { program: "/usr/bin/etcd".into(), kind: None, mechanism: m, reason: "r".into() }
    }

    #[test]
    fn trapped_commands_are_wrapped() {
        let argv = vec!["etcd".to_owned(), "--name".to_owned()];
        let trapped = NodeDilation { choice: choice(Some(Mechanism::Trap)), trap: Some("/t/dilation-trap".into()) };
        assert_eq!(wrap_argv(&argv, Some(&trapped)), vec!["/t/dilation-trap", "--", "etcd", "--name"]);
        assert_eq!(trapped.mechanism_name(), "trap");
        let shim = NodeDilation { choice: choice(Some(Mechanism::Preload)), trap: Some("/t/dilation-trap".into()) };
        assert_eq!(wrap_argv(&argv, Some(&shim)), argv);
        let allowed = NodeDilation { choice: choice(None), trap: None };
        assert_eq!((wrap_argv(&argv, Some(&allowed)), allowed.mechanism_name()), (argv.clone(), "undilated"));
        let no_launcher = NodeDilation { choice: choice(Some(Mechanism::Trap)), trap: None };
        assert_eq!(no_launcher.mechanism(), None);
        assert_eq!(wrap_argv(&argv, None), argv);
    }

    fn node(argv: &[&str]) -> NodeSpec {
        NodeSpec {
            name: "n".into(),
            group: None,
            argv: argv.iter().map(|a| (*a).to_owned()).collect(),
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            workdir: None,
            user: None,
            main: false,
            ready: None,
            resources: Default::default(),
            filesystem: None,
        }
    }

    #[test]
    fn a_program_no_mechanism_reaches_is_refused_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        // The ELF header of an i386 executable.
        let mut elf = vec![0u8; 84];
        elf[..4].copy_from_slice(b"\x7fELF");
        (elf[4], elf[5], elf[16], elf[18]) = (1, 1, 2, 3);
        let prog = dir.path().join("i386-prog");
        std::fs::write(&prog, elf).unwrap();
        let old = node(&[prog.to_str().unwrap(), "--serve"]);
        let why = refusal(&old, false, None).expect("refused");
        assert!(why.contains("another architecture"), "{why}");
        assert_eq!(refusal(&old, true, None), None, "allow_undilated lets it run");
        assert_eq!(refusal(&node(&["sh", "-c", "true"]), false, None), None, "the shim reaches a shell");
    }

    #[test]
    fn undilated_processes_are_confirmed_after_the_grace_only() {
        let mut c = NodeChecks::default();
        let t0 = Instant::now();
        let p = UndilatedProcess { pid: 7, program: "etcd".into(), reason: "Go".into() };
        let grace = Duration::from_secs(1);
        assert!(c.observe(vec![p.clone()], t0, grace).is_empty());
        // Gone before the grace ended (it exec'd a covered program): forgotten.
        assert!(c.observe(vec![], t0 + Duration::from_millis(500), grace).is_empty());
        assert!(c.observe(vec![p.clone()], t0 + Duration::from_millis(600), grace).is_empty());
        assert_eq!(c.observe(vec![p.clone()], t0 + Duration::from_millis(1700), grace), vec![p.clone()]);
        // Reported once per program and reason.
        let again = UndilatedProcess { pid: 8, ..p };
        assert!(c.observe(vec![again.clone()], t0, grace).is_empty());
        assert!(c.observe(vec![again], t0 + Duration::from_secs(2), grace).is_empty());
        assert_eq!(c.undilated.len(), 1);
    }

    #[test]
    fn clock_readings_are_judged_against_their_bracket() {
        let r = |observed_ns| ClockReading {
            observed_ns,
            expected_from_ns: 1_000_000_000,
            expected_to_ns: 1_005_000_000,
            real_ns: 10_000_000_000,
        };
        assert!(r(1_002_000_000).within_tolerance());
        assert_eq!(r(1_002_000_000).error_ns(), 0);
        assert!(r(1_000_000_000 - CLOCK_TOLERANCE_NS).within_tolerance());
        assert!(!r(10_000_000_000).within_tolerance());
        let mut c = NodeChecks::default();
        c.record_clock(r(1_500_000_000), Instant::now());
        c.record_clock(r(1_002_000_000), Instant::now());
        assert_eq!(c.clock_failure.map(|f| f.observed_ns), Some(1_500_000_000));
    }
}
