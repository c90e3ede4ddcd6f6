//! The topology file as written: serde types with `deny_unknown_fields`, and the JSON Schema
//! (`diorama schema`) derived from them.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::one_or_many::OneOrMany;
use crate::units::{Bytes, Duration, Percent, Rate};

/// Declares a struct with the link parameters (rate, delay, jitter, loss, queue, jitter
/// distribution, Gilbert–Elliott loss, reorder, duplicate, corrupt) after its own fields, and
/// `params()` to take them out as a [`LinkParamsDecl`]. The fields are written once here.
///
/// # Design
/// Not `#[serde(flatten)]`: serde does not support `deny_unknown_fields` with `flatten`, and
/// a misspelt link field must stay an error with its position.
macro_rules! link_fields {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
            pub rate: Option<Rate>,
            pub delay: Option<Duration>,
            pub jitter: Option<Duration>,
            pub loss: Option<Percent>,
            /// Queue limit: bytes (`100KB`) or packets (`100p`/`100 packets`).
            pub queue: Option<QueueDecl>,
            /// Jitter distribution, as netem: `uniform` (default), `normal`, `pareto-normal`.
            pub jitter_dist: Option<JitterDistDecl>,
            /// Bursty loss (netem's `loss gemodel`); exclusive with `loss`.
            pub gilbert_elliott: Option<GilbertElliottDecl>,
            /// Share of packets sent without the delay (netem's `reorder`; needs a delay).
            pub reorder: Option<Percent>,
            /// Share of packets delivered twice.
            pub duplicate: Option<Percent>,
            /// Share of packets with one bit flipped in their payload.
            pub corrupt: Option<Percent>,
        }

        impl $name {
            /// The link parameters alone.
            pub fn params(&self) -> LinkParamsDecl {
                LinkParamsDecl {
                    rate: self.rate,
                    delay: self.delay,
                    jitter: self.jitter,
                    loss: self.loss,
                    queue: self.queue.clone(),
                    jitter_dist: self.jitter_dist,
                    gilbert_elliott: self.gilbert_elliott,
                    reorder: self.reorder,
                    duplicate: self.duplicate,
                    corrupt: self.corrupt,
                }
            }
        }
    };
}

/// `tdf: auto` or a positive number.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum TdfChoice {
    #[default]
    Auto,
    Fixed(f64),
}

impl TdfChoice {
    /// `None` for auto.
    pub fn fixed(&self) -> Option<f64> {
        match self {
            Self::Fixed(t) => Some(*t),
            Self::Auto => None,
        }
    }
}

impl Serialize for TdfChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Auto => s.serialize_str("auto"),
            Self::Fixed(t) => s.serialize_f64(*t),
        }
    }
}

impl<'de> Deserialize<'de> for TdfChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match serde_yaml_ng::Value::deserialize(d)? {
            serde_yaml_ng::Value::String(s) if s == "auto" => Ok(Self::Auto),
            serde_yaml_ng::Value::Number(n) => match n.as_f64() {
                Some(t) if t.is_finite() && t > 0.0 => Ok(Self::Fixed(t)),
                _ => Err(D::Error::custom(format!("TDF must be a positive number, got {n}"))),
            },
            other => Err(D::Error::custom(format!("expected a positive number or `auto`, got {other:?}"))),
        }
    }
}

impl JsonSchema for TdfChoice {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TdfChoice".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "time-dilation factor: `auto` or a positive number",
            "anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"const": "auto"}]
        })
    }
}

/// A host of the inventory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum HostDecl {
    /// `local`: this machine, measured.
    Name(String),
    Spec(HostSpec),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    pub name: String,
    /// CPU cores (default: measured, for `local`).
    pub cores: Option<f64>,
    pub memory: Option<Bytes>,
}

/// A command as an argv list or a shell string (run with `sh -c`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum CommandDecl {
    Argv(Vec<String>),
    Shell(String),
}

impl CommandDecl {
    pub fn argv(&self) -> Vec<String> {
        match self {
            Self::Argv(v) => v.clone(),
            Self::Shell(s) => vec!["sh".into(), "-c".into(), s.clone()],
        }
    }
}

/// What a node runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RunDecl {
    pub command: Option<CommandDecl>,
    /// A workload program of diorama (`loadgen`, `isaac`, `lb`, …): runs `diorama-<name>`.
    pub workload: Option<String>,
    /// Workload arguments, passed as `--key value` flags.
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub args: Option<serde_yaml_ng::Mapping>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
}

/// A readiness check; the node counts as started once it passes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadyDecl {
    /// A TCP port listening inside the node.
    pub tcp: Option<u16>,
    /// A command run inside the node that must exit 0.
    pub command: Option<CommandDecl>,
    /// A fixed (virtual) wait.
    pub delay: Option<Duration>,
    /// Give up after this long (virtual; default 60s).
    pub timeout: Option<Duration>,
}

/// Disk throttles (perceived figures; divided by the TDF).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiskDecl {
    /// Bytes/s, e.g. `100MB` per second.
    pub read_bps: Option<Bytes>,
    pub write_bps: Option<Bytes>,
    pub iops: Option<u64>,
    /// The block device throttled (default: the one holding the results directory).
    pub device: Option<String>,
}

link_fields! {
    /// Parameters of one direction of a link.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
    #[serde(deny_unknown_fields)]
    pub struct LinkParamsDecl {}
}

/// A jitter distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "kebab-case")]
pub enum JitterDistDecl {
    #[default]
    Uniform,
    Normal,
    ParetoNormal,
}

