//! One certificate's lease: taken, renewed, released, and the TXT records
//! its holder noted in it. `step` decides; the rest reads and writes.

use super::bucket::{Object, Write};
use super::{Coordinator, LeaseError, rfc3339};
use crate::dns::Placement;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// The lease object's body.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct Body {
    pub cert: String,
    pub holder: String,
    pub generation: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// TXT records the holder may have written and not yet removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Placement>,
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
    Taken(Arc<Lease>),
    /// Another replica holds it until then.
    Held {
        holder: String,
        until: OffsetDateTime,
    },
}

/// Who holds a lease whose object cannot be read.
pub(super) const CORRUPT_HOLDER: &str = "unknown (corrupt lease object)";

/// What to do about an existing lease.
#[derive(Debug)]
pub(super) enum Step {
    /// Another replica holds it until then.
    Wait {
        holder: String,
        until: OffsetDateTime,
    },
    /// Ours to take at this generation (If-Match on the lease's ETag).
    Take {
        generation: u64,
        /// The holder whose unexpired-then-expired lease this was: it may
        /// have died mid-order. `None` for a release or our own lease.
        previous_holder: Option<String>,
        /// Records the previous holder noted and never removed.
        left_dns: Option<Placement>,
    },
}

/// The next step for `me` given the lease as it is `now`.
pub(super) fn step(body: &Body, me: &str, now: OffsetDateTime) -> Step {
    if body.expires_at > now && body.holder != me {
        return Step::Wait {
            holder: body.holder.clone(),
            until: body.expires_at,
        };
    }
    // Released (expiry at the epoch, by its holder) or expired.
    let previous_holder = (body.holder != me && body.expires_at > OffsetDateTime::UNIX_EPOCH)
        .then(|| body.holder.clone());
    Step::Take {
        generation: body.generation + 1,
        previous_holder,
        // Left by a holder that died, or that released the lease after
        // its cleanup failed.
        left_dns: body.dns.clone().filter(|p| !p.is_empty()),
    }
}

/// Stands in for a lease object that is not a lease (truncated, edited by
/// hand, written by something else). Whoever wrote it may still be
/// working, so it counts as held for a whole lease from its last write;
/// after that it is taken over like an expired lease, at a generation
/// above anything published or readable in it, so fencing still holds.
/// Without Last-Modified (S3 always sends it) it counts as expired.
pub(super) fn corrupt_stand_in(
    name: &str,
    bytes: &[u8],
    modified: Option<OffsetDateTime>,
    ttl: Duration,
    published: u64,
) -> Body {
    let until = modified.unwrap_or(OffsetDateTime::UNIX_EPOCH) + ttl;
    let readable = serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v.get("generation")?.as_u64())
        .unwrap_or(0);
    Body {
        cert: name.to_string(),
        holder: CORRUPT_HOLDER.into(),
        generation: readable.max(published),
        // Never the epoch: a takeover of it is a takeover of a holder that
        // may have died.
        expires_at: until.max(OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1)),
        dns: None,
    }
}

impl Coordinator {
    /// Writes the lease body: `Ok(Some(etag))`, or `Ok(None)` when the
    /// condition failed (another replica wrote first).
    async fn put_lease(
        &self,
        key: &str,
        body: &Body,
        condition: Write<'_>,
    ) -> Result<Option<String>, LeaseError> {
        let bytes = serde_json::to_vec(body).expect("lease serializes");
        Ok(self.bucket.put(key, bytes, condition).await?)
    }

    /// The lease as it stands, a corrupt one replaced by its stand-in.
    async fn read_lease(&self, name: &str, key: &str, object: &Object) -> Result<Body, LeaseError> {
        match serde_json::from_slice::<Body>(&object.bytes) {
            Ok(body) => Ok(body),
            Err(error) => {
                let published = self.published_generation(name).await?.unwrap_or(0);
                let body =
                    corrupt_stand_in(name, &object.bytes, object.modified, self.ttl, published);
                tracing::warn!(event = "lease.corrupt", cert = %name, key = %self.url(key), error = %error, held_until = %rfc3339(body.expires_at));
                Ok(body)
            }
        }
    }

