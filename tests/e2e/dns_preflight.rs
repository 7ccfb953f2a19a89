//! `certkeeper dns test <domain>`: write, check and remove a probe value,
//! and say in plain words what failed.

use crate::support;

use support::{LocalEnv, PebbleOptions};

async fn dns_test(env: &LocalEnv, args: &[&str]) -> support::RunOutput {
    let mut all = vec!["dns".to_string(), "test".to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    all.push("--config".into());
    all.push(env.settings_path().display().to_string());
    env.certkeeper(all).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn preflight_reports_each_step() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    let bind = support::bind::Bind::start(&env.root.join("bind"), "internal.test");
    env.dns.forward("internal.test", bind.addr);
    let settings = std::fs::read_to_string(env.settings_path()).unwrap();
    std::fs::write(
        env.settings_path(),
        settings.replace("propagation_timeout: 30s", "propagation_timeout: 3s")
            + &format!(
                "dns_providers:\n  route53:\n    type: route53\n{}",
                bind.provider_yaml("onprem")
            ),
    )
    .unwrap();

    let out = dns_test(&env, &["www.example.test"]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("ok    wrote _acme-challenge.www.example.test TXT"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("ok    every nameserver serves it"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("ok    removed the probe value"),
        "{}",
        out.stdout
    );
    assert_eq!(env.moto.challenge_records().await, Vec::<String>::new());

    let out = dns_test(&env, &["app.internal.test", "--provider", "onprem"]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("through rfc2136"), "{}", out.stdout);

    let out = dns_test(&env, &["www.nowhere.test"]).await;
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("FAIL  write _acme-challenge.www.nowhere.test TXT through route53: no route53 hosted zone found"), "{}", out.stdout);

    env.dns.hide("_acme-challenge.lag.example.test");
    let out = dns_test(&env, &["lag.example.test"]).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stdout
            .contains("FAIL  nameservers: TXT records not visible"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains(&format!("{} returned []", env.dns.addr)),
        "{}",
        out.stdout
    );
    // The probe is removed even when the check failed.
    assert!(
        out.stdout.contains("ok    removed the probe value"),
        "{}",
        out.stdout
    );
    assert_eq!(env.moto.challenge_records().await, Vec::<String>::new());

    // A Route53 provider with its own identity: an assumed role (moto's STS).
    let text = std::fs::read_to_string(env.settings_path()).unwrap();
    std::fs::write(
        env.settings_path(),
        text.replace(
            "  route53:\n    type: route53\n",
            "  route53:\n    type: route53\n  dns-role:\n    type: route53\n    role_arn: arn:aws:iam::123456789012:role/certkeeper-dns\n    external_id: ck-external\n",
        )
        .replace("propagation_timeout: 3s", "propagation_timeout: 3s\n  propagation: skip"),
    )
    .unwrap();
    let out = dns_test(&env, &["role.example.test", "--provider", "dns-role"]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("skip  propagation check"),
        "{}",
        out.stdout
    );

    let out = dns_test(&env, &["x.example.test", "--provider", "nope"]).await;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("no DNS provider \"nope\""),
        "{}",
        out.stderr
    );
}
