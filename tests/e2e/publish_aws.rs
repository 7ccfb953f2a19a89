//! Publish targets on AWS (SSM, ACM, IAM, ECS, S3 manifest), each through
//! the real SDK against moto: first publish, idempotence when the local
//! record is lost, renewal (re-import to the same ACM ARN, a new dated IAM
//! name with the old one deleted, a new ECS deployment), and a failing
//! target retried on the next run without undoing the others.

use crate::support;

use support::{LocalEnv, PebbleOptions, cert_status};

const MESH: &str = r#"certificates:
  - name: mesh
    domains: ["*.example.test"]
    vars: {mailbox: X26ABC1}
    targets: [s3, ssm-mesh, acm-cf, iam-cf, forwarder]
"#;

fn settings(cluster: &str) -> String {
    format!(
        r#"targets:
  ssm-mesh:
    type: ssm
    environments: [dev, prod]
    parameters:
      cert: /registrations/{{env}}/user-input/mesh/{{mailbox}}-cert
      key: /registrations/{{env}}/user-input/mesh/{{mailbox}}-key
      chain: /registrations/{{env}}/user-input/mesh/{{mailbox}}-chain
  acm-cf:
    type: acm
    regions: [us-east-1, eu-west-2]
  iam-cf:
    type: iam
    keep: 1
    delete_old: true
  forwarder:
    type: ecs
    cluster: {cluster}
    services: [forwarder]
"#
    )
}

async fn create_ecs_service(env: &LocalEnv, cluster: &str) {
    let ecs = aws_sdk_ecs::Client::new(&env.moto.sdk_config().await);
    ecs.create_cluster()
        .cluster_name(cluster)
        .send()
        .await
        .expect("cluster");
    ecs.register_task_definition()
        .family("forwarder")
        .container_definitions(
            aws_sdk_ecs::types::ContainerDefinition::builder()
                .name("forwarder")
                .image("forwarder:1")
                .memory(128)
                .build(),
        )
        .send()
        .await
        .expect("task definition");
    ecs.create_service()
        .cluster(cluster)
        .service_name("forwarder")
        .task_definition("forwarder")
        .desired_count(1)
        .send()
        .await
        .expect("service");
}

async fn ssm_value(env: &LocalEnv, name: &str) -> (String, String, i64) {
    let ssm = aws_sdk_ssm::Client::new(&env.moto.sdk_config().await);
    let out = ssm
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .unwrap_or_else(|e| panic!("parameter {name}: {e:?}"));
    let p = out.parameter().expect("parameter");
    (
        p.value().unwrap_or_default().to_string(),
        p.r#type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        p.version(),
    )
}

async fn acm_pem(env: &LocalEnv, region: &str, arn: &str) -> String {
    let sdk = env.moto.sdk_config().await;
    let acm = aws_sdk_acm::Client::from_conf(
        aws_sdk_acm::config::Builder::from(&sdk)
            .region(aws_config::Region::new(region.to_string()))
            .build(),
    );
    acm.get_certificate()
        .certificate_arn(arn)
        .send()
        .await
        .expect("get certificate")
        .certificate()
        .unwrap_or_default()
        .to_string()
}

async fn iam_names(env: &LocalEnv) -> Vec<String> {
    let iam = aws_sdk_iam::Client::new(&env.moto.sdk_config().await);
    let out = iam
        .list_server_certificates()
        .path_prefix("/cloudfront/mesh/")
        .send()
        .await
        .expect("list server certificates");
    out.server_certificate_metadata_list()
        .iter()
        .map(|m| m.server_certificate_name().to_string())
        .collect()
}

async fn ecs_deployments(env: &LocalEnv, cluster: &str) -> Vec<i64> {
    let ecs = aws_sdk_ecs::Client::new(&env.moto.sdk_config().await);
    let out = ecs
        .describe_services()
        .cluster(cluster)
        .services("forwarder")
        .send()
        .await
        .expect("describe services");
    out.services()
        .first()
        .map(|s| {
            s.deployments()
                .iter()
                .filter_map(|d| d.created_at().map(|t| t.secs()))
                .collect()
        })
        .unwrap_or_default()
}

fn arn(env: &LocalEnv, region: &str) -> String {
    let text = std::fs::read_to_string(env.state_dir().join("targets/acm-cf/mesh.json"))
        .expect("ACM state");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    v["arns"][region].as_str().expect("arn").to_string()
}

