//! Reading what people hand us (PEM or DER certificates, private keys,
//! PKCS#12/PFX bundles) and writing the formats their runbooks need: PEM
//! sets, PKCS#12 and Java-ready keystores. Every reader names the file and
//! says what it found instead; every writer writes all of its files or none.

use crate::secret::Secret;
use p12_keystore::{
    Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, Pkcs12Archive,
    PrivateKey, PrivateKeyChain,
};
use sha1::Sha1;
use std::path::{Path, PathBuf};
use x509_parser::prelude::*;

mod chain;
pub use chain::{ChainError, ChainPath, build_chain, ca_aliases};

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// A file that is not what it should be; `what` names it for the user.
    #[error("{path}: {message}")]
    Input { path: String, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {message}")]
    Output { path: String, message: String },
}

fn input(path: &Path, message: impl Into<String>) -> ConvertError {
    ConvertError::Input {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Reads a file, naming it in the error.
pub fn read(path: &Path) -> Result<Vec<u8>, ConvertError> {
    std::fs::read(path).map_err(|e| input(path, format!("cannot read: {e}")))
}

fn looks_like_pem(bytes: &[u8]) -> bool {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace());
    start.is_some_and(|s| bytes[s..].starts_with(b"-----BEGIN "))
}

/// The certificates in a PEM bundle or a single DER certificate, in order.
pub fn certificates(path: &Path, bytes: &[u8]) -> Result<Vec<Vec<u8>>, ConvertError> {
    if looks_like_pem(bytes) {
        let mut out = Vec::new();
        let mut labels = Vec::new();
        for item in Pem::iter_from_buffer(bytes) {
            let item = item.map_err(|e| input(path, format!("truncated or corrupt PEM ({e})")))?;
            if item.label == "CERTIFICATE" {
                X509Certificate::from_der(&item.contents).map_err(|e| {
                    input(
                        path,
                        format!(
                            "certificate {} is corrupt or truncated ({e})",
                            out.len() + 1
                        ),
                    )
                })?;
                out.push(item.contents);
            } else {
                labels.push(item.label);
            }
        }
        if out.is_empty() {
            return Err(input(
                path,
                if labels.iter().any(|l| l.contains("PRIVATE KEY")) {
                    "holds a private key, not a certificate".to_string()
                } else if labels.iter().any(|l| l.contains("CERTIFICATE REQUEST")) {
                    "holds a certificate request (CSR), not a signed certificate".to_string()
                } else {
                    format!("no CERTIFICATE block (found {labels:?})")
                },
            ));
        }
        return Ok(out);
    }
    if bytes.first() == Some(&0x30) {
        match X509Certificate::from_der(bytes) {
            Ok(([], _)) => return Ok(vec![bytes.to_vec()]),
            Ok(_) => return Err(input(path, "DER certificate followed by extra bytes")),
            Err(_) if is_pkcs12(bytes) => {
                return Err(input(
                    path,
                    "is a PKCS#12/PFX bundle; turn it into PEM first with `certkeeper convert --p12 FILE --to pem`",
                ));
            }
            Err(e) => return Err(input(path, format!("not a valid DER certificate ({e})"))),
        }
    }
    if bytes.is_empty() {
        return Err(input(path, "is empty"));
    }
    Err(input(path, "neither a PEM nor a DER certificate"))
}

/// PFX: SEQUENCE { INTEGER 3, ContentInfo SEQUENCE { OID pkcs7-data, … } }.
fn is_pkcs12(bytes: &[u8]) -> bool {
    use x509_parser::der_parser::{ber::BerObjectContent, parse_der};
    let Ok((_, obj)) = parse_der(bytes) else {
        return false;
    };
    let BerObjectContent::Sequence(items) = &obj.content else {
        return false;
    };
    let version_3 = items.first().is_some_and(|v| v.as_u32() == Ok(3));
    let content_info = items.get(1).is_some_and(|ci| {
        ci.as_sequence()
            .ok()
            .and_then(|s| s.first())
            .and_then(|oid| oid.as_oid().ok())
            .is_some_and(|oid| oid.to_id_string().starts_with("1.2.840.113549.1.7."))
    });
    version_3 && content_info
}

/// A private key as PKCS#8 DER (what PKCS#12 and `privkey.pem` hold), and
/// the key pair it makes, for matching against certificates.
pub struct PrivateKeyInput {
    /// Wiped on drop.
    pkcs8: zeroize::Zeroizing<Vec<u8>>,
    pub pair: rcgen::KeyPair,
}

impl PrivateKeyInput {
    /// The only way to the key bytes; grep for it when auditing.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }
}

impl std::fmt::Debug for PrivateKeyInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKeyInput([redacted])")
    }
}

