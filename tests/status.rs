//! `certkeeper status`: table, JSON, JUnit and Nagios exit codes.

mod support;

use support::{LocalEnv, PebbleOptions};

async fn status(env: &LocalEnv, args: &[&str]) -> support::RunOutput {
    let mut all = vec![
        "status".to_string(),
        "--config".to_string(),
        env.settings_path().display().to_string(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    env.certkeeper(all).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reports_health_with_nagios_codes() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    let out = status(&env, &[]).await;
    assert_eq!(out.code, 3, "no status yet is UNKNOWN: {}", out.stdout);
    assert!(
        out.stdout.contains("certkeeper UNKNOWN - no status yet"),
        "{}",
        out.stdout
    );

    env.repo.commit_certificates(
        "certificates:\n  - name: web\n    domains: [web.example.test]\n  - name: api\n    domains: [api.example.test]\n",
        "two",
    );
    assert_eq!(env.run().await.code, 0);

    let junit = env.root.join("junit.xml");
    let out = status(&env, &["--junit", junit.to_str().unwrap()]).await;
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("web ") && l.contains("OK")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("certkeeper OK - 2 certificates"),
        "{}",
        out.stdout
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<testsuite name=\"certkeeper\" tests=\"2\" failures=\"0\">"),
        "{xml}"
    );
    assert!(xml.contains("name=\"api\""), "{xml}");

    // Pebble issues for 5 years: thresholds above that turn it WARNING/CRITICAL.
    let out = status(
        &env,
        &["--warning-days", "5000", "--junit", junit.to_str().unwrap()],
    )
    .await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains("certkeeper WARNING - web: expires in"),
        "{}",
        out.stdout
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("failures=\"2\"") && xml.contains("<failure message=\"WARNING expires in"),
        "{xml}"
    );
    // `--junit -`: exactly the XML on stdout (what Jenkins saves over ssh),
    // the verdict on stderr, the Nagios exit code.
    let out = status(&env, &["--critical-days", "5000", "--junit", "-"]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stdout.starts_with("<?xml"), "{}", out.stdout);
    assert!(out.stdout.trim_end().ends_with("</testsuite>"), "{}", out.stdout);
    assert!(out.stderr.contains("certkeeper CRITICAL"), "{}", out.stderr);
    let out = status(&env, &["--critical-days", "5000", "--json"]).await;
    assert_eq!(out.code, 2, "{}", out.stdout);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["level"], "CRITICAL");
    assert_eq!(json["status"]["certificates"].as_array().unwrap().len(), 2);
}
