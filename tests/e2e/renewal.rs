//! The renewal engine: named issuers with EAB and fallbacks, profiles,
//! `renew --force`, revocation, account key rollover, key reuse.

use crate::support;

use support::{LocalEnv, PebbleOptions};

const TWO: &str = "certificates:\n  - name: www\n    domains: [www.example.test]\n  - name: api\n    domains: [api.example.test]\n";

async fn cli(env: &LocalEnv, args: &[&str]) -> support::RunOutput {
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    all.push("--config".into());
    all.push(env.settings_path().display().to_string());
    env.certkeeper(all).await
}

fn issued(out: &support::RunOutput) -> Vec<String> {
    let mut v: Vec<String> = out
        .events_named("cert.issued")
        .iter()
        .map(|e| e["cert"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn serial(env: &LocalEnv, name: &str) -> String {
    let meta: serde_json::Value =
        serde_json::from_slice(&env.live_file(name, "meta.json")).unwrap();
    meta["serial"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn force_revoke_rollover_and_key_reuse() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    env.repo.commit_certificates(
        &format!(
            "{TWO}  - name: pinned\n    domains: [pinned.example.test]\n    reuse_key: true\n"
        ),
        "three",
    );
    let out = env.run().await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(issued(&out), ["api", "pinned", "www"]);

    // renew NAME: only if due; --force: now, and only that one.
    let out = cli(&env, &["renew", "www"]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(issued(&out).is_empty());
    let before = serial(&env, "www");
    let out = cli(&env, &["renew", "www", "--force"]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(issued(&out), ["www"]);
    assert_ne!(serial(&env, "www"), before);
    let out = cli(&env, &["renew", "nope", "--force"]).await;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("no certificate named \"nope\""),
        "{}",
        out.stderr
    );

    // --dry-run: the whole order against the staging directory, nothing kept.
    let cert = env.live_file("www", "cert.pem");
    let status = std::fs::read(env.state_dir().join("status.json")).unwrap();
    let out = cli(&env, &["renew", "www", "--dry-run"]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("dry run: www would get serial"),
        "{}",
        out.stdout
    );
    // A real order at the staging directory (its challenges may be skipped
    // when the CA still holds a valid authorization).
    assert!(
        !out.events_named("order.created").is_empty(),
        "{}",
        out.stdout
    );
    assert_eq!(env.live_file("www", "cert.pem"), cert);
    assert_eq!(
        std::fs::read(env.state_dir().join("status.json")).unwrap(),
        status
    );
    assert!(out.events_named("publish.done").is_empty());

    // reuse_key keeps the private key across renewals; others get a new one.
    let key = env.live_file("pinned", "privkey.pem");
    let out = cli(&env, &["renew", "pinned", "--force"]).await;
    assert_eq!(issued(&out), ["pinned"]);
    assert_eq!(
        env.live_file("pinned", "privkey.pem"),
        key,
        "reuse_key must keep the key"
    );
    assert!(env.state_dir().join("archive/pinned/0002").exists());

    // Revocation: the CA revokes, the next run replaces it.
    let revoked = serial(&env, "api");
    let out = cli(&env, &["revoke", "api", "--reason", "keyCompromise"]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains(&format!("revoked api (serial {revoked})")),
        "{}",
        out.stdout
    );
    let out = env.run().await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(issued(&out), ["api"]);
    let due = out.events_named("cert.due");
    assert!(
        due.iter()
            .any(|e| e["cert"] == "api" && e["reason"] == "revoked"),
        "{due:?}"
    );
    let out = cli(&env, &["revoke", "api", "--reason", "stolen"]).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("unknown reason \"stolen\""),
        "{}",
        out.stderr
    );

    // Account key rollover: the stored key changes and keeps working.
    let accounts = env.state_dir().join("accounts");
    let file = std::fs::read_dir(&accounts)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let old = std::fs::read(&file).unwrap();
    let out = cli(&env, &["account", "rollover"]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_ne!(
        std::fs::read(&file).unwrap(),
        old,
        "account key not replaced"
    );
    let out = cli(&env, &["renew", "www", "--force"]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(issued(&out), ["www"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eab_fallback_issuers_and_profiles() {
    let hmac = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let env = LocalEnv::start(
        &["example.test"],
        PebbleOptions {
            eab: Some(("kid-1".into(), hmac.into())),
            ..Default::default()
        },
    )
    .await;
    let hmac_file = env.root.join("eab.hmac");
    std::fs::write(&hmac_file, hmac).unwrap();
    let ca = env.pebble.listener_ca();
    let dir = env.pebble.directory_url();
    // The `acme:` issuer has no EAB: the CA refuses its account. `pebble`
    // has it. `down` points at nothing.
    env.write_settings(&format!(
        "issuers:\n  pebble:\n    directory_url: {dir}\n    root_ca_file: {ca}\n    eab:\n      key_id: kid-1\n      hmac_key_file: {hmac}\n  down:\n    directory_url: https://127.0.0.1:9/dir\n    root_ca_file: {ca}\n  profiled:\n    directory_url: {dir}\n    root_ca_file: {ca}\n    profile: shortlived\n    eab:\n      key_id: kid-1\n      hmac_key_file: {hmac}\n",
        ca = ca.display(),
        hmac = hmac_file.display(),
    ));
    env.repo.commit_certificates(
        "certificates:\n  - name: noeab\n    domains: [a.example.test]\n  - name: eab\n    domains: [b.example.test]\n    issuer: pebble\n  - name: fallback\n    domains: [c.example.test]\n    issuer: down\n    fallback_issuers: [pebble]\n  - name: profiled\n    domains: [d.example.test]\n    issuer: profiled\n",
        "issuers",
    );
    let out = env.run().await;
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(issued(&out), ["eab", "fallback"]);
    let status = env.status();
    let cert = |n: &str| support::cert_status(&status, n);
    let noeab = cert("noeab")["last_error"].as_str().unwrap().to_string();
    assert!(
        noeab.to_lowercase().contains("externalaccount") || noeab.contains("external account"),
        "{noeab}"
    );
    let profiled = cert("profiled")["last_error"].as_str().unwrap().to_string();
    assert!(
        profiled.contains("does not offer the ACME profile \"shortlived\""),
        "{profiled}"
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&env.live_file("fallback", "meta.json")).unwrap();
    assert_eq!(meta["issuer"], dir.as_str());
    assert!(
        !out.stdout.contains(hmac) && !out.stderr.contains(hmac),
        "EAB key leaked"
    );
    assert!(
        !std::fs::read_to_string(env.state_dir().join("status.json"))
            .unwrap()
            .contains(hmac)
    );

    // A certificate from its fallback issuer is current: not re-issued.
    env.repo.commit_certificates(
        "certificates:\n  - name: eab\n    domains: [b.example.test]\n    issuer: pebble\n  - name: fallback\n    domains: [c.example.test]\n    issuer: down\n    fallback_issuers: [pebble]\n",
        "good ones",
    );
    let out = env.run().await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(issued(&out).is_empty());

    // An issuer the settings do not define rejects the commit.
    env.repo.commit_certificates(
        "certificates:\n  - name: eab\n    domains: [b.example.test]\n    issuer: letsencrypt\n",
        "typo",
    );
    let out = env.run().await;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("unknown issuer \"letsencrypt\""),
        "{}",
        out.stderr
    );
}

fn window(path: &std::path::Path, from_now_days: (i64, i64), retry_after: u64) {
    let now = time::OffsetDateTime::now_utc();
    let fmt = |d: i64| {
        (now + time::Duration::days(d))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    std::fs::write(
        path,
        serde_json::json!({"start": fmt(from_now_days.0), "end": fmt(from_now_days.1), "retry_after": retry_after}).to_string(),
    )
    .unwrap();
}

/// ARI through a test front that adds renewalInfo to Pebble: a future
/// window waits, Retry-After is honoured, a past window renews now.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ari_windows_decide_early_renewal() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    let window_file = env.root.join("window.json");
    let log_file = env.root.join("ari.log");
    std::fs::write(&log_file, "").unwrap();
    window(&window_file, (30, 31), 3600);
    let (_front, ari_dir) = env.pebble.ari_front(&window_file, &log_file);
    let text = std::fs::read_to_string(env.settings_path()).unwrap();
    std::fs::write(
        env.settings_path(),
        text.replace(&env.pebble.directory_url(), &ari_dir),
    )
    .unwrap();
    env.repo.commit_certificates(TWO, "two");
    let asked = || std::fs::read_to_string(&log_file).unwrap().lines().count();

    let out = env.run().await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(issued(&out), ["api", "www"]);
    assert_eq!(asked(), 0, "new certificates need no ARI");

    // Future window: asked once per certificate, not due.
    let out = env.run().await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(issued(&out).is_empty());
    assert_eq!(out.events_named("ari.window").len(), 2, "{}", out.stdout);
    assert_eq!(asked(), 2);

    // Retry-After (an hour) not yet passed: the CA is not asked again.
    let out = env.run().await;
    assert!(issued(&out).is_empty());
    assert_eq!(asked(), 2);

    // The CA moves the window into the past (say, a mass revocation) with a
    // short Retry-After: once it has passed, both are renewed at once.
    window(&window_file, (-2, -1), 1);
    let state = env.state_dir().join("ari/www.json");
    let mut cached: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    cached["next_check"] = serde_json::json!("2000-01-01T00:00:00Z");
    std::fs::write(&state, cached.to_string()).unwrap();
    let out = env.run().await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        issued(&out),
        ["www"],
        "only www's cached Retry-After has passed"
    );
    let due = out.events_named("cert.due");
    assert!(
        due.iter()
            .any(|e| e["cert"] == "www" && e["reason"] == "ari_window"),
        "{due:?}"
    );
}
