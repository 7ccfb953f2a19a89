//! Several replicas, one bucket, no coordinator of our own: S3's
//! conditional writes are the shared engine.
//!
//! - A per-certificate lease (`<prefix>/.leases/<name>`) is created with
//!   `If-None-Match: *` and renewed, taken over or released with
//!   `If-Match: <etag>`, so exactly one replica holds it. It carries the
//!   holder, an absolute expiry and a generation that grows at every
//!   change of holder.
//! - The generation goes into meta.json and every S3 object's metadata; a
//!   replica that lost its lease (paused, partitioned) is fenced: it never
//!   replaces an object written under a newer generation.
//! - The TXT records a holder writes are noted in its lease (a rewrite
//!   before they are written), so whoever takes the lease over removes
//!   what a killed holder left in DNS. In the lease, not beside it: no
//!   extra object to write, read and delete per order.
//! - A replica with an empty (or older) state dir pulls the live sets
//!   from the bucket instead of re-issuing them.
//! - A run starts with one listing of the bucket (a request per 1,000
//!   objects) instead of a GET per certificate: only a meta.json whose
//!   ETag this replica has not seen is read, and a certificate with
//!   neither a lease nor a live set is leased without looking first.

use crate::dns::Placement;
use crate::settings::{ReplicaSettings, S3Settings};
use crate::store::{Issued, META, Meta, Store};
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lease {key}: {message}")]
    S3 { key: String, message: String },
    #[error("lease {key} is corrupt: {message}")]
    Corrupt { key: String, message: String },
    #[error(
        "{name}: the lease was taken over by another replica (generation {generation} is no longer ours)"
    )]
    Lost { name: String, generation: u64 },
    #[error("bootstrap of {name} from s3://{bucket}/{key}: {message}")]
    Pull {
        name: String,
        bucket: String,
        key: String,
        message: String,
    },
}

/// The lease object's body.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Body {
    cert: String,
    holder: String,
    generation: u64,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    /// TXT records the holder may have written and not yet removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dns: Option<Placement>,
}

/// A lease this replica holds.
#[derive(Debug)]
pub struct Lease {
    pub name: String,
    pub generation: u64,
    etag: tokio::sync::Mutex<String>,
    /// The previous holder's lease had expired: it may have died mid-order.
    pub took_over: Option<String>,
    /// No lease existed before and the bucket holds no meta.json for it:
    /// no replica can have renewed it meanwhile, so there is nothing to
    /// pull before renewing.
    pub first: bool,
    /// What the previous holder noted in the lease and never removed.
    pub left_dns: Option<Placement>,
    /// What this holder noted, written with every rewrite until removed.
    dns: std::sync::Mutex<Option<Placement>>,
}

pub enum Acquired {
    Taken(std::sync::Arc<Lease>),
    /// Another replica holds it until then.
    Held {
        holder: String,
        until: OffsetDateTime,
    },
}

/// One object read from the bucket.
struct Fetched {
    bytes: Vec<u8>,
    etag: String,
    modified: Option<OffsetDateTime>,
}

/// Who holds a lease whose object cannot be read.
const CORRUPT_HOLDER: &str = "unknown (corrupt lease object)";

pub struct Coordinator {
    client: Client,
    bucket: String,
    prefix: String,
    key_template: String,
    ttl: Duration,
    holder: String,
    /// The leases this replica holds, by certificate: the DNS journal
    /// notes records in them.
    held: std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<Lease>>>,
    /// Certificates the run's listing found with neither a lease nor a
    /// live set; each is used once, by the first acquire.
    unseen: std::sync::Mutex<std::collections::HashSet<String>>,
    /// False after a listing failed, until the next run's survey tries
    /// again: one warning a run, not one a poll.
    can_list: std::sync::atomic::AtomicBool,
}

