//! `certkeeper status`: the table, JSON, JUnit, Nagios exit codes.

use super::*;

pub(crate) fn status_command(
    config: &std::path::Path,
    json: bool,
    junit: Option<&std::path::Path>,
    warning_days: Option<i64>,
    critical_days: Option<i64>,
    max_run_age: Option<&str>,
) -> i32 {
    use certkeeper::report::health::{self, Level, Thresholds};
    const UNKNOWN: i32 = Level::Unknown as i32;
    let settings = match Settings::load(config) {
        Ok(s) => s,
        Err(e) => {
            println!("certkeeper UNKNOWN - {e}");
            return UNKNOWN;
        }
    };
    let max_run_age = match max_run_age.map(certkeeper::duration::parse).transpose() {
        Ok(d) => d,
        Err(e) => {
            println!("certkeeper UNKNOWN - --max-run-age: {e}");
            return UNKNOWN;
        }
    };
    let configured = certkeeper::report::health::Thresholds::from_settings(&settings.health);
    let thresholds = Thresholds {
        warning_days: warning_days.unwrap_or(configured.warning_days),
        critical_days: critical_days.unwrap_or(configured.critical_days),
        max_run_age: max_run_age.unwrap_or(configured.max_run_age),
    };
    let path = settings.state_dir.join(certkeeper::report::STATUS_FILE);
    let status = match certkeeper::report::Status::load(&path) {
        Ok(s) => s,
        // A corrupt status file is not "no run yet": say which it is. The
        // next run writes a new one.
        Err(e @ certkeeper::report::StatusError::Corrupt { .. }) => {
            println!("certkeeper UNKNOWN - {e}; the next run writes a new one");
            return UNKNOWN;
        }
        Err(e) => {
            println!("certkeeper UNKNOWN - no status yet ({e})");
            return UNKNOWN;
        }
    };
    let now = time::OffsetDateTime::now_utc();
    let (level, reasons) = health::overall(&status, &thresholds, now);
    if junit.is_some_and(|f| f.as_os_str() == "-") {
        // Only the report on stdout: for `ssh vm > report.xml` from Jenkins.
        print!("{}", certkeeper::report::junit(&status, &thresholds, now));
        eprintln!("certkeeper {} - {}", level.label(), reasons.join("; "));
        return level as i32;
    }
    if let Some(file) = junit
        && let Err(e) = std::fs::write(file, certkeeper::report::junit(&status, &thresholds, now))
    {
        println!("certkeeper UNKNOWN - cannot write {}: {e}", file.display());
        return UNKNOWN;
    }
    if json {
        let out =
            serde_json::json!({ "level": level.label(), "reasons": reasons, "status": status });
        println!("{}", serde_json::to_string_pretty(&out).expect("json"));
        return level as i32;
    }
    println!(
        "{:<20} {:<32} {:<20} {:>9} {:<8} {:<9} {:<8} HEALTH",
        "NAME", "DOMAINS", "NOT AFTER", "DAYS LEFT", "LAST", "PUBLISHED", "VERIFIED"
    );
    for c in &status.certificates {
        let h = health::certificate(c, &thresholds, now);
        let not_after = c
            .not_after
            .map(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default()
            })
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<20} {:<32} {:<20} {:>9} {:<8} {:<9} {:<8} {} {}",
            c.name,
            c.domains.join(","),
            not_after,
            c.days_left
                .map(|d| d.to_string())
                .unwrap_or_else(|| "-".into()),
            format!("{:?}", c.state).to_lowercase(),
            if c.published { "yes" } else { "no" },
            match c.verified {
                Some(true) => "yes",
                Some(false) => "no",
                None => "-",
            },
            h.level.label(),
            if h.level == Level::Ok {
                String::new()
            } else {
                h.reason
            },
        );
    }
    let summary = if reasons.is_empty() {
        format!(
            "{} certificates, last run {}",
            status.certificates.len(),
            certkeeper::report::days_ago(status.finished_at, now)
        )
    } else {
        reasons.join("; ")
    };
    println!("certkeeper {} - {summary}", level.label());
    level as i32
}
