//! The config source: ssh with pinned host keys (real sshd), SSH-signed
//! commits, the zone allowlist, last-good fallback, and `config check`.

use crate::support;
use support::Tied;

use certkeeper::config::signature::{AllowedSigners, SignatureError};
use certkeeper::config::source::GitSource;
use certkeeper::settings::{RepoSettings, SshSettings};
use std::path::Path;
use std::process::Command;
use support::{ConfigRepo, LocalEnv, PebbleOptions, sh};

const ONE: &str = "certificates:\n  - name: web\n    domains: [web.example.test]\n";

fn allowed_signers(dir: &Path, principal: &str, key: &Path) -> std::path::PathBuf {
    let pubkey = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let path = dir.join("allowed_signers");
    std::fs::write(&path, format!("{principal} {pubkey}")).unwrap();
    path
}

fn ssh_repo(
    url: String,
    key: &Path,
    known_hosts: Option<&Path>,
    fingerprint: Option<&str>,
) -> RepoSettings {
    RepoSettings {
        url,
        branch: "main".into(),
        ssh: Some(SshSettings {
            private_key_file: key.to_path_buf(),
            known_hosts_file: known_hosts.map(Path::to_path_buf),
            host_key_sha256: fingerprint.map(str::to_string),
        }),
        https: None,
    }
}

#[test]
fn ssh_transport_requires_a_pinned_host_key() {
    let tmp = tempfile::tempdir().unwrap();
    let sshd = support::sshd::Sshd::start(&tmp.path().join("sshd"));
    let work = ConfigRepo::init(&tmp.path().join("work"));
    let commit = work.commit_certificates(ONE, "one");
    let bare = tmp.path().join("certs.git");
    sh(
        tmp.path(),
        "git",
        &[
            "clone",
            "-q",
            "--bare",
            work.path.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );
    let url = sshd.url(&bare);

    // Pinned by known_hosts.
    let known = sshd.known_hosts();
    let settings = ssh_repo(url.clone(), &sshd.client_key, Some(&known), None);
    let checkout = GitSource::new(&settings, &tmp.path().join("c1"))
        .sync()
        .expect("ssh clone");
    assert_eq!(checkout.commit, commit);
    assert!(checkout.dir.join("certificates.yaml").exists());
    // A second sync fetches over ssh again.
    let next = work.commit_certificates(&ONE.replace("web.", "www."), "two");
    sh(
        &work.path,
        "git",
        &["push", "-q", bare.to_str().unwrap(), "main"],
    );
    let checkout = GitSource::new(&settings, &tmp.path().join("c1"))
        .sync()
        .expect("ssh fetch");
    assert_eq!(checkout.commit, next);

    // Pinned by fingerprint.
    let settings = ssh_repo(
        url.clone(),
        &sshd.client_key,
        None,
        Some(&sshd.fingerprint()),
    );
    GitSource::new(&settings, &tmp.path().join("c2"))
        .sync()
        .expect("fingerprint pin");

    // Wrong fingerprint: refused, and the error says why.
    let wrong = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let settings = ssh_repo(url.clone(), &sshd.client_key, None, Some(wrong));
    let err = GitSource::new(&settings, &tmp.path().join("c3"))
        .sync()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is not pinned") && err.contains(&sshd.fingerprint()),
        "{err}"
    );

    // known_hosts listing another key for this host: refused.
    let other = support::ssh_keygen(tmp.path(), "other_host");
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let mut parts = other_pub.split_whitespace();
    let wrong_known = tmp.path().join("wrong_known_hosts");
    std::fs::write(
        &wrong_known,
        format!(
            "[127.0.0.1]:{} {} {}\n",
            sshd.port,
            parts.next().unwrap(),
            parts.next().unwrap()
        ),
    )
    .unwrap();
    let settings = ssh_repo(url, &sshd.client_key, Some(&wrong_known), None);
    let err = GitSource::new(&settings, &tmp.path().join("c4"))
        .sync()
        .unwrap_err()
        .to_string();
    assert!(err.contains("refusing to connect"), "{err}");
}

