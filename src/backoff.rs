//! Certificates that keep failing back off across runs: 1 h after the first
//! failure, doubling to 32 h, instead of hammering the CA at full speed.
//!
//! The back-off applies only while the certificate's spec is unchanged: a
//! new config (other domains, key, issuer) may be the fix, so it is tried at
//! once. `renew --force` ignores it.

use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use time::OffsetDateTime;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failures {
    pub count: u32,
    pub last_error: String,
    /// Fingerprint of the spec that failed.
    pub spec: String,
    #[serde(with = "time::serde::rfc3339")]
    pub next_attempt: OffsetDateTime,
}

/// How long to wait after `count` consecutive failures.
pub fn delay(count: u32) -> Duration {
    let hours = 1u64 << count.saturating_sub(1).min(5);
    Duration::from_secs(hours * 3600)
}

fn file(name: &str) -> String {
    format!("failures/{name}.json")
}

pub fn load(store: &Store, name: &str) -> Option<Failures> {
    let bytes = store.read_state(&file(name)).ok().flatten()?;
    serde_json::from_slice(&bytes).ok()
}

/// Counts one more failure and returns when to try next.
pub fn record(store: &Store, name: &str, spec: &str, error: &str, now: OffsetDateTime) -> Failures {
    let count = load(store, name)
        .filter(|f| f.spec == spec)
        .map_or(0, |f| f.count)
        + 1;
    let failures = Failures {
        count,
        last_error: error.to_string(),
        spec: spec.to_string(),
        next_attempt: now + delay(count),
    };
    let json = serde_json::to_vec_pretty(&failures).expect("serializes");
    if let Err(e) = store.write_state(&file(name), &json) {
        tracing::warn!(event = "backoff.write_failed", cert = name, error = %e);
    }
    failures
}

pub fn clear(store: &Store, name: &str) {
    let _ = std::fs::remove_file(store.root().join(file(name)));
}

/// A stable fingerprint of what was asked for.
pub fn spec_fingerprint(spec: &crate::config::CertificateSpec, issuers: &[String]) -> String {
    let mut domains = spec.domains.clone();
    domains.sort();
    crate::x509::sha256_hex(
        format!(
            "{domains:?}|{}|{issuers:?}|{:?}",
            spec.key_type, spec.profile
        )
        .as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_one_hour_to_32() {
        let h = |n| delay(n).as_secs() / 3600;
        assert_eq!(
            [h(1), h(2), h(3), h(4), h(5), h(6), h(7), h(40)],
            [1, 2, 4, 8, 16, 32, 32, 32]
        );
    }

    #[test]
    fn record_counts_and_resets_on_new_spec() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state")).unwrap();
        let now = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(record(&store, "web", "a", "boom", now).count, 1);
        let second = record(&store, "web", "a", "boom", now);
        assert_eq!(second.count, 2);
        assert_eq!(second.next_attempt, now + Duration::from_secs(7200));
        assert_eq!(record(&store, "web", "b", "boom", now).count, 1);
        clear(&store, "web");
        assert!(load(&store, "web").is_none());
    }
}
