//! Issues N certificates (default 50) on the local environment and prints
//! wall time, CPU seconds, peak RSS of the certkeeper process and Route53
//! calls per certificate. See BENCHMARKS.md.
//!
//! Usage: CERTKEEPER_BIN=target/release/certkeeper bench [N]

#[path = "../tests/support/mod.rs"]
mod support;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Instant;

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50);
    let env = support::LocalEnv::start(&["example.test"], support::PebbleOptions::default()).await;
    let mut yaml = String::from("certificates:\n");
    for i in 0..n {
        yaml.push_str(&format!(
            "  - name: c{i}\n    domains: [c{i}.example.test]\n"
        ));
    }
    env.repo.commit_certificates(&yaml, "bench");

    let bin = support::certkeeper_bin();
    let settings = env.settings_path();
    let secret = env.aws_secret.clone();
    let (wall, status, usage, stdout) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        #[allow(clippy::zombie_processes)] // reaped below with wait4 to read its rusage
        let child = Command::new(&bin)
            .args(["run", "--once", "--config"])
            .arg(&settings)
            .env("AWS_ACCESS_KEY_ID", "AKIDBENCH")
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn certkeeper");
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
        // wait4 gives the child's own CPU time and peak RSS.
        let mut raw_status = 0;
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::wait4(pid, &mut raw_status, 0, &mut usage) };
        assert_eq!(r, pid, "wait4");
        (
            started.elapsed(),
            std::process::ExitStatus::from_raw(raw_status),
            usage,
            stdout,
        )
    })
    .await
    .expect("bench task");

    let cpu = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let cpu_secs = cpu(usage.ru_utime) + cpu(usage.ru_stime);
    let peak_mib = usage.ru_maxrss as f64 / 1024.0;
    let finished = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "run.finished");
    let renewed = finished
        .as_ref()
        .and_then(|e| e["renewed"].as_u64())
        .unwrap_or(0);
    let r53 = finished
        .as_ref()
        .and_then(|e| e["dns_calls"].as_u64())
        .unwrap_or(0);
    println!("certificates:            {n}");
    println!("exit status:             {}", status.code().unwrap_or(-1));
    println!("renewed:                 {renewed}");
    println!("wall time:               {:.2} s", wall.as_secs_f64());
    println!(
        "CPU (user+sys):          {cpu_secs:.2} s ({:.4} s per certificate)",
        cpu_secs / n as f64
    );
    println!("peak RSS:                {peak_mib:.1} MiB");
    println!(
        "Route53 calls:           {r53} ({:.2} per certificate)",
        r53 as f64 / n as f64
    );
    if !status.success() || renewed as usize != n {
        eprintln!("bench run did not renew every certificate");
        std::process::exit(1);
    }
}
