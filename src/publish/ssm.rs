//! SSM Parameter Store: SecureString parameters, one per file and
//! environment (`/registrations/{env}/user-input/mesh/mailbox-client-cert`
//! for dev and prod in one go).
//!
//! A parameter is only written when its value changed (each write is a new
//! parameter version and shows up in audits), read back with decryption to
//! compare. Values over 4 KB need the Advanced tier; `intelligent-tiering`
//! picks it only for those.

use super::{Item, Outcome, PublishError, Target};
use crate::aws::message as aws_message;
use crate::settings::ssm_file;
use crate::settings::{SsmSettings, SsmTier};
use crate::store::P12;
use async_trait::async_trait;
use aws_sdk_ssm::Client;
use aws_sdk_ssm::types::{ParameterTier, ParameterType};
use base64::Engine;

/// The Standard tier's value limit.
const STANDARD_LIMIT: usize = 4096;

pub struct Ssm {
    name: String,
    client: Client,
    settings: SsmSettings,
}

impl Ssm {
    pub fn new(name: &str, client: Client, settings: SsmSettings) -> Self {
        Self {
            name: name.to_string(),
            client,
            settings,
        }
    }

    fn error(&self, object: &str, message: impl std::fmt::Display) -> PublishError {
        PublishError {
            target: self.name.clone(),
            object: format!("ssm:{object}"),
            message: message.to_string(),
        }
    }

    /// The value and type stored, `None` when the parameter does not exist.
    async fn current(
        &self,
        name: &str,
    ) -> Result<Option<(String, Option<ParameterType>)>, PublishError> {
        match self
            .client
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await
        {
            Ok(out) => Ok(out.parameter().map(|p| {
                (
                    p.value().unwrap_or_default().to_string(),
                    p.r#type().cloned(),
                )
            })),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_parameter_not_found()) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.error(name, aws_message(&e))),
        }
    }

    fn tier(&self, value: &str) -> ParameterTier {
        match self.settings.tier {
            SsmTier::Standard => ParameterTier::Standard,
            SsmTier::Advanced => ParameterTier::Advanced,
            SsmTier::IntelligentTiering if value.len() > STANDARD_LIMIT => ParameterTier::Advanced,
            SsmTier::IntelligentTiering => ParameterTier::Standard,
        }
    }
}

#[async_trait]
impl Target for Ssm {
    fn name(&self) -> &str {
        &self.name
    }

    async fn publish(&self, item: &Item<'_>) -> Result<Outcome, PublishError> {
        let mut outcome = Outcome::default();
        let environments: Vec<&str> = if self.settings.environments.is_empty() {
            vec![""]
        } else {
            self.settings
                .environments
                .iter()
                .map(String::as_str)
                .collect()
        };
        for env in environments {
            for (key, template) in &self.settings.parameters {
                let file = ssm_file(key).expect("checked by the settings");
                let name = item
                    .render(template, &[("env", env)])
                    .map_err(|m| self.error(template, m))?;
                let bytes = item.file(file).ok_or_else(|| {
                    self.error(
                        &name,
                        format!("the live set has no {file} (enable it on the certificate)"),
                    )
                })?;
                // Parameters hold text: PKCS#12 goes in base64.
                let value = if file == P12 {
                    base64::engine::general_purpose::STANDARD.encode(bytes)
                } else {
                    String::from_utf8_lossy(bytes).into_owned()
                };
                if let Some((current, kind)) = self.current(&name).await?
                    && current == value
                    && kind == Some(ParameterType::SecureString)
                {
                    outcome.unchanged += 1;
                    continue;
                }
                let tier = self.tier(&value);
                self.client
                    .put_parameter()
                    .name(&name)
                    .value(value)
                    .r#type(ParameterType::SecureString)
                    .set_key_id(self.settings.kms_key_id.clone())
                    .overwrite(true)
                    .tier(tier)
                    .send()
                    .await
                    .map_err(|e| self.error(&name, aws_message(&e)))?;
                tracing::info!(event = "publish.ssm.parameter", target = %self.name, cert = %item.meta.name, parameter = %name);
                outcome.uploaded += 1;
            }
        }
        Ok(outcome)
    }
}
