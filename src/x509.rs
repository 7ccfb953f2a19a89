//! Reading what matters out of issued certificates: validity, serial, names,
//! fingerprint. Only parsing; no trust decisions are made here.

use ::time::OffsetDateTime;
use sha2::{Digest, Sha256};
use x509_parser::prelude::*;

#[derive(Debug, thiserror::Error)]
pub enum X509Error {
    #[error("no certificate found in PEM data")]
    Empty,
    #[error("invalid PEM: {0}")]
    Pem(String),
    #[error("invalid certificate: {0}")]
    Der(String),
}

/// Facts about a leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafInfo {
    /// Upper-case hex, no separators.
    pub serial: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub dns_names: Vec<String>,
    /// SHA-256 of the DER, upper-case hex with colons (as `openssl x509 -fingerprint` prints).
    pub sha256: String,
}

/// Splits a PEM bundle into DER certificates, in order.
pub fn pem_chain(pem: &str) -> Result<Vec<Vec<u8>>, X509Error> {
    let mut out = Vec::new();
    for item in Pem::iter_from_buffer(pem.as_bytes()) {
        let item = item.map_err(|e| X509Error::Pem(e.to_string()))?;
        if item.label == "CERTIFICATE" {
            out.push(item.contents);
        }
    }
    if out.is_empty() {
        return Err(X509Error::Empty);
    }
    Ok(out)
}

pub fn leaf_info(der: &[u8]) -> Result<LeafInfo, X509Error> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| X509Error::Der(e.to_string()))?;
    let validity = cert.validity();
    let mut dns_names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(n) = name {
                dns_names.push(n.to_string());
            }
        }
    }
    Ok(LeafInfo {
        serial: cert
            .raw_serial_as_string()
            .replace(':', "")
            .to_ascii_uppercase(),
        not_before: validity.not_before.to_datetime(),
        not_after: validity.not_after.to_datetime(),
        dns_names,
        sha256: colon_hex(&Sha256::digest(der)),
    })
}

/// `AB:CD:...` formatting used by openssl for fingerprints.
pub fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Lower-case hex of SHA-256, used to compare file contents.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_self_signed_cert() {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["a.example.test".into(), "*.example.test".into()])
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        let ders = pem_chain(&cert.pem()).unwrap();
        assert_eq!(ders.len(), 1);
        let info = leaf_info(&ders[0]).unwrap();
        assert_eq!(info.dns_names, vec!["a.example.test", "*.example.test"]);
        assert!(info.not_after > info.not_before);
        assert_eq!(info.sha256.len(), 32 * 3 - 1);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(matches!(pem_chain("hello"), Err(X509Error::Empty)));
        let bad = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let ders = pem_chain(bad).unwrap();
        assert!(leaf_info(&ders[0]).is_err());
    }
}
