//! DNS-01: the provider seam, and the checks around it.
//!
//! A [`DnsProvider`] only writes and removes TXT values. Waiting until the
//! zone's nameservers actually serve them ([`propagation`]) is generic and
//! lives here, so every provider gets it for free.

pub mod propagation;
pub mod rfc2136;
pub mod route53;

use async_trait::async_trait;
use std::fmt;

/// One TXT value at one name, e.g. `_acme-challenge.example.test` = `abc…`.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct TxtRecord {
    /// Fully qualified, lower case, no trailing dot.
    pub name: String,
    pub value: String,
}

impl fmt::Display for TxtRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} TXT \"{}\"", self.name, self.value)
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum DnsError {
    #[error("DNS journal: {0}")]
    Journal(String),
    #[error("no {provider} hosted zone found for {name} (looked for every parent domain)")]
    NoZone {
        provider: &'static str,
        name: String,
    },
    #[error("{provider} {operation} for {name} failed: {message}")]
    Api {
        provider: &'static str,
        operation: &'static str,
        name: String,
        message: String,
        /// The service's error code (`InvalidChangeBatch`), when it sent one.
        code: Option<String>,
    },
    #[error("TXT records not visible after {waited_secs}s: {details}")]
    NotPropagated { waited_secs: u64, details: String },
    #[error("cannot find the nameservers of {name}: {message}")]
    Nameservers { name: String, message: String },
    #[error("cancelled")]
    Cancelled,
}

/// Where a set of challenge records goes: provider-specific zone hint.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ZoneHint {
    /// A zone id given in the config; `None` means discover it.
    pub zone_id: Option<String>,
}

/// A DNS service that can hold `_acme-challenge` TXT values.
///
/// Implementations must keep values they did not add: `present` merges into
/// what is there and `cleanup` removes only the given values, because a
/// wildcard and its apex, or another ACME client, share the same name.
#[async_trait]
pub trait DnsProvider: Send + Sync {
    /// Short name for logs and errors (`route53`).
    fn kind(&self) -> &'static str;

    /// Adds the values and returns once the provider reports them applied.
    async fn present(&self, zone: &ZoneHint, records: &[TxtRecord]) -> Result<(), DnsError>;

    /// Removes exactly these values, leaving any others at the same names.
    async fn cleanup(&self, zone: &ZoneHint, records: &[TxtRecord]) -> Result<(), DnsError>;

    /// Host names of the nameservers authoritative for `name`'s zone.
    async fn authoritative_nameservers(
        &self,
        zone: &ZoneHint,
        name: &str,
    ) -> Result<Vec<String>, DnsError>;

    /// The zones this provider can write to (lower case, no trailing dot).
    async fn zones(&self) -> Result<Vec<String>, DnsError>;

    /// API calls made so far, for the benchmark.
    fn api_calls(&self) -> u64 {
        0
    }
}

/// The generic DNS-01 steps around the providers: follow a CNAME on the
/// challenge name to wherever it is delegated, write through the provider
/// that holds that name, wait until the authoritative servers answer with
/// the values, and remove them again.
pub struct Dns01 {
    providers: std::collections::BTreeMap<String, std::sync::Arc<dyn DnsProvider>>,
    /// Servers to ask instead of the zone's own (split-horizon, tests).
    nameservers: Vec<std::net::SocketAddr>,
    propagation_timeout: std::time::Duration,
    skip_propagation: bool,
    follow_cname: bool,
    /// Where records are noted before they are written and forgotten once
    /// removed, so a run killed in between (SIGKILL, power loss) has them
    /// removed by the next one.
    journal: Option<std::path::PathBuf>,
    /// The same, where other replicas can read it (beside the lease), so
    /// whoever takes over a dead replica's certificate cleans up after it.
    shared: Option<std::sync::Arc<dyn SharedJournal>>,
}

/// A journal other replicas can read.
#[async_trait::async_trait]
pub trait SharedJournal: Send + Sync {
    async fn note(&self, cert: &str, placed: &Placement) -> Result<(), DnsError>;
    async fn forget(&self, cert: &str);
}

/// Where the records of one order were written, for cleanup.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct Placement {
    parts: Vec<(String, ZoneHint, Vec<TxtRecord>)>,
}

impl Placement {
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }
}

