//! When a task fires, in the process's clock, and what happens to firings that were missed.
//!
//! Inside a node the process's clock is the node's virtual clock (the clock shim dilates
//! every time source), so these functions take plain `DateTime<Utc>` values read from
//! `SystemTime` and a cron expression at TDF 10 fires at *virtual* minute boundaries.
//!
//! # Catch-up policy
//! When the scheduler finds firings in the past (the server was down, or its process was
//! stopped), it **coalesces** them: the latest missed firing runs once, now, and every
//! earlier missed firing is skipped and counted in the task's `skipped_firings`. A
//! ONE-OFF-SCHEDULED task whose start time passed while the server was down runs once at
//! start-up. The next firing after that is the first one strictly after now: the schedule
//! keeps its phase (cron boundaries, `created_at + k·interval`) and never bunches up.
//!
//! # Invariants
//! - Firings of a task are strictly increasing; none lies after `stop_time`.
//! - [`due`] never returns a firing later than `now`.

use chrono::{DateTime, TimeDelta, Timelike, Utc};

use super::spec::parse_cron;
use super::task::{Task, TaskType};

/// Firings a scheduler wake-up handles for one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The firing to run now (the latest one due), if any is due.
    pub fire: Option<DateTime<Utc>>,
    /// Earlier firings that were due too and are skipped under the catch-up policy.
    pub skipped: u64,
    /// The next firing after `now`, if the schedule has one.
    pub next: Option<DateTime<Utc>>,
}

/// Upper bound on cron matches walked over in one catch-up (a year of minutely firings is
/// 525,600; beyond that the count saturates, the policy is unchanged).
const MAX_WALK: u64 = 1_000_000;

/// The task's first firing, or `None` when its window holds none.
pub fn first_fire(task: &Task) -> Option<DateTime<Utc>> {
    match task.kind {
        TaskType::OneOff | TaskType::Recurring => within_stop(task, task.created_at),
        TaskType::OneOffScheduled => task.start_time,
        TaskType::RecurringScheduled => {
            let start = task.start_time?;
            let cron = parse_cron(task.cron.as_deref()?).ok()?;
            // The first whole second at or after the start: croner keeps the fraction of the
            // time it is given, and a cron firing is a whole second.
            let floor = whole_second(start);
            let from = if floor < start { floor + TimeDelta::seconds(1) } else { floor };
            let first = cron.find_next_occurrence(&from, true).ok()?;
            within_stop(task, first)
        }
    }
}

/// `t` without its fraction of a second.
fn whole_second(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_nanosecond(0).unwrap_or(t)
}

/// The firing strictly after `after`, or `None` when the schedule has ended.
pub fn next_after(task: &Task, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match task.kind {
        TaskType::OneOff | TaskType::OneOffScheduled => None,
        TaskType::Recurring => {
            let step = interval(task)?;
            let elapsed = after.signed_duration_since(task.created_at);
            let steps = if elapsed < TimeDelta::zero() {
                0
            } else {
                elapsed.num_nanoseconds().map_or(i64::MAX / 2, |ns| ns / step.num_nanoseconds().unwrap_or(1)) + 1
            };
            let next = task.created_at.checked_add_signed(step.checked_mul(i32::try_from(steps).ok()?)?)?;
            within_stop(task, next)
        }
        TaskType::RecurringScheduled => {
            let cron = parse_cron(task.cron.as_deref()?).ok()?;
            // Matches are whole seconds: the first after `after`'s whole second is the first
            // after `after`, and carries no fraction (croner would keep `after`'s).
            let next = cron.find_next_occurrence(&whole_second(after), false).ok()?;
            within_stop(task, next)
        }
    }
}

