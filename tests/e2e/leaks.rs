//! What a test or an example starts stops with it, however it ends: a
//! panicking test, the demo stopped with Ctrl-C or SIGTERM, or killed with
//! SIGKILL (which runs no destructor: the servers are tied to the process
//! that started them).

use crate::support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{LocalEnv, PebbleOptions, Tied};

/// Every live process whose command line contains all of `parts`, with
/// its parent: (pid, ppid).
fn processes_with(parts: &[String]) -> Vec<(i32, i32)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: a zombie has already exited.
        let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or_default();
        let mut fields = after.split_whitespace();
        let state = fields.next().unwrap_or_default();
        let ppid = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if state != "Z" && parts.iter().all(|p| cmdline.contains(p.as_str())) {
            out.push((pid, ppid));
        }
    }
    out
}

fn children_of(pid: i32) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or_default();
        let mut fields = after.split_whitespace();
        let state = fields.next().unwrap_or_default();
        if state != "Z" && fields.next().and_then(|p| p.parse().ok()) == Some(pid) {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            out.push((child, String::from_utf8_lossy(&cmdline).replace('\0', " ")));
        }
    }
    out
}

fn gone_within(pids: &[i32], limit: Duration) -> Vec<i32> {
    let deadline = Instant::now() + limit;
    loop {
        let alive: Vec<i32> = pids
            .iter()
            .copied()
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                    s.rsplit_once(')')
                        .is_some_and(|(_, a)| !a.trim_start().starts_with('Z'))
                })
            })
            .collect();
        if alive.is_empty() || Instant::now() > deadline {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_panicking_test_leaves_no_server_running() {
    let (tx, rx) = std::sync::mpsc::channel();
    let test = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
            let mine = [
                processes_with(&["moto_server".into(), format!("-p {}", env.moto.port)]),
                processes_with(&["route53_proxy.py".into(), format!("{} ", env.route53.port)]),
                processes_with(&["pebble".into(), format!("-dnsserver {}", env.dns.addr)]),
            ];
            tx.send(mine).unwrap();
            panic!("a test failing with its environment up");
        })
    });
    assert!(test.join().is_err(), "the test thread panicked");
    let found = rx.recv().unwrap();
    for (what, procs) in ["moto", "the Route53 front", "pebble"].iter().zip(&found) {
        assert_eq!(procs.len(), 1, "{what} was running: {procs:?}");
    }
    let pids: Vec<i32> = found.iter().flatten().map(|(pid, _)| *pid).collect();
    assert_eq!(
        gone_within(&pids, Duration::from_secs(10)),
        Vec::<i32>::new(),
        "servers left running after the panic"
    );
}

/// The demo (examples/localenv.rs), stopped by `signal` once Pebble, the
/// last server it starts, is up.
fn stop_the_demo(signal: libc::c_int) -> (Option<i32>, Vec<(i32, String)>, Vec<i32>) {
    // `cargo build --examples` puts it there (deploy/local/test.sh runs it
    // before the tests; cargo test itself leaves only hashed copies).
    let example = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|deps| deps.parent())
        .map(|debug| debug.join("examples/localenv"))
        .unwrap();
    assert!(
        example.exists(),
        "{} missing: run `cargo build --examples` first (deploy/local/test.sh does)",
        example.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(&example)
        .arg(PathBuf::from(dir.path()).join("demo"))
        .env("CERTKEEPER_BIN", support::certkeeper_bin())
        // The servers' scratch dirs go under the test's own: a SIGKILLed demo
        // cannot remove them, and they must not pile up in /tmp run after run.
        .env("TMPDIR", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .tied()
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(90);
    let servers = loop {
        let kids = children_of(pid);
        if kids.iter().any(|(_, c)| c.starts_with("pebble ")) {
            break kids;
        }
        assert!(Instant::now() < deadline, "the demo never started Pebble");
        std::thread::sleep(Duration::from_millis(50));
    };
    unsafe { libc::kill(pid, signal) };
    let status = child.wait().unwrap();
    let pids: Vec<i32> = servers.iter().map(|(p, _)| *p).collect();
    (
        status.code(),
        servers,
        gone_within(&pids, Duration::from_secs(10)),
    )
}

#[test]
fn the_demo_stopped_with_ctrl_c_sigterm_or_sigkill_leaves_no_server_running() {
    for (signal, code) in [
        (libc::SIGINT, Some(130)),
        (libc::SIGTERM, Some(143)),
        (libc::SIGKILL, None),
    ] {
        let (exit, servers, alive) = stop_the_demo(signal);
        assert_eq!(exit, code, "signal {signal}");
        assert!(
            servers.len() >= 3,
            "moto, the Route53 front and Pebble were running: {servers:?}"
        );
        assert!(
            alive.is_empty(),
            "signal {signal}: still running {alive:?} of {servers:?}"
        );
    }
}
