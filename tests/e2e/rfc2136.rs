//! The RFC 2136 provider against a real BIND9 with TSIG.

use crate::support;

use certkeeper::dns::propagation::query_txt;
use certkeeper::dns::rfc2136::Rfc2136;
use certkeeper::dns::{DnsProvider, TxtRecord, ZoneHint};
use certkeeper::settings::{Rfc2136Settings, TsigAlgorithm};

fn rec(name: &str, value: &str) -> TxtRecord {
    TxtRecord {
        name: name.into(),
        value: value.into(),
    }
}

fn settings(
    bind: &support::bind::Bind,
    key: &str,
    secret_file: &std::path::Path,
) -> Rfc2136Settings {
    Rfc2136Settings {
        nameserver: bind.addr.to_string(),
        zone: bind.zone.clone(),
        tsig_key_name: key.into(),
        tsig_algorithm: TsigAlgorithm::HmacSha256,
        tsig_secret_file: secret_file.to_path_buf(),
    }
}

async fn values(bind: &support::bind::Bind, name: &str) -> Vec<String> {
    let mut v = query_txt(bind.addr, name).await.unwrap();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adds_and_deletes_single_values_with_tsig() {
    let tmp = tempfile::tempdir().unwrap();
    let bind = support::bind::Bind::start(&tmp.path().join("bind"), "internal.test");
    let provider = Rfc2136::new(&settings(&bind, &bind.key_name, &bind.secret_file)).unwrap();
    let hint = ZoneHint::default();
    let name = "_acme-challenge.web.internal.test";

    // A wildcard and its apex: two values at one name, added separately.
    provider
        .present(&hint, &[rec(name, "apex-value")])
        .await
        .unwrap();
    provider
        .present(&hint, &[rec(name, "wildcard-value")])
        .await
        .unwrap();
    assert_eq!(values(&bind, name).await, ["apex-value", "wildcard-value"]);

    provider
        .cleanup(&hint, &[rec(name, "apex-value")])
        .await
        .unwrap();
    assert_eq!(values(&bind, name).await, ["wildcard-value"]);
    provider
        .cleanup(&hint, &[rec(name, "wildcard-value")])
        .await
        .unwrap();
    assert!(values(&bind, name).await.is_empty());
    // Deleting what is not there is fine (cleanup after a failed present).
    provider
        .cleanup(&hint, &[rec(name, "wildcard-value")])
        .await
        .unwrap();
    assert_eq!(provider.zones().await.unwrap(), ["internal.test"]);

    let err = provider
        .present(&hint, &[rec("_acme-challenge.web.elsewhere.test", "x")])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("is not in zone internal.test"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_gives_a_clear_error() {
    use base64::Engine;
    let tmp = tempfile::tempdir().unwrap();
    let bind = support::bind::Bind::start(&tmp.path().join("bind"), "internal.test");
    let wrong = tmp.path().join("wrong.secret");
    std::fs::write(
        &wrong,
        base64::engine::general_purpose::STANDARD.encode([7u8; 32]),
    )
    .unwrap();
    let provider = Rfc2136::new(&settings(&bind, &bind.key_name, &wrong)).unwrap();
    let err = provider
        .present(
            &ZoneHint::default(),
            &[rec("_acme-challenge.a.internal.test", "x")],
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("TSIG verification failed: BADSIG"), "{err}");
    assert!(
        !err.contains(
            &std::fs::read_to_string(&bind.secret_file)
                .unwrap()
                .trim()
                .to_string()
        )
    );

    let provider = Rfc2136::new(&settings(&bind, "no-such-key", &bind.secret_file)).unwrap();
    let err = provider
        .present(
            &ZoneHint::default(),
            &[rec("_acme-challenge.a.internal.test", "x")],
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("TSIG verification failed: BADKEY"), "{err}");

    let missing = Rfc2136::new(&settings(&bind, &bind.key_name, &tmp.path().join("nope")));
    assert!(
        missing
            .err()
            .unwrap()
            .to_string()
            .contains("cannot read TSIG secret file")
    );
}

/// A certificate in the on-prem zone is issued through BIND (RFC 2136) while
/// another goes through Route53, in one run, validated by Pebble.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn issues_through_rfc2136_and_route53_in_one_run() {
    let env = support::LocalEnv::start(&["example.test"], support::PebbleOptions::default()).await;
    let bind = support::bind::Bind::start(&env.root.join("bind"), "internal.test");
    env.dns.forward("internal.test", bind.addr);
    env.write_settings(&format!(
        "dns_providers:\n  route53:\n    type: route53\n{}",
        bind.provider_yaml("onprem")
    ));
    env.repo.commit_certificates(
        "certificates:\n  - name: cloud\n    domains: [web.example.test]\n  - name: inside\n    domains: [\"*.app.internal.test\", app.internal.test]\n    dns:\n      provider: onprem\n",
        "two providers",
    );
    let out = env.run().await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.events_named("cert.issued").len(), 2);
    let upserted = out.events_named("dns.txt.upserted");
    assert!(
        upserted
            .iter()
            .any(|e| e["provider"] == "rfc2136" && e["cert"] == "inside"),
        "{upserted:?}"
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&env.live_file("inside", "meta.json")).unwrap();
    assert_eq!(
        meta["sans"],
        serde_json::json!(["*.app.internal.test", "app.internal.test"])
    );
    // Nothing left behind in either DNS.
    assert!(
        query_txt(bind.addr, "_acme-challenge.app.internal.test")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(env.moto.challenge_records().await, Vec::<String>::new());

    // A provider name the settings do not define rejects the commit.
    env.repo.commit_certificates(
        "certificates:\n  - name: cloud\n    domains: [web.example.test]\n    dns:\n      provider: nowhere\n",
        "typo",
    );
    let out = env.run().await;
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(
            "certificates.yaml:5:17: certificates[0].dns.provider: unknown DNS provider \"nowhere\""
        ),
        "{}",
        out.stderr
    );
}

/// `_acme-challenge.secure.example.test` (Route53) is a CNAME into the BIND
/// zone: the value is written there through RFC 2136 and Pebble validates it
/// by following the CNAME.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follows_cname_delegation_into_another_provider() {
    let env = support::LocalEnv::start(&["example.test"], support::PebbleOptions::default()).await;
    let bind = support::bind::Bind::start(&env.root.join("bind"), "acme.internal.test");
    env.dns.forward("acme.internal.test", bind.addr);
    env.write_settings(&format!(
        "dns_providers:\n  route53:\n    type: route53\n{}",
        bind.provider_yaml("onprem")
    ));
    // The delegation, made once by a person in Route53.
    let zone = env.zone_ids[0].1.clone();
    // Through the front, as every write is (the DNS responder follows it).
    let r53 = env.route53.route53().await;
    use aws_sdk_route53::types::*;
    let set = ResourceRecordSet::builder()
        .name("_acme-challenge.secure.example.test.")
        .r#type(RrType::Cname)
        .ttl(60)
        .resource_records(
            ResourceRecord::builder()
                .value("secure.acme.internal.test.")
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    r53.change_resource_record_sets()
        .hosted_zone_id(&zone)
        .change_batch(
            ChangeBatch::builder()
                .changes(
                    Change::builder()
                        .action(ChangeAction::Create)
                        .resource_record_set(set)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    env.repo.commit_certificates(
        "certificates:\n  - name: secure\n    domains: [secure.example.test]\n  - name: plain\n    domains: [plain.example.test]\n",
        "delegated",
    );
    let out = env.run().await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let followed = out.events_named("dns.cname.followed");
    assert_eq!(followed.len(), 1, "{}", out.stdout);
    assert_eq!(followed[0]["to"], "secure.acme.internal.test");
    assert_eq!(followed[0]["provider"], "onprem");
    let upserted = out.events_named("dns.txt.upserted");
    assert!(
        upserted
            .iter()
            .any(|e| e["cert"] == "secure" && e["provider"] == "rfc2136"),
        "{upserted:?}"
    );
    assert!(
        upserted
            .iter()
            .any(|e| e["cert"] == "plain" && e["provider"] == "route53"),
        "{upserted:?}"
    );
    assert!(
        query_txt(bind.addr, "secure.acme.internal.test")
            .await
            .unwrap()
            .is_empty(),
        "left in BIND"
    );
    // Only the CNAME remains in Route53; no TXT was written there.
    assert_eq!(
        env.moto.challenge_records().await,
        vec!["_acme-challenge.secure.example.test. [\"secure.acme.internal.test.\"]".to_string()]
    );

    // follow_cname: false writes at the CNAME's own name, where the value
    // cannot be served (a CNAME owns the name): the order fails, and says so.
    let text = std::fs::read_to_string(env.settings_path()).unwrap();
    std::fs::write(
        env.settings_path(),
        text.replace("dns:\n", "dns:\n  follow_cname: false\n"),
    )
    .unwrap();
    env.repo.commit_certificates(
        "certificates:\n  - name: secure\n    domains: [secure.example.test, www.secure.example.test]\n",
        "no follow",
    );
    let out = env.run().await;
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(out.events_named("dns.cname.followed").is_empty());
}
