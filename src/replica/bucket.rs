//! The four calls the replica protocol needs from object storage, and
//! their S3 implementation. Conditional writes are the whole engine: a
//! create with `If-None-Match: *` or a rewrite with `If-Match: <etag>`
//! succeeds for exactly one writer. Anything that keeps those semantics
//! (the in-memory bucket of the unit tests, another store) can stand in.

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use time::OffsetDateTime;

/// A call to the bucket failed for a reason other than "not there" or "the
/// condition did not hold", which are answers, not errors.
#[derive(Debug, thiserror::Error)]
#[error("s3://{bucket}/{key}: {message}")]
pub struct BucketError {
    pub bucket: String,
    pub key: String,
    /// The service's code and message (`AccessDenied: …`).
    pub message: String,
}

/// One object read whole.
#[derive(Debug, Clone)]
pub struct Object {
    pub bytes: Vec<u8>,
    pub etag: String,
    /// Last-Modified; S3 always sends it.
    pub modified: Option<OffsetDateTime>,
}

/// The condition of a write.
#[derive(Debug, Clone, Copy)]
pub enum Write<'a> {
    /// Only if no object has the key (`If-None-Match: *`).
    Create,
    /// Only if the object still has this ETag (`If-Match`).
    Replace(&'a str),
}

/// What one listing found: object key → ETag, and the pages it took.
#[derive(Debug, Default)]
pub struct Listing {
    pub objects: std::collections::HashMap<String, String>,
    pub requests: usize,
}

#[async_trait::async_trait]
pub trait Bucket: Send + Sync {
    /// The bucket's name, for messages (`s3://<name>/<key>`).
    fn name(&self) -> &str;
    /// The object, or `None` when no object has the key.
    async fn get(&self, key: &str) -> Result<Option<Object>, BucketError>;
    /// Writes `body` if the condition holds: `Some(etag)`, or `None` when
    /// another writer came first.
    async fn put(
        &self,
        key: &str,
        body: Vec<u8>,
        condition: Write<'_>,
    ) -> Result<Option<String>, BucketError>;
    /// The object's user metadata, or `None` when no object has the key.
    async fn head(
        &self,
        key: &str,
    ) -> Result<Option<std::collections::HashMap<String, String>>, BucketError>;
    /// Every object under each prefix, or the first error (its key is the
    /// prefix).
    async fn list(&self, prefixes: &[String]) -> Result<Listing, BucketError>;
}

/// The bucket through the AWS SDK.
pub struct S3Bucket {
    client: Client,
    bucket: String,
}

impl S3Bucket {
    pub fn new(client: Client, bucket: &str) -> S3Bucket {
        S3Bucket {
            client,
            bucket: bucket.to_string(),
        }
    }

    fn error(&self, key: &str, message: String) -> BucketError {
        BucketError {
            bucket: self.bucket.clone(),
            key: key.to_string(),
            message,
        }
    }
}

#[async_trait::async_trait]
impl Bucket for S3Bucket {
    fn name(&self) -> &str {
        &self.bucket
    }

    async fn get(&self, key: &str) -> Result<Option<Object>, BucketError> {
        let sent = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await;
        match sent {
            Ok(out) => {
                let etag = out.e_tag().unwrap_or_default().to_string();
                let modified = out
                    .last_modified()
                    .and_then(|t| OffsetDateTime::from_unix_timestamp(t.secs()).ok());
                let bytes = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| self.error(key, e.to_string()))?
                    .into_bytes()
                    .to_vec();
                Ok(Some(Object {
                    bytes,
                    etag,
                    modified,
                }))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(self.error(key, crate::aws::message(&e))),
        }
    }

    async fn put(
        &self,
        key: &str,
        body: Vec<u8>,
        condition: Write<'_>,
    ) -> Result<Option<String>, BucketError> {
        let put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(body));
        let put = match condition {
            Write::Replace(etag) => put.if_match(etag),
            Write::Create => put.if_none_match("*"),
        };
        match put.send().await {
            Ok(out) => Ok(Some(out.e_tag().unwrap_or_default().to_string())),
            // 412: the condition failed; 409: a concurrent conditional write.
            Err(e)
                if e.raw_response()
                    .is_some_and(|r| matches!(r.status().as_u16(), 412 | 409)) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.error(key, crate::aws::message(&e))),
        }
    }

    async fn head(
        &self,
        key: &str,
    ) -> Result<Option<std::collections::HashMap<String, String>>, BucketError> {
        let sent = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await;
        match sent {
            Ok(head) => Ok(Some(head.metadata().cloned().unwrap_or_default())),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(self.error(key, crate::aws::message(&e))),
        }
    }

    async fn list(&self, prefixes: &[String]) -> Result<Listing, BucketError> {
        let mut listing = Listing::default();
        for prefix in prefixes {
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                listing.requests += 1;
                let page = page.map_err(|e| self.error(prefix, crate::aws::message(&e)))?;
                for o in page.contents() {
                    if let Some(key) = o.key() {
                        listing
                            .objects
                            .insert(key.to_string(), o.e_tag().unwrap_or_default().to_string());
                    }
                }
            }
        }
        Ok(listing)
    }
}
