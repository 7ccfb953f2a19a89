//! Certificates from CAs without ACME (MESH, partner mTLS). The key and the
//! CSR are made here and the key never leaves the state dir; a person sends
//! the CSR to the CA; the signed certificate comes back through `import`,
//! which checks it against the pending key, subject and chain before it
//! becomes a managed certificate like an ACME one (`issuer: external`).
//!
//! State: `csr/<name>/{privkey.pem,csr.pem,request.json}` while a request
//! is pending; `csr/<name>/last-request.json` after its import, so the
//! reminder before expiry can give the exact command for the next one.

use crate::convert::{self, ConvertError};
use crate::pki::KeyType;
use crate::secret::Secret;
use crate::store::{Issued, Meta, Store, StoreError};
use ::time::OffsetDateTime;
use serde::{Deserialize, Serialize};
use std::path::Path;
use x509_parser::prelude::{FromDer, X509Certificate, X509CertificationRequest, X509Name};

const PENDING_KEY: &str = "privkey.pem";
const PENDING_CSR: &str = "csr.pem";
const PENDING_REQUEST: &str = "request.json";
const LAST_REQUEST: &str = "last-request.json";

#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    #[error("{0}")]
    Invalid(String),
    #[error(
        "a different CSR for {name} is pending since {since} ({subject}); import its certificate first, or pass --replace to discard its key"
    )]
    PendingDiffers {
        name: String,
        since: String,
        subject: String,
    },
    #[error("no pending CSR for {0}: run `certkeeper csr new --name {0}` first")]
    NoPending(String),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Convert(#[from] ConvertError),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// What a CSR asks for, and the command that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub name: String,
    pub common_name: String,
    #[serde(default)]
    pub sans: Vec<String>,
    pub key_type: KeyType,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The command line that made it, to run again for the next certificate.
    pub command: String,
}

impl Request {
    pub fn subject(&self) -> String {
        let mut s = format!("CN={}", self.common_name);
        if !self.sans.is_empty() {
            s.push_str(&format!(", SANs {}", self.sans.join(",")));
        }
        s
    }

    /// The names of the certificate, CN first.
    pub fn names(&self) -> Vec<String> {
        let cn = self.common_name.to_ascii_lowercase();
        let mut names = vec![cn.clone()];
        names.extend(self.sans.iter().filter(|s| **s != cn).cloned());
        names
    }
}

fn dir(name: &str) -> String {
    format!("csr/{name}")
}

/// The request waiting for its certificate, if any.
pub fn pending(store: &Store, name: &str) -> Option<Request> {
    read_request(store, &format!("{}/{PENDING_REQUEST}", dir(name)))
}

/// The request whose certificate was imported last, if any.
pub fn last(store: &Store, name: &str) -> Option<Request> {
    read_request(store, &format!("{}/{LAST_REQUEST}", dir(name)))
}

fn read_request(store: &Store, rel: &str) -> Option<Request> {
    let bytes = store.read_state(rel).ok().flatten()?;
    serde_json::from_slice(&bytes).ok()
}

/// A CSR ready to send, and whether it was already pending (same subject,
/// same key: running `csr new` twice prints the same CSR).
#[derive(Debug)]
pub struct NewCsr {
    pub pem: String,
    pub reused: bool,
}

