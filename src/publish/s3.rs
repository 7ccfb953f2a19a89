//! S3: the live set under `s3://<bucket>/<key_template>`, plus an
//! `index.json` manifest of every certificate.
//!
//! Objects carry their SHA-256 in metadata; an object whose stored hash
//! matches is not uploaded again. Every upload is checked afterwards with a
//! HEAD (S3's own SHA-256 checksum and length), so a truncated or altered
//! object is reported, not trusted. The private key and PKCS#12 are always
//! written with server-side encryption (AES256, or aws:kms with the
//! configured key).

use super::{Item, Outcome, PublishError, Published, Target};
use crate::aws::message as aws_message;
use crate::settings::{S3Settings, Sse};
use crate::store::{META, P12, PRIVKEY, Store};
use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, ServerSideEncryption};
use base64::Engine;
use serde::Serialize;

pub struct S3 {
    name: String,
    client: Client,
    settings: S3Settings,
}

/// One entry of `index.json`.
#[derive(Serialize)]
struct ManifestEntry<'a> {
    name: &'a str,
    domains: &'a [String],
    serial: &'a str,
    #[serde(with = "time::serde::rfc3339")]
    not_after: time::OffsetDateTime,
    sha256: &'a str,
    config_commit: &'a str,
    version: u32,
    /// Object keys of the set.
    files: Vec<String>,
}

impl S3 {
    pub fn new(name: &str, client: Client, settings: S3Settings) -> Self {
        Self {
            name: name.to_string(),
            client,
            settings,
        }
    }

    fn prefix(&self) -> &str {
        self.settings.prefix.trim_matches('/')
    }

    /// Object key of one file of a certificate.
    pub fn key(
        &self,
        item: &Item<'_>,
        file: &str,
    ) -> Result<String, crate::template::TemplateError> {
        let key = item.render(
            &self.settings.key_template,
            &[("prefix", self.prefix()), ("file", file)],
        )?;
        Ok(key.trim_start_matches('/').replace("//", "/"))
    }

    fn manifest_key(&self) -> String {
        if self.prefix().is_empty() {
            "index.json".into()
        } else {
            format!("{}/index.json", self.prefix())
        }
    }

    fn error(&self, key: &str, message: impl std::fmt::Display) -> PublishError {
        PublishError {
            target: self.name.clone(),
            object: format!("s3://{}/{key}", self.settings.bucket),
            message: message.to_string(),
        }
    }

