//! When the daemon runs: a cron expression, in UTC or a named time zone.
//!
//! The next fire time is computed afresh, in the zone, after every run, so a
//! daylight-saving change moves the UTC instant and the job still fires at
//! the same local time. (tokio-cron-scheduler's time-zone jobs keep the UTC
//! offset they were created with — its issue #87 — and its scheduler wakes
//! every 500 ms; certkeeper uses croner, the cron engine underneath it,
//! and sleeps until the next fire time, so an idle daemon uses no CPU.)
//!
//! Default: daily at a minute of the day derived from the host name, so a
//! fleet of machines does not hit the CA at the same moment.

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use std::str::FromStr;

#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    tz: Tz,
    expression: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("cron expression {expression:?}: {message}")]
    Cron { expression: String, message: String },
    #[error("unknown time zone {0:?} (use an IANA name such as Europe/London)")]
    TimeZone(String),
}

impl Schedule {
    /// `expression` has five fields (minute hour day month weekday);
    /// `timezone` is an IANA name, default UTC.
    pub fn new(expression: &str, timezone: Option<&str>) -> Result<Schedule, ScheduleError> {
        let tz = match timezone {
            None => Tz::UTC,
            Some(name) => Tz::from_str(name).map_err(|_| ScheduleError::TimeZone(name.into()))?,
        };
        let fields = expression.split_whitespace().count();
        if fields != 5 {
            return Err(ScheduleError::Cron {
                expression: expression.into(),
                message: format!(
                    "has {fields} fields; use five: minute hour day-of-month month day-of-week"
                ),
            });
        }
        let cron = Cron::from_str(expression).map_err(|e| ScheduleError::Cron {
            expression: expression.into(),
            message: e.to_string(),
        })?;
        Ok(Schedule {
            cron,
            tz,
            expression: expression.to_string(),
        })
    }

    /// Daily at a minute derived from `host` (stable for a host, spread over
    /// the day across hosts).
    pub fn for_host(host: &str) -> Schedule {
        let minute_of_day = fnv1a(host.as_bytes()) % (24 * 60);
        let expression = format!("{} {} * * *", minute_of_day % 60, minute_of_day / 60);
        Schedule::new(&expression, None).expect("generated expression is valid")
    }

    pub fn expression(&self) -> &str {
        &self.expression
    }

    pub fn timezone(&self) -> &str {
        self.tz.name()
    }

    /// The first fire time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = self.tz.from_utc_datetime(&after.naive_utc());
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// The default schedule of this machine.
pub fn default_for_host(host: &str) -> Schedule {
    Schedule::for_host(host)
}

/// The machine's host name, for the default schedule.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn fnv1a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x01000193);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn fires(s: &Schedule, from: &str, n: usize) -> Vec<String> {
        let mut t = utc(from);
        let mut out = Vec::new();
        for _ in 0..n {
            t = s.next_after(t).unwrap();
            out.push(t.to_rfc3339());
        }
        out
    }

    #[test]
    fn utc_by_default() {
        let s = Schedule::new("30 3 * * *", None).unwrap();
        assert_eq!(
            fires(&s, "2026-03-28T12:00:00Z", 2),
            ["2026-03-29T03:30:00+00:00", "2026-03-30T03:30:00+00:00"]
        );
    }

    #[test]
    fn same_local_time_across_spring_forward() {
        // Europe/London goes from GMT to BST at 01:00 UTC on 2026-03-29.
        let s = Schedule::new("30 3 * * *", Some("Europe/London")).unwrap();
        assert_eq!(
            fires(&s, "2026-03-27T12:00:00Z", 3),
            [
                "2026-03-28T03:30:00+00:00", // 03:30 GMT
                "2026-03-29T02:30:00+00:00", // 03:30 BST
                "2026-03-30T02:30:00+00:00",
            ]
        );
    }

    #[test]
    fn same_local_time_across_fall_back() {
        // New York: EDT to EST on 2026-11-01 at 06:00 UTC.
        let s = Schedule::new("0 9 * * *", Some("America/New_York")).unwrap();
        assert_eq!(
            fires(&s, "2026-10-30T20:00:00Z", 3),
            [
                "2026-10-31T13:00:00+00:00", // 09:00 EDT
                "2026-11-01T14:00:00+00:00", // 09:00 EST
                "2026-11-02T14:00:00+00:00",
            ]
        );
    }

    #[test]
    fn a_time_in_the_spring_gap_runs_once_right_after_it() {
        // 01:30 does not exist in London on 2026-03-29 (01:00 -> 02:00).
        let s = Schedule::new("30 1 * * *", Some("Europe/London")).unwrap();
        let got = fires(&s, "2026-03-28T12:00:00Z", 2);
        assert_eq!(got[0], "2026-03-29T01:00:00+00:00", "{got:?}"); // 02:00 BST
        assert_eq!(got[1], "2026-03-30T00:30:00+00:00"); // 01:30 BST
    }

    #[test]
    fn a_time_in_the_repeated_hour_runs_once() {
        // 01:30 happens twice in London on 2026-10-25 (02:00 BST -> 01:00 GMT).
        let s = Schedule::new("30 1 * * *", Some("Europe/London")).unwrap();
        let got = fires(&s, "2026-10-24T12:00:00Z", 2);
        assert_eq!(got[0], "2026-10-25T00:30:00+00:00"); // first 01:30 (BST)
        assert_eq!(got[1], "2026-10-26T01:30:00+00:00"); // next day, GMT
    }

    #[test]
    fn host_minute_is_stable_and_spread() {
        let a = Schedule::for_host("cert-vm-1");
        assert_eq!(a.expression(), Schedule::for_host("cert-vm-1").expression());
        let distinct: std::collections::HashSet<String> = (0..50)
            .map(|i| {
                Schedule::for_host(&format!("cert-vm-{i}"))
                    .expression()
                    .to_string()
            })
            .collect();
        assert!(distinct.len() > 40, "{distinct:?}");
    }

    #[test]
    fn bad_input_is_named() {
        let e = Schedule::new("0 3 * *", None).unwrap_err().to_string();
        assert!(e.contains("has 4 fields"), "{e}");
        let e = Schedule::new("61 3 * * *", None).unwrap_err().to_string();
        assert!(e.contains("61 3 * * *"), "{e}");
        let e = Schedule::new("0 3 * * *", Some("Mars/Olympus"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("Mars/Olympus"), "{e}");
    }
}
