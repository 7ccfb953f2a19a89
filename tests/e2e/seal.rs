//! The mTLS client runbook end to end: the client's old certificate in the
//! backup bucket is about to expire, so the watch alerts ops and mails the
//! client's contact the runbook's request (make a key pair, send only the
//! public key); the client does, with openssl; `certkeeper seal` seals the
//! new credentials to that key and uploads them to the backup bucket; the
//! client opens the bundle with tar and openssl exactly as its README says
//! and gets the live files byte for byte; the next watch run is silent.

use crate::support;

use std::path::Path;
use std::process::Command;
use support::{LocalEnv, PebbleOptions};

const BACKUP: &str = "client-backups";
const CONTACT: &str = "pki@client.example.test";

/// An expiring self-signed certificate, as the client's old one.
fn old_cert(days: i64) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["client.example.test".into()]).unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(300);
    params.not_after = now + time::Duration::days(days) + time::Duration::hours(12);
    params.self_signed(&key).unwrap().pem()
}

fn tool(dir: &Path, program: &str, args: &[&str]) -> String {
    support::run_tool(Command::new(program).current_dir(dir).args(args))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_to_the_clients_key_opened_with_openssl_and_the_reminders_stop() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    let sink = support::smtp::SmtpSink::start(&env.root.join("smtp")).await;
    let root = env.root.clone();
    env.moto.create_bucket(BACKUP).await;
    let s3 = env.moto.s3().await;
    s3.put_object()
        .bucket(BACKUP)
        .key("clients/hmpps-client/cert.pem")
        .body(old_cert(9).into_bytes().into())
        .send()
        .await
        .unwrap();
    let settings = format!(
        r#"channels:
  ops-mail: {{type: email, server: "{addr}", from: certkeeper@example.test, to: [ops@example.test], starttls: false}}
targets:
  backup: {{type: s3, bucket: {BACKUP}, prefix: clients}}
watch:
  channels: [ops-mail]
  contact_channel: ops-mail
  sources:
    - type: s3
      bucket: {BACKUP}
      prefix: clients/
      name: "{{dir}}"
      labels: {{environment: prod, contact: {CONTACT}}}
"#,
        addr = sink.addr,
    );
    env.write_settings(&settings);
    env.repo.commit_certificates(
        "certificates:\n  - name: hmpps-client\n    domains: [client.example.test]\n",
        "the client's certificate",
    );

    // The old certificate has 9 days: ops hear, the client is asked once.
    let out = env.run().await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let mails = sink.mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 2, "{mails:#?}");
    let to_client: Vec<_> = mails.iter().filter(|m| m.to == [CONTACT]).collect();
    assert_eq!(to_client.len(), 1, "{mails:#?}");
    let ask = &to_client[0].data;
    assert!(
        ask.contains("Subject: Certificate hmpps-client due for renewal within 9 days"),
        "{ask}"
    );
    assert!(
        ask.contains(
            "for the prod environment is due for renewal: it expires within the next 9 days"
        ),
        "{ask}"
    );
    assert!(
        ask.contains("openssl genrsa -out private-key.pem 3072"),
        "{ask}"
    );
    assert!(
        !ask.contains(BACKUP),
        "no internal location to the client: {ask}"
    );
    assert!(mails.iter().any(|m| {
        m.to == ["ops@example.test"]
            && m.data
                .contains("hmpps-client in prod will expire within the next 9 days")
    }));
    // The same day, and the next run: no second request at the same level.
    std::fs::remove_file(env.state_dir().join("alerts.json")).ok();
    let sent =
        serde_json::json!({"contact/hmpps-client": {"day": "2000-01-01", "level": "warning"}});
    std::fs::write(env.state_dir().join("alerts.json"), sent.to_string()).unwrap();
    let out = env.run().await;
    assert_eq!(out.code, 0);
    let mails = sink.mails.lock().unwrap().clone();
    assert_eq!(
        mails.iter().filter(|m| m.to == [CONTACT]).count(),
        1,
        "{mails:#?}"
    );

    // The client, on its side: a key pair, only the public half sent.
    let client = root.join("client");
    std::fs::create_dir_all(&client).unwrap();
    tool(
        &client,
        "openssl",
        &["genrsa", "-out", "private-key.pem", "3072"],
    );
    tool(
        &client,
        "openssl",
        &[
            "rsa",
            "-in",
            "private-key.pem",
            "-pubout",
            "-out",
            "public-key.pem",
        ],
    );
    let public_key = root.join("public-key.pem");
    std::fs::copy(client.join("public-key.pem"), &public_key).unwrap();

    // Refused: the client's private key, a short key, an EC key.
    let short = root.join("short");
    std::fs::create_dir_all(&short).unwrap();
    tool(&short, "openssl", &["genrsa", "-out", "k.pem", "1024"]);
    tool(
        &short,
        "openssl",
        &["rsa", "-in", "k.pem", "-pubout", "-out", "pub.pem"],
    );
    tool(
        &short,
        "openssl",
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-out",
            "ec.pem",
        ],
    );
    tool(
        &short,
        "openssl",
        &["ec", "-in", "ec.pem", "-pubout", "-out", "ecpub.pem"],
    );
    let bundle = root.join("hmpps-client.tar");
    for (key, says) in [
        (client.join("private-key.pem"), "holds a private key"),
        (
            short.join("pub.pem"),
            "an RSA key of 1024 bits; at least 2048 are needed",
        ),
        (short.join("ecpub.pem"), "an EC key"),
    ] {
        let out = env
            .certkeeper(vec![
                "seal".into(),
                "hmpps-client".into(),
                "--public-key".into(),
                key.display().to_string(),
                "--out".into(),
                bundle.display().to_string(),
                "--config".into(),
                env.settings_path().display().to_string(),
            ])
            .await;
        assert_ne!(out.code, 0);
        assert!(
            out.stderr.contains(&format!("{}: {says}", key.display())),
            "{}",
            out.stderr
        );
        assert!(!out.stderr.contains("BEGIN"), "{}", out.stderr);
        assert!(!bundle.exists(), "nothing written on a refusal");
    }
    // Files sealed with --key/--cert cannot be published (no live set to
    // name them), and a missing key file is named: nothing written either.
    let live = env.state_dir().join("live/hmpps-client");
    for (line, says) in [
        (
            format!(
                "seal hmpps-client --public-key {} --out {} --key {} --cert {} --publish backup",
                public_key.display(),
                bundle.display(),
                live.join("privkey.pem").display(),
                live.join("cert.pem").display()
            ),
            "--publish needs a certificate from the state dir".to_string(),
        ),
        (
            format!(
                "seal hmpps-client --public-key {}/missing.pem --out {}",
                root.display(),
                bundle.display()
            ),
            format!("{}/missing.pem: cannot read", root.display()),
        ),
    ] {
        let out = env.certkeeper_line(&line, &env.settings_path()).await;
        assert_ne!(out.code, 0);
        assert!(out.stderr.contains(&says), "{}", out.stderr);
        assert!(!bundle.exists());
    }
    // An unknown target is refused before anything is sealed.
    let out = env
        .certkeeper_line(
            &format!(
                "seal hmpps-client --public-key {} --out {} --publish nowhere",
                public_key.display(),
                bundle.display()
            ),
            &env.settings_path(),
        )
        .await;
    assert_ne!(out.code, 0);
    assert!(
        out.stderr
            .contains("--publish nowhere: no target \"nowhere\""),
        "{}",
        out.stderr
    );
    assert!(!bundle.exists());

    // Sealed and uploaded to the backup bucket.
    let out = env
        .certkeeper_line(
            &format!(
                "seal hmpps-client --public-key {} --out {} --publish backup",
                public_key.display(),
                bundle.display()
            ),
            &env.settings_path(),
        )
        .await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let key_pem = std::fs::read_to_string(live.join("privkey.pem")).unwrap();
    let key_body = key_pem.lines().nth(1).unwrap().to_string();
    let sealed = std::fs::read(&bundle).unwrap();
    assert!(!String::from_utf8_lossy(&sealed).contains("PRIVATE KEY"));
    assert!(!String::from_utf8_lossy(&sealed).contains(&key_body));
    for text in [&out.stdout, &out.stderr] {
        assert!(!text.contains(&key_body), "the private key in the output");
    }
    let uploaded = s3
        .get_object()
        .bucket(BACKUP)
        .key("clients/hmpps-client/sealed.tar")
        .send()
        .await
        .unwrap();
    assert_eq!(
        uploaded.server_side_encryption().map(|s| s.as_str()),
        Some("AES256")
    );
    assert_eq!(
        uploaded.body.collect().await.unwrap().into_bytes().as_ref(),
        &sealed[..]
    );

    // The client opens it with tar and openssl, exactly as the README says.
    tool(&client, "tar", &["-xf", &bundle.display().to_string()]);
    let readme = std::fs::read_to_string(client.join("README.txt")).unwrap();
    let commands: Vec<&str> = readme
        .lines()
        .filter(|l| l.starts_with("openssl ") || l.starts_with("rm "))
        .collect();
    assert!(commands.len() >= 5, "{readme}");
    for c in &commands {
        tool(&client, "sh", &["-c", c]);
    }
    assert!(
        !client.join("aes-key.hex").exists(),
        "the README removes the key"
    );
    for file in ["privkey.pem", "cert.pem", "chain.pem", "fullchain.pem"] {
        assert_eq!(
            std::fs::read(client.join(file)).unwrap(),
            std::fs::read(live.join(file)).unwrap(),
            "{file} byte for byte"
        );
    }
    let sums = std::fs::read_to_string(client.join("SHA256SUMS")).unwrap();
    let digests = tool(
        &client,
        "openssl",
        &[
            "dgst",
            "-sha256",
            "-r",
            "privkey.pem",
            "cert.pem",
            "chain.pem",
            "fullchain.pem",
        ],
    );
    for line in digests.lines() {
        let (digest, file) = line.split_once(" *").unwrap();
        assert!(
            sums.contains(&format!("{digest}  {file}")),
            "{line} in {sums}"
        );
    }
    // What the client got is the key of the certificate.
    let modulus = |args: &[&str]| tool(&client, "openssl", args);
    assert_eq!(
        modulus(&["x509", "-in", "cert.pem", "-noout", "-pubkey"]),
        modulus(&["pkey", "-in", "privkey.pem", "-pubout"])
    );

    // The new certificate is in the backup bucket: with the day's memory
    // gone, nobody is alerted or asked again.
    std::fs::remove_file(env.state_dir().join("alerts.json")).unwrap();
    let before = sink.mails.lock().unwrap().len();
    let out = env.run().await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(sink.mails.lock().unwrap().len(), before, "{}", out.stdout);
    let checked = out.events_named("watch.checked");
    assert_eq!(checked[0]["alerts"], 0, "{checked:?}");
    assert_eq!(checked[0]["reminders"], 0, "{checked:?}");
}
