//! The task model: what a measurement task is, its states and the only legal transitions.
//!
//! A task names a measurement ([`Measurement`]), the endpoints it measures, the locations
//! (regions or agent groups) it runs from, and a [`TaskType`] that says when it runs.
//!
//! # Invariants
//! - A task's state changes only through [`State::apply`], which refuses every transition
//!   the lifecycle does not allow; the API answers such a refusal with 409.
//! - CANCELED, FINISHED and FAILED are terminal.
//! - FAILED means every location failed: no run at any location delivered a successful
//!   measurement ([`LocationTally::task_outcome`]).
//!
//! # Design
//! The lifecycle after CLAIM and RIPE Atlas measurements: a task is SCHEDULED until its
//! first firing dispatches runs, RUNNING while runs are due or outstanding, and then ends
//! FINISHED or FAILED by its tally; a user may cancel it only while it is SCHEDULED or
//! RUNNING. A scheduled window that closes before its first firing (a cron expression that
//! never matches between STARTTIME and STOPTIME) ends SCHEDULED → FINISHED with no runs.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// When a task runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskType {
    /// Once, now.
    #[serde(rename = "ONE-OFF")]
    OneOff,
    /// Every `interval` from now (until `stop_time` if given, else until canceled).
    #[serde(rename = "RECURRING")]
    Recurring,
    /// Once, at `start_time`.
    #[serde(rename = "ONE-OFF-SCHEDULED")]
    OneOffScheduled,
    /// From `start_time` to `stop_time`, at every match of `cron`.
    #[serde(rename = "RECURRING-SCHEDULED")]
    RecurringScheduled,
}

impl TaskType {
    /// The wire name (`ONE-OFF`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::OneOff => "ONE-OFF",
            TaskType::Recurring => "RECURRING",
            TaskType::OneOffScheduled => "ONE-OFF-SCHEDULED",
            TaskType::RecurringScheduled => "RECURRING-SCHEDULED",
        }
    }

    /// Parses a wire name.
    pub fn parse(text: &str) -> Option<Self> {
        [TaskType::OneOff, TaskType::Recurring, TaskType::OneOffScheduled, TaskType::RecurringScheduled]
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(text))
    }
}

/// A task's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    Scheduled,
    Running,
    Canceled,
    Finished,
    Failed,
}

/// What happens to a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The first firing dispatched runs.
    Start,
    /// A user cancels it.
    Cancel,
    /// No firing is left and no run is outstanding, and some location succeeded (or the
    /// window closed before any firing).
    Finish,
    /// No firing is left and no run is outstanding, and every location failed.
    Fail,
}

/// A transition the lifecycle does not allow (answered with 409).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} a task in state {}: {reason}", event_verb(*.event), .from.as_str())]
pub struct IllegalTransition {
    pub from: State,
    pub event: Event,
    pub reason: &'static str,
}

fn event_verb(event: Event) -> &'static str {
    match event {
        Event::Start => "start",
        Event::Cancel => "cancel",
        Event::Finish => "finish",
        Event::Fail => "fail",
    }
}

impl State {
    /// The wire name (`SCHEDULED`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Scheduled => "SCHEDULED",
            State::Running => "RUNNING",
            State::Canceled => "CANCELED",
            State::Finished => "FINISHED",
            State::Failed => "FAILED",
        }
    }

    /// Parses a wire name.
    pub fn parse(text: &str) -> Option<Self> {
        [State::Scheduled, State::Running, State::Canceled, State::Finished, State::Failed]
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(text))
    }

    /// True for CANCELED, FINISHED and FAILED.
    pub fn is_terminal(self) -> bool {
        matches!(self, State::Canceled | State::Finished | State::Failed)
    }

    /// The state after `event`, or why the lifecycle refuses it.
    pub fn apply(self, event: Event) -> Result<State, IllegalTransition> {
        use {Event as E, State as S};
        let refuse = |reason| Err(IllegalTransition { from: self, event, reason });
        match (self, event) {
            (S::Scheduled, E::Start) => Ok(S::Running),
            (S::Scheduled | S::Running, E::Cancel) => Ok(S::Canceled),
            (S::Scheduled | S::Running, E::Finish) => Ok(S::Finished),
            (S::Running, E::Fail) => Ok(S::Failed),
            (S::Scheduled, E::Fail) => refuse("a task that never ran has no failed location"),
            (S::Running, E::Start) => refuse("the task is already running"),
            (S::Canceled, _) => refuse("the task was canceled"),
            (S::Finished, _) => refuse("the task has finished"),
            (S::Failed, _) => refuse("the task has failed"),
        }
    }
}

