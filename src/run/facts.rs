//! Gathering the facts: what each certificate needs in this run (the
//! decision itself is `plan::decide`, pure), and which profile it asks for.

use super::*;

/// What to do with one certificate in this run.
pub(super) enum CertPlan {
    Renew,
    Keep,
    /// Its stored state is unreadable: report, never re-issue over it blindly.
    Broken(String),
    /// Due, but failing: wait until the back-off has passed.
    BackingOff(crate::backoff::Failures),
    /// Due, but its CA's limits allow no more orders now: a later run
    /// orders it (`limits.rs`). `limit` says which, in words.
    Waiting {
        until: OffsetDateTime,
        limit: String,
    },
    /// Signed by a CA without ACME: published like any other, never
    /// renewed here. `due` says what a person must do, when it is time.
    External {
        due: Option<String>,
    },
}

pub(super) fn plan_all(
    settings: &Settings,
    store: &Store,
    config: &Config,
    resolution: &resolve::Resolution,
    force: &[String],
) -> Vec<(Certificate, CertPlan)> {
    let now = OffsetDateTime::now_utc();
    config
        .certificates
        .iter()
        .map(|cert| {
            let resolved = resolution.of(cert.name());
            let chain = &resolved.issuers;
            let urls: Vec<String> = chain
                .iter()
                .filter_map(|n| settings.issuers.get(n).map(|i| i.directory_url.clone()))
                .collect();
            let wanted = plan::Wanted {
                issuers: &urls,
                profile: resolved.profile.as_deref(),
            };
            if cert.spec.is_external() {
                return (cert.clone(), external_plan(store, cert, now));
            }
            let plan = match store.live_meta(cert.name()) {
                // Forced: also the way out of state that cannot be read.
                _ if force.iter().any(|f| f == cert.name()) => {
                    tracing::info!(event = "cert.due", cert = cert.name(), reason = plan::Reason::Forced.code());
                    CertPlan::Renew
                }
                Ok(Some(meta)) if crate::acme::revocation::is_revoked(store, &meta) => {
                    tracing::info!(event = "cert.due", cert = cert.name(), reason = plan::Reason::Revoked.code());
                    CertPlan::Renew
                }
                Ok(meta) => match plan::decide(&cert.spec, meta.as_ref(), wanted, now) {
                    Decision::Due(reason) => match crate::backoff::load(store, cert.name()) {
                        Some(f) if now < f.next_attempt && f.spec == crate::backoff::spec_fingerprint(&cert.spec, chain) => {
                            tracing::info!(event = "cert.backing_off", cert = cert.name(), failures = f.count, until = %rfc3339(f.next_attempt));
                            CertPlan::BackingOff(f)
                        }
                        _ => {
                            tracing::info!(event = "cert.due", cert = cert.name(), reason = reason.code());
                            CertPlan::Renew
                        }
                    },
                    Decision::Current { renew_at } => {
                        tracing::info!(event = "cert.current", cert = cert.name(), renew_at = %rfc3339(renew_at));
                        CertPlan::Keep
                    }
                },
                Err(e) => {
                    // Re-issuing over state we cannot read is how rate-limit
                    // storms start. Say so and let a person look.
                    let why = format!(
                        "{e}; left alone (no new order): restore it from a published copy (e.g. the s3 target's meta.json) or run `certkeeper renew --force {}` to issue a new certificate",
                        cert.name()
                    );
                    tracing::error!(event = "cert.state.unreadable", cert = cert.name(), error = %why);
                    CertPlan::Broken(why)
                }
            };
            (cert.clone(), plan)
        })
        .collect()
}

/// External certificates default to a reminder 30 days before expiry, the
/// runbooks' habit; `renew_before` in the config changes it.
pub(super) const EXTERNAL_RENEW_BEFORE: std::time::Duration =
    std::time::Duration::from_secs(30 * 86400);

pub(super) fn external_plan(store: &Store, cert: &Certificate, now: OffsetDateTime) -> CertPlan {
    let name = cert.name();
    let todo = || crate::csr::renew_command(store, name);
    let due = match store.live_meta(name) {
        Err(e) => Some(e.to_string()),
        Ok(None) => Some(format!("no certificate imported yet: {}", todo())),
        Ok(Some(meta)) => {
            let before = cert
                .spec
                .renew_before
                .unwrap_or(crate::config::RenewBefore::Remaining(EXTERNAL_RENEW_BEFORE));
            let renew_at = plan::renew_at(&meta, before);
            (now >= renew_at).then(|| {
                format!(
                    "due for renewal by hand since {} (expires {}; this CA has no ACME): {}",
                    rfc3339(renew_at),
                    rfc3339(meta.not_after),
                    todo()
                )
            })
        }
    };
    match &due {
        Some(why) => tracing::warn!(event = "cert.external.due", cert = name, action = %why),
        None => tracing::info!(
            event = "cert.current",
            cert = name,
            issuer = crate::config::EXTERNAL
        ),
    }
    CertPlan::External { due }
}
