//! Bad input gets one clear error naming file, line and field, exit code 2,
//! and nothing already live is touched.

use crate::support;

use std::process::Command;
use support::{ConfigRepo, LocalEnv, PebbleOptions};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn certkeeper(settings: &std::path::Path) -> Run {
    let out = Command::new(support::certkeeper_bin())
        .args(["run", "--once", "--config"])
        .arg(settings)
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "x")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("run certkeeper");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Settings pointing at nothing that answers: config errors come first.
fn settings(dir: &std::path::Path, repo_url: &str, extra: &str) -> std::path::PathBuf {
    let path = dir.join("certkeeper.yaml");
    std::fs::write(
        &path,
        format!(
            "config_repo:\n  url: {repo_url}\nstate_dir: state\nacme:\n  directory_url: https://127.0.0.1:9/dir\naws:\n  region: us-east-1\n  endpoint_url: http://127.0.0.1:9\n{extra}"
        ),
    )
    .unwrap();
    path
}

#[test]
fn missing_settings_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.yaml");
    let run = certkeeper(&path);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("cannot read settings file") && run.stderr.contains("nope.yaml"),
        "{}",
        run.stderr
    );
}

#[test]
fn unknown_settings_field_names_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = settings(dir.path(), "repo", "s3:\n  bucket: b\n  encryption: yes\n");
    let run = certkeeper(&path);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("certkeeper.yaml:11:3: s3: unknown field `encryption`"),
        "{}",
        run.stderr
    );
}

#[test]
fn malformed_settings_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let path = settings(dir.path(), "repo", "max_concurrent_orders: [\n");
    let run = certkeeper(&path);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("certkeeper.yaml:"), "{}", run.stderr);
}

#[test]
fn unreachable_repo() {
    let dir = tempfile::tempdir().unwrap();
    let path = settings(
        dir.path(),
        "https://user:sekrit-token@127.0.0.1:9/certs.git",
        "",
    );
    let run = certkeeper(&path);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("cannot fetch config repo"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("sekrit-token") && !run.stdout.contains("sekrit-token"),
        "token leaked"
    );
    let status = std::fs::read_to_string(dir.path().join("state/status.json")).unwrap();
    assert!(status.contains("cannot fetch config repo") && !status.contains("sekrit-token"));
}

#[test]
fn invalid_repo_content_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let repo = ConfigRepo::init(&dir.path().join("repo"));
    let path = settings(dir.path(), "repo", "");
    repo.commit_certificates(
        "certificates:\n  - name: web\n    domains:\n      - web.example.test\n      - \"*.*.example.test\"\n",
        "bad wildcard",
    );
    let run = certkeeper(&path);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("certificates.yaml:5:9: certificates[0].domains[1]: \"*.*.example.test\" is not a valid wildcard"),
        "{}",
        run.stderr
    );
    let events: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        events.iter().any(|e| e["event"] == "run.failed"),
        "{}",
        run.stdout
    );

    repo.commit_certificates(
        "certificates:\n  - name: web\n    domain: [web.example.test]\n",
        "typo",
    );
    let run = certkeeper(&path);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("certificates.yaml:3:5: certificates[0].domain: unknown field `domain`"),
        "{}",
        run.stderr
    );

    repo.commit_certificates(
        "certificates:\n  - name: web\n    domains: [a.example.test\n",
        "syntax",
    );
    let run = certkeeper(&path);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("certificates.yaml:"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_commit_after_good_one_touches_nothing() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    env.repo.commit_certificates(
        "certificates:\n  - name: web\n    domains: [web.example.test]\n",
        "good",
    );
    let out = env.run().await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let cert = env.live_file("web", "cert.pem");
    let remote = env.s3_object("certs/web/cert.pem").await.unwrap();

    let bad = env.repo.commit_certificates(
        "certificates:\n  - name: web\n    domains: [web.example.test, \"bad domain\"]\n",
        "bad",
    );
    let out = env.run().await;
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(&bad),
        "error names the rejected commit: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("certificates[0].domains[1]"),
        "{}",
        out.stderr
    );
    assert_eq!(env.live_file("web", "cert.pem"), cert);
    assert_eq!(env.s3_object("certs/web/cert.pem").await.unwrap(), remote);
    assert!(out.events_named("order.created").is_empty());
}
