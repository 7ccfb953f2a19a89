//! Rollouts (the `*.gitter.im` runbook): a new certificate goes to IAM,
//! then the consumers a team set up by hand — a small classic ELB as the
//! canary, ALB listeners (default and additional certificate), CloudFront
//! distributions by id and "every distribution on the previous
//! certificate" — are switched, the canary first and checked with TLS
//! servers that serve whatever the consumer references in moto at that
//! moment. CloudFront goes through a front with real ETags, a conflicting
//! edit and a deployment delay (tests/support/edge_proxy.py).

use crate::support;

use serde_json::Value;
use support::edge::{EdgeFront, Follow};
use support::tls::TlsServer;
use support::{LocalEnv, PebbleOptions, cert_status};

const WEB: &str = r#"certificates:
  - name: web
    domains: [web.example.test, static.example.test]
    targets: [cdn]
"#;

const PATH: &str = "/cloudfront/web/";

/// The environment with everything certkeeper calls going through the
/// edge front, and the consumers as they were before certkeeper.
struct Edge {
    env: LocalEnv,
    front: EdgeFront,
    /// Last year's certificate, uploaded by hand: (ARN, IAM id).
    old: (String, String),
    /// Another team's certificate on a distribution nobody listed.
    foreign: (String, String),
    alb_web: String,
    alb_api: String,
    /// CloudFront: listed by id, found as `previous`, another team's.
    d_web: String,
    d_static: String,
    d_other: String,
}

fn pair(line: &str) -> (String, String) {
    let (a, b) = line.split_once(' ').expect("ARN ID");
    (a.to_string(), b.to_string())
}

async fn edge() -> Edge {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    let front = EdgeFront::start(&env.route53.endpoint(), 2.0);
    let old = pair(&front.fixture(&[
        "iam-self-signed",
        PATH,
        "web.example.test_2025-12-01",
        "web.example.test",
    ]));
    let foreign = pair(&front.fixture(&[
        "iam-self-signed",
        "/cloudfront/other/",
        "other.example.test_2025-06-01",
        "other.example.test",
    ]));
    front.fixture(&["elb", "small", "443", &old.0]);
    let alb_web = front.fixture(&["alb", "web", &old.0]);
    let alb_api = front.fixture(&["alb", "api", &foreign.0, &old.0]);
    let d_web = front.fixture(&["distribution", "web.example.test", &old.1]);
    let d_static = front.fixture(&["distribution", "static.example.test", &old.1]);
    let d_other = front.fixture(&["distribution", "other.example.test", &foreign.1]);
    env.repo.commit_certificates(WEB, "web certificate");
    Edge {
        env,
        front,
        old,
        foreign,
        alb_web,
        alb_api,
        d_web,
        d_static,
        d_other,
    }
}

fn endpoint(server: &TlsServer) -> String {
    format!("{{address: \"{}\", sni: web.example.test}}", server.addr)
}

impl Edge {
    /// The settings: the iam target (keeps one, deletes older ones) and
    /// `rollout` under `rollouts.web`, with every AWS call through the
    /// edge front.
    fn settings(&self, rollout: &str) {
        self.env.write_settings(&format!(
            "targets:\n  cdn:\n    type: iam\n    path: {PATH}\n    keep: 1\n    delete_old: true\nrollouts:\n  web:\n    target: cdn\n{rollout}"
        ));
        let path = self.env.settings_path();
        let text = std::fs::read_to_string(&path).expect("settings");
        let text = text.replace(
            &format!("endpoint_url: {}", self.env.route53.endpoint()),
            &format!("endpoint_url: {}", self.front.endpoint()),
        );
        std::fs::write(&path, text).expect("settings");
    }

    async fn serving(&self, consumer: Follow) -> TlsServer {
        self.front.serving(consumer, &self.env.state_dir()).await
    }

