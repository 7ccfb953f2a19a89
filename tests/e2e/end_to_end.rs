//! The core slice end to end: git config -> ACME DNS-01 via Route53 ->
//! local store -> S3, against real Pebble, moto and the Route53-backed DNS.

use crate::support;

use std::process::Command;
use support::{LocalEnv, PebbleOptions};

const THREE: &str = r#"certificates:
  - name: www
    domains: [www.example.test]
  - name: wildcard
    domains: ["*.example.test", example.test]
    key_type: ecdsa-p384
  - name: api
    domains: [api.example.test, api2.example.test]
    key_type: rsa-2048
"#;

/// `openssl verify` of live/<name>/cert.pem with its chain against Pebble's root.
fn verify_chain(env: &LocalEnv, name: &str, root: &std::path::Path) {
    let live = env.state_dir().join("live").join(name);
    let out = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(root)
        .arg("-untrusted")
        .arg(live.join("chain.pem"))
        .arg(live.join("cert.pem"))
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "chain of {name} does not verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn issued_names(out: &support::RunOutput) -> Vec<String> {
    let mut names: Vec<String> = out
        .events_named("cert.issued")
        .iter()
        .map(|e| e["cert"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn issues_renews_only_what_changed_and_publishes() {
    // Pebble's default 5% nonce rejection stays on: real CAs reject nonces.
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    let commit1 = env.repo.commit_certificates(THREE, "three certificates");

    // First run: all three issued, stored, published.
    let out = env.run().await;
    assert_eq!(
        out.code,
        0,
        "first run failed:\n{}\n{}\n{}",
        out.stdout,
        out.stderr,
        env.pebble.log()
    );
    assert_eq!(issued_names(&out), ["api", "wildcard", "www"]);
    for event in [
        "order.created",
        "dns.txt.upserted",
        "dns.propagated",
        "cert.issued",
        "publish.done",
        "run.finished",
    ] {
        assert!(
            !out.events_named(event).is_empty(),
            "no {event} event in:\n{}",
            out.stdout
        );
    }
    let issued = &out.events_named("cert.issued")[0];
    assert!(
        issued["duration_ms"].is_number() && issued["domains"].is_string(),
        "{issued}"
    );

    let root = env.root.join("pebble-root.pem");
    std::fs::write(&root, env.pebble.issuing_root()).unwrap();
    for name in ["www", "wildcard", "api"] {
        verify_chain(&env, name, &root);
        for file in [
            "cert.pem",
            "chain.pem",
            "fullchain.pem",
            "privkey.pem",
            "meta.json",
        ] {
            let local = env.live_file(name, file);
            let remote = env.s3_object(&format!("certs/{name}/{file}")).await;
            assert_eq!(
                remote.as_deref(),
                Some(local.as_slice()),
                "s3 {name}/{file} differs"
            );
        }
        let meta: serde_json::Value =
            serde_json::from_slice(&env.live_file(name, "meta.json")).unwrap();
        assert_eq!(meta["config_commit"], commit1.as_str());
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&env.live_file("wildcard", "meta.json")).unwrap();
    assert_eq!(
        meta["sans"],
        serde_json::json!(["*.example.test", "example.test"])
    );
    assert_eq!(meta["key_type"], "ecdsa-p384");
    use std::os::unix::fs::PermissionsExt;
    let key_mode = std::fs::metadata(env.state_dir().join("live/api/privkey.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    let state_mode = std::fs::metadata(env.state_dir())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(state_mode & 0o777, 0o700);
    assert_eq!(
        env.moto.challenge_records().await,
        Vec::<String>::new(),
        "TXT records left behind"
    );

    let status = env.status();
    assert_eq!(status["config_commit"], commit1.as_str());
    for cert in status["certificates"].as_array().unwrap() {
        assert_eq!(cert["state"], "renewed", "{cert}");
        assert_eq!(cert["published"], true, "{cert}");
        assert!(cert["days_left"].as_i64().unwrap() > 0);
    }
    support::assert_no_secrets(&env, &out);
    let www_serial = status["certificates"][0]["serial"].clone();

    // Second run: nothing due, nothing issued, nothing uploaded.
    let out = env.run().await;
    assert_eq!(
        out.code, 0,
        "second run failed:\n{}\n{}",
        out.stdout, out.stderr
    );
    assert!(
        issued_names(&out).is_empty(),
        "second run issued: {:?}",
        issued_names(&out)
    );
    assert!(
        out.events_named("publish.done").is_empty(),
        "second run uploaded again"
    );
    assert!(out.events_named("order.created").is_empty());
    let status = env.status();
    // The ACME account was created once, stored 0600, and is reused.
    let accounts: Vec<_> = std::fs::read_dir(env.state_dir().join("accounts"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(accounts.len(), 1);
    let account_mode = accounts[0].metadata().unwrap().permissions().mode();
    assert_eq!(account_mode & 0o777, 0o600);
    assert!(
        status["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["state"] == "ok")
    );

    // Changing one certificate's domains re-issues that one only.
    let changed = THREE.replace(
        "[www.example.test]",
        "[www.example.test, www2.example.test]",
    );
    let commit2 = env.repo.commit_certificates(&changed, "add www2");
    let out = env.run().await;
    assert_eq!(
        out.code, 0,
        "third run failed:\n{}\n{}",
        out.stdout, out.stderr
    );
    assert_eq!(issued_names(&out), ["www"]);
    let status = env.status();
    assert_eq!(status["config_commit"], commit2.as_str());
    assert_ne!(status["certificates"][0]["serial"], www_serial);
    let meta: serde_json::Value =
        serde_json::from_slice(&env.live_file("www", "meta.json")).unwrap();
    assert_eq!(meta["version"], 2);
    assert_eq!(meta["config_commit"], commit2.as_str());
    assert!(
        env.state_dir().join("archive/www/0001/cert.pem").exists(),
        "old version not archived"
    );
    let remote = env.s3_object("certs/www/cert.pem").await.unwrap();
    assert_eq!(remote, env.live_file("www", "cert.pem"));
    verify_chain(&env, "www", &root);
    assert_eq!(env.moto.challenge_records().await, Vec::<String>::new());
    support::assert_no_secrets(&env, &out);
}
