//! Finishing a certificate: derived files, publish to every target,
//! verify the endpoints, the status line; and the targets' end of run.

use super::failure::Failure;
use super::*;
use crate::report::FailedStage;

/// Lets each target finish the run (the S3 manifest) with every live
/// certificate it publishes; a failure marks those certificates unpublished,
/// so the next run tries again.
pub(super) async fn finish_targets(
    resolution: &resolve::Resolution,
    services: &Services,
    store: &Store,
    config: &Config,
    certificates: &mut [CertStatus],
) {
    for (name, target) in &services.targets {
        let mut certs = Vec::new();
        for cert in &config.certificates {
            if !resolution.of(cert.name()).targets.contains(name) {
                continue;
            }
            if let Ok(Some(meta)) = store.live_meta(cert.name()) {
                certs.push((meta, cert.spec.vars.clone()));
            }
        }
        if let Err(e) = target.finish_run(&certs, store).await {
            tracing::error!(event = "publish.finish.failed", target = %name, error = %e);
            for status in certificates.iter_mut() {
                if certs.iter().any(|(m, _)| m.name == status.name) {
                    status.published = false;
                    if status.last_error.is_none() {
                        status.last_error = Some(e.to_string());
                        status.failed_stage = Some(FailedStage::Publish);
                    }
                }
            }
        }
    }
}

