//! The CA's new-order limit planned instead of hit: a run orders what the
//! limit allows now and the rest wait for a later run, plainly and without
//! failing; `config check` warns about a commit the CA cannot take in a day.

use crate::support;

use support::{LocalEnv, PebbleOptions};

const FOUR: &str = "certificates:\n  - name: a\n    domains: [a.example.test]\n  - name: b\n    domains: [b.example.test]\n  - name: c\n    domains: [c.example.test]\n  - name: d\n    domains: [d.example.test]\n";

/// The standard settings with a new-order limit on the issuer (Pebble
/// publishes none).
fn with_limit(env: &LocalEnv, limit: &str) {
    let text = std::fs::read_to_string(env.settings_path()).unwrap();
    assert!(text.contains("  order_timeout: 60s\n"));
    let text = text.replace(
        "  order_timeout: 60s\n",
        &format!("  order_timeout: 60s\n  new_order_limit: {limit}\n"),
    );
    std::fs::write(env.settings_path(), text).unwrap();
}

/// The status's certificates that wait for a CA limit.
fn waiting(status: &serde_json::Value) -> Vec<&serde_json::Value> {
    status["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["waiting_until"].is_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn certificates_beyond_the_new_order_limit_wait_for_a_later_run() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    with_limit(&env, "{orders: 2, per: 1h}");
    env.repo.commit_certificates(FOUR, "four");

    let out = env.run().await;
    assert_eq!(
        out.code, 0,
        "waiting is not failing: {}\n{}",
        out.stdout, out.stderr
    );
    assert_eq!(out.events_named("cert.issued").len(), 2, "{}", out.stdout);
    let wait = out.events_named("ca.limit.wait");
    assert_eq!(wait.len(), 1, "{}", out.stdout);
    assert_eq!(wait[0]["waiting"], 2);
    let message = wait[0]["message"].as_str().unwrap();
    assert!(
        message
            .starts_with("2 certificates wait for the CA's new-order limit (2 per 1h); next at "),
        "{message}"
    );
    let status = env.status();
    let waiting = waiting(&status);
    assert_eq!(waiting.len(), 2, "{status:#}");
    assert!(
        waiting
            .iter()
            .all(|c| c["state"] == "ok" && c["last_error"].is_null())
    );

    // The status command says why, as a warning, not a failure.
    let st = env
        .certkeeper(vec![
            "status".into(),
            "--config".into(),
            env.settings_path().display().to_string(),
        ])
        .await;
    assert_eq!(st.code, 1, "{}", st.stdout);
    assert!(
        st.stdout
            .contains("not issued yet: waits for the CA's new-order limit"),
        "{}",
        st.stdout
    );

    // Right after, the bucket is still empty: nothing more is ordered.
    let again = env.run().await;
    assert_eq!(again.code, 0);
    assert!(
        again.events_named("order.created").is_empty(),
        "{}",
        again.stdout
    );

    // An hour later (the bucket as the state dir keeps it, moved back by
    // an hour) the two that waited are ordered.
    let bucket = env.state_dir().join("limits/default.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&bucket).unwrap()).unwrap();
    let hour_ago = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    state["at"] = hour_ago
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
        .into();
    std::fs::write(&bucket, serde_json::to_vec(&state).unwrap()).unwrap();
    let later = env.run().await;
    assert_eq!(later.code, 0, "{}", later.stdout);
    assert_eq!(
        later.events_named("cert.issued").len(),
        2,
        "{}",
        later.stdout
    );
    let status = env.status();
    assert!(
        status["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["waiting_until"].is_null() && c["published"] == true),
        "{status:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_warns_when_a_commit_adds_more_than_a_day_of_new_orders() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    // One order a day plus one at once: two new certificates a day.
    with_limit(&env, "{orders: 1, per: 24h}");
    env.repo.commit_certificates(FOUR, "four");
    let out = std::process::Command::new(support::certkeeper_bin())
        .args(["config", "check", "--repo"])
        .arg(&env.repo.path)
        .arg("--settings")
        .arg(env.settings_path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a warning, not an error: {stdout}"
    );
    assert!(
        stdout.contains("certificates[2]: 4 new certificates for issuer \"default\", whose new-order limit (1 per 1d) allows 2 in a day"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn new_certificates_beyond_a_registered_domains_limit_wait_and_other_domains_go_on() {
    let env = LocalEnv::start(&["example.test", "other.test"], PebbleOptions::default()).await;
    let text = std::fs::read_to_string(env.settings_path()).unwrap();
    std::fs::write(
        env.settings_path(),
        text.replace(
            "  order_timeout: 60s\n",
            "  order_timeout: 60s\n  registered_domain_limit: {certificates: 2, per: 1h}\n",
        ),
    )
    .unwrap();
    // Three new certificates under example.test (one of them names two
    // hosts: still one certificate for the domain), one under other.test.
    env.repo.commit_certificates(
        "certificates:\n  - name: a\n    domains: [a.example.test, www.a.example.test]\n  - name: b\n    domains: [b.example.test]\n  - name: c\n    domains: [c.example.test]\n  - name: d\n    domains: [d.other.test]\n",
        "four",
    );
    let out = env.run().await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let issued: Vec<String> = out
        .events_named("cert.issued")
        .iter()
        .map(|e| e["cert"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(issued.len(), 3, "{}", out.stdout);
    assert!(issued.contains(&"d".to_string()), "{issued:?}");
    let wait = out.events_named("ca.limit.wait");
    assert_eq!(wait.len(), 1, "{}", out.stdout);
    assert_eq!(wait[0]["limit"], "registered_domain_limit");
    let message = wait[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("1 new certificates wait for the CA's limit of 2 new certificates per registered domain per 1h (example.test); next at "),
        "{message}"
    );
    let status = env.status();
    let waiting = waiting(&status);
    assert_eq!(waiting.len(), 1, "{status:#}");
    assert_eq!(
        waiting[0]["waiting_for"],
        "the CA's limit on new certificates for example.test"
    );
    let st = env
        .certkeeper(vec![
            "status".into(),
            "--config".into(),
            env.settings_path().display().to_string(),
        ])
        .await;
    assert!(
        st.stdout.contains(
            "not issued yet: waits for the CA's limit on new certificates for example.test"
        ),
        "{}",
        st.stdout
    );
    // The buckets as the state dir keeps them: example.test spent, the
    // other domain one down.
    let buckets: serde_json::Value = serde_json::from_slice(
        &std::fs::read(env.state_dir().join("limits/default.domains.json")).unwrap(),
    )
    .unwrap();
    assert!(buckets["example.test"]["tokens"].as_f64().unwrap() < 1.0);
    assert!(buckets["other.test"]["tokens"].as_f64().unwrap() >= 1.0);
}
