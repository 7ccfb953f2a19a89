//! Which commit of the config repo a run uses.
//!
//! The newest commit is used only if it passes every check: signature (when
//! required), parsing and validation, and the zone allowlist from the local
//! settings. Otherwise the run keeps using the last good commit and says
//! loudly that the new one was rejected; with no good commit yet, nothing is
//! issued at all.

use super::source::{Checkout, GitSource, SourceError};
use super::{Config, signature::AllowedSigners};
use crate::settings::Settings;
use crate::store::Store;
use serde::{Deserialize, Serialize};

const LAST_GOOD: &str = "config-last-good.json";

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(
        "config repo commit {commit} is rejected and there is no earlier good commit; nothing is issued:\n{reason}"
    )]
    NoGoodCommit { commit: String, reason: String },
    #[error("last good commit {commit} no longer validates:\n{reason}")]
    LastGoodBroken { commit: String, reason: String },
}

/// A commit that failed the checks, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    pub commit: String,
    pub reason: String,
    /// The repo could not be fetched at all (`commit` is then the last
    /// good one, still in use); nothing newer was seen.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unreachable: bool,
}

/// The config a run works from.
#[derive(Debug)]
pub struct Accepted {
    pub config: Config,
    pub commit: String,
    /// Set when the newest commit was rejected and `commit` is the last good one.
    pub rejected: Option<Rejected>,
}

#[derive(Serialize, Deserialize)]
struct LastGood {
    commit: String,
}

/// Fetches the repo and returns the config to use. `provider_zones` is the
/// default allowlist when the settings name none (`None`: not known).
pub fn accept(
    settings: &Settings,
    store: &Store,
    provider_zones: Option<&[String]>,
) -> Result<Accepted, GateError> {
    let source = GitSource::new(&settings.config_repo, &store.root().join("repo"));
    let checkout = match source.sync() {
        Ok(checkout) => checkout,
        Err(e @ (SourceError::Fetch { .. } | SourceError::Credentials(_))) => {
            return unreachable(settings, store, &source, provider_zones, e);
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(event = "config.fetched", commit = %checkout.commit);
    let rejected = match check(settings, &source, &checkout, provider_zones) {
        Ok(config) => {
            remember(store, &checkout.commit);
            return Ok(Accepted {
                config,
                commit: checkout.commit,
                rejected: None,
            });
        }
        Err(reason) => Rejected {
            commit: checkout.commit.clone(),
            reason: reason.to_string(),
            unreachable: false,
        },
    };
    tracing::error!(
        event = "config.rejected",
        commit = %rejected.commit,
        error = %rejected.reason,
    );
    let Some(good) = last_good(store).filter(|c| *c != rejected.commit) else {
        return Err(GateError::NoGoodCommit {
            commit: rejected.commit,
            reason: rejected.reason,
        });
    };
    let checkout = source.checkout(&good)?;
    let config = check(settings, &source, &checkout, provider_zones).map_err(|reason| {
        GateError::LastGoodBroken {
            commit: good.clone(),
            reason: reason.to_string(),
        }
    })?;
    tracing::warn!(event = "config.stale", commit = %good, rejected = %rejected.commit);
    Ok(Accepted {
        config,
        commit: good,
        rejected: Some(rejected),
    })
}

/// The repo cannot be fetched (git server down, network, credentials): the
/// certificates of the last good commit, still in the local clone, keep
/// being renewed, and the run says the config is stale. Certificates must
/// not expire because the git server is down on the day they are due.
fn unreachable(
    settings: &Settings,
    store: &Store,
    source: &GitSource,
    provider_zones: Option<&[String]>,
    error: SourceError,
) -> Result<Accepted, GateError> {
    let Some(good) = last_good(store) else {
        return Err(error.into());
    };
    let Ok(checkout) = source.checkout(&good) else {
        return Err(error.into());
    };
    let config = check(settings, source, &checkout, provider_zones).map_err(|reason| {
        GateError::LastGoodBroken {
            commit: good.clone(),
            reason: reason.to_string(),
        }
    })?;
    tracing::error!(event = "config.unreachable", commit = %good, error = %error);
    Ok(Accepted {
        config,
        commit: good.clone(),
        rejected: Some(Rejected {
            commit: good,
            reason: error.to_string(),
            unreachable: true,
        }),
    })
}

/// Why a commit failed its checks. Its text is the full, multi-line
/// reason the status and the log give.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Signature(#[from] super::signature::SignatureError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Config(#[from] super::ConfigError),
    /// Every finding, one per line.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<crate::yaml::Located>),
}

/// Every check a commit must pass.
fn check(
    settings: &Settings,
    source: &GitSource,
    checkout: &Checkout,
    provider_zones: Option<&[String]>,
) -> Result<Config, CheckError> {
    if let Some(signed) = &settings.require_signed_commits {
        let signers = AllowedSigners::load(&signed.allowed_signers)?;
        let repo = source.repository()?;
        let principals = signers.verify_commit(&repo, &checkout.commit)?;
        tracing::info!(event = "config.signature.verified", commit = %checkout.commit, signer = %principals);
    }
    let (config, mut report) = Config::check_tree(&checkout.dir)?;
    let zones = match (&settings.allowed_zones, provider_zones) {
        (Some(allowed), _) => Zones::Allowed(allowed),
        (None, Some(held)) => Zones::Held(held),
        (None, None) => Zones::Unknown,
    };
    report
        .errors
        .extend(check_against(&config, settings, zones));
    if !report.errors.is_empty() {
        return Err(CheckError::Invalid(report.errors));
    }
    for warning in &report.warnings {
        tracing::warn!(event = "config.warning", commit = %checkout.commit, warning = %warning);
    }
    Ok(Config {
        warnings: report.warnings,
        ..config
    })
}

/// The zones a config's domains must be in.
#[derive(Debug, Clone, Copy)]
pub enum Zones<'a> {
    /// `allowed_zones` in the settings.
    Allowed(&'a [String]),
    /// `allowed_zones` unset: the zones the DNS providers hold, as a run
    /// asks them.
    Held(&'a [String]),
    /// The providers could not be asked: domains are checked when issued.
    Unknown,
}

/// What the settings decide about a config: its DNS providers, issuers
/// (and how many names they take), targets, secrets and zones. A run and
/// `config check` decide with this one function.
pub fn check_against(
    config: &Config,
    settings: &Settings,
    zones: Zones,
) -> Vec<crate::yaml::Located> {
    let providers: Vec<String> = settings.dns_providers.keys().cloned().collect();
    let mut errors = config.check_providers(&providers);
    errors.extend(super::resolve::check_issuers(config, settings));
    errors.extend(super::resolve::check_targets(config, settings));
    match zones {
        Zones::Allowed(zones) => errors.extend(
            config.check_allowed_zones(zones, "the allowed zones (allowed_zones in the settings)"),
        ),
        Zones::Held(zones) => errors.extend(config.check_allowed_zones(
            zones,
            "the zones the DNS providers hold (allowed_zones is not set)",
        )),
        Zones::Unknown => {}
    }
    errors
}

fn last_good(store: &Store) -> Option<String> {
    let bytes = store.read_state(LAST_GOOD).ok().flatten()?;
    serde_json::from_slice::<LastGood>(&bytes)
        .ok()
        .map(|l| l.commit)
}

fn remember(store: &Store, commit: &str) {
    let json = serde_json::to_vec(&LastGood {
        commit: commit.to_string(),
    })
    .expect("serializes");
    if let Err(e) = store.write_state(LAST_GOOD, &json) {
        tracing::error!(event = "config.last_good.write_failed", error = %e);
    }
}
