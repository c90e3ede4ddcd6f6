//! What a measurement run produces, as agents deliver it and the API returns it.
//!
//! A *run* is one firing of a task at one location, numbered by the location's sequence
//! number; it measures every endpoint of the task. Its result keeps each endpoint's raw
//! tool output beside the parsed figures.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::parse::{HttpTiming, PingStats, Trace};
use super::task::Measurement;

/// Parsed figures of one endpoint's measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Figures {
    Ping(PingStats),
    Traceroute(Trace),
    Http(HttpTiming),
    Dns { addresses: Vec<String>, lookup_ms: f64 },
    Exec { exit_code: Option<i32> },
}

/// One endpoint's measurement within a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointResult {
    pub endpoint: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The tool's standard output (and, on failure, its standard error).
    pub raw: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub figures: Option<Figures>,
    /// How long the measurement took, in the agent's (virtual) milliseconds.
    pub duration_ms: f64,
}

/// Where a run's time went at the agent (virtual milliseconds).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunTiming {
    /// From the firing until the agent took the job (queueing and polling).
    pub wait_ms: f64,
    /// An on-demand agent's start-up delay (0 for always-on agents).
    pub startup_ms: f64,
    /// Running the measurements.
    pub exec_ms: f64,
    /// An on-demand agent's teardown delay, spent after delivery while holding its slot.
    pub teardown_ms: f64,
}

/// The kind of agent that ran a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum AgentKind {
    /// Like a VM: always running, polls for work.
    AlwaysOn,
    /// Like a serverless function: each invocation pays a start-up and a teardown delay.
    OnDemand,
}

impl AgentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentKind::AlwaysOn => "always-on",
            AgentKind::OnDemand => "on-demand",
        }
    }
}

/// A unit of work handed to an agent: one run of a task at the agent's location.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub task_id: u64,
    pub location: String,
    pub seq: u64,
    pub measurement: Measurement,
    pub endpoints: Vec<String>,
    /// The firing this run belongs to.
    pub fire_time: DateTime<Utc>,
}

/// A run's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub task_id: u64,
    pub location: String,
    pub seq: u64,
    /// The agent that ran it; `None` when the server recorded a failure for a run no agent
    /// delivered.
    pub agent: Option<String>,
    pub agent_kind: Option<AgentKind>,
    pub fire_time: DateTime<Utc>,
    /// At least one endpoint was measured successfully.
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub timing: RunTiming,
    pub endpoints: Vec<EndpointResult>,
    /// When the agent finished the measurements.
    pub finished_at: DateTime<Utc>,
    /// When the server stored the result (set by the server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<DateTime<Utc>>,
    /// From the firing until the server stored the result: the end-to-end response time
    /// (set by the server, virtual milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_ms: Option<f64>,
}

/// Milliseconds from `a` to `b`.
pub fn ms_between(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    // Precision far beyond what a measurement needs.
    #[expect(clippy::cast_precision_loss, reason = "durations far below 2^53 ns")]
    let ms = b.signed_duration_since(a).num_nanoseconds().unwrap_or(i64::MAX) as f64 / 1e6;
    ms
}
