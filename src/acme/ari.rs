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

/// A moment `r` (0..1) of the way through the window. Whatever the CA
/// sends — an inverted window, one spanning millennia — this never panics:
/// the arithmetic saturates to the window's start.
pub(crate) fn pick(start: OffsetDateTime, end: OffsetDateTime, r: f64) -> OffsetDateTime {
    let span = (end - start).max(time::Duration::ZERO);
    let r = if r.is_finite() {
        r.clamp(0.0, 1.0)
    } else {
        0.0
    };
    time::Duration::checked_seconds_f64(span.as_seconds_f64() * r)
        .and_then(|offset| start.checked_add(offset))
        .unwrap_or(start)
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
        _ => pick(window.start, window.end, rand::random::<f64>()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// Windows from the CA, sane and absurd: the pick stays inside a sane
    /// window and never panics on an absurd one. Seeded.
    #[test]
    fn any_window_gives_a_moment_without_panicking() {
        let min = time::PrimitiveDateTime::MIN.assume_utc();
        let max = time::PrimitiveDateTime::MAX.assume_utc();
        let now = OffsetDateTime::now_utc();
        let edges = [min, max, now, OffsetDateTime::UNIX_EPOCH];
        let mut rng = StdRng::seed_from_u64(9773);
        for _ in 0..20_000 {
            let t = |rng: &mut StdRng| {
                if rng.random_bool(0.2) {
                    edges[rng.random_range(0..edges.len())]
                } else {
                    let secs = rng.random_range(-2_000_000_000_000i64..2_000_000_000_000);
                    OffsetDateTime::from_unix_timestamp(secs).unwrap_or(now)
                }
            };
            let (start, end) = (t(&mut rng), t(&mut rng));
            let r = match rng.random_range(0..5) {
                0 => f64::NAN,
                1 => f64::INFINITY,
                2 => -1.0,
                _ => rng.random::<f64>(),
            };
            let chosen = pick(start, end, r);
            if start <= end {
                assert!(
                    chosen >= start && chosen <= end,
                    "{start} {end} {r} -> {chosen}"
                );
            } else {
                assert_eq!(chosen, start);
            }
        }
    }
}
