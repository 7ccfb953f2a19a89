//! Health of the last run for people, Jenkins and monitoring, with Nagios
//! exit codes: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. Pure: (status,
//! thresholds, now) -> verdict.

use super::{CertState, CertStatus, FailedStage, Status};
use std::time::Duration;
use time::OffsetDateTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok = 0,
    Warning = 1,
    Critical = 2,
    Unknown = 3,
}

impl Level {
    pub fn label(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Warning => "WARNING",
            Level::Critical => "CRITICAL",
            Level::Unknown => "UNKNOWN",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// Fewer days left than this: WARNING.
    pub warning_days: i64,
    /// Fewer days left than this (or expired): CRITICAL.
    pub critical_days: i64,
    /// No finished run for longer than this: CRITICAL.
    pub max_run_age: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            warning_days: 14,
            critical_days: 7,
            max_run_age: Duration::from_secs(36 * 3600),
        }
    }
}

impl Thresholds {
    /// The settings' `health:` over the defaults.
    pub fn from_settings(h: &crate::settings::HealthSettings) -> Thresholds {
        let d = Thresholds::default();
        Thresholds {
            warning_days: h.warning_days.unwrap_or(d.warning_days),
            critical_days: h.critical_days.unwrap_or(d.critical_days),
            max_run_age: h.max_run_age.unwrap_or(d.max_run_age),
        }
    }
}

/// The verdict on one certificate.
#[derive(Debug, Clone)]
pub struct CertHealth {
    pub level: Level,
    pub reason: String,
}

pub fn certificate(c: &CertStatus, t: &Thresholds, now: OffsetDateTime) -> CertHealth {
    let verdict = |level, reason: String| CertHealth { level, reason };
    let waits = c.waiting_until.map(|t| {
        format!(
            "waits for {}; its order is allowed at {}",
            c.waiting_for
                .as_deref()
                .unwrap_or("the CA's new-order limit"),
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        )
    });
    if c.not_after.is_none()
        && let Some(waits) = &waits
    {
        return verdict(Level::Warning, format!("not issued yet: {waits}"));
    }
    let Some(not_after) = c.not_after else {
        return verdict(
            Level::Critical,
            format!(
                "no certificate: {}",
                c.last_error.as_deref().unwrap_or("never issued")
            ),
        );
    };
    let days = (not_after - now).whole_days();
    if not_after <= now {
        return verdict(
            Level::Critical,
            format!("expired {}", super::days_ago(not_after, now)),
        );
    }
    if days < t.critical_days {
        return verdict(Level::Critical, format!("expires in {days} days"));
    }
    // The first error recorded is the one `last_error` holds; its stage
    // says whether the renewal failed or a step after it.
    let failed_target = c.targets.iter().find(|t| t.failed);
    let renewal_failed = c.state == CertState::Failed
        && c.last_error.is_some()
        && matches!(
            c.failed_stage,
            Some(FailedStage::Renewal | FailedStage::Lease | FailedStage::Formats)
        );
    if renewal_failed {
        let why = c.last_error.as_deref().unwrap_or("failed");
        return verdict(
            Level::Warning,
            format!("last renewal failed ({days} days left): {why}"),
        );
    }
    if let Some(t) = failed_target {
        return verdict(
            Level::Warning,
            format!("not published to {}: {}", t.name, t.result),
        );
    }
    if !c.published {
        let why = c.last_error.as_deref().unwrap_or("not published");
        return verdict(Level::Warning, format!("not published: {why}"));
    }
    if let Some(r) = c.rollout.as_ref().filter(|r| !r.aligned) {
        let behind: Vec<&str> = r
            .consumers
            .iter()
            .filter(|c| !c.aligned)
            .map(|c| c.consumer.as_str())
            .collect();
        return verdict(
            Level::Warning,
            format!(
                "rollout not aligned ({} of {} consumers on an older certificate: {}): {}",
                behind.len(),
                r.consumers.len(),
                behind.join(", "),
                r.result
            ),
        );
    }
    if c.verified == Some(false) {
        return verdict(
            Level::Warning,
            format!(
                "endpoints do not serve it: {}",
                c.verification.as_deref().unwrap_or("not verified")
            ),
        );
    }
    if days < t.warning_days {
        return verdict(Level::Warning, format!("expires in {days} days"));
    }
    match waits {
        Some(waits) => verdict(Level::Ok, format!("{days} days left; the renewal {waits}")),
        None => verdict(Level::Ok, format!("{days} days left")),
    }
}

/// The verdict on the run itself, certificates aside: too old, could not
/// start, or ran on the last good config because the newest was rejected.
pub fn run(status: &Status, t: &Thresholds, now: OffsetDateTime) -> (Level, Vec<String>) {
    let mut level = Level::Ok;
    let mut reasons = Vec::new();
    let age = now - status.finished_at;
    if age > time::Duration::try_from(t.max_run_age).unwrap_or(time::Duration::MAX) {
        level = Level::Critical;
        let since = match (age.whole_hours(), age.whole_minutes(), age.whole_seconds()) {
            (h, _, _) if h >= 1 => format!("{h} hours"),
            (_, m, _) if m >= 1 => format!("{m} minutes"),
            (_, _, s) if s >= 1 => format!("{s} seconds"),
            _ => "under a second".to_string(),
        };
        reasons.push(format!("no run for {since}"));
    }
    if let Some(error) = &status.error {
        level = level.max(Level::Critical);
        reasons.push(format!(
            "last run could not start: {}",
            error.lines().next().unwrap_or_default()
        ));
    }
    if status.config_rejected.is_some() {
        level = level.max(Level::Warning);
        reasons.push(format!("config {}", status.config));
    }
    (level, reasons)
}

