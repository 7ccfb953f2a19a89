//! SIGTERM in the middle of an order: the TXT values already written are
//! removed, the status file is written, nothing half-done is left live.

use crate::support;
use support::Tied;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use support::{LocalEnv, PebbleOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_during_propagation_cleans_up() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    env.repo.commit_certificates(
        "certificates:\n  - name: slow\n    domains: [slow.example.test]\n",
        "one",
    );
    // No grace period: the order in flight is cancelled at once.
    env.write_settings("shutdown_grace: 0s\n");
    // The nameserver never sees the value, so the run waits in propagation.
    env.dns.hide("_acme-challenge.slow.example.test");

    let bin = support::certkeeper_bin();
    let settings = env.settings_path();
    let settings_path = settings.clone();
    let secret = env.aws_secret.clone();
    let (code, stdout) = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(bin)
            .args(["run", "--once", "--config"])
            .arg(settings)
            .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .tied()
            .spawn()
            .expect("spawn");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            let upserted = line.contains("\"dns.txt.upserted\"");
            seen.push(line);
            if upserted {
                break;
            }
        }
        // While it runs, a second run on the same state dir is refused.
        let second = Command::new(support::certkeeper_bin())
            .args(["run", "--once", "--config"])
            .arg(&settings_path)
            .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
            .env("AWS_SECRET_ACCESS_KEY", "x")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .expect("second run");
        assert_eq!(second.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&second.stderr).into_owned();
        assert!(
            stderr.contains("another certkeeper run is in progress"),
            "{stderr}"
        );
        // SAFETY: plain kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill");
        seen.extend(lines.map_while(Result::ok));
        let status = child.wait().unwrap();
        (status.code(), seen.join("\n"))
    })
    .await
    .unwrap();

    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("\"run.cancelling\""), "{stdout}");
    assert!(stdout.contains("\"dns.txt.removed\""), "{stdout}");
    assert!(stdout.contains("\"run.finished\""), "{stdout}");
    assert_eq!(
        env.moto.challenge_records().await,
        Vec::<String>::new(),
        "TXT left behind"
    );
    let status = env.status();
    assert_eq!(status["certificates"][0]["state"], "failed");
    assert!(
        status["certificates"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("cancelled")
    );
    assert!(
        !env.state_dir().join("live/slow").exists(),
        "nothing may be live"
    );
}

/// SIGKILL leaves no chance to clean up: the TXT value stays, and the
/// journal in the state dir has the next run remove it before anything
/// else — then the interrupted certificate is issued.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_leaves_records_the_next_run_removes() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    env.repo.commit_certificates(
        "certificates:\n  - name: slow\n    domains: [slow.example.test]\n",
        "one",
    );
    env.dns.hide("_acme-challenge.slow.example.test");
    let bin = support::certkeeper_bin();
    let settings = env.settings_path();
    let secret = env.aws_secret.clone();
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(bin)
            .args(["run", "--once", "--config"])
            .arg(settings)
            .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .tied()
            .spawn()
            .expect("spawn");
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            if line.unwrap().contains("\"dns.txt.upserted\"") {
                break;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
    })
    .await
    .unwrap();
    let left = env.moto.challenge_records().await;
    assert_eq!(
        left.len(),
        1,
        "the killed run's record is still there: {left:?}"
    );
    assert!(env.state_dir().join("dns-journal/slow.json").exists());

    env.dns.show("_acme-challenge.slow.example.test");
    let out = env.run().await;
    assert_eq!(out.code, 0, "{}", out.stdout);
    let recovered = out.events_named("dns.journal.recovered");
    assert_eq!(recovered.len(), 1, "{}", out.stdout);
    assert_eq!(recovered[0]["cert"], "slow");
    assert!(env.moto.challenge_records().await.is_empty());
    assert!(!env.state_dir().join("dns-journal/slow.json").exists());
    assert_eq!(out.events_named("cert.issued").len(), 1);
}
