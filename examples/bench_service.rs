//! Service bench (issues 7 and 24): the daemon's resident memory and CPU
//! while idle (after start, after a run of N certificates, and after each of
//! RUNS more SIGHUP-triggered runs), and `certkeeper status` over a status
//! file of 10,000 certificates. The daemon runs as deployed: the HTTP
//! listener on, and one watch source (files) over 5 certificates besides the
//! N it manages. See BENCHMARKS.md.
//!
//! Usage: CERTKEEPER_BIN=target/release/certkeeper bench_service [N] [--runs RUNS]

#[path = "../tests/support/mod.rs"]
mod support;
use support::Tied;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Resident set (MiB) and CPU seconds (user+sys) of `pid`, from /proc.
fn sample(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (rss_kib / 1024.0, ticks / hz)
}

/// `RssAnon` and `RssFile` (MiB): the heap versus pages of the binary.
fn split(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let get = |key: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (get("RssAnon:"), get("RssFile:"))
}

/// Resident set, heap and file pages (MiB) once the daemon has settled
/// (it hands memory back again 15 s after a run).
fn settled(pid: u32) -> (f64, f64, f64) {
    std::thread::sleep(Duration::from_secs(17));
    let (rss, _) = sample(pid);
    let (anon, file) = split(pid);
    (rss, anon, file)
}

fn idle(pid: u32, what: &str) {
    std::thread::sleep(Duration::from_secs(2));
    let (rss, cpu0) = sample(pid);
    std::thread::sleep(Duration::from_secs(20));
    let (rss_after, cpu1) = sample(pid);
    let (anon, file) = split(pid);
    println!(
        "idle {what}: RSS {rss:.1} MiB -> {rss_after:.1} MiB (heap {anon:.1}, binary and libraries {file:.1}), CPU over 20 s: {:.3} s",
        cpu1 - cpu0
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(50);
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(0);
    let bin = support::certkeeper_bin();
    let env = support::LocalEnv::start(&["example.test"], support::PebbleOptions::default()).await;
    let watched = env.root.join("watched");
    std::fs::create_dir_all(&watched).unwrap();
    for i in 0..5 {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec![format!("w{i}.partner.test")]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(watched.join(format!("w{i}.pem")), cert.pem()).unwrap();
    }
    env.write_settings(&format!(
        "schedule:\n  cron: \"0 3 1 1 *\"\nhttp:\n  listen: 127.0.0.1:{}\nwatch:\n  sources:\n    - type: files\n      path: {}\n",
        support::free_port(),
        watched.display()
    ));
    let mut yaml = String::from("certificates:\n");
    for i in 0..n {
        yaml.push_str(&format!(
            "  - name: c{i}\n    domains: [c{i}.example.test]\n"
        ));
    }
    env.repo.commit_certificates(&yaml, "bench");

    let mut child = env
        .command()
        .args(["run", "--config"])
        .arg(env.settings_path())
        .stdout(Stdio::piped())
        .tied()
        .spawn()
        .expect("daemon");
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut wait_for = |event: &str| {
        for line in lines.by_ref() {
            if line.unwrap().contains(&format!("\"event\":\"{event}\"")) {
                return;
            }
        }
        panic!("daemon exited before {event}");
    };
    wait_for("daemon.next_run");
    idle(pid, "after start");
    unsafe { libc::kill(pid as i32, libc::SIGHUP) };
    let started = Instant::now();
    wait_for("run.finished");
    println!(
        "run of {n} certificates in the daemon: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    wait_for("daemon.next_run");
    idle(pid, &format!("after a run of {n}"));
    // RUNS more runs (nothing due: the watch, the repo fetch, the status),
    // each followed by the idle wait the daemon spends most of its life in.
    let mut series = Vec::new();
    let started = Instant::now();
    for i in 1..=runs {
        unsafe { libc::kill(pid as i32, libc::SIGHUP) };
        wait_for("run.finished");
        wait_for("daemon.next_run");
        let mark = [1, 20, 120, 500, 1000].contains(&i) || i == runs;
        if mark {
            let (rss, anon, file) = settled(pid);
            println!(
                "idle after {i} more runs: RSS {rss:.1} MiB (heap {anon:.1}, binary and libraries {file:.1})"
            );
            series.push(rss);
        } else {
            series.push(sample(pid).0);
        }
    }
    if runs > 0 {
        let max = series.iter().cloned().fold(0.0, f64::max);
        let tail = &series[series.len() / 2..];
        let late = tail.iter().sum::<f64>() / tail.len() as f64;
        let early = series[..series.len().div_ceil(2)].iter().sum::<f64>()
            / series.len().div_ceil(2) as f64;
        println!(
            "{runs} runs in {:.1} s; RSS right after each run: max {max:.1} MiB, mean of the first half {early:.1}, of the second half {late:.1}",
            started.elapsed().as_secs_f64()
        );
        idle(pid, &format!("after {runs} more runs"));
    }
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = child.wait();

    // status over 10,000 certificates.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let settings = dir.path().join("certkeeper.yaml");
    std::fs::write(
        &settings,
        format!(
            "config_repo: {{url: /nonexistent}}\nstate_dir: {}\nacme: {{directory_url: https://ca.test/dir}}\n",
            state.display()
        ),
    )
    .unwrap();
    let now = time::OffsetDateTime::now_utc();
    let fmt = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let certs: Vec<serde_json::Value> = (0..10_000)
        .map(|i| {
            serde_json::json!({
                "name": format!("cert-{i:05}"),
                "domains": [format!("c{i}.example.com"), format!("www.c{i}.example.com")],
                "state": "ok",
                "not_after": fmt(now + time::Duration::days(30 + (i % 60) as i64)),
                "days_left": 30 + (i % 60),
                "serial": format!("{i:032X}"),
                "config_commit": "0123456789abcdef0123456789abcdef01234567",
                "last_error": null,
                "published": true,
                "targets": [{"name": "s3", "result": "published"}],
            })
        })
        .collect();
    let status = serde_json::json!({
        "started_at": fmt(now), "finished_at": fmt(now), "config_commit": null,
        "config": "ok", "certificates": certs,
    });
    std::fs::write(
        state.join("status.json"),
        serde_json::to_vec(&status).unwrap(),
    )
    .unwrap();
    for (what, extra) in [
        ("table", vec![]),
        ("--json", vec!["--json"]),
        ("--junit -", vec!["--junit", "-"]),
    ] {
        let started = Instant::now();
        let out = Command::new(&bin)
            .arg("status")
            .arg("--config")
            .arg(&settings)
            .args(&extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        println!(
            "status {what} over 10,000 certificates: {:.3} s (exit {})",
            started.elapsed().as_secs_f64(),
            out.code().unwrap_or(-1)
        );
    }
}
