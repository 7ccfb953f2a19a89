//! Issues N certificates (default 50) on the local environment and prints
//! wall time, CPU seconds, peak RSS of the certkeeper process and Route53
//! calls per certificate. With `--certbot`, certbot (with
//! certbot-dns-route53) then renews the same N names on the same
//! environment and the ratio is printed. See BENCHMARKS.md.
//!
//! With `--replicas K`, K replicas (`replicas:` in their settings, one
//! state dir each) run at once against the same bucket, CA and DNS; wall
//! time is the slowest replica's, CPU and peak RSS are per replica, and
//! every certificate must be issued exactly once across them.
//!
//! Route53 runs behind the realistic front (tests/support/route53_proxy.py):
//! `--insync 0,20` runs the same N on a fresh environment per INSYNC delay
//! and prints how much of each delay the wall time paid; `--wildcards`
//! makes every certificate a wildcard + apex pair. Each run also checks
//! that every certificate verifies against Pebble's root and is published
//! and that no `_acme-challenge` record is left.
//!
//! Usage: CERTKEEPER_BIN=target/release/certkeeper bench [N] [--insync S[,S]]
//! [--wildcards] [--certbot] [--replicas K]
//! (`CERTBOT_BIN` names the certbot executable; deploy/local/bench.sh
//! installs one into a venv.)

#[path = "../tests/support/mod.rs"]
mod support;
use support::Tied;

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one measured child process cost.
struct Measured {
    wall: Duration,
    status: std::process::ExitStatus,
    cpu_secs: f64,
    peak_mib: f64,
    stdout: String,
}

/// Runs `cmd` to completion; wait4 gives the child's own CPU time and peak
/// RSS (not the environment's).
fn measure(mut cmd: Command) -> Measured {
    let started = Instant::now();
    #[allow(clippy::zombie_processes)] // reaped below with wait4 to read its rusage
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .tied()
        .spawn()
        .expect("spawn");
    let pid = child.id() as libc::pid_t;
    let stdout = {
        use std::io::Read;
        let mut s = String::new();
        child
            .stdout
            .expect("stdout")
            .read_to_string(&mut s)
            .expect("read");
        s
    };
    // BENCH_LOG=FILE keeps the run's log lines, for a look at the timeline.
    if let Ok(path) = std::env::var("BENCH_LOG") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("BENCH_LOG");
        f.write_all(stdout.as_bytes()).expect("BENCH_LOG");
    }
    let mut raw_status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut raw_status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4");
    let cpu = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Measured {
        wall: started.elapsed(),
        status: std::process::ExitStatus::from_raw(raw_status),
        cpu_secs: cpu(usage.ru_utime) + cpu(usage.ru_stime),
        peak_mib: usage.ru_maxrss as f64 / 1024.0,
        stdout,
    }
}

/// One timed `run --once` of N certificates on a fresh environment.
struct Row {
    insync: Duration,
    n: usize,
    measured: Measured,
    renewed: u64,
    r53_calls: usize,
    r53_throttled: usize,
    changes: usize,
    left: usize,
    unverified: usize,
    unpublished: usize,
    acme: u64,
}

/// The N names of the bench: `c<i>.example.test`, or with `wildcards` the
/// pair `w<i>.example.test` + `*.w<i>.example.test` per certificate.
fn certificates_yaml(n: usize, wildcards: bool) -> String {
    let mut yaml = String::from("certificates:\n");
    for i in 0..n {
        if wildcards {
            yaml.push_str(&format!(
                "  - name: w{i}\n    domains: [w{i}.example.test, \"*.w{i}.example.test\"]\n"
            ));
        } else {
            yaml.push_str(&format!(
                "  - name: c{i}\n    domains: [c{i}.example.test]\n"
            ));
        }
    }
    yaml
}

/// Every live certificate that does not chain to Pebble's root (openssl
/// verify with the live chain as untrusted intermediates).
fn unverified(env: &support::LocalEnv, names: &[String]) -> usize {
    unverified_in(env, &env.state_dir(), names)
}

