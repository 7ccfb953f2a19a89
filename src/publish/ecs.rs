//! ECS: forces a new deployment of services whose tasks read the
//! certificate only at start-up (the forwarder that never reloads).
//!
//! Idempotent without local state: a service whose primary deployment
//! started after the certificate was issued already runs with it, so it is
//! not restarted again.

use super::{Item, Outcome, PublishError, Target};
use crate::aws::message as aws_message;
use crate::settings::EcsSettings;
use async_trait::async_trait;
use aws_sdk_ecs::Client;

pub struct Ecs {
    name: String,
    client: Client,
    settings: EcsSettings,
}

impl Ecs {
    pub fn new(name: &str, client: Client, settings: EcsSettings) -> Self {
        Self {
            name: name.to_string(),
            client,
            settings,
        }
    }

    fn error(&self, service: &str, message: impl std::fmt::Display) -> PublishError {
        PublishError {
            target: self.name.clone(),
            object: format!("ecs:{}/{service}", self.settings.cluster),
            message: message.to_string(),
        }
    }

    /// When the service's primary deployment started, in Unix milliseconds.
    async fn primary_started(&self, service: &str) -> Result<Option<i64>, PublishError> {
        let out = self
            .client
            .describe_services()
            .cluster(&self.settings.cluster)
            .services(service)
            .send()
            .await
            .map_err(|e| self.error(service, aws_message(&e)))?;
        if let Some(failure) = out.failures().first() {
            return Err(self.error(
                service,
                failure.reason().unwrap_or("service not found").to_string(),
            ));
        }
        let svc = out
            .services()
            .first()
            .ok_or_else(|| self.error(service, "service not found"))?;
        Ok(svc
            .deployments()
            .iter()
            .find(|d| d.status() == Some("PRIMARY"))
            .and_then(|d| d.created_at())
            .map(|t| t.to_millis().unwrap_or(i64::MIN)))
    }
}

#[async_trait]
impl Target for Ecs {
    fn name(&self) -> &str {
        &self.name
    }

    async fn publish(&self, item: &Item<'_>) -> Result<Outcome, PublishError> {
        let issued = (item.meta.issued_at.unix_timestamp_nanos() / 1_000_000) as i64;
        let mut outcome = Outcome::default();
        for service in &self.settings.services {
            if self
                .primary_started(service)
                .await?
                .is_some_and(|t| t >= issued)
            {
                outcome.unchanged += 1;
                continue;
            }
            self.client
                .update_service()
                .cluster(&self.settings.cluster)
                .service(service)
                .force_new_deployment(true)
                .send()
                .await
                .map_err(|e| self.error(service, aws_message(&e)))?;
            tracing::info!(event = "publish.ecs.redeployed", target = %self.name, cert = %item.meta.name, cluster = %self.settings.cluster, service = %service);
            outcome.uploaded += 1;
        }
        Ok(outcome)
    }
}
