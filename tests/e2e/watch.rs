//! Expiry watch: certificates from files (PEM and DER) and S3, alerts to a
//! Slack webhook and a signed JSON webhook (local receivers), once a day,
//! stopping when a renewed certificate appears; `inventory`.

use crate::support;

use hmac::{KeyInit, Mac};
use std::sync::{Arc, Mutex};
use support::{LocalEnv, PebbleOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A self-signed certificate for `cn`, valid for `days` more days.
fn cert(cn: &str, days: i64) -> (String, Vec<u8>) {
    let (pem, der, _) = cert_and_key(cn, days);
    (pem, der)
}

fn cert_and_key(cn: &str, days: i64) -> (String, Vec<u8>, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![format!("{cn}.example.test")]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(300);
    params.not_after = now + time::Duration::days(days) + time::Duration::hours(12);
    let c = params.self_signed(&key).unwrap();
    (c.pem(), c.der().to_vec(), key.serialize_pem())
}

#[derive(Clone, Debug)]
struct Request {
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

/// An HTTP receiver that records every POST and answers 200.
async fn receiver() -> (u16, Arc<Mutex<Vec<Request>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let got: Arc<Mutex<Vec<Request>>> = Arc::default();
    let store = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                continue;
            };
            let store = store.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = tcp.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap())
                            })
                            .unwrap_or(0);
                        if body.len() >= len {
                            let mut lines = head.lines();
                            let path = lines.next().unwrap().split(' ').nth(1).unwrap().to_string();
                            let headers = lines
                                .filter_map(|l| l.split_once(':'))
                                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                                .collect();
                            store.lock().unwrap().push(Request {
                                path,
                                headers,
                                body: body.to_string(),
                            });
                            let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
                            break;
                        }
                    }
                }
            });
        }
    });
    (port, got)
}

