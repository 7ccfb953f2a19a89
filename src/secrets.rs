//! The settings' named secrets (`secrets:`), resolved when a certificate
//! or channel needs one: from a file, an environment variable or SSM
//! Parameter Store. Values are `Secret`s: they never print.

use crate::secret::Secret;
use crate::settings::Settings;
use std::collections::BTreeMap;

/// Resolves the settings' named secrets when a certificate needs one.
pub struct Secrets {
    sources: BTreeMap<String, crate::settings::SecretSource>,
    ssm: aws_sdk_ssm::Client,
}

impl Secrets {
    /// The settings' secrets, read with the default AWS identity (SSM).
    pub async fn from_settings(settings: &Settings) -> Secrets {
        Secrets::new(settings, &crate::aws::base(settings, None).await)
    }

    /// The settings' secrets, read with the identity of `sdk` (SSM).
    pub fn new(settings: &Settings, sdk: &aws_config::SdkConfig) -> Secrets {
        Secrets {
            sources: settings.secrets.clone(),
            ssm: aws_sdk_ssm::Client::new(sdk),
        }
    }

    pub async fn get(&self, name: &str) -> Result<Secret, String> {
        let source = self
            .sources
            .get(name)
            .ok_or_else(|| format!("no secret {name:?} in the settings"))?;
        let value = if let Some(path) = &source.file {
            std::fs::read_to_string(path)
                .map_err(|e| format!("secret {name:?}: reading {}: {e}", path.display()))?
                .trim_end_matches(['\n', '\r'])
                .to_string()
        } else if let Some(var) = &source.env {
            std::env::var(var)
                .map_err(|_| format!("secret {name:?}: environment variable {var} is not set"))?
        } else if let Some(param) = &source.ssm {
            let out = self
                .ssm
                .get_parameter()
                .name(param)
                .with_decryption(true)
                .send()
                .await
                .map_err(|e| {
                    format!("secret {name:?}: SSM {param}: {}", crate::aws::message(&e))
                })?;
            out.parameter()
                .and_then(|p| p.value())
                .unwrap_or_default()
                .to_string()
        } else {
            return Err(format!("secret {name:?} has no source"));
        };
        if value.is_empty() {
            return Err(format!("secret {name:?} is empty"));
        }
        Ok(Secret::new(value))
    }
}
