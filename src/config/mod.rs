//! The config repo: which certificates exist, for which names, with which key.
//!
//! This module owns the repo's file format and its validation. It does no
//! network I/O except in [`source`], which fetches the repo with git.

pub mod domain;
pub mod gate;
mod load;
use load::{certificate_files, cross_check, parse_file};
pub mod resolve;
pub mod signature;
pub mod source;
mod spec;
pub use spec::*;

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
    /// Line and column of `name`.
    pub name_position: (usize, usize),
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
    /// allowlist, which the repo cannot widen, or the zones the DNS
    /// providers hold); `whose` says which, after "is outside".
    pub fn check_allowed_zones(&self, zones: &[String], whose: &str) -> Vec<Located> {
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
                    errors
                        .push(cert.domain_error(i, format!("{d:?} is outside {whose}: {zones:?}")));
                }
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests;
