//! Crash-consistency at any instant: a renewal (a wildcard and its apex:
//! two TXT values, beside a certificate left alone) killed with SIGKILL at 32
//! seeded random moments across its life (order, DNS present, store, S3
//! upload, status write), each followed by a normal run. After each
//! recovery: every live set complete and matching its meta.json and its
//! key, nothing half-written in archive/, no `_acme-challenge` record left,
//! the bucket equal to the local live sets, the status true.
//! `CRASH_SEED=N` replays one sequence. RELIABILITY.md records the counts.

use crate::support;
use support::Tied;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;
use support::{LocalEnv, PebbleOptions};

const CERTS: &str = "certificates:\n  - name: web\n    domains: [\"*.example.test\", example.test]\n  - name: api\n    domains: [api.example.test]\n";
const KILLS: usize = 32;

/// xorshift64*: the same moments for the same seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// The phase a killed run was in: the last milestone it logged.
fn phase(log: &str) -> &'static str {
    let mut phase = "start";
    for line in log.lines() {
        for (event, name) in [
            ("\"order.created\"", "order"),
            ("\"dns.txt.upserted\"", "dns present"),
            ("\"dns.propagated\"", "validation, finalize, store"),
            ("\"cert.issued\"", "s3 upload"),
            ("\"publish.done\"", "status write"),
        ] {
            if line.contains(event) {
                phase = name;
            }
        }
    }
    phase
}

fn openssl_pubkey(args: &[&str], file: &std::path::Path) -> String {
    let out = std::process::Command::new("openssl")
        .args(args)
        .arg(file)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every invariant, after a recovery run.
async fn check(env: &LocalEnv, round: usize, phase: &str) {
    let at = format!("round {round} (killed in {phase})");
    let state = env.state_dir();
    let status = env.status();
    for name in ["web", "api"] {
        let live = state.join("live").join(name);
        for f in crate::faults::SET_FILES {
            assert!(live.join(f).is_file(), "{at}: live/{name}/{f} missing");
        }
        let meta: serde_json::Value =
            serde_json::from_slice(&env.live_file(name, "meta.json")).unwrap();
        let der = openssl_der(&live.join("cert.pem"));
        let sha = sha256_colons(&der);
        assert_eq!(
            meta["sha256"], sha,
            "{at}: live/{name}/meta.json is not its cert.pem"
        );
        let cert_key = openssl_pubkey(
            &["x509", "-noout", "-pubkey", "-in"],
            &live.join("cert.pem"),
        );
        let key = openssl_pubkey(&["pkey", "-pubout", "-in"], &live.join("privkey.pem"));
        assert!(
            !key.is_empty() && key == cert_key,
            "{at}: live/{name} key and cert differ"
        );
        let fullchain = String::from_utf8(env.live_file(name, "fullchain.pem")).unwrap();
        let cert = String::from_utf8(env.live_file(name, "cert.pem")).unwrap();
        assert!(
            fullchain.starts_with(cert.trim_end()),
            "{at}: {name} fullchain"
        );
        // The archive holds whole versions only.
        for version in std::fs::read_dir(state.join("archive").join(name))
            .unwrap()
            .flatten()
        {
            let file_name = version.file_name().to_string_lossy().into_owned();
            assert!(
                !file_name.starts_with('.'),
                "{at}: archive/{name}/{file_name} left half-written"
            );
            for f in crate::faults::SET_FILES {
                assert!(
                    version.path().join(f).is_file(),
                    "{at}: archive/{name}/{file_name}/{f} missing"
                );
            }
        }
        crate::faults::assert_published_is_live(env, name).await;
        let entry = status["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{at}: {name} not in the status"));
        assert_eq!(entry["state"], "ok", "{at}: {entry}");
        assert_eq!(entry["published"], true, "{at}: {entry}");
        assert_eq!(
            entry["not_after"], meta["not_after"],
            "{at}: status of {name} is not the live set"
        );
    }
    let live_tmp: Vec<String> = std::fs::read_dir(state.join("live"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(live_tmp.is_empty(), "{at}: {live_tmp:?} left in live/");
    let left = env.moto.challenge_records().await;
    assert!(left.is_empty(), "{at}: TXT records left: {left:?}");
}

fn openssl_der(pem: &std::path::Path) -> Vec<u8> {
    std::process::Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(pem)
        .output()
        .unwrap()
        .stdout
}

fn sha256_colons(der: &[u8]) -> String {
    let hex = certkeeper::x509::sha256_hex(der).to_ascii_uppercase();
    hex.as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_at_any_moment_the_next_run_leaves_everything_whole() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    env.repo.commit_certificates(CERTS, "two");
    let out = env.run().await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);

    let renew = |env: &LocalEnv| {
        let mut cmd = env.command();
        cmd.args(["renew", "web", "--force", "--config"])
            .arg(env.settings_path())
            .env(
                "CERTKEEPER_LOG",
                "debug,aws_config=warn,aws_smithy_runtime=warn,hyper=warn,h2=warn,rustls=warn",
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        cmd
    };

    // Each moment: a milestone of the run, drawn at random, and a random
    // delay after it, so every phase is hit however fast the machine is.
    // (milestone, the longest delay after it: the late phases are short).
    let milestones = [
        ("", 300),
        ("\"order.created\"", 300),
        ("\"dns.txt.upserted\"", 300),
        ("\"dns.propagated\"", 200),
        ("\"cert.issued\"", 40),
        ("\"publish.done\"", 10),
    ];
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_c4a5_0001);
    let mut rng = Rng(seed);
    let mut phases: BTreeMap<&'static str, usize> = BTreeMap::new();
    for round in 0..KILLS {
        let (milestone, longest) = milestones[(rng.next() % milestones.len() as u64) as usize];
        let delay = Duration::from_millis(rng.next() % longest);
        let mut child = renew(&env).tied().spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (lines, seen) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let mut log = String::new();
        if !milestone.is_empty() {
            while let Ok(line) = seen.recv() {
                log.push_str(&line);
                log.push('\n');
                if line.contains(milestone) {
                    break;
                }
            }
        }
        std::thread::sleep(delay);
        let finished = child.try_wait().unwrap().is_some();
        let _ = child.kill();
        let _ = child.wait();
        let _ = reader.join();
        log.extend(seen.try_iter().map(|l| l + "\n"));
        let phase = if finished { "after exit" } else { phase(&log) };
        *phases.entry(phase).or_default() += 1;
        let at = format!("{milestone} + {delay:?}");

        let out = env.run().await;
        assert!(
            out.code == 0,
            "round {round} (seed {seed}, killed {at:?} in, in {phase}): the recovery run failed:\n{}\n{}",
            out.stdout,
            out.stderr
        );
        check(&env, round, phase).await;
    }
    // The moments cover the run's life, not one corner of it.
    eprintln!("crash: seed {seed}, {KILLS} kills: {phases:?}");
    // (The TXT values stay written through validation: a kill there
    // leaves them too, and the window after the upsert alone is a few
    // milliseconds on a loaded machine.)
    for any in [
        &["order"][..],
        &["dns present", "validation, finalize, store"],
        &["s3 upload"],
    ] {
        assert!(
            any.iter().any(|p| phases.contains_key(p)),
            "no kill in {any:?}: {phases:?}"
        );
    }
}
