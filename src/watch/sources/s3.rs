//! Every certificate object under an S3 prefix. What was read is cached by
//! ETag in the state dir, so an unchanged object is not downloaded again.

use super::read::{decode, is_cert_name, name_for, watched};
use super::{Context, Found, Problem, Source, SourceError};
use crate::settings::{Settings, WatchS3};
use crate::watch::Watched;
use std::collections::BTreeMap;

pub(super) struct S3<'a>(pub &'a WatchS3);

/// What was read from an S3 object, by ETag.
#[derive(serde::Serialize, serde::Deserialize, Clone)]
struct Cached {
    etag: String,
    #[serde(with = "time::serde::rfc3339")]
    not_after: time::OffsetDateTime,
    serial: String,
    subject: String,
}

const CACHE: &str = "watch-cache.json";

/// Objects downloaded at a time.
const DOWNLOADS: usize = 16;

impl S3<'_> {
    /// Every certificate object's key and ETag.
    async fn keys(
        &self,
        client: &aws_sdk_s3::Client,
    ) -> Result<Vec<(String, String)>, SourceError> {
        let s = self.0;
        let mut pages = client
            .list_objects_v2()
            .bucket(&s.bucket)
            .prefix(&s.prefix)
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                SourceError::at(
                    &format!("s3://{}/{}", s.bucket, s.prefix),
                    Problem::Aws(crate::aws::message(&e)),
                )
            })?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| {
                        Some((
                            o.key()?.to_string(),
                            o.e_tag().unwrap_or_default().to_string(),
                        ))
                    })
                    .filter(|(k, _)| is_cert_name(k)),
            );
        }
        Ok(keys)
    }
}

#[async_trait::async_trait]
impl Source for S3<'_> {
    async fn scan(&self, settings: &Settings, ctx: &Context<'_>) -> Result<Found, SourceError> {
        let s = self.0;
        let password = super::password(ctx, &s.pkcs12_password).await?;
        let mut cache: BTreeMap<String, Cached> = ctx
            .store
            .and_then(|s| s.read_state(CACHE).ok().flatten())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let base = crate::aws::base(&settings.aws, None).await;
        let sdk = crate::aws::identity(&settings.aws, &s.aws, &base, "certkeeper-watch").await;
        let client = crate::aws::s3_client(&settings.aws, &sdk);
        let mut found = Found::default();
        // Unchanged objects (same ETag) come from the cache.
        let mut fetch = Vec::new();
        for (key, etag) in self.keys(&client).await? {
            let shown = format!("s3://{}/{key}", s.bucket);
            match cache.get(&shown) {
                Some(c) if !etag.is_empty() && c.etag == etag => found.certs.push(Watched {
                    name: name_for(&s.name, &key),
                    source: shown,
                    labels: s.labels.clone(),
                    not_after: c.not_after,
                    serial: c.serial.clone(),
                    subject: c.subject.clone(),
                }),
                _ => fetch.push((key, etag)),
            }
        }
        let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(DOWNLOADS));
        let mut tasks = tokio::task::JoinSet::new();
        for (key, etag) in fetch {
            let (client, bucket, limit) = (client.clone(), s.bucket.clone(), limit.clone());
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let got = client.get_object().bucket(&bucket).key(&key).send().await;
                let bytes = match got {
                    Ok(o) => o
                        .body
                        .collect()
                        .await
                        .map(|b| b.into_bytes().to_vec())
                        .map_err(|e| Problem::Aws(e.to_string())),
                    Err(e) => Err(Problem::Aws(crate::aws::message(&e))),
                };
                (key, etag, bytes)
            });
        }
        while let Some(joined) = tasks.join_next().await {
            let Ok((key, etag, bytes)) = joined else {
                continue;
            };
            let shown = format!("s3://{}/{key}", s.bucket);
            let item = match bytes.and_then(|b| decode(&key, b, password.as_ref())) {
                Ok(b) => watched(name_for(&s.name, &key), shown.clone(), &s.labels, &b),
                Err(e) => Err(SourceError::at(&shown, e)),
            };
            match item {
                Ok(w) => {
                    cache.insert(
                        shown,
                        Cached {
                            etag,
                            not_after: w.not_after,
                            serial: w.serial.clone(),
                            subject: w.subject.clone(),
                        },
                    );
                    found.certs.push(w);
                }
                Err(e) => found.errors.push(e),
            }
        }
        if let Some(store) = ctx.store {
            let json = serde_json::to_vec(&cache).expect("cache serializes");
            let _ = store.write_state(CACHE, &json);
        }
        Ok(found)
    }
}
