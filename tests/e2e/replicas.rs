//! Several replicas, one bucket (moto), one CA (Pebble): S3 leases with
//! conditional writes, fencing by generation, takeover of a killed
//! holder's certificate (its TXT records removed), and bootstrap of a new
//! replica from the bucket instead of re-issuing.

use crate::support;
use support::Tied;

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;
use support::{LocalEnv, PebbleOptions, RunOutput};

const TTL: &str = "3s";

fn replica_settings(env: &LocalEnv, i: usize, extra: &str) -> PathBuf {
    env.replica_settings(i, TTL, extra)
}

async fn run_replica(env: &LocalEnv, settings: &std::path::Path) -> RunOutput {
    env.certkeeper_line("run --once", settings).await
}

fn spawn_replica(env: &LocalEnv, settings: &std::path::Path) -> Child {
    env.command()
        .args(["run", "--once", "--config"])
        .arg(settings)
        .env("CERTKEEPER_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .tied()
        .spawn()
        .expect("spawn replica")
}

fn live_serial(env: &LocalEnv, i: usize, name: &str) -> Option<String> {
    let path = PathBuf::from(format!("{}-{i}", env.state_dir().display()))
        .join("live")
        .join(name)
        .join("meta.json");
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    meta["serial"].as_str().map(str::to_string)
}

async fn s3_meta(env: &LocalEnv, name: &str) -> serde_json::Value {
    let bytes = env
        .s3_object(&format!("certs/{name}/meta.json"))
        .await
        .unwrap_or_else(|| panic!("{name}: no meta.json in the bucket"));
    serde_json::from_slice(&bytes).unwrap()
}

async fn wait_for_txt(env: &LocalEnv) {
    for _ in 0..300 {
        if !env.moto.challenge_records().await.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the replica never wrote its TXT records");
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

const NAMES: [&str; 6] = ["r0", "r1", "r2", "r3", "r4", "r5"];

#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_issue_each_certificate_once_and_converge() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    let certs: String = NAMES
        .iter()
        .map(|n| format!("  - name: {n}\n    domains: [{n}.example.test]\n"))
        .collect();
    env.repo
        .commit_certificates(&format!("certificates:\n{certs}"), "six");
    let settings: Vec<PathBuf> = (0..3).map(|i| replica_settings(&env, i, "")).collect();

    // All three at once, as three VMs' timers would.
    let (a, b, c) = tokio::join!(
        run_replica(&env, &settings[0]),
        run_replica(&env, &settings[1]),
        run_replica(&env, &settings[2]),
    );
    let runs = [&a, &b, &c];
    // Each waits for what the others issue and ends complete.
    for (i, r) in runs.iter().enumerate() {
        assert_eq!(r.code, 0, "replica {i}: {}{}", r.stdout, r.stderr);
    }
    let issued: usize = runs
        .iter()
        .map(|r| r.events_named("cert.issued").len())
        .sum();
    assert_eq!(issued, NAMES.len(), "each certificate issued exactly once");
    for name in NAMES {
        let holders: Vec<usize> = (0..3)
            .filter(|i| {
                runs[*i]
                    .events_named("cert.issued")
                    .iter()
                    .any(|e| e["cert"] == name)
            })
            .collect();
        assert_eq!(holders.len(), 1, "{name}: {holders:?}");
        let meta = s3_meta(&env, name).await;
        assert_eq!(
            live_serial(&env, holders[0], name).as_deref(),
            meta["serial"].as_str(),
            "{name}: the bucket holds what its issuer made"
        );
        assert!(
            meta["generation"].as_u64().is_some_and(|g| g >= 1),
            "{meta}"
        );
    }
    assert!(env.moto.challenge_records().await.is_empty());

    // The next runs: nothing issued, every replica holds every set.
    let (a, b, c) = tokio::join!(
        run_replica(&env, &settings[0]),
        run_replica(&env, &settings[1]),
        run_replica(&env, &settings[2]),
    );
    for (i, r) in [a, b, c].iter().enumerate() {
        assert_eq!(r.code, 0, "replica {i}: {}", r.stderr);
        assert!(r.events_named("cert.issued").is_empty(), "replica {i}");
        for name in NAMES {
            let meta = s3_meta(&env, name).await;
            assert_eq!(
                live_serial(&env, i, name).as_deref(),
                meta["serial"].as_str()
            );
        }
    }

    // A new replica with an empty state dir bootstraps from the bucket.
    let fresh = replica_settings(&env, 3, "");
    let d = run_replica(&env, &fresh).await;
    assert_eq!(d.code, 0, "{}", d.stderr);
    assert!(
        d.events_named("cert.issued").is_empty(),
        "no re-issue storm"
    );
    assert_eq!(d.events_named("replica.pulled").len(), NAMES.len());
    for name in NAMES {
        let meta = s3_meta(&env, name).await;
        assert_eq!(
            live_serial(&env, 3, name).as_deref(),
            meta["serial"].as_str()
        );
    }
    // A key in the bucket that does not match the certificate is refused,
    // not installed.
    let replica_e = replica_settings(&env, 4, "");
    let other_key = env.s3_object("certs/r1/privkey.pem").await.unwrap();
    env.moto
        .s3()
        .await
        .put_object()
        .bucket(&env.bucket)
        .key("certs/r0/privkey.pem")
        .body(other_key.into())
        .send()
        .await
        .unwrap();
    let e = run_replica(&env, &replica_e).await;
    let refused = e.events_named("replica.pull.failed");
    assert!(
        refused.iter().any(|ev| ev["cert"] == "r0"
            && ev["error"]
                .as_str()
                .unwrap()
                .contains("does not match the certificate")),
        "{}",
        e.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_holder_is_taken_over_and_its_txt_records_removed() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    env.repo.commit_certificates(
        "certificates:\n  - name: slow\n    domains: [slow.example.test]\n",
        "one",
    );
    let a = replica_settings(&env, 0, "");
    let b = replica_settings(&env, 1, "");
    // The nameserver hides the value: replica A waits in propagation.
    env.dns.hide("_acme-challenge.slow.example.test");
    let mut child = spawn_replica(&env, &a);
    wait_for_txt(&env).await;
    signal(&child, libc::SIGKILL);
    let _ = child.wait();
    assert!(
        !env.moto.challenge_records().await.is_empty(),
        "A left its record"
    );
    // Noted in its lease before it was written, and nowhere else.
    let lease: serde_json::Value =
        serde_json::from_slice(&env.s3_object("certs/.leases/slow").await.unwrap()).unwrap();
    assert_eq!(lease["holder"], "replica-0", "{lease}");
    assert!(
        lease["dns"]
            .to_string()
            .contains("_acme-challenge.slow.example.test"),
        "{lease}"
    );

    // While A's lease lasts, B leaves the certificate alone.
    let early = run_replica(&env, &b).await;
    let skipped = early.events_named("cert.lease.skipped");
    assert_eq!(skipped.len(), 1, "{}", early.stdout);
    assert!(skipped[0]["reason"].as_str().unwrap().contains("replica-0"));
    assert!(early.events_named("cert.issued").is_empty());

    tokio::time::sleep(Duration::from_secs(4)).await;
    env.dns.show("_acme-challenge.slow.example.test");
    let late = run_replica(&env, &b).await;
    assert_eq!(late.code, 0, "{}{}", late.stdout, late.stderr);
    let taken = late.events_named("lease.taken");
    assert_eq!(taken[0]["previous_holder"], "replica-0", "{}", late.stdout);
    assert_eq!(
        late.events_named("lease.cleanup.dns").len(),
        1,
        "{}",
        late.stdout
    );
    assert_eq!(late.events_named("cert.issued").len(), 1);
    assert!(
        env.moto.challenge_records().await.is_empty(),
        "no TXT record left behind: {:?}",
        env.moto.challenge_records().await
    );
    let lease: serde_json::Value =
        serde_json::from_slice(&env.s3_object("certs/.leases/slow").await.unwrap()).unwrap();
    assert_eq!(lease["holder"], "replica-1", "{lease}");
    assert!(
        lease.get("dns").is_none(),
        "released with nothing left: {lease}"
    );
    let meta = s3_meta(&env, "slow").await;
    assert_eq!(
        live_serial(&env, 1, "slow").as_deref(),
        meta["serial"].as_str()
    );
    assert_eq!(meta["generation"], 2, "{meta}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_holder_is_fenced_and_never_overwrites_the_new_publish() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    env.repo.commit_certificates(
        "certificates:\n  - name: paused\n    domains: [paused.example.test]\n",
        "one",
    );
    // Replica A publishes to a local directory first, whose reload command
    // says it is running and then takes its time; A is paused right there,
    // after issuing and before its S3 upload.
    let marker = env.root.join("reloading");
    std::fs::create_dir_all(env.root.join("a")).unwrap();
    let script = env.root.join("slow-reload.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\ntouch {}\nsleep 2\n", marker.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let a = replica_settings(
        &env,
        0,
        &format!(
            "targets:\n  local:\n    type: files\n    files:\n      - {{source: fullchain.pem, path: \"{root}/a/{{name}}.crt\"}}\n    reload: [\"{script}\"]\n    reload_timeout: 30s\ndefault_targets: [local, s3]\n",
            root = env.root.display(),
            script = script.display()
        ),
    );
    let b = replica_settings(&env, 1, "");
    let child = spawn_replica(&env, &a);
    for _ in 0..600 {
        if marker.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !marker.exists() {
        signal(&child, libc::SIGKILL);
        let out = child.wait_with_output().unwrap();
        panic!(
            "A never reached its first target: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    signal(&child, libc::SIGSTOP);
    let a_serial = live_serial(&env, 0, "paused").expect("A issued before the pause");

    // A's lease runs out; B takes over, issues and publishes.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let run_b = run_replica(&env, &b).await;
    assert_eq!(run_b.code, 0, "{}{}", run_b.stdout, run_b.stderr);
    assert_eq!(run_b.events_named("cert.issued").len(), 1);
    let b_serial = live_serial(&env, 1, "paused").unwrap();
    assert_ne!(a_serial, b_serial);

    // A resumes: it must not replace B's publish.
    signal(&child, libc::SIGCONT);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    // Its lease is gone and its S3 upload is refused by generation.
    assert!(stdout.contains("\"event\":\"lease.lost\""), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("\"event\":\"publish.failed\"")
                && l.contains("\"target\":\"s3\"")
                && l.contains("fenced")),
        "{stdout}"
    );
    let meta = s3_meta(&env, "paused").await;
    assert_eq!(meta["serial"].as_str(), Some(b_serial.as_str()));
    let cert = env.s3_object("certs/paused/cert.pem").await.unwrap();
    let b_cert = std::fs::read(
        PathBuf::from(format!("{}-1", env.state_dir().display())).join("live/paused/cert.pem"),
    )
    .unwrap();
    assert_eq!(cert, b_cert, "the bucket still holds B's certificate");

    // A's next run takes B's certificate from the bucket.
    let again = run_replica(&env, &a).await;
    assert!(
        again.events_named("cert.issued").is_empty(),
        "{}",
        again.stdout
    );
    assert_eq!(live_serial(&env, 0, "paused"), Some(b_serial));
}

/// The keep-alive and the check before publishing renew the same lease at
/// the same moment: both must succeed (one ETag condition each, in turn),
/// never report the lease lost to the holder itself.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_renewals_of_one_lease_both_succeed() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    let s3: certkeeper::settings::S3Settings =
        serde_json::from_value(serde_json::json!({"bucket": env.bucket, "prefix": "certs"}))
            .unwrap();
    let replicas: certkeeper::settings::ReplicaSettings =
        serde_json::from_value(serde_json::json!({"lease_ttl": "30s", "holder": "me"})).unwrap();
    let c = certkeeper::replica::Coordinator::new(env.moto.s3().await, &s3, &replicas);
    let certkeeper::replica::Acquired::Taken(lease) = c.acquire("x").await.unwrap() else {
        panic!("a fresh lease is free");
    };
    for _ in 0..20 {
        let (a, b) = tokio::join!(c.renew(&lease), c.renew(&lease));
        a.unwrap();
        b.unwrap();
    }
    // Another holder finds it held; after release it is free again.
    let other: certkeeper::settings::ReplicaSettings =
        serde_json::from_value(serde_json::json!({"lease_ttl": "30s", "holder": "other"})).unwrap();
    let d = certkeeper::replica::Coordinator::new(env.moto.s3().await, &s3, &other);
    assert!(matches!(
        d.acquire("x").await.unwrap(),
        certkeeper::replica::Acquired::Held { holder, .. } if holder == "me"
    ));
    c.release(&lease).await;
    let certkeeper::replica::Acquired::Taken(next) = d.acquire("x").await.unwrap() else {
        panic!("a released lease is free");
    };
    assert_eq!(next.generation, lease.generation + 1);
    assert_eq!(next.took_over, None, "a released lease is not a takeover");
}

/// A lease object that is not a lease (truncated, edited by hand) may still
/// belong to a working holder: it is left alone for one lease from its last
/// write, then taken over above the generation it names, and the
/// certificate is issued once.
#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_lease_is_waited_out_then_taken_over() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    env.repo.commit_certificates(
        "certificates:\n  - name: mangled\n    domains: [mangled.example.test]\n",
        "one",
    );
    env.moto
        .s3()
        .await
        .put_object()
        .bucket(&env.bucket)
        .key("certs/.leases/mangled")
        // JSON, but not a lease: the generation in it is still honoured.
        .body(br#"{"generation": 7, "holder": 3}"#.to_vec().into())
        .send()
        .await
        .unwrap();
    // Long enough that the first run surely starts inside it.
    let a = env.replica_settings(0, "15s", "");

    let early = run_replica(&env, &a).await;
    assert!(
        early.events_named("cert.issued").is_empty(),
        "{}",
        early.stdout
    );
    let corrupt = early.events_named("lease.corrupt");
    assert!(!corrupt.is_empty(), "{}", early.stdout);
    assert!(
        corrupt[0]["key"]
            .as_str()
            .unwrap()
            .ends_with("certs/.leases/mangled")
    );
    let skipped = early.events_named("cert.lease.skipped");
    assert!(
        skipped[0]["reason"].as_str().unwrap().contains("corrupt"),
        "{}",
        early.stdout
    );
    assert!(!early.stdout.contains("panicked") && !early.stderr.contains("panicked"));

    let held_until = time::OffsetDateTime::parse(
        corrupt[0]["held_until"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let wait = held_until - time::OffsetDateTime::now_utc() + time::Duration::seconds(1);
    tokio::time::sleep(wait.try_into().unwrap_or_default()).await;
    let late = run_replica(&env, &a).await;
    assert_eq!(late.code, 0, "{}{}", late.stdout, late.stderr);
    assert_eq!(late.events_named("cert.issued").len(), 1, "{}", late.stdout);
    let taken = late.events_named("lease.taken");
    assert_eq!(taken[0]["generation"], 8, "{}", late.stdout);
    let meta = s3_meta(&env, "mangled").await;
    assert_eq!(meta["generation"], 8, "{meta}");
    assert_eq!(
        live_serial(&env, 0, "mangled").as_deref(),
        meta["serial"].as_str()
    );
    // The lease is a lease again, released by its holder.
    let lease: serde_json::Value =
        serde_json::from_slice(&env.s3_object("certs/.leases/mangled").await.unwrap()).unwrap();
    assert_eq!(lease["holder"], "replica-0", "{lease}");
    assert_eq!(lease["generation"], 8, "{lease}");
}