/// The verdict on the whole status: the worst of the run and every certificate.
pub fn overall(status: &Status, t: &Thresholds, now: OffsetDateTime) -> (Level, Vec<String>) {
    let (mut level, mut reasons) = run(status, t, now);
    for c in &status.certificates {
        let h = certificate(c, t, now);
        if h.level != Level::Ok {
            reasons.push(format!("{}: {}", c.name, h.reason));
        }
        level = level.max(h.level);
    }
    (level, reasons)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-06-01 0:00 UTC);

    fn cert(days: i64, state: CertState) -> CertStatus {
        CertStatus {
            not_after: Some(NOW + time::Duration::days(days)),
            days_left: Some(days),
            last_error: (state == CertState::Failed).then(|| "boom".into()),
            failed_stage: (state == CertState::Failed).then_some(FailedStage::Renewal),
            published: true,
            ..CertStatus::new("web", vec![], state)
        }
    }

    fn status(certs: Vec<CertStatus>, finished: OffsetDateTime) -> Status {
        Status {
            started_at: finished,
            finished_at: finished,
            config_commit: None,
            config: "ok".into(),
            config_rejected: None,
            error: None,
            certificates: certs,
        }
    }

    #[test]
    fn levels() {
        let t = Thresholds::default();
        let level = |c: CertStatus| certificate(&c, &t, NOW).level;
        assert_eq!(level(cert(60, CertState::Ok)), Level::Ok);
        assert_eq!(level(cert(10, CertState::Ok)), Level::Warning);
        assert_eq!(level(cert(60, CertState::Failed)), Level::Warning);
        assert_eq!(level(cert(3, CertState::Failed)), Level::Critical);
        assert_eq!(level(cert(-1, CertState::Ok)), Level::Critical);
        let mut none = cert(60, CertState::Failed);
        none.not_after = None;
        assert_eq!(level(none), Level::Critical);
    }

    #[test]
    fn reasons_name_what_failed() {
        let t = Thresholds::default();
        let reason = |c: CertStatus| certificate(&c, &t, NOW).reason;
        assert!(reason(cert(60, CertState::Failed)).starts_with("last renewal failed"));

        let mut publish = cert(60, CertState::Failed);
        publish.published = false;
        publish.last_error = Some("publish to ssm failed for x: AccessDenied".into());
        publish.failed_stage = Some(FailedStage::Publish);
        publish.targets = vec![
            crate::report::TargetStatus {
                name: "s3".into(),
                result: "published".into(),
                failed: false,
            },
            crate::report::TargetStatus {
                name: "ssm".into(),
                result: "failed: publish to ssm failed for x: AccessDenied".into(),
                failed: true,
            },
        ];
        let r = reason(publish);
        assert!(r.starts_with("not published to ssm: failed: "), "{r}");

        let mut verify = cert(60, CertState::Failed);
        verify.last_error =
            Some("verification: mismatch: a:443 serves serial 01, expected 02".into());
        verify.failed_stage = Some(FailedStage::Verification);
        verify.verified = Some(false);
        verify.verification = Some("mismatch: a:443 serves serial 01, expected 02".into());
        let h = certificate(&verify, &t, NOW);
        assert_eq!(h.level, Level::Warning);
        assert!(
            h.reason.starts_with("endpoints do not serve it: mismatch"),
            "{}",
            h.reason
        );
    }

    #[test]
    fn a_rollout_behind_is_a_warning_naming_the_consumers() {
        let t = Thresholds::default();
        let consumer = |name: &str, aligned| crate::report::ConsumerStatus {
            consumer: name.into(),
            references: vec!["ASCAOLD".into()],
            aligned,
        };
        let mut c = cert(60, CertState::Failed);
        c.failed_stage = Some(FailedStage::Rollout);
        c.last_error = Some("rollout: halted".into());
        c.rollout = Some(crate::report::RolloutStatus {
            aligned: false,
            result: "halted since 2026-06-01T00:00:00Z".into(),
            consumers: vec![
                consumer("elb small:443", false),
                consumer("cloudfront E1", true),
            ],
        });
        let h = certificate(&c, &t, NOW);
        assert_eq!(h.level, Level::Warning);
        assert_eq!(
            h.reason,
            "rollout not aligned (1 of 2 consumers on an older certificate: elb small:443): halted since 2026-06-01T00:00:00Z"
        );
        let rollout = c.rollout.as_mut().unwrap();
        rollout.aligned = true;
        rollout.consumers[0].aligned = true;
        c.state = CertState::Ok;
        c.failed_stage = None;
        c.last_error = None;
        assert_eq!(certificate(&c, &t, NOW).level, Level::Ok);
    }

    #[test]
    fn stale_runs_are_critical() {
        let t = Thresholds::default();
        let fresh = status(
            vec![cert(60, CertState::Ok)],
            NOW - time::Duration::hours(2),
        );
        assert_eq!(overall(&fresh, &t, NOW).0, Level::Ok);
        let stale = status(
            vec![cert(60, CertState::Ok)],
            NOW - time::Duration::hours(48),
        );
        let (level, reasons) = overall(&stale, &t, NOW);
        assert_eq!(level, Level::Critical);
        assert!(reasons[0].contains("no run for 48 hours"), "{reasons:?}");
    }
}
