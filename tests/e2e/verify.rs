//! Deploy verification against a local TLS server that picks up the new
//! certificate only after a rollout delay: certkeeper keeps checking over
//! its window and reports `verified`, or `mismatch: … serves serial X,
//! expected Y` when the server never switches.

use crate::support;

use std::time::Duration;
use support::tls::TlsServer;
use support::{LocalEnv, PebbleOptions, cert_status};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_once_the_endpoint_serves_the_new_certificate() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    let served = env.root.join("served");
    std::fs::create_dir_all(&served).unwrap();
    let server = TlsServer::start(
        served.join("web.crt"),
        served.join("web.key"),
        Duration::from_secs(3),
    )
    .await;
    env.write_settings(&format!(
        "targets:\n  web-server:\n    type: files\n    files:\n      - {{source: fullchain.pem, path: \"{dir}/{{name}}.crt\"}}\n      - {{source: privkey.pem, path: \"{dir}/{{name}}.key\"}}\ndefault_targets: [web-server]\n",
        dir = served.display()
    ));
    env.repo.commit_certificates(
        &format!(
            "certificates:\n  - name: web\n    domains: [web.example.test]\n    verify:\n      endpoints: [{{address: \"{}\", sni: web.example.test}}]\n      window: 60s\n      interval: 500ms\n",
            server.addr
        ),
        "verify",
    );
    let out = env.run().await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let web = cert_status(&env.status(), "web");
    assert_eq!(web["verified"], true, "{web}");
    assert_eq!(web["verification"], "verified");
    let ok = out.events_named("verify.ok");
    assert_eq!(ok.len(), 1);
    // The placeholder was served for the first 3 s: verification had to
    // keep checking rather than pass or fail at once.
    assert!(ok[0]["duration_ms"].as_u64().unwrap() >= 2000, "{}", ok[0]);

    // Verified once for this certificate: not checked again.
    let out = env.run().await;
    assert_eq!(out.code, 0);
    assert!(out.events_named("verify.ok").is_empty());
    assert_eq!(cert_status(&env.status(), "web")["verified"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mismatch_names_the_served_and_expected_serials() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    // Serves files that never appear: always the placeholder.
    let server = TlsServer::start(
        env.root.join("none.crt"),
        env.root.join("none.key"),
        Duration::ZERO,
    )
    .await;
    env.repo.commit_certificates(
        &format!(
            "certificates:\n  - name: web\n    domains: [web.example.test]\n    verify:\n      endpoints: [\"{}\"]\n      window: 2s\n      interval: 500ms\n",
            server.addr
        ),
        "verify",
    );
    let out = env.run().await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    let web = cert_status(&env.status(), "web");
    assert_eq!(web["verified"], false);
    let expected = format!(
        "mismatch: {} serves serial {}, expected {}",
        server.addr,
        server.placeholder_serial,
        web["serial"].as_str().unwrap()
    );
    assert_eq!(web["verification"], expected.as_str());
    assert!(
        web["last_error"].as_str().unwrap().contains(&expected),
        "{web}"
    );
    assert_eq!(out.events_named("verify.mismatch").len(), 1);
}