/// Reads a private key: PEM (PKCS#8, PKCS#1 RSA or SEC1 EC) or PKCS#8 DER.
/// Encrypted keys are refused with the openssl command that decrypts them.
pub fn private_key(path: &Path, bytes: &[u8]) -> Result<PrivateKeyInput, ConvertError> {
    use rustls_pki_types::PrivateKeyDer;
    use rustls_pki_types::pem::PemObject;
    let key = if looks_like_pem(bytes) {
        let labels: Vec<String> = Pem::iter_from_buffer(bytes)
            .filter_map(Result::ok)
            .map(|p| p.label)
            .collect();
        if labels.iter().any(|l| l == "ENCRYPTED PRIVATE KEY")
            || String::from_utf8_lossy(bytes).contains("Proc-Type: 4,ENCRYPTED")
        {
            return Err(input(
                path,
                "the private key is encrypted; decrypt it first (openssl pkey -in KEY -out KEY.pem)",
            ));
        }
        PrivateKeyDer::from_pem_slice(bytes).map_err(|e| {
            input(
                path,
                if labels.iter().any(|l| l == "CERTIFICATE") {
                    "holds a certificate, not a private key".to_string()
                } else {
                    format!("no readable private key ({e:?})")
                },
            )
        })?
    } else {
        PrivateKeyDer::try_from(bytes)
            .map_err(|_| input(path, "neither a PEM nor a DER private key"))?
    };
    let pair = rcgen::KeyPair::try_from(&key)
        .map_err(|e| input(path, format!("unsupported or corrupt private key ({e})")))?;
    let pkcs8 = match &key {
        PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
        PrivateKeyDer::Pkcs1(k) => wrap_pkcs8(&RSA_ALGORITHM, k.secret_pkcs1_der()),
        PrivateKeyDer::Sec1(k) => {
            let curve = match pair.algorithm() {
                a if a == &rcgen::PKCS_ECDSA_P256_SHA256 => P256_ALGORITHM.as_slice(),
                a if a == &rcgen::PKCS_ECDSA_P384_SHA384 => P384_ALGORITHM.as_slice(),
                _ => {
                    return Err(input(
                        path,
                        "unsupported EC curve (P-256 and P-384 are supported)",
                    ));
                }
            };
            wrap_pkcs8(curve, k.secret_sec1_der())
        }
        _ => return Err(input(path, "unsupported private key format")),
    };
    Ok(PrivateKeyInput {
        pkcs8: zeroize::Zeroizing::new(pkcs8),
        pair,
    })
}

/// AlgorithmIdentifier DER for rsaEncryption with NULL parameters.
pub(crate) const RSA_ALGORITHM: [u8; 15] = [
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];
/// id-ecPublicKey with prime256v1.
const P256_ALGORITHM: [u8; 21] = [
    0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
    0xce, 0x3d, 0x03, 0x01, 0x07,
];
/// id-ecPublicKey with secp384r1.
const P384_ALGORITHM: [u8; 18] = [
    0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b, 0x81, 0x04,
    0x00, 0x22,
];

fn der_length(len: usize) -> Vec<u8> {
    if len < 0x80 {
        vec![len as u8]
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        let mut out = vec![0x80 | bytes.len() as u8];
        out.extend(bytes);
        out
    }
}

pub(crate) fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let length = der_length(content.len());
    let mut out = Vec::with_capacity(1 + length.len() + content.len());
    out.push(tag);
    out.extend(length);
    out.extend_from_slice(content);
    out
}