/// The measurement a task runs at each location against each endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Measurement {
    /// `ping -c COUNT`: RTT min/avg/max and loss.
    Ping {
        #[serde(default = "default_ping_count")]
        count: u32,
    },
    /// `traceroute`: per-hop addresses and RTTs.
    Traceroute {
        #[serde(default = "default_max_hops")]
        max_hops: u32,
    },
    /// `curl` GET of `http://ENDPOINT[:port]/path`: the timing phases.
    Http {
        #[serde(default = "default_path")]
        path: String,
        #[serde(default)]
        port: Option<u16>,
    },
    /// A name lookup of the endpoint through the node's resolver.
    Dns,
    /// An arbitrary command line; `{endpoint}` in an argument is replaced by the endpoint.
    Exec { argv: Vec<String> },
}

fn default_ping_count() -> u32 {
    3
}
fn default_max_hops() -> u32 {
    16
}
fn default_path() -> String {
    "/".into()
}

impl Measurement {
    /// The measurement's short name (`ping`, `traceroute`, `http`, `dns`, `exec`).
    pub fn name(&self) -> &'static str {
        match self {
            Measurement::Ping { .. } => "ping",
            Measurement::Traceroute { .. } => "traceroute",
            Measurement::Http { .. } => "http",
            Measurement::Dns => "dns",
            Measurement::Exec { .. } => "exec",
        }
    }
}

/// Per-location counts of runs, kept with the task so a restarted server knows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationTally {
    /// The sequence number the next run at this location gets (the first run is 1).
    pub next_seq: u64,
    /// Runs that delivered at least one successful measurement.
    pub ok_runs: u64,
    /// Runs that failed (every endpoint failed, no agent, or the agent vanished).
    pub failed_runs: u64,
}

impl LocationTally {
    /// A fresh tally: the first run will be sequence number 1.
    pub fn new() -> Self {
        Self { next_seq: 1, ok_runs: 0, failed_runs: 0 }
    }

    /// Takes the next sequence number. Numbers are dense and strictly increasing per
    /// location, never reused, even across server restarts (the tally is persisted with
    /// the task before the run is dispatched).
    pub fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq.max(1);
        self.next_seq = seq + 1;
        seq
    }

    /// The event that ends a task whose runs are all done, given its locations' tallies:
    /// [`Event::Fail`] when every location failed, else [`Event::Finish`].
    pub fn task_outcome<'a>(tallies: impl IntoIterator<Item = &'a LocationTally>) -> Event {
        let mut any = false;
        let mut all_failed = true;
        for t in tallies {
            any = true;
            if t.ok_runs > 0 || t.failed_runs == 0 {
                all_failed = false;
            }
        }
        if any && all_failed {
            Event::Fail
        } else {
            Event::Finish
        }
    }
}

