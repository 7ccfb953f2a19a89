//! Where the config repo meets the settings: the one module that reads
//! both. Checks that what certificates name (issuers, targets, secrets)
//! exists in the settings, and resolves each certificate's issuer chain,
//! targets and profile.

use super::{Certificate, CertificateSpec, Config};
use crate::settings::{DEFAULT_ISSUER, Settings};
use crate::yaml::Located;
use std::collections::BTreeMap;

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
        // The CA refuses an order with more names than it takes.
        let first = c.spec.issuer.as_deref().or(settings.default_issuer());
        let chain = first
            .into_iter()
            .chain(c.spec.fallback_issuers.iter().map(String::as_str));
        if let Some((name, max)) = chain
            .filter_map(|n| settings.issuers.get(n).map(|a| (n, a.max_names())))
            .min_by_key(|(_, max)| *max)
            && c.spec.domains.len() > max
        {
            errors.push(c.domain_error(
                max,
                format!(
                    "{} names in one certificate, more than issuer {name:?} takes (max_names: {max}); split it into several certificates",
                    c.spec.domains.len()
                ),
            ));
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

/// What the settings make of one certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// Issuer names to try, in order.
    pub issuers: Vec<String>,
    /// Target names, in the order they run.
    pub targets: Vec<String>,
    /// The ACME profile it asks for.
    pub profile: Option<String>,
}

const UNRESOLVED: &Resolved = &Resolved {
    issuers: Vec::new(),
    targets: Vec::new(),
    profile: None,
};

/// Every certificate of one config, resolved once per run.
#[derive(Debug, Default)]
pub struct Resolution(BTreeMap<String, Resolved>);

impl Resolution {
    pub fn new(config: &Config, settings: &Settings) -> Resolution {
        Resolution(
            config
                .certificates
                .iter()
                .map(|c| {
                    let resolved = Resolved {
                        issuers: issuers_for(settings, &c.spec),
                        targets: targets_for(settings, &c.spec),
                        profile: effective_profile(settings, &c.spec).map(str::to_string),
                    };
                    (c.name().to_string(), resolved)
                })
                .collect(),
        )
    }

    /// The certificate `name` of the config it was made from (nothing for
    /// a name it does not hold).
    pub fn of(&self, name: &str) -> &Resolved {
        self.0.get(name).unwrap_or(UNRESOLVED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_is_resolved_against_the_settings_defaults() {
        let settings = Settings::parse(
            std::path::Path::new("/etc/ck/certkeeper.yaml"),
            "config_repo: {url: /srv/repo}\nstate_dir: /var/lib/ck\n\
             issuers:\n  le: {directory_url: \"https://a.test/dir\", profile: shortlived}\n  \
             zs: {directory_url: \"https://b.test/dir\"}\n\
             default_targets: [s3]\n\
             targets:\n  s3: {type: s3, bucket: b}\n  other: {type: s3, bucket: c}\n",
        )
        .unwrap();
        let cert = |json: serde_json::Value| Certificate {
            spec: serde_json::from_value(json).unwrap(),
            origin: "certificates.yaml:1".into(),
            file: "certificates.yaml".into(),
            index: 0,
            domain_positions: Vec::new(),
            provider_position: (0, 0),
            name_position: (0, 0),
            target_positions: Vec::new(),
            secret_position: (0, 0),
        };
        let config = Config {
            certificates: vec![
                cert(serde_json::json!({
                    "name": "a", "domains": ["a.example.test"], "issuer": "le",
                    "fallback_issuers": ["zs", "le"]})),
                cert(serde_json::json!({
                    "name": "b", "domains": ["b.example.test"], "issuer": "zs",
                    "profile": "classic", "targets": ["other"]})),
            ],
            warnings: Vec::new(),
        };
        let r = Resolution::new(&config, &settings);
        assert_eq!(r.of("a").issuers, ["le", "zs"]);
        assert_eq!(r.of("a").targets, ["s3"]);
        assert_eq!(r.of("a").profile.as_deref(), Some("shortlived"));
        assert_eq!(r.of("b").issuers, ["zs"]);
        assert_eq!(r.of("b").targets, ["other"]);
        assert_eq!(r.of("b").profile.as_deref(), Some("classic"));
        assert_eq!(r.of("nope"), &Resolved::default());
    }
}
