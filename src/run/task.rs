//! One certificate's task: lease, renew (with fallbacks across issuers),
//! finish, owned so it can run on its own.

use super::failure::Failure;
use super::*;

pub(super) fn panicked_status(cert: &Certificate) -> CertStatus {
    CertStatus {
        last_error: Some("internal error: task panicked (see logs)".into()),
        failed_stage: Some(crate::report::FailedStage::Renewal),
        ..CertStatus::new(cert.name(), cert.spec.domains.clone(), CertState::Failed)
    }
}

/// The result of trying to renew one certificate: `Ok(true)` when renewed.
pub(super) type Attempt = Result<bool, super::failure::Failure>;

/// Everything one certificate's pipeline needs, owned so it can run as a task.
pub(super) struct CertTask {
    pub(super) store: Store,
    pub(super) dns: Arc<Dns01>,
    pub(super) issuers: Arc<Issuers>,
    /// Issuer names to try for this certificate, in order.
    pub(super) chain: Vec<String>,
    pub(super) profile: Option<String>,
    /// This certificate's targets, in order.
    pub(super) targets: Vec<Arc<dyn Target>>,
    pub(super) secrets: Arc<Secrets>,
    pub(super) commit: String,
    pub(super) cancel: CancellationToken,
    pub(super) stop: CancellationToken,
    pub(super) coordinator: Option<Arc<crate::replica::Coordinator>>,
    /// Set when another replica took this certificate's lease: nothing more
    /// is published under it.
    pub(super) lease_lost: Arc<std::sync::atomic::AtomicBool>,
    /// The lease held while this certificate is renewed and published.
    pub(super) lease: std::sync::Mutex<Option<Arc<crate::replica::Lease>>>,
    /// Bounds the certificates published at once (`max_concurrent_publishes`).
    pub(super) publishes: Arc<Semaphore>,
    /// Its `rollouts:` entry.
    pub(super) rollout: Option<Arc<crate::rollout::Rollout>>,
    /// The settings file, for errors about it.
    pub(super) settings_file: String,
}

/// One certificate handled: its status line, and whether another replica
/// holds it (the run then waits for that replica's publish).
pub(super) struct Processed {
    pub(super) status: CertStatus,
    pub(super) held_elsewhere: bool,
}

/// What the lease says about renewing a due certificate now.
pub(super) enum LeaseStep {
    /// No replicas: go ahead without a lease.
    Alone,
    Proceed(Arc<crate::replica::Lease>),
    /// Not here: another replica holds the lease and is renewing it.
    Held(String),
    /// Not here: another replica just renewed it (pulled from the bucket).
    Skip(String),
    Failed(String),
}

impl CertTask {
    async fn take_lease(&self, cert: &Certificate) -> LeaseStep {
        let Some(c) = &self.coordinator else {
            return LeaseStep::Alone;
        };
        let name = cert.name();
        let lease = match c.acquire(name).await {
            Ok(crate::replica::Acquired::Taken(lease)) => lease,
            Ok(crate::replica::Acquired::Held { holder, until }) => {
                return LeaseStep::Held(format!(
                    "being renewed by replica {holder} (lease until {})",
                    rfc3339(until)
                ));
            }
            Err(e) => return LeaseStep::Failed(e.to_string()),
        };
        // A holder that died mid-order (or whose cleanup failed) may have
        // left TXT records; the note stays in the lease until they are gone.
        if let Some(placed) = &lease.left_dns {
            tracing::warn!(event = "lease.cleanup.dns", cert = %name, previous = ?lease.took_over);
            if let Err(e) = self.dns.cleanup(name, placed).await {
                // Not ordered on top of them: the release keeps the note
                // in the lease, and the next run (any replica) retries.
                tracing::error!(event = "lease.cleanup.dns_failed", cert = %name, error = %e);
                c.release(&lease).await;
                return LeaseStep::Failed(format!(
                    "could not remove the TXT records a previous holder left: {e}"
                ));
            }
        }
        // Another replica may have renewed it between our plan and now
        // (not when no lease and no set existed a moment ago).
        if lease.first {
            return LeaseStep::Proceed(lease);
        }
        match c.pull(&self.store, name).await {
            Ok(Some(_)) => {
                c.release(&lease).await;
                LeaseStep::Skip("renewed by another replica".into())
            }
            Ok(None) => LeaseStep::Proceed(lease),
            Err(e) => {
                c.release(&lease).await;
                LeaseStep::Failed(e.to_string())
            }
        }
    }

