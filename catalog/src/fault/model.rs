//! Faults as written (`FaultDecl`, serde + JSON Schema) and as the engine runs them
//! ([`Fault`], [`Action`]).
//!
//! A fault is one mapping: `at` (virtual time since the run's epoch), an optional `for`
//! (undo after that long), an optional `name`, exactly one fault-type key naming its
//! targets, and that type's parameters: `{at: 10s, cpu: app0, fraction: 0.5, for: 5s}`.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::one_or_many::OneOrMany;
use crate::units::{self, Percent};

/// A signed duration (`-2s`, `500ms`) for clock steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[schemars(with = "String", description = "a signed duration such as 2s or -500ms")]
pub struct SignedDuration(pub i64);

impl<'de> Deserialize<'de> for SignedDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let text = match serde_yaml_ng::Value::deserialize(d)? {
            serde_yaml_ng::Value::String(s) => s,
            other => {
                return Err(D::Error::custom(format!("expected a signed duration such as 2s or -500ms, got {other:?}")))
            }
        };
        let t = text.trim();
        let (neg, body) = match t.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, t.strip_prefix('+').unwrap_or(t)),
        };
        let d = units::Duration::parse(body).map_err(|e| D::Error::custom(e.0))?;
        let ns = i64::try_from(d.as_nanos()).map_err(|_| D::Error::custom(format!("{text:?} is too large")))?;
        Ok(Self(if neg { -ns } else { ns }))
    }
}

/// A number (load: requests/s) or a link rate (`degrade`: `1Mbit`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RateValue {
    /// Requests per virtual second (`load`).
    Number(f64),
    /// A link rate such as `1Mbit` (`degrade`).
    Text(String),
}

/// Which direction(s) of a link a `degrade` changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum DirChoice {
    #[default]
    Both,
    Forward,
    Reverse,
}

/// One fault as written. Exactly one fault-type key (`kill` … `load`) must be present; it
/// names the targets. See docs/faults.md.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultDecl {
    /// Virtual time since the run's epoch, e.g. `10s`.
    pub at: Option<units::Duration>,
    /// Undo the fault after this long (virtual).
    #[serde(rename = "for")]
    pub for_: Option<units::Duration>,
    /// A label copied into events.
    pub name: Option<String>,
    /// SIGKILL the node(s): nodes, groups (`db`) or ranges (`db[0..3]`). Undo: restart.
    pub kill: Option<OneOrMany<String>>,
    /// Start the node(s) again (killing them first if running), with their readiness check.
    pub restart: Option<OneOrMany<String>>,
    /// SIGTERM the node(s), SIGKILL after the grace period. Undo: start.
    pub stop: Option<OneOrMany<String>>,
    /// Start stopped or killed node(s) again.
    pub start: Option<OneOrMany<String>>,
    /// Freeze the node(s) (cgroup freezer). Undo: resume.
    pub pause: Option<OneOrMany<String>>,
    /// Thaw paused node(s).
    pub resume: Option<OneOrMany<String>>,
    /// Cut the node(s)' CPU quota to `fraction` of the planned one. Undo: restore.
    pub cpu: Option<OneOrMany<String>>,
    /// Step (`step`) or skew (`skew`) the node(s)' virtual clock. Undo: step back / normal rate.
    pub clock: Option<OneOrMany<String>>,
    /// Take link(s) down. Undo: link_up.
    pub link_down: Option<OneOrMany<String>>,
    /// Bring link(s) back up.
    pub link_up: Option<OneOrMany<String>>,
    /// Cut the network between sides: each side a node, group, range or list of them.
    /// Undo: heal.
    pub partition: Option<Vec<OneOrMany<String>>>,
    /// `true`: undo the partition.
    pub heal: Option<bool>,
    /// Worsen link(s), or every access link of node(s): add `delay`/`jitter`/`loss`, cap `rate`.
    /// Undo: the previous parameters.
    pub degrade: Option<OneOrMany<String>>,
    /// Add `delay` to every packet the node(s) send. Undo: no extra delay.
    pub inflate: Option<OneOrMany<String>>,
    /// Set the offered rate (`rate`, requests/s) of load generator node(s) via `loadgen.ctl`.
    pub load: Option<OneOrMany<String>>,
    /// `cpu`: the fraction (0, 1] of the planned quota left to the node.
    pub fraction: Option<f64>,
    /// `clock`: offset of the step, e.g. `2s` or `-500ms`.
    pub step: Option<SignedDuration>,
    /// `clock`: rate of the node's clock relative to the others, e.g. 1.5 (50% fast).
    pub skew: Option<f64>,
    /// `degrade`: added delay; `inflate`: the extra delay.
    pub delay: Option<units::Duration>,
    /// `degrade`: added jitter.
    pub jitter: Option<units::Duration>,
    /// `degrade`: added loss probability.
    pub loss: Option<Percent>,
    /// `degrade`: rate cap (`1Mbit`); `load`: requests per virtual second.
    pub rate: Option<RateValue>,
    /// `degrade`: which direction(s) of a link (default both).
    pub dir: Option<DirChoice>,
}