/// A task as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: u64,
    #[serde(rename = "type")]
    pub kind: TaskType,
    pub state: State,
    pub measurement: Measurement,
    pub endpoints: Vec<String>,
    pub locations: Vec<String>,
    /// RECURRING: seconds between firings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The last firing the scheduler handled (dispatched or, on catch-up, skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fire: Option<DateTime<Utc>>,
    /// The next firing, if any is left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_fire: Option<DateTime<Utc>>,
    /// Firings the scheduler skipped under the catch-up policy (docs/probes.md).
    #[serde(default)]
    pub skipped_firings: u64,
    pub tally: BTreeMap<String, LocationTally>,
    /// Why the task is in its state, for terminal states.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Task {
    /// Applies `event`, recording `reason`.
    pub fn transition(&mut self, event: Event, reason: Option<String>) -> Result<(), IllegalTransition> {
        self.state = self.state.apply(event)?;
        if reason.is_some() {
            self.reason = reason;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATES: [State; 5] = [State::Scheduled, State::Running, State::Canceled, State::Finished, State::Failed];
    const EVENTS: [Event; 4] = [Event::Start, Event::Cancel, Event::Finish, Event::Fail];

    #[test]
    fn every_transition_legal_and_illegal() {
        use {Event as E, State as S};
        let legal = [
            (S::Scheduled, E::Start, S::Running),
            (S::Scheduled, E::Cancel, S::Canceled),
            (S::Scheduled, E::Finish, S::Finished),
            (S::Running, E::Cancel, S::Canceled),
            (S::Running, E::Finish, S::Finished),
            (S::Running, E::Fail, S::Failed),
        ];
        let mut checked = 0;
        for from in STATES {
            for event in EVENTS {
                checked += 1;
                match legal.iter().find(|(f, e, _)| *f == from && *e == event) {
                    Some((_, _, to)) => {
                        assert_eq!(from.apply(event), Ok(*to), "{from:?} {event:?}")
                    }
                    None => {
                        let err = from.apply(event).unwrap_err();
                        assert_eq!((err.from, err.event), (from, event));
                        assert!(!err.reason.is_empty());
                    }
                }
            }
        }
        assert_eq!(checked, 20);
    }

    #[test]
    fn cancel_only_from_scheduled_or_running() {
        for from in STATES {
            assert_eq!(
                from.apply(Event::Cancel).is_ok(),
                matches!(from, State::Scheduled | State::Running),
                "{from:?}"
            );
        }
        let err = State::Finished.apply(Event::Cancel).unwrap_err();
        assert_eq!(err.to_string(), "cancel a task in state FINISHED: the task has finished");
    }

    #[test]
    fn terminal_states_accept_nothing() {
        for from in STATES.into_iter().filter(|s| s.is_terminal()) {
            for event in EVENTS {
                assert!(from.apply(event).is_err());
            }
        }
    }

    #[test]
    fn sequence_numbers_start_at_one_and_never_repeat() {
        let mut t = LocationTally::new();
        let seqs: Vec<u64> = (0..5).map(|_| t.take_seq()).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
        // A tally restored from an old record with next_seq 0 still starts at 1.
        let mut restored = LocationTally { next_seq: 0, ..LocationTally::default() };
        assert_eq!(restored.take_seq(), 1);
        // Persisted and restored: numbering continues.
        let json = serde_json::to_string(&t).unwrap();
        let mut back: LocationTally = serde_json::from_str(&json).unwrap();
        assert_eq!(back.take_seq(), 6);
    }

    #[test]
    fn sequence_numbers_are_per_location() {
        let mut tally: BTreeMap<String, LocationTally> =
            ["eu", "us"].into_iter().map(|l| (l.to_owned(), LocationTally::new())).collect();
        let mut take = |l: &str| tally.get_mut(l).map(LocationTally::take_seq).unwrap();
        assert_eq!([take("eu"), take("eu"), take("us"), take("eu"), take("us")], [1, 2, 1, 3, 2]);
    }

    #[test]
    fn outcome_fails_only_when_every_location_failed() {
        let failed = LocationTally { next_seq: 3, ok_runs: 0, failed_runs: 2 };
        let ok = LocationTally { next_seq: 3, ok_runs: 1, failed_runs: 1 };
        assert_eq!(LocationTally::task_outcome([&failed, &failed]), Event::Fail);
        assert_eq!(LocationTally::task_outcome([&failed, &ok]), Event::Finish);
        // A location that never ran (window closed) has not failed.
        assert_eq!(LocationTally::task_outcome([&failed, &LocationTally::new()]), Event::Finish);
        assert_eq!(LocationTally::task_outcome([]), Event::Finish);
    }

    #[test]
    fn wire_names_round_trip() {
        for t in [TaskType::OneOff, TaskType::Recurring, TaskType::OneOffScheduled, TaskType::RecurringScheduled] {
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
            assert_eq!(TaskType::parse(t.as_str()), Some(t));
        }
        for s in STATES {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.as_str()));
            assert_eq!(State::parse(&s.as_str().to_lowercase()), Some(s));
        }
        let m: Measurement = serde_json::from_str(r#"{"kind":"ping"}"#).unwrap();
        assert_eq!(m, Measurement::Ping { count: 3 });
    }
}
