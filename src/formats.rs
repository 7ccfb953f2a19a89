//! Files derived from a live set on request: a PKCS#12 bundle and a
//! fingerprints file. Both are added to the live version's directory, so
//! they are published with the set and archived with it.

use crate::config::Pkcs12Spec;
use crate::secret::Secret;
use crate::store::{CERT, CHAIN, FINGERPRINTS, P12, PRIVKEY, Store};
use md5::Md5;
use p12_keystore::{KeyStore, Pkcs12ImportPolicy};
use sha1::Sha1;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("PKCS#12 for {cert}: {message}")]
    Pkcs12 { cert: String, message: String },
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
}

/// What `openssl x509 -noout -fingerprint -sha256|-sha1|-md5` print, one
/// per line, and the bare upper-case MD5 monit's `certmd5` compares.
pub fn fingerprints(der: &[u8]) -> String {
    let md5 = <Md5 as md5::Digest>::digest(der);
    format!(
        "sha256 Fingerprint={}\nsha1 Fingerprint={}\nmd5 Fingerprint={}\nmonit certmd5 {}\n",
        crate::x509::colon_hex(&Sha256::digest(der)),
        crate::x509::colon_hex(&<Sha1 as sha1::Digest>::digest(der)),
        crate::x509::colon_hex(&md5),
        md5.iter().map(|b| format!("{b:02X}")).collect::<String>(),
    )
}

/// Whether `p12` opens with `password` and holds `alias` for `leaf`.
fn p12_current(p12: &[u8], password: &Secret, alias: &str, leaf: &[u8]) -> bool {
    let Ok(store) = KeyStore::from_pkcs12(p12, password.expose(), Pkcs12ImportPolicy::Strict)
    else {
        return false;
    };
    store.private_key_chain().is_some_and(|(a, chain)| {
        a == alias && chain.certs().first().is_some_and(|c| c.as_der() == leaf)
    })
}

/// The options a stored `cert.p12` was made with; the password is checked
/// by opening it, never stored.
fn p12_options(spec: &Pkcs12Spec) -> String {
    format!(
        "alias={} legacy={} trusted_chain={}",
        spec.alias, spec.legacy, spec.trusted_chain
    )
}

/// Brings the derived files of `name`'s live set in line with what the
/// certificate asks for: creates missing or outdated ones, removes ones no
/// longer wanted. `password` is the PKCS#12 password when `pkcs12` is set.
pub fn ensure(
    store: &Store,
    name: &str,
    pkcs12_spec: Option<&Pkcs12Spec>,
    password: Option<&Secret>,
    want_fingerprints: bool,
) -> Result<(), FormatError> {
    let dir = store.live_dir(name);
    let read = |f: &str| std::fs::read(dir.join(f)).ok();
    let cert_pem = String::from_utf8_lossy(&read(CERT).unwrap_or_default()).into_owned();
    let p12_err = |message: String| FormatError::Pkcs12 {
        cert: name.to_string(),
        message,
    };
    let leaf = crate::x509::pem_chain(&cert_pem)
        .map_err(|e| p12_err(format!("live cert.pem: {e}")))?
        .remove(0);

    let fp = want_fingerprints.then(|| fingerprints(&leaf));
    if read(FINGERPRINTS).as_deref() != fp.as_deref().map(str::as_bytes) {
        store.set_derived(name, FINGERPRINTS, fp.as_deref().map(str::as_bytes))?;
    }

    let options_file = format!("formats/{name}.p12");
    match (pkcs12_spec, password) {
        (Some(spec), Some(password)) => {
            let stored_options = store.read_state(&options_file).ok().flatten();
            let current = read(P12).is_some_and(|p| p12_current(&p, password, &spec.alias, &leaf))
                && stored_options.as_deref() == Some(p12_options(spec).as_bytes());
            if !current {
                let chain_pem =
                    String::from_utf8_lossy(&read(CHAIN).unwrap_or_default()).into_owned();
                let mut ders = vec![leaf.clone()];
                ders.extend(crate::x509::pem_chain(&chain_pem).unwrap_or_default());
                let key_pem = zeroize::Zeroizing::new(read(PRIVKEY).unwrap_or_default());
                let key = crate::convert::private_key(&dir.join(PRIVKEY), &key_pem)
                    .map_err(|e| p12_err(e.to_string()))?;
                let trusted = if spec.trusted_chain {
                    crate::convert::ca_aliases(&ders[1..])
                } else {
                    Vec::new()
                };
                let bundle = crate::convert::Bundle {
                    key_pkcs8: key.pkcs8(),
                    chain: &ders,
                    alias: &spec.alias,
                    trusted: &trusted,
                    legacy: spec.legacy,
                };
                let p12 = crate::convert::pkcs12(&bundle, password)
                    .map_err(|e| p12_err(e.to_string()))?;
                store.set_derived(name, P12, Some(&p12))?;
                store.write_state(&options_file, p12_options(spec).as_bytes())?;
                tracing::info!(event = "format.pkcs12.written", cert = %name, alias = %spec.alias, legacy = spec.legacy);
            }
        }
        (Some(_), None) => return Err(p12_err("no password".into())),
        (None, _) => {
            if read(P12).is_some() {
                store.set_derived(name, P12, None)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_as_openssl_prints_them() {
        let der = b"not really a certificate";
        let text = fingerprints(der);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("sha256 Fingerprint="));
        assert_eq!(lines[0].len(), "sha256 Fingerprint=".len() + 32 * 3 - 1);
        assert!(lines[2].starts_with("md5 Fingerprint="));
        let monit = lines[3].strip_prefix("monit certmd5 ").unwrap();
        assert_eq!(monit, lines[2]["md5 Fingerprint=".len()..].replace(':', ""));
        assert!(
            monit
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        );
    }
}
