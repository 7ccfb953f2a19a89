use super::*;

const MINIMAL: &str =
    "config_repo:\n  url: repo\nstate_dir: state\nacme:\n  directory_url: https://ca.test/dir\n";

#[test]
fn minimal_settings_get_defaults() {
    let s = Settings::parse(Path::new("/etc/ck/s.yaml"), MINIMAL).unwrap();
    assert_eq!(s.config_repo.branch, "main");
    assert_eq!(s.state_dir, PathBuf::from("/etc/ck/state"));
    assert_eq!(s.config_repo.url, "/etc/ck/repo");
    assert_eq!(s.max_concurrent_orders, 1000);
    assert_eq!(s.max_concurrent_publishes, 16);
    assert_eq!(s.log_format, LogFormat::Json);
    assert!(s.s3.is_none());
}

#[test]
fn unknown_field_is_located() {
    let text = format!("{MINIMAL}bogus: 1\n");
    let err = Settings::parse(Path::new("s.yaml"), &text)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("s.yaml:6:"), "{err}");
    assert!(err.contains("unknown field `bogus`"), "{err}");
}

#[test]
fn http_directory_is_refused_with_line() {
    let text = MINIMAL.replace("https://", "http://");
    let err = Settings::parse(Path::new("s.yaml"), &text)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("s.yaml:5:"), "{err}");
    assert!(err.contains("acme.directory_url"), "{err}");
}

#[test]
fn new_sections_name_file_line_and_field() {
    let base = "config_repo: {url: /tmp/none}\nstate_dir: /tmp/s\nacme: {directory_url: https://ca.test/dir}\n";
    let err = |extra: &str| {
        Settings::parse(Path::new("s.yaml"), &format!("{base}{extra}"))
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err("shutdown_grace: 5x\n"),
        "s.yaml:4:17: shutdown_grace: \"5x\" has unknown unit \"x\" (use ms, s, m, h or d)"
    );
    assert_eq!(
        err("targets:\n  t: {type: ssm, parameters: {cert: \"/a/{env}/c\"}}\n"),
        "s.yaml:5:3: targets.t.environments: parameters use {env} but no environments are listed"
    );
    assert!(err("schedule: {cron: \"61 3 * * *\"}\n").starts_with("s.yaml:4:12: schedule.cron: "));
    assert!(
        err("channels:\n  c: {type: slack, webhook_url: nope}\n")
            .starts_with("s.yaml:5:33: channels.c: ")
    );
    assert_eq!(
        err("replicas: {target: s3}\n"),
        "s.yaml:4:1: replicas.target: \"s3\" is not an s3 target of these settings"
    );
    let keyed = err(
        "s3: {bucket: b, key_template: \"{prefix}/{domain}/{file}\"}\nreplicas: {lease_ttl: 30s}\n",
    );
    assert!(
        keyed.starts_with("s.yaml:5:1: replicas.target: the s3 target \"s3\" has key_template"),
        "{keyed}"
    );
    assert!(
        err("s3: {bucket: b}\nreplicas: {lease_ttl: 1s}\n")
            .starts_with("s.yaml:5:12: replicas.lease_ttl: must be at least 2s")
    );
    let none_at_once = Settings::parse(
        Path::new("s.yaml"),
        "config_repo: {url: /tmp/none}\nstate_dir: /tmp/s\nacme:\n  directory_url: https://ca.test/dir\n  new_orders_in_flight: 0\n",
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        none_at_once,
        "s.yaml:5:3: acme.new_orders_in_flight: must be at least 1"
    );
}

#[test]
fn kubernetes_example_settings_parse() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/certkeeper.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let secret = text.split("\n---\n").next().unwrap();
    let doc: yaml_serde::Value = yaml_serde::from_str(secret).unwrap();
    let settings = doc["stringData"]["certkeeper.yaml"].as_str().unwrap();
    let s = Settings::parse(&path, settings).unwrap();
    assert_eq!(s.replicas.unwrap().target, S3_TARGET);
}

