//! Faults injected into the real parts while certkeeper works: AWS answering
//! 500, slowly or never, the AWS endpoint going down in the middle of DNS
//! and in the middle of publishing, Pebble killed in the middle of an order.
//! In each case the previous live certificate stays served, no TXT record
//! is left behind once the endpoint is back, and the next run completes
//! what the fault interrupted. RELIABILITY.md records the results.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use support::fault::{Fault, FaultProxy, Match};
use support::{LocalEnv, PebbleOptions, RunOutput};

/// An environment whose certkeeper reaches moto only through a fault proxy,
/// with AWS requests abandoned after 2 s instead of 30.
async fn through_proxy(zones: &[&str]) -> (LocalEnv, FaultProxy) {
    let env = LocalEnv::start(zones, PebbleOptions::default()).await;
    let proxy = FaultProxy::start(env.moto.port).await;
    let text = std::fs::read_to_string(env.settings_path()).unwrap();
    let text = text.replace(
        &format!("endpoint_url: {}\n", env.moto.endpoint()),
        &format!(
            "endpoint_url: {}\n  request_timeout: 2s\n",
            proxy.endpoint()
        ),
    );
    std::fs::write(env.settings_path(), text).unwrap();
    (env, proxy)
}

fn ok(out: &RunOutput) {
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
}

/// The live set of `name` as certkeeper stored it.
fn live(env: &LocalEnv, name: &str) -> Vec<(&'static str, Vec<u8>)> {
    [
        "privkey.pem",
        "cert.pem",
        "chain.pem",
        "fullchain.pem",
        "meta.json",
    ]
    .into_iter()
    .map(|f| (f, env.live_file(name, f)))
    .collect()
}

/// The S3 copy of the live set of `name` (None for a missing object).
async fn published(env: &LocalEnv, name: &str) -> Vec<(&'static str, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    for f in [
        "privkey.pem",
        "cert.pem",
        "chain.pem",
        "fullchain.pem",
        "meta.json",
    ] {
        out.push((f, env.s3_object(&format!("certs/{name}/{f}")).await));
    }
    out
}

async fn assert_published_is_live(env: &LocalEnv, name: &str) {
    let live = live(env, name);
    let s3 = published(env, name).await;
    for ((file, local), (_, remote)) in live.iter().zip(s3) {
        assert_eq!(
            remote.as_deref(),
            Some(local.as_slice()),
            "s3 {name}/{file} is not the live one"
        );
    }
}

