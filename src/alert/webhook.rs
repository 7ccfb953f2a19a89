//! A generic JSON webhook. With a key, the body is signed:
//! `X-Certkeeper-Signature: sha256=<hex HMAC-SHA256 of the body>`, so the
//! receiver can tell the alert came from us.

use super::http::{Poster, post_json};
use super::{Alert, Channel, ChannelError};
use crate::secret::Secret;
use async_trait::async_trait;
use hmac::{KeyInit, Mac};

pub struct Webhook {
    name: String,
    url: Secret,
    key: Option<Secret>,
    client: Poster,
}

impl Webhook {
    pub fn new(name: &str, url: Secret, key: Option<Secret>, client: Poster) -> Self {
        Self {
            name: name.to_string(),
            url,
            key,
            client,
        }
    }
}

/// `sha256=<hex>` of `body` under `key`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2_11::Sha256>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    format!(
        "sha256={}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

#[async_trait]
impl Channel for Webhook {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, alert: &Alert) -> Result<(), ChannelError> {
        let body = serde_json::to_string(alert).expect("alert serializes");
        let mut headers = Vec::new();
        if let Some(key) = &self.key {
            headers.push((
                "x-certkeeper-signature",
                signature(key.expose().as_bytes(), body.as_bytes()),
            ));
        }
        post_json(&self.client, self.url.expose(), body, &headers)
            .await
            .map_err(|e| ChannelError {
                channel: self.name.clone(),
                cause: e.into(),
            })
    }
}
