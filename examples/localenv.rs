//! The quick-start demo: one `certkeeper run --once` against Pebble, moto and
//! the Route53-backed DNS responder on loopback, with config/repo-example.
//!
//! Usage: CERTKEEPER_BIN=target/debug/certkeeper localenv <dir>
//! (deploy/local/demo.sh does all of that).

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::PathBuf;

/// Runs the demo; Ctrl-C or SIGTERM stops it, and either way moto, the
/// Route53 front and Pebble stop with it (dropped here; tied to this
/// process besides, so even SIGKILL takes them along).
#[tokio::main]
async fn main() -> std::process::ExitCode {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let code = tokio::select! {
        code = demo() => code,
        _ = tokio::signal::ctrl_c() => 130,
        _ = term.recv() => 143,
    };
    if code >= 128 {
        eprintln!("interrupted: moto, the Route53 front and Pebble stopped");
    }
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}

async fn demo() -> i32 {
    let root = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| ".local/demo".into()),
    );
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("create demo dir");
    let root = root.canonicalize().expect("demo dir");

    println!("Starting moto, the Route53-backed DNS responder and Pebble on 127.0.0.1 ...");
    let env =
        support::LocalEnv::start_in(&root, &["example.test"], support::PebbleOptions::default())
            .await;
    let example =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/repo-example/certificates.yaml");
    let yaml = std::fs::read_to_string(&example).expect("example config");
    let commit = env.repo.commit_certificates(&yaml, "example certificates");
    println!(
        "  AWS:             {} (moto {} behind a Route53 that stays PENDING {:?})",
        env.route53.endpoint(),
        env.moto.endpoint(),
        env.route53.timing.insync
    );
    println!("  DNS responder:   {}", env.dns.addr);
    println!("  Pebble (ACME):   {}", env.pebble.directory_url());
    println!(
        "  config repo:     {} (commit {})",
        env.repo.path.display(),
        &commit[..12]
    );
    println!("  settings:        {}", env.settings_path().display());
    println!();
    println!(
        "$ certkeeper run --once --config {} --log-format text",
        env.settings_path().display()
    );
    let out = env
        .certkeeper(vec![
            "run".into(),
            "--once".into(),
            "--config".into(),
            env.settings_path().display().to_string(),
            "--log-format".into(),
            "text".into(),
        ])
        .await;
    print!("{}", out.stdout);
    eprint!("{}", out.stderr);
    println!();
    println!("certkeeper exited with {}", out.code);
    println!(
        "Certificates: {}/live/<name>/{{cert,chain,fullchain,privkey}}.pem + meta.json",
        env.state_dir().display()
    );
    println!("Status file:  {}/status.json", env.state_dir().display());
    println!(
        "S3 objects:   s3://{}/certs/<name>/ on {}",
        env.bucket,
        env.moto.endpoint()
    );
    let s3 = env.moto.s3().await;
    if let Ok(list) = s3.list_objects_v2().bucket(&env.bucket).send().await {
        for obj in list.contents() {
            println!("  s3://{}/{}", env.bucket, obj.key().unwrap_or_default());
        }
    }
    if let Ok(status) = std::fs::read_to_string(env.state_dir().join("status.json")) {
        println!("\n{status}");
    }
    println!(
        "(moto, the Route53 front and Pebble stop now; their certificates and the state dir stay in {})",
        root.display()
    );
    drop(env);
    out.code
}
