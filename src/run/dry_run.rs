//! `renew --dry-run`: one order against the staging CA, nothing kept.

use super::*;

/// What a dry run got from the staging CA; nothing of it is kept.
#[derive(Debug)]
pub struct DryRun {
    pub directory_url: String,
    pub serial: String,
    pub not_after: OffsetDateTime,
    pub sans: Vec<String>,
}

/// Runs the whole order for certificate `name` against its issuer's staging
/// directory — DNS challenges included — and stores and publishes nothing.
pub async fn dry_run(
    settings: &Settings,
    services: &Services,
    name: &str,
    cancel: &CancellationToken,
) -> Result<DryRun, DryRunError> {
    let store = Store::open(&settings.state_dir)?;
    let provider_zones = provider_zones(settings, services).await;
    let (gate_settings, gate_store) = (settings.clone(), store.clone());
    let accepted = tokio::task::spawn_blocking(move || {
        crate::config::gate::accept(&gate_settings, &gate_store, provider_zones.as_deref())
    })
    .await
    .map_err(|_| DryRunError::Panicked)??;
    let cert = accepted
        .config
        .certificates
        .iter()
        .find(|c| c.name() == name)
        .ok_or_else(|| DryRunError::NoSuchCertificate(name.to_string()))?;
    if cert.spec.is_external() {
        return Err(DryRunError::External(name.to_string()));
    }
    let issuer_name = resolve::issuers_for(settings, &cert.spec).remove(0);
    let mut acme = settings
        .issuers
        .get(&issuer_name)
        .cloned()
        .ok_or_else(|| DryRunError::UnknownIssuer(issuer_name.clone()))?;
    acme.directory_url = acme
        .staging_directory_url
        .clone()
        .ok_or_else(|| DryRunError::NoStaging(issuer_name.clone()))?;
    let issuer = Issuer::load_or_create(&format!("{issuer_name}-staging"), &acme, &store).await?;
    let dns = Dns01::new(services.dns.clone(), &settings.dns);
    let profile = resolve::effective_profile(settings, &cert.spec);
    let issued = issuer
        .issue(&cert.spec, profile, None, None, &dns, cancel)
        .await?;
    let der = crate::x509::pem_chain(&issued.cert_pem)?;
    let info = crate::x509::leaf_info(&der[0])?;
    tracing::info!(event = "cert.dry_run", cert = name, serial = %info.serial, directory = %acme.directory_url);
    Ok(DryRun {
        directory_url: acme.directory_url,
        serial: info.serial,
        not_after: info.not_after,
        sans: info.dns_names,
    })
}

/// Why a dry run could not order from the staging CA.
#[derive(Debug, thiserror::Error)]
pub enum DryRunError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Config(#[from] crate::config::gate::GateError),
    #[error("internal error: the config check panicked (see logs)")]
    Panicked,
    #[error("no certificate named {0:?} in the config repo")]
    NoSuchCertificate(String),
    #[error(
        "{0:?} has `issuer: {EXTERNAL}`: there is no ACME order to try; see `certkeeper csr new`",
        EXTERNAL = crate::config::EXTERNAL
    )]
    External(String),
    #[error("unknown issuer {0:?}")]
    UnknownIssuer(String),
    #[error("issuer {0:?} has no staging_directory_url for --dry-run")]
    NoStaging(String),
    #[error(transparent)]
    Acme(#[from] crate::acme::AcmeError),
    #[error("the staging CA returned {0}")]
    Issued(#[from] crate::x509::X509Error),
}

/// The default zone allowlist: every zone the DNS providers hold.
pub(super) async fn provider_zones(
    settings: &Settings,
    services: &Services,
) -> Option<Vec<String>> {
    if settings.allowed_zones.is_some() {
        return None;
    }
    match zones_held(services).await {
        Ok(zones) => Some(zones),
        Err(e) => {
            // Issuance needs a zone at the provider anyway, so nothing
            // outside them can be issued; only the early check is skipped.
            tracing::warn!(event = "dns.zones.unavailable", provider = %e.provider, error = %e.source);
            None
        }
    }
}

/// A DNS provider that could not list its zones.
#[derive(Debug, thiserror::Error)]
#[error("DNS provider {provider:?} could not list its zones: {source}")]
pub struct ZonesUnavailable {
    pub provider: String,
    #[source]
    pub source: crate::dns::DnsError,
}

/// Every zone the DNS providers hold, as a run asks them (`config check`
/// asks the same).
pub async fn zones_held(services: &Services) -> Result<Vec<String>, ZonesUnavailable> {
    let mut zones = Vec::new();
    for (name, provider) in &services.dns {
        let held = provider.zones().await.map_err(|source| ZonesUnavailable {
            provider: name.clone(),
            source,
        })?;
        zones.extend(held);
    }
    Ok(zones)
}
