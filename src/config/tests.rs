use super::*;

fn parse_one(text: &str) -> Result<Config, ConfigError> {
    Config::parse(&[(PathBuf::from("certificates.yaml"), text.to_string())])
}

#[test]
fn defaults_apply() {
    let c = parse_one("certificates:\n  - name: web\n    domains: [a.example.test]\n").unwrap();
    let spec = &c.certificates[0].spec;
    assert_eq!(spec.key_type, KeyType::EcdsaP256);
    assert_eq!(spec.dns.provider, "route53");
    assert_eq!(spec.renew_before, None);
    assert_eq!(c.certificates[0].origin, "certificates.yaml:2");
}

#[test]
fn all_errors_reported_with_locations() {
    let text = "certificates:\n  - name: web\n    domains: [a.example.test]\n  - name: api\n    domains:\n      - ok.example.test\n      - \"*.*.example.test\"\n  - name: web\n    domains: [b.example.test]\n";
    let err = parse_one(text).unwrap_err().to_string();
    assert!(
        err.contains("certificates.yaml:7:9: certificates[1].domains[1]:"),
        "{err}"
    );
    assert!(err.contains("duplicate certificate name \"web\""), "{err}");
    assert!(err.contains("certificates.yaml:8:"), "{err}");
}

#[test]
fn external_certificates_take_their_names_from_the_csr_template() {
    let text = "certificates:\n  - name: mesh\n    issuer: external\n    csr:\n      cn: \"{id}.{ods}.mesh-client.nhs.uk\"\n      sans: [\"{id}.example.test\"]\n    vars: {id: RRR01HC, ods: RRR01}\n";
    let c = parse_one(text).unwrap();
    let spec = &c.certificates[0].spec;
    assert!(spec.is_external());
    assert_eq!(
        spec.domains,
        ["rrr01hc.rrr01.mesh-client.nhs.uk", "rrr01hc.example.test"]
    );
    // No zone of ours is involved: the allowlist does not apply.
    assert!(
        c.check_allowed_zones(&["example.org".into()], "the allowed zones")
            .is_empty()
    );
    assert!(c.check_providers(&[]).is_empty());
}

#[test]
fn external_mistakes_are_located() {
    let unknown_var = "certificates:\n  - name: mesh\n    issuer: external\n    csr:\n      cn: \"{identifer}.mesh-client.nhs.uk\"\n    vars: {identifier: X}\n";
    let err = parse_one(unknown_var).unwrap_err().to_string();
    assert!(
        err.starts_with("certificates.yaml:5:11: certificates[0].csr.cn: template"),
        "{err}"
    );
    assert!(err.contains("{identifer}"), "{err}");
    let bad_san = "certificates:\n  - name: mesh\n    issuer: external\n    csr:\n      cn: a.example.test\n      sans: [ok.example.test, \"bad name.example.test\"]\n";
    let err = parse_one(bad_san).unwrap_err().to_string();
    assert!(err.contains("certificates[0].csr.sans[1]"), "{err}");
    let acme_with_csr = "certificates:\n  - name: web\n    domains: [a.example.test]\n    csr: {cn: a.example.test}\n";
    let err = parse_one(acme_with_csr).unwrap_err().to_string();
    assert!(
        err.contains("certificates[0].csr: `csr` is only for"),
        "{err}"
    );
    let nothing = "certificates:\n  - name: mesh\n    issuer: external\n";
    let err = parse_one(nothing).unwrap_err().to_string();
    assert!(err.contains("needs `csr.cn`"), "{err}");
}

#[test]
fn bad_key_type_is_located() {
    let text = "certificates:\n  - name: web\n    domains: [a.example.test]\n    key_type: dsa\n";
    let err = parse_one(text).unwrap_err().to_string();
    assert!(err.starts_with("certificates.yaml:4:"), "{err}");
    assert!(err.contains("certificates[0].key_type"), "{err}");
}

#[test]
fn duplicates_across_files() {
    let a = (
        PathBuf::from("certificates/a.yaml"),
        "certificates:\n  - name: x\n    domains: [a.example.test]\n".to_string(),
    );
    let b = (
        PathBuf::from("certificates/b.yaml"),
        "certificates:\n  - name: x\n    domains: [b.example.test]\n".to_string(),
    );
    let err = Config::parse(&[a, b]).unwrap_err().to_string();
    assert!(err.contains("certificates/b.yaml:2"), "{err}");
    assert!(
        err.contains("first defined at certificates/a.yaml:2"),
        "{err}"
    );
}

