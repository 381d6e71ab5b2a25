//! Cron services: a deployment of a service with a schedule runs no instances of its own; it is
//! *scheduled*. At each time of its schedule the leader runs the service's start command once,
//! in the service's sandbox like any instance, with the deployment's variables, its output in
//! the deployment's logs. One run at a time: a time that comes while the previous run still
//! goes is skipped, and says so. Every scheduled time is recorded in `cron_runs` before it
//! runs, so it fires once even when leadership moves between replicas.

use chrono::{DateTime, Utc};
use croner::Cron;
use std::str::FromStr;

/// The schedule's times in `(after, until]`, at most `limit` of them (a leader that was away
/// does not replay a backlog: only the newest time runs).
pub fn due(schedule: &str, after: DateTime<Utc>, until: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let cron = Cron::from_str(schedule).ok()?;
    let mut newest = None;
    let mut from = after;
    // A minute schedule over a long gap would iterate many times: cap the walk.
    for _ in 0..1440 {
        match cron.find_next_occurrence(&from, false) {
            Ok(t) if t <= until => {
                newest = Some(t);
                from = t;
            }
            _ => break,
        }
    }
    newest
}

/// When the schedule runs next after `now`.
pub fn next(schedule: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    Cron::from_str(schedule).ok()?.find_next_occurrence(&now, false).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 29, h, m, s).unwrap()
    }

    #[test]
    fn a_time_is_due_once_when_the_window_passes_it() {
        assert_eq!(due("*/15 * * * *", at(10, 14, 50), at(10, 15, 1)), Some(at(10, 15, 0)));
        assert_eq!(due("*/15 * * * *", at(10, 15, 1), at(10, 15, 3)), None, "already past it");
        assert_eq!(due("0 3 * * *", at(10, 0, 0), at(11, 0, 0)), None);
    }

    #[test]
    fn after_a_gap_only_the_newest_time_runs() {
        assert_eq!(due("* * * * *", at(10, 0, 30), at(10, 5, 10)), Some(at(10, 5, 0)));
    }

    #[test]
    fn the_next_time_is_strictly_after_now() {
        assert_eq!(next("0 * * * *", at(10, 0, 0)), Some(at(11, 0, 0)));
        assert_eq!(next("not a schedule", at(10, 0, 0)), None);
    }
}