    /// What an existing object carries, `None` when absent.
    async fn stored(&self, key: &str) -> Result<Option<Stored>, PublishError> {
        match self
            .client
            .head_object()
            .bucket(&self.settings.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(head) => {
                let meta = head.metadata();
                Ok(Some(Stored {
                    sha256: meta.and_then(|m| m.get("sha256")).cloned(),
                    generation: meta
                        .and_then(|m| m.get("generation"))
                        .and_then(|g| g.parse().ok()),
                    etag: head.e_tag().map(str::to_string),
                }))
            }
            Err(e) => {
                // Without s3:ListBucket, S3 answers 403 instead of 404 for a
                // missing object; treat both as "not there" and let PutObject
                // give the real verdict on permissions.
                let not_found = e.as_service_error().is_some_and(|s| s.is_not_found())
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 403);
                if not_found {
                    Ok(None)
                } else {
                    Err(self.error(key, aws_message(&e)))
                }
            }
        }
    }

    /// Uploads `bytes` unless the object already holds them, then checks
    /// what S3 stored. `Ok(true)` when uploaded.
    ///
    /// With a lease `generation` (replicas), the write is a compare and
    /// swap: refused when the object was written under a newer generation,
    /// and conditional on the ETag just seen, so a replica that lost its
    /// lease never replaces what the new holder published.
    ///
    /// `create_first`: try a create (`If-None-Match: *`) before looking.
    /// It succeeds only when there is no object at all, so nothing is
    /// replaced and no newer generation can be there; when an object is
    /// there (412) it is cleared, and the usual look-then-write follows.
    /// That saves the HEAD of every object a first publish creates.
    #[allow(clippy::too_many_arguments)]
    async fn put(
        &self,
        key: &str,
        bytes: &[u8],
        content_type: &str,
        encrypt: bool,
        metadata: &[(&str, String)],
        generation: Option<u64>,
        create_first: &mut bool,
    ) -> Result<(bool, Option<String>), PublishError> {
        let hash = crate::x509::sha256_hex(bytes);
        if *create_first {
            let put = self.put_request(
                key,
                bytes,
                content_type,
                encrypt,
                metadata,
                &hash,
                generation,
            );
            match put.if_none_match("*").send().await {
                Ok(_) => return Ok((true, self.check_stored(key, bytes).await?)),
                Err(e)
                    if e.raw_response()
                        .is_some_and(|r| matches!(r.status().as_u16(), 412 | 409)) =>
                {
                    // Objects are there after all (another state dir, an
                    // interrupted publish): look before every write.
                    *create_first = false;
                }
                Err(e) => return Err(self.error(key, aws_message(&e))),
            }
        }
        let stored = self.stored(key).await?;
        if let (Some(ours), Some(theirs)) = (generation, stored.as_ref().and_then(|s| s.generation))
            && theirs > ours
        {
            return Err(self.error(
                key,
                format!(
                    "fenced: written under lease generation {theirs}, ours is {ours}; not replaced"
                ),
            ));
        }
        if stored.as_ref().and_then(|s| s.sha256.as_deref()) == Some(hash.as_str()) {
            return Ok((false, stored.and_then(|s| s.etag)));
        }
        let mut put = self.put_request(
            key,
            bytes,
            content_type,
            encrypt,
            metadata,
            &hash,
            generation,
        );
        if generation.is_some() {
            put = match stored.as_ref().and_then(|s| s.etag.as_deref()) {
                Some(etag) => put.if_match(etag),
                None => put.if_none_match("*"),
            };
        }
        put.send().await.map_err(|e| {
            let status = e.raw_response().map(|r| r.status().as_u16());
            if matches!(status, Some(412 | 409)) {
                self.error(
                    key,
                    "fenced: another replica wrote it meanwhile; not replaced",
                )
            } else {
                self.error(key, aws_message(&e))
            }
        })?;
        Ok((true, self.check_stored(key, bytes).await?))
    }

    /// The PutObject of one file, without its condition.
    #[allow(clippy::too_many_arguments)]
    fn put_request(
        &self,
        key: &str,
        bytes: &[u8],
        content_type: &str,
        encrypt: bool,
        metadata: &[(&str, String)],
        hash: &str,
        generation: Option<u64>,
    ) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder {
        let mut put = self
            .client
            .put_object()
            .bucket(&self.settings.bucket)
            .key(key)
            .body(ByteStream::from(bytes.to_vec()))
            .content_type(content_type)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .metadata("sha256", hash);
        for (k, v) in metadata {
            put = put.metadata(*k, v);
        }
        if let Some(g) = generation {
            put = put.metadata("generation", g.to_string());
        }
        if encrypt {
            put = match self.settings.sse {
                Sse::Aes256 => put.server_side_encryption(ServerSideEncryption::Aes256),
                Sse::Kms => put
                    .server_side_encryption(ServerSideEncryption::AwsKms)
                    .set_ssekms_key_id(self.settings.kms_key_id.clone()),
            };
        }
        put
    }

    /// HEAD after PUT: length and S3's SHA-256 must be ours. Returns the
    /// stored object's ETag.
    async fn check_stored(&self, key: &str, bytes: &[u8]) -> Result<Option<String>, PublishError> {
        let head = self
            .client
            .head_object()
            .bucket(&self.settings.bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .map_err(|e| self.error(key, format!("checking the upload: {}", aws_message(&e))))?;
        let want = base64::engine::general_purpose::STANDARD.encode(sha2_digest(bytes));
        if head.content_length() != Some(bytes.len() as i64) {
            return Err(self.error(
                key,
                format!(
                    "stored object has {} bytes, uploaded {}",
                    head.content_length().unwrap_or(-1),
                    bytes.len()
                ),
            ));
        }
        match head.checksum_sha256() {
            // A full-object checksum; multipart ones end in `-N`.
            Some(got) if !got.contains('-') && got != want => Err(self.error(
                key,
                format!("stored checksum {got} differs from the uploaded {want}"),
            )),
            _ => Ok(head.e_tag().map(str::to_string)),
        }
    }
}

