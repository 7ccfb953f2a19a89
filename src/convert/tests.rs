use super::*;

#[test]
fn der_lengths() {
    assert_eq!(der_length(5), vec![5]);
    assert_eq!(der_length(0x80), vec![0x81, 0x80]);
    assert_eq!(der_length(0x1234), vec![0x82, 0x12, 0x34]);
}

#[test]
fn pkcs1_and_sec1_keys_become_pkcs8_that_parse() {
    for alg in [
        &rcgen::PKCS_ECDSA_P256_SHA256,
        &rcgen::PKCS_ECDSA_P384_SHA384,
    ] {
        let pair = rcgen::KeyPair::generate_for(alg).unwrap();
        let pem = pair.serialize_pem();
        let read = private_key(Path::new("k.pem"), pem.as_bytes()).unwrap();
        assert_eq!(read.pkcs8(), &pair.serialize_der());
    }
    let garbage = private_key(Path::new("k.pem"), b"hello");
    assert!(garbage.unwrap_err().to_string().starts_with("k.pem: "));
}

#[test]
fn certificates_name_what_they_found_instead() {
    let key = rcgen::KeyPair::generate().unwrap();
    let err = certificates(Path::new("c.pem"), key.serialize_pem().as_bytes()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "c.pem: holds a private key, not a certificate"
    );
    let cert = rcgen::CertificateParams::new(vec!["a.example.com".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let pem_text = cert.pem();
    let truncated = &pem_text[..pem_text.len() / 2];
    let err = certificates(Path::new("c.pem"), truncated.as_bytes()).unwrap_err();
    assert!(err.to_string().starts_with("c.pem: truncated"), "{err}");
    let der = certificates(Path::new("c.der"), cert.der()).unwrap();
    assert_eq!(der, vec![cert.der().to_vec()]);
    let err = certificates(Path::new("c.der"), &cert.der()[..100]).unwrap_err();
    assert!(err.to_string().contains("not a valid DER"), "{err}");
}

#[test]
fn write_all_leaves_nothing_when_one_file_fails() {
    let dir = tempfile::tempdir().unwrap();
    let ok = dir.path().join("a.pem");
    let bad = dir.path().join("missing-dir").join("b.pem");
    let err = write_all(
        &[
            (ok.clone(), b"a".to_vec(), 0o644),
            (bad, b"b".to_vec(), 0o600),
        ],
        false,
    );
    assert!(err.is_err());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// Random damage to valid inputs — bit flips, truncation, insertions,
/// PEM bodies cut mid-line — never panics a reader; each answers with a
/// certificate, a key or an error naming the file. Seeded and bounded
/// for CI; `fuzz/` has the unbounded targets.
#[test]
fn damaged_inputs_never_panic() {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["a.example.com".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let password = Secret::new("pw".into());
    let chain = vec![cert.der().to_vec()];
    let p12 = pkcs12(
        &Bundle {
            key_pkcs8: &key.serialize_der(),
            chain: &chain,
            alias: "a",
            trusted: &[],
            legacy: false,
        },
        &password,
    )
    .unwrap();
    let seeds: [(&str, Vec<u8>); 5] = [
        ("pem", cert.pem().into_bytes()),
        ("der", cert.der().to_vec()),
        ("key", key.serialize_pem().into_bytes()),
        ("keyder", key.serialize_der()),
        ("p12", p12),
    ];
    let mut rng = StdRng::seed_from_u64(12);
    let path = Path::new("input");
    for round in 0..1500 {
        let (kind, base) = &seeds[round % seeds.len()];
        let mut bytes = base.clone();
        for _ in 0..rng.random_range(1..4) {
            match rng.random_range(0..4) {
                0 if !bytes.is_empty() => {
                    let i = rng.random_range(0..bytes.len());
                    bytes[i] ^= 1 << rng.random_range(0..8);
                }
                1 => bytes.truncate(rng.random_range(0..=bytes.len())),
                2 => {
                    let i = rng.random_range(0..=bytes.len());
                    bytes.insert(i, rng.random());
                }
                _ => {
                    let i = rng.random_range(0..=bytes.len());
                    bytes.splice(i..i, b"-----END CERTIFICATE-----\n".iter().copied());
                }
            }
        }
        let _ = certificates(path, &bytes);
        let _ = private_key(path, &bytes);
        if let Ok(ders) = crate::x509::pem_chain(&String::from_utf8_lossy(&bytes)) {
            for d in &ders {
                let _ = crate::x509::leaf_info(d);
            }
        }
        // PBKDF2 makes each PKCS#12 attempt slow: fewer of those.
        if *kind == "p12"
            && round % 15 == 4
            && let Err(e) = p12_to_pem(path, &bytes, &password)
        {
            assert!(e.to_string().starts_with("input: "), "{e}");
        }
    }
}
