//! Bytes to a watched certificate, whatever the source: PEM, DER or
//! PKCS#12, named by the source's template.

use super::{Problem, SourceError};
use crate::watch::Watched;
use std::collections::BTreeMap;
use std::path::Path;

const EXTENSIONS: [&str; 6] = ["pem", "crt", "cer", "der", "pfx", "p12"];

fn is_pkcs12(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".pfx") || lower.ends_with(".p12")
}

/// The leaf certificate DER of a PKCS#12 file.
fn pkcs12_leaf(bytes: &[u8], password: &crate::secret::Secret) -> Result<Vec<u8>, Problem> {
    use p12_keystore::{KeyStore, KeyStoreEntry, Pkcs12ImportPolicy};
    let store = KeyStore::from_pkcs12(bytes, password.expose(), Pkcs12ImportPolicy::Relaxed)
        .map_err(|e| Problem::Pkcs12(e.to_string()))?;
    if let Some((_, chain)) = store.private_key_chain()
        && let Some(c) = chain.certs().first()
    {
        return Ok(c.as_der().to_vec());
    }
    store
        .entries()
        .find_map(|(_, e)| match e {
            KeyStoreEntry::Certificate(c) => Some(c.as_der().to_vec()),
            _ => None,
        })
        .ok_or(Problem::EmptyPkcs12)
}

/// Bytes as a certificate: PKCS#12 (with `password`) by name, else PEM/DER.
pub(super) fn decode(
    name: &str,
    bytes: Vec<u8>,
    password: Option<&crate::secret::Secret>,
) -> Result<Vec<u8>, Problem> {
    if is_pkcs12(name) {
        let password = password.ok_or(Problem::NoPassword)?;
        pkcs12_leaf(&bytes, password)
    } else {
        Ok(bytes)
    }
}

pub(super) fn is_cert_name(name: &str) -> bool {
    name.rsplit_once('.')
        .is_some_and(|(_, ext)| EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()))
}

/// The leaf of a PEM bundle, or DER as it is.
pub fn parse(bytes: &[u8]) -> Result<crate::x509::LeafInfo, crate::x509::X509Error> {
    let der = if bytes.starts_with(b"-----") || bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        let text = String::from_utf8_lossy(bytes);
        crate::x509::pem_chain(&text)?.remove(0)
    } else {
        bytes.to_vec()
    };
    crate::x509::leaf_info(&der)
}

pub(super) fn subject_of(bytes: &[u8]) -> String {
    let der = if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        crate::x509::pem_chain(&String::from_utf8_lossy(bytes))
            .ok()
            .and_then(|mut c| (!c.is_empty()).then(|| c.remove(0)))
    } else {
        Some(bytes.to_vec())
    };
    der.and_then(|d| {
        use x509_parser::prelude::FromDer;
        x509_parser::certificate::X509Certificate::from_der(&d)
            .ok()
            .map(|(_, c)| c.subject().to_string())
    })
    .unwrap_or_default()
}

pub(super) fn name_for(template: &str, key: &str) -> String {
    let file = key.rsplit('/').next().unwrap_or(key);
    let stem = file.rsplit_once('.').map(|(s, _)| s).unwrap_or(file);
    let dir = key.rsplit('/').nth(1).unwrap_or_default();
    let mut vars = BTreeMap::new();
    vars.insert("stem".to_string(), stem.to_string());
    vars.insert("dir".to_string(), dir.to_string());
    vars.insert("file".to_string(), file.to_string());
    crate::template::render(template, &vars).unwrap_or_else(|_| stem.to_string())
}

pub(super) fn watched(
    name: String,
    source: String,
    labels: &BTreeMap<String, String>,
    bytes: &[u8],
) -> Result<Watched, SourceError> {
    let info = parse(bytes).map_err(|e| SourceError::at(&source, e))?;
    Ok(Watched {
        name,
        source,
        labels: labels.clone(),
        not_after: info.not_after,
        serial: info.serial,
        subject: subject_of(bytes),
    })
}

/// Every certificate file under `path` (or `path` itself), sorted.
pub(super) fn collect(path: &Path, out: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    if path.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(path)?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect(&p, out)?;
        } else if p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(is_cert_name)
        {
            out.push(p);
        }
    }
    Ok(())
}
