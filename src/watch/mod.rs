//! Expiry watch: certificates from any CA (MESH, partner mTLS, hand-issued)
//! found in files, S3 and on live endpoints, plus the managed ones, checked
//! on every run; alerts go out before they expire.
//!
//! Per name only the newest certificate counts, so an alert stops by itself
//! once a renewed certificate lands in the source.

pub mod sources;

use crate::alert::{self, Alert, Sent};
use crate::report::{CertState, Status};
use crate::secrets::Secrets;
use crate::settings::{Settings, WatchSettings};
use crate::store::Store;
use serde::Serialize;
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// The last scan's certificates, in the state dir.
pub const LAST_SCAN: &str = "watch.json";

/// One certificate found in a watched source.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Watched {
    pub name: String,
    /// Where it was found: a path, `s3://bucket/key` or `host:port`.
    pub source: String,
    pub labels: BTreeMap<String, String>,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    pub serial: String,
    pub subject: String,
}

/// Every watched certificate, newest per name; errors per source are
/// returned beside them (one unreadable source does not hide the others).
pub async fn scan(
    settings: &Settings,
    watch: &WatchSettings,
    ctx: &sources::Context<'_>,
) -> (Vec<Watched>, Vec<String>) {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for source in &watch.sources {
        match sources::build(source).scan(settings, ctx).await {
            Ok(f) => {
                found.extend(f.certs);
                errors.extend(f.errors.iter().map(|e| e.to_string()));
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    (newest_per_name(found), errors)
}

pub fn newest_per_name(found: Vec<Watched>) -> Vec<Watched> {
    let mut best: BTreeMap<String, Watched> = BTreeMap::new();
    for w in found {
        match best.get(&w.name) {
            Some(b) if b.not_after >= w.not_after => {}
            _ => {
                best.insert(w.name.clone(), w);
            }
        }
    }
    best.into_values().collect()
}

/// The alert level for `days` left: `None` when no alert is due.
fn level(days: i64, expired: bool, watch: &WatchSettings) -> Option<&'static str> {
    if expired {
        Some("expired")
    } else if days < watch.critical_days {
        Some("critical")
    } else if days < watch.warn_days {
        Some("warning")
    } else {
        None
    }
}

fn render(template: &str, vars: &BTreeMap<String, String>) -> String {
    crate::template::render(template, vars).unwrap_or_else(|e| format!("{template} ({e})"))
}

fn vars(
    name: &str,
    labels: &BTreeMap<String, String>,
    days: i64,
    not_after: OffsetDateTime,
    source: &str,
) -> BTreeMap<String, String> {
    let mut v = BTreeMap::new();
    v.insert("environment".into(), "unknown".into());
    v.insert("owner".into(), "unknown".into());
    v.extend(labels.clone());
    v.insert("name".into(), name.to_string());
    v.insert("duration".into(), days.max(0).to_string());
    v.insert(
        "not_after".into(),
        not_after
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
    );
    v.insert("source".into(), source.to_string());
    v
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The alerts due now, given what was already sent today.
pub fn due(
    watch: &WatchSettings,
    watched: &[Watched],
    status: Option<&Status>,
    failures: &dyn Fn(&str) -> u32,
    sent: &BTreeMap<String, Sent>,
    now: OffsetDateTime,
) -> Vec<Alert> {
    let today = {
        let d = now.date();
        format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
    };
    let already_today = |name: &str| sent.get(name).is_some_and(|s| s.day == today);
    let mut out = Vec::new();
    for w in watched {
        let days = (w.not_after - now).whole_days();
        let Some(level) = level(days, w.not_after <= now, watch) else {
            continue;
        };
        if already_today(&w.name) {
            continue;
        }
        let v = vars(&w.name, &w.labels, days, w.not_after, &w.source);
        let template = if level == "warning" {
            &watch.template
        } else {
            &watch.critical_template
        };
        out.push(Alert {
            name: w.name.clone(),
            level: level.into(),
            message: render(template, &v),
            days_left: Some(days),
            not_after: v.get("not_after").cloned(),
            source: w.source.clone(),
            labels: w.labels.clone(),
        });
    }
    for c in status
        .map(|s| s.certificates.as_slice())
        .unwrap_or_default()
    {
        let days = c.days_left.unwrap_or(0);
        let expired = c.not_after.is_none_or(|t| t <= now);
        // A certificate from a CA without ACME waits for a person: remind
        // them from the warning threshold on, with the command to run.
        if let Some(command) = &c.renew_command {
            let Some(not_after) = c.not_after else {
                continue;
            };
            match level(days, expired, watch) {
                Some(level) if !already_today(&c.name) => {
                    let v = vars(&c.name, &BTreeMap::new(), days, not_after, "managed");
                    let template = if level == "warning" {
                        &watch.template
                    } else {
                        &watch.critical_template
                    };
                    out.push(Alert {
                        name: c.name.clone(),
                        level: level.into(),
                        message: format!("{} To renew: {command}", render(template, &v)),
                        days_left: c.days_left,
                        not_after: v.get("not_after").cloned(),
                        source: "managed".into(),
                        labels: BTreeMap::new(),
                    });
                }
                None if sent.get(&c.name).is_some_and(|s| s.level != "recovered") => {
                    out.push(Alert {
                        name: c.name.clone(),
                        level: "recovered".into(),
                        message: format!("{} is renewed: valid for {days} more days", c.name),
                        days_left: c.days_left,
                        not_after: Some(rfc3339(not_after)),
                        source: "managed".into(),
                        labels: BTreeMap::new(),
                    });
                }
                _ => {}
            }
            continue;
        }
        let failing =
            failures(&c.name) >= watch.failures_before_alert && c.state == CertState::Failed;
        let level = if expired && c.not_after.is_some() {
            Some("expired")
        } else if c.not_after.is_some() && days < watch.critical_days {
            Some("critical")
        } else if failing {
            Some("failing")
        } else {
            None
        };
        let labels = BTreeMap::new();
        let v = vars(
            &c.name,
            &labels,
            days,
            c.not_after.unwrap_or(now),
            "managed",
        );
        match level {
            Some(level) if !already_today(&c.name) => {
                let message = if level == "failing" {
                    format!(
                        "certkeeper could not renew {} ({} failures in a row, {days} days left): {}",
                        c.name,
                        failures(&c.name),
                        c.last_error.as_deref().unwrap_or("see the logs")
                    )
                } else {
                    render(&watch.critical_template, &v)
                };
                out.push(Alert {
                    name: c.name.clone(),
                    level: level.into(),
                    message,
                    days_left: c.days_left,
                    not_after: v.get("not_after").cloned(),
                    source: "managed".into(),
                    labels,
                });
            }
            None if sent.get(&c.name).is_some_and(|s| s.level != "recovered") => {
                out.push(Alert {
                    name: c.name.clone(),
                    level: "recovered".into(),
                    message: format!("{} is fixed: valid for {days} more days", c.name),
                    days_left: c.days_left,
                    not_after: v.get("not_after").cloned(),
                    source: "managed".into(),
                    labels,
                });
            }
            _ => {}
        }
    }
    out
}

/// The label naming who outside gets `contact_template`.
pub const CONTACT: &str = "contact";

/// A reminder to a certificate's contact.
#[derive(Debug)]
pub struct Reminder {
    pub address: String,
    /// What it is remembered by in the sent state (`contact/<name>`).
    pub key: String,
    /// The alert level it is for (`warning`, `critical`, `expired`).
    pub level: &'static str,
    pub alert: Alert,
}

/// Reminders due to contacts (`contact:` label, an email address): one per
/// certificate and level, so a client hears once when the warning starts
/// and once more when it turns critical, not every day.
pub fn reminders(
    watch: &WatchSettings,
    watched: &[Watched],
    sent: &BTreeMap<String, Sent>,
    now: OffsetDateTime,
) -> Vec<Reminder> {
    let mut out = Vec::new();
    for w in watched {
        let Some(address) = w.labels.get(CONTACT).filter(|a| a.contains('@')) else {
            continue;
        };
        let days = (w.not_after - now).whole_days();
        let Some(level) = level(days, w.not_after <= now, watch) else {
            continue;
        };
        let key = format!("{CONTACT}/{}", w.name);
        if sent.get(&key).is_some_and(|s| s.level == level) {
            continue;
        }
        let v = vars(&w.name, &w.labels, days, w.not_after, &w.source);
        out.push(Reminder {
            address: address.clone(),
            key,
            level,
            alert: Alert {
                name: w.name.clone(),
                level: alert::REMINDER.into(),
                message: render(&watch.contact_template, &v),
                days_left: Some(days),
                not_after: v.get("not_after").cloned(),
                source: w.source.clone(),
                labels: w.labels.clone(),
            },
        });
    }
    out
}

/// The watch step of a run: scan, decide, send, remember.
pub async fn check(settings: &Settings, store: &Store, status: Option<&Status>, secrets: &Secrets) {
    let Some(watch) = &settings.watch else {
        return;
    };
    let ctx = sources::Context {
        secrets,
        store: Some(store),
    };
    let (watched, errors) = scan(settings, watch, &ctx).await;
    for e in &errors {
        tracing::error!(event = "watch.source.failed", error = %e);
    }
    // The last scan, for /metrics and the daemon's readers.
    if let Ok(json) = serde_json::to_vec(&watched) {
        let _ = store.write_state(LAST_SCAN, &json);
    }
    let mut sent = alert::load_sent(store);
    let failures = |name: &str| crate::backoff::load(store, name).map_or(0, |f| f.count);
    let alerts = due(
        watch,
        &watched,
        status,
        &failures,
        &sent,
        OffsetDateTime::now_utc(),
    );
    let reminders = match &watch.contact_channel {
        Some(_) => reminders(watch, &watched, &sent, OffsetDateTime::now_utc()),
        None => Vec::new(),
    };
    tracing::info!(
        event = "watch.checked",
        watched = watched.len(),
        alerts = alerts.len(),
        reminders = reminders.len(),
        source_errors = errors.len()
    );
    if let (Some(name), false) = (&watch.contact_channel, reminders.is_empty()) {
        remind(settings, name, &reminders, &mut sent, store, secrets).await;
    }
    if alerts.is_empty() {
        return;
    }
    let (channels, errors) = alert::build(settings, &watch.channels, secrets).await;
    for e in &errors {
        tracing::error!(event = "alert.channel.failed", error = %e);
    }
    for a in &alerts {
        if alert::dispatch(&channels, a).await {
            sent.insert(
                a.name.clone(),
                Sent {
                    day: alert::today(),
                    level: a.level.clone(),
                },
            );
            // Saved after each, so a crash mid-way repeats nothing.
            alert::save_sent(store, &sent);
        }
    }
}

/// Mails each reminder to its contact through the contact channel's server.
async fn remind(
    settings: &Settings,
    channel: &str,
    reminders: &[Reminder],
    sent: &mut BTreeMap<String, Sent>,
    store: &Store,
    secrets: &Secrets,
) {
    let (channels, errors) = alert::build(settings, &[channel.to_string()], secrets).await;
    for e in &errors {
        tracing::error!(event = "alert.channel.failed", error = %e);
    }
    let Some(base) = channels.first() else {
        return;
    };
    for r in reminders {
        let Some(to) = base.readdressed(std::slice::from_ref(&r.address)) else {
            return;
        };
        match to.send(&r.alert).await {
            Ok(()) => {
                tracing::info!(event = "alert.reminder.sent", channel = channel, cert = %r.alert.name, to = %r.address, level = r.level);
                sent.insert(
                    r.key.clone(),
                    Sent {
                        day: alert::today(),
                        level: r.level.into(),
                    },
                );
                // Saved after each, so a crash mid-way repeats nothing.
                alert::save_sent(store, sent);
            }
            Err(e) => {
                tracing::error!(event = "alert.reminder.failed", channel = channel, cert = %r.alert.name, error = %e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::CertStatus;

    fn watch() -> WatchSettings {
        crate::yaml::parse::<WatchSettings>(std::path::Path::new("s.yaml"), "sources: []\n")
            .unwrap()
    }

    fn managed(state: CertState, days: i64, now: OffsetDateTime) -> Status {
        Status {
            started_at: now,
            finished_at: now,
            config_commit: None,
            config: "ok".into(),
            config_rejected: None,
            error: None,
            certificates: vec![CertStatus {
                not_after: Some(now + time::Duration::days(days) + time::Duration::hours(1)),
                days_left: Some(days),
                last_error: (state == CertState::Failed).then(|| "CA down".into()),
                failed_stage: (state == CertState::Failed)
                    .then_some(crate::report::FailedStage::Renewal),
                published: true,
                ..CertStatus::new("web", vec![], state)
            }],
        }
    }

    #[test]
    fn managed_alerts_after_repeated_failures_then_recovers() {
        let now = OffsetDateTime::now_utc();
        let w = watch();
        let none = BTreeMap::new();
        let failing = managed(CertState::Failed, 40, now);
        assert!(
            due(&w, &[], Some(&failing), &|_| 2, &none, now).is_empty(),
            "2 < 3 failures"
        );
        let a = due(&w, &[], Some(&failing), &|_| 3, &none, now);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].level, "failing");
        assert!(
            a[0].message.contains("3 failures in a row") && a[0].message.contains("CA down"),
            "{}",
            a[0].message
        );

        let mut sent = BTreeMap::new();
        sent.insert(
            "web".to_string(),
            Sent {
                day: "2000-01-01".into(),
                level: "failing".into(),
            },
        );
        let fixed = managed(CertState::Renewed, 60, now);
        let a = due(&w, &[], Some(&fixed), &|_| 0, &sent, now);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].level, "recovered");
        sent.insert(
            "web".to_string(),
            Sent {
                day: "2000-01-01".into(),
                level: "recovered".into(),
            },
        );
        assert!(
            due(&w, &[], Some(&fixed), &|_| 0, &sent, now).is_empty(),
            "recovery is said once"
        );

        let close = managed(CertState::Ok, 3, now);
        let a = due(&w, &[], Some(&close), &|_| 0, &BTreeMap::new(), now);
        assert_eq!(a[0].level, "critical");
    }

    #[test]
    fn external_certificates_are_reminded_with_the_command_from_the_warning_threshold() {
        let now = OffsetDateTime::now_utc();
        let w = watch();
        let command = "run `certkeeper csr new --name web`, send the CSR to the CA";
        let with_command = |days: i64, state: CertState| {
            let mut s = managed(state, days, now);
            s.certificates[0].renew_command = Some(command.into());
            s
        };
        // Inside the warning threshold: a warning, with the command, even
        // though no renewal "failed" (a person has to act).
        let a = due(
            &w,
            &[],
            Some(&with_command(20, CertState::Failed)),
            &|_| 0,
            &BTreeMap::new(),
            now,
        );
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].level, "warning");
        assert!(a[0].message.contains(command), "{}", a[0].message);
        assert!(a[0].message.contains("20 days"), "{}", a[0].message);
        // Far from expiry: nothing, however many runs reported it due.
        assert!(
            due(
                &w,
                &[],
                Some(&with_command(200, CertState::Ok)),
                &|_| 9,
                &BTreeMap::new(),
                now
            )
            .is_empty()
        );
        // Close: critical, still with the command.
        let a = due(
            &w,
            &[],
            Some(&with_command(3, CertState::Failed)),
            &|_| 0,
            &BTreeMap::new(),
            now,
        );
        assert_eq!(a[0].level, "critical");
        assert!(a[0].message.contains(command));
    }

    fn client(days: time::Duration, contact: Option<&str>) -> Watched {
        let mut labels = BTreeMap::from([("environment".to_string(), "prod".to_string())]);
        if let Some(c) = contact {
            labels.insert(CONTACT.into(), c.into());
        }
        Watched {
            name: "hmpps-client".into(),
            source: "s3://backup/hmpps-client/cert.pem".into(),
            labels,
            not_after: OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000) + days,
            serial: "01".into(),
            subject: "CN=client".into(),
        }
    }

    #[test]
    fn a_contact_is_reminded_once_per_level_with_the_days_it_truly_has() {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let w = watch();
        // 9.99 days left: "within the next 9 days" is true, 10 would not be.
        let almost_ten =
            time::Duration::days(9) + time::Duration::hours(23) + time::Duration::minutes(45);
        let certs = [
            client(almost_ten, Some("pki@client.example")),
            Watched {
                name: "no-contact".into(),
                ..client(almost_ten, None)
            },
        ];
        let mut sent = BTreeMap::new();
        let due = reminders(&w, &certs, &sent, now);
        assert_eq!(due.len(), 1, "{due:?}");
        let r = &due[0];
        assert_eq!(
            (r.address.as_str(), r.key.as_str(), r.level),
            ("pki@client.example", "contact/hmpps-client", "warning")
        );
        assert!(
            r.alert.message.contains(
                "for the prod environment is due for renewal: it expires within the next 9 days"
            ),
            "{}",
            r.alert.message
        );
        assert!(
            r.alert
                .message
                .contains("openssl genrsa -out private-key.pem 3072")
        );
        assert!(r.alert.message.contains("send us only the public key"));
        // Sent: not again the next day at the same level ...
        sent.insert(
            r.key.clone(),
            Sent {
                day: "1970-01-01".into(),
                level: "warning".into(),
            },
        );
        assert!(reminders(&w, &certs, &sent, now + time::Duration::days(1)).is_empty());
        // ... once more when it turns critical ...
        let later = reminders(&w, &certs, &sent, now + time::Duration::days(4));
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].level, "critical");
        // ... and never once a renewed certificate is there.
        let renewed = [client(
            time::Duration::days(365),
            Some("pki@client.example"),
        )];
        assert!(reminders(&w, &renewed, &BTreeMap::new(), now).is_empty());
        // Not an address: nobody to mail.
        let odd = [client(almost_ten, Some("the client team"))];
        assert!(reminders(&w, &odd, &BTreeMap::new(), now).is_empty());
    }
}
