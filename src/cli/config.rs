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