#[test]
fn settings_reference_parses_with_every_field() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/settings-reference.yaml");
    let s = Settings::load(&path).unwrap();
    let ssh = s.config_repo.ssh.as_ref().unwrap();
    assert!(ssh.known_hosts_file.is_some() && ssh.host_key_sha256.is_some());
    assert!(s.config_repo.https.as_ref().unwrap().token_file.is_some());
    let acme = &s.issuers["default"];
    assert!(acme.root_ca_file.is_some() && acme.contact.is_some());
    let zerossl = &s.issuers["zerossl"];
    assert!(
        zerossl.eab.is_some()
            && zerossl.profile.is_some()
            && zerossl.staging_directory_url.is_some()
    );
    assert!(s.aws.endpoint_url.is_some() && s.aws.region.is_some());
    assert_eq!(s.dns.nameservers.len(), 2);
    let rollout = &s.rollouts["wildcard"];
    assert_eq!(rollout.steps.len(), 4);
    assert_eq!(rollout.steps[1].role, ListenerRole::Default);
    assert!(rollout.aws.region.is_some());
    let s3 = s.s3.as_ref().unwrap();
    assert_eq!(s3.sse, Sse::Kms);
    assert!(s3.kms_key_id.is_some());
    assert_eq!(s.log_format, LogFormat::Text);
    let replicas = s.replicas.as_ref().unwrap();
    assert_eq!(replicas.lease_ttl, Duration::from_secs(120));
    assert!(replicas.holder.is_some());
    assert_eq!(s.allowed_zones.as_ref().unwrap().len(), 2);
    assert!(s.require_signed_commits.is_some());
    assert_eq!(s.dns.propagation, Propagation::Check);
    assert!(s.dns.follow_cname);
    match &s.dns_providers["route53"] {
        DnsProviderSettings::Route53(r) => {
            assert!(r.profile.is_some() && r.role_arn.is_some() && r.external_id.is_some());
            assert_eq!(r.requests_per_second, Some(5.0));
        }
        other => panic!("{other:?}"),
    }
    match &s.dns_providers["onprem"] {
        DnsProviderSettings::Rfc2136(r) => {
            assert_eq!(r.tsig_algorithm, TsigAlgorithm::HmacSha512)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn example_settings_file_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/certkeeper.yaml");
    let s = Settings::load(&path).unwrap();
    assert!(s.s3.is_some());
}

#[test]
fn concurrency_and_new_order_limits_are_located() {
    let base = "config_repo: {url: /tmp/none}\nstate_dir: /tmp/s\n";
    let err = |text: &str| {
        Settings::parse(Path::new("s.yaml"), &format!("{base}{text}"))
            .unwrap_err()
            .to_string()
    };
    let acme = "acme: {directory_url: https://ca.test/dir}\n";
    assert_eq!(
        err(&format!("{acme}max_concurrent_publishes: 0\n")),
        "s.yaml:4:1: max_concurrent_publishes: must be at least 1"
    );
    let e = err(
        "issuers:\n  le:\n    directory_url: https://ca.test/dir\n    new_order_limit: {orders: 0, per: 3h}\n",
    );
    assert!(
        e.starts_with("s.yaml:6:5: issuers.le.new_order_limit: needs orders of at least 1"),
        "{e}"
    );
    let e = err(
        "issuers:\n  le:\n    directory_url: https://ca.test/dir\n    new_order_limit: {orders: 5}\n",
    );
    assert!(e.starts_with("s.yaml:6:") && e.contains("per"), "{e}");
    // Let's Encrypt's published limit applies without a setting; other CAs
    // have none unless set.
    let le = |url: &str| {
        Settings::parse(
            Path::new("s.yaml"),
            &format!("{base}acme: {{directory_url: \"{url}\"}}\n"),
        )
        .unwrap()
        .issuers["default"]
            .new_order_limit()
    };
    assert_eq!(
        le("https://acme-v02.api.letsencrypt.org/directory").map(|l| l.orders),
        Some(300)
    );
    assert_eq!(le("https://ca.test/dir"), None);
}

#[test]
fn the_proxy_password_never_prints() {
    let settings = ProxySettings {
        url: "http://ops:s3cret@proxy.corp:3128".into(),
        no_proxy: vec![],
    };
    let shown = format!("{settings:?}");
    assert!(
        !shown.contains("s3cret") && shown.contains("proxy.corp:3128"),
        "{shown}"
    );
}

#[test]
fn a_proxy_that_cannot_be_used_is_located_without_its_password() {
    let text = format!("{MINIMAL}proxy:\n  url: https://ops:s3cret@proxy.corp:3128\n");
    let err = Settings::parse(Path::new("/etc/ck/s.yaml"), &text)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("/etc/ck/s.yaml:7:"), "{err}");
    assert!(
        err.contains("proxy.url") && !err.contains("s3cret"),
        "{err}"
    );
}

