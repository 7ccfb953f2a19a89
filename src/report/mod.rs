//! What a run says about itself: the status file, read by people, Jenkins and
//! health checks. Written atomically at the end of every run.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub mod health;

pub const STATUS_FILE: &str = "status.json";

/// `3 days ago`-style age for messages.
pub fn days_ago(t: OffsetDateTime, now: OffsetDateTime) -> String {
    let days = (now - t).whole_days();
    if days == 0 {
        "today".into()
    } else {
        format!("{days} days ago")
    }
}

impl Status {
    pub fn load(path: &std::path::Path) -> Result<Status, StatusError> {
        let text = std::fs::read_to_string(path).map_err(|source| StatusError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| StatusError::Corrupt {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// A status file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// Not there (no run yet) or not readable.
    #[error("{}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// There, but not a status (truncated, edited).
    #[error("{} is unreadable: {source}", path.display())]
    Corrupt {
        path: std::path::PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// JUnit XML as Jenkins' junit plugin reads it: one testcase per
/// certificate, failing when not healthy, so the JUnit view names the
/// certificate that needs attention, with its details in `system-out`; and
/// one for the run itself (too old, could not start, config rejected).
/// `timestamp` is when the run started (UTC), `time` how long it took.
pub fn junit(status: &Status, t: &health::Thresholds, now: OffsetDateTime) -> String {
    let mut cases = String::new();
    let mut failures = 0;
    let mut case = |classname: &str, name: &str, level: health::Level, reason: &str, out: &str| {
        cases.push_str(&format!(
            "  <testcase classname=\"{classname}\" name=\"{}\" time=\"0\">\n",
            xml_escape(name)
        ));
        if level != health::Level::Ok {
            failures += 1;
            cases.push_str(&format!(
                "    <failure message=\"{} {}\" type=\"{}\"/>\n",
                level.label(),
                xml_escape(reason),
                level.label()
            ));
        }
        cases.push_str(&format!(
            "    <system-out>{}</system-out>\n  </testcase>\n",
            xml_escape(out)
        ));
    };
    let (level, reasons) = health::run(status, t, now);
    let run_out = format!(
        "started {}, finished {}, config commit {}, config {}",
        rfc3339(status.started_at),
        rfc3339(status.finished_at),
        status.config_commit.as_deref().unwrap_or("none"),
        if status.config.is_empty() {
            "ok"
        } else {
            &status.config
        },
    );
    case(
        "certkeeper.run",
        "last run",
        level,
        &reasons.join("; "),
        &run_out,
    );
    for c in &status.certificates {
        let h = health::certificate(c, t, now);
        let out = format!(
            "domains {}; not after {}; {}; last result {}; published {}; verified {}; config commit {}",
            c.domains.join(", "),
            c.not_after.map(rfc3339).unwrap_or_else(|| "none".into()),
            h.reason,
            format!("{:?}", c.state).to_lowercase(),
            c.published,
            c.verified
                .map_or("not configured".into(), |v| v.to_string()),
            c.config_commit.as_deref().unwrap_or("none"),
        );
        case("certkeeper.certificates", &c.name, h.level, &h.reason, &out);
    }
    let tests = status.certificates.len() + 1;
    let elapsed = (status.finished_at - status.started_at)
        .as_seconds_f64()
        .max(0.0);
    let started = status.started_at.to_offset(time::UtcOffset::UTC);
    let timestamp = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        started.year(),
        u8::from(started.month()),
        started.day(),
        started.hour(),
        started.minute(),
        started.second()
    );
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"certkeeper\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\" time=\"{elapsed:.3}\" timestamp=\"{timestamp}\">\n{cases}</testsuite>\n"
    )
}

/// Escapes text for XML attributes and content; drops the characters XML
/// 1.0 cannot carry at all (control characters other than tab and newlines).
fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' | '\n' | '\r' => out.push(ch),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertState {
    /// Valid and current; nothing was done.
    Ok,
    /// A new certificate was issued in this run.
    Renewed,
    /// This run failed to renew or publish it (see `last_error`).
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertStatus {
    pub name: String,
    pub domains: Vec<String>,
    pub state: CertState,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub not_after: Option<OffsetDateTime>,
    pub days_left: Option<i64>,
    /// When the live certificate was issued.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub issued_at: Option<OffsetDateTime>,
    pub serial: Option<String>,
    pub config_commit: Option<String>,
    pub last_error: Option<String>,
    /// The step `last_error` comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_stage: Option<FailedStage>,
    /// Whether every configured target holds the live set. `true` when no
    /// target is configured.
    pub published: bool,
    /// Set while a failing certificate backs off: no renewal before this.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub retry_after: Option<OffsetDateTime>,
    /// Per target: `published`, or the error. In the certificate's order.
    #[serde(default)]
    pub targets: Vec<TargetStatus>,
    /// Whether the `verify` endpoints serve the live certificate; `None`
    /// when none are configured.
    #[serde(default)]
    pub verified: Option<bool>,
    /// `verified`, or what was found: `mismatch: host:443 serves serial X,
    /// expected Y`.
    #[serde(default)]
    pub verification: Option<String>,
    /// Due, but its CA's new-order limit lets it order only then (a later
    /// run does); not a failure.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub waiting_until: Option<OffsetDateTime>,
    /// Which of the CA's limits it waits for, in words ("the CA's new-order
    /// limit", "the CA's limit on new certificates for example.com").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    /// For certificates from a CA without ACME: what a person runs to renew.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_command: Option<String>,
    /// With a `rollouts:` entry: which consumers reference the current copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
}

impl CertStatus {
    /// A status line with nothing known yet beyond its name, domains and
    /// state; the rest is filled in with struct update syntax.
    pub fn new(name: &str, domains: Vec<String>, state: CertState) -> CertStatus {
        CertStatus {
            name: name.to_string(),
            domains,
            state,
            not_after: None,
            days_left: None,
            issued_at: None,
            serial: None,
            config_commit: None,
            last_error: None,
            failed_stage: None,
            published: false,
            retry_after: None,
            targets: Vec::new(),
            verified: None,
            verification: None,
            waiting_until: None,
            waiting_for: None,
            renew_command: None,
            rollout: None,
        }
    }
}

/// A certificate's rollout: which consumers reference its current copy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RolloutStatus {
    /// Every configured consumer references the current copy.
    pub aligned: bool,
    /// `aligned`, or what stopped the rollout.
    pub result: String,
    pub consumers: Vec<ConsumerStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConsumerStatus {
    /// `cloudfront E2QWRUHAPOMQZL`, `elb web:443`, `listener arn:…`.
    pub consumer: String,
    /// The ARNs (IAM ids for CloudFront) it references.
    pub references: Vec<String>,
    pub aligned: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TargetStatus {
    pub name: String,
    /// `published` or `failed: <error>`.
    pub result: String,
    #[serde(default)]
    pub failed: bool,
}

/// Which step of a certificate's handling failed first.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FailedStage {
    /// The order, or anything before it (unreadable state, back-off,
    /// shutdown, a CA without ACME that is due).
    Renewal,
    /// Another replica took the lease over.
    Lease,
    /// The derived files (PKCS#12, fingerprints).
    Formats,
    Publish,
    /// Switching CloudFront and load balancers to the new copy.
    Rollout,
    Verification,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
    pub config_commit: Option<String>,
    /// `ok`, or `stale (commit abc123 rejected: …)` when the newest commit of
    /// the config repo was rejected and the last good one was used.
    #[serde(default)]
    pub config: String,
    #[serde(default)]
    pub config_rejected: Option<crate::config::gate::Rejected>,
    /// Set when the run could not start renewing at all (bad settings or config).
    pub error: Option<String>,
    pub certificates: Vec<CertStatus>,
}

impl Status {
    /// Healthy: every certificate valid, current and published, or waiting
    /// for its CA's new-order limit (planned, not failed).
    pub fn healthy(&self, now: OffsetDateTime) -> bool {
        self.error.is_none()
            && self.certificates.iter().all(|c| {
                c.state != CertState::Failed
                    && (c.waiting_until.is_some()
                        || (c.published && c.not_after.is_some_and(|t| t > now)))
            })
    }

    pub fn exit_code(&self, now: OffsetDateTime) -> i32 {
        if self.config_rejected.is_some() {
            // The renewals ran on the last good commit, but someone must fix
            // the repo: report it as the configuration error it is.
            crate::exit::CONFIG_ERROR
        } else if self.healthy(now) {
            crate::exit::OK
        } else {
            crate::exit::RENEWAL_FAILED
        }
    }
}

/// The one-line config state shown in the status.
pub fn config_state(rejected: Option<&crate::config::gate::Rejected>) -> String {
    match rejected {
        None => "ok".into(),
        Some(r) if r.unreachable => {
            let first = r.reason.lines().next().unwrap_or_default();
            format!(
                "stale (repo unreachable, using last good commit {}: {first})",
                &r.commit[..r.commit.len().min(12)]
            )
        }
        Some(r) => {
            let first = r.reason.lines().next().unwrap_or_default();
            format!(
                "stale (commit {} rejected: {first})",
                &r.commit[..r.commit.len().min(12)]
            )
        }
    }
}

pub fn days_left(not_after: OffsetDateTime, now: OffsetDateTime) -> i64 {
    (not_after - now).whole_days()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn cert(state: CertState, published: bool) -> CertStatus {
        CertStatus {
            not_after: Some(datetime!(2027-01-01 0:00 UTC)),
            published,
            ..CertStatus::new("web", vec![], state)
        }
    }

    fn status(certs: Vec<CertStatus>) -> Status {
        Status {
            started_at: datetime!(2026-01-01 0:00 UTC),
            finished_at: datetime!(2026-01-01 0:00 UTC),
            config_commit: None,
            config: "ok".into(),
            config_rejected: None,
            error: None,
            certificates: certs,
        }
    }

    #[test]
    fn exit_codes() {
        let now = datetime!(2026-06-01 0:00 UTC);
        assert_eq!(
            status(vec![
                cert(CertState::Ok, true),
                cert(CertState::Renewed, true)
            ])
            .exit_code(now),
            0
        );
        assert_eq!(
            status(vec![cert(CertState::Failed, true)]).exit_code(now),
            1
        );
        assert_eq!(status(vec![cert(CertState::Ok, false)]).exit_code(now), 1);
        let later = datetime!(2027-06-01 0:00 UTC);
        assert_eq!(status(vec![cert(CertState::Ok, true)]).exit_code(later), 1);
    }

    #[test]
    fn junit_names_the_certificate_and_the_run() {
        let t = health::Thresholds::default();
        let mut bad = cert(CertState::Ok, true);
        bad.name = "a<b>&\"c\"\u{7}".into();
        bad.not_after = Some(datetime!(2026-01-03 0:00 UTC));
        let mut s = status(vec![cert(CertState::Ok, true), bad]);
        s.finished_at = datetime!(2026-01-01 0:01:30.5 UTC);
        let now = datetime!(2026-01-01 1:00 UTC);
        let xml = junit(&s, &t, now);
        assert!(
            xml.contains(
                "tests=\"3\" failures=\"1\" errors=\"0\" skipped=\"0\" time=\"90.500\" timestamp=\"2026-01-01T00:00:00\""
            ),
            "{xml}"
        );
        assert!(
            xml.contains("name=\"a&lt;b&gt;&amp;&quot;c&quot;\""),
            "{xml}"
        );
        assert!(!xml.contains('\u{7}'), "{xml}");
        assert!(
            xml.contains("<failure message=\"CRITICAL expires in 1 days\" type=\"CRITICAL\"/>"),
            "{xml}"
        );
        // Three days later the run itself is too old: its testcase fails.
        let xml = junit(&s, &t, datetime!(2026-01-04 0:00 UTC));
        let run = xml
            .split("<testcase ")
            .find(|c| c.contains("certkeeper.run"))
            .unwrap();
        assert!(
            run.contains("<failure message=\"CRITICAL no run for 71 hours\""),
            "{run}"
        );
    }
}