#[test]
fn renew_before_forms() {
    assert_eq!(
        RenewBefore::parse("1/3").unwrap(),
        RenewBefore::Fraction(1.0 / 3.0)
    );
    assert_eq!(
        RenewBefore::parse("50%").unwrap(),
        RenewBefore::Fraction(0.5)
    );
    assert_eq!(
        RenewBefore::parse("30d").unwrap(),
        RenewBefore::Remaining(Duration::from_secs(30 * 86400))
    );
    assert!(RenewBefore::parse("3/2").is_err());
    assert!(RenewBefore::parse("soon").is_err());
}

#[test]
fn reference_parses_and_covers_every_field() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/repo-reference.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let c = Config::parse(&[(PathBuf::from("repo-reference.yaml"), text)]).unwrap();
    let specs: Vec<&CertificateSpec> = c.certificates.iter().map(|c| &c.spec).collect();
    for kt in [
        KeyType::EcdsaP256,
        KeyType::EcdsaP384,
        KeyType::Rsa2048,
        KeyType::Rsa3072,
        KeyType::Rsa4096,
    ] {
        assert!(specs.iter().any(|s| s.key_type == kt), "{kt} not shown");
    }
    assert!(specs.iter().any(|s| s.dns.hosted_zone_id.is_some()));
    assert!(
        specs
            .iter()
            .any(|s| matches!(s.renew_before, Some(RenewBefore::Fraction(_))))
    );
    assert!(
        specs
            .iter()
            .any(|s| matches!(s.renew_before, Some(RenewBefore::Remaining(_))))
    );
    assert!(
        specs
            .iter()
            .any(|s| s.domains.iter().any(|d| d.starts_with("*.")))
    );
    assert!(
        specs
            .iter()
            .any(|s| s.domains.iter().any(|d| d.starts_with("xn--")))
    );
    assert!(specs.iter().any(|s| s.is_external() && s.csr.is_some()));
    assert!(
        specs
            .iter()
            .any(|s| s.pkcs12.as_ref().is_some_and(|p| p.trusted_chain))
    );
}

/// Random and mutated documents: never a panic, always a config or an
/// error. Seeded, so a failure names the seed that reproduces it.
#[test]
fn mutated_yaml_never_panics() {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let base = [
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("config/repo-reference.yaml"),
        )
        .unwrap(),
        "certificates:\n  - name: a\n    domains: [a.example.test]\n".to_string(),
    ];
    let settings_base = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/settings-reference.yaml"),
    )
    .unwrap();
    const ALPHABET: &[u8] = b"-:[]{}\"'#*&!|>%@`,? \n\t.aZ09\\";
    for seed in 0..1500u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let source = if seed % 3 == 0 {
            &settings_base
        } else {
            &base[(seed as usize) % 2]
        };
        let mut doc: Vec<u8> = source.as_bytes().to_vec();
        for _ in 0..rng.random_range(1..6) {
            let at = rng.random_range(0..=doc.len());
            match rng.random_range(0..5) {
                0 if !doc.is_empty() => {
                    let end = (at + rng.random_range(1..20)).min(doc.len());
                    doc.drain(at.min(end)..end);
                }
                1 => doc.insert(at, ALPHABET[rng.random_range(0..ALPHABET.len())]),
                2 => {
                    let byte = rng.random::<u8>();
                    doc.insert(at, byte);
                }
                3 => {
                    let copy: Vec<u8> = doc[at.saturating_sub(30)..at].to_vec();
                    doc.splice(at..at, copy);
                }
                _ => doc.splice(at..at, b"\n  ".iter().copied()).for_each(drop),
            }
        }
        let text = String::from_utf8_lossy(&doc).into_owned();
        let result = std::panic::catch_unwind(|| {
            let _ = Config::parse(&[(PathBuf::from("fuzz.yaml"), text.clone())]);
            let _ = crate::settings::Settings::parse(Path::new("fuzz.yaml"), &text);
        });
        assert!(result.is_ok(), "seed {seed} panicked on:\n{text}");
    }
}

#[test]
fn example_repo_is_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/repo-example");
    let c = Config::load(&root).unwrap();
    assert!(c.certificates.len() >= 3);
}