#[test]
fn commit_signatures_are_checked_against_allowed_signers() {
    let tmp = tempfile::tempdir().unwrap();
    let alice = support::ssh_keygen(tmp.path(), "alice");
    let mallory = support::ssh_keygen(tmp.path(), "mallory");
    let signers =
        AllowedSigners::load(&allowed_signers(tmp.path(), "alice@example.test", &alice)).unwrap();
    let repo = ConfigRepo::init(&tmp.path().join("repo"));
    let git = git2::Repository::open(&repo.path).unwrap();

    let good = repo.commit_file("certificates.yaml", ONE, "signed", Some(&alice));
    assert_eq!(
        signers.verify_commit(&git, &good).unwrap(),
        "alice@example.test"
    );

    let unsigned = repo.commit_file(
        "certificates.yaml",
        &ONE.replace("web.", "w2."),
        "unsigned",
        None,
    );
    assert!(matches!(
        signers.verify_commit(&git, &unsigned),
        Err(SignatureError::Unsigned { .. })
    ));

    let forged = repo.commit_file(
        "certificates.yaml",
        &ONE.replace("web.", "w3."),
        "mallory",
        Some(&mallory),
    );
    let err = signers.verify_commit(&git, &forged).unwrap_err();
    assert!(matches!(err, SignatureError::UnknownKey { .. }), "{err}");
    assert!(err.to_string().contains("SHA256:"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rejected_commits_fall_back_to_the_last_good_one() {
    let env = LocalEnv::start(&["example.test", "other.test"], PebbleOptions::default()).await;
    let alice = support::ssh_keygen(&env.root, "alice");
    let signers = allowed_signers(&env.root, "alice@example.test", &alice);
    env.write_settings(&format!(
        "allowed_zones: [example.test]\nrequire_signed_commits:\n  allowed_signers: {}\n",
        signers.display()
    ));

    let good = env
        .repo
        .commit_file("certificates.yaml", ONE, "good", Some(&alice));
    let out = env.run().await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(env.status()["config"], "ok");
    let cert = env.live_file("web", "cert.pem");

    // Unsigned: rejected, the good commit stays in use, nothing is touched.
    let two = format!("{ONE}  - name: api\n    domains: [api.example.test]\n");
    let unsigned = env
        .repo
        .commit_file("certificates.yaml", &two, "unsigned", None);
    let out = env.run().await;
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    let rejected = out.events_named("config.rejected");
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["commit"], unsigned.as_str());
    assert!(
        rejected[0]["error"]
            .as_str()
            .unwrap()
            .contains("is not signed")
    );
    let status = env.status();
    let state = status["config"].as_str().unwrap();
    assert!(
        state.starts_with(&format!(
            "stale (commit {} rejected: commit",
            &unsigned[..12]
        )),
        "{state}"
    );
    assert_eq!(status["config_commit"], good.as_str());
    assert_eq!(support::cert_status(&status, "web")["state"], "ok");
    assert!(
        support::cert_status(&status, "api").is_null(),
        "api must not be issued from a rejected commit"
    );
    assert!(out.events_named("order.created").is_empty());
    assert_eq!(env.live_file("web", "cert.pem"), cert);
    assert!(
        out.stderr.contains(&unsigned) && out.stderr.contains(&good),
        "{}",
        out.stderr
    );

    // Signed, but a domain outside the allowlist: rejected with its location.
    let outside = format!("{ONE}  - name: sly\n    domains:\n      - sly.other.test\n");
    let sly = env
        .repo
        .commit_file("certificates.yaml", &outside, "outside", Some(&alice));
    let out = env.run().await;
    assert_eq!(out.code, 2);
    let reason = env.status()["config_rejected"]["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.contains("certificates.yaml:6:9: certificates[1].domains[0]: \"sly.other.test\" is outside the allowed zones"),
        "{reason}"
    );
    assert_eq!(env.status()["config_rejected"]["commit"], sly.as_str());
    assert!(!env.state_dir().join("live/sly").exists());

    // A good signed commit again: used, and only the new certificate is issued.
    let fixed = env
        .repo
        .commit_file("certificates.yaml", &two, "fixed", Some(&alice));
    let out = env.run().await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let status = env.status();
    assert_eq!(status["config"], "ok");
    assert_eq!(status["config_commit"], fixed.as_str());
    let issued: Vec<_> = out
        .events_named("cert.issued")
        .iter()
        .map(|e| e["cert"].clone())
        .collect();
    assert_eq!(issued, vec![serde_json::json!("api")]);
    let meta: serde_json::Value =
        serde_json::from_slice(&env.live_file("api", "meta.json")).unwrap();
    assert_eq!(meta["config_commit"], fixed.as_str());
    let s3 = env.moto.s3().await;
    let head = s3
        .head_object()
        .bucket(&env.bucket)
        .key("certs/api/cert.pem")
        .send()
        .await
        .unwrap();
    assert_eq!(head.metadata().unwrap()["config-commit"], fixed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn first_commit_with_a_domain_in_no_zone_issues_nothing() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    env.repo.commit_certificates(
        "certificates:\n  - name: web\n    domains: [web.example.test]\n  - name: lost\n    domains: [a.nowhere.test]\n",
        "no zone",
    );
    let out = env.run().await;
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("no earlier good commit; nothing is issued"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("certificates.yaml:5:15: certificates[1].domains[0]: \"a.nowhere.test\" is outside the zones the DNS providers hold (allowed_zones is not set)"),
        "{}",
        out.stderr
    );
    assert!(!env.state_dir().join("live/web").exists());
    assert!(out.events_named("order.created").is_empty());

    // `config check` with the same settings and credentials decides the
    // same, in the same words: it asks the provider for its zones too.
    let checked = env
        .command()
        .args(["config", "check", "--repo"])
        .arg(&env.repo.path)
        .arg("--settings")
        .arg(env.settings_path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&checked.stdout);
    assert_eq!(checked.status.code(), Some(2), "{text}");
    assert!(
        text.contains("certificates.yaml:5:15: certificates[1].domains[0]: \"a.nowhere.test\" is outside the zones the DNS providers hold (allowed_zones is not set): [\"example.test\"]"),
        "{text}"
    );
    assert!(!text.contains("note:"), "{text}");

    // When the zones cannot be asked (here: nothing answers at the AWS
    // endpoint), the check says so plainly instead of passing the domain.
    let text = std::fs::read_to_string(env.settings_path()).unwrap();
    let endpoint = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("endpoint_url: "))
        .unwrap()
        .to_string();
    let blind_settings = env.settings_path().with_file_name("blind.yaml");
    std::fs::write(
        &blind_settings,
        text.replace(
            &endpoint,
            &format!("http://127.0.0.1:{}", support::free_port()),
        ),
    )
    .unwrap();
    let blind = std::process::Command::new(support::certkeeper_bin())
        .args(["config", "check", "--repo"])
        .arg(&env.repo.path)
        .arg("--settings")
        .arg(&blind_settings)
        .env("AWS_ACCESS_KEY_ID", "AKIDWRONG")
        .env("AWS_SECRET_ACCESS_KEY", "wrong-secret-1f3e")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&blind.stdout);
    assert_eq!(blind.status.code(), Some(0), "{text}");
    assert!(
        text.contains("note: domains not checked against the DNS providers' zones: DNS provider \"route53\" could not list its zones"),
        "{text}"
    );
    assert!(!text.contains("wrong-secret-1f3e"), "{text}");
}

