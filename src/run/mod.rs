//! One renewal run, read top to bottom like the runbook it replaces:
//! fetch the config, decide what is due, issue, store, publish, report.
//! `run_once` here holds the order; each stage is its own file:
//!
//! - `services`: the clients a run uses, built through the registries;
//! - `facts`: what each certificate needs this run (`plan` decides);
//! - `issuers`: the ACME accounts, once per run, and the ARI pass;
//! - `task`: one certificate's task (lease, renew with fallbacks, finish);
//! - `issue`: one order through one issuer;
//! - `finish`: derived files, publish, verify, the status line;
//! - `replicas`: certificates another replica holds, bootstrap from the bucket;
//! - `dry_run`: `renew --dry-run` against the staging CA.

use crate::acme::Issuer;
use crate::aws;
use crate::config::{Certificate, Config, resolve};
use crate::dns::{Dns01, DnsProvider};
use crate::plan::{self, Decision};
use crate::publish::{self, Target};
use crate::report::{self, CertState, CertStatus, Status};
use crate::secrets::Secrets;
use crate::settings::Settings;
use crate::settings::TargetSettings;
use crate::store::{Meta, Store};
use std::collections::BTreeMap;
use std::sync::Arc;
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

mod dry_run;
mod facts;
mod failure;
mod finish;
mod issue;
mod issuers;
mod limits;
mod replicas;
mod rollout;
mod services;
mod task;

use dry_run::provider_zones;
pub use dry_run::{DryRun, DryRunError, ZonesUnavailable, dry_run, zones_held};
use facts::*;
use finish::*;
use issue::*;
use issuers::*;
use replicas::*;
pub use services::{ServiceError, Services};
use task::*;

/// Errors that stop a run before any certificate is looked at. All of them
/// are configuration problems (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] crate::config::gate::GateError),
    #[error("state dir: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("no certificate named {0:?} in the config repo")]
    NoSuchCertificate(String),
    #[error(transparent)]
    Locked(#[from] crate::lock::LockError),
}

/// What a run is asked to do beyond the schedule.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Renew only this certificate (others are still checked and published).
    pub only: Option<String>,
    /// Renew these even if they are current.
    pub force: Vec<String>,
    /// Cancelled on shutdown: no new orders start; those in flight go on
    /// (until the `cancel` token given to `run_once` aborts them).
    pub stop: CancellationToken,
    /// Counts certificates as they finish, for progress displays.
    pub progress: Option<Arc<Progress>>,
}

/// How far a run is; shared with whoever displays it.
#[derive(Debug, Default)]
pub struct Progress {
    pub total: std::sync::atomic::AtomicUsize,
    pub done: std::sync::atomic::AtomicUsize,
    pub renewed: std::sync::atomic::AtomicUsize,
    pub failed: std::sync::atomic::AtomicUsize,
}

impl Progress {
    pub fn line(&self) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        format!(
            "{}/{} certificates checked, {} renewed, {} failed",
            self.done.load(Relaxed),
            self.total.load(Relaxed),
            self.renewed.load(Relaxed),
            self.failed.load(Relaxed)
        )
    }
}

