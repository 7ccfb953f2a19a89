//! Local files with owner, group and mode, the reload command (failure
//! reported and retried), PKCS#12 bundles checked with `openssl pkcs12` and
//! `keytool`, and the fingerprints file checked against `openssl x509`.

use crate::support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use support::{LocalEnv, PebbleOptions, cert_status};

const PASSWORD: &str = "p12-Pa55word-never-logged";
const LEGACY_PASSWORD: &str = "from-ssm-never-logged";

fn settings(root: &Path) -> String {
    format!(
        r#"secrets:
  p12pass: {{file: {root}/p12.pass}}
  p12ssm: {{ssm: /certkeeper/legacy-p12}}
targets:
  nginx:
    type: files
    files:
      - {{source: fullchain.pem, path: "{root}/nginx/{{name}}.crt"}}
      - {{source: privkey.pem, path: "{root}/nginx/{{name}}.key", owner: root, group: nogroup, mode: "0640"}}
      - {{source: cert.p12, path: "{root}/java/{{name}}.p12"}}
      - {{source: fingerprints.txt, path: "{root}/monit/{{name}}.txt"}}
    reload: ["{root}/reload.sh", "nginx"]
    reload_timeout: 5s
default_targets: [s3, nginx]
"#,
        root = root.display()
    )
}

const CERTS: &str = r#"certificates:
  - name: web
    domains: [web.example.test]
    fingerprints: true
    pkcs12: {password: p12pass, alias: meshclient}
  - name: legacy
    domains: [legacy.example.test]
    key_type: rsa-2048
    fingerprints: true
    pkcs12: {password: p12ssm, legacy: true}
"#;