/// What a fault does, resolved to node and link names.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Kill(Vec<String>),
    Restart(Vec<String>),
    Stop(Vec<String>),
    Start(Vec<String>),
    Pause(Vec<String>),
    Resume(Vec<String>),
    Cpu { nodes: Vec<String>, fraction: f64 },
    ClockStep { nodes: Vec<String>, offset_ns: i64 },
    ClockSkew { nodes: Vec<String>, rate: f64 },
    LinkDown(Vec<String>),
    LinkUp(Vec<String>),
    Partition(Vec<Vec<String>>),
    Heal,
    Degrade(Degrade),
    Inflate { nodes: Vec<String>, delay: Duration },
    Load { nodes: Vec<String>, rate: f64 },
}

/// A link degradation (perceived units).
#[derive(Debug, Clone, PartialEq)]
pub struct Degrade {
    pub links: Vec<String>,
    pub dir: DirChoice,
    pub delay: Duration,
    pub jitter: Duration,
    pub loss: f64,
    pub rate_bps: Option<u64>,
}

impl Action {
    /// The fault type as written (`kill`, `link_down`, …); clock faults are `clock`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Kill(_) => "kill",
            Self::Restart(_) => "restart",
            Self::Stop(_) => "stop",
            Self::Start(_) => "start",
            Self::Pause(_) => "pause",
            Self::Resume(_) => "resume",
            Self::Cpu { .. } => "cpu",
            Self::ClockStep { .. } | Self::ClockSkew { .. } => "clock",
            Self::LinkDown(_) => "link_down",
            Self::LinkUp(_) => "link_up",
            Self::Partition(_) => "partition",
            Self::Heal => "heal",
            Self::Degrade(_) => "degrade",
            Self::Inflate { .. } => "inflate",
            Self::Load { .. } => "load",
        }
    }

    /// Node or link names the fault acts on (partition: every node of every side).
    pub fn targets(&self) -> Vec<String> {
        match self {
            Self::Kill(n) | Self::Restart(n) | Self::Stop(n) | Self::Start(n) | Self::Pause(n) | Self::Resume(n) => {
                n.clone()
            }
            Self::Cpu { nodes, .. }
            | Self::ClockStep { nodes, .. }
            | Self::ClockSkew { nodes, .. }
            | Self::Inflate { nodes, .. }
            | Self::Load { nodes, .. } => nodes.clone(),
            Self::LinkDown(l) | Self::LinkUp(l) => l.clone(),
            Self::Degrade(d) => d.links.clone(),
            Self::Partition(sides) => sides.iter().flatten().cloned().collect(),
            Self::Heal => Vec::new(),
        }
    }

    /// Whether `for:` can undo it; explicit undos and `load` (no known previous rate) cannot.
    pub fn undoable(&self) -> bool {
        !matches!(
            self,
            Self::Restart(_) | Self::Start(_) | Self::Resume(_) | Self::LinkUp(_) | Self::Heal | Self::Load { .. }
        )
    }

    /// Whether it is itself an undo (its event is a `recover`).
    pub fn is_recovery(&self) -> bool {
        matches!(self, Self::Restart(_) | Self::Start(_) | Self::Resume(_) | Self::LinkUp(_) | Self::Heal)
    }

    /// Whether it needs the emulated network.
    pub fn is_network(&self) -> bool {
        matches!(
            self,
            Self::LinkDown(_)
                | Self::LinkUp(_)
                | Self::Partition(_)
                | Self::Heal
                | Self::Degrade(_)
                | Self::Inflate { .. }
        )
    }

    /// Parameters for the event record.
    pub fn params(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Self::Cpu { fraction, .. } => json!({"fraction": fraction}),
            Self::ClockStep { offset_ns, .. } => json!({"step_s": *offset_ns as f64 / 1e9}),
            Self::ClockSkew { rate, .. } => json!({"skew": rate}),
            Self::Partition(sides) => json!({"sides": sides}),
            Self::Degrade(d) => json!({
                "delay_s": d.delay.as_secs_f64(), "jitter_s": d.jitter.as_secs_f64(), "loss": d.loss,
                "rate_bps": d.rate_bps, "dir": d.dir,
            }),
            Self::Inflate { delay, .. } => json!({"delay_s": delay.as_secs_f64()}),
            Self::Load { rate, .. } => json!({"rate": rate}),
            _ => json!({}),
        }
    }
}

/// One fault of the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// Where it was written: `faults[3]` (topology) or `scenario.faults[3]`.
    pub id: String,
    pub name: Option<String>,
    /// Virtual time since the run's epoch.
    pub at: Duration,
    /// Undo after this long (virtual).
    pub undo_after: Option<Duration>,
    pub action: Action,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_durations_parse_both_ways() {
        let v: SignedDuration = serde_yaml_ng::from_str("-500ms").unwrap();
        assert_eq!(v.0, -500_000_000);
        let v: SignedDuration = serde_yaml_ng::from_str("2s").unwrap();
        assert_eq!(v.0, 2_000_000_000);
        assert!(serde_yaml_ng::from_str::<SignedDuration>("2").is_err());
    }

    #[test]
    fn undoability_and_kinds() {
        assert!(Action::Kill(vec![]).undoable());
        assert!(!Action::Restart(vec![]).undoable());
        assert!(!Action::Load { nodes: vec![], rate: 1.0 }.undoable());
        assert_eq!(Action::ClockSkew { nodes: vec![], rate: 2.0 }.kind(), "clock");
        assert!(Action::Heal.is_recovery() && Action::Heal.is_network());
        let p = Action::Partition(vec![vec!["a".into()], vec!["b".into(), "c".into()]]);
        assert_eq!(p.targets(), ["a", "b", "c"]);
    }
}