/// Gilbert–Elliott loss: a good and a bad state (netem's `loss gemodel p r 1-h 1-k`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GilbertElliottDecl {
    /// Probability of moving from the good to the bad state, per packet.
    pub p: Percent,
    /// Probability of moving from the bad to the good state, per packet.
    pub r: Percent,
    /// Loss in the good state (default 0%).
    pub loss_good: Option<Percent>,
    /// Loss in the bad state (default 100%).
    pub loss_bad: Option<Percent>,
}

/// A queue limit in bytes or packets.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub enum QueueDecl {
    Bytes(u64),
    Packets(u64),
}

impl<'de> Deserialize<'de> for QueueDecl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_yaml_ng::Value::deserialize(d)?;
        let text = match &value {
            serde_yaml_ng::Value::String(s) => s.trim().to_owned(),
            serde_yaml_ng::Value::Number(n) => n.to_string(),
            _ => return Err(serde::de::Error::custom("expected a queue limit such as 100KB or 100 packets")),
        };
        for suffix in ["packets", "packet", "pkts", "p"] {
            if let Some(n) = text.strip_suffix(suffix) {
                return n
                    .trim()
                    .parse()
                    .map(QueueDecl::Packets)
                    .map_err(|_| serde::de::Error::custom(format!("{text:?}: expected a whole number of packets")));
            }
        }
        Bytes::parse(&text).map(|b| QueueDecl::Bytes(b.0)).map_err(|e| serde::de::Error::custom(e.0))
    }
}

link_fields! {
    /// A node's access link to a switch or another node.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct AccessLinkDecl {
        pub to: String,
    }
}

/// How the members of a group are placed on hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// Fill hosts first-fit (default).
    #[default]
    Pack,
    /// Spread members over hosts.
    Spread,
}

/// Node fields; also the type of `defaults` (where `name` is refused).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct NodeDecl {
    /// `web` or a group `web[0..6]` (web0 … web5).
    pub name: Option<String>,
    /// Cores of the original machine (default 1).
    pub cpus: Option<f64>,
    /// Memory limit (default 512MiB); not scaled.
    pub memory: Option<Bytes>,
    pub disk: Option<DiskDecl>,
    pub pids: Option<u64>,
    pub run: Option<RunDecl>,
    /// The run succeeds when every main node exits 0, and ends when all have exited.
    pub main: Option<bool>,
    pub depends_on: Option<Vec<String>>,
    pub ready: Option<ReadyDecl>,
    pub link: Option<OneOrMany<AccessLinkDecl>>,
    pub placement: Option<Placement>,
    /// The node's own view of the host's files: private directories and read-only host
    /// paths (every node sees the run's results and state read-only except its own
    /// directory, with or without it; `docs/security.md`).
    pub filesystem: Option<FilesystemDecl>,
}

/// A node's filesystem view: private directories and read-only host paths (absolute).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct FilesystemDecl {
    /// Directories that get a fresh, empty tmpfs only this node sees (e.g. `/tmp`).
    #[serde(default)]
    pub private: Vec<String>,
    /// Host paths the node sees read-only, with everything mounted below them.
    #[serde(default)]
    pub read_only: Vec<String>,
}

link_fields! {
    /// A link between two switches or nodes.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct LinkDecl {
        pub between: [String; 2],
        /// A name for faults to refer to (default `a--b`).
        pub name: Option<String>,
        /// Overrides for the direction from the first to the second endpoint.
        pub forward: Option<LinkParamsDecl>,
        /// Overrides for the direction from the second to the first endpoint.
        pub reverse: Option<LinkParamsDecl>,
    }
}

/// Settings of the emulated network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct NetworkDecl {
    /// Private IPv4 prefix nodes get addresses from (default 10.77.0.0/16).
    pub prefix: Option<String>,
    /// `auto`, `userspace` or `kernel`.
    pub backend: Option<String>,
}

/// A topology file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TopologyDecl {
    pub name: String,
    /// `auto` (default) or a number.
    #[serde(default)]
    pub tdf: TdfChoice,
    /// Virtual duration of a run.
    pub duration: Option<Duration>,
    /// Host inventory (default: this machine).
    pub hosts: Option<Vec<HostDecl>>,
    /// Share of host cores the plan may use (default 0.9).
    pub headroom: Option<f64>,
    /// CFS period (default 100ms); the planner lengthens it where the quota would be < 1 ms.
    pub cpu_period: Option<Duration>,
    /// Virtual time between SIGTERM and SIGKILL at shutdown (default 2s).
    pub grace: Option<Duration>,
    /// Run a node whose program no dilation mechanism reaches (another architecture's
    /// binary) undilated instead of refusing the run (default false). Recorded in
    /// `run.json` and flagged in the fidelity verdict.
    pub allow_undilated: Option<bool>,
    #[serde(default)]
    pub defaults: NodeDecl,
    #[serde(default)]
    pub switches: Vec<String>,
    pub nodes: Vec<NodeDecl>,
    #[serde(default)]
    pub links: Vec<LinkDecl>,
    pub network: Option<NetworkDecl>,
    /// L4 balancers in the emulated data path (docs/l4lb.md).
    #[serde(default)]
    pub balancers: Vec<super::balancers::BalancerDecl>,
    /// Fault timeline (see docs/faults.md).
    #[serde(default)]
    #[schemars(with = "Vec<crate::fault::FaultDecl>")]
    pub faults: Vec<serde_yaml_ng::Value>,
}
