//! One renewal run, read top to bottom like the runbook it replaces:
//! fetch the config, decide what is due, issue, store, publish, report.

use crate::acme::Issuer;
use crate::aws;
use crate::config::{Certificate, Config};
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

/// Everything a run needs from outside, built once from the settings.
pub struct Services {
    /// DNS providers by the name certificates use.
    pub dns: BTreeMap<String, Arc<dyn DnsProvider>>,
    /// Publish targets by the name certificates use.
    pub targets: BTreeMap<String, Arc<dyn Target>>,
    pub secrets: Arc<Secrets>,
    /// Leases and bootstrap through the bucket, when running as replicas.
    pub coordinator: Option<Arc<crate::lease::Coordinator>>,
}

#[derive(Debug, thiserror::Error)]
#[error("DNS provider {name:?}: {source}")]
pub struct ServiceError {
    name: String,
    source: crate::dns::DnsError,
}

impl Services {
    /// Real clients, honouring the endpoint override. Each Route53 provider
    /// gets its own AWS identity (profile or assumed role), separate from
    /// the one used for S3.
    pub async fn from_settings(settings: &Settings) -> Result<Services, ServiceError> {
        let base = aws::base(settings, None).await;
        let mut dns: BTreeMap<String, Arc<dyn DnsProvider>> = BTreeMap::new();
        for (name, provider) in &settings.dns_providers {
            let built = crate::dns::build(settings, provider, &base)
                .await
                .map_err(|source| ServiceError {
                    name: name.clone(),
                    source,
                })?;
            dns.insert(name.clone(), built);
        }
        let mut targets: BTreeMap<String, Arc<dyn Target>> = BTreeMap::new();
        for (name, target) in &settings.targets {
            targets.insert(
                name.clone(),
                publish::build(name, settings, target, &base).await,
            );
        }
        let secrets = Arc::new(Secrets::new(settings, &base));
        let mut coordinator = None;
        if let Some(replicas) = &settings.replicas
            && let Some(TargetSettings::S3(s3)) = settings.targets.get(&replicas.target)
        {
            let sdk = aws::identity(settings, &s3.aws, &base, "certkeeper-s3").await;
            coordinator = Some(Arc::new(crate::lease::Coordinator::new(
                aws::s3_client(settings, &sdk),
                s3,
                replicas,
            )));
        }
        Ok(Services {
            dns,
            targets,
            secrets,
            coordinator,
        })
    }

    /// Route53 API calls of every provider, for the run summary.
    fn dns_calls(&self) -> u64 {
        self.dns.values().map(|p| p.api_calls()).sum()
    }
}

/// Runs one renewal over every certificate of the config repo.
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

pub async fn run_once(
    settings: &Settings,
    services: &Services,
    options: &RunOptions,
    cancel: &CancellationToken,
) -> Result<Status, RunError> {
    let started_at = OffsetDateTime::now_utc();
    let store = Store::open(&settings.state_dir)?;
    let _lock = crate::lock::RunLock::acquire(store.root())?;

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

    let mut plans = plan_all(settings, &store, config, &options.force);
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
    load_issuers(settings, &store, &plans, &mut issuers).await;
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
    // max_concurrent_orders at a time; one failure never stops the others.
    let limit = Arc::new(Semaphore::new(settings.max_concurrent_orders));
    let mut tasks = JoinSet::new();
    if let Some(p) = &options.progress {
        p.total
            .store(plans.len(), std::sync::atomic::Ordering::Relaxed);
    }
    let make_task = |cert: &Certificate| CertTask {
        store: store.clone(),
        dns: dns.clone(),
        issuers: issuers.clone(),
        chain: settings.issuers_for(&cert.spec),
        profile: effective_profile(settings, &cert.spec).map(str::to_string),
        targets: settings
            .targets_for(&cert.spec)
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
    };
    for (index, (cert, plan)) in plans.into_iter().enumerate() {
        let ctx = make_task(&cert);
        let limit = limit.clone();
        let progress = options.progress.clone();
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await.expect("semaphore never closed");
            let status = ctx.process(&cert, plan).await;
            if let Some(p) = &progress {
                use std::sync::atomic::Ordering::Relaxed;
                p.done.fetch_add(1, Relaxed);
                match status.state {
                    CertState::Renewed => p.renewed.fetch_add(1, Relaxed),
                    CertState::Failed => p.failed.fetch_add(1, Relaxed),
                    _ => 0,
                };
            }
            (index, status)
        });
    }
    let mut certificates: Vec<Option<CertStatus>> = vec![None; config.certificates.len()];
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, status)) => certificates[index] = Some(status),
            Err(e) => tracing::error!(event = "cert.task.panicked", error = %e),
        }
    }
    let mut certificates: Vec<CertStatus> = certificates
        .into_iter()
        .zip(&config.certificates)
        .map(|(status, cert)| status.unwrap_or_else(|| panicked_status(cert)))
        .collect();
    if let (Some(c), Some(replicas)) = (&services.coordinator, &settings.replicas) {
        await_elsewhere(
            c,
            &store,
            replicas.lease_ttl,
            config,
            &mut certificates,
            &make_task,
            cancel,
        )
        .await;
    }
    finish_targets(settings, services, &store, config, &mut certificates).await;

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
        unpublished = status.certificates.iter().filter(|c| !c.published).count(),
        dns_calls = services.dns_calls(),
        acme_requests = crate::metrics::total("certkeeper_acme_requests_total"),
        duration_ms = (status.finished_at - started_at).whole_milliseconds() as u64,
        config_commit = %checkout_commit,
    );
    crate::watch::check(settings, &store, Some(&status), &services.secrets).await;
    Ok(status)
}