fn commit_web(env: &LocalEnv, domains: &str) {
    env.repo.commit_certificates(
        &format!("certificates:\n  - name: web\n    domains: [{domains}]\n"),
        domains,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_errors_and_slow_answers_are_retried_within_the_run() {
    let (env, proxy) = through_proxy(&["example.test"]).await;
    commit_web(&env, "web.example.test");
    // The first two uploads answer 500 (InternalError), the next three
    // answer after 1.5 s (under the 2 s request timeout).
    proxy.inject(Match::s3_put(&env.bucket), Fault::Status(500), Some(2));
    proxy.inject(
        Match::s3(&env.bucket),
        Fault::Delay(std::time::Duration::from_millis(1500)),
        Some(3),
    );
    let out = env.run().await;
    ok(&out);
    assert_eq!(proxy.count("500"), 2, "{:#?}", proxy.log());
    assert_eq!(proxy.count("delayed"), 3, "{:#?}", proxy.log());
    assert_published_is_live(&env, "web").await;
    assert!(
        out.events_named("publish.failed").is_empty(),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_that_never_answers_times_out_and_the_publish_is_retried() {
    let (env, proxy) = through_proxy(&["example.test"]).await;
    commit_web(&env, "web.example.test");
    ok(&env.run().await);
    let before = published(&env, "web").await;

    // A renewal whose uploads are accepted and never answered.
    commit_web(&env, "web.example.test, www.example.test");
    proxy.inject(Match::s3_put(&env.bucket), Fault::Hang, None);
    let out = env.run().await;
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    // The SDK's three attempts, each abandoned after request_timeout.
    let key_hangs = proxy
        .log()
        .iter()
        .filter(|l| l.contains("privkey.pem") && l.ends_with("-> hang"))
        .count();
    assert_eq!(key_hangs, 3, "{:#?}", proxy.log());
    let failed = out.events_named("publish.failed");
    assert_eq!(failed.len(), 1, "{}", out.stdout);
    let error = failed[0]["error"].as_str().unwrap().to_lowercase();
    assert!(
        error.contains("timeout") || error.contains("timed out"),
        "{error}"
    );
    let status = env.status();
    let web = support::cert_status(&status, "web");
    assert!(
        web["publish"].to_string().contains("failed") || web.to_string().contains("timeout"),
        "{web}"
    );
    // Stored locally, nothing in S3 changed (the hung PUTs never reached moto).
    assert!(
        String::from_utf8_lossy(&env.live_file("web", "meta.json")).contains("www.example.test")
    );
    assert_eq!(published(&env, "web").await, before);

    proxy.clear();
    let out = env.run().await;
    ok(&out);
    assert!(
        out.events_named("order.created").is_empty(),
        "re-issued: {}",
        out.stdout
    );
    assert_published_is_live(&env, "web").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aws_down_during_dns_leaves_records_the_next_run_removes() {
    let (env, proxy) = through_proxy(&["example.test"]).await;
    commit_web(&env, "web.example.test");
    ok(&env.run().await);
    let before = live(&env, "web");

    // Route53's API goes away right after the challenge records were
    // written: the change status, the CA's go-ahead and the cleanup all
    // have to cope with an endpoint that refuses connections.
    commit_web(&env, "web.example.test, www.example.test");
    proxy.inject(
        Match {
            method: Some("POST"),
            path: Some("/rrset".into()),
            body: None,
        },
        Fault::ThenDown,
        Some(1),
    );
    let out = env.run().await;
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(proxy.is_down());
    let left = env.moto.challenge_records().await;
    assert_eq!(
        left.len(),
        2,
        "the records written before the outage: {left:?}"
    );
    assert!(env.state_dir().join("dns-journal/web.json").exists());
    assert_eq!(live(&env, "web"), before, "live set changed");
    let web = support::cert_status(&env.status(), "web");
    assert_eq!(web["state"], "failed", "{web}");
    assert!(web["days_left"].as_i64().unwrap() > 0, "{web}");

    proxy.up();
    let out = env.run().await;
    let recovered = out.events_named("dns.journal.recovered");
    assert_eq!(recovered.len(), 1, "{}", out.stdout);
    assert!(env.moto.challenge_records().await.is_empty());
    assert!(!env.state_dir().join("dns-journal/web.json").exists());
    // The failure backs off; an operator's `renew --force` completes it.
    let out = env
        .certkeeper_line("renew web --force", &env.settings_path())
        .await;
    ok(&out);
    assert!(
        String::from_utf8_lossy(&env.live_file("web", "meta.json")).contains("www.example.test")
    );
    assert_published_is_live(&env, "web").await;
    assert!(env.moto.challenge_records().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aws_down_during_publish_is_completed_by_the_next_run() {
    let (env, proxy) = through_proxy(&["example.test"]).await;
    commit_web(&env, "web.example.test");
    ok(&env.run().await);
    let before = published(&env, "web").await;

    // The endpoint goes down right after the first object of the renewed
    // set (the private key) was uploaded.
    commit_web(&env, "web.example.test, www.example.test");
    proxy.inject(Match::s3_put(&env.bucket), Fault::ThenDown, Some(1));
    let out = env.run().await;
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(proxy.is_down());
    assert_eq!(out.events_named("cert.issued").len(), 1, "{}", out.stdout);
    assert_eq!(
        out.events_named("publish.failed").len(),
        1,
        "{}",
        out.stdout
    );
    // meta.json goes last: a reader of the bucket still sees the old set's
    // meta and so knows the objects are mid-update.
    let now = published(&env, "web").await;
    assert_ne!(now[0], before[0], "the key was uploaded before the outage");
    assert_eq!(now[4], before[4], "meta.json must not move before the rest");

    proxy.up();
    let out = env.run().await;
    ok(&out);
    assert!(
        out.events_named("order.created").is_empty(),
        "re-issued: {}",
        out.stdout
    );
    assert_published_is_live(&env, "web").await;
}

/// A `certkeeper run --once` in progress, its log read so far.
struct Running {
    child: Child,
    log: BufReader<std::process::ChildStdout>,
    seen: String,
}

/// Starts `certkeeper run --once` and returns it once it logged `event`.
fn spawn_until(env: &LocalEnv, event: &str) -> Running {
    let mut child = env
        .command()
        .args(["run", "--once", "--config"])
        .arg(env.settings_path())
        .env(
            "CERTKEEPER_LOG",
            "debug,aws_config=warn,aws_smithy_runtime=warn,hyper=warn,h2=warn,rustls=warn",
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn certkeeper");
    let mut log = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    let needle = format!("\"{event}\"");
    loop {
        let mut line = String::new();
        if log.read_line(&mut line).unwrap() == 0 {
            panic!("certkeeper ended before {event}: {seen}");
        }
        seen.push_str(&line);
        if line.contains(&needle) {
            return Running { child, log, seen };
        }
    }
}

impl Running {
    fn finish(mut self) -> RunOutput {
        self.log.read_to_string(&mut self.seen).unwrap();
        let status = self.child.wait().unwrap();
        RunOutput {
            code: status.code().unwrap_or(-1),
            stdout: self.seen,
            stderr: String::new(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pebble_killed_mid_order_then_a_new_ca_completes_it() {
    let mut env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    commit_web(&env, "web.example.test");
    ok(&env.run().await);
    let before = live(&env, "web");
    let published_before = published(&env, "web").await;

    // The order waits on DNS (one name not served yet); the CA dies then.
    commit_web(&env, "web.example.test, www.example.test");
    env.dns.hide("_acme-challenge.www.example.test");
    let running = tokio::task::block_in_place(|| spawn_until(&env, "dns.txt.upserted"));
    env.pebble.kill();
    env.dns.show("_acme-challenge.www.example.test");
    let out = tokio::task::block_in_place(|| running.finish());
    assert_eq!(out.code, 1, "{}", out.stdout);
    let failed = out.events_named("cert.failed");
    assert_eq!(failed.len(), 1, "{}", out.stdout);
    assert!(
        env.moto.challenge_records().await.is_empty(),
        "TXT left behind"
    );
    assert_eq!(live(&env, "web"), before, "live set changed");
    assert_eq!(published(&env, "web").await, published_before);

    // A CA that came back empty (Pebble keeps nothing): it knows neither
    // our account nor the order. The forced renewal registers again and
    // completes.
    env.pebble.restart();
    let out = env
        .certkeeper_line("renew web --force", &env.settings_path())
        .await;
    ok(&out);
    let aside = out.events_named("acme.account.set_aside");
    assert_eq!(aside.len(), 1, "{}", out.stdout);
    assert_eq!(aside[0]["why"], "unknown-to-ca");
    assert_eq!(out.events_named("acme.account.created").len(), 1);
    assert!(
        String::from_utf8_lossy(&env.live_file("web", "meta.json")).contains("www.example.test")
    );
    assert_published_is_live(&env, "web").await;
    assert!(env.moto.challenge_records().await.is_empty());
}
