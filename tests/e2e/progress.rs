//! The live progress line of `run --once`: shown on a terminal with text
//! logs, never in JSON log mode or when stderr is not a terminal.

use crate::support;

use std::process::Command;
use support::{LocalEnv, PebbleOptions};

/// Runs certkeeper under `script`, which gives it a pseudo-terminal.
fn on_a_terminal(env: &LocalEnv, log_format: &str) -> String {
    let cmd = format!(
        "{} run --once --log-format {log_format} --config {}",
        support::certkeeper_bin().display(),
        env.settings_path().display()
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
        .env("AWS_SECRET_ACCESS_KEY", &env.aws_secret)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("CERTKEEPER_LOG", "info")
        .output()
        .expect("script (bsdutils)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_only_for_people() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    env.repo.commit_certificates(
        "certificates:\n  - name: a\n    domains: [a.example.test]\n  - name: b\n    domains: [b.example.test]\n",
        "two",
    );
    let text = tokio::task::block_in_place(|| on_a_terminal(&env, "text"));
    assert!(
        text.contains("2/2 certificates checked, 2 renewed, 0 failed"),
        "{text}"
    );
    let json = tokio::task::block_in_place(|| on_a_terminal(&env, "json"));
    assert!(!json.contains("certificates checked"), "{json}");
    // Not a terminal: no progress either.
    let out = env
        .certkeeper(vec![
            "run".into(),
            "--once".into(),
            "--log-format".into(),
            "text".into(),
            "--config".into(),
            env.settings_path().display().to_string(),
        ])
        .await;
    assert_eq!(out.code, 0);
    assert!(
        !out.stderr.contains("certificates checked"),
        "{}",
        out.stderr
    );
}