fn config_check(args: &[&str]) -> (i32, String) {
    let out = Command::new(support::certkeeper_bin())
        .args(["config", "check"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn config_check_reports_everything_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path();
    std::fs::create_dir_all(repo.join("certificates")).unwrap();
    std::fs::write(
        repo.join("certificates/web.yaml"),
        "certificates:\n  - name: web\n    domains: [web.example.test, \"*.*.example.test\"]\n  - name: api\n    domains: [api.example.test]\n    key_type: dsa-1024\n",
    )
    .unwrap();
    std::fs::write(
        repo.join("certificates/team.yaml"),
        "certificates:\n  - name: web\n    domains: [api.example.test]\n    colour: blue\n  - name: intl\n    domains: [bücher.example.test]\n",
    )
    .unwrap();
    let (code, text) = config_check(&["--repo", repo.to_str().unwrap()]);
    assert_eq!(code, 2, "{text}");
    for expected in [
        "certificates/web.yaml:3:33: certificates[0].domains[1]: \"*.*.example.test\" is not a valid wildcard",
        "certificates/web.yaml:6:15: certificates[1].key_type: unknown variant `dsa-1024`",
        "certificates/team.yaml:4:5: certificates[0].colour: unknown field `colour`",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }

    std::fs::write(
        repo.join("certificates/team.yaml"),
        "certificates:\n  - name: web\n    domains: [api.example.test]\n  - name: intl\n    domains: [bücher.example.test]\n",
    )
    .unwrap();
    std::fs::write(
        repo.join("certificates/web.yaml"),
        "certificates:\n  - name: api\n    domains: [api.example.test]\n",
    )
    .unwrap();
    let (code, json) = config_check(&["--repo", repo.to_str().unwrap(), "--format", "json"]);
    assert_eq!(code, 0, "{json}");
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["valid"], true);
    assert_eq!(
        json["certificates"],
        serde_json::json!(["web", "intl", "api"])
    );
    let warning = &json["warnings"][0];
    assert_eq!(warning["file"], "certificates/web.yaml");
    assert!(
        warning["message"]
            .as_str()
            .unwrap()
            .contains("also in certificate \"web\""),
        "{warning}"
    );

    // The settings' allowlist applies too.
    let settings = tmp.path().join("settings.yaml");
    std::fs::write(
        &settings,
        "config_repo:\n  url: x\nstate_dir: s\nacme:\n  directory_url: https://ca.test/dir\nallowed_zones: [api.example.test]\n",
    )
    .unwrap();
    let (code, text) = config_check(&[
        "--repo",
        repo.to_str().unwrap(),
        "--settings",
        settings.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(
        text.contains("certificates/team.yaml:5:15: certificates[1].domains[0]: \"xn--bcher-kva.example.test\" is outside"),
        "{text}"
    );
}

/// Everything at once, whatever was wrong first: a certificate with an
/// unknown field still has its target and its name checked; names a CA
/// refuses (bad punycode, an emoji, more names than the issuer takes);
/// the duplicate name and a duplicate settings key at their own lines.
#[test]
fn config_check_reports_what_the_run_would_refuse_all_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(repo.join("certificates")).unwrap();
    let many: Vec<String> = (0..4).map(|i| format!("n{i}.example.test")).collect();
    std::fs::write(
        repo.join("certificates/a.yaml"),
        format!(
            "certificates:\n  - name: web\n    domains: [web.example.test]\n    targets: [nope]\n    colour: blue\n    key_type: dsa\n  - name: odd\n    domains: [xn--zz.example.test, xn--ls8h.example.test, \"💩.example.test\"]\n  - name: many\n    domains: [{}]\n  - name: web\n    domains: [www.example.test]\n",
            many.join(", ")
        ),
    )
    .unwrap();
    let settings = tmp.path().join("settings.yaml");
    let base = "config_repo:\n  url: x\nstate_dir: s\nacme:\n  directory_url: https://ca.test/dir\n  max_names: 3\nallowed_zones: [example.test]\n";
    std::fs::write(&settings, format!("{base}state_dir: t\n")).unwrap();
    let run = |settings: &std::path::Path| {
        let out = Command::new(support::certkeeper_bin())
            .args(["config", "check", "--repo"])
            .arg(&repo)
            .arg("--settings")
            .arg(settings)
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, stderr) = run(&settings);
    assert_eq!(code, 2);
    assert!(
        stderr.contains(
            "settings.yaml:8:1: state_dir: duplicate field `state_dir` (first at line 3)"
        ),
        "{stderr}"
    );
    std::fs::write(&settings, base).unwrap();
    let (code, text, _) = run(&settings);
    assert_eq!(code, 2, "{text}");
    for expected in [
        "certificates/a.yaml:5:5: certificates[0].colour: unknown field `colour`",
        "certificates/a.yaml:6:15: certificates[0].key_type: unknown variant `dsa`",
        "certificates/a.yaml:4:15: certificates[0].targets[0]: unknown publish target \"nope\"",
        "certificates/a.yaml:8:15: certificates[1].domains[0]: \"xn--zz.example.test\" has a label \"xn--zz\" that is not valid punycode",
        "certificates/a.yaml:8:36: certificates[1].domains[1]: \"xn--ls8h.example.test\" has a label \"xn--ls8h\" (💩) whose U+1F4A9 is not allowed by IDNA2008",
        "certificates[1].domains[2]: \"💩.example.test\" has a label \"xn--ls8h\"",
        "certificates/a.yaml:10:66: certificates[2].domains[3]: 4 names in one certificate, more than issuer \"default\" takes (max_names: 3)",
        "certificates/a.yaml:11:11: certificates[3].name: duplicate certificate name \"web\", first defined at certificates/a.yaml:2",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(text.contains("4 certificates, 8 errors"), "{text}");
    assert!(!text.contains("note:"), "{text}");

    // Without settings, what was not checked is said.
    let out = Command::new(support::certkeeper_bin())
        .args(["config", "check", "--repo"])
        .arg(&repo)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("note: DNS providers, issuers, targets and zones not checked: they are in the settings (--settings FILE)"),
        "{text}"
    );
}

#[test]
fn https_style_token_auth_never_leaks_the_token() {
    let tmp = tempfile::tempdir().unwrap();
    let work = ConfigRepo::init(&tmp.path().join("work"));
    let commit = work.commit_certificates(ONE, "one");
    let root = tmp.path().join("srv");
    std::fs::create_dir_all(&root).unwrap();
    sh(
        tmp.path(),
        "git",
        &[
            "clone",
            "-q",
            "--bare",
            work.path.to_str().unwrap(),
            root.join("certs.git").to_str().unwrap(),
        ],
    );
    let port = support::free_port();
    let token = "tok-3f9a1c2b7d";
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/git_http.py");
    let mut server = Command::new("python3")
        .arg(script)
        .args([
            &port.to_string(),
            root.to_str().unwrap(),
            "x-access-token",
            token,
        ])
        .tied()
        .spawn()
        .unwrap();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let url = format!("http://127.0.0.1:{port}/certs.git");
    let settings = |token_file: &Path| RepoSettings {
        url: url.clone(),
        branch: "main".into(),
        ssh: None,
        https: Some(certkeeper::settings::HttpsSettings {
            username: "x-access-token".into(),
            token_file: Some(token_file.to_path_buf()),
            token_env: None,
        }),
    };
    let good = tmp.path().join("good-token");
    std::fs::write(&good, format!("{token}\n")).unwrap();
    let result = GitSource::new(&settings(&good), &tmp.path().join("c1")).sync();
    let bad = tmp.path().join("bad-token");
    std::fs::write(&bad, "tok-wrong-000000\n").unwrap();
    let refused = GitSource::new(&settings(&bad), &tmp.path().join("c2")).sync();
    let missing =
        GitSource::new(&settings(&tmp.path().join("nope")), &tmp.path().join("c3")).sync();
    let _ = server.kill();
    let _ = server.wait();

    assert_eq!(result.expect("token clone").commit, commit);
    let err = refused.unwrap_err().to_string();
    assert!(err.contains("cannot fetch config repo"), "{err}");
    assert!(
        !err.contains("tok-wrong") && !err.contains(token),
        "token in error: {err}"
    );
    let err = missing.unwrap_err().to_string();
    assert!(err.contains("cannot read token file"), "{err}");
}
