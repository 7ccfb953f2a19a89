//! Issuing: one order through one issuer, and whether the current key
//! may be reused.

use super::failure::Failure;
use super::*;

pub(super) async fn renew_one(
    issuer: &Issuer,
    task: &CertTask,
    cert: &Certificate,
    generation: Option<u64>,
) -> Attempt {
    let (dns, store, commit, cancel) = (&task.dns, &task.store, &task.commit, &task.cancel);
    let started = std::time::Instant::now();
    let spec = &cert.spec;
    let fail = |e: Failure| {
        tracing::error!(event = "cert.failed", cert = %spec.name, domains = %spec.domains.join(","), error = %e);
        e
    };
    let reuse = reusable_key(store, spec);
    // `replaces` only where the CA answered ARI for the live certificate.
    let replaces = crate::acme::ari::answered(store, &spec.name)
        .then(|| crate::acme::ari::live_identifier(store, &spec.name))
        .flatten();
    let mut retried = false;
    let issued = loop {
        match issuer
            .issue(
                spec,
                task.profile.as_deref(),
                reuse.as_ref(),
                replaces.clone(),
                dns,
                cancel,
            )
            .await
        {
            Ok(issued) => break issued,
            // Once, not in a loop: a CA whose resolvers keep failing would
            // otherwise spend its failed-validation limit on us.
            Err(e @ crate::acme::AcmeError::CaDnsLookup { .. })
                if !retried && !cancel.is_cancelled() =>
            {
                tracing::warn!(event = "order.retry", cert = %spec.name, reason = "the CA's DNS lookup failed after our nameservers served the values", error = %e);
                retried = true;
            }
            Err(e) => return Err(fail(e.into())),
        }
    };
    let ders = crate::x509::pem_chain(&issued.cert_pem).map_err(|e| fail(Failure::Issued(e)))?;
    let info = crate::x509::leaf_info(&ders[0]).map_err(|e| fail(Failure::Issued(e)))?;
    let mut meta = Meta {
        name: spec.name.clone(),
        serial: info.serial,
        not_before: info.not_before,
        not_after: info.not_after,
        domains: spec.domains.clone(),
        sans: info.dns_names,
        key_type: spec.key_type,
        sha256: info.sha256,
        issuer: issuer.directory_url().to_string(),
        config_commit: commit.to_string(),
        issued_at: OffsetDateTime::now_utc(),
        version: 0,
        profile: task.profile.clone(),
        generation,
    };
    let dir = store
        .install(&issued, &mut meta)
        .map_err(|e| fail(e.into()))?;
    tracing::info!(
        event = "cert.issued",
        cert = %spec.name,
        domains = %spec.domains.join(","),
        serial = %meta.serial,
        not_after = %rfc3339(meta.not_after),
        version = meta.version,
        path = %dir.display(),
        config_commit = %commit,
        duration_ms = started.elapsed().as_millis() as u64,
    );
    Ok(true)
}

/// The live key, when the certificate keeps its key and the type still fits.
pub(super) fn reusable_key(
    store: &Store,
    spec: &crate::config::CertificateSpec,
) -> Option<crate::secret::Secret> {
    if !spec.reuse_key {
        return None;
    }
    let meta = store.live_meta(&spec.name).ok().flatten()?;
    if meta.key_type != spec.key_type {
        return None;
    }
    let pem =
        std::fs::read_to_string(store.live_dir(&spec.name).join(crate::store::PRIVKEY)).ok()?;
    Some(crate::secret::Secret::new(pem))
}
