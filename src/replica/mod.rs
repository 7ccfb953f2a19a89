//! Several replicas, one bucket, no coordinator of our own: the bucket's
//! conditional writes are the shared engine (`bucket.rs`).
//!
//! - A per-certificate lease (`<prefix>/.leases/<name>`, `lease.rs`) is
//!   created with `If-None-Match: *` and renewed, taken over or released
//!   with `If-Match: <etag>`, so exactly one replica holds it. It carries
//!   the holder, an absolute expiry and a generation that grows at every
//!   change of holder.
//! - The generation goes into meta.json and every S3 object's metadata; a
//!   replica that lost its lease (paused, partitioned) is fenced: it never
//!   replaces an object written under a newer generation.
//! - The TXT records a holder writes are noted in its lease (a rewrite
//!   before they are written), so whoever takes the lease over removes
//!   what a killed holder left in DNS. In the lease, not beside it: no
//!   extra object to write, read and delete per order.
//! - A replica with an empty (or older) state dir pulls the live sets
//!   from the bucket instead of re-issuing them (`bootstrap.rs`).
//! - A run starts with one listing of the bucket (a request per 1,000
//!   objects) instead of a GET per certificate: only a meta.json whose
//!   ETag this replica has not seen (`memo.rs`) is read, and a certificate
//!   with neither a lease nor a live set is leased without looking first.
//!
//! The decisions (`lease::step`, `bootstrap::newer`) are pure functions of
//! what the bucket holds and the time, unit-tested with an injected clock
//! against an in-memory bucket.

mod bootstrap;
pub mod bucket;
mod keys;
mod lease;
pub mod memo;
#[cfg(test)]
mod tests;

pub use bootstrap::Survey;
pub use bucket::{Bucket, BucketError};
pub use keys::listed_prefixes;
pub use lease::{Acquired, Lease};

use crate::settings::{ReplicaSettings, S3Settings};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lease {0}")]
    Bucket(#[from] BucketError),
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

/// The time, injected so that the unit tests can move it.
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// This replica's side of the protocol.
pub struct Coordinator {
    bucket: Box<dyn Bucket>,
    prefix: String,
    key_template: String,
    ttl: Duration,
    holder: String,
    clock: Clock,
    /// The leases this replica holds, by certificate: the DNS journal
    /// notes records in them.
    held: std::sync::Mutex<std::collections::HashMap<String, Arc<Lease>>>,
    /// Certificates the run's listing found with neither a lease nor a
    /// live set; each is used once, by the first acquire.
    unseen: std::sync::Mutex<std::collections::HashSet<String>>,
    /// False after a listing failed, until the next run's survey tries
    /// again: one warning a run, not one a poll.
    can_list: std::sync::atomic::AtomicBool,
}

impl Coordinator {
    /// Over the S3 bucket the settings name, with the system clock.
    pub fn new(
        client: aws_sdk_s3::Client,
        s3: &S3Settings,
        replicas: &ReplicaSettings,
    ) -> Coordinator {
        let holder = replicas.holder.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "replica".into());
            format!("{host}-{}", std::process::id())
        });
        Coordinator::over(
            Box::new(bucket::S3Bucket::new(client, &s3.bucket)),
            (&s3.prefix, &s3.key_template),
            replicas.lease_ttl,
            holder,
            Arc::new(OffsetDateTime::now_utc),
        )
    }

    /// Over any bucket, with any clock; live sets where the s3 target's
    /// `(prefix, key_template)` put them.
    pub fn over(
        bucket: Box<dyn Bucket>,
        (prefix, key_template): (&str, &str),
        ttl: Duration,
        holder: String,
        clock: Clock,
    ) -> Coordinator {
        Coordinator {
            bucket,
            prefix: prefix.trim_matches('/').to_string(),
            key_template: key_template.to_string(),
            ttl,
            holder,
            clock,
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

    fn now(&self) -> OffsetDateTime {
        (self.clock)()
    }

    fn lease_key(&self, name: &str) -> String {
        keys::under(&self.prefix, &format!(".leases/{name}"))
    }

    /// Object key of one file of a live set (the s3 target's template).
    pub fn object_key(&self, name: &str, file: &str) -> String {
        keys::object_key(&self.prefix, &self.key_template, name, file)
    }

    /// `s3://bucket/key`, for messages and the ETag memo.
    fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket.name())
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