const SLACK_PATH: &str = "/services/T0000/B0000/sEcReTsLaCkToKeN";
const HOOK_KEY: &str = "hook-signing-key-never-logged";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_once_a_day_and_stop_when_renewed() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    let (port, got) = receiver().await;
    let root = env.root.clone();
    let mesh = root.join("mesh");
    std::fs::create_dir_all(mesh.join("old")).unwrap();
    std::fs::write(mesh.join("old/mesh-prod.pem"), cert("mesh-prod", 20).0).unwrap();
    std::fs::write(mesh.join("partner.der"), cert("partner", 3).1).unwrap();
    std::fs::write(mesh.join("fine.crt"), cert("fine", 200).0).unwrap();
    std::fs::write(mesh.join("notes.txt"), "not a certificate").unwrap();
    // A PFX, as partners send them.
    let (pem, _, key) = cert_and_key("partner-b", 5);
    std::fs::write(root.join("pb.crt"), pem).unwrap();
    std::fs::write(root.join("pb.key"), key).unwrap();
    let status = std::process::Command::new("openssl")
        .args(["pkcs12", "-export", "-passout", "pass:pfx-pass-123", "-in"])
        .arg(root.join("pb.crt"))
        .arg("-inkey")
        .arg(root.join("pb.key"))
        .arg("-out")
        .arg(mesh.join("partner-b.pfx"))
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::write(root.join("pfx.pass"), "pfx-pass-123\n").unwrap();
    // SSM: a certificate beside its key; only the certificate is watched.
    let ssm = aws_sdk_ssm::Client::new(&env.moto.sdk_config().await);
    let (pem, _, key) = cert_and_key("client-cert", 12);
    for (n, v) in [
        ("/mesh/prod/client-cert", pem),
        ("/mesh/prod/client-key", key),
    ] {
        ssm.put_parameter()
            .name(n)
            .value(v)
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .send()
            .await
            .unwrap();
    }
    env.moto
        .s3()
        .await
        .put_object()
        .bucket(&env.bucket)
        .key("backup/mesh-dev/cert.pem")
        .body(cert("mesh-dev", 10).0.into_bytes().into())
        .send()
        .await
        .unwrap();
    std::fs::write(
        root.join("slack.url"),
        format!("http://127.0.0.1:{port}{SLACK_PATH}"),
    )
    .unwrap();
    std::fs::write(
        root.join("hook.url"),
        format!("http://127.0.0.1:{port}/hook"),
    )
    .unwrap();
    std::fs::write(root.join("hook.key"), HOOK_KEY).unwrap();
    env.write_settings(&format!(
        r#"secrets:
  slack-url: {{file: {root}/slack.url}}
  hook-url: {{file: {root}/hook.url}}
  hook-key: {{file: {root}/hook.key}}
  pfx-pass: {{file: {root}/pfx.pass}}
channels:
  ops-slack: {{type: slack, webhook_url: slack-url}}
  pager: {{type: webhook, url: hook-url, hmac_secret: hook-key}}
watch:
  channels: [ops-slack, pager]
  sources:
    - type: files
      path: {root}/mesh
      labels: {{environment: prod, owner: mesh-team}}
      pkcs12_password: pfx-pass
    - type: ssm
      path: /mesh/prod
      labels: {{environment: prod}}
    - type: s3
      bucket: {bucket}
      prefix: backup/
      name: "{{dir}}"
      labels: {{environment: dev}}
"#,
        root = root.display(),
        bucket = env.bucket
    ));
    env.repo.commit_certificates("certificates: []\n", "none");

    let out = env.run().await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let requests = got.lock().unwrap().clone();
    let slack: Vec<&Request> = requests.iter().filter(|r| r.path == SLACK_PATH).collect();
    let hooks: Vec<&Request> = requests.iter().filter(|r| r.path == "/hook").collect();
    assert_eq!(slack.len(), 5, "{requests:?}");
    assert_eq!(hooks.len(), 5, "{requests:?}");
    let texts: Vec<String> = slack
        .iter()
        .map(|r| {
            serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(
        texts.contains(
            &"The certificate for mesh-prod in prod will expire within the next 20 days"
                .to_string()
        ),
        "{texts:?}"
    );
    assert!(
        texts.contains(
            &"The certificate for mesh-dev in dev will expire within the next 10 days".to_string()
        ),
        "{texts:?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t
                .starts_with("URGENT: the certificate for partner in prod expires within 3 days")),
        "{texts:?}"
    );
    assert!(
        texts.iter().any(|t| t
            .starts_with("URGENT: the certificate for partner-b in prod expires within 5 days")),
        "{texts:?}"
    );
    assert!(
        texts.contains(
            &"The certificate for client-cert in prod will expire within the next 12 days"
                .to_string()
        ),
        "{texts:?}"
    );
    let cache = std::fs::read_to_string(env.state_dir().join("watch-cache.json")).unwrap();
    assert!(
        cache.contains("s3://certkeeper-test/backup/mesh-dev/cert.pem"),
        "{cache}"
    );
    for h in &hooks {
        let sig = h
            .headers
            .iter()
            .find(|(k, _)| k == "x-certkeeper-signature")
            .map(|(_, v)| v.clone())
            .expect("signed");
        let mut mac = hmac::Hmac::<sha2_11::Sha256>::new_from_slice(HOOK_KEY.as_bytes()).unwrap();
        mac.update(h.body.as_bytes());
        let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(sig, want, "signature of {}", h.body);
        let json: serde_json::Value = serde_json::from_str(&h.body).unwrap();
        assert!(
            json["level"].is_string() && json["days_left"].is_i64(),
            "{json}"
        );
    }
    for (what, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        assert!(!text.contains("sEcReTsLaCkToKeN"), "webhook URL in {what}");
        assert!(!text.contains(HOOK_KEY), "HMAC key in {what}");
        assert!(!text.contains("pfx-pass-123"), "PFX password in {what}");
    }

    // Same day: nothing again, also after a restart (state on disk).
    let out = env.run().await;
    assert_eq!(out.code, 0);
    assert_eq!(
        got.lock().unwrap().len(),
        10,
        "alerts repeated within a day"
    );

    // A renewed mesh-prod lands beside the old one; with the day's memory
    // gone, only the other two are still alerted.
    std::fs::write(mesh.join("mesh-prod.pem"), cert("mesh-prod", 365).0).unwrap();
    std::fs::remove_file(env.state_dir().join("alerts.json")).unwrap();
    let out = env.run().await;
    assert_eq!(out.code, 0);
    let requests = got.lock().unwrap().clone();
    let new: Vec<String> = requests[10..]
        .iter()
        .filter(|r| r.path == SLACK_PATH)
        .map(|r| r.body.clone())
        .collect();
    assert_eq!(new.len(), 4, "{new:?}");
    assert!(new.iter().all(|b| !b.contains("mesh-prod")), "{new:?}");

    // The inventory lists them with their last alert.
    let out = env
        .certkeeper(vec![
            "inventory".into(),
            "--json".into(),
            "--config".into(),
            env.settings_path().display().to_string(),
        ])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let inv: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let rows = inv["certificates"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    for n in ["mesh-prod", "partner", "fine", "mesh-dev"] {
        assert!(names.contains(&n), "{names:?}");
    }
    let partner = rows.iter().find(|r| r["name"] == "partner").unwrap();
    assert!(
        partner["last_alert"]
            .as_str()
            .unwrap()
            .ends_with(" critical"),
        "{partner}"
    );
    let prod = rows.iter().find(|r| r["name"] == "mesh-prod").unwrap();
    assert!(
        prod["days_left"].as_i64().unwrap() > 300,
        "newest wins: {prod}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_over_starttls_with_auth() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    let sink = support::smtp::SmtpSink::start(&env.root.join("smtp")).await;
    let root = env.root.clone();
    std::fs::create_dir_all(root.join("certs")).unwrap();
    std::fs::write(root.join("certs/mesh-prod.pem"), cert("mesh-prod", 9).0).unwrap();
    std::fs::write(root.join("smtp.pass"), "smtp-pass-never-logged").unwrap();
    env.write_settings(&format!(
        r#"secrets:
  smtp: {{file: {root}/smtp.pass}}
channels:
  mail:
    type: email
    server: "{addr}"
    from: certkeeper@example.test
    to: [ops@example.test, mesh@example.test]
    username: certkeeper
    password: smtp
    root_ca_file: {ca}
watch:
  channels: [mail]
  sources:
    - {{type: files, path: {root}/certs, labels: {{environment: prod}}}}
"#,
        root = root.display(),
        addr = sink.addr,
        ca = sink.ca.display(),
    ));
    env.repo.commit_certificates("certificates: []\n", "none");
    let out = env.run().await;
    assert_eq!(out.code, 0, "{}", out.stdout);
    let mails = sink.mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 1, "{}", out.stdout);
    let m = &mails[0];
    assert!(m.tls, "sent after STARTTLS");
    assert_eq!(m.auth.as_deref(), Some("certkeeper:smtp-pass-never-logged"));
    assert_eq!(m.from, "certkeeper@example.test");
    assert_eq!(m.to, ["ops@example.test", "mesh@example.test"]);
    assert!(
        m.data.contains("Subject: [certkeeper] warning: mesh-prod"),
        "{}",
        m.data
    );
    assert!(
        m.data
            .contains("The certificate for mesh-prod in prod will expire within the next 9 days"),
        "{}",
        m.data
    );
    for text in [&out.stdout, &out.stderr] {
        assert!(!text.contains("smtp-pass-never-logged"));
    }
}
