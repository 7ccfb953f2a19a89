//! `certkeeper config check`: every problem of the settings and the config
//! repo, with file, line and field.

use super::*;

pub(crate) fn config_check(
    repo: &std::path::Path,
    settings: Option<&std::path::Path>,
    format: OutputFormat,
) -> i32 {
    let settings = match settings.map(Settings::load).transpose() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("certkeeper: {e}");
            return exit::CONFIG_ERROR;
        }
    };
    let (config, mut report) = match certkeeper::config::Config::check_tree(repo) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("certkeeper: {}: {e}", repo.display());
            return exit::CONFIG_ERROR;
        }
    };
    if let Some(settings) = &settings {
        let providers: Vec<String> = settings.dns_providers.keys().cloned().collect();
        report.errors.extend(config.check_providers(&providers));
        report
            .errors
            .extend(certkeeper::config::resolve::check_issuers(
                &config, settings,
            ));
        report
            .errors
            .extend(certkeeper::config::resolve::check_targets(
                &config, settings,
            ));
        if let Some(zones) = &settings.allowed_zones {
            report.errors.extend(config.check_allowed_zones(zones));
        }
        // More new certificates than the CA takes in a day: say so now,
        // not as a queue that surprises someone tomorrow.
        // Only read: a check never creates the state dir.
        let store = settings
            .state_dir
            .is_dir()
            .then(|| certkeeper::store::Store::open(&settings.state_dir).ok())
            .flatten();
        let resolution = certkeeper::config::resolve::Resolution::new(&config, settings);
        let mut new_by_issuer: std::collections::BTreeMap<
            &str,
            Vec<&certkeeper::config::Certificate>,
        > = Default::default();
        for c in &config.certificates {
            let known = store
                .as_ref()
                .is_some_and(|s| s.live_meta(c.name()).ok().flatten().is_some());
            if let (false, Some(issuer)) = (
                known || c.spec.is_external(),
                resolution.of(c.name()).issuers.first(),
            ) {
                new_by_issuer.entry(issuer.as_str()).or_default().push(c);
            }
        }
        for (issuer, new) in &new_by_issuer {
            let Some(limit) = settings
                .issuers
                .get(*issuer)
                .and_then(|a| a.registered_domain_limit())
            else {
                continue;
            };
            let per_day = limit.certificates as usize
                + (f64::from(limit.certificates) * 86_400.0 / limit.per.as_secs_f64().max(1.0))
                    as usize;
            let mut by_domain: std::collections::BTreeMap<
                String,
                Vec<&certkeeper::config::Certificate>,
            > = Default::default();
            for c in new {
                let mut domains: Vec<String> = c
                    .spec
                    .domains
                    .iter()
                    .filter_map(|d| certkeeper::psl::system().registered_domain(d))
                    .collect();
                domains.sort();
                domains.dedup();
                for d in domains {
                    by_domain.entry(d).or_default().push(c);
                }
            }
            for (domain, certs) in by_domain {
                if certs.len() <= per_day {
                    continue;
                }
                let first_late = certs[per_day];
                report.warnings.push(certkeeper::yaml::Located {
                    file: first_late.file.clone(),
                    line: first_late.origin.rsplit(':').next().and_then(|l| l.parse().ok()),
                    column: None,
                    field: format!("certificates[{}]", first_late.index),
                    message: format!(
                        "{} new certificates for the registered domain {domain} from issuer {issuer:?}, whose limit ({} per {}) allows {per_day} in a day: from this one on they wait for later runs",
                        certs.len(),
                        limit.certificates,
                        certkeeper::duration::format(limit.per)
                    ),
                });
            }
        }
        for (issuer, new) in new_by_issuer {
            let Some(limit) = settings
                .issuers
                .get(issuer)
                .and_then(|a| a.new_order_limit())
            else {
                continue;
            };
            let per_day = limit.orders as usize
                + (f64::from(limit.orders) * 86_400.0 / limit.per.as_secs_f64().max(1.0)) as usize;
            if new.len() > per_day {
                let first_late = new[per_day];
                report.warnings.push(certkeeper::yaml::Located {
                    file: first_late.file.clone(),
                    line: first_late.origin.rsplit(':').next().and_then(|l| l.parse().ok()),
                    column: None,
                    field: format!("certificates[{}]", first_late.index),
                    message: format!(
                        "{} new certificates for issuer {issuer:?}, whose new-order limit ({} per {}) allows {per_day} in a day: from this one on they wait for later runs",
                        new.len(),
                        limit.orders,
                        certkeeper::duration::format(limit.per)
                    ),
                });
            }
        }
    }
    match format {
        OutputFormat::Text => {
            for e in &report.errors {
                println!("{e}");
            }
            for w in &report.warnings {
                println!("warning: {w}");
            }
            println!(
                "{} certificates, {} errors, {} warnings",
                config.certificates.len(),
                report.errors.len(),
                report.warnings.len()
            );
        }
        OutputFormat::Json => {
            let json = serde_json::json!({
                "valid": report.errors.is_empty(),
                "certificates": config.certificates.iter().map(|c| c.name()).collect::<Vec<_>>(),
                "errors": report.errors.iter().map(located_json).collect::<Vec<_>>(),
                "warnings": report.warnings.iter().map(located_json).collect::<Vec<_>>(),
            });
            println!("{}", serde_json::to_string_pretty(&json).expect("json"));
        }
    }
    if report.errors.is_empty() {
        exit::OK
    } else {
        exit::CONFIG_ERROR
    }
}

pub(crate) fn located_json(l: &certkeeper::yaml::Located) -> serde_json::Value {
    serde_json::json!({
        "file": l.file.display().to_string(),
        "line": l.line,
        "column": l.column,
        "field": l.field,
        "message": l.message,
    })
}