#[test]
fn a_contact_channel_must_be_an_email_channel() {
    let err = |channels: &str| {
        let text = format!(
            "{MINIMAL}secrets:\n  hook: {{env: HOOK}}\nchannels:\n{channels}watch:\n  contact_channel: mail\n"
        );
        Settings::parse(Path::new("s.yaml"), &text)
            .unwrap_err()
            .to_string()
    };
    let e = err("  mail: {type: slack, webhook_url: hook}\n");
    assert!(
        e.starts_with("s.yaml:11:3: watch.contact_channel: \"mail\" is not an email channel"),
        "{e}"
    );
    let e = err("  ops: {type: slack, webhook_url: hook}\n");
    assert!(
        e.starts_with("s.yaml:11:3: watch.contact_channel: unknown channel \"mail\""),
        "{e}"
    );
    let ok = format!(
        "{MINIMAL}channels:\n  mail: {{type: email, server: \"smtp.test:587\", from: a@b.test, to: [c@d.test]}}\nwatch:\n  contact_channel: mail\n"
    );
    let s = Settings::parse(Path::new("s.yaml"), &ok).unwrap();
    let watch = s.watch.unwrap();
    assert!(
        watch
            .contact_template
            .contains("send us only the public key")
    );
}

const ROLLOUT_BASE: &str = "config_repo: {url: /tmp/none}\nstate_dir: /tmp/s\nacme: {directory_url: https://ca.test/dir}\ntargets:\n  cdn: {type: iam, path: /cloudfront/web/}\n  backup: {type: s3, bucket: b}\n";

#[test]
fn a_rollout_is_parsed_with_its_step_lines() {
    let text = format!(
        "{ROLLOUT_BASE}rollouts:\n  web:\n    target: cdn\n    steps:\n      - elb: small:443\n        verify: {{endpoints: [small.example.com:443]}}\n      - listener: arn:aws:elasticloadbalancing:eu-west-2:123456789012:listener/app/web/1/2\n        as: additional\n      - cloudfront: E2QWRUHAPOMQZL\n      - cloudfront: previous\n"
    );
    let s = Settings::parse(Path::new("s.yaml"), &text).unwrap();
    let r = &s.rollouts["web"];
    assert_eq!(r.step_lines, vec![11, 13, 15, 16]);
    assert_eq!(
        r.steps[0].consumer(),
        Ok(StepConsumer::Elb {
            name: "small",
            port: 443
        })
    );
    assert!(matches!(
        r.steps[1].consumer(),
        Ok(StepConsumer::Listener {
            role: ListenerRole::Additional,
            ..
        })
    ));
    assert_eq!(r.steps[3].consumer(), Ok(StepConsumer::Previous));
    assert_eq!(r.retry_after, Duration::from_secs(86400));
}

#[test]
fn bad_rollouts_name_file_line_and_field() {
    let canary = "      - elb: small:443\n        verify: {endpoints: [small.example.com:443]}\n";
    let cases = [
        (
            format!("    target: backup\n    steps:\n{canary}"),
            9,
            "rollouts.web.target",
            "not an iam or acm target",
        ),
        (
            format!("    target: nope\n    steps:\n{canary}"),
            9,
            "rollouts.web.target",
            "unknown target \"nope\"",
        ),
        (
            "    target: cdn\n    steps:\n      - elb: small\n        verify: {endpoints: [a:443]}\n".to_string(),
            11,
            "rollouts.web.steps[0]",
            "not `load-balancer-name:port`",
        ),
        (
            "    target: cdn\n    steps:\n      - cloudfront: previous\n        verify: {endpoints: [a:443]}\n".to_string(),
            11,
            "rollouts.web.steps[0]",
            "the canary (the first step) must be one consumer",
        ),
        (
            "    target: cdn\n    steps:\n      - cloudfront: E2QWRUHAPOMQZL\n".to_string(),
            11,
            "rollouts.web.steps[0]",
            "needs `verify:`",
        ),
        (
            format!("    target: cdn\n    steps:\n{canary}      - listener: arn:aws:iam::1:server-certificate/x\n"),
            13,
            "rollouts.web.steps[1]",
            "is not a listener ARN",
        ),
        (
            format!("    target: cdn\n    steps:\n{canary}      - cloudfront: E1\n        elb: web:443\n"),
            13,
            "rollouts.web.steps[1]",
            "exactly one of cloudfront, elb, listener",
        ),
        (
            format!("    target: cdn\n    steps:\n{canary}      - cloudfront: E1\n        as: additional\n"),
            13,
            "rollouts.web.steps[1]",
            "`as` is only for a listener",
        ),
        (
            format!("    target: cdn\n    steps:\n{canary}      - cloudfront: E1\n      - cloudfront: E1\n"),
            14,
            "rollouts.web.steps[2]",
            "this consumer is listed twice",
        ),
    ];
    for (rollout, line, field, message) in cases {
        let text = format!("{ROLLOUT_BASE}rollouts:\n  web:\n{rollout}");
        let err = Settings::parse(Path::new("s.yaml"), &text)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(&format!("s.yaml:{line}:")), "{err}\n{text}");
        assert!(err.contains(field), "{err}");
        assert!(err.contains(message), "{err}");
    }
}
