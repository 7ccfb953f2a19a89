//! Watch bench (issue 8): N watched certificates (default 10,000) in S3
//! (moto). The first scan downloads them concurrently; a repeat scan with
//! nothing changed only lists (ETag cache). Also the in-process cost of
//! parsing and evaluating one certificate. See BENCHMARKS.md.
//!
//! Usage: CERTKEEPER_BIN=target/release/certkeeper bench_watch [N]

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Stdio;
use std::time::Instant;

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let env = support::LocalEnv::start(&["example.test"], support::PebbleOptions::default()).await;
    // A few distinct certificates, uploaded under N keys.
    let pems: Vec<String> = (0..16)
        .map(|i| {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut p = rcgen::CertificateParams::new(vec![format!("w{i}.example.test")]).unwrap();
            p.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(20 + i);
            p.self_signed(&key).unwrap().pem()
        })
        .collect();
    let s3 = env.moto.s3().await;
    let started = Instant::now();
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (s3, bucket, body, limit) = (
            s3.clone(),
            env.bucket.clone(),
            pems[i % 16].clone(),
            limit.clone(),
        );
        tasks.spawn(async move {
            let _p = limit.acquire_owned().await;
            s3.put_object()
                .bucket(bucket)
                .key(format!("watched/c{i:05}/cert.pem"))
                .body(body.into_bytes().into())
                .send()
                .await
                .expect("put");
        });
    }
    while tasks.join_next().await.is_some() {}
    eprintln!(
        "uploaded {n} objects in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    env.write_settings(&format!(
        "watch:\n  sources:\n    - {{type: s3, bucket: {}, prefix: watched/, name: \"{{dir}}\"}}\n",
        env.bucket
    ));
    let scan = |what: &str| {
        let started = Instant::now();
        let out = env
            .command()
            .args(["inventory", "--json", "--config"])
            .arg(env.settings_path())
            .stderr(Stdio::inherit())
            .output()
            .expect("inventory");
        let secs = started.elapsed().as_secs_f64();
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let count = json["certificates"].as_array().map_or(0, Vec::len);
        println!("{what}: {count} certificates in {secs:.2} s");
    };
    scan("first scan (downloads)");
    scan("repeat scan (ETag cache, lists only)");

    // In-process: parse + evaluate per certificate.
    let bytes: Vec<Vec<u8>> = pems.iter().map(|p| p.clone().into_bytes()).collect();
    let rounds = 20_000;
    let started = Instant::now();
    let mut days = 0i64;
    let now = time::OffsetDateTime::now_utc();
    for i in 0..rounds {
        let info = certkeeper::watch::sources::parse(&bytes[i % 16]).expect("parse");
        days += (info.not_after - now).whole_days();
    }
    let per = started.elapsed().as_secs_f64() / rounds as f64;
    println!(
        "parse and evaluate: {:.1} µs per certificate (checksum {days})",
        per * 1e6
    );
}
