//! `certkeeper run` as a long-running service: READY=1 and STATUS= over
//! the notify socket, SIGHUP runs at once, /healthz /status /metrics, and
//! SIGTERM lets the order in flight finish within the grace period, cleans
//! up and exits 0.

use crate::support;
use support::Tied;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::{LocalEnv, PebbleOptions};

struct Daemon {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Daemon {
    fn start(env: &LocalEnv, notify: &std::path::Path) -> Daemon {
        Daemon::start_with(env, notify, None)
    }

    /// With `nofile`, the daemon runs with that RLIMIT_NOFILE.
    fn start_with(env: &LocalEnv, notify: &std::path::Path, nofile: Option<u64>) -> Daemon {
        let empty = env.root.join("aws-empty");
        std::fs::write(&empty, "").unwrap();
        let mut command = Command::new(support::certkeeper_bin());
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe.
            unsafe {
                command.pre_exec(move || {
                    let limit = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = command
            .args(["run", "--config"])
            .arg(env.settings_path())
            .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
            .env("AWS_SECRET_ACCESS_KEY", &env.aws_secret)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", &empty)
            .env("AWS_SHARED_CREDENTIALS_FILE", &empty)
            .env("NOTIFY_SOCKET", notify)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .tied()
            .spawn()
            .expect("spawn daemon");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Daemon {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a log line with `"event":"<event>"`.
    fn wait_for(&mut self, event: &str) -> serde_json::Value {
        let needle = format!("\"event\":\"{event}\"");
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(&needle) {
                        return serde_json::from_str(&line).unwrap();
                    }
                }
                Err(_) => panic!("no {event} within 90s; log:\n{}", self.seen.join("\n")),
            }
        }
    }

    fn signal(&self, sig: i32) {
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    fn wait_exit(&mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                while let Ok(line) = self.lines.try_recv() {
                    self.seen.push(line);
                }
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "daemon did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn get(port: u16, path: &str) -> (u16, String) {
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(tcp, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).unwrap();
    let code = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

fn notifications(socket: &UnixDatagram) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = socket.recv(&mut buf) {
        out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_reload_http_and_graceful_stop() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    let port = support::free_port();
    // A schedule far away: runs here come from SIGHUP.
    env.write_settings(&format!(
        "schedule:\n  cron: \"0 3 1 1 *\"\n  timezone: Europe/London\nhttp:\n  listen: 127.0.0.1:{port}\nshutdown_grace: 60s\n"
    ));
    env.repo.commit_certificates(
        "certificates:\n  - name: www\n    domains: [www.example.test]\n  - name: slow\n    domains: [slow.example.test]\n",
        "two",
    );
    let sock_path = env.root.join("notify.sock");
    let notify = UnixDatagram::bind(&sock_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();

    let mut daemon = tokio::task::block_in_place(|| Daemon::start(&env, &sock_path));
    let next = tokio::task::block_in_place(|| daemon.wait_for("daemon.next_run"));
    assert!(
        next["at"]
            .as_str()
            .unwrap()
            .starts_with("2027-01-01T03:00:00"),
        "{next}"
    );
    let got = notifications(&notify);
    assert!(got.iter().any(|n| n == "READY=1"), "{got:?}");
    assert!(
        got.iter()
            .any(|n| n.starts_with("STATUS=idle; next run at 2027-01-01T03:00:00")),
        "{got:?}"
    );
    let (code, body) = get(port, "/healthz");
    assert_eq!(code, 503, "{body}");
    assert!(body.starts_with("UNKNOWN"), "{body}");

    // SIGHUP: reload and run now. The second certificate waits in DNS
    // propagation; SIGTERM then stops the daemon, which lets that order
    // finish once the record shows up.
    env.dns.hide("_acme-challenge.slow.example.test");
    daemon.signal(libc::SIGHUP);
    tokio::task::block_in_place(|| daemon.wait_for("daemon.reloaded"));
    tokio::task::block_in_place(|| {
        loop {
            let e = daemon.wait_for("dns.txt.upserted");
            if e["cert"] == "slow" {
                break;
            }
        }
    });
    daemon.signal(libc::SIGTERM);
    tokio::task::block_in_place(|| daemon.wait_for("run.stopping"));
    std::thread::sleep(Duration::from_millis(500));
    env.dns.show("_acme-challenge.slow.example.test");
    let code = tokio::task::block_in_place(|| daemon.wait_exit());
    let log = daemon.seen.join("\n");
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("\"event\":\"cert.issued\"") && log.contains("\"cert\":\"slow\""),
        "{log}"
    );
    assert!(
        !log.contains("\"run.cancelling\""),
        "the grace period was enough: {log}"
    );
    assert!(log.contains("\"daemon.stopped\""), "{log}");
    assert!(
        env.moto.challenge_records().await.is_empty(),
        "TXT records left behind"
    );
    let status = env.status();
    for name in ["www", "slow"] {
        assert_eq!(
            support::cert_status(&status, name)["state"],
            "renewed",
            "{status}"
        );
    }
    let got = notifications(&notify);
    assert!(got.iter().any(|n| n == "RELOADING=1"), "{got:?}");
    assert!(
        got.iter().any(|n| n.starts_with("STATUS=stopping")),
        "{got:?}"
    );
    assert!(got.iter().any(|n| n == "STOPPING=1"), "{got:?}");
    drop(daemon);

    // Up again: the HTTP endpoints serve the status of that run.
    let mut daemon = tokio::task::block_in_place(|| Daemon::start(&env, &sock_path));
    tokio::task::block_in_place(|| daemon.wait_for("daemon.next_run"));
    let (code, body) = get(port, "/healthz");
    assert_eq!(code, 200, "{body}");
    assert_eq!(body, "OK\n");
    let (code, body) = get(port, "/status");
    assert_eq!(code, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["certificates"].as_array().unwrap().len(), 2);
    let (code, metrics) = get(port, "/metrics");
    assert_eq!(code, 200);
    for needle in [
        "certkeeper_certificate_expiration_timestamp_seconds{name=\"www\"} ",
        "certkeeper_certificate_renewal_timestamp_seconds{name=\"slow\"} ",
        "certkeeper_certificate_ready{name=\"www\"} 1",
        "certkeeper_run_duration_seconds ",
        "certkeeper_run_last_success_timestamp_seconds ",
    ] {
        assert!(metrics.contains(needle), "{needle} missing:\n{metrics}");
    }
    assert_eq!(get(port, "/nope").0, 404);

    // Counters of a run in this process.
    daemon.signal(libc::SIGHUP);
    tokio::task::block_in_place(|| daemon.wait_for("run.finished"));
    let (_, metrics) = get(port, "/metrics");
    assert!(
        metrics.contains("certkeeper_acme_requests_total{issuer=\"default\",status=\"200\"}"),
        "{metrics}"
    );
    daemon.signal(libc::SIGINT);
    assert_eq!(tokio::task::block_in_place(|| daemon.wait_exit()), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_dns_and_publish_in_metrics() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    let port = support::free_port();
    env.write_settings(&format!(
        "schedule:\n  cron: \"0 3 1 1 *\"\nhttp:\n  listen: 127.0.0.1:{port}\n"
    ));
    env.repo.commit_certificates(
        "certificates:\n  - name: www\n    domains: [www.example.test]\n",
        "one",
    );
    let sock_path = env.root.join("notify.sock");
    let _notify = UnixDatagram::bind(&sock_path).unwrap();
    let mut daemon = tokio::task::block_in_place(|| Daemon::start(&env, &sock_path));
    tokio::task::block_in_place(|| daemon.wait_for("daemon.next_run"));
    daemon.signal(libc::SIGHUP);
    tokio::task::block_in_place(|| daemon.wait_for("run.finished"));
    let (_, metrics) = get(port, "/metrics");
    for needle in [
        "certkeeper_dns_changes_total{provider=\"route53\"} 2",
        "certkeeper_publish_total{target=\"s3\",result=\"success\"} 1",
        "certkeeper_acme_requests_total{issuer=\"default\",status=\"201\"}",
    ] {
        assert!(metrics.contains(needle), "{needle} missing:\n{metrics}");
    }
    daemon.signal(libc::SIGTERM);
    assert_eq!(tokio::task::block_in_place(|| daemon.wait_exit()), 0);
}

/// CPU time (user + system) of a process so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit_once(')').unwrap().1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; `after` starts at 3.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_the_listener_waits_instead_of_spinning() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    let port = support::free_port();
    env.write_settings(&format!(
        "schedule:\n  cron: \"0 3 1 1 *\"\nhttp:\n  listen: 127.0.0.1:{port}\n"
    ));
    env.repo.commit_certificates(
        "certificates:\n  - name: www\n    domains: [www.example.test]\n",
        "one",
    );
    let sock_path = env.root.join("notify.sock");
    let _notify = UnixDatagram::bind(&sock_path).unwrap();
    let mut daemon = tokio::task::block_in_place(|| Daemon::start_with(&env, &sock_path, Some(64)));
    tokio::task::block_in_place(|| daemon.wait_for("daemon.next_run"));
    let (code, _) = get(port, "/healthz");
    assert_eq!(code, 503, "answers before");

    // Far more connections than descriptors, held open without a request:
    // accept() fails with EMFILE while they wait in the backlog.
    let held: Vec<std::net::TcpStream> = (0..300)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    tokio::task::block_in_place(|| daemon.wait_for("http.accept.failing"));
    let pid = daemon.child.id();
    let before = cpu_time(pid);
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_time(pid) - before;
    assert!(
        used < Duration::from_millis(1000),
        "the listener spun: {used:?} of CPU in 3 s"
    );
    drop(held);

    // Released: it serves again.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answered = std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .and_then(|mut tcp| {
                tcp.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
                write!(tcp, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").ok()?;
                let mut text = String::new();
                tcp.read_to_string(&mut text).ok()?;
                text.get(9..12).map(str::to_string)
            });
        if answered.as_deref() == Some("503") {
            break;
        }
        assert!(Instant::now() < deadline, "/healthz did not answer again");
        std::thread::sleep(Duration::from_millis(200));
    }
    tokio::task::block_in_place(|| daemon.wait_for("http.accept.recovered"));
    let failing = daemon
        .seen
        .iter()
        .filter(|l| l.contains("\"http.accept.failing\""))
        .count();
    assert!(
        failing <= 10,
        "logged once per streak, not per accept: {failing}"
    );
    daemon.signal(libc::SIGTERM);
    assert_eq!(tokio::task::block_in_place(|| daemon.wait_exit()), 0);
}