/// Runs one renewal over every certificate of the config repo: the stages
/// in their order.
pub async fn run_once(
    settings: &Settings,
    services: &Services,
    options: &RunOptions,
    cancel: &CancellationToken,
) -> Result<Status, RunError> {
    let started_at = OffsetDateTime::now_utc();
    let store = Store::open(&settings.state_dir)?;
    let _lock = crate::lock::RunLock::acquire(store.root())?;
    store.sweep();

    let provider_zones = provider_zones(settings, services).await;
    let gate_settings = settings.clone();
    let gate_store = store.clone();
    let accepted = tokio::task::spawn_blocking(move || {
        crate::config::gate::accept(&gate_settings, &gate_store, provider_zones.as_deref())
    })
    .await
    .expect("config task does not panic")?;
    let config = &accepted.config;
    let checkout_commit = accepted.commit.clone();
    if let Some(c) = &services.coordinator {
        pull_all(c, &store, config).await;
    }

    let resolution = resolve::Resolution::new(config, settings);
    let mut plans = plan_all(settings, &store, config, &resolution, &options.force);
    let mut issuers = Issuers::new();
    ari_pass(settings, &store, &mut plans, &mut issuers).await;
    if let Some(only) = &options.only {
        if !plans.iter().any(|(c, _)| c.name() == only) {
            return Err(RunError::NoSuchCertificate(only.clone()));
        }
        for (cert, plan) in &mut plans {
            if cert.name() != only && matches!(plan, CertPlan::Renew) {
                tracing::info!(
                    event = "cert.due.deferred",
                    cert = cert.name(),
                    reason = "renew of another certificate asked"
                );
                *plan = CertPlan::Keep;
            }
        }
    }
    limits::plan_limits(
        settings,
        &store,
        &resolution,
        &mut plans,
        OffsetDateTime::now_utc(),
    );
    load_issuers(settings, &store, &plans, &resolution, &mut issuers).await;
    let issuers = Arc::new(issuers);
    let mut dns01 = Dns01::new(services.dns.clone(), &settings.dns)
        .with_journal(store.root().join("dns-journal"));
    if let Some(c) = &services.coordinator {
        dns01 = dns01.with_shared_journal(c.clone());
    }
    let dns = Arc::new(dns01);
    // Records a killed run wrote and never removed go first.
    dns.recover().await;

    // One pipeline per certificate (renew if due, then publish), at most
    // max_concurrent_orders at a time (their waits overlap: the Route53
    // batcher puts their challenges in one change and one INSYNC wait),
    // at most max_concurrent_publishes publishing; one failure never stops
    // the others.
    let limit = Arc::new(Semaphore::new(settings.max_concurrent_orders));
    let publishes = Arc::new(Semaphore::new(settings.max_concurrent_publishes));
    let mut tasks = JoinSet::new();
    if let Some(p) = &options.progress {
        p.total
            .store(plans.len(), std::sync::atomic::Ordering::Relaxed);
    }
    let make_task = |cert: &Certificate| CertTask {
        store: store.clone(),
        dns: dns.clone(),
        issuers: issuers.clone(),
        chain: resolution.of(cert.name()).issuers.clone(),
        profile: resolution.of(cert.name()).profile.clone(),
        targets: resolution
            .of(cert.name())
            .targets
            .iter()
            .filter_map(|t| services.targets.get(t).cloned())
            .collect(),
        secrets: services.secrets.clone(),
        commit: checkout_commit.clone(),
        cancel: cancel.clone(),
        stop: options.stop.clone(),
        coordinator: services.coordinator.clone(),
        lease_lost: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        lease: std::sync::Mutex::new(None),
        publishes: publishes.clone(),
        rollout: services.rollouts.get(cert.name()).cloned(),
        settings_file: settings.source.display().to_string(),
    };
    for (index, (cert, plan)) in plans.into_iter().enumerate() {
        let ctx = make_task(&cert);
        let limit = limit.clone();
        let progress = options.progress.clone();
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await.expect("semaphore never closed");
            let processed = ctx.process(&cert, plan).await;
            if let Some(p) = &progress {
                use std::sync::atomic::Ordering::Relaxed;
                p.done.fetch_add(1, Relaxed);
                match processed.status.state {
                    CertState::Renewed => p.renewed.fetch_add(1, Relaxed),
                    CertState::Failed => p.failed.fetch_add(1, Relaxed),
                    _ => 0,
                };
            }
            (index, processed)
        });
    }
    let mut certificates: Vec<Option<CertStatus>> = vec![None; config.certificates.len()];
    let mut held_elsewhere = vec![false; config.certificates.len()];
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, processed)) => {
                certificates[index] = Some(processed.status);
                held_elsewhere[index] = processed.held_elsewhere;
            }
            Err(e) => tracing::error!(event = "cert.task.panicked", error = %e),
        }
    }
    let mut certificates: Vec<CertStatus> = certificates
        .into_iter()
        .zip(&config.certificates)
        .map(|(status, cert)| status.unwrap_or_else(|| panicked_status(cert)))
        .collect();
    if let (Some(c), Some(replicas)) = (&services.coordinator, &settings.replicas) {
        let waiting = config
            .certificates
            .iter()
            .enumerate()
            .filter(|(i, _)| held_elsewhere[*i] && certificates[*i].not_after.is_none())
            .collect();
        await_elsewhere(
            c,
            &store,
            replicas.lease_ttl,
            &mut certificates,
            waiting,
            &make_task,
            cancel,
        )
        .await;
    }
    finish_targets(&resolution, services, &store, config, &mut certificates).await;

    let status = Status {
        started_at,
        finished_at: OffsetDateTime::now_utc(),
        config_commit: Some(checkout_commit.clone()),
        config: report::config_state(accepted.rejected.as_ref()),
        config_rejected: accepted.rejected.clone(),
        error: None,
        certificates,
    };
    write_status(&store, &status);
    let count = |state: CertState| {
        status
            .certificates
            .iter()
            .filter(|c| c.state == state)
            .count()
    };
    tracing::info!(
        event = "run.finished",
        certificates = status.certificates.len(),
        renewed = count(CertState::Renewed),
        failed = count(CertState::Failed),
        unpublished = status.certificates.iter().filter(|c| !c.published && c.waiting_until.is_none()).count(),
        waiting = status.certificates.iter().filter(|c| c.waiting_until.is_some()).count(),
        dns_calls = services.dns_calls(),
        acme_requests = crate::metrics::total("certkeeper_acme_requests_total"),
        duration_ms = (status.finished_at - started_at).whole_milliseconds() as u64,
        config_commit = %checkout_commit,
    );
    crate::watch::check(settings, &store, Some(&status), &services.secrets).await;
    Ok(status)
}

/// Status is best effort: failing to write it must not hide the run's result.
pub fn write_status(store: &Store, status: &Status) {
    let json = serde_json::to_vec_pretty(status).expect("status serializes");
    let path = store.root().join(report::STATUS_FILE);
    if let Err(e) = crate::store::write_atomic(&path, &json, 0o644) {
        tracing::error!(event = "status.write.failed", error = %e);
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}
