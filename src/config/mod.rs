//! The config repo: which certificates exist, for which names, with which key.
//!
//! This module owns the repo's file format and its validation. It does no
//! network I/O except in [`source`], which fetches the repo with git.

pub mod domain;
pub mod gate;
pub mod resolve;
pub mod signature;
pub mod source;

use crate::yaml::{self, Located};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Files looked at inside the config repo, in this order.
pub const ROOT_FILE: &str = "certificates.yaml";
pub const TEAM_DIR: &str = "certificates";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config repo has no {ROOT_FILE} and no {TEAM_DIR}/*.yaml files")]
    Empty,
    #[error("{}", join_lines(.0))]
    Invalid(Vec<Located>),
}

fn join_lines(errors: &[Located]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A certificate as the config repo describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateSpec {
    pub name: String,
    /// Absent for `issuer: external` certificates with a `csr:` (their
    /// names come from it).
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(default)]
    pub key_type: KeyType,
    #[serde(default)]
    pub dns: DnsSpec,
    #[serde(default)]
    pub renew_before: Option<RenewBefore>,
    /// Issuer name from the settings; default: the `acme:` issuer.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Issuers tried in order when `issuer` fails.
    #[serde(default)]
    pub fallback_issuers: Vec<String>,
    /// ACME profile; default: the issuer's.
    #[serde(default)]
    pub profile: Option<String>,
    /// Keep the private key across renewals (default: a fresh key each time).
    #[serde(default)]
    pub reuse_key: bool,
    /// Publish targets (defined in the settings), run in this order.
    /// Absent: the settings' `default_targets`.
    #[serde(default)]
    pub targets: Option<Vec<String>>,
    /// Values for the targets' templates, e.g. `mailbox` for
    /// `/registrations/{env}/user-input/mesh/{mailbox}-cert`.
    #[serde(default)]
    pub vars: std::collections::BTreeMap<String, String>,
    /// Also keep the set as PKCS#12 (`cert.p12`).
    #[serde(default)]
    pub pkcs12: Option<Pkcs12Spec>,
    /// Also keep `fingerprints.txt` (SHA-256, SHA-1, MD5 and monit's MD5).
    #[serde(default)]
    pub fingerprints: bool,
    /// Endpoints that must serve the new certificate after publishing.
    #[serde(default)]
    pub verify: Option<VerifySpec>,
    /// For `issuer: external`: what `certkeeper csr new` asks the CA for.
    #[serde(default)]
    pub csr: Option<CsrSpec>,
}

impl CertificateSpec {
    /// Signed by a CA without ACME: made with `csr new`, brought in with
    /// `csr import`, never renewed here.
    pub fn is_external(&self) -> bool {
        self.issuer.as_deref() == Some(EXTERNAL)
    }
}

/// The request of an external certificate. Templates use the
/// certificate's `vars`, e.g. `cn: "{identifier}.{ods}.mesh-client.nhs.uk"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsrSpec {
    pub cn: String,
    #[serde(default)]
    pub sans: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs12Spec {
    /// Name of a secret in the settings' `secrets:`.
    pub password: String,
    /// 3DES and SHA-1 for old Java (before 8u301) instead of AES-256.
    #[serde(default)]
    pub legacy: bool,
    /// Friendly name of the key entry (the keytool alias).
    #[serde(default = "default_alias")]
    pub alias: String,
    /// A Java-ready keystore: the chain's CA certificates are also trusted
    /// entries, `rootca` and `subca` (`keytool -list` shows three entries).
    #[serde(default)]
    pub trusted_chain: bool,
}

fn default_alias() -> String {
    "certkeeper".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySpec {
    pub endpoints: Vec<Endpoint>,
    /// How long to keep checking after a publish (rollouts take minutes).
    #[serde(
        default = "default_verify_window",
        with = "crate::duration::serde_human"
    )]
    pub window: std::time::Duration,
    #[serde(
        default = "default_verify_interval",
        with = "crate::duration::serde_human"
    )]
    pub interval: std::time::Duration,
}

fn default_verify_window() -> std::time::Duration {
    std::time::Duration::from_secs(300)
}

fn default_verify_interval() -> std::time::Duration {
    std::time::Duration::from_secs(10)
}

/// `host:port`, or `{address: host:port, sni: name}` when the name to ask
/// for differs from the address.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Endpoint {
    Address(String),
    WithSni { address: String, sni: String },
}

impl Endpoint {
    pub fn address(&self) -> &str {
        match self {
            Endpoint::Address(a) | Endpoint::WithSni { address: a, .. } => a,
        }
    }

    /// The server name sent: explicit, else the host part of the address.
    pub fn sni(&self) -> &str {
        match self {
            Endpoint::WithSni { sni, .. } => sni,
            Endpoint::Address(a) => a.rsplit_once(':').map(|(h, _)| h).unwrap_or(a),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSpec {
    /// Name of a DNS provider defined in the settings (`dns_providers`).
    #[serde(default = "default_provider")]
    pub provider: String,
    /// Route53 hosted zone id; found by longest matching suffix when absent.
    pub hosted_zone_id: Option<String>,
}

impl Default for DnsSpec {
    fn default() -> Self {
        Self {
            provider: default_provider(),
            hosted_zone_id: None,
        }
    }
}

pub use crate::pki::KeyType;

/// The `issuer` of certificates signed outside ACME, in the config and in
/// meta.json.
pub const EXTERNAL: &str = "external";

fn default_provider() -> String {
    crate::names::DEFAULT_DNS_PROVIDER.to_string()
}

/// How early to renew: a fixed time before expiry, or a share of the lifetime.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RenewBefore {
    Remaining(Duration),
    /// Renew when less than this fraction (0..1) of the lifetime remains.
    Fraction(f64),
}

impl Eq for RenewBefore {}

impl Default for RenewBefore {
    fn default() -> Self {
        RenewBefore::Fraction(1.0 / 3.0)
    }
}

/// `renew_before` that is neither a fraction nor a duration.
#[derive(Debug, thiserror::Error)]
pub enum RenewBeforeError {
    #[error("{0:?} is not a fraction between 0 and 1 (e.g. \"1/3\" or \"33%\")")]
    Fraction(String),
    #[error(transparent)]
    Duration(#[from] crate::duration::DurationError),
}

impl RenewBefore {
    pub fn parse(text: &str) -> Result<Self, RenewBeforeError> {
        let text = text.trim();
        let fraction = if let Some(pct) = text.strip_suffix('%') {
            Some(pct.trim().parse::<f64>().map(|p| p / 100.0))
        } else {
            text.split_once('/').map(|(a, b)| {
                let a: f64 = a.trim().parse()?;
                let b: f64 = b.trim().parse()?;
                Ok(a / b)
            })
        };
        match fraction {
            Some(Ok(f)) if f > 0.0 && f < 1.0 => Ok(RenewBefore::Fraction(f)),
            Some(_) => Err(RenewBeforeError::Fraction(text.to_string())),
            None => Ok(RenewBefore::Remaining(crate::duration::parse(text)?)),
        }
    }
}

impl<'de> Deserialize<'de> for RenewBefore {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        RenewBefore::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A certificate together with where it was declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    pub spec: CertificateSpec,
    /// Repo-relative file and line of its entry, e.g. `certificates/web.yaml:12`.
    pub origin: String,
    pub file: PathBuf,
    /// Index in its file's `certificates` list.
    pub index: usize,
    /// Line and column of each domain, for errors found later.
    pub domain_positions: Vec<(usize, usize)>,
    /// Line and column of `dns.provider` (or of the entry when defaulted).
    pub provider_position: (usize, usize),
    pub target_positions: Vec<(usize, usize)>,
    pub secret_position: (usize, usize),
}

impl Certificate {
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// An error about one of this certificate's domains, located.
    pub fn domain_error(&self, domain_index: usize, message: String) -> Located {
        let (line, column) = self
            .domain_positions
            .get(domain_index)
            .copied()
            .unwrap_or((0, 0));
        Located {
            file: self.file.clone(),
            line: (line > 0).then_some(line),
            column: (column > 0).then_some(column),
            field: format!("certificates[{}].domains[{domain_index}]", self.index),
            message,
        }
    }
}

/// Everything wrong (errors) or suspicious (warnings) in a config.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub errors: Vec<Located>,
    pub warnings: Vec<Located>,
}

/// The validated config of one commit.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub certificates: Vec<Certificate>,
    pub warnings: Vec<Located>,
}

impl Config {
    /// Loads and validates every certificates file of a working tree.
    pub fn load(root: &Path) -> Result<Config, ConfigError> {
        Config::from_report(Config::check_tree(root)?)
    }

    /// Reads every certificates file of a working tree and checks it,
    /// collecting every problem instead of stopping at the first.
    pub fn check_tree(root: &Path) -> Result<(Config, Report), ConfigError> {
        let files = certificate_files(root)?;
        if files.is_empty() {
            return Err(ConfigError::Empty);
        }
        let mut sources = Vec::new();
        for path in files {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            sources.push((rel, text));
        }
        Ok(Config::check(&sources))
    }

    /// Parses and validates already-read files.
    pub fn parse(files: &[(PathBuf, String)]) -> Result<Config, ConfigError> {
        Config::from_report(Config::check(files))
    }

    fn from_report((config, report): (Config, Report)) -> Result<Config, ConfigError> {
        if report.errors.is_empty() {
            Ok(Config {
                warnings: report.warnings,
                ..config
            })
        } else {
            Err(ConfigError::Invalid(report.errors))
        }
    }

    /// Checks files and returns whatever certificates were readable, plus
    /// every error and warning found.
    pub fn check(files: &[(PathBuf, String)]) -> (Config, Report) {
        let mut report = Report::default();
        let mut certificates: Vec<Certificate> = Vec::new();
        for (path, text) in files {
            certificates.extend(parse_file(path, text, &mut report.errors));
        }
        cross_check(&certificates, &mut report);
        (
            Config {
                certificates,
                warnings: Vec::new(),
            },
            report,
        )
    }

    /// Refuses certificates naming a DNS provider the settings do not define.
    pub fn check_providers(&self, known: &[String]) -> Vec<Located> {
        self.certificates
            .iter()
            .filter(|c| !c.spec.is_external() && !known.contains(&c.spec.dns.provider))
            .map(|c| {
                let (line, column) = c.provider_position;
                Located {
                    file: c.file.clone(),
                    line: (line > 0).then_some(line),
                    column: (column > 0).then_some(column),
                    field: format!("certificates[{}].dns.provider", c.index),
                    message: format!(
                        "unknown DNS provider {:?} (the settings define {known:?})",
                        c.spec.dns.provider
                    ),
                }
            })
            .collect()
    }

    /// Refuses certificates with a domain outside `zones` (the settings'
    /// allowlist, which the repo cannot widen).
    pub fn check_allowed_zones(&self, zones: &[String]) -> Vec<Located> {
        let zones: Vec<String> = zones.iter().map(|z| domain::normalize_name(z)).collect();
        let mut errors = Vec::new();
        // External certificates are not issued through our DNS.
        for cert in self.certificates.iter().filter(|c| !c.spec.is_external()) {
            for (i, d) in cert.spec.domains.iter().enumerate() {
                let base = d.strip_prefix("*.").unwrap_or(d);
                if !zones
                    .iter()
                    .any(|z| base == z || base.ends_with(&format!(".{z}")))
                {
                    errors.push(cert.domain_error(
                        i,
                        format!("{d:?} is outside the allowed zones {zones:?} (allowed_zones in the settings)"),
                    ));
                }
            }
        }
        errors
    }
}

/// Parses one file; pushes located errors, returns the certificates that
/// deserialized (even if they failed later checks, so cross-file checks see them).
fn parse_file(path: &Path, text: &str, errors: &mut Vec<Located>) -> Vec<Certificate> {
    let value: yaml_serde::Value = match yaml::parse(path, text) {
        Ok(v) => v,
        Err(e) => {
            errors.push(e);
            return Vec::new();
        }
    };
    let positions = yaml::locations(text);
    let at = |field: String, message: String| {
        // serde names no error kinds: its "unknown field" message is the
        // only sign that the key, not its value, is what to point at.
        let pos = if message.starts_with("unknown field") {
            yaml::locate_key(&positions, &field)
        } else {
            yaml::locate(&positions, &field)
        };
        Located {
            file: path.to_path_buf(),
            line: pos.map(|p| p.0),
            column: pos.map(|p| p.1),
            field,
            message,
        }
    };
    let items = match value {
        yaml_serde::Value::Null => return Vec::new(),
        yaml_serde::Value::Mapping(map) => {
            let mut items = Vec::new();
            for (key, v) in map {
                match key.as_str() {
                    Some("certificates") => match v {
                        yaml_serde::Value::Sequence(seq) => items = seq,
                        yaml_serde::Value::Null => {}
                        _ => errors.push(at(
                            "certificates".into(),
                            "must be a list of certificates".into(),
                        )),
                    },
                    other => errors.push(at(
                        other.unwrap_or("?").to_string(),
                        format!(
                            "unknown field `{}`, expected `certificates`",
                            other.unwrap_or("?")
                        ),
                    )),
                }
            }
            items
        }
        _ => {
            errors.push(at(
                String::new(),
                "expected a mapping with a `certificates` list".into(),
            ));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let base = format!("certificates[{index}]");
        let mut spec: CertificateSpec = match serde_path_to_error::deserialize(item) {
            Ok(spec) => spec,
            Err(e) => {
                let inner = e.path().to_string();
                let field = if inner == "." || inner.is_empty() {
                    base
                } else {
                    format!("{base}.{inner}")
                };
                errors.push(at(field, e.inner().to_string()));
                continue;
            }
        };
        validate_spec(&mut spec, index, &mut |field: String, message: String| {
            errors.push(at(field, message))
        });
        let (line, _) = yaml::locate(&positions, &base).unwrap_or((0, 0));
        let domain_positions = (0..spec.domains.len())
            .map(|d| yaml::locate(&positions, &format!("{base}.domains[{d}]")).unwrap_or((0, 0)))
            .collect();
        let provider_position =
            yaml::locate(&positions, &format!("{base}.dns.provider")).unwrap_or((line, 0));
        let target_positions = (0..spec.targets.as_ref().map_or(0, Vec::len))
            .map(|t| yaml::locate(&positions, &format!("{base}.targets[{t}]")).unwrap_or((line, 0)))
            .collect();
        let secret_position =
            yaml::locate(&positions, &format!("{base}.pkcs12.password")).unwrap_or((line, 0));
        out.push(Certificate {
            provider_position,
            target_positions,
            secret_position,
            origin: format!("{}:{line}", path.display()),
            file: path.to_path_buf(),
            index,
            domain_positions,
            spec,
        });
    }
    out
}

/// Checks across all files: unique names (error), a domain in two
/// certificates (warning: legal, but usually a copy-paste mistake).
fn cross_check(certificates: &[Certificate], report: &mut Report) {
    let mut names: BTreeMap<&str, &Certificate> = BTreeMap::new();
    let mut domains: BTreeMap<&str, &Certificate> = BTreeMap::new();
    for cert in certificates {
        if let Some(first) = names.get(cert.name()) {
            report.errors.push(Located {
                file: cert.file.clone(),
                line: cert.origin.rsplit(':').next().and_then(|l| l.parse().ok()),
                column: None,
                field: format!("certificates[{}].name", cert.index),
                message: format!(
                    "duplicate certificate name {:?}, first defined at {}",
                    cert.name(),
                    first.origin
                ),
            });
        } else {
            names.insert(cert.name(), cert);
        }
        for (i, d) in cert.spec.domains.iter().enumerate() {
            match domains.get(d.as_str()) {
                Some(first) if first.name() != cert.name() => {
                    report.warnings.push(cert.domain_error(
                        i,
                        format!(
                            "{d:?} is also in certificate {:?} ({})",
                            first.name(),
                            first.origin
                        ),
                    ))
                }
                Some(_) => {}
                None => {
                    domains.insert(d, cert);
                }
            }
        }
    }
}

fn validate_spec(spec: &mut CertificateSpec, idx: usize, err: &mut impl FnMut(String, String)) {
    if !valid_name(&spec.name) {
        err(
            format!("certificates[{idx}].name"),
            format!(
                "{:?} is not a valid certificate name (letters, digits, '.', '-', '_'; it becomes a directory and S3 key)",
                spec.name
            ),
        );
    }
    match (&spec.csr, spec.is_external()) {
        (Some(_), false) => err(
            format!("certificates[{idx}].csr"),
            format!(
                "`csr` is only for certificates with `issuer: {}` (ACME certificates make their own)",
                EXTERNAL
            ),
        ),
        (Some(csr), true) => {
            if !spec.domains.is_empty() {
                err(
                    format!("certificates[{idx}].domains"),
                    "an external certificate with `csr` takes its names from `csr.cn` and `csr.sans`; remove `domains`".into(),
                );
            }
            match domain::render_names(&csr.cn, &csr.sans, &spec.vars) {
                Ok((cn, sans)) => {
                    let cn = cn.to_ascii_lowercase();
                    spec.domains = vec![cn.clone()];
                    spec.domains.extend(sans.into_iter().filter(|s| *s != cn));
                }
                Err(e) => {
                    let field = e.field.replace("san[", "sans[");
                    err(
                        format!("certificates[{idx}].csr.{field}"),
                        e.reason.to_string(),
                    );
                }
            }
        }
        (None, _) if spec.domains.is_empty() => err(
            format!("certificates[{idx}].domains"),
            if spec.is_external() {
                "an external certificate needs `csr.cn` (or `domains`)".into()
            } else {
                "at least one domain is required".into()
            },
        ),
        (None, _) => {}
    }
    if spec.is_external() && (!spec.fallback_issuers.is_empty() || spec.profile.is_some()) {
        err(
            format!("certificates[{idx}].issuer"),
            "an external certificate has no fallback_issuers or profile (no ACME is involved)"
                .into(),
        );
    }
    if let Some(verify) = &spec.verify {
        for (e, endpoint) in verify.endpoints.iter().enumerate() {
            let addr = endpoint.address();
            let ok = addr
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
            if !ok {
                err(
                    format!("certificates[{idx}].verify.endpoints[{e}]"),
                    format!("{addr:?} is not host:port"),
                );
            }
        }
        if verify.interval.is_zero() {
            err(
                format!("certificates[{idx}].verify.interval"),
                "must be more than 0s".into(),
            );
        }
    }
    for key in spec.vars.keys() {
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            err(
                format!("certificates[{idx}].vars.{key}"),
                "variable names are letters, digits and '_'".into(),
            );
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (d, domain) in spec.domains.iter_mut().enumerate() {
        let field = format!("certificates[{idx}].domains[{d}]");
        match domain::normalize(domain) {
            Err(why) => err(field, why.to_string()),
            Ok(ascii) => {
                if !seen.insert(ascii.clone()) {
                    err(field, format!("{domain:?} is listed twice"));
                }
                *domain = ascii;
            }
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

fn certificate_files(root: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let mut files = Vec::new();
    let root_file = root.join(ROOT_FILE);
    if root_file.is_file() {
        files.push(root_file);
    }
    let dir = root.join(TEAM_DIR);
    if dir.is_dir() {
        let entries = std::fs::read_dir(&dir).map_err(|source| ConfigError::Read {
            path: dir.clone(),
            source,
        })?;
        let mut team: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect();
        team.sort();
        files.extend(team);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_one(text: &str) -> Result<Config, ConfigError> {
        Config::parse(&[(PathBuf::from("certificates.yaml"), text.to_string())])
    }

    #[test]
    fn defaults_apply() {
        let c = parse_one("certificates:\n  - name: web\n    domains: [a.example.test]\n").unwrap();
        let spec = &c.certificates[0].spec;
        assert_eq!(spec.key_type, KeyType::EcdsaP256);
        assert_eq!(spec.dns.provider, "route53");
        assert_eq!(spec.renew_before, None);
        assert_eq!(c.certificates[0].origin, "certificates.yaml:2");
    }

    #[test]
    fn all_errors_reported_with_locations() {
        let text = "certificates:\n  - name: web\n    domains: [a.example.test]\n  - name: api\n    domains:\n      - ok.example.test\n      - \"*.*.example.test\"\n  - name: web\n    domains: [b.example.test]\n";
        let err = parse_one(text).unwrap_err().to_string();
        assert!(
            err.contains("certificates.yaml:7:9: certificates[1].domains[1]:"),
            "{err}"
        );
        assert!(err.contains("duplicate certificate name \"web\""), "{err}");
        assert!(err.contains("certificates.yaml:8:"), "{err}");
    }

    #[test]
    fn external_certificates_take_their_names_from_the_csr_template() {
        let text = "certificates:\n  - name: mesh\n    issuer: external\n    csr:\n      cn: \"{id}.{ods}.mesh-client.nhs.uk\"\n      sans: [\"{id}.example.test\"]\n    vars: {id: RRR01HC, ods: RRR01}\n";
        let c = parse_one(text).unwrap();
        let spec = &c.certificates[0].spec;
        assert!(spec.is_external());
        assert_eq!(
            spec.domains,
            ["rrr01hc.rrr01.mesh-client.nhs.uk", "rrr01hc.example.test"]
        );
        // No zone of ours is involved: the allowlist does not apply.
        assert!(c.check_allowed_zones(&["example.org".into()]).is_empty());
        assert!(c.check_providers(&[]).is_empty());
    }

    #[test]
    fn external_mistakes_are_located() {
        let unknown_var = "certificates:\n  - name: mesh\n    issuer: external\n    csr:\n      cn: \"{identifer}.mesh-client.nhs.uk\"\n    vars: {identifier: X}\n";
        let err = parse_one(unknown_var).unwrap_err().to_string();
        assert!(
            err.starts_with("certificates.yaml:5:11: certificates[0].csr.cn: template"),
            "{err}"
        );
        assert!(err.contains("{identifer}"), "{err}");
        let bad_san = "certificates:\n  - name: mesh\n    issuer: external\n    csr:\n      cn: a.example.test\n      sans: [ok.example.test, \"bad name.example.test\"]\n";
        let err = parse_one(bad_san).unwrap_err().to_string();
        assert!(err.contains("certificates[0].csr.sans[1]"), "{err}");
        let acme_with_csr = "certificates:\n  - name: web\n    domains: [a.example.test]\n    csr: {cn: a.example.test}\n";
        let err = parse_one(acme_with_csr).unwrap_err().to_string();
        assert!(
            err.contains("certificates[0].csr: `csr` is only for"),
            "{err}"
        );
        let nothing = "certificates:\n  - name: mesh\n    issuer: external\n";
        let err = parse_one(nothing).unwrap_err().to_string();
        assert!(err.contains("needs `csr.cn`"), "{err}");
    }

    #[test]
    fn bad_key_type_is_located() {
        let text =
            "certificates:\n  - name: web\n    domains: [a.example.test]\n    key_type: dsa\n";
        let err = parse_one(text).unwrap_err().to_string();
        assert!(err.starts_with("certificates.yaml:4:"), "{err}");
        assert!(err.contains("certificates[0].key_type"), "{err}");
    }

    #[test]
    fn duplicates_across_files() {
        let a = (
            PathBuf::from("certificates/a.yaml"),
            "certificates:\n  - name: x\n    domains: [a.example.test]\n".to_string(),
        );
        let b = (
            PathBuf::from("certificates/b.yaml"),
            "certificates:\n  - name: x\n    domains: [b.example.test]\n".to_string(),
        );
        let err = Config::parse(&[a, b]).unwrap_err().to_string();
        assert!(err.contains("certificates/b.yaml:2"), "{err}");
        assert!(
            err.contains("first defined at certificates/a.yaml:2"),
            "{err}"
        );
    }

    #[test]
    fn renew_before_forms() {
        assert_eq!(
            RenewBefore::parse("1/3").unwrap(),
            RenewBefore::Fraction(1.0 / 3.0)
        );
        assert_eq!(
            RenewBefore::parse("50%").unwrap(),
            RenewBefore::Fraction(0.5)
        );
        assert_eq!(
            RenewBefore::parse("30d").unwrap(),
            RenewBefore::Remaining(Duration::from_secs(30 * 86400))
        );
        assert!(RenewBefore::parse("3/2").is_err());
        assert!(RenewBefore::parse("soon").is_err());
    }

    #[test]
    fn reference_parses_and_covers_every_field() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/repo-reference.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let c = Config::parse(&[(PathBuf::from("repo-reference.yaml"), text)]).unwrap();
        let specs: Vec<&CertificateSpec> = c.certificates.iter().map(|c| &c.spec).collect();
        for kt in [
            KeyType::EcdsaP256,
            KeyType::EcdsaP384,
            KeyType::Rsa2048,
            KeyType::Rsa3072,
            KeyType::Rsa4096,
        ] {
            assert!(specs.iter().any(|s| s.key_type == kt), "{kt} not shown");
        }
        assert!(specs.iter().any(|s| s.dns.hosted_zone_id.is_some()));
        assert!(
            specs
                .iter()
                .any(|s| matches!(s.renew_before, Some(RenewBefore::Fraction(_))))
        );
        assert!(
            specs
                .iter()
                .any(|s| matches!(s.renew_before, Some(RenewBefore::Remaining(_))))
        );
        assert!(
            specs
                .iter()
                .any(|s| s.domains.iter().any(|d| d.starts_with("*.")))
        );
        assert!(
            specs
                .iter()
                .any(|s| s.domains.iter().any(|d| d.starts_with("xn--")))
        );
        assert!(specs.iter().any(|s| s.is_external() && s.csr.is_some()));
        assert!(
            specs
                .iter()
                .any(|s| s.pkcs12.as_ref().is_some_and(|p| p.trusted_chain))
        );
    }

    /// Random and mutated documents: never a panic, always a config or an
    /// error. Seeded, so a failure names the seed that reproduces it.
    #[test]
    fn mutated_yaml_never_panics() {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        let base = [
            std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("config/repo-reference.yaml"),
            )
            .unwrap(),
            "certificates:\n  - name: a\n    domains: [a.example.test]\n".to_string(),
        ];
        let settings_base = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("config/settings-reference.yaml"),
        )
        .unwrap();
        const ALPHABET: &[u8] = b"-:[]{}\"'#*&!|>%@`,? \n\t.aZ09\\";
        for seed in 0..1500u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let source = if seed % 3 == 0 {
                &settings_base
            } else {
                &base[(seed as usize) % 2]
            };
            let mut doc: Vec<u8> = source.as_bytes().to_vec();
            for _ in 0..rng.random_range(1..6) {
                let at = rng.random_range(0..=doc.len());
                match rng.random_range(0..5) {
                    0 if !doc.is_empty() => {
                        let end = (at + rng.random_range(1..20)).min(doc.len());
                        doc.drain(at.min(end)..end);
                    }
                    1 => doc.insert(at, ALPHABET[rng.random_range(0..ALPHABET.len())]),
                    2 => {
                        let byte = rng.random::<u8>();
                        doc.insert(at, byte);
                    }
                    3 => {
                        let copy: Vec<u8> = doc[at.saturating_sub(30)..at].to_vec();
                        doc.splice(at..at, copy);
                    }
                    _ => doc.splice(at..at, b"\n  ".iter().copied()).for_each(drop),
                }
            }
            let text = String::from_utf8_lossy(&doc).into_owned();
            let result = std::panic::catch_unwind(|| {
                let _ = Config::parse(&[(PathBuf::from("fuzz.yaml"), text.clone())]);
                let _ = crate::settings::Settings::parse(Path::new("fuzz.yaml"), &text);
            });
            assert!(result.is_ok(), "seed {seed} panicked on:\n{text}");
        }
    }

    #[test]
    fn example_repo_is_valid() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/repo-example");
        let c = Config::load(&root).unwrap();
        assert!(c.certificates.len() >= 3);
    }
}
