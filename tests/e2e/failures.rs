//! Failures stay contained: one certificate's DNS trouble does not stop the
//! others, never touches its previous live files or S3 objects, and leaves no
//! TXT record behind; a failed publish is retried on the next run.

use crate::support;

use support::{LocalEnv, PebbleOptions};

fn shorten_propagation(env: &LocalEnv) {
    let path = env.settings_path();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("propagation_timeout: 30s", "propagation_timeout: 3s"),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn route53_failure_for_one_certificate_is_contained() {
    let env = LocalEnv::start(&["example.test", "other.test"], PebbleOptions::default()).await;
    shorten_propagation(&env);
    let example_zone = env.zone_ids[0].1.clone();
    env.repo.commit_certificates(
        "certificates:\n  - name: good\n    domains: [good.example.test]\n  - name: bad\n    domains: [bad.other.test]\n  - name: stuck\n    domains: [stuck.example.test]\n",
        "initial",
    );
    let out = env.run().await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);

    let mut before = Vec::new();
    for name in ["bad", "stuck"] {
        for file in ["cert.pem", "privkey.pem", "meta.json"] {
            let local = env.live_file(name, file);
            let remote = env
                .s3_object(&format!("certs/{name}/{file}"))
                .await
                .unwrap();
            before.push((name, file, local, remote));
        }
    }

    // All three become due. `bad` points at a zone id that does not exist
    // (Route53 answers NoSuchHostedZone); `stuck`'s TXT values are written but
    // the nameserver never serves one of them, so propagation never completes
    // and its records must still be removed.
    env.dns.hide("_acme-challenge.stuck2.example.test");
    env.repo.commit_certificates(
        &format!(
            "certificates:\n  - name: good\n    domains: [good.example.test, good2.example.test]\n  - name: bad\n    domains: [bad.other.test, bad2.other.test]\n    dns:\n      hosted_zone_id: ZNOSUCHZONE000\n  - name: stuck\n    domains: [stuck.example.test, stuck2.example.test]\n    dns:\n      hosted_zone_id: {example_zone}\n"
        ),
        "break two",
    );
    let out = env.run().await;
    assert_eq!(
        out.code, 1,
        "expected renewal failure exit code:\n{}\n{}",
        out.stdout, out.stderr
    );
    let issued: Vec<_> = out
        .events_named("cert.issued")
        .iter()
        .map(|e| e["cert"].clone())
        .collect();
    assert_eq!(issued, vec![serde_json::json!("good")]);

    let status = env.status();
    assert_eq!(support::cert_status(&status, "good")["state"], "renewed");
    let bad = support::cert_status(&status, "bad");
    assert_eq!(bad["state"], "failed");
    let err = bad["last_error"].as_str().unwrap();
    assert!(
        err.contains("route53") && err.contains("NoSuchHostedZone"),
        "{err}"
    );
    assert!(
        bad["days_left"].as_i64().unwrap() > 0,
        "old certificate still reported valid"
    );
    let stuck = support::cert_status(&status, "stuck");
    assert_eq!(stuck["state"], "failed");
    assert!(
        stuck["last_error"]
            .as_str()
            .unwrap()
            .contains("not visible"),
        "{stuck}"
    );

    for (name, file, local, remote) in before {
        assert_eq!(
            env.live_file(name, file),
            local,
            "live {name}/{file} changed"
        );
        let now = env
            .s3_object(&format!("certs/{name}/{file}"))
            .await
            .unwrap();
        assert_eq!(now, remote, "s3 {name}/{file} changed");
    }
    assert_eq!(
        env.moto.challenge_records().await,
        Vec::<String>::new(),
        "TXT records left behind"
    );
    let failed = out.events_named("cert.failed");
    assert_eq!(failed.len(), 2, "{}", out.stdout);
    assert!(
        failed
            .iter()
            .all(|e| e["error"].is_string() && e["cert"].is_string())
    );
    let status = env.status();
    assert!(
        support::cert_status(&status, "bad")["retry_after"].is_string(),
        "{status}"
    );

    // The next run does not hammer: both back off (1 h), the rest is fine.
    let out = env.run().await;
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        out.events_named("cert.backing_off").len(),
        2,
        "{}",
        out.stdout
    );
    assert!(out.events_named("order.created").is_empty());
    let status = env.status();
    let bad = support::cert_status(&status, "bad");
    assert!(
        bad["last_error"]
            .as_str()
            .unwrap()
            .starts_with("backing off after 1 failures until"),
        "{bad}"
    );
    assert_eq!(support::cert_status(&status, "good")["state"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_upload_is_retried_on_the_next_run() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    let text = std::fs::read_to_string(env.settings_path()).unwrap();
    std::fs::write(
        env.settings_path(),
        text.replace("bucket: certkeeper-test", "bucket: not-yet-created"),
    )
    .unwrap();
    env.repo.commit_certificates(
        "certificates:\n  - name: web\n    domains: [web.example.test]\n",
        "one",
    );

    let out = env.run().await;
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let status = env.status();
    let web = &status["certificates"][0];
    assert_eq!(web["published"], false);
    assert_eq!(web["state"], "failed");
    assert!(
        web["last_error"].as_str().unwrap().contains("NoSuchBucket"),
        "{web}"
    );
    assert!(!out.events_named("publish.failed").is_empty());
    // The certificate itself was issued and stored.
    assert!(!env.live_file("web", "cert.pem").is_empty());

    env.moto.create_bucket("not-yet-created").await;
    let out = env.run().await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.events_named("cert.issued").is_empty(),
        "retry must not re-issue"
    );
    assert_eq!(out.events_named("publish.done").len(), 1);
    let status = env.status();
    assert_eq!(status["certificates"][0]["published"], true);
    let s3 = env.moto.s3().await;
    let obj = s3
        .get_object()
        .bucket("not-yet-created")
        .key("certs/web/privkey.pem")
        .send()
        .await
        .unwrap();
    assert_eq!(
        obj.server_side_encryption(),
        Some(&aws_sdk_s3::types::ServerSideEncryption::Aes256)
    );
    let body = obj.body.collect().await.unwrap().into_bytes();
    assert_eq!(
        body.as_ref(),
        env.live_file("web", "privkey.pem").as_slice()
    );

    // A third run with nothing changed makes no S3 calls at all.
    let out = env.run().await;
    assert_eq!(out.code, 0);
    assert!(out.events_named("publish.done").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn half_of_all_nonces_rejected_still_renews_everything() {
    let env = LocalEnv::start(
        &["example.test"],
        PebbleOptions {
            nonce_reject_percent: Some(50),
            ..Default::default()
        },
    )
    .await;
    env.repo.commit_certificates(
        "certificates:\n  - name: a\n    domains: [a.example.test]\n  - name: b\n    domains: [\"*.b.example.test\", b.example.test]\n  - name: c\n    domains: [c.example.test]\n",
        "three",
    );
    let out = env.run().await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.events_named("cert.issued").len(), 3);
    // instant-acme alone gives up after 3 bad nonces in a row (1 in 8
    // requests here); only certkeeper's own retries make this pass reliably.
    assert_eq!(env.moto.challenge_records().await, Vec::<String>::new());
}