/// `unverified` over the live sets of the state dir `state`.
fn unverified_in(env: &support::LocalEnv, state: &std::path::Path, names: &[String]) -> usize {
    let root = env.root.join("pebble-root.pem");
    std::fs::write(&root, env.pebble.issuing_root()).expect("root");
    names
        .iter()
        .filter(|name| {
            let live = state.join("live").join(name);
            !Command::new("openssl")
                .args(["verify", "-CAfile"])
                .arg(&root)
                .arg("-untrusted")
                .arg(live.join("chain.pem"))
                .arg(live.join("cert.pem"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .count()
}

/// A fresh environment under `dir` with Route53 INSYNC after `insync` and
/// the bench's N certificates committed.
async fn bench_env(
    dir: &std::path::Path,
    n: usize,
    wildcards: bool,
    insync: Duration,
    pebble: support::PebbleOptions,
) -> support::LocalEnv {
    let timing = support::Route53Timing {
        insync,
        requests_per_second: 5.0,
        prior_request_window: Duration::ZERO,
    };
    let env = support::LocalEnv::start_timed(dir, &["example.test"], pebble, timing).await;
    env.repo
        .commit_certificates(&certificates_yaml(n, wildcards), "bench");
    env
}

async fn issue_bench(
    n: usize,
    wildcards: bool,
    insync: Duration,
    pebble: support::PebbleOptions,
) -> Row {
    let tmp = tempfile::tempdir().expect("tempdir");
    let env = bench_env(tmp.path(), n, wildcards, insync, pebble).await;
    env.write_settings(&std::env::var("BENCH_SETTINGS").unwrap_or_default());
    let mut cmd = env.command();
    cmd.args(["run", "--once", "--config"])
        .arg(env.settings_path());
    let measured = tokio::task::spawn_blocking(move || measure(cmd))
        .await
        .expect("bench task");
    let done = finished(&measured.stdout);
    let status = env.status();
    let certs = status["certificates"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let names: Vec<String> = certs
        .iter()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect();
    let (r53_calls, r53_throttled) = env.route53.calls();
    Row {
        insync,
        n,
        renewed: done["renewed"].as_u64().unwrap_or(0),
        acme: done["acme_requests"].as_u64().unwrap_or(0),
        r53_calls,
        r53_throttled,
        changes: env.route53.changes().len(),
        left: env.moto.challenge_records().await.len(),
        unverified: unverified(&env, &names) + n.saturating_sub(names.len()),
        unpublished: certs.iter().filter(|c| c["published"] != true).count(),
        measured,
    }
}

fn print_row(r: &Row) {
    let n = r.n as f64;
    println!("Route53 INSYNC after:    {:?}", r.insync);
    println!("  certificates:          {} (renewed {})", r.n, r.renewed);
    println!(
        "  exit status:           {}",
        r.measured.status.code().unwrap_or(-1)
    );
    println!(
        "  wall time:             {:.2} s",
        r.measured.wall.as_secs_f64()
    );
    println!(
        "  CPU (user+sys):        {:.2} s ({:.4} s per certificate)",
        r.measured.cpu_secs,
        r.measured.cpu_secs / n
    );
    println!("  peak RSS:              {:.1} MiB", r.measured.peak_mib);
    println!(
        "  Route53 calls:         {} ({:.2} per certificate), {} throttled and retried, {} changes",
        r.r53_calls,
        r.r53_calls as f64 / n,
        r.r53_throttled,
        r.changes
    );
    println!(
        "  CA requests:           {} ({:.2} per certificate)",
        r.acme,
        r.acme as f64 / n
    );
    println!(
        "  left in DNS:           {} _acme-challenge record sets",
        r.left
    );
    println!(
        "  not verifying / not published: {} / {}",
        r.unverified, r.unpublished
    );
}

fn row_ok(r: &Row) -> bool {
    r.measured.status.success()
        && r.renewed as usize == r.n
        && r.left == 0
        && r.unverified == 0
        && r.unpublished == 0
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let with_certbot = args.iter().any(|a| a == "--certbot");
    let wildcards = args.iter().any(|a| a == "--wildcards");
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let replicas: Option<usize> = value("--replicas").map(|k| k.parse().expect("--replicas K"));
    // --insync 0,20: the same bench with Route53 INSYNC after each delay
    // (seconds), side by side; default: the tests' (CK_ROUTE53_INSYNC or 1).
    let delays: Vec<Duration> = match value("--insync") {
        Some(list) => list
            .split(',')
            .map(|d| Duration::from_secs_f64(d.parse().expect("--insync SECONDS[,SECONDS]")))
            .collect(),
        None => vec![support::Route53Timing::default().insync],
    };
    let n: usize = args
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            args.get(i.wrapping_sub(1))
                .is_none_or(|p| p != "--replicas" && p != "--insync")
        })
        .find_map(|(_, a)| a.parse().ok())
        .unwrap_or(50);
    // certbot gives up on the first badNonce (see BENCHMARKS.md), so the
    // comparison runs both clients with Pebble's nonce rejection off.
    let pebble = support::PebbleOptions {
        nonce_reject_percent: with_certbot.then_some(0),
        ..Default::default()
    };
    if let Some(k) = replicas {
        let tmp = tempfile::tempdir().expect("tempdir");
        let env = bench_env(tmp.path(), n, wildcards, delays[0], pebble).await;
        return replicas_bench(&env, n, k).await;
    }
    if with_certbot {
        let tmp = tempfile::tempdir().expect("tempdir");
        let env = bench_env(tmp.path(), n, false, delays[0], pebble).await;
        let mut cmd = env.command();
        cmd.args(["run", "--once", "--config"])
            .arg(env.settings_path());
        let ck = tokio::task::spawn_blocking(move || measure(cmd))
            .await
            .expect("bench task");
        println!("certkeeper wall time:    {:.2} s", ck.wall.as_secs_f64());
        return certbot(&env, n, &ck).await;
    }
    if let Ok(path) = std::env::var("BENCH_LOG") {
        eprintln!("bench: the run's log goes to {path}");
    }
    let mut rows = Vec::new();
    for delay in &delays {
        let row = issue_bench(n, wildcards, *delay, pebble.clone()).await;
        print_row(&row);
        rows.push(row);
    }
    if rows.len() > 1 {
        let base = &rows[0];
        for r in &rows[1..] {
            let extra = r.measured.wall.as_secs_f64() - base.measured.wall.as_secs_f64();
            let paid = (r.insync.as_secs_f64() - base.insync.as_secs_f64()).max(f64::EPSILON);
            println!(
                "INSYNC {:?} vs {:?}: {:+.1} s wall = {:.2} x the extra delay",
                r.insync,
                base.insync,
                extra,
                extra / paid
            );
        }
    }
    if rows.iter().all(row_ok) {
        std::process::ExitCode::SUCCESS
    } else {
        eprintln!(
            "bench: a run did not renew, verify and publish every certificate, or left records"
        );
        std::process::ExitCode::FAILURE
    }
}

/// certbot with certbot-dns-route53 on the same Pebble, moto and DNS
/// responder: `certonly` once per name to create the lineages (not timed),
/// then one timed `renew --force-renewal --no-random-sleep-on-renew`, which
/// is what a daily certbot job does when everything is due.
async fn certbot(env: &support::LocalEnv, n: usize, ck: &Measured) -> std::process::ExitCode {
    let bin = PathBuf::from(std::env::var("CERTBOT_BIN").unwrap_or_else(|_| "certbot".into()));
    let dir = env.root.join("certbot");
    let common = |cmd: &mut Command| {
        cmd.arg("--config-dir")
            .arg(dir.join("config"))
            .arg("--work-dir")
            .arg(dir.join("work"))
            .arg("--logs-dir")
            .arg(dir.join("logs"))
            .args(["--non-interactive", "--server"])
            .arg(env.pebble.directory_url())
            .env("REQUESTS_CA_BUNDLE", env.pebble.listener_ca())
            .env("AWS_ENDPOINT_URL", env.route53.endpoint());
    };
    eprintln!("certbot: creating {n} lineages (not timed)");
    for i in 0..n {
        let mut cmd = env.aws_command(&bin);
        cmd.args([
            "certonly",
            "--dns-route53",
            "--agree-tos",
            "--register-unsafely-without-email",
            "--key-type",
            "ecdsa",
            "-d",
        ])
        .arg(format!("c{i}.example.test"));
        common(&mut cmd);
        let out = cmd
            .stdout(Stdio::null())
            .output()
            .expect("run certbot (set CERTBOT_BIN)");
        if !out.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
            eprintln!("certbot certonly failed for c{i}");
            std::process::exit(1);
        }
    }
    let mut cmd = env.aws_command(&bin);
    cmd.args(["renew", "--force-renewal", "--no-random-sleep-on-renew"]);
    common(&mut cmd);
    let cb = tokio::task::spawn_blocking(move || measure(cmd))
        .await
        .expect("certbot task");
    let renewed = std::fs::read_dir(dir.join("config/archive"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().join("cert2.pem").exists())
                .count()
        })
        .unwrap_or(0);
    println!(
        "certbot renewed:         {renewed} (exit {})",
        cb.status.code().unwrap_or(-1)
    );
    println!("certbot wall time:       {:.2} s", cb.wall.as_secs_f64());
    println!(
        "certbot CPU (user+sys):  {:.2} s ({:.4} s per certificate)",
        cb.cpu_secs,
        cb.cpu_secs / n as f64
    );
    println!("certbot peak RSS:        {:.1} MiB", cb.peak_mib);
    println!(
        "ratio (certbot/certkeeper): wall {:.1}x, CPU {:.1}x",
        cb.wall.as_secs_f64() / ck.wall.as_secs_f64(),
        cb.cpu_secs / ck.cpu_secs
    );
    if renewed != n {
        eprintln!("certbot did not renew every certificate");
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}

/// The run summary event of a run's JSON log.
fn finished(stdout: &str) -> serde_json::Value {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "run.finished")
        .unwrap_or_default()
}

/// K replicas at once on the same N certificates.
async fn replicas_bench(env: &support::LocalEnv, n: usize, k: usize) -> std::process::ExitCode {
    let mut tasks = Vec::new();
    let started = Instant::now();
    for i in 0..k {
        // BENCH_SETTINGS: more settings YAML for every replica (e.g.
        // `max_concurrent_orders: 16`).
        let extra = std::env::var("BENCH_SETTINGS").unwrap_or_default();
        let settings = env.replica_settings(i, "2m", &extra);
        let mut cmd = env.command();
        cmd.args(["run", "--once", "--config"]).arg(settings);
        tasks.push(tokio::task::spawn_blocking(move || measure(cmd)));
    }
    let mut runs = Vec::new();
    for t in tasks {
        runs.push(t.await.expect("replica task"));
    }
    let wall = started.elapsed();
    let issued: usize = runs
        .iter()
        .map(|r| r.stdout.matches("\"event\":\"cert.issued\"").count())
        .sum();
    let r53: u64 = runs
        .iter()
        .map(|r| finished(&r.stdout)["dns_calls"].as_u64().unwrap_or(0))
        .sum();
    let acme: u64 = runs
        .iter()
        .map(|r| finished(&r.stdout)["acme_requests"].as_u64().unwrap_or(0))
        .sum();
    println!("certificates:            {n}");
    println!("replicas:                {k}");
    println!("issued (all replicas):   {issued}");
    println!("wall time:               {:.2} s", wall.as_secs_f64());
    for (i, r) in runs.iter().enumerate() {
        println!(
            "replica {i}:               exit {}, issued {}, CPU {:.2} s, peak RSS {:.1} MiB",
            r.status.code().unwrap_or(-1),
            r.stdout.matches("\"event\":\"cert.issued\"").count(),
            r.cpu_secs,
            r.peak_mib
        );
    }
    println!(
        "CPU (all replicas):      {:.2} s ({:.4} s per certificate)",
        runs.iter().map(|r| r.cpu_secs).sum::<f64>(),
        runs.iter().map(|r| r.cpu_secs).sum::<f64>() / n as f64
    );
    println!(
        "Route53 calls:           {r53} ({:.2} per certificate)",
        r53 as f64 / n as f64
    );
    println!(
        "CA requests:             {acme} ({:.2} per certificate)",
        acme as f64 / n as f64
    );
    let (r53_calls, r53_throttled) = env.route53.calls();
    println!(
        "Route53 requests seen:   {r53_calls}, {r53_throttled} throttled and retried, {} changes",
        env.route53.changes().len()
    );
    let left = env.moto.challenge_records().await.len();
    println!("left in DNS:             {left} _acme-challenge record sets");
    // Every replica ends its run with every certificate: its own, and the
    // others' pulled from the bucket; each verifies and is published.
    let names: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    let mut incomplete = 0;
    for i in 0..k {
        let state = std::path::PathBuf::from(format!("{}-{i}", env.state_dir().display()));
        let status: serde_json::Value = std::fs::read(state.join("status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let certs = status["certificates"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let published = certs.iter().filter(|c| c["published"] == true).count();
        let bad = unverified_in(env, &state, &names);
        println!(
            "replica {i} live sets:     {} of {n} verify against Pebble's root, {published} published",
            n - bad
        );
        incomplete += bad + n.saturating_sub(published);
    }
    let s3 = env.moto.s3().await;
    let (mut metas, mut token) = (0, None);
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(&env.bucket)
            .prefix("certs/")
            .set_continuation_token(token)
            .send()
            .await
            .expect("list the bucket");
        metas += page
            .contents()
            .iter()
            .filter(|o| o.key().is_some_and(|k| k.ends_with("/meta.json")))
            .count();
        token = page.next_continuation_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    println!("in the bucket:           {metas} live sets");
    if issued != n || left != 0 || incomplete != 0 || metas != n {
        eprintln!("replicas issued {issued} certificates for {n} names");
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}