/// What is due at `now` given the task's pending firing `pending` (its `next_fire`), under
/// the catch-up policy of this module.
pub fn due(task: &Task, pending: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Due {
    let Some(first) = pending else {
        return Due { fire: None, skipped: 0, next: None };
    };
    if first > now {
        return Due { fire: None, skipped: 0, next: Some(first) };
    }
    let mut latest = first;
    let mut skipped = 0u64;
    let mut next = next_after(task, latest);
    if task.kind == TaskType::Recurring {
        // Arithmetic, not a walk: a 1 ms interval across an hour's downtime is 3.6M firings.
        if let (Some(step), Some(_)) = (interval(task), next) {
            let behind = now.signed_duration_since(first).num_nanoseconds().unwrap_or(i64::MAX);
            let k = behind / step.num_nanoseconds().unwrap_or(1).max(1);
            if k > 0 {
                if let Some(l) =
                    i32::try_from(k).ok().and_then(|k| step.checked_mul(k)).and_then(|d| first.checked_add_signed(d))
                {
                    if within_stop(task, l).is_some() {
                        latest = l;
                        skipped = u64::try_from(k).unwrap_or(0);
                    } else if let Some(stop) = task.stop_time {
                        // The window closed while behind: the last firing inside it runs.
                        let in_window = stop.signed_duration_since(first).num_nanoseconds().unwrap_or(0)
                            / step.num_nanoseconds().unwrap_or(1).max(1);
                        if let Some(l) = i32::try_from(in_window)
                            .ok()
                            .and_then(|k| step.checked_mul(k))
                            .and_then(|d| first.checked_add_signed(d))
                        {
                            latest = l;
                            skipped = u64::try_from(in_window).unwrap_or(0);
                        }
                    }
                }
            }
            next = next_after(task, latest.max(now));
        }
    } else {
        while let Some(n) = next {
            if n > now || skipped >= MAX_WALK {
                break;
            }
            latest = n;
            skipped += 1;
            next = next_after(task, n);
        }
        if let Some(n) = next {
            if n <= now {
                next = next_after(task, now);
            }
        }
    }
    Due { fire: Some(latest), skipped, next }
}

fn interval(task: &Task) -> Option<TimeDelta> {
    let s = task.interval_s?;
    if !(s.is_finite() && s > 0.0) {
        return None;
    }
    #[expect(clippy::cast_possible_truncation, reason = "a positive interval of at most years, in ns")]
    let ns = (s * 1e9).round() as i64;
    Some(TimeDelta::nanoseconds(ns.max(1)))
}

fn within_stop(task: &Task, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match task.stop_time {
        Some(stop) if t > stop => None,
        _ => Some(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::spec::{validate, TaskSpec};

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn task(json: &str, now: &str) -> Task {
        let spec: TaskSpec = serde_json::from_str(json).unwrap();
        validate(&spec, 1, &["eu".to_owned()], at(now)).unwrap()
    }

    fn cron_task(cron: &str, start: &str, stop: &str) -> Task {
        task(
            &format!(
                r#"{{"type":"RECURRING-SCHEDULED","measurement":{{"kind":"dns"}},"endpoints":["a"],"locations":["eu"],
                    "cron":"{cron}","start_time":"{start}","stop_time":"{stop}"}}"#
            ),
            "2026-01-01T00:00:00Z",
        )
    }

    #[test]
    fn cron_fires_on_minute_boundaries_of_the_clock_it_is_given() {
        // The clock handed in is the node's virtual clock; firings are its minute marks.
        let t = cron_task("* * * * *", "2026-01-01T00:00:10Z", "2026-01-01T00:03:00Z");
        let first = first_fire(&t).unwrap();
        assert_eq!(first, at("2026-01-01T00:01:00Z"));
        assert_eq!(next_after(&t, first), Some(at("2026-01-01T00:02:00Z")));
        assert_eq!(next_after(&t, at("2026-01-01T00:02:00Z")), Some(at("2026-01-01T00:03:00Z")));
        // Nothing after the stop time.
        assert_eq!(next_after(&t, at("2026-01-01T00:03:00Z")), None);
    }

    #[test]
    fn cron_firings_are_whole_seconds_whatever_the_fractions_around_them() {
        // A start time with a fraction (as an API client may send) …
        let t = cron_task("* * * * *", "2026-01-01T00:00:10.150022083Z", "2026-01-01T00:05:00Z");
        assert_eq!(first_fire(&t), Some(at("2026-01-01T00:01:00Z")));
        let t = cron_task("*/2 * * * * *", "2026-01-01T00:00:01.5Z", "2026-01-01T00:05:00Z");
        assert_eq!(first_fire(&t), Some(at("2026-01-01T00:00:02Z")));
        let t = cron_task("*/2 * * * * *", "2026-01-01T00:00:02.5Z", "2026-01-01T00:05:00Z");
        assert_eq!(first_fire(&t), Some(at("2026-01-01T00:00:04Z")), "a match before the start is not a firing");
        // … and a scheduler waking up between marks.
        let t = cron_task("* * * * *", "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z");
        assert_eq!(next_after(&t, at("2026-01-01T00:05:30.25Z")), Some(at("2026-01-01T00:06:00Z")));
        assert_eq!(next_after(&t, at("2026-01-01T00:05:59.999Z")), Some(at("2026-01-01T00:06:00Z")));
        assert_eq!(next_after(&t, at("2026-01-01T00:06:00.001Z")), Some(at("2026-01-01T00:07:00Z")));
        let d = due(&t, Some(at("2026-01-01T00:01:00Z")), at("2026-01-01T00:05:30.7Z"));
        assert_eq!(
            (d.fire, d.skipped, d.next),
            (Some(at("2026-01-01T00:05:00Z")), 4, Some(at("2026-01-01T00:06:00Z")))
        );
    }

    #[test]
    fn cron_start_on_a_boundary_is_inclusive() {
        let t = cron_task("*/15 * * * *", "2026-01-01T00:15:00Z", "2026-01-01T01:00:00Z");
        assert_eq!(first_fire(&t), Some(at("2026-01-01T00:15:00Z")));
        assert_eq!(next_after(&t, at("2026-01-01T00:15:00Z")), Some(at("2026-01-01T00:30:00Z")));
    }

    #[test]
    fn cron_with_seconds_field() {
        let t = cron_task("30 * * * * *", "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z");
        assert_eq!(first_fire(&t), Some(at("2026-01-01T00:00:30Z")));
        assert_eq!(next_after(&t, at("2026-01-01T00:00:30Z")), Some(at("2026-01-01T00:01:30Z")));
    }

    #[test]
    fn a_window_without_a_match_has_no_firing() {
        let t = cron_task("0 12 * * *", "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z");
        assert_eq!(first_fire(&t), None);
    }

    #[test]
    fn recurring_keeps_its_phase() {
        let t = task(
            r#"{"type":"RECURRING","measurement":{"kind":"dns"},"endpoints":["a"],"locations":["eu"],"interval":"10s"}"#,
            "2026-01-01T00:00:00Z",
        );
        assert_eq!(first_fire(&t), Some(at("2026-01-01T00:00:00Z")));
        assert_eq!(next_after(&t, at("2026-01-01T00:00:00Z")), Some(at("2026-01-01T00:00:10Z")));
        // A late wake-up does not shift the phase.
        assert_eq!(next_after(&t, at("2026-01-01T00:00:13.5Z")), Some(at("2026-01-01T00:00:20Z")));
    }

    #[test]
    fn one_offs_fire_once() {
        let t = task(
            r#"{"type":"ONE-OFF","measurement":{"kind":"dns"},"endpoints":["a"],"locations":["eu"]}"#,
            "2026-01-01T00:00:00Z",
        );
        assert_eq!(first_fire(&t), Some(at("2026-01-01T00:00:00Z")));
        assert_eq!(next_after(&t, at("2026-01-01T00:00:00Z")), None);
        let t = task(
            r#"{"type":"ONE-OFF-SCHEDULED","measurement":{"kind":"dns"},"endpoints":["a"],"locations":["eu"],"start_time":"2026-01-01T00:05:00Z"}"#,
            "2026-01-01T00:00:00Z",
        );
        assert_eq!(first_fire(&t), Some(at("2026-01-01T00:05:00Z")));
    }

    #[test]
    fn nothing_due_before_the_pending_firing() {
        let t = cron_task("* * * * *", "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z");
        let d = due(&t, Some(at("2026-01-01T00:01:00Z")), at("2026-01-01T00:00:59.9Z"));
        assert_eq!(d, Due { fire: None, skipped: 0, next: Some(at("2026-01-01T00:01:00Z")) });
    }

    #[test]
    fn catch_up_coalesces_missed_cron_firings() {
        let t = cron_task("* * * * *", "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z");
        // Down from before 00:01 until 00:05:30: 00:01 … 00:05 were missed.
        let d = due(&t, Some(at("2026-01-01T00:01:00Z")), at("2026-01-01T00:05:30Z"));
        assert_eq!(d.fire, Some(at("2026-01-01T00:05:00Z")));
        assert_eq!(d.skipped, 4);
        assert_eq!(d.next, Some(at("2026-01-01T00:06:00Z")));
        // On time: one firing, nothing skipped.
        let d = due(&t, Some(at("2026-01-01T00:06:00Z")), at("2026-01-01T00:06:00.002Z"));
        assert_eq!(
            (d.fire, d.skipped, d.next),
            (Some(at("2026-01-01T00:06:00Z")), 0, Some(at("2026-01-01T00:07:00Z")))
        );
    }

    #[test]
    fn catch_up_of_a_recurring_task_is_arithmetic() {
        let t = task(
            r#"{"type":"RECURRING","measurement":{"kind":"dns"},"endpoints":["a"],"locations":["eu"],"interval":"1ms"}"#,
            "2026-01-01T00:00:00Z",
        );
        let d = due(&t, Some(at("2026-01-01T00:00:00Z")), at("2026-01-01T01:00:00.0005Z"));
        assert_eq!(d.fire, Some(at("2026-01-01T01:00:00Z")));
        assert_eq!(d.skipped, 3_600_000);
        assert_eq!(d.next, Some(at("2026-01-01T01:00:00.001Z")));
    }

    #[test]
    fn catch_up_past_the_stop_time_runs_the_last_firing_in_the_window() {
        let t = cron_task("* * * * *", "2026-01-01T00:00:00Z", "2026-01-01T00:03:00Z");
        let d = due(&t, Some(at("2026-01-01T00:01:00Z")), at("2026-01-01T00:10:00Z"));
        assert_eq!((d.fire, d.skipped, d.next), (Some(at("2026-01-01T00:03:00Z")), 2, None));
    }

    #[test]
    fn a_missed_one_off_scheduled_runs_once_late() {
        let t = task(
            r#"{"type":"ONE-OFF-SCHEDULED","measurement":{"kind":"dns"},"endpoints":["a"],"locations":["eu"],"start_time":"2026-01-01T00:05:00Z"}"#,
            "2026-01-01T00:00:00Z",
        );
        let d = due(&t, first_fire(&t), at("2026-01-01T00:09:00Z"));
        assert_eq!((d.fire, d.skipped, d.next), (Some(at("2026-01-01T00:05:00Z")), 0, None));
    }
}