/// Certificates this replica has no copy of because another one was
/// issuing them: wait (up to twice the lease) for their holders to publish,
/// take them from the bucket and publish them here too, so that replicas
/// started together all end their first run complete.
async fn await_elsewhere(
    c: &Arc<crate::lease::Coordinator>,
    store: &Store,
    lease_ttl: std::time::Duration,
    config: &Config,
    certificates: &mut [CertStatus],
    make_task: &dyn Fn(&Certificate) -> CertTask,
    cancel: &CancellationToken,
) {
    let mut waiting: Vec<usize> = (0..certificates.len())
        .filter(|i| {
            certificates[*i].not_after.is_none()
                && certificates[*i]
                    .last_error
                    .as_deref()
                    .is_some_and(|e| e.starts_with(ELSEWHERE))
        })
        .collect();
    let deadline = tokio::time::Instant::now() + lease_ttl * 2;
    while !waiting.is_empty() && tokio::time::Instant::now() < deadline && !cancel.is_cancelled() {
        // One listing a round shows which holders have published; without
        // s3:ListBucket, a GET per certificate still waiting.
        let listing = c.listing().await;
        let mut still = Vec::new();
        for i in waiting {
            let cert = &config.certificates[i];
            let pulled = match &listing {
                Some(listing) => c.pull_surveyed(store, cert.name(), listing).await,
                None => c.pull(store, cert.name()).await,
            };
            match pulled {
                Ok(Some(_)) => {
                    certificates[i] = make_task(cert).process(cert, CertPlan::Keep).await;
                }
                _ => still.push(i),
            }
        }
        waiting = still;
        if !waiting.is_empty() {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
}

/// How a certificate another replica is issuing is reported.
const ELSEWHERE: &str = "being renewed by replica";

/// Brings every certificate's local set up to the bucket's (replicas): a
/// new replica starts from what the others issued instead of re-issuing.
async fn pull_all(c: &Arc<crate::lease::Coordinator>, store: &Store, config: &Config) {
    let names: Vec<&str> = config.certificates.iter().map(|c| c.name()).collect();
    let survey = c.survey(&names).await.map(Arc::new);
    let limit = Arc::new(Semaphore::new(16));
    let mut tasks = JoinSet::new();
    for cert in &config.certificates {
        let (c, store, name, limit, survey) = (
            c.clone(),
            store.clone(),
            cert.name().to_string(),
            limit.clone(),
            survey.clone(),
        );
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await.expect("semaphore never closed");
            let pulled = match &survey {
                Some(survey) => c.pull_surveyed(&store, &name, survey).await,
                None => c.pull(&store, &name).await,
            };
            if let Err(e) = pulled {
                tracing::error!(event = "replica.pull.failed", cert = %name, error = %e);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Lets each target finish the run (the S3 manifest) with every live
/// certificate it publishes; a failure marks those certificates unpublished,
/// so the next run tries again.
async fn finish_targets(
    settings: &Settings,
    services: &Services,
    store: &Store,
    config: &Config,
    certificates: &mut [CertStatus],
) {
    for (name, target) in &services.targets {
        let mut certs = Vec::new();
        for cert in &config.certificates {
            if !settings.targets_for(&cert.spec).contains(name) {
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
                    status.last_error.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }
}

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
) -> Result<DryRun, String> {
    let store = Store::open(&settings.state_dir).map_err(|e| e.to_string())?;
    let provider_zones = provider_zones(settings, services).await;
    let (gate_settings, gate_store) = (settings.clone(), store.clone());
    let accepted = tokio::task::spawn_blocking(move || {
        crate::config::gate::accept(&gate_settings, &gate_store, provider_zones.as_deref())
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    let cert = accepted
        .config
        .certificates
        .iter()
        .find(|c| c.name() == name)
        .ok_or_else(|| format!("no certificate named {name:?} in the config repo"))?;
    if cert.spec.is_external() {
        return Err(format!(
            "{name:?} has `issuer: {}`: there is no ACME order to try; see `certkeeper csr new`",
            crate::csr::EXTERNAL
        ));
    }
    let issuer_name = settings.issuers_for(&cert.spec).remove(0);
    let mut acme = settings
        .issuers
        .get(&issuer_name)
        .cloned()
        .ok_or_else(|| format!("unknown issuer {issuer_name:?}"))?;
    acme.directory_url = acme.staging_directory_url.clone().ok_or_else(|| {
        format!("issuer {issuer_name:?} has no staging_directory_url for --dry-run")
    })?;
    let issuer = Issuer::load_or_create(&format!("{issuer_name}-staging"), &acme, &store)
        .await
        .map_err(|e| e.to_string())?;
    let dns = Dns01::new(services.dns.clone(), &settings.dns);
    let profile = effective_profile(settings, &cert.spec);
    let issued = issuer
        .issue(&cert.spec, profile, None, None, &dns, cancel)
        .await
        .map_err(|e| e.to_string())?;
    let der = crate::x509::pem_chain(&issued.cert_pem).map_err(|e| e.to_string())?;
    let info = crate::x509::leaf_info(&der[0]).map_err(|e| e.to_string())?;
    tracing::info!(event = "cert.dry_run", cert = name, serial = %info.serial, directory = %acme.directory_url);
    Ok(DryRun {
        directory_url: acme.directory_url,
        serial: info.serial,
        not_after: info.not_after,
        sans: info.dns_names,
    })
}

/// The default zone allowlist: every zone the DNS providers hold.
async fn provider_zones(settings: &Settings, services: &Services) -> Option<Vec<String>> {
    if settings.allowed_zones.is_some() {
        return None;
    }
    let mut zones = Vec::new();
    for (name, provider) in &services.dns {
        match provider.zones().await {
            Ok(z) => zones.extend(z),
            Err(e) => {
                // Issuance needs a zone at the provider anyway, so nothing
                // outside them can be issued; only the early check is skipped.
                tracing::warn!(event = "dns.zones.unavailable", provider = %name, error = %e);
                return None;
            }
        }
    }
    Some(zones)
}

/// What to do with one certificate in this run.
enum CertPlan {
    Renew,
    Keep,
    /// Its stored state is unreadable: report, never re-issue over it blindly.
    Broken(String),
    /// Due, but failing: wait until the back-off has passed.
    BackingOff(crate::backoff::Failures),
    /// Signed by a CA without ACME: published like any other, never
    /// renewed here. `due` says what a person must do, when it is time.
    External {
        due: Option<String>,
    },
}

fn plan_all(
    settings: &Settings,
    store: &Store,
    config: &Config,
    force: &[String],
) -> Vec<(Certificate, CertPlan)> {
    let now = OffsetDateTime::now_utc();
    config
        .certificates
        .iter()
        .map(|cert| {
            let chain = settings.issuers_for(&cert.spec);
            let urls: Vec<String> = chain
                .iter()
                .filter_map(|n| settings.issuers.get(n).map(|i| i.directory_url.clone()))
                .collect();
            let wanted = plan::Wanted {
                issuers: &urls,
                profile: effective_profile(settings, &cert.spec),
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
                        Some(f) if now < f.next_attempt && f.spec == crate::backoff::spec_fingerprint(&cert.spec, &chain) => {
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
const EXTERNAL_RENEW_BEFORE: std::time::Duration = std::time::Duration::from_secs(30 * 86400);

fn external_plan(store: &Store, cert: &Certificate, now: OffsetDateTime) -> CertPlan {
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
            issuer = crate::csr::EXTERNAL
        ),
    }
    CertPlan::External { due }
}

/// The profile a certificate asks for: its own, else its first issuer's.
fn effective_profile<'a>(
    settings: &'a Settings,
    spec: &'a crate::config::CertificateSpec,
) -> Option<&'a str> {
    spec.profile.as_deref().or_else(|| {
        let first = settings.issuers_for(spec).into_iter().next()?;
        settings.issuers.get(&first)?.profile.as_deref()
    })
}

type Issuers = BTreeMap<String, Result<Arc<Issuer>, String>>;

/// ACME accounts of the issuers that due certificates may use, loaded once.
async fn load_issuers(
    settings: &Settings,
    store: &Store,
    plans: &[(Certificate, CertPlan)],
    out: &mut Issuers,
) {
    for (cert, plan) in plans {
        if matches!(plan, CertPlan::Renew) {
            for name in settings.issuers_for(&cert.spec) {
                issuer(settings, store, &name, out).await;
            }
        }
    }
}

/// The issuer `name`, loading (or creating) its account on first use.
async fn issuer(
    settings: &Settings,
    store: &Store,
    name: &str,
    cache: &mut Issuers,
) -> Option<Arc<Issuer>> {
    if !cache.contains_key(name) {
        let loaded = match settings.issuers.get(name) {
            None => Err(format!("unknown issuer {name:?}")),
            Some(acme) => match Issuer::load_or_create(name, acme, store).await {
                Ok(issuer) => Ok(Arc::new(issuer)),
                Err(e) => {
                    tracing::error!(event = "acme.account.failed", issuer = %name, error = %e);
                    Err(e.to_string())
                }
            },
        };
        cache.insert(name.to_string(), loaded);
    }
    cache.get(name).and_then(|r| r.as_ref().ok()).cloned()
}

/// Asks the CA of every current certificate whether it wants it renewed
/// early (ARI); a certificate whose chosen moment has come becomes due.
async fn ari_pass(
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

fn panicked_status(cert: &Certificate) -> CertStatus {
    CertStatus {
        name: cert.name().to_string(),
        domains: cert.spec.domains.clone(),
        state: CertState::Failed,
        not_after: None,
        days_left: None,
        issued_at: None,
        serial: None,
        config_commit: None,
        last_error: Some("internal error: task panicked (see logs)".into()),
        published: false,
        retry_after: None,
        targets: Vec::new(),
        verified: None,
        verification: None,
        renew_command: None,
    }
}

/// The result of trying to renew one certificate: `Ok(true)` when renewed.
type Attempt = Result<bool, String>;

/// Everything one certificate's pipeline needs, owned so it can run as a task.
struct CertTask {
    store: Store,
    dns: Arc<Dns01>,
    issuers: Arc<Issuers>,
    /// Issuer names to try for this certificate, in order.
    chain: Vec<String>,
    profile: Option<String>,
    /// This certificate's targets, in order.
    targets: Vec<Arc<dyn Target>>,
    secrets: Arc<Secrets>,
    commit: String,
    cancel: CancellationToken,
    stop: CancellationToken,
    coordinator: Option<Arc<crate::lease::Coordinator>>,
    /// Set when another replica took this certificate's lease: nothing more
    /// is published under it.
    lease_lost: Arc<std::sync::atomic::AtomicBool>,
    /// The lease held while this certificate is renewed and published.
    lease: std::sync::Mutex<Option<Arc<crate::lease::Lease>>>,
}

/// What the lease says about renewing a due certificate now.
enum LeaseStep {
    /// No replicas: go ahead without a lease.
    Alone,
    Proceed(Arc<crate::lease::Lease>),
    /// Not here: another replica holds it, or just renewed it.
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
            Ok(crate::lease::Acquired::Taken(lease)) => lease,
            Ok(crate::lease::Acquired::Held { holder, until }) => {
                return LeaseStep::Skip(format!(
                    "{ELSEWHERE} {holder} (lease until {})",
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
    fn keep_alive(&self, lease: &Arc<crate::lease::Lease>) -> Option<tokio::task::JoinHandle<()>> {
        let c = self.coordinator.clone()?;
        let (lease, lost) = (lease.clone(), self.lease_lost.clone());
        Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(c.renew_every()).await;
                if let Err(e) = c.renew(&lease).await {
                    if matches!(e, crate::lease::LeaseError::Lost { .. }) {
                        lost.store(true, std::sync::atomic::Ordering::SeqCst);
                        tracing::error!(event = "lease.lost", cert = %lease.name, error = %e);
                        return;
                    }
                    tracing::warn!(event = "lease.renew.failed", cert = %lease.name, error = %e);
                }
            }
        }))
    }

    async fn process(&self, cert: &Certificate, plan: CertPlan) -> CertStatus {
        let external = matches!(plan, CertPlan::External { .. });
        let mut lease = None;
        let mut elsewhere = None;
        let plan = match plan {
            CertPlan::Renew if !self.cancel.is_cancelled() && !self.stop.is_cancelled() => {
                match self.take_lease(cert).await {
                    LeaseStep::Alone => CertPlan::Renew,
                    LeaseStep::Proceed(l) => {
                        *self.lease.lock().expect("lease lock") = Some(l.clone());
                        lease = Some(l);
                        CertPlan::Renew
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
        if status.not_after.is_none() && status.last_error.is_none() {
            // Not here yet: say where it is being made.
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
        status
    }

    async fn process_planned(
        &self,
        cert: &Certificate,
        plan: CertPlan,
        generation: Option<u64>,
        external: bool,
    ) -> CertStatus {
        let attempt = match plan {
            CertPlan::Keep | CertPlan::External { due: None } => None,
            CertPlan::External { due: Some(why) } => Some(Err(why)),
            CertPlan::Broken(e) => Some(Err(e)),
            CertPlan::Renew if self.cancel.is_cancelled() || self.stop.is_cancelled() => {
                Some(Err("not started: shutting down".to_string()))
            }
            CertPlan::BackingOff(f) => Some(Err(format!(
                "backing off after {} failures until {}: {}",
                f.count,
                rfc3339(f.next_attempt),
                f.last_error
            ))),
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
                            e,
                            OffsetDateTime::now_utc(),
                        );
                        tracing::warn!(event = "cert.backoff", cert = cert.name(), failures = f.count, until = %rfc3339(f.next_attempt));
                    }
                }
                Some(result)
            }
        };
        let backing_off = crate::backoff::load(&self.store, cert.name()).map(|f| f.next_attempt);
        let mut status = finish_cert(self, cert, attempt).await;
        if status.state == CertState::Failed && !external {
            status.retry_after = backing_off;
        }
        if external {
            status.renew_command = Some(crate::csr::renew_command(&self.store, cert.name()));
        }
        status
    }

    /// Tries the certificate's issuer, then its fallbacks, in order.
    async fn renew(&self, cert: &Certificate, generation: Option<u64>) -> Attempt {
        let mut errors = Vec::new();
        for name in &self.chain {
            let issuer = match self.issuers.get(name) {
                Some(Ok(issuer)) => issuer,
                Some(Err(e)) => {
                    errors.push(format!("{name}: {e}"));
                    continue;
                }
                None => {
                    errors.push(format!("{name}: not loaded"));
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
                        format!("{name}: {e}")
                    } else {
                        e
                    });
                }
            }
        }
        Err(errors.join("; "))
    }
}

async fn renew_one(
    issuer: &Issuer,
    task: &CertTask,
    cert: &Certificate,
    generation: Option<u64>,
) -> Attempt {
    let (dns, store, commit, cancel) = (&task.dns, &task.store, &task.commit, &task.cancel);
    let started = std::time::Instant::now();
    let spec = &cert.spec;
    let fail = |e: String| {
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
            Err(e) => return Err(fail(e.to_string())),
        }
    };
    let ders =
        crate::x509::pem_chain(&issued.cert_pem).map_err(|e| fail(format!("CA returned {e}")))?;
    let info = crate::x509::leaf_info(&ders[0]).map_err(|e| fail(format!("CA returned {e}")))?;
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
        .map_err(|e| fail(e.to_string()))?;
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
fn reusable_key(
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

/// Publishes whatever is live for `cert`, checks the endpoints, and builds
/// its status line.
async fn finish_cert(task: &CertTask, cert: &Certificate, attempt: Option<Attempt>) -> CertStatus {
    let store = &task.store;
    let now = OffsetDateTime::now_utc();
    let meta = store.live_meta(cert.name()).ok().flatten();
    let mut last_error = match &attempt {
        Some(Err(e)) => Some(e.clone()),
        _ => None,
    };
    let mut published = true;
    let mut targets = Vec::new();
    let mut verified = None;
    let mut verification = None;
    // Still ours? A replica paused past its lease must not publish.
    let held = task.lease.lock().expect("lease lock").clone();
    if let (Some(c), Some(lease)) = (&task.coordinator, held)
        && let Err(e) = c.renew(&lease).await
        && matches!(e, crate::lease::LeaseError::Lost { .. })
    {
        tracing::error!(event = "lease.lost", cert = %cert.name(), error = %e);
        task.lease_lost
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
    let lost = task.lease_lost.load(std::sync::atomic::Ordering::SeqCst);
    if lost {
        published = false;
        last_error.get_or_insert_with(|| {
            "not published: another replica took over this certificate's lease".into()
        });
    }
    if let Some(meta) = meta.as_ref().filter(|_| !lost) {
        let formats = derive_formats(task, cert).await;
        if let Err(e) = &formats {
            tracing::error!(event = "format.failed", cert = %cert.name(), error = %e);
            published = false;
            last_error.get_or_insert(e.clone());
        }
        // Targets run in order; one failing does not stop or undo the
        // others, and it is retried on the next run.
        for target in &task.targets {
            let result = match &formats {
                Err(_) => Err("not published: the derived files failed".to_string()),
                Ok(()) => publish_to(store, target.as_ref(), meta, &cert.spec.vars).await,
            };
            if let Err(e) = &result {
                published = false;
                last_error.get_or_insert(e.clone());
            }
            targets.push(report::TargetStatus {
                name: target.name().to_string(),
                result: match result {
                    Ok(()) => "published".into(),
                    Err(e) => format!("failed: {e}"),
                },
            });
        }
        if let Some(spec) = &cert.spec.verify {
            let result = verify_live(task, spec, meta).await;
            verified = Some(result.is_ok());
            match result {
                Ok(()) => verification = Some("verified".to_string()),
                Err(e) => {
                    last_error.get_or_insert(format!("verification: {e}"));
                    verification = Some(e);
                }
            }
        }
    }
    let state = match (&attempt, &last_error) {
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
        last_error,
        published: published && meta.is_some(),
        retry_after: None,
        targets,
        verified,
        verification,
        renew_command: None,
    }
}

/// PKCS#12 and fingerprints files, as the certificate asks.
async fn derive_formats(task: &CertTask, cert: &Certificate) -> Result<(), String> {
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
    )
    .map_err(|e| e.to_string())
}

/// Checks the endpoints once a live certificate was published. A
/// certificate already seen served is not checked again until it changes.
async fn verify_live(
    task: &CertTask,
    spec: &crate::config::VerifySpec,
    meta: &Meta,
) -> Result<(), String> {
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

async fn publish_to(
    store: &Store,
    target: &dyn Target,
    meta: &Meta,
    vars: &BTreeMap<String, String>,
) -> Result<(), String> {
    let files = store.live_files(&meta.name).map_err(|e| e.to_string())?;
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
            publish::mark_published(store, &meta.name, target.name(), &fingerprint)
                .map_err(|e| e.to_string())
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
            Err(e.to_string())
        }
    }
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
