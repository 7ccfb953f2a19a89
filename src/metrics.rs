//! Prometheus metrics, kept in one process-wide registry.
//!
//! Counters are bumped where things happen (ACME requests, DNS changes,
//! publishes); certificate gauges are derived from the status when
//! scraped, so they always agree with `status.json`.

use crate::report::{CertState, Status};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

type Labels = Vec<(&'static str, String)>;

static COUNTERS: Mutex<BTreeMap<(&'static str, Labels), u64>> = Mutex::new(BTreeMap::new());
static GAUGES: Mutex<BTreeMap<&'static str, f64>> = Mutex::new(BTreeMap::new());

/// Adds one to counter `name` with `labels`.
pub fn inc(name: &'static str, labels: &[(&'static str, &str)]) {
    let labels = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
    *COUNTERS
        .lock()
        .expect("metrics lock")
        .entry((name, labels))
        .or_default() += 1;
}

/// Sets process-level gauge `name`.
/// The sum of a counter over all its labels (for run summaries).
pub fn total(name: &str) -> u64 {
    COUNTERS
        .lock()
        .map(|c| {
            c.iter()
                .filter(|((n, _), _)| *n == name)
                .map(|(_, v)| *v)
                .sum()
        })
        .unwrap_or(0)
}

pub fn set(name: &'static str, value: f64) {
    GAUGES.lock().expect("metrics lock").insert(name, value);
}

const HELP: &[(&str, &str, &str)] = &[
    (
        "certkeeper_watched_certificate_expiration_timestamp_seconds",
        "gauge",
        "notAfter of the newest watched certificate per name.",
    ),
    (
        "certkeeper_certificate_expiration_timestamp_seconds",
        "gauge",
        "notAfter of the live certificate.",
    ),
    (
        "certkeeper_certificate_renewal_timestamp_seconds",
        "gauge",
        "When the live certificate was issued.",
    ),
    (
        "certkeeper_certificate_ready",
        "gauge",
        "1 when the certificate is valid, its last run succeeded and it is published.",
    ),
    (
        "certkeeper_rollout_aligned",
        "gauge",
        "1 when every consumer of the certificate's rollout references its current copy.",
    ),
    (
        "certkeeper_rollout_consumers",
        "gauge",
        "Consumers of the certificate's rollout, by whether they reference its current copy.",
    ),
    (
        "certkeeper_run_last_success_timestamp_seconds",
        "gauge",
        "End of the last run without failures.",
    ),
    (
        "certkeeper_run_duration_seconds",
        "gauge",
        "Duration of the last run.",
    ),
    (
        "certkeeper_acme_requests_total",
        "counter",
        "ACME requests by issuer and HTTP status.",
    ),
    (
        "certkeeper_dns_changes_total",
        "counter",
        "DNS record changes by provider.",
    ),
    (
        "certkeeper_publish_total",
        "counter",
        "Publishes by target and result.",
    ),
];

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(pairs: &[(&str, String)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// The text exposition format, with certificate gauges from `status`.
pub fn render(
    status: Option<&Status>,
    watched: &[crate::watch::Watched],
    now: time::OffsetDateTime,
) -> String {
    let mut out = String::new();
    let mut lines: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for w in watched {
        lines
            .entry("certkeeper_watched_certificate_expiration_timestamp_seconds")
            .or_default()
            .push(format!(
                "{} {}",
                labels(&[("name", w.name.clone()), ("source", w.source.clone())]),
                w.not_after.unix_timestamp()
            ));
    }
    if let Some(status) = status {
        for c in &status.certificates {
            let l = labels(&[("name", c.name.clone())]);
            if let Some(t) = c.not_after {
                lines
                    .entry("certkeeper_certificate_expiration_timestamp_seconds")
                    .or_default()
                    .push(format!("{l} {}", t.unix_timestamp()));
            }
            if let Some(t) = c.issued_at {
                lines
                    .entry("certkeeper_certificate_renewal_timestamp_seconds")
                    .or_default()
                    .push(format!("{l} {}", t.unix_timestamp()));
            }
            let ready =
                c.state != CertState::Failed && c.published && c.not_after.is_some_and(|t| t > now);
            lines
                .entry("certkeeper_certificate_ready")
                .or_default()
                .push(format!("{l} {}", u8::from(ready)));
            if let Some(rollout) = &c.rollout {
                lines
                    .entry("certkeeper_rollout_aligned")
                    .or_default()
                    .push(format!("{l} {}", u8::from(rollout.aligned)));
                for aligned in [true, false] {
                    let n = rollout
                        .consumers
                        .iter()
                        .filter(|c| c.aligned == aligned)
                        .count();
                    lines
                        .entry("certkeeper_rollout_consumers")
                        .or_default()
                        .push(format!(
                            "{} {n}",
                            labels(&[("name", c.name.clone()), ("aligned", aligned.to_string())])
                        ));
                }
            }
        }
        lines
            .entry("certkeeper_run_duration_seconds")
            .or_default()
            .push(format!(
                " {}",
                (status.finished_at - status.started_at).as_seconds_f64()
            ));
    }
    for (name, value) in GAUGES.lock().expect("metrics lock").iter() {
        lines.entry(name).or_default().push(format!(" {value}"));
    }
    for ((name, pairs), value) in COUNTERS.lock().expect("metrics lock").iter() {
        lines
            .entry(name)
            .or_default()
            .push(format!("{} {value}", labels(pairs)));
    }
    for (name, kind, help) in HELP {
        let Some(values) = lines.get(name) else {
            continue;
        };
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for v in values {
            let _ = writeln!(out, "{name}{v}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_with_escaped_labels() {
        inc(
            "certkeeper_publish_total",
            &[("target", "s\"3"), ("result", "ok")],
        );
        inc(
            "certkeeper_publish_total",
            &[("target", "s\"3"), ("result", "ok")],
        );
        let text = render(None, &[], time::OffsetDateTime::now_utc());
        assert!(
            text.contains("# TYPE certkeeper_publish_total counter"),
            "{text}"
        );
        assert!(
            text.contains("certkeeper_publish_total{target=\"s\\\"3\",result=\"ok\"} 2"),
            "{text}"
        );
    }

    #[test]
    fn rollout_alignment_is_a_gauge_per_certificate() {
        let now = time::OffsetDateTime::now_utc();
        let mut cert = crate::report::CertStatus {
            not_after: Some(now + time::Duration::days(60)),
            published: true,
            ..crate::report::CertStatus::new("web", vec![], CertState::Ok)
        };
        let consumer = |aligned| crate::report::ConsumerStatus {
            consumer: "elb small:443".into(),
            references: vec![],
            aligned,
        };
        cert.rollout = Some(crate::report::RolloutStatus {
            aligned: false,
            result: "not aligned".into(),
            consumers: vec![consumer(true), consumer(false), consumer(false)],
        });
        let status = Status {
            started_at: now,
            finished_at: now,
            config_commit: None,
            config: "ok".into(),
            config_rejected: None,
            error: None,
            certificates: vec![cert],
        };
        let text = render(Some(&status), &[], now);
        assert!(
            text.contains("certkeeper_rollout_aligned{name=\"web\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("certkeeper_rollout_consumers{name=\"web\",aligned=\"true\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("certkeeper_rollout_consumers{name=\"web\",aligned=\"false\"} 2"),
            "{text}"
        );
    }
}