    /// Renews the lease at a third of its life until dropped; a lost lease
    /// is remembered so nothing more is published under it.
    fn keep_alive(
        &self,
        lease: &Arc<crate::replica::Lease>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let c = self.coordinator.clone()?;
        let (lease, lost) = (lease.clone(), self.lease_lost.clone());
        Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(c.renew_every()).await;
                if let Err(e) = c.renew(&lease).await {
                    if matches!(e, crate::replica::LeaseError::Lost { .. }) {
                        lost.store(true, std::sync::atomic::Ordering::SeqCst);
                        tracing::error!(event = "lease.lost", cert = %lease.name, error = %e);
                        return;
                    }
                    tracing::warn!(event = "lease.renew.failed", cert = %lease.name, error = %e);
                }
            }
        }))
    }

    pub(super) async fn process(&self, cert: &Certificate, plan: CertPlan) -> Processed {
        let external = matches!(plan, CertPlan::External { .. });
        let mut lease = None;
        let mut elsewhere = None;
        let mut held = false;
        let plan = match plan {
            CertPlan::Renew if !self.cancel.is_cancelled() && !self.stop.is_cancelled() => {
                match self.take_lease(cert).await {
                    LeaseStep::Alone => CertPlan::Renew,
                    LeaseStep::Proceed(l) => {
                        *self.lease.lock().expect("lease lock") = Some(l.clone());
                        lease = Some(l);
                        CertPlan::Renew
                    }
                    LeaseStep::Held(why) => {
                        tracing::info!(event = "cert.lease.skipped", cert = cert.name(), reason = %why);
                        elsewhere = Some(why);
                        held = true;
                        CertPlan::Keep
                    }
                    LeaseStep::Skip(why) => {
                        tracing::info!(event = "cert.lease.skipped", cert = cert.name(), reason = %why);
                        elsewhere = Some(why);
                        CertPlan::Keep
                    }
                    LeaseStep::Failed(e) => CertPlan::Broken(format!("lease: {e}")),
                }
            }
            other => other,
        };
        let keep_alive = lease.as_ref().and_then(|l| self.keep_alive(l));
        let generation = lease.as_ref().map(|l| l.generation);
        let mut status = self.process_planned(cert, plan, generation, external).await;
        // Not here yet because another replica is making it: say where,
        // and let the run wait for its publish.
        let held_elsewhere = held && status.not_after.is_none() && status.last_error.is_none();
        if status.not_after.is_none() && status.last_error.is_none() {
            status.last_error = elsewhere;
        }
        if let Some(k) = keep_alive {
            k.abort();
        }
        if let (Some(c), Some(l)) = (&self.coordinator, &lease) {
            if self.lease_lost.load(std::sync::atomic::Ordering::SeqCst) {
                c.forget_lease(l);
            } else {
                c.release(l).await;
            }
        }
        Processed {
            status,
            held_elsewhere,
        }
    }

    async fn process_planned(
        &self,
        cert: &Certificate,
        plan: CertPlan,
        generation: Option<u64>,
        external: bool,
    ) -> CertStatus {
        let waiting = match &plan {
            CertPlan::Waiting { until, limit } => Some((*until, limit.clone())),
            _ => None,
        };
        let attempt = match plan {
            CertPlan::Keep | CertPlan::External { due: None } | CertPlan::Waiting { .. } => None,
            CertPlan::External { due: Some(why) } => Some(Err(Failure::ExternalDue(why))),
            CertPlan::Broken(e) => Some(Err(Failure::Broken(e))),
            CertPlan::Renew if self.cancel.is_cancelled() || self.stop.is_cancelled() => {
                Some(Err(Failure::ShuttingDown))
            }
            CertPlan::BackingOff(f) => Some(Err(Failure::BackingOff {
                count: f.count,
                until: rfc3339(f.next_attempt),
                last_error: f.last_error,
            })),
            CertPlan::Renew => {
                let result = self.renew(cert, generation).await;
                let spec = crate::backoff::spec_fingerprint(&cert.spec, &self.chain);
                match &result {
                    Ok(_) => crate::backoff::clear(&self.store, cert.name()),
                    Err(_) if self.cancel.is_cancelled() => {}
                    Err(e) => {
                        let f = crate::backoff::record(
                            &self.store,
                            cert.name(),
                            &spec,
                            &e.to_string(),
                            OffsetDateTime::now_utc(),
                        );
                        tracing::warn!(event = "cert.backoff", cert = cert.name(), failures = f.count, until = %rfc3339(f.next_attempt));
                    }
                }
                Some(result)
            }
        };
        let backing_off = crate::backoff::load(&self.store, cert.name()).map(|f| f.next_attempt);
        let mut status = {
            let _publishing = self.publishes.acquire().await.expect("never closed");
            finish_cert(self, cert, attempt).await
        };
        if status.state == CertState::Failed && !external {
            status.retry_after = backing_off;
        }
        if external {
            status.renew_command = Some(crate::csr::renew_command(&self.store, cert.name()));
        }
        (status.waiting_until, status.waiting_for) = waiting.unzip();
        status
    }

    /// Tries the certificate's issuer, then its fallbacks, in order.
    async fn renew(&self, cert: &Certificate, generation: Option<u64>) -> Attempt {
        let mut errors = Vec::new();
        for name in &self.chain {
            let issuer = match self.issuers.get(name) {
                Some(Ok(issuer)) => issuer,
                Some(Err(e)) => {
                    errors.push(Failure::Unloaded {
                        issuer: name.clone(),
                        source: e.clone(),
                    });
                    continue;
                }
                None => {
                    errors.push(Failure::NotLoaded(name.clone()));
                    continue;
                }
            };
            match renew_one(issuer, self, cert, generation).await {
                Ok(renewed) => return Ok(renewed),
                Err(e) if self.cancel.is_cancelled() => return Err(e),
                Err(e) => {
                    if self.chain.len() > 1 {
                        tracing::warn!(event = "issuer.failed", cert = cert.name(), issuer = %name, error = %e);
                    }
                    errors.push(if self.chain.len() > 1 {
                        Failure::Via {
                            issuer: name.clone(),
                            source: Box::new(e),
                        }
                    } else {
                        e
                    });
                }
            }
        }
        Err(match errors.len() {
            1 => errors.remove(0),
            _ => Failure::Every(errors),
        })
    }
}
