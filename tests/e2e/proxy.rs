//! Egress through a real forward proxy (tinyproxy): the ACME client and the
//! AWS SDK (Route53, S3) connect through it, from the `proxy:` setting and
//! from HTTPS_PROXY / HTTP_PROXY, and git over https too; the proxy's log
//! shows every CONNECT; its credentials are never logged.

use crate::support;
use std::process::Command;
use support::tinyproxy::Tinyproxy;
use support::{LocalEnv, PebbleOptions, RunOutput, Tied, sh};

const ONE: &str = "certificates:\n  - name: web\n    domains: [web.example.test]\n";

fn aws_port(env: &LocalEnv) -> String {
    let text = std::fs::read_to_string(env.settings_path()).unwrap();
    let endpoint = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("endpoint_url: "))
        .unwrap();
    endpoint
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_string()
}

/// Asserts a run succeeded, with what it and the proxy said when not.
fn assert_ok(out: &RunOutput, proxy: &Tinyproxy) {
    assert_eq!(
        out.code,
        0,
        "{}\n{}\n{}",
        out.stdout,
        out.stderr,
        proxy.log()
    );
}

/// `certkeeper ARGS --config SETTINGS` with the environment's AWS
/// credentials and `vars`.
fn certkeeper(env: &LocalEnv, args: &[&str], vars: &[(&str, &str)]) -> RunOutput {
    let mut cmd = env.command();
    cmd.args(args).arg("--config").arg(env.settings_path());
    cmd.env(
        "CERTKEEPER_LOG",
        "debug,aws_config=warn,aws_smithy_runtime=warn,hyper=warn,h2=warn,rustls=warn",
    );
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    RunOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_outbound_connection_goes_through_the_proxy_and_its_password_is_never_logged() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    let password = "pr0xy-pa55-7f3c";
    let proxy = Tinyproxy::start(&env.root.join("proxy"), "ops", password);
    env.repo.commit_certificates(ONE, "one");
    let base = std::fs::read_to_string(env.settings_path()).unwrap();
    std::fs::write(
        env.settings_path(),
        format!("{base}proxy:\n  url: {}\n", proxy.url()),
    )
    .unwrap();

    let out = certkeeper(&env, &["run", "--once"], &[]);
    assert_ok(&out, &proxy);
    let log = proxy.log();
    // The CA over TLS through CONNECT; AWS (plain http on loopback here)
    // forwarded by the proxy.
    let ca = format!("CONNECT 127.0.0.1:{} ", env.pebble.port);
    assert!(log.contains(&ca), "no {ca:?} in the proxy's log:\n{log}");
    let aws = format!("http://127.0.0.1:{}/", aws_port(&env));
    assert!(
        log.lines().filter(|l| l.contains(&aws)).count() >= 3,
        "the AWS calls did not go through the proxy:\n{log}"
    );
    let configured = out.events_named("proxy.configured");
    assert_eq!(
        configured[0]["proxy"],
        format!("http://127.0.0.1:{}", proxy.port),
        "{configured:?}"
    );
    let status = std::fs::read_to_string(env.state_dir().join("status.json")).unwrap();
    for (what, text) in [
        ("stdout", &out.stdout),
        ("stderr", &out.stderr),
        ("status", &status),
    ] {
        assert!(!text.contains(password), "proxy password in {what}");
    }
    assert_eq!(env.status()["certificates"][0]["published"], true);

    // From the environment instead (no `proxy:`): the same, renewed.
    std::fs::write(env.settings_path(), &base).unwrap();
    let before = proxy.log().lines().count();
    let url = proxy.url();
    let vars = [
        ("HTTPS_PROXY", url.as_str()),
        ("HTTP_PROXY", url.as_str()),
        ("NO_PROXY", ""),
    ];
    let out = certkeeper(&env, &["renew", "web", "--force"], &vars);
    assert_ok(&out, &proxy);
    let log = proxy.log();
    let new: Vec<&str> = log.lines().skip(before).collect();
    assert!(new.iter().any(|l| l.contains(&ca)), "{log}");
    assert!(new.iter().any(|l| l.contains(&aws)), "{log}");
    assert!(!out.stdout.contains(password) && !out.stderr.contains(password));

    // A wrong password: the proxy refuses (407) and the renewal fails,
    // without the password in what it says.
    let wrong = format!("http://ops:not-{password}@127.0.0.1:{}", proxy.port);
    std::fs::write(
        env.settings_path(),
        format!("{base}proxy:\n  url: {wrong}\n"),
    )
    .unwrap();
    let live = env.live_file("web", "cert.pem");
    let out = certkeeper(&env, &["renew", "web", "--force"], &[]);
    assert_ne!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    // Nothing live or published was touched.
    assert_eq!(env.live_file("web", "cert.pem"), live);
    crate::faults::assert_published_is_live(&env, "web").await;
    assert!(
        !out.stdout.contains(password) && !out.stderr.contains(password),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
}

/// git over https through a proxy (libgit2 tunnels with CONNECT), the repo
/// behind a token, with a throw-away certificate trusted through
/// SSL_CERT_FILE.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_config_repo_is_fetched_over_https_through_the_proxy() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    let proxy = Tinyproxy::start(&env.root.join("proxy"), "", "");
    env.repo.commit_certificates(ONE, "one");
    let srv = env.root.join("git-srv");
    std::fs::create_dir_all(&srv).unwrap();
    sh(
        &env.root,
        "git",
        &[
            "clone",
            "-q",
            "--bare",
            env.repo.path.to_str().unwrap(),
            srv.join("certs.git").to_str().unwrap(),
        ],
    );
    let (cert, key) = (env.root.join("git-cert.pem"), env.root.join("git-key.pem"));
    sh(
        &env.root,
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
    );
    let git_port = support::free_port();
    let token = "git-t0ken-55aa";
    let git = Command::new("python3")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/git_http.py"))
        .args([
            &git_port.to_string(),
            srv.to_str().unwrap(),
            "x-access-token",
            token,
        ])
        .arg(&cert)
        .arg(&key)
        .tied()
        .spawn()
        .unwrap();
    let git = support::Process::own(git);
    while std::net::TcpStream::connect(("127.0.0.1", git_port)).is_err() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let token_file = env.root.join("git-token");
    std::fs::write(&token_file, token).unwrap();
    let text = std::fs::read_to_string(env.settings_path()).unwrap();
    let repo_line = format!("  url: {}\n", env.repo.path.display());
    assert!(text.contains(&repo_line));
    let text = text.replace(
        &repo_line,
        &format!(
            "  url: https://127.0.0.1:{git_port}/certs.git\n  https:\n    username: x-access-token\n    token_file: {}\n",
            token_file.display()
        ),
    );
    std::fs::write(
        env.settings_path(),
        format!("{text}proxy:\n  url: {}\n", proxy.url()),
    )
    .unwrap();

    let cert_file = cert.display().to_string();
    let out = certkeeper(&env, &["run", "--once"], &[("SSL_CERT_FILE", &cert_file)]);
    drop(git);
    assert_ok(&out, &proxy);
    let log = proxy.log();
    let repo = format!("CONNECT 127.0.0.1:{git_port} ");
    assert!(
        log.contains(&repo),
        "git did not go through the proxy:\n{log}"
    );
    assert!(!out.stdout.contains(token) && !out.stderr.contains(token));
}
