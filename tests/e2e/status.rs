//! `certkeeper status`: table, JSON, JUnit and Nagios exit codes.

use crate::support;

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
    support::assert_junit_valid(&xml);
    // Two certificates and the run itself.
    assert!(
        xml.contains("<testsuite name=\"certkeeper\" tests=\"3\" failures=\"0\""),
        "{xml}"
    );
    assert!(xml.contains("name=\"api\""), "{xml}");
    assert!(
        xml.contains("<testcase classname=\"certkeeper.run\" name=\"last run\""),
        "{xml}"
    );

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
    support::assert_junit_valid(&xml);
    assert!(
        xml.contains("failures=\"2\"") && xml.contains("<failure message=\"WARNING expires in"),
        "{xml}"
    );
    // `--junit -`: exactly the XML on stdout (what Jenkins saves over ssh),
    // the verdict on stderr, the Nagios exit code.
    let out = status(&env, &["--critical-days", "5000", "--junit", "-"]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stdout.starts_with("<?xml"), "{}", out.stdout);
    assert!(
        out.stdout.trim_end().ends_with("</testsuite>"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("certkeeper CRITICAL - "),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.trim_end().ends_with('-'),
        "the verdict says why: {}",
        out.stderr
    );
    support::assert_junit_valid(&out.stdout);
    let ok = status(&env, &["--junit", "-"]).await;
    assert!(
        ok.stderr
            .contains("certkeeper OK - 2 certificates, last run"),
        "{}",
        ok.stderr
    );
    let old = status(&env, &["--max-run-age", "1ms"]).await;
    assert!(
        old.stdout.contains("no run for ") && !old.stdout.contains("no run for 0 hours"),
        "{}",
        old.stdout
    );
    let out = status(&env, &["--critical-days", "5000", "--json"]).await;
    assert_eq!(out.code, 2, "{}", out.stdout);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["level"], "CRITICAL");
    assert_eq!(json["status"]["certificates"].as_array().unwrap().len(), 2);

    // Thresholds from the settings; flags override them.
    env.write_settings("health:\n  warning_days: 5000\n");
    assert_eq!(status(&env, &[]).await.code, 1);
    assert_eq!(status(&env, &["--warning-days", "14"]).await.code, 0);
}

/// The Jenkins path: a real sshd with the forced-command key of
/// deploy/jenkins/authorized_keys.example. Whatever the client asks for,
/// it gets the JUnit report and the Nagios exit code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_command_key_only_prints_the_report() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    env.repo.commit_certificates(
        "certificates:\n  - name: web\n    domains: [web.example.test]\n",
        "one",
    );
    assert_eq!(env.run().await.code, 0);
    let sshd = support::sshd::Sshd::start(&env.root.join("sshd"));
    let template = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/jenkins/authorized_keys.example"),
    )
    .unwrap();
    let line = template
        .lines()
        .find(|l| l.starts_with("restrict,command="))
        .expect("key line");
    let options = line.split(" ssh-ed25519 ").next().unwrap().replace(
        "/usr/local/bin/certkeeper status --config /etc/certkeeper/certkeeper.yaml",
        &format!(
            "{} status --config {}",
            support::certkeeper_bin().display(),
            env.settings_path().display()
        ),
    );
    let client_pub = std::fs::read_to_string(sshd.dir.join("client_ed25519.pub")).unwrap();
    std::fs::write(
        sshd.dir.join("authorized_keys"),
        format!("{options} {}", client_pub.trim()),
    )
    .unwrap();
    let marker = env.root.join("should-not-exist");
    let out = std::process::Command::new("ssh")
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-i",
        ])
        .arg(&sshd.client_key)
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            sshd.known_hosts().display()
        ))
        .args(["-p", &sshd.port.to_string(), "root@127.0.0.1"])
        .arg(format!("touch {}", marker.display()))
        .output()
        .expect("ssh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("<?xml"), "{stdout}");
    assert!(stdout.contains("name=\"web\""), "{stdout}");
    support::assert_junit_valid(&stdout);
    assert!(
        !marker.exists(),
        "the forced command must replace what the client asked for"
    );
}
