//! The loopback environment for the booted-systemd and container tests
//! (deploy/local/boot-test.sh, deploy/local/image-test.sh): Pebble, moto
//! and the Route53-backed DNS responder on 127.0.0.1, a config repo with
//! two certificates, and the settings for a certkeeper that runs in
//! another root (a container sharing the host's network) under `<dir>/guest/`:
//!
//!   certkeeper.yaml   state in /var/lib/certkeeper, the repo over ssh from a
//!                     real sshd on 127.0.0.1 (the way a VM pulls it), a run
//!                     every minute
//!   repo_ed25519      the deploy key that may read the repo
//!   known_hosts       pins the sshd's host key
//!   pebble-ca.pem     trusts Pebble's listener (its root_ca_file)
//!   environment       AWS credentials for moto (EnvironmentFile= format)
//!   http-port         the port of the daemon's /healthz
//!
//! and `<dir>/issuing-root.pem`, the root that issued certificates chain to.
//! It prints `ready` and then answers one command a line on stdin:
//! `records` -> `records N` (the `_acme-challenge` record sets in Route53),
//! `add NAME DOMAIN` -> `added COMMIT` (a certificate committed to the repo),
//! `s3 KEY` -> `s3 present|absent`. On `quit`, end of input or a signal
//! everything it started is stopped.
//!
//! Usage: hostenv <dir>

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use tokio::io::{AsyncBufReadExt, BufReader};

const CERTIFICATES: &str = "certificates:
  - name: www
    domains: [www.example.test]
  - name: wildcard
    domains: [\"*.example.test\", example.test]
";

#[tokio::main]
async fn main() {
    let root = PathBuf::from(std::env::args().nth(1).expect("usage: hostenv <dir>"));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("guest")).expect("create dir");
    let root = root.canonicalize().expect("dir");
    let env =
        support::LocalEnv::start_in(&root, &["example.test"], support::PebbleOptions::default())
            .await;
    env.repo
        .commit_certificates(CERTIFICATES, "two certificates");
    let guest = root.join("guest");
    let http_port = support::free_port();
    let sshd = support::sshd::Sshd::start(&root.join("sshd"));
    std::fs::copy(&sshd.client_key, guest.join("repo_ed25519")).expect("copy key");
    std::fs::copy(sshd.known_hosts(), guest.join("known_hosts")).expect("known_hosts");
    std::fs::copy(env.pebble.listener_ca(), guest.join("pebble-ca.pem")).expect("copy CA");
    std::fs::write(root.join("issuing-root.pem"), env.pebble.issuing_root()).expect("root");
    std::fs::write(guest.join("http-port"), http_port.to_string()).expect("port");
    std::fs::write(
        guest.join("environment"),
        format!(
            "AWS_ACCESS_KEY_ID=AKIDBOOTTEST\nAWS_SECRET_ACCESS_KEY={}\nAWS_EC2_METADATA_DISABLED=true\n",
            env.aws_secret
        ),
    )
    .expect("environment");
    std::fs::write(
        guest.join("certkeeper.yaml"),
        format!(
            "config_repo:\n  url: {repo}\n  branch: main\n  ssh:\n    private_key_file: /etc/certkeeper/repo_ed25519\n    known_hosts_file: /etc/certkeeper/known_hosts\nstate_dir: /var/lib/certkeeper\nacme:\n  directory_url: {dir}\n  contact: ops@example.test\n  root_ca_file: /etc/certkeeper/pebble-ca.pem\n  order_timeout: 60s\naws:\n  region: us-east-1\n  endpoint_url: {aws}\ndns:\n  nameservers: [\"{ns}\"]\n  propagation_timeout: 30s\ns3:\n  bucket: {bucket}\n  prefix: certs\nlog_format: json\nhttp:\n  listen: 127.0.0.1:{http_port}\nshutdown_grace: 20s\nschedule:\n  cron: \"* * * * *\"\n",
            repo = sshd.url(&env.repo.path),
            dir = env.pebble.directory_url(),
            aws = env.route53.endpoint(),
            ns = env.dns.addr,
            bucket = env.bucket,
        ),
    )
    .expect("settings");
    println!("ready");

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    loop {
        let line = tokio::select! {
            line = lines.next_line() => line,
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        };
        let Ok(Some(line)) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["records"] => println!("records {}", env.moto.challenge_records().await.len()),
            ["add", name, domain] => {
                let yaml = format!("{CERTIFICATES}  - name: {name}\n    domains: [{domain}]\n");
                let commit = env.repo.commit_certificates(&yaml, "one more certificate");
                println!("added {commit}");
            }
            ["s3", key] => {
                let found = env.s3_object(key).await.is_some();
                println!("s3 {}", if found { "present" } else { "absent" });
            }
            ["quit"] => break,
            _ => println!("unknown command: {line}"),
        }
    }
    // `env` and `sshd` are dropped here: moto, the DNS responder, Pebble and
    // sshd stop.
}