    /// The IAM certificates under the web path: (name, ARN, id).
    fn ours(&self, show: &Value) -> Vec<(String, String, String)> {
        show["iam"]
            .as_array()
            .expect("iam")
            .iter()
            .filter(|c| c["arn"].as_str().unwrap_or_default().contains(PATH))
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_string(),
                    c["arn"].as_str().unwrap().to_string(),
                    c["id"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

/// What a distribution references, comma-separated.
fn refs(show: &Value, distribution: &str) -> String {
    show["distributions"][distribution]["references"]
        .as_array()
        .expect("distribution")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect::<Vec<_>>()
        .join(",")
}

fn listener(show: &Value, arn: &str) -> Vec<(String, bool)> {
    show["listeners"][arn]
        .as_array()
        .expect("listener")
        .iter()
        .map(|c| (c[0].as_str().unwrap().to_string(), c[1].as_bool().unwrap()))
        .collect()
}

fn assert_ok(out: &support::RunOutput) {
    assert_eq!(
        out.code, 0,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_first_then_every_consumer_and_the_old_copy_goes() {
    let e = edge().await;
    // Someone edits the web distribution between our read and our update.
    e.front.conflict_on(&e.d_web);
    let small = e
        .serving(Follow::Elb {
            name: "small".into(),
            port: 443,
        })
        .await;
    let web = e.serving(Follow::Listener(e.alb_web.clone())).await;
    let cdn = e.serving(Follow::Distribution(e.d_web.clone())).await;
    e.settings(&format!(
        "    steps:\n      - elb: small:443\n        verify: {{endpoints: [{}], window: 20s, interval: 1s}}\n      - listener: {}\n        verify: {{endpoints: [{}], window: 20s, interval: 1s}}\n      - listener: {}\n        as: additional\n      - cloudfront: {}\n        verify: {{endpoints: [{}], window: 30s, interval: 1s}}\n      - cloudfront: previous\n",
        endpoint(&small),
        e.alb_web,
        endpoint(&web),
        e.alb_api,
        e.d_web,
        endpoint(&cdn),
    ));
    let out = e.env.run().await;
    assert_ok(&out);
    support::assert_no_secrets(&e.env, &out);

    let show = e.front.show();
    let ours = e.ours(&show);
    assert_eq!(
        ours.len(),
        1,
        "the old copy is deleted once nothing uses it: {ours:?}"
    );
    let (_, new_arn, new_id) = ours[0].clone();
    assert_ne!(new_arn, e.old.0);
    assert_eq!(show["elb"]["small:443"], new_arn.as_str(), "{show}");
    assert_eq!(listener(&show, &e.alb_web), [(new_arn.clone(), true)]);
    // The additional certificate replaced; the listener's own default kept.
    let api = listener(&show, &e.alb_api);
    assert!(api.contains(&(e.foreign.0.clone(), true)), "{api:?}");
    assert!(api.contains(&(new_arn.clone(), false)), "{api:?}");
    assert!(!api.iter().any(|(a, _)| *a == e.old.0), "{api:?}");
    assert_eq!(refs(&show, &e.d_web), new_id);
    assert_eq!(refs(&show, &e.d_static), new_id, "found as previous");
    assert_eq!(refs(&show, &e.d_other), e.foreign.1, "not ours: untouched");
    // Someone else's edit, made between our read and our update, is kept.
    assert_eq!(
        show["distributions"][&e.d_web]["comment"], "edited by someone else",
        "{show}"
    );
    assert_eq!(out.events_named("rollout.cloudfront.conflict").len(), 1);
    assert!(e.front.log().contains(" 412 PUT "), "{}", e.front.log());

    // The canary alone first, verified before anything else moved.
    let events = out.events();
    let order: Vec<String> = events
        .iter()
        .filter(|e| e["event"] == "rollout.switch" || e["event"] == "rollout.verified")
        .map(|e| {
            format!(
                "{} {}",
                e["event"].as_str().unwrap(),
                e["consumer"].as_str().or(e["step"].as_str()).unwrap()
            )
        })
        .collect();
    assert_eq!(order[0], "rollout.switch elb small:443", "{order:?}");
    assert_eq!(order[1], "rollout.verified elb small:443", "{order:?}");
    assert_eq!(
        order
            .iter()
            .filter(|o| o.starts_with("rollout.switch"))
            .count(),
        5,
        "{order:?}"
    );

    let status = cert_status(&e.env.status(), "web");
    assert_eq!(status["state"], "renewed", "{status}");
    assert_eq!(status["rollout"]["aligned"], true, "{status}");
    assert_eq!(
        status["rollout"]["consumers"].as_array().unwrap().len(),
        5,
        "{status}"
    );
    let table = e
        .env
        .certkeeper_line("status", &e.env.settings_path())
        .await;
    assert_eq!(table.code, 0, "{}{}", table.stdout, table.stderr);
    assert!(
        table
            .stdout
            .contains("rollout web: aligned (5 of 5 consumers reference the current copy)"),
        "{}",
        table.stdout
    );
    assert!(
        table.stdout.contains(&format!("cloudfront {}", e.d_static)),
        "{}",
        table.stdout
    );

    // A renewal: certkeeper's own copy is now the previous one.
    let out = e
        .env
        .certkeeper_line("renew web --force", &e.env.settings_path())
        .await;
    assert_ok(&out);
    let show = e.front.show();
    let ours = e.ours(&show);
    assert_eq!(ours.len(), 1, "{ours:?}");
    let (_, newer_arn, newer_id) = ours[0].clone();
    assert_ne!(newer_arn, new_arn);
    assert_eq!(show["elb"]["small:443"], newer_arn.as_str());
    assert_eq!(refs(&show, &e.d_static), newer_id);
    let api = listener(&show, &e.alb_api);
    assert_eq!(api.len(), 2, "{api:?}");
    assert!(api.contains(&(newer_arn, false)), "{api:?}");

    // Nothing to do: nothing is switched, alignment still reported.
    let out = e.env.run().await;
    assert_ok(&out);
    assert!(
        out.events_named("rollout.switch").is_empty(),
        "{}",
        out.stdout
    );
    let status = cert_status(&e.env.status(), "web");
    assert_eq!(status["rollout"]["aligned"], true, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_that_does_not_serve_it_is_switched_back_and_the_rest_untouched() {
    let e = edge().await;
    // The canary's endpoint is a server that never picks the new
    // certificate up (a listener pointing at the wrong target group).
    let stale = TlsServer::start(
        e.env.root.join("nowhere.pem"),
        e.env.root.join("nowhere.key"),
        std::time::Duration::ZERO,
    )
    .await;
    e.settings(&format!(
        "    steps:\n      - elb: small:443\n        verify: {{endpoints: [{}], window: 3s, interval: 1s}}\n      - listener: {}\n      - cloudfront: {}\n      - cloudfront: previous\n",
        endpoint(&stale),
        e.alb_web,
        e.d_web,
    ));
    let out = e.env.run().await;
    assert_ne!(out.code, 0, "the run fails loudly: {}", out.stdout);
    support::assert_no_secrets(&e.env, &out);
    let status = cert_status(&e.env.status(), "web");
    assert_eq!(status["state"], "failed", "{status}");
    assert_eq!(status["failed_stage"], "rollout", "{status}");
    let error = status["last_error"].as_str().unwrap();
    assert!(
        error.contains("elb small:443 does not serve the new certificate"),
        "{error}"
    );
    assert!(error.contains("switched back: elb small:443"), "{error}");
    assert!(error.contains("later steps untouched"), "{error}");
    assert!(error.contains("rollouts.web.steps[0]"), "{error}");
    assert_eq!(status["rollout"]["aligned"], false, "{status}");
    assert_eq!(out.events_named("rollout.switch").len(), 1);
    assert_eq!(out.events_named("rollout.switched_back").len(), 1);

    let show = e.front.show();
    assert_eq!(
        show["elb"]["small:443"],
        e.old.0.as_str(),
        "switched back: {show}"
    );
    assert_eq!(listener(&show, &e.alb_web), [(e.old.0.clone(), true)]);
    assert_eq!(refs(&show, &e.d_web), e.old.1);
    assert_eq!(refs(&show, &e.d_static), e.old.1);
    assert_eq!(
        show["distributions"][&e.d_web]["comment"],
        "web.example.test as set up by hand"
    );
    // The old copy is still in use: kept, though keep is 1.
    let ours = e.ours(&show);
    assert_eq!(ours.len(), 2, "{ours:?}");
    assert!(ours.iter().any(|(_, arn, _)| *arn == e.old.0), "{ours:?}");

    let table = e
        .env
        .certkeeper_line("status", &e.env.settings_path())
        .await;
    assert_ne!(table.code, 0, "{}", table.stdout);
    assert!(
        table.stdout.contains("rollout web: NOT ALIGNED (0 of 4"),
        "{}",
        table.stdout
    );

    // The next run does not try again before retry_after, and says why.
    let out = e.env.run().await;
    assert_ne!(out.code, 0);
    assert!(
        out.events_named("rollout.switch").is_empty(),
        "{}",
        out.stdout
    );
    let status = cert_status(&e.env.status(), "web");
    let error = status["last_error"].as_str().unwrap();
    assert!(error.contains("halted since"), "{error}");
    assert!(error.contains("rollouts.web.retry_after"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_consumer_is_named_and_nothing_is_switched() {
    let e = edge().await;
    let small = e
        .serving(Follow::Elb {
            name: "small".into(),
            port: 443,
        })
        .await;
    let canary = format!(
        "    steps:\n      - elb: small:443\n        verify: {{endpoints: [{}], window: 20s, interval: 1s}}\n",
        endpoint(&small)
    );
    let missing_listener = e.alb_web.replace("listener/app/web/", "listener/app/gone/");
    let cases = [
        (
            "      - cloudfront: ENOSUCHDIST1\n".to_string(),
            "cloudfront ENOSUCHDIST1: no such distribution",
        ),
        (
            "      - elb: small:8443\n".to_string(),
            "has no listener on port 8443 (its ports: 443)",
        ),
        (
            "      - elb: gone:443\n".to_string(),
            "no load balancer \"gone\"",
        ),
        (
            format!("      - listener: {missing_listener}\n"),
            "no such listener",
        ),
    ];
    for (step, message) in cases {
        e.settings(&format!("{canary}{step}"));
        let out = e.env.run().await;
        assert_ne!(out.code, 0, "{}", out.stdout);
        let status = cert_status(&e.env.status(), "web");
        let error = status["last_error"].as_str().unwrap();
        assert!(error.contains(message), "{error}");
        assert!(error.contains("nothing was switched"), "{error}");
        let settings = e.env.settings_path().display().to_string();
        let line = std::fs::read_to_string(&settings)
            .unwrap()
            .lines()
            .position(|l| l == step.trim_end())
            .unwrap()
            + 1;
        assert!(
            error.contains(&format!("{settings}:{line}: rollouts.web.steps[1]")),
            "{error}"
        );
        assert!(
            out.events_named("rollout.switch").is_empty(),
            "{}",
            out.stdout
        );
        assert_eq!(e.front.show()["elb"]["small:443"], e.old.0.as_str());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acm_reimports_keep_the_arn_and_the_alignment_lists_who_uses_it() {
    let e = edge().await;
    let web = e.serving(Follow::Listener(e.alb_web.clone())).await;
    e.settings("");
    // The same consumers, the certificate from ACM this time.
    let text = std::fs::read_to_string(e.env.settings_path()).unwrap();
    let text = text.replace(
        &format!("  cdn:\n    type: iam\n    path: {PATH}\n    keep: 1\n    delete_old: true\n"),
        "  cdn:\n    type: acm\n    regions: [us-east-1]\n",
    ) + &format!(
        "    steps:\n      - listener: {}\n        verify: {{endpoints: [{}], window: 20s, interval: 1s}}\n      - cloudfront: {}\n",
        e.alb_web,
        endpoint(&web),
        e.d_web
    );
    std::fs::write(e.env.settings_path(), text).unwrap();
    let out = e.env.run().await;
    assert_ok(&out);
    let status = cert_status(&e.env.status(), "web");
    assert_eq!(status["rollout"]["aligned"], true, "{status}");
    let arn = status["rollout"]["consumers"][0]["references"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert!(arn.starts_with("arn:aws:acm:us-east-1:"), "{arn}");
    let show = e.front.show();
    assert_eq!(listener(&show, &e.alb_web), [(arn.clone(), true)]);
    assert_eq!(refs(&show, &e.d_web), arn);
    assert_eq!(out.events_named("rollout.switch").len(), 2);

    // Renewed: re-imported to the same ARN, nobody needs a switch, and the
    // status still says who uses it.
    let out = e
        .env
        .certkeeper_line("renew web --force", &e.env.settings_path())
        .await;
    assert_ok(&out);
    assert!(
        out.events_named("rollout.switch").is_empty(),
        "{}",
        out.stdout
    );
    let status = cert_status(&e.env.status(), "web");
    assert_eq!(status["rollout"]["aligned"], true, "{status}");
    let consumers: Vec<&str> = status["rollout"]["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["consumer"].as_str().unwrap())
        .collect();
    assert_eq!(
        consumers,
        [
            format!("listener {}", e.alb_web),
            format!("cloudfront {}", e.d_web)
        ]
    );
    assert_eq!(
        status["rollout"]["consumers"][1]["references"][0],
        arn.as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_replicas_only_the_holder_of_the_lease_switches() {
    let e = edge().await;
    // In the bucket too, so the second replica pulls it instead of issuing.
    e.env
        .repo
        .commit_certificates(&WEB.replace("[cdn]", "[s3, cdn]"), "web in s3 too");
    let small = e
        .front
        .serving(
            Follow::Elb {
                name: "small".into(),
                port: 443,
            },
            &e.env.root.join("state-0"),
        )
        .await;
    e.settings(&format!(
        "    steps:\n      - elb: small:443\n        verify: {{endpoints: [{}], window: 20s, interval: 1s}}\n      - cloudfront: {}\n",
        endpoint(&small),
        e.d_web
    ));
    let first = e.env.replica_settings(0, "60s", "");
    let second = e.env.replica_settings(1, "60s", "");
    let status_of = |i: usize| {
        let text = std::fs::read_to_string(e.env.root.join(format!("state-{i}/status.json")))
            .expect("status.json");
        cert_status(&serde_json::from_str(&text).unwrap(), "web")
    };
    let web_leases = |out: &support::RunOutput| {
        out.events_named("lease.taken")
            .into_iter()
            .filter(|l| l["cert"] == "web")
            .count()
    };

    // The first replica renews it and rolls it out under that lease.
    let out = e.env.certkeeper_line("run --once", &first).await;
    assert_ok(&out);
    assert_eq!(
        out.events_named("rollout.switch").len(),
        2,
        "{}",
        out.stdout
    );
    let new_arn = e.front.show()["elb"]["small:443"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_arn, e.old.0);

    // The second pulls it, finds every consumer aligned: no lease, no switch.
    let out = e.env.certkeeper_line("run --once", &second).await;
    assert_ok(&out);
    assert!(
        out.events_named("rollout.switch").is_empty(),
        "{}",
        out.stdout
    );
    assert_eq!(web_leases(&out), 0, "{}", out.stdout);
    assert_eq!(status_of(1)["rollout"]["aligned"], true);

    // Switched back by hand: the second takes the lease and brings it in line.
    e.front.fixture(&["elb-set", "small", "443", &e.old.0]);
    let out = e.env.certkeeper_line("run --once", &second).await;
    assert_ok(&out);
    assert_eq!(web_leases(&out), 1, "{}", out.stdout);
    assert_eq!(
        out.events_named("rollout.switch").len(),
        1,
        "{}",
        out.stdout
    );
    assert_eq!(e.front.show()["elb"]["small:443"], new_arn.as_str());

    // While the first holds the lease, the second only reports.
    e.front.fixture(&["elb-set", "small", "443", &e.old.0]);
    let until = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let lease = serde_json::json!({
        "cert": "web",
        "holder": "replica-0",
        "generation": 9,
        "expires_at": until.format(&time::format_description::well_known::Rfc3339).unwrap(),
    });
    e.env
        .moto
        .s3()
        .await
        .put_object()
        .bucket(&e.env.bucket)
        .key("certs/.leases/web")
        .body(serde_json::to_vec(&lease).unwrap().into())
        .send()
        .await
        .expect("lease");
    let out = e.env.certkeeper_line("run --once", &second).await;
    assert_ok(&out);
    assert!(
        out.events_named("rollout.switch").is_empty(),
        "{}",
        out.stdout
    );
    assert_eq!(
        out.events_named("rollout.left_to_holder").len(),
        1,
        "{}",
        out.stdout
    );
    let status = status_of(1);
    assert_eq!(status["rollout"]["aligned"], false, "{status}");
    let result = status["rollout"]["result"].as_str().unwrap();
    assert!(
        result.contains("replica-0 holds the certificate's lease"),
        "{result}"
    );
    assert_eq!(e.front.show()["elb"]["small:443"], e.old.0.as_str());
}