/// What HEAD says of an object.
struct Stored {
    sha256: Option<String>,
    generation: Option<u64>,
    etag: Option<String>,
}

fn sha2_digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

#[async_trait]
impl Target for S3 {
    fn name(&self) -> &str {
        &self.name
    }

    async fn publish(&self, item: &Item<'_>) -> Result<Outcome, PublishError> {
        let meta = item.meta;
        let metadata = [
            ("serial", meta.serial.clone()),
            (
                "not-after",
                meta.not_after
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
            ),
            ("config-commit", meta.config_commit.clone()),
            ("cert-sha256", meta.sha256.replace(':', "").to_lowercase()),
        ];
        let mut outcome = Outcome::default();
        let mut create_first = !super::ever_published(item.store, &meta.name, &self.name);
        for (file, bytes) in item.files {
            let key = self
                .key(item, file)
                .map_err(|m| self.error(&self.settings.key_template, m))?;
            let content_type = match *file {
                META => "application/json",
                P12 => "application/x-pkcs12",
                crate::seal::BUNDLE => "application/x-tar",
                f if f.ends_with(".txt") => "text/plain",
                _ => "application/x-pem-file",
            };
            let encrypt = *file == PRIVKEY || *file == P12 || *file == crate::seal::BUNDLE;
            let (uploaded, etag) = self
                .put(
                    &key,
                    bytes,
                    content_type,
                    encrypt,
                    &metadata,
                    meta.generation,
                    &mut create_first,
                )
                .await?;
            // Replicas: the next run's listing shows this ETag, and needs
            // no GET to know this state dir already holds that set.
            if let (META, Some(_), Some(etag)) = (*file, meta.generation, &etag) {
                crate::replica::memo::remember_etag(
                    item.store,
                    &meta.name,
                    &format!("s3://{}/{key}", self.settings.bucket),
                    etag,
                    &meta.serial,
                );
            }
            if uploaded {
                tracing::debug!(event = "publish.s3.object", target = %self.name, cert = %meta.name, key = %key);
                outcome.uploaded += 1;
            } else {
                outcome.unchanged += 1;
            }
        }
        Ok(outcome)
    }

    /// Writes `index.json` when it changed.
    async fn finish_run(&self, certs: &[Published], store: &Store) -> Result<(), PublishError> {
        if !self.settings.manifest {
            return Ok(());
        }
        let mut entries = Vec::new();
        for (meta, vars) in certs {
            let files = store
                .live_files(&meta.name)
                .map_err(|e| self.error(&self.manifest_key(), e.to_string()))?;
            let item = Item::new(meta, &files, vars, store);
            let keys = files
                .iter()
                .map(|(f, _)| self.key(&item, f))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|m| self.error(&self.manifest_key(), m))?;
            entries.push((meta, keys));
        }
        let manifest: Vec<ManifestEntry> = entries
            .into_iter()
            .map(|(m, files)| ManifestEntry {
                name: &m.name,
                domains: &m.domains,
                serial: &m.serial,
                not_after: m.not_after,
                sha256: &m.sha256,
                config_commit: &m.config_commit,
                version: m.version,
                files,
            })
            .collect();
        let json = serde_json::to_vec_pretty(&serde_json::json!({ "certificates": manifest }))
            .expect("manifest serializes");
        let key = self.manifest_key();
        if self
            .put(
                &key,
                &json,
                "application/json",
                false,
                &[],
                None,
                &mut false,
            )
            .await?
            .0
        {
            tracing::info!(event = "publish.s3.manifest", target = %self.name, key = %key, certificates = certs.len());
        }
        Ok(())
    }
}
