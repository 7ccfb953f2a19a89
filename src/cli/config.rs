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
    // Zones: the settings' allowlist, else the zones the DNS providers
    // hold, asked as a run asks them; when neither is known, say so.
    let mut zones_note = None;
    if let Some(settings) = &settings {
        use certkeeper::config::gate::Zones;
        let held = match &settings.allowed_zones {
            Some(_) => None,
            None => match zones_held(settings) {
                Ok(zones) => Some(zones),
                Err(why) => {
                    zones_note = Some(format!(
                        "domains not checked against the DNS providers' zones: {why}"
                    ));
                    None
                }
            },
        };
        let zones = match (&settings.allowed_zones, &held) {
            (Some(allowed), _) => Zones::Allowed(allowed),
            (None, Some(held)) => Zones::Held(held),
            (None, None) => Zones::Unknown,
        };
        report
            .errors
            .extend(certkeeper::config::gate::check_against(
                &config, settings, zones,
            ));
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
            let per_day = in_a_day(limit.certificates, limit.per);
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
                report.warnings.push(first_late(
                    certs[per_day],
                    format!(
                        "{} new certificates for the registered domain {domain} from issuer {issuer:?}, whose limit ({} per {}) allows {per_day} in a day: from this one on they wait for later runs",
                        certs.len(),
                        limit.certificates,
                        certkeeper::duration::format(limit.per)
                    ),
                ));
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
            let per_day = in_a_day(limit.orders, limit.per);
            if new.len() > per_day {
                report.warnings.push(first_late(
                    new[per_day],
                    format!(
                        "{} new certificates for issuer {issuer:?}, whose new-order limit ({} per {}) allows {per_day} in a day: from this one on they wait for later runs",
                        new.len(),
                        limit.orders,
                        certkeeper::duration::format(limit.per)
                    ),
                ));
            }
        }
    }
    if settings.is_none() {
        zones_note = Some(
            "DNS providers, issuers, targets and zones not checked: they are in the settings (--settings FILE)".to_string(),
        );
    }
    match format {
        OutputFormat::Text => {
            for e in &report.errors {
                println!("{e}");
            }
            for w in &report.warnings {
                println!("warning: {w}");
            }
            if let Some(note) = &zones_note {
                println!("note: {note}");
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
                "not_checked": zones_note,
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

/// How many a token bucket of `size` refilled over `per` lets through in a
/// day: the full bucket at once, then the refill.
fn in_a_day(size: u32, per: std::time::Duration) -> usize {
    size as usize + (f64::from(size) * 86_400.0 / per.as_secs_f64().max(1.0)) as usize
}

/// The warning at the first certificate that must wait.
fn first_late(
    cert: &certkeeper::config::Certificate,
    message: String,
) -> certkeeper::yaml::Located {
    certkeeper::yaml::Located {
        file: cert.file.clone(),
        line: cert.origin.rsplit(':').next().and_then(|l| l.parse().ok()),
        column: None,
        field: format!("certificates[{}]", cert.index),
        message,
    }
}

/// The zones the settings' DNS providers hold, asked within 30 s; why not
/// when they cannot be asked (no credentials, no network).
fn zones_held(settings: &Settings) -> Result<Vec<String>, String> {
    let runtime = runtime().ok_or("no async runtime")?;
    runtime.block_on(async {
        let asked = async {
            let services = run::Services::from_settings(settings)
                .await
                .map_err(|e| e.to_string())?;
            run::zones_held(&services).await.map_err(|e| e.to_string())
        };
        tokio::time::timeout(std::time::Duration::from_secs(30), asked)
            .await
            .unwrap_or_else(|_| Err("no answer from the DNS providers within 30s".into()))
    })
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
