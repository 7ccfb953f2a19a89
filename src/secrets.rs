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
        Secrets::new(settings, &crate::aws::base(&settings.aws, None).await)
    }

    /// The settings' secrets, read with the identity of `sdk` (SSM).
    pub fn new(settings: &Settings, sdk: &aws_config::SdkConfig) -> Secrets {
        Secrets {
            sources: settings.secrets.clone(),
            ssm: aws_sdk_ssm::Client::new(sdk),
        }
    }

    pub async fn get(&self, name: &str) -> Result<Secret, SecretError> {
        let name_ = || name.to_string();
        let source = self
            .sources
            .get(name)
            .ok_or_else(|| SecretError::Unknown(name_()))?;
        let value = if let Some(path) = &source.file {
            std::fs::read_to_string(path)
                .map_err(|source| SecretError::File {
                    name: name_(),
                    path: path.clone(),
                    source,
                })?
                .trim_end_matches(['\n', '\r'])
                .to_string()
        } else if let Some(var) = &source.env {
            std::env::var(var).map_err(|_| SecretError::Env {
                name: name_(),
                var: var.clone(),
            })?
        } else if let Some(param) = &source.ssm {
            let out = self
                .ssm
                .get_parameter()
                .name(param)
                .with_decryption(true)
                .send()
                .await
                .map_err(|e| SecretError::Ssm {
                    name: name_(),
                    param: param.clone(),
                    message: crate::aws::message(&e),
                })?;
            out.parameter()
                .and_then(|p| p.value())
                .unwrap_or_default()
                .to_string()
        } else {
            return Err(SecretError::NoSource(name_()));
        };
        if value.is_empty() {
            return Err(SecretError::Empty(name_()));
        }
        Ok(Secret::new(value))
    }
}

/// A named secret that could not be read. Never carries the value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("no secret {0:?} in the settings")]
    Unknown(String),
    #[error("secret {name:?}: reading {}: {source}", path.display())]
    File {
        name: String,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("secret {name:?}: environment variable {var} is not set")]
    Env { name: String, var: String },
    #[error("secret {name:?}: SSM {param}: {message}")]
    Ssm {
        name: String,
        param: String,
        message: String,
    },
    #[error("secret {0:?} has no source")]
    NoSource(String),
    #[error("secret {0:?} is empty")]
    Empty(String),
}
