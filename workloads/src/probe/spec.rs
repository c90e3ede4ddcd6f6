//! A task as a client submits it, and its validation into a [`Task`].
//!
//! # Invariants
//! Validation reports every problem at once, each naming the field (`cron`, `stop_time`,
//! `locations[2]`, …); the API answers them with 400 and the CLI prints them the same way.
//! A spec that validates yields a task whose schedule fields are complete for its type.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::task::{LocationTally, Measurement, State, Task, TaskType};
use crate::loadgen::units::parse_duration_ns;

/// What a client submits to create a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    #[serde(rename = "type")]
    pub kind: TaskType,
    pub measurement: Measurement,
    #[serde(default)]
    pub endpoints: Vec<String>,
    #[serde(default)]
    pub locations: Vec<String>,
    /// RECURRING: the interval, with a unit (`30s`, `1m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_time: Option<DateTime<Utc>>,
    /// RECURRING-SCHEDULED: a five-field cron expression (six with seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
}

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Parses a cron expression as the scheduler does (5 fields, or 6 with seconds first).
pub fn parse_cron(text: &str) -> Result<croner::Cron, String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(text)
        .map_err(|e| e.to_string())
}

/// Checks `spec` against the known `locations` at virtual time `now` and builds the task
/// `id`, or returns every problem found.
pub fn validate(
    spec: &TaskSpec,
    id: u64,
    known_locations: &[String],
    now: DateTime<Utc>,
) -> Result<Task, Vec<FieldError>> {
    let mut errors = Vec::new();
    if spec.endpoints.is_empty() {
        errors.push(FieldError::new("endpoints", "must list at least one endpoint"));
    }
    for (i, e) in spec.endpoints.iter().enumerate() {
        if e.trim().is_empty() || e.chars().any(char::is_whitespace) {
            errors.push(FieldError::new(format!("endpoints[{i}]"), format!("{e:?} is not a host name or address")));
        }
    }
    if spec.locations.is_empty() {
        errors.push(FieldError::new("locations", "must list at least one location"));
    }
    for (i, l) in spec.locations.iter().enumerate() {
        if !known_locations.iter().any(|k| k == l) {
            errors.push(FieldError::new(
                format!("locations[{i}]"),
                format!("unknown location {l:?} (known: {})", known_locations.join(", ")),
            ));
        }
        if spec.locations[..i].contains(l) {
            errors.push(FieldError::new(format!("locations[{i}]"), format!("location {l:?} is listed twice")));
        }
    }
    match &spec.measurement {
        Measurement::Ping { count: 0 } => errors.push(FieldError::new("measurement.count", "must be at least 1")),
        Measurement::Traceroute { max_hops } if *max_hops == 0 || *max_hops > 255 => {
            errors.push(FieldError::new("measurement.max_hops", "must be 1 to 255"))
        }
        Measurement::Http { path, .. } if !path.starts_with('/') => {
            errors.push(FieldError::new("measurement.path", "must start with /"))
        }
        Measurement::Exec { argv } if argv.is_empty() => {
            errors.push(FieldError::new("measurement.argv", "must name a program"))
        }
        _ => {}
    }

    let mut interval_s = None;
    let needs = |field: &str, what: &str| FieldError::new(field, format!("is required for a {what} task"));
    let forbids = |field: &str, what: &str| FieldError::new(field, format!("does not apply to a {what} task"));
    let kind = spec.kind.as_str();
    match spec.kind {
        TaskType::OneOff => {
            if spec.start_time.is_some() {
                errors.push(forbids("start_time", kind));
            }
            if spec.stop_time.is_some() {
                errors.push(forbids("stop_time", kind));
            }
        }
        TaskType::Recurring => match &spec.interval {
            None => errors.push(needs("interval", kind)),
            Some(text) => match parse_duration_ns(text) {
                Ok(0) => errors.push(FieldError::new("interval", "must be positive")),
                // Display precision only: schedules compute in whole nanoseconds below.
                #[expect(clippy::cast_precision_loss, reason = "an interval far below 2^53 ns")]
                Ok(ns) => interval_s = Some(ns as f64 / 1e9),
                Err(e) => errors.push(FieldError::new("interval", e.to_string())),
            },
        },
        TaskType::OneOffScheduled => {
            if spec.start_time.is_none() {
                errors.push(needs("start_time", kind));
            }
            if spec.stop_time.is_some() {
                errors.push(forbids("stop_time", kind));
            }
        }
        TaskType::RecurringScheduled => {
            if spec.start_time.is_none() {
                errors.push(needs("start_time", kind));
            }
            if spec.stop_time.is_none() {
                errors.push(needs("stop_time", kind));
            }
            match &spec.cron {
                None => errors.push(needs("cron", kind)),
                Some(text) => {
                    if let Err(e) = parse_cron(text) {
                        errors.push(FieldError::new("cron", format!("invalid cron expression {text:?}: {e}")));
                    }
                }
            }
        }
    }
    if spec.kind != TaskType::RecurringScheduled && spec.cron.is_some() {
        errors.push(forbids("cron", kind));
    }
    if spec.kind != TaskType::Recurring && spec.interval.is_some() {
        errors.push(forbids("interval", kind));
    }
    if let (Some(start), Some(stop)) = (spec.start_time, spec.stop_time) {
        if stop <= start {
            errors.push(FieldError::new("stop_time", format!("{stop} is not after start_time {start}")));
        }
    }
    if let Some(stop) = spec.stop_time {
        if stop <= now {
            errors.push(FieldError::new("stop_time", format!("{stop} has already passed (now is {now})")));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let tally: BTreeMap<String, LocationTally> =
        spec.locations.iter().map(|l| (l.clone(), LocationTally::new())).collect();
    Ok(Task {
        id,
        kind: spec.kind,
        state: State::Scheduled,
        measurement: spec.measurement.clone(),
        endpoints: spec.endpoints.clone(),
        locations: spec.locations.clone(),
        interval_s,
        start_time: spec.start_time,
        stop_time: spec.stop_time,
        cron: spec.cron.clone(),
        created_at: now,
        last_fire: None,
        next_fire: None,
        skipped_firings: 0,
        tally,
        reason: None,
    })
}

impl FromStr for TaskSpec {
    type Err = String;
    /// Parses JSON text (the API's body).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json::from_str(s).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }
    fn known() -> Vec<String> {
        vec!["eu".into(), "us".into(), "ap".into()]
    }
    fn spec(json: &str) -> TaskSpec {
        serde_json::from_str(json).unwrap()
    }
    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn a_valid_recurring_task() {
        let s = spec(
            r#"{"type":"RECURRING","measurement":{"kind":"ping"},"endpoints":["ep0"],"locations":["eu","us"],"interval":"30s"}"#,
        );
        let t = validate(&s, 7, &known(), now()).unwrap();
        assert_eq!((t.id, t.state, t.interval_s), (7, State::Scheduled, Some(30.0)));
        assert_eq!(t.tally.len(), 2);
        assert_eq!(t.tally["eu"].next_seq, 1);
    }

    #[test]
    fn bad_input_names_each_field() {
        let s = spec(
            r#"{"type":"RECURRING-SCHEDULED","measurement":{"kind":"ping"},"endpoints":[],"locations":["eu","mars"],
                "start_time":"2026-01-01T01:00:00Z","stop_time":"2026-01-01T00:30:00Z","cron":"61 * * * *"}"#,
        );
        let errors = validate(&s, 1, &known(), now()).unwrap_err();
        assert_eq!(fields(&errors), ["endpoints", "locations[1]", "cron", "stop_time"], "{errors:?}");
        assert!(errors[1].message.contains("unknown location \"mars\""));
        assert!(errors[2].message.contains("invalid cron expression"));
        assert!(errors[3].message.contains("is not after start_time"));
    }

    #[test]
    fn type_specific_fields_are_required_and_refused() {
        let s = spec(
            r#"{"type":"RECURRING","measurement":{"kind":"dns"},"endpoints":["a"],"locations":["eu"],"cron":"* * * * *"}"#,
        );
        assert_eq!(fields(&validate(&s, 1, &known(), now()).unwrap_err()), ["interval", "cron"]);
        let s =
            spec(r#"{"type":"ONE-OFF-SCHEDULED","measurement":{"kind":"dns"},"endpoints":["a"],"locations":["eu"]}"#);
        assert_eq!(fields(&validate(&s, 1, &known(), now()).unwrap_err()), ["start_time"]);
        let s = spec(
            r#"{"type":"ONE-OFF","measurement":{"kind":"ping","count":0},"endpoints":["a b"],"locations":["eu","eu"],"interval":"1s"}"#,
        );
        assert_eq!(
            fields(&validate(&s, 1, &known(), now()).unwrap_err()),
            ["endpoints[0]", "locations[1]", "measurement.count", "interval"]
        );
    }

    #[test]
    fn unknown_fields_and_types_are_refused_by_the_parser() {
        assert!(r#"{"type":"WEEKLY","measurement":{"kind":"ping"}}"#.parse::<TaskSpec>().is_err());
        assert!(r#"{"type":"ONE-OFF","measurement":{"kind":"ping"},"colour":1}"#.parse::<TaskSpec>().is_err());
    }

    #[test]
    fn cron_with_and_without_seconds() {
        assert!(parse_cron("*/5 * * * *").is_ok());
        assert!(parse_cron("30 * * * * *").is_ok());
        assert!(parse_cron("every minute").is_err());
    }
}