pub fn new_request(store: &Store, request: &Request, replace: bool) -> Result<NewCsr, CsrError> {
    let base = dir(&request.name);
    if let Some(existing) = pending(store, &request.name) {
        let same = existing.common_name == request.common_name
            && existing.sans == request.sans
            && existing.key_type == request.key_type;
        let csr = store.read_state(&format!("{base}/{PENDING_CSR}"))?;
        let key = store.read_state(&format!("{base}/{PENDING_KEY}"))?;
        match (same, replace, csr, key) {
            (true, false, Some(pem), Some(_)) => {
                return Ok(NewCsr {
                    pem: String::from_utf8_lossy(&pem).into_owned(),
                    reused: true,
                });
            }
            (false, false, ..) => {
                return Err(CsrError::PendingDiffers {
                    name: request.name.clone(),
                    since: rfc3339(existing.created_at),
                    subject: existing.subject(),
                });
            }
            _ => {}
        }
    }
    let key =
        crate::pki::generate_key(request.key_type).map_err(|e| CsrError::Invalid(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(request.sans.clone())
        .map_err(|e| CsrError::Invalid(format!("CSR: {e}")))?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, request.common_name.clone());
    params.distinguished_name = dn;
    let csr = params
        .serialize_request(&key)
        .map_err(|e| CsrError::Invalid(format!("CSR: {e}")))?;
    let pem = csr
        .pem()
        .map_err(|e| CsrError::Invalid(format!("CSR: {e}")))?;
    // Key first: a CSR on disk always has its key beside it.
    let key_pem = Secret::new(key.serialize_pem());
    store.write_state(
        &format!("{base}/{PENDING_KEY}"),
        key_pem.expose().as_bytes(),
    )?;
    store.write_state(&format!("{base}/{PENDING_CSR}"), pem.as_bytes())?;
    store.write_state(
        &format!("{base}/{PENDING_REQUEST}"),
        &serde_json::to_vec_pretty(request).expect("request serializes"),
    )?;
    tracing::info!(event = "csr.created", cert = %request.name, subject = %request.subject(), key_type = %request.key_type);
    Ok(NewCsr { pem, reused: false })
}

/// A signed certificate, checked and stored.
#[derive(Debug)]
pub struct Imported {
    pub meta: Meta,
    /// Subjects of `--chain` certificates that were not on the path.
    pub unused: Vec<String>,
    /// Subjects of the chain, leaf's issuer first, root last.
    pub chain: Vec<String>,
}

/// Checks `cert_file` (and the CA certificates in `chain_files`) against the
/// pending request of `name` and stores it as the live certificate. Nothing
/// is stored unless every check passes.
pub fn import(
    store: &Store,
    name: &str,
    cert_file: &Path,
    chain_files: &[&Path],
    config_commit: &str,
    now: OffsetDateTime,
) -> Result<Imported, CsrError> {
    let base = dir(name);
    let request = pending(store, name).ok_or_else(|| CsrError::NoPending(name.to_string()))?;
    let key_pem = zeroize::Zeroizing::new(
        store
            .read_state(&format!("{base}/{PENDING_KEY}"))?
            .ok_or_else(|| CsrError::NoPending(name.to_string()))?,
    );
    let key_path = store.root().join(&base).join(PENDING_KEY);
    let key = convert::private_key(&key_path, &key_pem)?;
    let csr_pem = store
        .read_state(&format!("{base}/{PENDING_CSR}"))?
        .ok_or_else(|| CsrError::NoPending(name.to_string()))?;

    let mut certs = convert::certificates(cert_file, &convert::read(cert_file)?)?;
    let leaf = certs.remove(0);
    let mut pool = certs;
    for f in chain_files {
        pool.extend(convert::certificates(f, &convert::read(f)?)?);
    }
    let refuse = |m: String| CsrError::Refused(format!("{}: {m}", cert_file.display()));
    if !convert::key_matches(&key.pair, &leaf) {
        return Err(refuse(format!(
            "its public key does not match the key of the pending CSR for {name} (made {}); it was signed for another request",
            rfc3339(request.created_at)
        )));
    }
    let (_, cert) = X509Certificate::from_der(&leaf)
        .map_err(|e| refuse(format!("corrupt certificate ({e})")))?;
    let wanted = csr_subject(&csr_pem)?;
    let got = name_attributes(cert.subject());
    if wanted != got {
        return Err(refuse(format!(
            "its subject {:?} differs from the CSR's {:?}",
            cert.subject().to_string(),
            wanted
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let validity = cert.validity();
    if validity.not_after.to_datetime() <= now {
        return Err(refuse(format!(
            "it expired on {}",
            rfc3339(validity.not_after.to_datetime())
        )));
    }
    let (path, unused) = convert::build_chain(&leaf, &pool).map_err(|e| refuse(e.to_string()))?;
    let info = crate::x509::leaf_info(&leaf).map_err(|e| refuse(e.to_string()))?;
    let missing: Vec<&String> = request
        .sans
        .iter()
        .filter(|s| !info.dns_names.contains(s))
        .collect();
    if !missing.is_empty() {
        tracing::warn!(event = "csr.import.sans_missing", cert = %name, missing = ?missing);
    }
    let issued = Issued {
        cert_pem: convert::pem("CERTIFICATE", &leaf),
        chain_pem: path
            .iter()
            .map(|c| convert::pem("CERTIFICATE", c))
            .collect(),
        key_pem: Secret::new(String::from_utf8_lossy(&key_pem).into_owned()),
    };
    let mut meta = Meta {
        name: name.to_string(),
        serial: info.serial,
        not_before: info.not_before,
        not_after: info.not_after,
        domains: request.names(),
        sans: info.dns_names,
        key_type: request.key_type,
        sha256: info.sha256,
        issuer: crate::config::EXTERNAL.to_string(),
        config_commit: config_commit.to_string(),
        issued_at: now,
        version: 0,
        profile: None,
        generation: None,
    };
    store.install(&issued, &mut meta)?;
    // The request is done: keep it for the next reminder, drop the key
    // copy (the live set holds the key now).
    store.write_state(
        &format!("{base}/{LAST_REQUEST}"),
        &serde_json::to_vec_pretty(&request).expect("request serializes"),
    )?;
    for f in [PENDING_KEY, PENDING_CSR, PENDING_REQUEST] {
        let p = store.root().join(&base).join(f);
        if let Err(e) = std::fs::remove_file(&p)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(event = "csr.cleanup.failed", path = %p.display(), error = %e);
        }
    }
    tracing::info!(event = "csr.imported", cert = %name, serial = %meta.serial, not_after = %rfc3339(meta.not_after), version = meta.version);
    Ok(Imported {
        meta,
        unused: unused.iter().map(|c| convert::subject(c)).collect(),
        chain: path.iter().map(|c| convert::subject(c)).collect(),
    })
}

/// (attribute, value) pairs of a name, sorted: CAs re-encode strings
/// (UTF8String to PrintableString) and may reorder, so compare meaning.
fn name_attributes(name: &X509Name<'_>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = name
        .iter_attributes()
        .map(|a| {
            let key = oid_registry::format_oid(a.attr_type());
            let value = a.as_str().map(str::to_string).unwrap_or_else(|_| {
                a.attr_value()
                    .data
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect()
            });
            (key, value)
        })
        .collect();
    out.sort();
    out
}

fn csr_subject(pem: &[u8]) -> Result<Vec<(String, String)>, CsrError> {
    let invalid = |e: &dyn std::fmt::Display| CsrError::Invalid(format!("pending CSR: {e}"));
    let (_, p) = x509_parser::pem::parse_x509_pem(pem).map_err(|e| invalid(&e))?;
    let (_, csr) = X509CertificationRequest::from_der(&p.contents).map_err(|e| invalid(&e))?;
    Ok(name_attributes(&csr.certification_request_info.subject))
}

/// What to tell a person when an external certificate is due: the command
/// that made the last request, then the import.
pub fn renew_command(store: &Store, name: &str) -> String {
    let import = format!(
        "certkeeper csr import --name {name} --cert SIGNED.pem --chain SUBCA.pem --chain ROOTCA.pem"
    );
    if let Some(p) = pending(store, name) {
        return format!(
            "the CSR made {} is waiting for the CA's certificate; then run: {import}",
            rfc3339(p.created_at)
        );
    }
    let new = last(store, name)
        .map(|r| r.command)
        .unwrap_or_else(|| format!("certkeeper csr new --name {name}"));
    format!("run `{new}`, send the CSR to the CA, then `{import}`")
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

mod oid_registry {
    use x509_parser::der_parser::oid::Oid;
    use x509_parser::oid_registry::{
        OID_X509_COMMON_NAME, OID_X509_COUNTRY_NAME, OID_X509_LOCALITY_NAME,
        OID_X509_ORGANIZATION_NAME, OID_X509_ORGANIZATIONAL_UNIT, OID_X509_STATE_OR_PROVINCE_NAME,
    };

    /// The short name openssl uses, else the dotted OID.
    pub fn format_oid(oid: &Oid<'_>) -> String {
        let names = [
            (OID_X509_COMMON_NAME, "CN"),
            (OID_X509_COUNTRY_NAME, "C"),
            (OID_X509_LOCALITY_NAME, "L"),
            (OID_X509_STATE_OR_PROVINCE_NAME, "ST"),
            (OID_X509_ORGANIZATION_NAME, "O"),
            (OID_X509_ORGANIZATIONAL_UNIT, "OU"),
        ];
        names
            .iter()
            .find(|(o, _)| o == oid)
            .map(|(_, n)| n.to_string())
            .unwrap_or_else(|| oid.to_id_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_render_and_are_checked() {
        let vars: std::collections::BTreeMap<String, String> =
            [("identifier", "RRR01HC"), ("ods", "RRR01")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let (cn, sans) = crate::config::domain::render_names(
            "{identifier}.{ods}.mesh-client.nhs.uk",
            &[],
            &vars,
        )
        .unwrap();
        assert_eq!(cn, "RRR01HC.RRR01.mesh-client.nhs.uk");
        assert!(sans.is_empty());
        let err =
            crate::config::domain::render_names("{identifer}.nhs.uk", &[], &vars).unwrap_err();
        assert!(err.to_string().starts_with("cn: template"), "{err}");
        assert!(matches!(
            err.reason,
            crate::config::domain::NameReason::Template(_)
        ));
        let err = crate::config::domain::render_names("bad_name!.nhs.uk", &[], &vars).unwrap_err();
        assert_eq!(err.field, "cn");
        assert!(matches!(
            err.reason,
            crate::config::domain::NameReason::Domain(_)
        ));
    }

    #[test]
    fn the_reminder_carries_the_command_that_made_the_last_request() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state")).unwrap();
        assert!(renew_command(&store, "m").contains("certkeeper csr new --name m`"));
        let request = Request {
            name: "m".into(),
            common_name: "a.example.com".into(),
            sans: vec![],
            key_type: KeyType::Rsa2048,
            created_at: OffsetDateTime::UNIX_EPOCH,
            command: "certkeeper csr new --name m --cn 'a.example.com'".into(),
        };
        store
            .write_state(
                "csr/m/last-request.json",
                &serde_json::to_vec(&request).unwrap(),
            )
            .unwrap();
        assert!(renew_command(&store, "m").contains("--cn 'a.example.com'"));
    }
}