/// PKCS#8 PrivateKeyInfo around a PKCS#1 or SEC1 key.
fn wrap_pkcs8(algorithm: &[u8], key: &[u8]) -> Vec<u8> {
    // Sized once so that no reallocation leaves a copy of the key behind.
    let inner = zeroize::Zeroizing::new(der_tlv(0x04, key));
    let mut body = zeroize::Zeroizing::new(Vec::with_capacity(3 + algorithm.len() + inner.len()));
    body.extend_from_slice(&[0x02, 0x01, 0x00]);
    body.extend_from_slice(algorithm);
    body.extend_from_slice(&inner);
    der_tlv(0x30, &body)
}

/// Whether `cert_der`'s public key is the public half of `pair`.
pub fn key_matches(pair: &rcgen::KeyPair, cert_der: &[u8]) -> bool {
    use rcgen::PublicKeyData;
    X509Certificate::from_der(cert_der)
        .is_ok_and(|(_, c)| c.public_key().subject_public_key.data.as_ref() == pair.der_bytes())
}

/// PEM text of one DER object.
pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The subject as openssl prints it with `-nameopt RFC2253`-like order.
pub fn subject(der: &[u8]) -> String {
    X509Certificate::from_der(der)
        .map(|(_, c)| c.subject().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// What goes into a PKCS#12 file.
pub struct Bundle<'a> {
    pub key_pkcs8: &'a [u8],
    /// Leaf first, then its chain.
    pub chain: &'a [Vec<u8>],
    pub alias: &'a str,
    /// CA certificates also stored as trusted entries (Java's
    /// `trustedCertEntry`), with their aliases.
    pub trusted: &'a [(String, Vec<u8>)],
    pub legacy: bool,
}

/// A PKCS#12 file that cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum Pkcs12Error {
    #[error("private key: {0}")]
    Key(String),
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("no certificate")]
    NoCertificate,
    #[error("{0}")]
    Write(String),
}

