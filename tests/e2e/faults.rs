//! Faults injected into the real parts while certkeeper works: AWS answering
//! 500, slowly or never, the AWS endpoint going down in the middle of DNS
//! and in the middle of publishing, Pebble killed in the middle of an order.
//! In each case the previous live certificate stays served, no TXT record
//! is left behind once the endpoint is back, and the next run completes
//! what the fault interrupted. RELIABILITY.md records the results.

use crate::support;
use support::Tied;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use support::fault::{Fault, FaultProxy, Match};
use support::{LocalEnv, PebbleOptions, RunOutput};

/// An environment whose certkeeper reaches AWS (moto behind the realistic
/// Route53) only through a fault proxy, with AWS requests abandoned after
/// 2 s instead of 30.
async fn through_proxy(zones: &[&str]) -> (LocalEnv, FaultProxy) {
    let env = LocalEnv::start(zones, PebbleOptions::default()).await;
    let proxy = FaultProxy::start(env.route53.port).await;
    let text = std::fs::read_to_string(env.settings_path()).unwrap();
    assert!(text.contains(&env.route53.endpoint()));
    let text = text.replace(
        &format!("endpoint_url: {}\n", env.route53.endpoint()),
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
/// The files of a live set, in the order they are compared.
pub(crate) const SET_FILES: [&str; 5] = [
    "privkey.pem",
    "cert.pem",
    "chain.pem",
    "fullchain.pem",
    "meta.json",
];

fn live(env: &LocalEnv, name: &str) -> Vec<(&'static str, Vec<u8>)> {
    SET_FILES
        .into_iter()
        .map(|f| (f, env.live_file(name, f)))
        .collect()
}

/// The S3 copy of the live set of `name` (None for a missing object).
async fn published(env: &LocalEnv, name: &str) -> Vec<(&'static str, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    for f in SET_FILES {
        out.push((f, env.s3_object(&format!("certs/{name}/{f}")).await));
    }
    out
}

pub(crate) async fn assert_published_is_live(env: &LocalEnv, name: &str) {
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
    #[allow(clippy::zombie_processes)] // waited for in `Running::finish`
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
        .tied()
        .spawn()
        .expect("spawn certkeeper");
    let mut log = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    let needle = format!("\"{event}\"");
    loop {
        let mut line = String::new();
        if log.read_line(&mut line).unwrap() == 0 {
            let _ = child.wait();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dns_answers_lost_and_delayed_still_renew() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    env.repo.commit_certificates(
        "certificates:\n  - name: a\n    domains: [a.example.test]\n  - name: b\n    domains: [b.example.test, b2.example.test]\n",
        "two",
    );
    // The first question for every name and type is lost and every answer
    // is late: certkeeper's zone, CNAME and propagation lookups must ask
    // again (Pebble asks after certkeeper saw the value, so it is answered).
    env.dns.lose_first_queries();
    env.dns.delay(std::time::Duration::from_millis(300));
    let out = env.run().await;
    ok(&out);
    assert_eq!(out.events_named("cert.issued").len(), 2, "{}", out.stdout);
    assert!(
        env.dns.dropped.load(std::sync::atomic::Ordering::Relaxed) >= 3,
        "too few queries were lost to mean anything"
    );
    assert!(env.moto.challenge_records().await.is_empty());
    for name in ["a", "b"] {
        assert_published_is_live(&env, name).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lookup_lost_by_the_ca_gets_one_new_order() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    commit_web(&env, "web.example.test");
    // certkeeper's propagation check is the first TXT question and is
    // answered; the CA's validation is the second and is lost, so Pebble
    // marks the challenge invalid although the record was there.
    env.dns.lose_query(
        "_acme-challenge.web.example.test",
        hickory_proto::rr::RecordType::TXT,
        2,
    );
    let out = env.run().await;
    ok(&out);
    assert_eq!(
        env.dns.dropped.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    let retries = out.events_named("order.retry");
    assert_eq!(retries.len(), 1, "{}", out.stdout);
    assert_eq!(out.events_named("order.created").len(), 2, "{}", out.stdout);
    assert_eq!(out.events_named("cert.issued").len(), 1, "{}", out.stdout);
    assert!(env.moto.challenge_records().await.is_empty());
    assert_published_is_live(&env, "web").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn config_repo_unreachable_keeps_renewing_from_the_last_good_commit() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    commit_web(&env, "web.example.test");
    ok(&env.run().await);

    // The git server is gone on the day a renewal is due.
    let away = env.root.join("config-repo-away");
    std::fs::rename(&env.repo.path, &away).unwrap();
    let out = env
        .certkeeper_line("renew web --force", &env.settings_path())
        .await;
    assert_eq!(
        out.code, 2,
        "a config problem someone must fix:\n{}\n{}",
        out.stdout, out.stderr
    );
    assert_eq!(
        out.events_named("config.unreachable").len(),
        1,
        "{}",
        out.stdout
    );
    assert_eq!(out.events_named("cert.issued").len(), 1, "{}", out.stdout);
    assert!(
        out.stderr.contains("cannot fetch config repo"),
        "{}",
        out.stderr
    );
    let status = env.status();
    let config = status["config"].as_str().unwrap();
    assert!(config.starts_with("stale (repo unreachable"), "{config}");
    assert_published_is_live(&env, "web").await;

    // Back: the newest commit is used again and the status clears.
    std::fs::rename(&away, &env.repo.path).unwrap();
    let out = env.run().await;
    ok(&out);
    assert_eq!(env.status()["config"], "ok");
}

/// A small tmpfs mounted for one test, unmounted on drop.
struct SmallDisk {
    path: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(path: &std::path::Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(path).unwrap();
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .output()
            .expect("mount");
        assert!(
            out.status.success(),
            "mount tmpfs (the disk-full test runs as root, as CI does): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk {
            path: path.to_path_buf(),
        }
    }

    /// Fills what is left with one file; returns its path.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let filler = self.path.join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

/// Every file under `dir` with the SHA-256 of its bytes (symlinks: their
/// targets), so a failed comparison prints something readable.
fn tree(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.push((rel, format!("-> {}", target.display())));
            } else if meta.is_dir() {
                stack.push(path);
            } else {
                use sha2::Digest;
                out.push((
                    rel,
                    hex::encode(sha2::Sha256::digest(std::fs::read(&path).unwrap())),
                ));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disk_full_while_storing_keeps_the_live_certificate() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    let disk = SmallDisk::mount(&env.root.join("small"), "4m");
    let state = disk.path.join("state");
    let text = std::fs::read_to_string(env.settings_path()).unwrap();
    std::fs::write(
        env.settings_path(),
        text.replace(
            &format!("state_dir: {}\n", env.state_dir().display()),
            &format!("state_dir: {}\n", state.display()),
        ),
    )
    .unwrap();
    commit_web(&env, "web.example.test");
    ok(&env.run().await);
    let live_before = tree(&state.join("live"));
    let archive_before = tree(&state.join("archive"));

    // The disk fills up while the renewal's order is in flight, so the new
    // set has nowhere to go.
    commit_web(&env, "web.example.test, www.example.test");
    env.dns.hide("_acme-challenge.www.example.test");
    let running = tokio::task::block_in_place(|| spawn_until(&env, "dns.txt.upserted"));
    let filler = disk.fill();
    env.dns.show("_acme-challenge.www.example.test");
    let out = tokio::task::block_in_place(|| running.finish());
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(out.events_named("cert.issued").is_empty(), "{}", out.stdout);
    assert!(
        out.stdout.contains("No space left on device"),
        "the error names the cause: {}",
        out.stdout
    );
    assert_eq!(tree(&state.join("live")), live_before, "live/ changed");
    assert_eq!(
        tree(&state.join("archive")),
        archive_before,
        "a partial version was left in archive/"
    );
    assert!(
        env.moto.challenge_records().await.is_empty(),
        "TXT left behind"
    );
    let cert = std::fs::read(state.join("live/web/cert.pem")).unwrap();
    assert!(String::from_utf8_lossy(&cert).contains("BEGIN CERTIFICATE"));

    // Space again. The failure backs off like any other (the next daily
    // run retries); the operator's forced renewal completes it now.
    std::fs::remove_file(filler).unwrap();
    let out = env.run().await;
    assert_eq!(
        out.events_named("cert.backing_off").len(),
        1,
        "{}",
        out.stdout
    );
    assert_eq!(tree(&state.join("live")), live_before);
    let out = env
        .certkeeper_line("renew web --force", &env.settings_path())
        .await;
    ok(&out);
    assert_eq!(out.events_named("cert.issued").len(), 1, "{}", out.stdout);
    assert!(
        String::from_utf8_lossy(&std::fs::read(state.join("live/web/meta.json")).unwrap())
            .contains("www.example.test")
    );
    drop(disk);
}

/// The requests one certificate's S3 publish costs. A first publish
/// creates each object with `If-None-Match: *` and checks it by HEAD: no
/// HEAD before. With the local record of it lost, the first create is
/// refused (412), and the usual look-then-write finds every object
/// unchanged: nothing is uploaded again.
#[tokio::test(flavor = "multi_thread")]
async fn a_first_publish_creates_without_looking_and_a_lost_record_still_skips_unchanged() {
    let (env, proxy) = through_proxy(&["example.test"]).await;
    env.repo.commit_certificates(
        "certificates:\n  - name: www\n    domains: [www.example.test]\n",
        "one",
    );
    ok(&env.run().await);
    let count = |method: &str| {
        proxy
            .log()
            .iter()
            .filter(|l| l.starts_with(&format!("{method} /{}/certs/www/", env.bucket)))
            .count()
    };
    assert_eq!(count("PUT"), 5, "{:#?}", proxy.log());
    assert_eq!(
        count("HEAD"),
        5,
        "only the checks after upload: {:#?}",
        proxy.log()
    );
    assert_published_is_live(&env, "www").await;

    std::fs::remove_file(env.state_dir().join("published/www.json")).unwrap();
    let before = (count("PUT"), count("HEAD"));
    let out = env.run().await;
    ok(&out);
    let done = out.events_named("publish.done");
    assert_eq!(done[0]["uploaded"], 0, "{}", out.stdout);
    assert_eq!(done[0]["unchanged"], 5, "{}", out.stdout);
    assert_eq!(
        count("PUT") - before.0,
        1,
        "one refused create: {:#?}",
        proxy.log()
    );
    assert_eq!(count("HEAD") - before.1, 5, "{:#?}", proxy.log());
}

/// Replicas: a run starts with one listing of the bucket instead of a GET
/// per certificate. A certificate new to the bucket is leased without a
/// look first; a replica with nothing due reads no live set it has seen
/// before. Without s3:ListBucket the run warns and asks per certificate.
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_lists_the_bucket_once_instead_of_reading_every_live_set() {
    let (env, proxy) = through_proxy(&["example.test"]).await;
    env.repo.commit_certificates(
        "certificates:\n  - name: www\n    domains: [www.example.test]\n  - name: api\n    domains: [api.example.test]\n",
        "two",
    );
    let settings = env.replica_settings(0, "60s", "");
    let bucket = env.bucket.clone();
    let lists = |log: &[String]| log.iter().filter(|l| l.contains("list-type=2")).count();
    let gets = |log: &[String], what: &str| {
        log.iter()
            .filter(|l| l.starts_with(&format!("GET /{bucket}/certs/{what}")))
            .count()
    };

    let out = env.certkeeper_line("run --once", &settings).await;
    ok(&out);
    assert_eq!(out.events_named("cert.issued").len(), 2, "{}", out.stdout);
    let survey = out.events_named("replica.survey");
    assert_eq!(survey.len(), 1, "{}", out.stdout);
    assert_eq!(survey[0]["new_certificates"], 2, "{}", out.stdout);
    let first = proxy.log();
    assert_eq!(lists(&first), 1, "{first:#?}");
    assert_eq!(
        gets(&first, ".leases/"),
        0,
        "new certificates are leased without a look: {first:#?}"
    );
    assert_eq!(gets(&first, "www/meta.json"), 0, "{first:#?}");

    // Nothing due: one listing and not one request about a certificate
    // (the manifest, one per run, is looked at as always).
    let out = env.certkeeper_line("run --once", &settings).await;
    ok(&out);
    assert!(out.events_named("cert.issued").is_empty(), "{}", out.stdout);
    let second: Vec<String> = proxy.log()[first.len()..].to_vec();
    assert_eq!(lists(&second), 1, "{second:#?}");
    let per_cert: Vec<&String> = second
        .iter()
        .filter(|l| l.contains(&format!("/{bucket}/certs/")) && !l.contains("index.json"))
        .collect();
    assert!(per_cert.is_empty(), "{per_cert:#?}");

    // No s3:ListBucket: a warning that names the fix, then a GET per
    // certificate, and the run still succeeds.
    proxy.inject(
        Match {
            method: Some("GET"),
            path: Some("list-type=2".into()),
            body: None,
        },
        Fault::Status(403),
        None,
    );
    let before = proxy.log().len();
    let out = env.certkeeper_line("run --once", &settings).await;
    ok(&out);
    let failed = out.events_named("replica.survey.failed");
    assert_eq!(failed.len(), 1, "{}", out.stdout);
    assert!(
        failed[0]["hint"]
            .as_str()
            .unwrap()
            .contains("s3:ListBucket"),
        "{}",
        out.stdout
    );
    let third: Vec<String> = proxy.log()[before..].to_vec();
    assert_eq!(gets(&third, "www/meta.json"), 1, "{third:#?}");
    assert_eq!(gets(&third, "api/meta.json"), 1, "{third:#?}");
    assert!(out.events_named("cert.issued").is_empty(), "{}", out.stdout);
}
