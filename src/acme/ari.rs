//! ACME Renewal Information (RFC 9773): the CA says when to renew.
//!
//! The suggested window is fetched when the cached answer's Retry-After has
//! passed; a moment inside it is picked at random once per window (so a fleet
//! does not renew at the same second) and kept until the CA moves the window.
//! ARI can only make a renewal earlier: the lifetime rule in `plan` still
//! applies when the window is later.

use super::Issuer;
use crate::store::{Meta, Store};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use time::OffsetDateTime;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Cached {
    serial: String,
    #[serde(with = "time::serde::rfc3339")]
    start: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    end: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    chosen: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    next_check: OffsetDateTime,
}

fn state_file(name: &str) -> String {
    format!("ari/{name}.json")
}

/// Whether the CA answered ARI for the live certificate `name`.
pub fn answered(store: &Store, name: &str) -> bool {
    let serial = store.live_meta(name).ok().flatten().map(|m| m.serial);
    store
        .read_state(&state_file(name))
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice::<Cached>(&b).ok())
        .is_some_and(|c| Some(c.serial) == serial)
}

/// The ARI identifier of the live certificate (for `replaces`).
pub fn live_identifier(
    store: &Store,
    name: &str,
) -> Option<instant_acme::CertificateIdentifier<'static>> {
    let pem = std::fs::read_to_string(store.live_dir(name).join(crate::store::CERT)).ok()?;
    let der = crate::x509::pem_chain(&pem).ok()?.into_iter().next()?;
    let der = rustls_pki_types::CertificateDer::from(der);
    instant_acme::CertificateIdentifier::try_from(&der)
        .ok()
        .map(|id| id.into_owned())
}

/// When the CA wants the live certificate renewed, if it offers ARI.
pub async fn renewal_moment(
    issuer: &Issuer,
    store: &Store,
    meta: &Meta,
    now: OffsetDateTime,
) -> Option<OffsetDateTime> {
    let cached: Option<Cached> = store
        .read_state(&state_file(&meta.name))
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(|c: &Cached| c.serial == meta.serial);
    if let Some(c) = &cached
        && now < c.next_check
    {
        return Some(c.chosen);
    }
    let id = live_identifier(store, &meta.name)?;
    let (info, retry_after) = match issuer.account().renewal_info(&id).await {
        Ok(answer) => answer,
        Err(instant_acme::Error::Unsupported(_)) => return None,
        Err(e) => {
            tracing::warn!(event = "ari.failed", cert = %meta.name, error = %super::describe(&e));
            return cached.map(|c| c.chosen);
        }
    };
    let window = info.suggested_window;
    let chosen = match &cached {
        // Same window as before: keep the moment picked for it.
        Some(c) if c.start == window.start && c.end == window.end => c.chosen,
        _ => {
            let span = (window.end - window.start).max(time::Duration::ZERO);
            window.start + span * rand::random::<f64>()
        }
    };
    // Honour Retry-After, but look again at least daily.
    let wait = retry_after.clamp(Duration::from_secs(1), Duration::from_secs(86_400));
    let next = Cached {
        serial: meta.serial.clone(),
        start: window.start,
        end: window.end,
        chosen,
        next_check: now + wait,
    };
    tracing::info!(
        event = "ari.window",
        cert = %meta.name,
        start = %next.start,
        end = %next.end,
        chosen = %chosen,
        next_check = %next.next_check,
    );
    let json = serde_json::to_vec_pretty(&next).expect("serializes");
    if let Err(e) = store.write_state(&state_file(&meta.name), &json) {
        tracing::warn!(event = "ari.state.write_failed", cert = %meta.name, error = %e);
    }
    Some(chosen)
}
