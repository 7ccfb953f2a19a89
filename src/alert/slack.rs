//! Slack incoming webhooks: `{"text": "..."}`.

use super::http::{Poster, post_json};
use super::{Alert, Channel, ChannelError};
use crate::secret::Secret;
use async_trait::async_trait;

pub struct Slack {
    name: String,
    url: Secret,
    client: Poster,
}

impl Slack {
    pub fn new(name: &str, url: Secret, client: Poster) -> Self {
        Self {
            name: name.to_string(),
            url,
            client,
        }
    }
}

#[async_trait]
impl Channel for Slack {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, alert: &Alert) -> Result<(), ChannelError> {
        let body = serde_json::json!({ "text": alert.message }).to_string();
        post_json(&self.client, self.url.expose(), body, &[])
            .await
            .map_err(|e| ChannelError {
                channel: self.name.clone(),
                cause: e.into(),
            })
    }
}
