//! Corrupt or truncated state files read back by a whole run: the ACME
//! account file, a certificate's meta.json (alone, and as a replica whose
//! bucket holds the good copy) and status.json. Each gives a clear error
//! or a recovery, never a panic and never a silent re-issue.
//! (A corrupt lease object is in tests/replicas.rs.)

use crate::support;

use std::os::unix::fs::PermissionsExt;
use support::{LocalEnv, PebbleOptions, RunOutput, cert_status};

fn ok(out: &RunOutput) {
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
}

fn no_panic(out: &RunOutput) {
    assert!(
        !out.stdout.contains("panicked") && !out.stderr.contains("panicked"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
}

const TWO: &str = "certificates:\n  - name: a\n    domains: [a.example.test]\n  - name: b\n    domains: [b.example.test]\n";

/// The account file, cut in half (a crash while it was written by an older
/// version, a disk error): it is moved aside, kept 0600 for a person to
/// look at, and a new account is registered; renewals go on.
#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_account_file_is_set_aside_and_a_new_account_registered() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    env.repo.commit_certificates(
        "certificates:\n  - name: a\n    domains: [a.example.test]\n",
        "one",
    );
    ok(&env.run().await);
    let accounts = env.state_dir().join("accounts");
    let file = std::fs::read_dir(&accounts)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("an account file");
    let text = std::fs::read(&file).unwrap();
    std::fs::write(&file, &text[..text.len() / 2]).unwrap();

    let out = env
        .certkeeper_line("renew --force a", &env.settings_path())
        .await;
    ok(&out);
    no_panic(&out);
    let aside = out.events_named("acme.account.set_aside");
    assert_eq!(aside.len(), 1, "{}", out.stdout);
    assert_eq!(aside[0]["why"], "corrupt");
    let moved = std::path::PathBuf::from(aside[0]["moved_to"].as_str().unwrap());
    assert_eq!(std::fs::read(&moved).unwrap(), &text[..text.len() / 2]);
    assert_eq!(
        std::fs::metadata(&moved).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(out.events_named("acme.account.created").len(), 1);
    assert_eq!(out.events_named("cert.issued").len(), 1, "{}", out.stdout);
    // The account key in the set-aside file is never logged.
    let key = serde_json::from_slice::<serde_json::Value>(&std::fs::read(&file).unwrap()).unwrap()
        ["key_pkcs8"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!out.stdout.contains(&key) && !out.stderr.contains(&key));
}

/// meta.json truncated: that certificate is left alone with an error that
/// names the file and the way out; no new order is placed for it (a storm
/// of re-issues is how rate limits are hit); the other certificate renews,
/// the live files stay, and `renew --force` is the way out.
#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_meta_json_stops_that_certificate_without_a_new_order() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    env.repo.commit_certificates(TWO, "two");
    ok(&env.run().await);
    let meta_path = env.state_dir().join("live/a/meta.json");
    let meta = std::fs::read(&meta_path).unwrap();
    std::fs::write(&meta_path, &meta[..meta.len() / 3]).unwrap();
    let cert = env.live_file("a", "cert.pem");

    let out = env.run().await;
    no_panic(&out);
    assert_ne!(out.code, 0, "a broken certificate fails the run");
    let unreadable = out.events_named("cert.state.unreadable");
    assert_eq!(unreadable.len(), 1, "{}", out.stdout);
    let error = unreadable[0]["error"].as_str().unwrap();
    assert!(error.contains("live/a/meta.json is corrupt"), "{error}");
    assert!(error.contains("renew --force a"), "{error}");
    assert!(out.events_named("cert.issued").is_empty(), "{}", out.stdout);
    // The run goes on around the broken one.
    assert_eq!(cert_status(&env.status(), "b")["published"], true);
    assert_eq!(env.live_file("a", "cert.pem"), cert);
    let status = cert_status(&env.status(), "a");
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains("meta.json is corrupt"),
        "{status}"
    );

    let forced = env
        .certkeeper_line("renew --force a", &env.settings_path())
        .await;
    ok(&forced);
    assert_eq!(
        forced.events_named("cert.issued").len(),
        1,
        "{}",
        forced.stdout
    );
    let fixed: serde_json::Value =
        serde_json::from_slice(&env.live_file("a", "meta.json")).unwrap();
    assert_eq!(fixed["name"], "a");
    ok(&env.run().await);
}

/// As a replica the bucket is the source of truth: a truncated local
/// meta.json is replaced by the bucket's set (key and certificate checked)
/// and nothing is issued.
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_restores_a_truncated_meta_json_from_the_bucket() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    env.repo.commit_certificates(TWO, "two");
    let settings = env.replica_settings(0, "3s", "");
    ok(&env.certkeeper_line("run --once", &settings).await);
    let live = std::path::PathBuf::from(format!("{}-0", env.state_dir().display())).join("live/a");
    let meta = std::fs::read(live.join("meta.json")).unwrap();
    let cert = std::fs::read(live.join("cert.pem")).unwrap();
    std::fs::write(live.join("meta.json"), &meta[..meta.len() / 2]).unwrap();

    let out = env.certkeeper_line("run --once", &settings).await;
    ok(&out);
    no_panic(&out);
    let pulled = out.events_named("replica.pulled");
    assert_eq!(pulled.len(), 1, "{}", out.stdout);
    assert_eq!(pulled[0]["cert"], "a");
    assert!(out.events_named("cert.issued").is_empty(), "{}", out.stdout);
    assert_eq!(std::fs::read(live.join("cert.pem")).unwrap(), cert);
    let restored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(live.join("meta.json")).unwrap()).unwrap();
    let original: serde_json::Value = serde_json::from_slice(&meta).unwrap();
    assert_eq!(restored["serial"], original["serial"]);
    assert_eq!(restored["sha256"], original["sha256"]);
}

/// status.json truncated: the health check says UNKNOWN and why (not "no
/// run yet"); the next run writes a whole one and the check is OK again.
#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_status_file_is_unknown_until_the_next_run_rewrites_it() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    env.repo.commit_certificates(TWO, "two");
    ok(&env.run().await);
    let path = env.state_dir().join("status.json");
    let text = std::fs::read(&path).unwrap();
    std::fs::write(&path, &text[..text.len() / 2]).unwrap();

    let health = env.certkeeper_line("status", &env.settings_path()).await;
    no_panic(&health);
    assert_eq!(health.code, 3, "{}\n{}", health.stdout, health.stderr);
    assert!(
        health.stdout.contains("UNKNOWN") && health.stdout.contains("status.json is unreadable"),
        "{}",
        health.stdout
    );
    assert!(
        !health.stdout.contains("no status yet"),
        "{}",
        health.stdout
    );

    let out = env.run().await;
    ok(&out);
    assert!(out.events_named("cert.issued").is_empty(), "{}", out.stdout);
    let health = env.certkeeper_line("status", &env.settings_path()).await;
    assert_eq!(health.code, 0, "{}\n{}", health.stdout, health.stderr);
}
