//! S3: the live set under `s3://<bucket>/<prefix>/<name>/`.
//!
//! Objects carry their SHA-256 in metadata; an object whose stored hash
//! matches is not uploaded again. The private key is always written with
//! server-side encryption (AES256, or aws:kms with the configured key).

use super::{Outcome, PublishError, Target};
use crate::settings::{S3Settings, Sse};
use crate::store::{META, Meta, PRIVKEY};
use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;

pub struct S3 {
    client: Client,
    settings: S3Settings,
}

impl S3 {
    pub fn new(client: Client, settings: S3Settings) -> Self {
        Self { client, settings }
    }

    /// Object key of one file of a certificate.
    pub fn key(&self, cert: &str, file: &str) -> String {
        let prefix = self.settings.prefix.trim_matches('/');
        if prefix.is_empty() {
            format!("{cert}/{file}")
        } else {
            format!("{prefix}/{cert}/{file}")
        }
    }

    fn error<E: ProvideErrorMetadata + std::error::Error + 'static>(
        &self,
        key: &str,
        e: E,
    ) -> PublishError {
        let message = match (e.code(), e.message()) {
            (Some(code), Some(msg)) => format!("{code}: {msg}"),
            (Some(code), None) => code.to_string(),
            _ => DisplayErrorContext(&e).to_string(),
        };
        PublishError {
            target: "s3".into(),
            object: format!("s3://{}/{key}", self.settings.bucket),
            message,
        }
    }

    /// The sha256 metadata of an existing object, `None` when absent.
    async fn stored_hash(&self, key: &str) -> Result<Option<String>, PublishError> {
        match self
            .client
            .head_object()
            .bucket(&self.settings.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(head) => Ok(head.metadata().and_then(|m| m.get("sha256")).cloned()),
            Err(e) => {
                // Without s3:ListBucket, S3 answers 403 instead of 404 for a
                // missing object; treat both as "not there" and let PutObject
                // give the real verdict on permissions.
                let not_found = e.as_service_error().is_some_and(|s| s.is_not_found())
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 403);
                if not_found {
                    Ok(None)
                } else {
                    Err(self.error(key, e))
                }
            }
        }
    }
}

#[async_trait]
impl Target for S3 {
    fn name(&self) -> &str {
        "s3"
    }

    async fn publish(
        &self,
        meta: &Meta,
        files: &[(&'static str, Vec<u8>)],
    ) -> Result<Outcome, PublishError> {
        let mut outcome = Outcome::default();
        for (file, bytes) in files {
            let key = self.key(&meta.name, file);
            let hash = crate::x509::sha256_hex(bytes);
            if self.stored_hash(&key).await?.as_deref() == Some(hash.as_str()) {
                outcome.unchanged += 1;
                continue;
            }
            let mut put = self
                .client
                .put_object()
                .bucket(&self.settings.bucket)
                .key(&key)
                .body(ByteStream::from(bytes.clone()))
                .content_type(if *file == META {
                    "application/json"
                } else {
                    "application/x-pem-file"
                })
                .metadata("sha256", &hash)
                .metadata("serial", &meta.serial)
                .metadata(
                    "not-after",
                    meta.not_after
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default(),
                )
                .metadata("config-commit", &meta.config_commit);
            if *file == PRIVKEY {
                put = match self.settings.sse {
                    Sse::Aes256 => put.server_side_encryption(ServerSideEncryption::Aes256),
                    Sse::Kms => put
                        .server_side_encryption(ServerSideEncryption::AwsKms)
                        .set_ssekms_key_id(self.settings.kms_key_id.clone()),
                };
            }
            put.send().await.map_err(|e| self.error(&key, e))?;
            tracing::debug!(event = "publish.s3.object", cert = %meta.name, key = %key);
            outcome.uploaded += 1;
        }
        Ok(outcome)
    }
}
