//! Publishing live certificates to where they are used.
//!
//! A [`Target`] receives the complete live set and must make the destination
//! hold exactly it; running it twice changes nothing the second time. Which
//! sets a target already holds is remembered in `published/<name>.json`, so
//! an unchanged certificate costs no API calls, and a failed publish is
//! retried on the next run even when nothing is due.

pub mod s3;

use crate::store::{Meta, Store};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
#[error("publish to {target} failed for {object}: {message}")]
pub struct PublishError {
    pub target: String,
    pub object: String,
    pub message: String,
}

/// What a publish changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub uploaded: usize,
    pub unchanged: usize,
}

#[async_trait]
pub trait Target: Send + Sync {
    /// Stable name for logs, status and the published record (`s3`).
    fn name(&self) -> &str;

    /// Makes the destination hold exactly `files` for certificate `meta.name`.
    async fn publish(
        &self,
        meta: &Meta,
        files: &[(&'static str, Vec<u8>)],
    ) -> Result<Outcome, PublishError>;
}

/// Per certificate: target name -> fingerprint of the set it holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    targets: BTreeMap<String, String>,
}

/// Fingerprint of a whole live set (file names and contents).
pub fn set_fingerprint(files: &[(&'static str, Vec<u8>)]) -> String {
    let mut joined = Vec::new();
    for (name, bytes) in files {
        joined.extend_from_slice(name.as_bytes());
        joined.push(0);
        joined.extend_from_slice(crate::x509::sha256_hex(bytes).as_bytes());
        joined.push(b'\n');
    }
    crate::x509::sha256_hex(&joined)
}

fn record_path(name: &str) -> String {
    format!("published/{name}.json")
}

/// Whether `target` is known to hold the set with `fingerprint`.
pub fn is_published(store: &Store, name: &str, target: &str, fingerprint: &str) -> bool {
    read_record(store, name)
        .targets
        .get(target)
        .is_some_and(|f| f == fingerprint)
}

pub fn mark_published(
    store: &Store,
    name: &str,
    target: &str,
    fingerprint: &str,
) -> Result<(), crate::store::StoreError> {
    let mut record = read_record(store, name);
    record
        .targets
        .insert(target.to_string(), fingerprint.to_string());
    let json = serde_json::to_vec_pretty(&record).expect("record serializes");
    store.write_state(&record_path(name), &json)
}

fn read_record(store: &Store, name: &str) -> Record {
    // An unreadable record only costs a re-check of the target.
    store
        .read_state(&record_path(name))
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}
