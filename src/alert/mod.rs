//! Expiry alerts: who is told, when, and what was already said.
//!
//! At most one alert per certificate per day; what was sent is remembered
//! in `<state>/alerts.json`, so a restart neither repeats nor loses an
//! alert. Channel URLs and keys are secrets and never logged.

pub mod email;
pub mod http;
pub mod slack;
pub mod webhook;

use crate::secrets::{SecretError, Secrets};
use crate::settings::{ChannelSettings, Settings};
use crate::store::Store;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One message about one certificate.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub name: String,
    /// `warning`, `critical`, `expired`, `failing` or `recovered`.
    pub level: String,
    pub message: String,
    pub days_left: Option<i64>,
    pub not_after: Option<String>,
    pub source: String,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
#[error("alert channel {channel}: {cause}")]
pub struct ChannelError {
    pub channel: String,
    #[source]
    pub cause: Cause,
}

#[derive(Debug, thiserror::Error)]
pub enum Cause {
    #[error(transparent)]
    Smtp(#[from] email::SmtpError),
    #[error(transparent)]
    Post(#[from] http::PostError),
}

#[async_trait]
pub trait Channel: Send + Sync {
    fn name(&self) -> &str;
    async fn send(&self, alert: &Alert) -> Result<(), ChannelError>;
    /// The same channel sending to `to` instead; `None` where a channel has
    /// no recipients of its own (chat and webhooks).
    fn readdressed(&self, _to: &[String]) -> Option<Arc<dyn Channel>> {
        None
    }
}

/// The level of a reminder mailed to a certificate's `contact`.
pub const REMINDER: &str = "reminder";

/// What was last said about a certificate.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Sent {
    /// UTC day, `YYYY-MM-DD`.
    pub day: String,
    pub level: String,
}

const STATE: &str = "alerts.json";

pub fn load_sent(store: &Store) -> BTreeMap<String, Sent> {
    store
        .read_state(STATE)
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

pub fn save_sent(store: &Store, sent: &BTreeMap<String, Sent>) {
    let json = serde_json::to_vec_pretty(sent).expect("alerts serialize");
    if let Err(e) = store.write_state(STATE, &json) {
        tracing::error!(event = "alert.state.failed", error = %e);
    }
}

pub fn today() -> String {
    let d = time::OffsetDateTime::now_utc().date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// Sends `alert` on every channel; `true` when at least one took it (the
/// others are logged and the alert counts as sent, so one broken channel
/// does not make the others repeat every run).
pub async fn dispatch(channels: &[std::sync::Arc<dyn Channel>], alert: &Alert) -> bool {
    let mut any = false;
    for channel in channels {
        match channel.send(alert).await {
            Ok(()) => {
                any = true;
                tracing::info!(event = "alert.sent", channel = channel.name(), cert = %alert.name, level = %alert.level);
            }
            Err(e) => {
                tracing::error!(event = "alert.failed", channel = channel.name(), cert = %alert.name, error = %e);
            }
        }
    }
    any
}

/// The registry: the channels `names` lists, with their secrets resolved;
/// beside them, why each one that cannot be used cannot (an unreadable
/// secret). Names missing from `channels:` were refused by the settings'
/// validation.
pub async fn build(
    settings: &Settings,
    names: &[String],
    secrets: &Secrets,
) -> (Vec<Arc<dyn Channel>>, Vec<String>) {
    let mut out: Vec<Arc<dyn Channel>> = Vec::new();
    let mut errors = Vec::new();
    // The settings' proxy (validated with them), else the environment's.
    let proxy = settings
        .proxy()
        .unwrap_or_else(|_| crate::proxy::Proxy::from_env());
    let client = match http::poster(&proxy) {
        Ok(c) => c,
        Err(e) => return (out, vec![e.to_string()]),
    };
    for name in names {
        let Some(channel) = settings.channels.get(name) else {
            continue;
        };
        match build_one(settings, name, channel, secrets, &client).await {
            Ok(c) => out.push(c),
            Err(e) => errors.push(format!("channel {name}: {e}")),
        }
    }
    (out, errors)
}

async fn optional_secret(
    secrets: &Secrets,
    name: Option<&String>,
) -> Result<Option<crate::secret::Secret>, SecretError> {
    match name {
        Some(n) => secrets.get(n).await.map(Some),
        None => Ok(None),
    }
}

async fn build_one(
    settings: &Settings,
    name: &str,
    channel: &ChannelSettings,
    secrets: &Secrets,
    client: &http::Poster,
) -> Result<Arc<dyn Channel>, SecretError> {
    Ok(match channel {
        ChannelSettings::Slack { webhook_url } => Arc::new(slack::Slack::new(
            name,
            secrets.get(webhook_url).await?,
            client.clone(),
        )),
        ChannelSettings::Webhook { url, hmac_secret } => Arc::new(webhook::Webhook::new(
            name,
            secrets.get(url).await?,
            optional_secret(secrets, hmac_secret.as_ref()).await?,
            client.clone(),
        )),
        ChannelSettings::Email {
            server,
            from,
            to,
            username,
            password,
            starttls,
            root_ca_file,
        } => Arc::new(email::Email {
            name: name.to_string(),
            server: server.clone(),
            from: from.clone(),
            to: to.clone(),
            username: username.clone(),
            password: optional_secret(secrets, password.as_ref()).await?,
            starttls: *starttls,
            root_ca_file: root_ca_file.as_ref().map(|p| {
                settings
                    .source
                    .parent()
                    .unwrap_or(std::path::Path::new("."))
                    .join(p)
            }),
        }),
    })
}
