//! The services a run uses, built once from the settings through the
//! registries (`dns::build`, `publish::build`), and the named secrets.

use super::*;

/// Everything a run needs from outside, built once from the settings.
pub struct Services {
    /// DNS providers by the name certificates use.
    pub dns: BTreeMap<String, Arc<dyn DnsProvider>>,
    /// Publish targets by the name certificates use.
    pub targets: BTreeMap<String, Arc<dyn Target>>,
    pub secrets: Arc<Secrets>,
    /// Leases and bootstrap through the bucket, when running as replicas.
    pub coordinator: Option<Arc<crate::replica::Coordinator>>,
    /// Rollouts by certificate name (`rollout::build`).
    pub rollouts: BTreeMap<String, Arc<crate::rollout::Rollout>>,
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
        // Validated with the settings; the environment's otherwise.
        crate::proxy::install(
            settings
                .proxy()
                .unwrap_or_else(|_| crate::proxy::Proxy::from_env()),
        );
        let base = aws::base(&settings.aws, None).await;
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
            let sdk = aws::identity(&settings.aws, &s3.aws, &base, "certkeeper-s3").await;
            coordinator = Some(Arc::new(crate::replica::Coordinator::new(
                aws::s3_client(&settings.aws, &sdk),
                s3,
                replicas,
            )));
        }
        let rollouts = crate::rollout::build(settings, &base).await;
        Ok(Services {
            dns,
            targets,
            secrets,
            coordinator,
            rollouts,
        })
    }

    /// Route53 API calls of every provider, for the run summary.
    pub(super) fn dns_calls(&self) -> u64 {
        self.dns.values().map(|p| p.api_calls()).sum()
    }
}
