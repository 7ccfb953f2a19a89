//! Where the config repo meets the settings: the one module that reads
//! both. Checks that what certificates name (issuers, targets, secrets)
//! exists in the settings, and resolves each certificate's issuer chain,
//! targets and profile.

use super::{Certificate, CertificateSpec, Config};
use crate::settings::{DEFAULT_ISSUER, Settings};
use crate::yaml::Located;

/// Refuses certificates naming an issuer the settings do not define.
pub fn check_issuers(config: &Config, settings: &Settings) -> Vec<Located> {
    let mut errors = Vec::new();
    for c in &config.certificates {
        let known: Vec<&String> = settings.issuers.keys().collect();
        if c.spec.is_external() {
            continue;
        }
        let named = c.spec.issuer.iter().chain(&c.spec.fallback_issuers);
        for name in named {
            if !settings.issuers.contains_key(name) {
                errors.push(Located {
                    file: c.file.clone(),
                    line: c.origin.rsplit(':').next().and_then(|l| l.parse().ok()),
                    column: None,
                    field: format!("certificates[{}].issuer", c.index),
                    message: format!("unknown issuer {name:?} (the settings define {known:?})"),
                });
            }
        }
        if c.spec.issuer.is_none() && settings.default_issuer().is_none() {
            errors.push(Located {
                file: c.file.clone(),
                line: c.origin.rsplit(':').next().and_then(|l| l.parse().ok()),
                column: None,
                field: format!("certificates[{}].issuer", c.index),
                message: format!("no issuer given and the settings define several: {known:?}"),
            });
        }
    }
    errors
}

/// Refuses certificates naming a publish target or a PKCS#12 password
/// secret the settings do not define.
pub fn check_targets(config: &Config, settings: &Settings) -> Vec<Located> {
    let known = settings.target_names();
    let mut errors = Vec::new();
    let located =
        |c: &Certificate, (line, column): (usize, usize), field: String, message: String| Located {
            file: c.file.clone(),
            line: (line > 0).then_some(line),
            column: (column > 0).then_some(column),
            field,
            message,
        };
    for c in &config.certificates {
        for (t, target) in c.spec.targets.iter().flatten().enumerate() {
            if !known.contains(target) {
                errors.push(located(
                    c,
                    c.target_positions.get(t).copied().unwrap_or((0, 0)),
                    format!("certificates[{}].targets[{t}]", c.index),
                    format!("unknown publish target {target:?} (the settings define {known:?})"),
                ));
            }
        }
        if let Some(p12) = &c.spec.pkcs12
            && !settings.secrets.contains_key(&p12.password)
        {
            let names: Vec<&String> = settings.secrets.keys().collect();
            errors.push(located(
                c,
                c.secret_position,
                format!("certificates[{}].pkcs12.password", c.index),
                format!(
                    "unknown secret {:?} (the settings' `secrets:` define {names:?})",
                    p12.password
                ),
            ));
        }
    }
    errors
}

/// Issuer names to try for a certificate, in order.
pub fn issuers_for(settings: &Settings, spec: &CertificateSpec) -> Vec<String> {
    let first = spec
        .issuer
        .as_deref()
        .or(settings.default_issuer())
        .unwrap_or(DEFAULT_ISSUER);
    let mut out = vec![first.to_string()];
    for f in &spec.fallback_issuers {
        if !out.contains(f) {
            out.push(f.clone());
        }
    }
    out
}

/// Target names of a certificate, in the order they run.
pub fn targets_for(settings: &Settings, spec: &CertificateSpec) -> Vec<String> {
    spec.targets
        .clone()
        .or_else(|| settings.default_targets.clone())
        .unwrap_or_default()
}

/// The profile a certificate asks for: its own, else its first issuer's.
pub fn effective_profile<'a>(settings: &'a Settings, spec: &'a CertificateSpec) -> Option<&'a str> {
    spec.profile.as_deref().or_else(|| {
        let first = issuers_for(settings, spec).into_iter().next()?;
        settings.issuers.get(&first)?.profile.as_deref()
    })
}