impl Dns01 {
    pub fn new(
        providers: std::collections::BTreeMap<String, std::sync::Arc<dyn DnsProvider>>,
        settings: &crate::settings::DnsSettings,
    ) -> Self {
        Self {
            providers,
            nameservers: settings
                .nameservers
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect(),
            propagation_timeout: settings.propagation_timeout,
            skip_propagation: settings.propagation == crate::settings::Propagation::Skip,
            follow_cname: settings.follow_cname,
            journal: None,
            shared: None,
        }
    }

    pub fn with_shared_journal(mut self, shared: std::sync::Arc<dyn SharedJournal>) -> Self {
        self.shared = Some(shared);
        self
    }

    /// Keeps a journal of written records in `dir` (the state dir's
    /// `dns-journal`).
    pub fn with_journal(mut self, dir: std::path::PathBuf) -> Self {
        self.journal = Some(dir);
        self
    }

    fn journal_file(&self, cert: &str) -> Option<std::path::PathBuf> {
        self.journal
            .as_ref()
            .map(|d| d.join(format!("{cert}.json")))
    }

    fn note(&self, cert: &str, placed: &Placement) -> Result<(), DnsError> {
        let Some(path) = self.journal_file(cert) else {
            return Ok(());
        };
        let json = serde_json::to_vec_pretty(placed).expect("placement serializes");
        if let Some(dir) = path.parent() {
            crate::store::create_private_dir(dir).map_err(|e| DnsError::Journal(e.to_string()))?;
        }
        crate::store::write_atomic(&path, &json, 0o600)
            .map_err(|e| DnsError::Journal(e.to_string()))
    }

    /// Removes what a killed run left behind, as its journal says. Entries
    /// that cannot be cleaned stay for the next run.
    pub async fn recover(&self) {
        let Some(dir) = &self.journal else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(cert) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
                .map(str::to_string)
            else {
                continue;
            };
            let placed: Placement = match std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
            {
                Some(p) => p,
                None => {
                    tracing::error!(event = "dns.journal.corrupt", path = %path.display(), action = "removed");
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
            };
            let records: usize = placed.parts.iter().map(|(_, _, r)| r.len()).sum();
            tracing::warn!(event = "dns.journal.recovering", cert = %cert, records, reason = "left by an interrupted run");
            if self.cleanup(&cert, &placed).await.is_ok() {
                tracing::info!(event = "dns.journal.recovered", cert = %cert, records);
            }
        }
    }

    fn provider(&self, name: &str) -> Result<&std::sync::Arc<dyn DnsProvider>, DnsError> {
        self.providers
            .get(name)
            .ok_or_else(|| DnsError::Nameservers {
                name: name.to_string(),
                message: "no such DNS provider in the settings".into(),
            })
    }

    /// Decides, per record, which provider and name it is written at: the
    /// certificate's provider, unless the name is a CNAME to a name another
    /// configured zone holds.
    async fn place(
        &self,
        provider: &str,
        zone: &ZoneHint,
        records: &[TxtRecord],
    ) -> Result<Placement, DnsError> {
        let mut placement = Placement::default();
        let mut add = |p: String, z: ZoneHint, r: TxtRecord| match placement
            .parts
            .iter_mut()
            .find(|(pp, zz, _)| *pp == p && *zz == z)
        {
            Some((_, _, list)) => list.push(r),
            None => placement.parts.push((p, z, vec![r])),
        };
        for record in records {
            let target = if self.follow_cname {
                propagation::follow_cname(&self.nameservers, &record.name).await?
            } else {
                None
            };
            match target {
                None => add(provider.to_string(), zone.clone(), record.clone()),
                Some(target) => {
                    let owner = self.owner_of(&target).await?;
                    tracing::info!(event = "dns.cname.followed", from = %record.name, to = %target, provider = %owner);
                    add(
                        owner,
                        ZoneHint::default(),
                        TxtRecord {
                            name: target,
                            value: record.value.clone(),
                        },
                    );
                }
            }
        }
        Ok(placement)
    }

