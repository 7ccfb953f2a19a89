//! Revoking the live certificate, and remembering that it was revoked so the
//! next run replaces it.

use super::{AcmeError, Issuer};
use crate::settings::Settings;
use crate::store::{Meta, Store};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Revoked {
    serial: String,
    reason: String,
    #[serde(with = "time::serde::rfc3339")]
    at: time::OffsetDateTime,
}

fn record(name: &str) -> String {
    format!("revoked/{name}.json")
}

/// Whether the live version of `meta` was revoked by certkeeper.
pub fn is_revoked(store: &Store, meta: &Meta) -> bool {
    store
        .read_state(&record(&meta.name))
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice::<Revoked>(&b).ok())
        .is_some_and(|r| r.serial == meta.serial)
}

/// A `--reason` that RFC 5280 does not name.
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown reason {0:?} (unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn)"
)]
pub struct UnknownReason(pub String);

/// Parses a revocation reason as `certkeeper revoke --reason` takes it.
pub fn parse_reason(text: &str) -> Result<instant_acme::RevocationReason, UnknownReason> {
    use instant_acme::RevocationReason as R;
    Ok(match text {
        "unspecified" => R::Unspecified,
        "keyCompromise" => R::KeyCompromise,
        "affiliationChanged" => R::AffiliationChanged,
        "superseded" => R::Superseded,
        "cessationOfOperation" => R::CessationOfOperation,
        "privilegeWithdrawn" => R::PrivilegeWithdrawn,
        other => return Err(UnknownReason(other.to_string())),
    })
}

/// Revokes the live certificate `name` at the CA that issued it.
pub async fn revoke(
    settings: &Settings,
    store: &Store,
    name: &str,
    reason: Option<&str>,
) -> Result<Meta, AcmeError> {
    let fail = |message: String| AcmeError::Step {
        step: "revokeCert",
        message,
        ended: super::Ended::Other,
    };
    let meta = store
        .live_meta(name)
        .map_err(|e| fail(e.to_string()))?
        .ok_or_else(|| fail(format!("no live certificate named {name:?}")))?;
    if meta.issuer == crate::config::EXTERNAL {
        return Err(fail(format!(
            "{name:?} was signed by a CA without ACME (imported with `csr import`): ask that CA to revoke serial {}",
            meta.serial
        )));
    }
    let (issuer_name, acme) = settings
        .issuers
        .iter()
        .find(|(_, i)| i.directory_url == meta.issuer)
        .ok_or_else(|| {
            fail(format!(
                "the CA that issued {name:?} ({}) is not in the settings",
                meta.issuer
            ))
        })?;
    let reason_code = reason
        .map(parse_reason)
        .transpose()
        .map_err(|e| fail(e.to_string()))?;
    let issuer = Issuer::load_or_create(issuer_name, acme, store).await?;
    let pem = std::fs::read_to_string(store.live_dir(name).join(crate::store::CERT))
        .map_err(|e| fail(e.to_string()))?;
    let der = crate::x509::pem_chain(&pem).map_err(|e| fail(e.to_string()))?;
    issuer.revoke(&der[0], reason_code).await?;
    let json = serde_json::to_vec_pretty(&Revoked {
        serial: meta.serial.clone(),
        reason: reason.unwrap_or("unspecified").to_string(),
        at: time::OffsetDateTime::now_utc(),
    })
    .expect("serializes");
    store
        .write_state(&record(name), &json)
        .map_err(|e| fail(format!("revoked, but could not record it: {e}")))?;
    tracing::info!(event = "cert.revoked", cert = name, serial = %meta.serial, reason = reason.unwrap_or("unspecified"));
    Ok(meta)
}