/// `publish.done` events of one run: target -> (uploaded, unchanged).
fn done(out: &support::RunOutput) -> std::collections::BTreeMap<String, (u64, u64)> {
    out.events_named("publish.done")
        .iter()
        .map(|e| {
            (
                e["target"].as_str().unwrap_or_default().to_string(),
                (
                    e["uploaded"].as_u64().unwrap_or(0),
                    e["unchanged"].as_u64().unwrap_or(0),
                ),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_to_ssm_acm_iam_ecs_and_s3_idempotently() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    let cluster = "mesh";
    create_ecs_service(&env, cluster).await;
    env.write_settings(&settings(cluster));
    env.repo.commit_certificates(MESH, "mesh cert");

    // First run: every target in order.
    let out = env.run().await;
    assert_eq!(
        out.code, 0,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    let status = cert_status(&env.status(), "mesh");
    assert_eq!(status["published"], true, "{status}");
    let order: Vec<&str> = status["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .map(|t| t["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(order, ["s3", "ssm-mesh", "acm-cf", "iam-cf", "forwarder"]);
    for t in status["targets"].as_array().unwrap() {
        assert_eq!(t["result"], "published", "{t}");
    }
    let cert = String::from_utf8(env.live_file("mesh", "cert.pem")).unwrap();
    let key = String::from_utf8(env.live_file("mesh", "privkey.pem")).unwrap();
    for e in ["dev", "prod"] {
        let (value, kind, version) = ssm_value(
            &env,
            &format!("/registrations/{e}/user-input/mesh/X26ABC1-cert"),
        )
        .await;
        assert_eq!(value, cert);
        assert_eq!(kind, "SecureString");
        assert_eq!(version, 1);
        let (value, kind, _) = ssm_value(
            &env,
            &format!("/registrations/{e}/user-input/mesh/X26ABC1-key"),
        )
        .await;
        assert_eq!(value, key);
        assert_eq!(kind, "SecureString");
    }
    let arns = [arn(&env, "us-east-1"), arn(&env, "eu-west-2")];
    assert!(
        arns[0].contains(":us-east-1:") && arns[1].contains(":eu-west-2:"),
        "{arns:?}"
    );
    for (region, a) in [("us-east-1", &arns[0]), ("eu-west-2", &arns[1])] {
        assert_eq!(acm_pem(&env, region, a).await.trim(), cert.trim());
    }
    let today = {
        let d = time::OffsetDateTime::now_utc().date();
        format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
    };
    assert_eq!(
        iam_names(&env).await,
        [format!("STAR.example.test_{today}")]
    );
    let deployments = ecs_deployments(&env, cluster).await;
    assert!(!deployments.is_empty());
    let manifest: serde_json::Value =
        serde_json::from_slice(&env.s3_object("certs/index.json").await.expect("index.json"))
            .expect("manifest json");
    let entry = &manifest["certificates"][0];
    assert_eq!(entry["name"], "mesh");
    assert_eq!(entry["serial"], status["serial"]);
    assert!(
        entry["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "certs/mesh/fullchain.pem"),
        "{entry}"
    );

    // Second run with the local record lost: each target checks its
    // destination and changes nothing.
    std::fs::remove_file(env.state_dir().join("published/mesh.json")).expect("record");
    // The ACM ARNs too: found again by their tag, not imported twice.
    std::fs::remove_file(env.state_dir().join("targets/acm-cf/mesh.json")).expect("ARN state");
    let out = env.run().await;
    assert_eq!(out.code, 0, "{}", out.stdout);
    let done = done(&out);
    for t in ["s3", "ssm-mesh", "acm-cf", "iam-cf", "forwarder"] {
        let (uploaded, unchanged) = done
            .get(t)
            .copied()
            .unwrap_or_else(|| panic!("{t} did not run: {done:?}"));
        assert_eq!(uploaded, 0, "{t} changed something on an unchanged set");
        assert!(unchanged > 0, "{t}");
    }
    let (_, _, version) = ssm_value(&env, "/registrations/dev/user-input/mesh/X26ABC1-cert").await;
    assert_eq!(version, 1, "an unchanged parameter was written again");
    assert_eq!([arn(&env, "us-east-1"), arn(&env, "eu-west-2")], arns);
    for (what, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        assert!(!text.contains("PRIVATE KEY"), "key material in {what}");
        assert!(!text.contains(&env.aws_secret), "AWS secret in {what}");
    }
    assert_eq!(
        ecs_deployments(&env, cluster).await.len(),
        deployments.len()
    );

    // Renewal: same ARNs, new IAM name with the old one deleted, new
    // parameter versions, a new ECS deployment.
    let out = env
        .certkeeper(vec![
            "renew".into(),
            "mesh".into(),
            "--force".into(),
            "--config".into(),
            env.settings_path().display().to_string(),
        ])
        .await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let new_cert = String::from_utf8(env.live_file("mesh", "cert.pem")).unwrap();
    assert_ne!(new_cert, cert);
    assert_eq!(
        [arn(&env, "us-east-1"), arn(&env, "eu-west-2")],
        arns,
        "ACM must re-import to the same ARN"
    );
    assert_eq!(
        acm_pem(&env, "us-east-1", &arns[0]).await.trim(),
        new_cert.trim()
    );
    let (value, _, version) =
        ssm_value(&env, "/registrations/prod/user-input/mesh/X26ABC1-cert").await;
    assert_eq!(value, new_cert);
    assert_eq!(version, 2);
    let names = iam_names(&env).await;
    assert_eq!(names.len(), 1, "keep: 1 with delete_old: {names:?}");
    assert_ne!(
        names[0],
        format!("STAR.example.test_{today}"),
        "same-day renewal needs a new name"
    );
    assert_eq!(self::done(&out).get("forwarder").map(|d| d.0), Some(1));
    let manifest: serde_json::Value =
        serde_json::from_slice(&env.s3_object("certs/index.json").await.unwrap()).unwrap();
    assert_eq!(
        manifest["certificates"][0]["serial"],
        cert_status(&env.status(), "mesh")["serial"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_target_is_retried_and_does_not_undo_the_others() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    let cluster = "later";
    env.write_settings(&settings(cluster));
    env.repo.commit_certificates(MESH, "mesh cert");

    // No ECS service yet: the last target fails, the others publish.
    let out = env.run().await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    let status = cert_status(&env.status(), "mesh");
    assert_eq!(status["published"], false);
    let results: Vec<(String, String)> = status["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["result"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (name, result) in &results[..4] {
        assert_eq!(result, "published", "{name}");
    }
    assert_eq!(results[4].0, "forwarder");
    assert!(results[4].1.starts_with("failed: "), "{results:?}");
    assert!(
        status["last_error"].as_str().unwrap().contains("forwarder"),
        "{status}"
    );
    assert_eq!(
        iam_names(&env).await.len(),
        1,
        "the other targets stay published"
    );

    // Nothing is due, but the failed target is tried again and only it.
    create_ecs_service(&env, cluster).await;
    let out = env.run().await;
    assert_eq!(out.code, 0, "{}", out.stdout);
    let done = done(&out);
    assert_eq!(done.keys().collect::<Vec<_>>(), ["forwarder"], "{done:?}");
    // The service was created after the certificate was issued, so it
    // already runs with it: published without a restart.
    assert_eq!(done["forwarder"], (0, 1));
    let status = cert_status(&env.status(), "mesh");
    assert_eq!(status["published"], true);
    assert!(status["last_error"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_policies_are_accepted_by_iam() {
    let env = LocalEnv::start(&["example.test"], PebbleOptions::default()).await;
    env.write_settings(&settings("mesh"));
    env.repo.commit_certificates(MESH, "mesh cert");
    let out = env
        .certkeeper(vec![
            "iam-policy".into(),
            "--config".into(),
            env.settings_path().display().to_string(),
        ])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let policies: serde_json::Value =
        serde_json::from_str(&out.stdout).expect("stdout is exactly the policy JSON");
    let policies = policies.as_object().expect("by identity");
    assert_eq!(policies.keys().collect::<Vec<_>>(), ["default"]);
    let doc = &policies["default"];
    let text = doc.to_string();
    assert!(text.contains("_acme-challenge.example.test"), "{text}");
    for action in [
        "route53:ChangeResourceRecordSets",
        "s3:PutObject",
        "ssm:PutParameter",
        "acm:ImportCertificate",
        "iam:UploadServerCertificate",
        "ecs:UpdateService",
    ] {
        assert!(text.contains(action), "{action} missing: {text}");
    }
    // IAM (moto validates the grammar) takes it as it is.
    let iam = aws_sdk_iam::Client::new(&env.moto.sdk_config().await);
    iam.create_policy()
        .policy_name("certkeeper")
        .policy_document(doc.to_string())
        .send()
        .await
        .expect("IAM accepts the policy");

    // One identity, as a bare document for put-role-policy.
    let out = env
        .certkeeper(vec![
            "iam-policy".into(),
            "--profile".into(),
            "default".into(),
            "--config".into(),
            env.settings_path().display().to_string(),
        ])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("\"Version\": \"2012-10-17\""),
        "{}",
        out.stdout
    );
}