    /// The provider whose zone is the longest suffix of `name`.
    async fn owner_of(&self, name: &str) -> Result<String, DnsError> {
        let mut best: Option<(usize, String)> = None;
        for (pname, provider) in &self.providers {
            for zone in provider.zones().await? {
                let hit = name == zone || name.ends_with(&format!(".{zone}"));
                if hit && best.as_ref().is_none_or(|(len, _)| zone.len() > *len) {
                    best = Some((zone.len(), pname.clone()));
                }
            }
        }
        best.map(|(_, p)| p).ok_or_else(|| DnsError::NoZone {
            provider: "any configured",
            name: format!("{name} (CNAME target)"),
        })
    }

    /// Writes the records and returns once every nameserver serves them.
    /// `placed` is filled before anything is written, so the caller can
    /// clean up whatever happens.
    pub async fn present(
        &self,
        cert: &str,
        provider: &str,
        zone: &ZoneHint,
        records: &[TxtRecord],
        placed: &mut Placement,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Result<(), DnsError> {
        *placed = self.place(provider, zone, records).await?;
        self.note(cert, placed)?;
        if let Some(shared) = &self.shared {
            shared.note(cert, placed).await?;
        }
        let started = std::time::Instant::now();
        for (pname, zone, records) in &placed.parts {
            let provider = self.provider(pname)?;
            tokio::select! {
                r = provider.present(zone, records) => r?,
                _ = cancel.cancelled() => return Err(DnsError::Cancelled),
            }
            for _ in records {
                crate::metrics::inc("certkeeper_dns_changes_total", &[("provider", pname)]);
            }
            let mut names: Vec<&str> = records.iter().map(|r| r.name.as_str()).collect();
            names.dedup();
            tracing::info!(
                event = "dns.txt.upserted",
                cert,
                provider = provider.kind(),
                names = ?names,
                duration_ms = started.elapsed().as_millis() as u64,
            );
        }
        if self.skip_propagation {
            return Ok(());
        }
        for (pname, zone, records) in &placed.parts {
            let started = std::time::Instant::now();
            let servers = self
                .servers_for(self.provider(pname)?.as_ref(), zone, records)
                .await?;
            propagation::wait_until_visible(&servers, records, self.propagation_timeout, cancel)
                .await?;
            tracing::info!(
                event = "dns.propagated",
                cert,
                servers = ?servers,
                duration_ms = started.elapsed().as_millis() as u64,
            );
        }
        Ok(())
    }

    async fn servers_for(
        &self,
        provider: &dyn DnsProvider,
        zone: &ZoneHint,
        records: &[TxtRecord],
    ) -> Result<Vec<std::net::SocketAddr>, DnsError> {
        if !self.nameservers.is_empty() {
            return Ok(self.nameservers.clone());
        }
        let first = records.first().map(|r| r.name.as_str()).unwrap_or_default();
        let hosts = provider.authoritative_nameservers(zone, first).await?;
        propagation::resolve_servers(&hosts)
            .await
            .map_err(|e| DnsError::Nameservers {
                name: first.to_string(),
                message: e.to_string(),
            })
    }

    /// Removes what `present` placed. Not cancellable: cleanup must finish.
    pub async fn cleanup(&self, cert: &str, placed: &Placement) -> Result<(), DnsError> {
        let result = self.cleanup_parts(cert, placed).await;
        if result.is_ok() {
            if let Some(path) = self.journal_file(cert) {
                let _ = std::fs::remove_file(path);
            }
            if let Some(shared) = &self.shared {
                shared.forget(cert).await;
            }
        }
        result
    }

    async fn cleanup_parts(&self, cert: &str, placed: &Placement) -> Result<(), DnsError> {
        let mut result = Ok(());
        for (pname, zone, records) in &placed.parts {
            let started = std::time::Instant::now();
            let provider = self.provider(pname)?;
            let result_of = provider.cleanup(zone, records).await;
            if result_of.is_ok() {
                for _ in records {
                    crate::metrics::inc("certkeeper_dns_changes_total", &[("provider", pname)]);
                }
            }
            match result_of {
                Ok(()) => tracing::info!(
                    event = "dns.txt.removed",
                    cert,
                    provider = provider.kind(),
                    records = records.len(),
                    duration_ms = started.elapsed().as_millis() as u64,
                ),
                Err(e) => {
                    tracing::error!(event = "dns.cleanup.failed", cert, provider = provider.kind(), error = %e);
                    result = Err(e);
                }
            }
        }
        result
    }
}

/// What `certkeeper dns test` found, step by step, in plain words.
pub struct Preflight {
    pub ok: bool,
    pub steps: Vec<String>,
}

/// Writes a probe TXT value at `_acme-challenge.<domain>`, waits until the
/// nameservers serve it, and removes it again (also after a failure).
pub async fn preflight(
    provider: std::sync::Arc<dyn DnsProvider>,
    settings: &crate::settings::DnsSettings,
    domain: &str,
    zone_id: Option<String>,
) -> Preflight {
    let name = crate::config::domain::challenge_name(domain);
    let record = TxtRecord {
        name: name.clone(),
        value: format!("certkeeper-probe-{:016x}", rand::random::<u64>()),
    };
    let records = std::slice::from_ref(&record);
    let zone = ZoneHint { zone_id };
    let kind = provider.kind();
    let mut steps = Vec::new();
    let started = std::time::Instant::now();
    if let Err(e) = provider.present(&zone, records).await {
        steps.push(format!("FAIL  write {name} TXT through {kind}: {e}"));
        let _ = provider.cleanup(&zone, records).await;
        return Preflight { ok: false, steps };
    }
    steps.push(format!(
        "ok    wrote {name} TXT \"{}\" through {kind} ({} ms)",
        record.value,
        started.elapsed().as_millis()
    ));
    let mut ok = true;
    if settings.propagation == crate::settings::Propagation::Skip {
        steps.push("skip  propagation check (dns.propagation: skip)".into());
    } else {
        let started = std::time::Instant::now();
        match preflight_visible(provider.as_ref(), settings, &zone, records).await {
            Ok(servers) => steps.push(format!(
                "ok    every nameserver serves it: {servers:?} ({} ms)",
                started.elapsed().as_millis()
            )),
            Err(e) => {
                ok = false;
                steps.push(format!("FAIL  nameservers: {e}"));
            }
        }
    }
    match provider.cleanup(&zone, records).await {
        Ok(()) => steps.push(format!("ok    removed the probe value from {name}")),
        Err(e) => {
            ok = false;
            steps.push(format!("FAIL  remove the probe value: {e}"));
        }
    }
    Preflight { ok, steps }
}

async fn preflight_visible(
    provider: &dyn DnsProvider,
    settings: &crate::settings::DnsSettings,
    zone: &ZoneHint,
    records: &[TxtRecord],
) -> Result<Vec<std::net::SocketAddr>, DnsError> {
    let servers: Vec<std::net::SocketAddr> = if settings.nameservers.is_empty() {
        let hosts = provider
            .authoritative_nameservers(zone, &records[0].name)
            .await?;
        propagation::resolve_servers(&hosts)
            .await
            .map_err(|e| DnsError::Nameservers {
                name: records[0].name.clone(),
                message: format!("cannot resolve {hosts:?}: {e}"),
            })?
    } else {
        settings
            .nameservers
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect()
    };
    let cancel = tokio_util::sync::CancellationToken::new();
    propagation::wait_until_visible(&servers, records, settings.propagation_timeout, &cancel)
        .await?;
    Ok(servers)
}

/// The registry: one provider from its settings. A new provider is its
/// module above, its settings arm, and one arm here.
pub async fn build(
    settings: &crate::settings::Settings,
    provider: &crate::settings::DnsProviderSettings,
    base: &aws_config::SdkConfig,
) -> Result<std::sync::Arc<dyn DnsProvider>, DnsError> {
    use crate::settings::DnsProviderSettings;
    Ok(match provider {
        DnsProviderSettings::Route53(r) => {
            let identity = crate::settings::AwsIdentity {
                profile: r.profile.clone(),
                role_arn: r.role_arn.clone(),
                external_id: r.external_id.clone(),
                region: None,
            };
            let sdk = crate::aws::identity(&settings.aws, &identity, base, "certkeeper-dns").await;
            std::sync::Arc::new(route53::Route53::with_options(
                aws_sdk_route53::Client::new(&sdk),
                route53::Route53Options {
                    private_zone: r.private_zone,
                    requests_per_second: r.requests_per_second,
                },
            ))
        }
        DnsProviderSettings::Rfc2136(r) => std::sync::Arc::new(rfc2136::Rfc2136::new(r)?),
    })
}
