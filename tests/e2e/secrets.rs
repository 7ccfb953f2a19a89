//! One full issuance and publish at debug level with every kind of secret
//! in play — an EAB HMAC key, the AWS secret key, private keys (certificate
//! and ACME account), webhook URLs with their tokens, a webhook HMAC key and
//! an SMTP password — then every output is searched for each of them: the
//! log lines on stdout and stderr (including the errors of alert channels
//! that cannot be reached, where URLs like to turn up), status.json, every
//! other state file that is not a key file, and what the daemon serves on
//! /status, /metrics and /healthz. Zero hits.

use crate::support;
use support::Tied;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use support::{LocalEnv, PebbleOptions};

const EAB_HMAC: &str = "Qk9HVVMtSE1BQy1ORVZFUi1MT0dHRUQtNzc3LTEyMzQ1Njc4OTBhYmNkZWZnaGlq";
const SLACK_TOKEN: &str = "sLaCkWeBhOoKtOkEnNeVeRlOgGeD";
const HOOK_TOKEN: &str = "hOoKpAtHtOkEnNeVeRlOgGeD";
const HOOK_KEY: &str = "hook-hmac-key-never-logged";
const SMTP_PASSWORD: &str = "smtp-password-never-logged";

/// A certificate for the watch that expires in `days`, so alerts go out.
fn expiring_cert(days: i64) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["partner.example.test".into()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "partner");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(300);
    params.not_after = now + time::Duration::days(days);
    params.self_signed(&key).unwrap().pem()
}

/// The base64 body of a PEM file, and a 40-character probe of it.
fn pem_probes(pem: &str) -> Vec<String> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut probes = vec![body[..40.min(body.len())].to_string()];
    // Any line of the body, in case something logs part of the file.
    probes.extend(
        pem.lines()
            .filter(|l| !l.starts_with("-----") && l.len() >= 32)
            .map(str::to_string),
    );
    probes
}

fn get(port: u16, path: &str) -> String {
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(tcp, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).unwrap();
    text
}