/// What one listing of the bucket found: object key -> ETag.
pub struct Survey {
    objects: std::collections::HashMap<String, String>,
    /// ListObjectsV2 pages it took.
    requests: usize,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Coordinator {
    pub fn new(client: Client, s3: &S3Settings, replicas: &ReplicaSettings) -> Coordinator {
        let holder = replicas.holder.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "replica".into());
            format!("{host}-{}", std::process::id())
        });
        Coordinator {
            client,
            bucket: s3.bucket.clone(),
            prefix: s3.prefix.trim_matches('/').to_string(),
            key_template: s3.key_template.clone(),
            ttl: replicas.lease_ttl,
            holder,
            held: Default::default(),
            unseen: Default::default(),
            can_list: std::sync::atomic::AtomicBool::new(true),
        }
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// How often a holder renews: a third of the lease.
    pub fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    fn under_prefix(&self, rest: &str) -> String {
        under(&self.prefix, rest)
    }

    fn lease_key(&self, name: &str) -> String {
        self.under_prefix(&format!(".leases/{name}"))
    }

    /// Object key of one file of a live set (the s3 target's template).
    pub fn object_key(&self, name: &str, file: &str) -> String {
        object_key(&self.prefix, &self.key_template, name, file)
    }

    fn s3_error(&self, key: &str, e: impl std::fmt::Display) -> LeaseError {
        LeaseError::S3 {
            key: format!("s3://{}/{key}", self.bucket),
            message: e.to_string(),
        }
    }

    /// The object's bytes, ETag and Last-Modified time.
    async fn get(&self, key: &str) -> Result<Option<Fetched>, LeaseError> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                let etag = out.e_tag().unwrap_or_default().to_string();
                let modified = out
                    .last_modified()
                    .and_then(|t| OffsetDateTime::from_unix_timestamp(t.secs()).ok());
                let bytes = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| self.s3_error(key, e))?
                    .into_bytes()
                    .to_vec();
                Ok(Some(Fetched {
                    bytes,
                    etag,
                    modified,
                }))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(self.s3_error(key, crate::aws::message(&e))),
        }
    }

    /// Writes the lease body: `Ok(Some(etag))`, or `Ok(None)` when the
    /// condition failed (another replica wrote first).
    async fn put_lease(
        &self,
        key: &str,
        body: &Body,
        if_match: Option<&str>,
    ) -> Result<Option<String>, LeaseError> {
        let mut put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(
                serde_json::to_vec(body).expect("lease serializes"),
            ));
        put = match if_match {
            Some(etag) => put.if_match(etag),
            None => put.if_none_match("*"),
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
            Err(e) => Err(self.s3_error(key, crate::aws::message(&e))),
        }
    }

    /// Stands in for a lease object that is not a lease (truncated, edited
    /// by hand, written by something else). Whoever wrote it may still be
    /// working, so it counts as held for a whole lease from its last write;
    /// after that it is taken over like an expired lease (If-Match on its
    /// ETag), at a generation above anything published or readable in it,
    /// so fencing still holds. Without Last-Modified (S3 always sends it)
    /// it counts as expired.
    async fn corrupt_body(
        &self,
        name: &str,
        key: &str,
        bytes: &[u8],
        modified: Option<OffsetDateTime>,
        error: &serde_json::Error,
    ) -> Result<Body, LeaseError> {
        let written = modified.unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let until = written + self.ttl;
        tracing::warn!(event = "lease.corrupt", cert = %name, key = %format!("s3://{}/{key}", self.bucket), error = %error, held_until = %rfc3339(until));
        let readable = serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .and_then(|v| v.get("generation")?.as_u64())
            .unwrap_or(0);
        let published = self.published_generation(name).await?.unwrap_or(0);
        Ok(Body {
            cert: name.to_string(),
            holder: CORRUPT_HOLDER.into(),
            generation: readable.max(published),
            // Never the epoch: a takeover of it is a takeover of a holder
            // that may have died.
            expires_at: until.max(OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1)),
            dns: None,
        })
    }

    /// Takes the lease of `name` unless another replica holds it.
    pub async fn acquire(&self, name: &str) -> Result<Acquired, LeaseError> {
        let key = self.lease_key(name);
        let now = OffsetDateTime::now_utc();
        let expires_at = now + self.ttl;
        if self.unseen.lock().expect("unseen").remove(name) {
            // Neither lease nor live set when the run began. The create
            // succeeds only if still no lease exists; leases are never
            // deleted, so then no replica has published under one since.
            let body = Body {
                cert: name.to_string(),
                holder: self.holder.clone(),
                generation: 1,
                expires_at,
                dns: None,
            };
            if let Some(etag) = self.put_lease(&key, &body, None).await? {
                return Ok(Acquired::Taken(self.taken(name, 1, etag, None, true, None)));
            }
            // Someone leased it since: look, as for any other.
        }
        let current = self.get(&key).await?;
        let mut first = false;
        let mut left_dns = None;
        let (if_match, generation, took_over) = match &current {
            None => {
                // No lease yet (or it was deleted): start above any
                // generation already published, so fencing still holds.
                let published = self.published(name).await?;
                first = published.is_none();
                (None, published.flatten().unwrap_or(0) + 1, None)
            }
            Some(Fetched {
                bytes,
                etag,
                modified,
            }) => {
                let body = match serde_json::from_slice::<Body>(bytes) {
                    Ok(body) => body,
                    Err(e) => self.corrupt_body(name, &key, bytes, *modified, &e).await?,
                };
                if body.expires_at > now && body.holder != self.holder {
                    return Ok(Acquired::Held {
                        holder: body.holder,
                        until: body.expires_at,
                    });
                }
                // Released (expiry in the past, by its holder) or expired.
                let dead = (body.holder != self.holder
                    && body.expires_at > OffsetDateTime::UNIX_EPOCH)
                    .then_some(body.holder.clone());
                // Left by a holder that died, or that released the lease
                // after its cleanup failed.
                left_dns = body.dns.filter(|p| !p.is_empty());
                (Some(etag.clone()), body.generation + 1, dead)
            }
        };
        // The records left behind stay noted until the new holder has
        // removed them (and rewrites the lease).
        let body = Body {
            cert: name.to_string(),
            holder: self.holder.clone(),
            generation,
            expires_at,
            dns: left_dns.clone(),
        };
        match self.put_lease(&key, &body, if_match.as_deref()).await? {
            Some(etag) => Ok(Acquired::Taken(
                self.taken(name, generation, etag, took_over, first, left_dns),
            )),
            None => {
                // Lost the race: report who won.
                let (holder, until) = match self.get(&key).await? {
                    Some(f) => serde_json::from_slice::<Body>(&f.bytes)
                        .map(|b| (b.holder, b.expires_at))
                        .unwrap_or_else(|_| ("another replica".into(), expires_at)),
                    None => ("another replica".into(), expires_at),
                };
                Ok(Acquired::Held { holder, until })
            }
        }
    }

    fn taken(
        &self,
        name: &str,
        generation: u64,
        etag: String,
        took_over: Option<String>,
        first: bool,
        left_dns: Option<Placement>,
    ) -> std::sync::Arc<Lease> {
        tracing::info!(event = "lease.taken", cert = %name, holder = %self.holder, generation, until = %rfc3339(OffsetDateTime::now_utc() + self.ttl), previous_holder = took_over.as_deref().unwrap_or(""));
        let lease = std::sync::Arc::new(Lease {
            name: name.to_string(),
            generation,
            etag: tokio::sync::Mutex::new(etag),
            took_over,
            first,
            dns: std::sync::Mutex::new(left_dns.clone()),
            left_dns,
        });
        self.held
            .lock()
            .expect("held leases")
            .insert(name.to_string(), lease.clone());
        lease
    }

    /// Lists the leases and live sets of the bucket, once per run, and
    /// remembers which of `names` have neither. `None` when the listing is
    /// not allowed (no s3:ListBucket) or fails: the run then asks per
    /// certificate, as before.
    pub async fn survey(&self, names: &[&str]) -> Option<Survey> {
        self.can_list
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let survey = self.listing().await?;
        let unseen: std::collections::HashSet<String> = names
            .iter()
            .filter(|n| {
                !survey.objects.contains_key(&self.lease_key(n))
                    && !survey.objects.contains_key(&self.object_key(n, META))
            })
            .map(|n| n.to_string())
            .collect();
        tracing::info!(event = "replica.survey", bucket = %self.bucket, objects = survey.objects.len(), requests = survey.requests, new_certificates = unseen.len());
        *self.unseen.lock().expect("unseen") = unseen;
        Some(survey)
    }

    /// One listing of the live sets and leases, `None` when not allowed or
    /// failed (logged with the fix).
    pub async fn listing(&self) -> Option<Survey> {
        if !self.can_list.load(std::sync::atomic::Ordering::SeqCst) {
            return None;
        }
        let prefixes = prefixes_listed(&self.prefix, &self.key_template);
        let mut objects = std::collections::HashMap::new();
        let mut requests = 0;
        for prefix in prefixes {
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&prefix)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                requests += 1;
                let page = match page {
                    Ok(page) => page,
                    Err(e) => {
                        self.can_list
                            .store(false, std::sync::atomic::Ordering::SeqCst);
                        tracing::warn!(event = "replica.survey.failed", bucket = %self.bucket, prefix = %prefix, error = %crate::aws::message(&e), hint = "allow s3:ListBucket on the bucket (see `certkeeper iam-policy`); until then every certificate costs a few more requests");
                        return None;
                    }
                };
                for o in page.contents() {
                    if let Some(key) = o.key() {
                        objects.insert(key.to_string(), o.e_tag().unwrap_or_default().to_string());
                    }
                }
            }
        }
        Some(Survey { objects, requests })
    }

    /// Pulls `name` unless the survey shows nothing there, or the same
    /// meta.json this replica already compared or installed.
    pub async fn pull_surveyed(
        &self,
        store: &Store,
        name: &str,
        survey: &Survey,
    ) -> Result<Option<Meta>, LeaseError> {
        let key = self.object_key(name, META);
        match survey.objects.get(&key) {
            None => Ok(None),
            Some(etag)
                if !etag.is_empty()
                    && store.live_meta(name).ok().flatten().is_some_and(|local| {
                        seen(store, name)
                            == Some(format!(
                                "s3://{}/{key} {etag} {}",
                                self.bucket, local.serial
                            ))
                    }) =>
            {
                Ok(None)
            }
            Some(_) => self.pull(store, name).await,
        }
    }

    /// Rewrites our lease with a new expiry, if it is still ours:
    /// `Ok(false)` when another replica took it.
    async fn rewrite(&self, lease: &Lease, expires_at: OffsetDateTime) -> Result<bool, LeaseError> {
        // Held across the write: the keep-alive and the check before
        // publishing must not both send the same ETag (the second would
        // fail its condition and think the lease lost).
        let mut etag = lease.etag.lock().await;
        let body = Body {
            cert: lease.name.clone(),
            holder: self.holder.clone(),
            generation: lease.generation,
            expires_at,
            dns: lease.dns.lock().expect("lease dns").clone(),
        };
        match self
            .put_lease(&self.lease_key(&lease.name), &body, Some(&etag))
            .await?
        {
            Some(new) => {
                *etag = new;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Extends the lease; `Lost` when another replica took it.
    pub async fn renew(&self, lease: &Lease) -> Result<(), LeaseError> {
        if self
            .rewrite(lease, OffsetDateTime::now_utc() + self.ttl)
            .await?
        {
            tracing::debug!(event = "lease.renewed", cert = %lease.name, generation = lease.generation);
            Ok(())
        } else {
            Err(LeaseError::Lost {
                name: lease.name.clone(),
                generation: lease.generation,
            })
        }
    }

    /// Gives the lease up (expiry in the past), if it is still ours.
    pub async fn release(&self, lease: &Lease) {
        self.forget_lease(lease);
        match self.rewrite(lease, OffsetDateTime::UNIX_EPOCH).await {
            Ok(true) => {
                tracing::info!(event = "lease.released", cert = %lease.name, generation = lease.generation)
            }
            Ok(false) => {
                tracing::warn!(event = "lease.lost", cert = %lease.name, generation = lease.generation)
            }
            Err(e) => {
                tracing::warn!(event = "lease.release.failed", cert = %lease.name, error = %e)
            }
        }
    }

    /// No longer ours to note records in.
    pub fn forget_lease(&self, lease: &Lease) {
        let mut held = self.held.lock().expect("held leases");
        if held
            .get(&lease.name)
            .is_some_and(|l| std::ptr::eq(l.as_ref(), lease))
        {
            held.remove(&lease.name);
        }
    }

    /// The `generation` metadata of the published meta.json, if any.
    pub async fn published_generation(&self, name: &str) -> Result<Option<u64>, LeaseError> {
        Ok(self.published(name).await?.flatten())
    }

    /// `None` when the bucket holds no meta.json for `name`, else its
    /// `generation` metadata (absent when published without replicas).
    async fn published(&self, name: &str) -> Result<Option<Option<u64>>, LeaseError> {
        let key = self.object_key(name, META);
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(head) => Ok(Some(
                head.metadata()
                    .and_then(|m| m.get("generation"))
                    .and_then(|g| g.parse().ok()),
            )),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(self.s3_error(&key, crate::aws::message(&e))),
        }
    }

    /// Brings the local live set of `name` up to the bucket's when the
    /// bucket holds a newer one (a newer generation, or any when there is
    /// none locally). The key must match the certificate and the files
    /// their recorded hashes; nothing is installed otherwise. Returns the
    /// installed meta.
    pub async fn pull(&self, store: &Store, name: &str) -> Result<Option<Meta>, LeaseError> {
        let meta_key = self.object_key(name, META);
        let fail = |key: &str, message: String| LeaseError::Pull {
            name: name.to_string(),
            bucket: self.bucket.clone(),
            key: key.to_string(),
            message,
        };
        let Some(Fetched {
            bytes: meta_bytes,
            etag: meta_etag,
            ..
        }) = self.get(&meta_key).await?
        else {
            return Ok(None);
        };
        let remote: Meta =
            serde_json::from_slice(&meta_bytes).map_err(|e| fail(&meta_key, e.to_string()))?;
        let local = store.live_meta(name).ok().flatten();
        let newer = match &local {
            None => true,
            Some(l) if l.serial == remote.serial => false,
            Some(l) => match (remote.generation, l.generation) {
                (Some(r), Some(lg)) => r > lg,
                (Some(_), None) => true,
                (None, _) => remote.not_after > l.not_after,
            },
        };
        if !newer {
            let serial = local
                .as_ref()
                .map(|l| l.serial.as_str())
                .unwrap_or_default();
            remember_etag(
                store,
                name,
                &format!("s3://{}/{meta_key}", self.bucket),
                &meta_etag,
                serial,
            );
            return Ok(None);
        }
        let mut files = Vec::new();
        for file in [
            crate::store::CERT,
            crate::store::CHAIN,
            crate::store::PRIVKEY,
        ] {
            let key = self.object_key(name, file);
            let Fetched { bytes, .. } = self
                .get(&key)
                .await?
                .ok_or_else(|| fail(&key, "missing from the bucket".into()))?;
            files.push(String::from_utf8(bytes).map_err(|_| fail(&key, "not PEM text".into()))?);
        }
        let [cert_pem, chain_pem, key_pem] = <[String; 3]>::try_from(files).expect("three files");
        let cert_key = self.object_key(name, crate::store::CERT);
        let ders = crate::x509::pem_chain(&cert_pem).map_err(|e| fail(&cert_key, e.to_string()))?;
        let info = crate::x509::leaf_info(&ders[0]).map_err(|e| fail(&cert_key, e.to_string()))?;
        if info.sha256 != remote.sha256 {
            return Err(fail(
                &cert_key,
                "the certificate is not the one meta.json describes".into(),
            ));
        }
        let key_path = std::path::PathBuf::from(self.object_key(name, crate::store::PRIVKEY));
        let key = crate::convert::private_key(&key_path, key_pem.as_bytes())
            .map_err(|e| fail(&key_path.display().to_string(), e.to_string()))?;
        if !crate::convert::key_matches(&key.pair, &ders[0]) {
            return Err(fail(
                &key_path.display().to_string(),
                "the private key does not match the certificate".into(),
            ));
        }
        let issued = Issued {
            cert_pem,
            chain_pem,
            key_pem: crate::secret::Secret::new(key_pem),
        };
        let mut meta = remote.clone();
        store
            .install_version(&issued, &mut meta)
            .map_err(|e| fail(&meta_key, e.to_string()))?;
        remember_etag(
            store,
            name,
            &format!("s3://{}/{meta_key}", self.bucket),
            &meta_etag,
            &meta.serial,
        );
        tracing::info!(event = "replica.pulled", cert = %name, serial = %meta.serial, generation = ?meta.generation, from = %format!("s3://{}/{meta_key}", self.bucket));
        Ok(Some(meta))
    }
}

fn under(prefix: &str, rest: &str) -> String {
    if prefix.is_empty() {
        rest.to_string()
    } else {
        format!("{prefix}/{rest}")
    }
}

fn object_key(prefix: &str, key_template: &str, name: &str, file: &str) -> String {
    key_template
        .replace("{prefix}", prefix)
        .replace("{name}", name)
        .replace("{file}", file)
        .trim_start_matches('/')
        .replace("//", "/")
}

fn prefixes_listed(prefix: &str, key_template: &str) -> Vec<String> {
    let meta = object_key(prefix, key_template, "\u{0}", META);
    let meta = meta.split('\u{0}').next().unwrap_or_default().to_string();
    let leases = under(prefix, ".leases/");
    if leases.starts_with(&meta) {
        vec![meta]
    } else {
        vec![meta, leases]
    }
}

/// The key prefixes a replica's run lists: the live sets' meta.json (the
/// key template up to `{name}`) and the leases, when not under it.
/// `certkeeper iam-policy` allows s3:ListBucket on exactly these.
pub fn listed_prefixes(s3: &S3Settings) -> Vec<String> {
    prefixes_listed(s3.prefix.trim_matches('/'), &s3.key_template)
}

fn seen_path(name: &str) -> String {
    format!("replica/{name}.etag")
}

/// `s3://bucket/key etag serial`: the bucket's meta.json for `name` when
/// this replica last read it (and found it not newer, or installed it) or
/// published it, and the serial of the local live set then. With the
/// object in it, another target's record never passes for the
/// coordination bucket's; with the serial, a local set damaged or replaced
/// since is pulled again.
fn seen(store: &Store, name: &str) -> Option<String> {
    let bytes = store.read_state(&seen_path(name)).ok().flatten()?;
    String::from_utf8(bytes).ok()
}

/// A lost or wrong record only costs one GET at the next run.
pub fn remember_etag(store: &Store, name: &str, object: &str, etag: &str, serial: &str) {
    let line = format!("{object} {etag} {serial}");
    if !etag.is_empty()
        && seen(store, name).as_deref() != Some(line.as_str())
        && let Err(e) = store.write_state(&seen_path(name), line.as_bytes())
    {
        tracing::warn!(event = "replica.etag.unsaved", cert = %name, error = %e);
    }
}

#[async_trait::async_trait]
impl crate::dns::SharedJournal for Coordinator {
    /// Rewrites the lease with the records before they are written: a
    /// lease that is no longer ours fails the order before it touches DNS.
    async fn note(&self, cert: &str, placed: &Placement) -> Result<(), String> {
        let Some(lease) = self.held.lock().expect("held leases").get(cert).cloned() else {
            return Ok(());
        };
        *lease.dns.lock().expect("lease dns") = Some(placed.clone());
        self.renew(&lease).await.map_err(|e| e.to_string())
    }

    /// Removed: the next rewrite of the lease (the check before
    /// publishing, the release) drops the note. A holder that dies before
    /// then has its already-removed records removed again, which is
    /// harmless.
    async fn forget(&self, cert: &str) {
        if let Some(lease) = self.held.lock().expect("held leases").get(cert) {
            *lease.dns.lock().expect("lease dns") = None;
        }
    }
}