/// The reload script logs each call and exits with the code in `reload.rc`.
fn write_reload_script(root: &Path, rc: i32) {
    let script = root.join("reload.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$1\" >> {log}\nexit $(cat {rc})\n",
            log = root.join("reloads.log").display(),
            rc = root.join("reload.rc").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(root.join("reload.rc"), rc.to_string()).unwrap();
}

fn reloads(root: &Path) -> usize {
    std::fs::read_to_string(root.join("reloads.log"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

fn run(cmd: &mut Command) -> String {
    support::run_tool(cmd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_reload_pkcs12_and_fingerprints() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    let root = env.root.clone();
    for d in ["nginx", "java", "monit"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("p12.pass"), format!("{PASSWORD}\n")).unwrap();
    aws_sdk_ssm::Client::new(&env.moto.sdk_config().await)
        .put_parameter()
        .name("/certkeeper/legacy-p12")
        .value(LEGACY_PASSWORD)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .expect("put parameter");
    write_reload_script(&root, 1);
    env.write_settings(&settings(&root));
    env.repo.commit_certificates(CERTS, "files");

    // The reload fails: files are in place, the failure is reported.
    let out = env.run().await;
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let web = cert_status(&env.status(), "web");
    assert_eq!(web["published"], false);
    assert!(
        web["last_error"]
            .as_str()
            .unwrap()
            .contains("reload command failed"),
        "{web}"
    );
    assert_eq!(reloads(&root), 2, "one reload per certificate");

    let crt = root.join("nginx/web.crt");
    assert_eq!(
        std::fs::read(&crt).unwrap(),
        env.live_file("web", "fullchain.pem")
    );
    assert_eq!(
        std::fs::metadata(&crt).unwrap().permissions().mode() & 0o7777,
        0o644
    );
    let key = std::fs::metadata(root.join("nginx/web.key")).unwrap();
    assert_eq!(key.permissions().mode() & 0o7777, 0o640);
    let nogroup = std::fs::read_to_string("/etc/group")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("nogroup:x:")
                .and_then(|r| r.split(':').next()?.parse::<u32>().ok())
        })
        .expect("nogroup in /etc/group");
    assert_eq!(key.gid(), nogroup);
    assert_eq!(
        std::fs::metadata(root.join("java/web.p12"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o600,
        "PKCS#12 is private by default"
    );

    // The reload works now: it runs again although no file changed.
    std::fs::write(root.join("reload.rc"), "0").unwrap();
    let out = env.run().await;
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(reloads(&root), 4);
    assert_eq!(cert_status(&env.status(), "web")["published"], true);

    // Nothing changed: no reload. With the record lost, the target finds
    // every file in place and still does not reload.
    let out = env.run().await;
    assert_eq!(out.code, 0);
    std::fs::remove_file(env.state_dir().join("published/web.json")).unwrap();
    let out = env.run().await;
    assert_eq!(out.code, 0);
    let done: Vec<_> = out
        .events_named("publish.done")
        .into_iter()
        .filter(|e| e["target"] == "nginx")
        .collect();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0]["uploaded"], 0);
    assert_eq!(reloads(&root), 4, "an unchanged set must not reload");

    // PKCS#12: openssl and keytool open it; the key entry has the alias.
    let pass_arg = format!("file:{}", root.join("p12.pass").display());
    let p12 = root.join("java/web.p12");
    let pem = run(Command::new("openssl")
        .args(["pkcs12", "-nokeys", "-clcerts", "-passin", &pass_arg, "-in"])
        .arg(&p12));
    let live_cert = String::from_utf8(env.live_file("web", "cert.pem")).unwrap();
    assert!(pem.contains(live_cert.trim()), "{pem}");
    let info = run(Command::new("openssl")
        .args(["pkcs12", "-info", "-noout", "-passin", &pass_arg, "-in"])
        .arg(&p12));
    assert!(
        info.contains("AES-256-CBC"),
        "modern encryption by default: {info}"
    );
    let legacy = run(Command::new("openssl")
        .args(["pkcs12", "-info", "-noout", "-legacy", "-passin"])
        .arg(format!("pass:{LEGACY_PASSWORD}"))
        .arg("-in")
        .arg(root.join("state/live/legacy/cert.p12")));
    assert!(
        legacy.contains("pbeWithSHA1And3-KeyTripleDES-CBC"),
        "legacy: {legacy}"
    );
    if let Ok(keytool) = which("keytool") {
        let list = run(Command::new(keytool)
            .args([
                "-list",
                "-storetype",
                "PKCS12",
                "-storepass",
                PASSWORD,
                "-keystore",
            ])
            .arg(&p12));
        assert!(list.contains("meshclient"), "{list}");
        assert!(list.contains("PrivateKeyEntry"), "{list}");
    } else {
        panic!("keytool not installed (deploy/local/setup.sh installs it)");
    }

    // Fingerprints: exactly what openssl prints, plus monit's MD5.
    let text = std::fs::read_to_string(root.join("monit/web.txt")).unwrap();
    let live = env.state_dir().join("live/web/cert.pem");
    for alg in ["sha256", "sha1", "md5"] {
        let line = run(Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", &format!("-{alg}"), "-in"])
            .arg(&live));
        assert!(text.contains(line.trim()), "{alg}: {line} not in {text}");
    }
    let md5 = text
        .lines()
        .find_map(|l| l.strip_prefix("md5 Fingerprint="))
        .unwrap()
        .replace(':', "");
    assert!(text.contains(&format!("monit certmd5 {md5}\n")), "{text}");

    // The password never shows up.
    for (what, body) in [
        ("stdout", out.stdout.as_str()),
        ("stderr", out.stderr.as_str()),
        (
            "status",
            &std::fs::read_to_string(env.state_dir().join("status.json")).unwrap(),
        ),
    ] {
        assert!(!body.contains(PASSWORD), "PKCS#12 password in {what}");
        assert!(!body.contains(LEGACY_PASSWORD), "SSM password in {what}");
    }

    // A changed password re-encrypts the bundle.
    std::fs::write(root.join("p12.pass"), "another-one").unwrap();
    let out = env.run().await;
    assert_eq!(out.code, 0, "{}", out.stdout);
    run(Command::new("openssl")
        .args(["pkcs12", "-nokeys", "-passin", "pass:another-one", "-in"])
        .arg(&p12));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_target_or_secret_is_a_located_config_error() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    env.write_settings("");
    env.repo.commit_certificates(
        "certificates:\n  - name: web\n    domains: [web.example.test]\n    targets: [s3, nginx]\n    pkcs12: {password: nope}\n",
        "bad",
    );
    let out = env.run().await;
    assert_eq!(out.code, 2, "{}", out.stdout);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(
            "certificates.yaml:4:19: certificates[0].targets[1]: unknown publish target \"nginx\""
        ),
        "{all}"
    );
    assert!(
        out.stderr
            .contains("certificates.yaml:5:24: certificates[0].pkcs12.password: unknown secret"),
        "{all}"
    );
}

fn which(program: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(program))
                .find(|p| p.is_file())
        })
        .ok_or(())
}
