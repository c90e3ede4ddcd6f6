//! Every constant of the balancer, with the defaults of the design (issue 14): a Maglev
//! table of 65,537 slots, a timeout ladder of 64 µs … 4 ms in 7 doubling steps, an
//! epoch of 64 ms, δ = 10 %. Times are virtual nanoseconds.

use std::fmt;
use std::str::FromStr;

use crate::maglev::DEFAULT_TABLE_SIZE;

/// How the balancer picks a backend for a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Static Maglev (what Katran and Cilium do by default).
    Maglev,
    /// Maglev whose slot shares the δ-shift controller moves on in-band latency estimates.
    Inband,
}

impl Policy {
    /// The names accepted by [`Policy::from_str`].
    pub const NAMES: [&'static str; 2] = ["maglev", "inband"];
}

impl FromStr for Policy {
    type Err = UnknownPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "maglev" => Ok(Self::Maglev),
            "inband" => Ok(Self::Inband),
            other => Err(UnknownPolicy(other.to_owned())),
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Maglev => "maglev",
            Self::Inband => "inband",
        })
    }
}

/// A policy name that is not one of [`Policy::NAMES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parse balancer policy `{0}`: expected one of maglev, inband")]
pub struct UnknownPolicy(pub String);

/// How a backend's latency samples become its estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Aggregation {
    /// Exponentially weighted moving average; each sample has weight `alpha` (0 < α ≤ 1).
    Ewma { alpha: f64 },
    /// Median of the backend's last `window` samples.
    WindowMedian { window: usize },
}

impl Default for Aggregation {
    fn default() -> Self {
        // The median of a backend's last 64 samples (decision 033): a client's latencies
        // have a long tail (CV about 1 under memcached), and an EWMA of weight 1/8 moves
        // with every outlier, so the controller drained equal backends on noise. 64
        // samples are 6-13 ms of a backend's traffic in the experiment; the median moves
        // once half of them have.
        Self::WindowMedian { window: 64 }
    }
}

/// Which client packets take part in FIXEDTIMEOUT's batch timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Timed {
    /// Packets that carry payload; a connection's opening SYN starts its timing. Pure
    /// ACKs, bare FINs and RSTs are passed over (decision 033).
    #[default]
    Data,
    /// Every packet (the literal FIXEDTIMEOUT).
    All,
}

impl Timed {
    /// The names accepted by [`Timed::from_str`].
    pub const NAMES: [&'static str; 2] = ["data", "all"];
}

impl FromStr for Timed {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "data" => Ok(Self::Data),
            "all" => Ok(Self::All),
            other => Err(format!("parse timed packets `{other}`: expected one of data, all")),
        }
    }
}

/// ENSEMBLETIMEOUT constants.
#[derive(Debug, Clone, PartialEq)]
pub struct EstimatorConfig {
    /// The FIXEDTIMEOUT timeouts run side by side, ascending (ns).
    pub ladder_ns: Vec<u64>,
    /// The epoch E over which sample counts are compared (ns).
    pub epoch_ns: u64,
    /// Index into the ladder used before the first epoch has ended.
    pub initial_index: usize,
    /// An epoch with fewer samples than this at every rung keeps the previous choice.
    pub min_epoch_samples: u64,
    pub aggregation: Aggregation,
    /// Which packets are timed.
    pub timed: Timed,
    /// From the rung at the sample cliff, step down to the rung below while that one
    /// counted more than `1 + plateau` times as many samples: the chosen rung is the end
    /// of the plateau of counts below the round trip, not a rung inside the collapse
    /// (decision 033).
    pub plateau: f64,
}

impl Default for EstimatorConfig {
    fn default() -> Self {
        Self {
            ladder_ns: (0..7).map(|i| 64_000u64 << i).collect(),
            epoch_ns: 64_000_000,
            initial_index: 3,
            min_epoch_samples: 8,
            aggregation: Aggregation::default(),
            timed: Timed::default(),
            plateau: 0.1,
        }
    }
}

/// δ-shift controller constants.
#[derive(Debug, Clone, PartialEq)]
pub struct ControllerConfig {
    /// Fraction of the total share moved per step (δ).
    pub delta: f64,
    /// No backend's share is driven below this fraction, so a slow backend keeps
    /// receiving a trickle of new connections and its recovery is measured.
    pub floor: f64,
    /// The slowest backend is drained only if its estimate exceeds the mean of the others
    /// by this factor (1.25 = 25 % slower); within it, shares relax towards the weights.
    pub tolerance: f64,
    /// At most one step per this much virtual time (ns), so one burst of samples cannot
    /// drain a backend before the estimates have moved.
    pub min_interval_ns: u64,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self { delta: 0.10, floor: 0.02, tolerance: 1.25, min_interval_ns: 1_000_000 }
    }
}

/// Everything a [`crate::Balancer`] needs besides its backends.
#[derive(Debug, Clone, PartialEq)]
pub struct BalancerConfig {
    pub policy: Policy,
    /// Maglev table size (prime).
    pub table_size: u32,
    /// A connection idle this long is forgotten (ns).
    pub idle_timeout_ns: u64,
    /// Opening SYNs seen again for a connection still waiting for its handshake before
    /// its backend is marked down (the balancer's in-band failure detector).
    pub syn_retries_to_fail: u32,
    /// An opening SYN followed by nothing at all on its tuple for this long (ns) counts as
    /// a failure of its backend too: a backend whose host is up but whose service is gone
    /// answers with a reset, and the client then abandons the tuple instead of
    /// retransmitting. Longer than the client kernel's first SYN retransmission (1 s real,
    /// at most 1 s virtual) so that one silence is not counted twice.
    pub handshake_timeout_ns: u64,
    /// A backend marked down is given its floor share back after this long (ns), so it is
    /// tried again.
    pub down_hold_ns: u64,
    pub estimator: EstimatorConfig,
    pub controller: ControllerConfig,
}

impl Default for BalancerConfig {
    fn default() -> Self {
        Self {
            policy: Policy::Maglev,
            table_size: DEFAULT_TABLE_SIZE,
            idle_timeout_ns: 30_000_000_000,
            syn_retries_to_fail: 2,
            handshake_timeout_ns: 3_000_000_000,
            down_hold_ns: 10_000_000_000,
            estimator: EstimatorConfig::default(),
            controller: ControllerConfig::default(),
        }
    }
}
