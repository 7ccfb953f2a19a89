//! The ACME issuers due certificates may use, loaded once per run, and the
//! ARI pass that moves renewals the CA asks for.

use super::*;

pub(super) type Issuers = BTreeMap<String, Result<Arc<Issuer>, Arc<LoadError>>>;

/// Why an issuer cannot be used this run (every certificate using it is
/// told the same, hence shared).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("unknown issuer {0:?}")]
    Unknown(String),
    #[error(transparent)]
    Acme(#[from] crate::acme::AcmeError),
}

/// ACME accounts of the issuers that due certificates may use, loaded once.
pub(super) async fn load_issuers(
    settings: &Settings,
    store: &Store,
    plans: &[(Certificate, CertPlan)],
    resolution: &resolve::Resolution,
    out: &mut Issuers,
) {
    for (cert, plan) in plans {
        if matches!(plan, CertPlan::Renew) {
            for name in &resolution.of(cert.name()).issuers {
                issuer(settings, store, name, out).await;
            }
        }
    }
}

/// The issuer `name`, loading (or creating) its account on first use.
pub(super) async fn issuer(
    settings: &Settings,
    store: &Store,
    name: &str,
    cache: &mut Issuers,
) -> Option<Arc<Issuer>> {
    if !cache.contains_key(name) {
        let loaded = match settings.issuers.get(name) {
            None => Err(Arc::new(LoadError::Unknown(name.to_string()))),
            Some(acme) => match Issuer::load_or_create(name, acme, store).await {
                Ok(issuer) => Ok(Arc::new(issuer)),
                Err(e) => {
                    tracing::error!(event = "acme.account.failed", issuer = %name, error = %e);
                    Err(Arc::new(e.into()))
                }
            },
        };
        cache.insert(name.to_string(), loaded);
    }
    cache.get(name).and_then(|r| r.as_ref().ok()).cloned()
}

/// Asks the CA of every current certificate whether it wants it renewed
/// early (ARI); a certificate whose chosen moment has come becomes due.
pub(super) async fn ari_pass(
    settings: &Settings,
    store: &Store,
    plans: &mut [(Certificate, CertPlan)],
    cache: &mut Issuers,
) {
    let now = OffsetDateTime::now_utc();
    for (cert, plan) in plans.iter_mut() {
        if !matches!(plan, CertPlan::Keep) {
            continue;
        }
        let Ok(Some(meta)) = store.live_meta(cert.name()) else {
            continue;
        };
        let Some(name) = settings
            .issuers
            .iter()
            .find(|(_, i)| i.directory_url == meta.issuer)
            .map(|(n, _)| n.clone())
        else {
            continue;
        };
        let Some(issuer) = issuer(settings, store, &name, cache).await else {
            continue;
        };
        if let Some(moment) = crate::acme::ari::renewal_moment(&issuer, store, &meta, now).await
            && now >= moment
        {
            tracing::info!(event = "cert.due", cert = cert.name(), reason = "ari_window", moment = %rfc3339(moment));
            *plan = CertPlan::Renew;
        }
    }
}