/// Publishes whatever is live for `cert`, checks the endpoints, and builds
/// its status line.
pub(super) async fn finish_cert(
    task: &CertTask,
    cert: &Certificate,
    attempt: Option<Attempt>,
) -> CertStatus {
    let store = &task.store;
    let now = OffsetDateTime::now_utc();
    let meta = store.live_meta(cert.name()).ok().flatten();
    // The first failure is the one the status line shows.
    let mut first: Option<(FailedStage, String)> = match &attempt {
        Some(Err(e)) => Some((FailedStage::Renewal, e.to_string())),
        _ => None,
    };
    let mut failed = |stage: FailedStage, e: &dyn std::fmt::Display| {
        first.get_or_insert_with(|| (stage, e.to_string()));
    };
    let mut published = true;
    let mut targets = Vec::new();
    let mut verified = None;
    let mut verification = None;
    let mut rollout_status = None;
    // Still ours? A replica paused past its lease must not publish.
    let held = task.lease.lock().expect("lease lock").clone();
    if let (Some(c), Some(lease)) = (&task.coordinator, held)
        && let Err(e) = c.renew(&lease).await
        && matches!(e, crate::replica::LeaseError::Lost { .. })
    {
        tracing::error!(event = "lease.lost", cert = %cert.name(), error = %e);
        task.lease_lost
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
    let lost = task.lease_lost.load(std::sync::atomic::Ordering::SeqCst);
    if lost {
        published = false;
        failed(FailedStage::Lease, &Failure::LeaseLost);
    }
    if let Some(meta) = meta.as_ref().filter(|_| !lost) {
        let formats = derive_formats(task, cert).await;
        if let Err(e) = &formats {
            tracing::error!(event = "format.failed", cert = %cert.name(), error = %e);
            published = false;
            failed(FailedStage::Formats, e);
        }
        // Targets run in order; one failing does not stop or undo the
        // others, and it is retried on the next run.
        for target in &task.targets {
            let result = match &formats {
                Err(_) => Err(Failure::NoDerivedFiles),
                Ok(()) => publish_to(store, target.as_ref(), meta, &cert.spec.vars).await,
            };
            if let Err(e) = &result {
                published = false;
                failed(FailedStage::Publish, e);
            }
            targets.push(report::TargetStatus {
                name: target.name().to_string(),
                failed: result.is_err(),
                result: match result {
                    Ok(()) => "published".into(),
                    Err(e) => format!("failed: {e}"),
                },
            });
        }
        if let Some(rollout) = &task.rollout {
            let (status, result) =
                super::rollout::roll_out(task, rollout, meta, &cert.spec.vars, &targets).await;
            rollout_status = status;
            if let Err(e) = result {
                failed(FailedStage::Rollout, &Failure::Rollout(e));
            }
        }
        if let Some(spec) = &cert.spec.verify {
            let result = verify_live(task, spec, meta).await;
            verified = Some(result.is_ok());
            match result {
                Ok(()) => verification = Some("verified".to_string()),
                Err(e) => {
                    verification = Some(e.to_string());
                    failed(FailedStage::Verification, &Failure::Verify(e));
                }
            }
        }
    }
    let state = match (&attempt, &first) {
        (_, Some(_)) => CertState::Failed,
        (Some(Ok(true)), None) => CertState::Renewed,
        _ => CertState::Ok,
    };
    CertStatus {
        name: cert.name().to_string(),
        domains: cert.spec.domains.clone(),
        state,
        not_after: meta.as_ref().map(|m| m.not_after),
        days_left: meta.as_ref().map(|m| report::days_left(m.not_after, now)),
        issued_at: meta.as_ref().map(|m| m.issued_at),
        serial: meta.as_ref().map(|m| m.serial.clone()),
        config_commit: meta.as_ref().map(|m| m.config_commit.clone()),
        failed_stage: first.as_ref().map(|(stage, _)| *stage),
        last_error: first.map(|(_, e)| e),
        published: published && meta.is_some(),
        retry_after: None,
        targets,
        verified,
        verification,
        waiting_until: None,
        waiting_for: None,
        renew_command: None,
        rollout: rollout_status,
    }
}

/// PKCS#12 and fingerprints files, as the certificate asks.
pub(super) async fn derive_formats(task: &CertTask, cert: &Certificate) -> Result<(), Failure> {
    let password = match &cert.spec.pkcs12 {
        Some(p12) => Some(task.secrets.get(&p12.password).await?),
        None => None,
    };
    crate::formats::ensure(
        &task.store,
        cert.name(),
        cert.spec.pkcs12.as_ref(),
        password.as_ref(),
        cert.spec.fingerprints,
    )?;
    Ok(())
}

/// Checks the endpoints once a live certificate was published. A
/// certificate already seen served is not checked again until it changes.
pub(super) async fn verify_live(
    task: &CertTask,
    spec: &crate::config::VerifySpec,
    meta: &Meta,
) -> Result<(), crate::verify::VerifyError> {
    let record = format!("verified/{}.json", meta.name);
    let endpoints: Vec<&str> = spec.endpoints.iter().map(|e| e.address()).collect();
    let fingerprint = crate::x509::sha256_hex(format!("{}|{endpoints:?}", meta.sha256).as_bytes());
    if task
        .store
        .read_state(&record)
        .ok()
        .flatten()
        .is_some_and(|b| b == fingerprint.as_bytes())
    {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let result = crate::verify::verify(spec, &meta.sha256, &meta.serial, &task.cancel).await;
    match &result {
        Ok(()) => {
            tracing::info!(event = "verify.ok", cert = %meta.name, serial = %meta.serial, endpoints = %endpoints.join(","), duration_ms = started.elapsed().as_millis() as u64);
            let _ = task.store.write_state(&record, fingerprint.as_bytes());
        }
        Err(e) => {
            tracing::error!(event = "verify.mismatch", cert = %meta.name, serial = %meta.serial, endpoints = %endpoints.join(","), error = %e);
        }
    }
    result
}

pub(super) async fn publish_to(
    store: &Store,
    target: &dyn Target,
    meta: &Meta,
    vars: &BTreeMap<String, String>,
) -> Result<(), Failure> {
    let files = store.live_files(&meta.name)?;
    let fingerprint = publish::set_fingerprint(&files);
    if publish::is_published(store, &meta.name, target.name(), &fingerprint) {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let item = publish::Item::new(meta, &files, vars, store);
    match target.publish(&item).await {
        Ok(outcome) => {
            tracing::info!(
                event = "publish.done",
                target = target.name(),
                cert = %meta.name,
                uploaded = outcome.uploaded,
                unchanged = outcome.unchanged,
                duration_ms = started.elapsed().as_millis() as u64,
            );
            crate::metrics::inc(
                "certkeeper_publish_total",
                &[("target", target.name()), ("result", "success")],
            );
            Ok(publish::mark_published(
                store,
                &meta.name,
                target.name(),
                &fingerprint,
            )?)
        }
        Err(e) => {
            crate::metrics::inc(
                "certkeeper_publish_total",
                &[("target", target.name()), ("result", "failure")],
            );
            tracing::error!(
                event = "publish.failed",
                target = target.name(),
                cert = %meta.name,
                error = %e,
            );
            Err(e.into())
        }
    }
}