/// Every regular file under `dir` that is not a private key file, as text.
fn state_files(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            state_files(&path, out);
        } else if meta.is_file() {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            // Files whose job is to hold a key: the key files, the
            // keystores, the ACME account.
            let holds_a_key = name == "privkey.pem"
                || name.ends_with(".key")
                || name.ends_with(".p12")
                || path.parent().is_some_and(|p| p.ends_with("accounts"));
            if !holds_a_key {
                out.push((
                    path.display().to_string(),
                    String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned(),
                ));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_secret_reaches_any_log_line_error_state_file_or_metric() {
    let env = LocalEnv::start(
        &["example.test"],
        PebbleOptions {
            eab: Some(("kid-1".into(), EAB_HMAC.into())),
            ..Default::default()
        },
    )
    .await;
    let sink = support::smtp::SmtpSink::start(&env.root.join("smtp")).await;
    let root = env.root.clone();
    // Nothing listens on this port: the webhooks fail, and their errors
    // must still not show the URLs.
    let closed = support::free_port();
    std::fs::write(root.join("eab.hmac"), EAB_HMAC).unwrap();
    std::fs::write(
        root.join("slack.url"),
        format!("http://127.0.0.1:{closed}/services/T000/B000/{SLACK_TOKEN}"),
    )
    .unwrap();
    std::fs::write(
        root.join("hook.url"),
        format!("http://127.0.0.1:{closed}/hooks/{HOOK_TOKEN}?token={HOOK_TOKEN}"),
    )
    .unwrap();
    std::fs::write(root.join("hook.key"), HOOK_KEY).unwrap();
    std::fs::write(root.join("smtp.pass"), SMTP_PASSWORD).unwrap();
    std::fs::create_dir_all(root.join("partners")).unwrap();
    std::fs::write(root.join("partners/partner.pem"), expiring_cert(5)).unwrap();
    let port = support::free_port();
    let extra = format!(
        r#"issuers:
  eab-ca:
    directory_url: {dir}
    root_ca_file: {ca}
    eab:
      key_id: kid-1
      hmac_key_file: {root}/eab.hmac
secrets:
  slack-url: {{file: {root}/slack.url}}
  hook-url: {{file: {root}/hook.url}}
  hook-key: {{file: {root}/hook.key}}
  smtp: {{file: {root}/smtp.pass}}
channels:
  ops-slack: {{type: slack, webhook_url: slack-url}}
  pager: {{type: webhook, url: hook-url, hmac_secret: hook-key}}
  mail:
    type: email
    server: "{smtp}"
    from: certkeeper@example.test
    to: [ops@example.test]
    username: certkeeper
    password: smtp
    root_ca_file: {smtp_ca}
watch:
  channels: [ops-slack, pager, mail]
  sources:
    - {{type: files, path: {root}/partners, labels: {{environment: prod}}}}
targets:
  ssm-mesh:
    type: ssm
    environments: [dev, prod]
    parameters:
      cert: /mesh/{{env}}/{{mailbox}}-cert
      key: /mesh/{{env}}/{{mailbox}}-key
      chain: /mesh/{{env}}/{{mailbox}}-chain
schedule:
  cron: "0 3 1 1 *"
http:
  listen: 127.0.0.1:{port}
"#,
        dir = env.pebble.directory_url(),
        ca = env.pebble.listener_ca().display(),
        root = root.display(),
        smtp = sink.addr,
        smtp_ca = sink.ca.display(),
    );
    env.write_settings(&extra);
    env.repo.commit_certificates(
        "certificates:\n  - name: mesh\n    domains: [\"*.example.test\", example.test]\n    issuer: eab-ca\n    vars: {mailbox: X26ABC1}\n    targets: [s3, ssm-mesh]\n  - name: www\n    domains: [www.example.test]\n    issuer: eab-ca\n    key_type: rsa-2048\n",
        "two",
    );

    let first = env.run().await;
    assert!(
        first.events_named("cert.issued").len() == 2,
        "{}\n{}",
        first.stdout,
        first.stderr
    );
    assert!(
        first.stdout.contains("\"level\":\"DEBUG\""),
        "the run logs at debug level"
    );
    // The webhooks failed (nothing listens) and the mail went out.
    let failed: Vec<_> = first
        .events_named("alert.failed")
        .into_iter()
        .map(|e| e["channel"].as_str().unwrap().to_string())
        .collect();
    assert!(
        failed.contains(&"ops-slack".to_string()) && failed.contains(&"pager".to_string()),
        "{}",
        first.stdout
    );
    for e in first.events_named("alert.failed") {
        assert!(
            e["error"].as_str().unwrap().contains("cannot connect"),
            "{e}"
        );
    }
    // The secrets were in play: the mail server got the password.
    let mails = sink.mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 1, "{}", first.stdout);
    assert_eq!(
        mails[0].auth.as_deref(),
        Some(format!("certkeeper:{SMTP_PASSWORD}").as_str())
    );
    let forced = env
        .certkeeper_line("renew --force www", &env.settings_path())
        .await;
    assert_eq!(forced.code, 0, "{}\n{}", forced.stdout, forced.stderr);

    // The daemon's HTTP endpoints, from the state those runs left.
    let mut daemon = env
        .command()
        .args(["run", "--config"])
        .arg(env.settings_path())
        .env("CERTKEEPER_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .tied()
        .spawn()
        .unwrap();
    let mut served = Vec::new();
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for path in ["/status", "/metrics", "/healthz"] {
        served.push((path.to_string(), get(port, path)));
    }
    assert!(served[1].1.contains("certkeeper_"), "{}", served[1].1);
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    let mut daemon_out = String::new();
    daemon
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut daemon_out)
        .unwrap();
    let mut daemon_err = String::new();
    daemon
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut daemon_err)
        .unwrap();
    daemon.wait().unwrap();

    // What must never show up.
    let mut needles: Vec<(String, String)> = vec![
        ("EAB HMAC key".into(), EAB_HMAC.into()),
        ("AWS secret key".into(), env.aws_secret.clone()),
        ("Slack webhook token".into(), SLACK_TOKEN.into()),
        ("webhook URL token".into(), HOOK_TOKEN.into()),
        ("webhook HMAC key".into(), HOOK_KEY.into()),
        ("SMTP password".into(), SMTP_PASSWORD.into()),
        ("PEM private key".into(), "PRIVATE KEY".into()),
    ];
    for name in ["mesh", "www"] {
        for version in std::fs::read_dir(env.state_dir().join("archive").join(name)).unwrap() {
            let key = version.unwrap().path().join("privkey.pem");
            if let Ok(pem) = std::fs::read_to_string(&key) {
                for probe in pem_probes(&pem) {
                    needles.push((format!("private key {}", key.display()), probe));
                }
            }
        }
    }
    for account in std::fs::read_dir(env.state_dir().join("accounts")).unwrap() {
        let path = account.unwrap().path();
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let key = json["key_pkcs8"].as_str().unwrap().to_string();
        needles.push((
            format!("account key {}", path.display()),
            key[..40].to_string(),
        ));
    }
    assert!(needles.len() > 10, "{needles:?}");

    let mut haystacks: Vec<(String, String)> = vec![
        ("first run stdout".into(), first.stdout.clone()),
        ("first run stderr".into(), first.stderr.clone()),
        ("forced renewal stdout".into(), forced.stdout.clone()),
        ("forced renewal stderr".into(), forced.stderr.clone()),
        ("daemon stdout".into(), daemon_out),
        ("daemon stderr".into(), daemon_err),
    ];
    for (path, body) in served {
        haystacks.push((format!("GET {path}"), body));
    }
    let mut files = Vec::new();
    state_files(&env.state_dir(), &mut files);
    assert!(
        files.iter().any(|(p, _)| p.ends_with("status.json")),
        "{:?}",
        files.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    haystacks.extend(files);

    let mut hits = Vec::new();
    for (where_, text) in &haystacks {
        for (what, needle) in &needles {
            if text.contains(needle.as_str()) {
                hits.push(format!("{what} in {where_}"));
            }
        }
    }
    assert!(hits.is_empty(), "secrets leaked: {hits:#?}");
}
