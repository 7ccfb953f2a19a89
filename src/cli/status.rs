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
    let summary = if reasons.is_empty() {
        format!(
            "{} certificates, last run {}",
            status.certificates.len(),
            certkeeper::report::days_ago(status.finished_at, now)
        )
    } else {
        reasons.join("; ")
    };
    if junit.is_some_and(|f| f.as_os_str() == "-") {
        // Only the report on stdout: for `ssh vm > report.xml` from Jenkins.
        print!("{}", certkeeper::report::junit(&status, &thresholds, now));
        eprintln!("certkeeper {} - {summary}", level.label());
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
    let mut rows = vec![
        [
            "NAME",
            "DOMAINS",
            "NOT AFTER",
            "DAYS LEFT",
            "LAST",
            "PUBLISHED",
            "VERIFIED",
            "HEALTH",
        ]
        .map(String::from),
    ];
    for c in &status.certificates {
        let h = health::certificate(c, &thresholds, now);
        let not_after = c
            .not_after
            .map(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default()
            })
            .unwrap_or_else(|| "-".into());
        let health = if h.level == Level::Ok {
            h.level.label().to_string()
        } else {
            format!("{} {}", h.level.label(), h.reason)
        };
        rows.push([
            c.name.clone(),
            c.domains.join(","),
            not_after,
            c.days_left
                .map(|d| d.to_string())
                .unwrap_or_else(|| "-".into()),
            format!("{:?}", c.state).to_lowercase(),
            if c.published { "yes" } else { "no" }.into(),
            match c.verified {
                Some(true) => "yes",
                Some(false) => "no",
                None => "-",
            }
            .into(),
            health,
        ]);
    }
    print!("{}", table(&rows));
    for c in &status.certificates {
        let Some(r) = &c.rollout else {
            continue;
        };
        let aligned = r.consumers.iter().filter(|c| c.aligned).count();
        println!(
            "\nrollout {}: {} ({aligned} of {} consumers reference the current copy)",
            c.name,
            if r.aligned { "aligned" } else { "NOT ALIGNED" },
            r.consumers.len()
        );
        if !r.aligned {
            println!("  {}", r.result);
        }
        let mut rows = vec![["CONSUMER", "ALIGNED", "REFERENCES"].map(String::from)];
        for consumer in &r.consumers {
            rows.push([
                consumer.consumer.clone(),
                if consumer.aligned { "yes" } else { "no" }.into(),
                consumer.references.join(","),
            ]);
        }
        for line in table(&rows).lines() {
            println!("  {line}");
        }
    }
    println!("certkeeper {} - {summary}", level.label());
    level as i32
}

/// Columns as wide as their widest cell (the last one free), so long
/// names or domain lists never shift the columns after them; DAYS LEFT
/// right-aligned.
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else if i == 3 {
                line.push_str(&format!("{cell:>w$} ", w = widths[i]));
            } else {
                line.push_str(&format!("{cell:<w$} ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::table;

    #[test]
    fn long_cells_widen_their_column_and_shift_nothing_after() {
        let row = |a: &str, b: &str, c: &str| [a.to_string(), b.to_string(), c.to_string()];
        let text = table(&[
            row("NAME", "DOMAINS", "HEALTH"),
            row("a", "a.example.test", "OK"),
            row("b", &["x.example.test"; 6].join(","), "WARNING soon"),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        let column = |l: &str, word: &str| l.find(word).unwrap();
        assert_eq!(column(lines[0], "HEALTH"), column(lines[1], "OK"));
        assert_eq!(column(lines[0], "HEALTH"), column(lines[2], "WARNING"));
    }
}