    /// Takes the lease of `name` unless another replica holds it.
    pub async fn acquire(&self, name: &str) -> Result<Acquired, LeaseError> {
        let key = self.lease_key(name);
        let now = self.now();
        let mut body = Body {
            cert: name.to_string(),
            holder: self.holder.clone(),
            generation: 1,
            expires_at: now + self.ttl,
            dns: None,
        };
        if self.unseen.lock().expect("unseen").remove(name) {
            // Neither lease nor live set when the run began. The create
            // succeeds only if still no lease exists; leases are never
            // deleted, so then no replica has published under one since.
            if let Some(etag) = self.put_lease(&key, &body, Write::Create).await? {
                return Ok(Acquired::Taken(self.taken(&body, etag, None, true)));
            }
            // Someone leased it since: look, as for any other.
        }
        let current = self.bucket.get(&key).await?;
        let (first, took_over) = match &current {
            None => {
                // No lease yet (or it was deleted): start above any
                // generation already published, so fencing still holds.
                let published = self.published(name).await?;
                body.generation = published.flatten().unwrap_or(0) + 1;
                (published.is_none(), None)
            }
            Some(object) => {
                let lease = self.read_lease(name, &key, object).await?;
                match step(&lease, &self.holder, now) {
                    Step::Wait { holder, until } => return Ok(Acquired::Held { holder, until }),
                    Step::Take {
                        generation,
                        previous_holder,
                        left_dns,
                    } => {
                        body.generation = generation;
                        // The records left behind stay noted until the new
                        // holder has removed them (and rewrites the lease).
                        body.dns = left_dns;
                        (false, previous_holder)
                    }
                }
            }
        };
        let condition = match &current {
            Some(object) => Write::Replace(&object.etag),
            None => Write::Create,
        };
        match self.put_lease(&key, &body, condition).await? {
            Some(etag) => Ok(Acquired::Taken(self.taken(&body, etag, took_over, first))),
            None => {
                // Lost the race: report who won.
                let (holder, until) = match self.bucket.get(&key).await? {
                    Some(o) => serde_json::from_slice::<Body>(&o.bytes)
                        .map(|b| (b.holder, b.expires_at))
                        .unwrap_or_else(|_| ("another replica".into(), body.expires_at)),
                    None => ("another replica".into(), body.expires_at),
                };
                Ok(Acquired::Held { holder, until })
            }
        }
    }

    fn taken(
        &self,
        body: &Body,
        etag: String,
        took_over: Option<String>,
        first: bool,
    ) -> Arc<Lease> {
        tracing::info!(event = "lease.taken", cert = %body.cert, holder = %self.holder, generation = body.generation, until = %rfc3339(body.expires_at), previous_holder = took_over.as_deref().unwrap_or(""));
        let lease = Arc::new(Lease {
            name: body.cert.clone(),
            generation: body.generation,
            etag: tokio::sync::Mutex::new(etag),
            took_over,
            first,
            dns: std::sync::Mutex::new(body.dns.clone()),
            left_dns: body.dns.clone(),
        });
        self.held
            .lock()
            .expect("held leases")
            .insert(body.cert.clone(), lease.clone());
        lease
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
        let key = self.lease_key(&lease.name);
        match self.put_lease(&key, &body, Write::Replace(&etag)).await? {
            Some(new) => {
                *etag = new;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Extends the lease; `Lost` when another replica took it.
    pub async fn renew(&self, lease: &Lease) -> Result<(), LeaseError> {
        if self.rewrite(lease, self.now() + self.ttl).await? {
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
        let key = self.object_key(name, crate::store::META);
        let head = self.bucket.head(&key).await?;
        Ok(head.map(|m| m.get("generation").and_then(|g| g.parse().ok())))
    }
}

#[async_trait::async_trait]
impl crate::dns::SharedJournal for Coordinator {
    /// Rewrites the lease with the records before they are written: a
    /// lease that is no longer ours fails the order before it touches DNS.
    async fn note(&self, cert: &str, placed: &Placement) -> Result<(), crate::dns::DnsError> {
        let Some(lease) = self.held.lock().expect("held leases").get(cert).cloned() else {
            return Ok(());
        };
        *lease.dns.lock().expect("lease dns") = Some(placed.clone());
        self.renew(&lease)
            .await
            .map_err(|e| crate::dns::DnsError::Journal(e.to_string()))
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