/// A PKCS#12 file: AES-256 (PBES2, SHA-256 MAC), or 3DES with a SHA-1 MAC
/// for `legacy`.
pub fn pkcs12(bundle: &Bundle<'_>, password: &Secret) -> Result<Vec<u8>, Pkcs12Error> {
    let key =
        PrivateKey::from_der(bundle.key_pkcs8).map_err(|e| Pkcs12Error::Key(e.to_string()))?;
    let certs = bundle
        .chain
        .iter()
        .map(|d| Certificate::from_der(d).map_err(|e| Pkcs12Error::Certificate(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let leaf = bundle.chain.first().ok_or(Pkcs12Error::NoCertificate)?;
    // Java and openssl pair key and certificate by this id.
    let local_key_id = <Sha1 as sha1::Digest>::digest(leaf).to_vec();
    let mut store = KeyStore::new();
    store.add_entry(
        bundle.alias,
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(local_key_id, key, certs)),
    );
    for (alias, der) in bundle.trusted {
        let cert =
            Certificate::from_der(der).map_err(|e| Pkcs12Error::Certificate(e.to_string()))?;
        store.add_entry(alias, KeyStoreEntry::Certificate(cert));
    }
    let mut writer = store.writer(password.expose());
    if bundle.legacy {
        writer = writer
            .encryption_algorithm(EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc)
            .mac_algorithm(MacAlgorithm::HmacSha1);
    }
    writer
        .write()
        .map_err(|e| Pkcs12Error::Write(e.to_string()))
}

/// A PKCS#12 file taken apart: what `openssl pkcs12 -nocerts -nodes` and
/// `-clcerts -nokeys` (and `-cacerts -nokeys`) print.
pub struct PemSet {
    pub key: Secret,
    pub cert: String,
    /// The CA certificates, issuer after subject where they chain.
    pub chain: String,
    pub subject: String,
}

pub fn p12_to_pem(path: &Path, bytes: &[u8], password: &Secret) -> Result<PemSet, ConvertError> {
    if looks_like_pem(bytes) {
        return Err(input(
            path,
            "is PEM, not PKCS#12; to make a PKCS#12 file from PEM use `--cert`/`--key` with `--to p12`",
        ));
    }
    if !is_pkcs12(bytes) {
        return Err(input(
            path,
            if bytes.first() == Some(&0x30) && X509Certificate::from_der(bytes).is_ok() {
                "is a DER certificate, not a PKCS#12 bundle (it holds no key)"
            } else {
                "not a PKCS#12/PFX file (truncated or another format)"
            },
        ));
    }
    let archive = Pkcs12Archive::from_pkcs12(bytes, password.expose()).map_err(|e| {
        let text = e.to_string();
        input(
            path,
            if text.to_ascii_lowercase().contains("mac") {
                "wrong password (the PKCS#12 integrity check failed)".to_string()
            } else {
                format!("cannot open the PKCS#12 file: {text} (wrong password or corrupt file)")
            },
        )
    })?;
    let key_bag = match archive.keys.as_slice() {
        [] => return Err(input(path, "holds no private key")),
        [one] => one,
        more => {
            return Err(input(
                path,
                format!("holds {} private keys; only one is supported", more.len()),
            ));
        }
    };
    let key = private_key(path, key_bag.key.as_der())?;
    // A Java keystore holds its CA certificates twice (in the key entry's
    // chain and as trusted entries): once each is enough.
    let mut certs: Vec<Vec<u8>> = Vec::new();
    for c in &archive.certs {
        if !certs.iter().any(|d| d.as_slice() == c.cert.as_der()) {
            certs.push(c.cert.as_der().to_vec());
        }
    }
    let leaf_index = certs
        .iter()
        .position(|c| key_matches(&key.pair, c))
        .ok_or_else(|| input(path, "no certificate in it matches its private key"))?;
    let leaf = certs[leaf_index].clone();
    let pool: Vec<Vec<u8>> = certs
        .iter()
        .enumerate()
        .filter(|(i, c)| *i != leaf_index && **c != leaf)
        .map(|(_, c)| c.clone())
        .collect();
    // Order what chains; keep the rest (unrelated CAs) after it.
    let ordered = match build_chain(&leaf, &pool) {
        Ok((mut path, unused)) => {
            path.extend(unused);
            path
        }
        Err(_) => pool,
    };
    Ok(PemSet {
        key: Secret::new(pem("PRIVATE KEY", key.pkcs8())),
        cert: pem("CERTIFICATE", &leaf),
        chain: ordered.iter().map(|c| pem("CERTIFICATE", c)).collect(),
        subject: subject(&leaf),
    })
}

/// Writes every file or none: each goes to a temporary name beside its
/// destination first, and only when all are written are they renamed.
/// Existing files are refused unless `overwrite`.
pub fn write_all(files: &[(PathBuf, Vec<u8>, u32)], overwrite: bool) -> Result<(), ConvertError> {
    let out = |path: &Path, message: String| ConvertError::Output {
        path: path.display().to_string(),
        message,
    };
    if !overwrite && let Some((path, ..)) = files.iter().find(|(p, ..)| p.exists()) {
        return Err(out(
            path,
            "already exists (use --force to replace it)".into(),
        ));
    }
    let mut written: Vec<PathBuf> = Vec::new();
    let cleanup = |written: &[PathBuf]| {
        for t in written {
            let _ = std::fs::remove_file(t);
        }
    };
    for (path, bytes, mode) in files {
        let tmp = temp_name(path);
        if let Err(e) = write_new(&tmp, bytes, *mode) {
            let _ = std::fs::remove_file(&tmp);
            cleanup(&written);
            return Err(out(path, e.to_string()));
        }
        written.push(tmp);
    }
    for ((path, ..), tmp) in files.iter().zip(&written) {
        if let Err(e) = std::fs::rename(tmp, path) {
            cleanup(&written);
            return Err(out(path, e.to_string()));
        }
    }
    Ok(())
}

fn temp_name(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(
        ".{}.tmp-{}",
        name.unwrap_or_default(),
        std::process::id()
    ))
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests;
