//! `certkeeper iam-policy`: the least-privilege IAM policy for the current
//! settings and config, one per credential identity (the default chain, a
//! profile, or an assumed role), so an audit can see exactly who may
//! change which record and write where.
//!
//! Route53 changes are limited to TXT records at the exact `_acme-challenge`
//! names of the certificates that use the provider, with the CREATE,
//! UPSERT and DELETE actions certkeeper sends. Names reached through a
//! CNAME into another zone (`follow_cname`) cannot be known from the config
//! and must be added by hand.

use crate::config::Config;
use crate::settings::{
    AwsIdentity, ChannelSettings, DnsProviderSettings, Settings, TargetSettings, WatchSource,
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// A human label for an identity: `default`, `profile:<name>`, or the role
/// ARN (with its profile when both are set).
pub fn identity_label(id: &AwsIdentity) -> String {
    match (&id.role_arn, &id.profile) {
        (Some(role), Some(p)) => format!("{role} (from profile:{p})"),
        (Some(role), None) => role.clone(),
        (None, Some(p)) => format!("profile:{p}"),
        (None, None) => "default".into(),
    }
}

/// Statements collected per identity.
#[derive(Default)]
struct Builder {
    statements: BTreeMap<String, Vec<Value>>,
}

impl Builder {
    fn add(&mut self, id: &AwsIdentity, statement: Value) {
        let list = self.statements.entry(identity_label(id)).or_default();
        if !list.contains(&statement) {
            list.push(statement);
        }
    }
}

/// `_acme-challenge` names, normalized as IAM compares them (lower case, no
/// trailing dot), of every certificate using DNS provider `provider`.
fn challenge_names(config: &Config, provider: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for cert in &config.certificates {
        if cert.spec.dns.provider != provider || cert.spec.is_external() {
            continue;
        }
        for d in &cert.spec.domains {
            let base = d.strip_prefix("*.").unwrap_or(d).trim_end_matches('.');
            names.insert(format!("_acme-challenge.{}", base.to_ascii_lowercase()));
        }
    }
    names
}

fn zones_of(config: &Config, provider: &str) -> Vec<String> {
    let mut zones: Vec<String> = config
        .certificates
        .iter()
        .filter(|c| c.spec.dns.provider == provider && !c.spec.is_external())
        .filter_map(|c| c.spec.dns.hosted_zone_id.clone())
        .map(|z| {
            format!(
                "arn:aws:route53:::hostedzone/{}",
                z.trim_start_matches("/hostedzone/")
            )
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if zones.is_empty()
        || config.certificates.iter().any(|c| {
            c.spec.dns.provider == provider
                && !c.spec.is_external()
                && c.spec.dns.hosted_zone_id.is_none()
        })
    {
        // Zones found by name: any zone, but the record-name condition
        // still limits the change to these names.
        zones = vec!["arn:aws:route53:::hostedzone/*".into()];
    }
    zones
}

/// A template with every variable replaced by `*`, for resource ARNs.
fn wildcard(template: &str, known: &[(&str, &str)]) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let key = &after[..end];
        match known.iter().find(|(k, _)| *k == key) {
            Some((_, v)) => out.push_str(v),
            None => out.push('*'),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    // `a/*/*/b` is as good as `a/*/b` in IAM and easier to read.
    while out.contains("**") {
        out = out.replace("**", "*");
    }
    out
}

/// The policy documents, by identity label.
pub fn policies(settings: &Settings, config: &Config) -> BTreeMap<String, Value> {
    let mut b = Builder::default();
    let default = AwsIdentity::default();
    for (name, provider) in &settings.dns_providers {
        let DnsProviderSettings::Route53(r) = provider else {
            continue;
        };
        let names = challenge_names(config, name);
        if names.is_empty() {
            continue;
        }
        let id = AwsIdentity {
            profile: r.profile.clone(),
            role_arn: r.role_arn.clone(),
            external_id: r.external_id.clone(),
            region: None,
        };
        let zones = zones_of(config, name);
        b.add(
            &id,
            json!({
                "Sid": format!("Route53ChallengeRecords{}", sid(name)),
                "Effect": "Allow",
                "Action": "route53:ChangeResourceRecordSets",
                "Resource": zones,
                "Condition": {
                    "ForAllValues:StringEquals": {
                        "route53:ChangeResourceRecordSetsNormalizedRecordNames": names,
                        "route53:ChangeResourceRecordSetsRecordTypes": ["TXT"],
                        "route53:ChangeResourceRecordSetsActions": ["CREATE", "UPSERT", "DELETE"]
                    }
                }
            }),
        );
        b.add(
            &id,
            json!({
                "Sid": format!("Route53ReadZones{}", sid(name)),
                "Effect": "Allow",
                "Action": ["route53:GetHostedZone", "route53:ListResourceRecordSets"],
                "Resource": zones,
            }),
        );
        b.add(
            &id,
            json!({
                "Sid": "Route53FindZonesAndWait",
                "Effect": "Allow",
                "Action": ["route53:ListHostedZonesByName", "route53:GetChange"],
                "Resource": "*",
            }),
        );
    }
    for (name, target) in &settings.targets {
        let used = config
            .certificates
            .iter()
            .any(|c| crate::config::resolve::targets_for(settings, &c.spec).contains(name));
        // An s3 target no certificate publishes to is there for `seal
        // --publish` (sealed bundles to a backup bucket): it may write and
        // read under its key template, nothing more.
        let sealing = !used && matches!(target, TargetSettings::S3(_));
        if !used && !sealing {
            continue;
        }
        match target {
            TargetSettings::S3(s3) => {
                let prefix = s3.prefix.trim_matches('/');
                let keys = wildcard(&s3.key_template, &[("prefix", prefix)]);
                let mut resources = vec![format!(
                    "arn:aws:s3:::{}/{}",
                    s3.bucket,
                    keys.trim_start_matches('/')
                )];
                if s3.manifest && !sealing {
                    let index = if prefix.is_empty() {
                        "index.json".to_string()
                    } else {
                        format!("{prefix}/index.json")
                    };
                    resources.push(format!("arn:aws:s3:::{}/{index}", s3.bucket));
                }
                b.add(
                    &s3.aws,
                    json!({
                        "Sid": format!("{}{}", if sealing { "S3Seal" } else { "S3Publish" }, sid(name)),
                        "Effect": "Allow",
                        // GetObject also covers HeadObject.
                        "Action": ["s3:PutObject", "s3:GetObject"],
                        "Resource": resources,
                    }),
                );
                if let Some(key) = &s3.kms_key_id {
                    b.add(
                        &s3.aws,
                        kms(name, key, &["kms:GenerateDataKey", "kms:Decrypt"]),
                    );
                }
                // Replicas: leases under <prefix>/.leases/ (never deleted),
                // and one listing of the prefix per run.
                if !sealing
                    && settings
                        .replicas
                        .as_ref()
                        .is_some_and(|r| r.target == *name)
                {
                    let leases = if prefix.is_empty() {
                        ".leases/*".to_string()
                    } else {
                        format!("{prefix}/.leases/*")
                    };
                    b.add(
                        &s3.aws,
                        json!({
                            "Sid": format!("S3Leases{}", sid(name)),
                            "Effect": "Allow",
                            "Action": ["s3:PutObject", "s3:GetObject"],
                            "Resource": [format!("arn:aws:s3:::{}/{leases}", s3.bucket)],
                        }),
                    );
                    b.add(
                        &s3.aws,
                        json!({
                            "Sid": format!("S3List{}", sid(name)),
                            "Effect": "Allow",
                            "Action": ["s3:ListBucket"],
                            "Resource": [format!("arn:aws:s3:::{}", s3.bucket)],
                            "Condition": {"StringLike": {"s3:prefix": crate::replica::listed_prefixes(s3)
                                .iter()
                                .map(|p| format!("{p}*"))
                                .collect::<Vec<_>>()}},
                        }),
                    );
                }
            }
            TargetSettings::Ssm(ssm) => {
                let resources: Vec<String> = ssm
                    .parameters
                    .values()
                    .map(|t| {
                        let path = wildcard(t, &[]);
                        format!("arn:aws:ssm:*:*:parameter/{}", path.trim_start_matches('/'))
                    })
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                b.add(
                    &ssm.aws,
                    json!({
                        "Sid": format!("SsmParameters{}", sid(name)),
                        "Effect": "Allow",
                        "Action": ["ssm:GetParameter", "ssm:PutParameter"],
                        "Resource": resources,
                    }),
                );
                if let Some(key) = &ssm.kms_key_id {
                    b.add(&ssm.aws, kms(name, key, &["kms:Encrypt", "kms:Decrypt"]));
                }
            }
            TargetSettings::Acm(acm) => {
                b.add(
                    &acm.aws,
                    json!({
                        "Sid": format!("AcmImport{}", sid(name)),
                        "Effect": "Allow",
                        "Action": [
                            "acm:ImportCertificate", "acm:GetCertificate", "acm:AddTagsToCertificate",
                            "acm:ListCertificates", "acm:ListTagsForCertificate"
                        ],
                        "Resource": "*",
                    }),
                );
            }
            TargetSettings::Iam(iam) => {
                let path = wildcard(&iam.path, &[]);
                b.add(
                    &iam.aws,
                    json!({
                        "Sid": format!("IamServerCertificates{}", sid(name)),
                        "Effect": "Allow",
                        "Action": [
                            "iam:UploadServerCertificate", "iam:GetServerCertificate",
                            "iam:DeleteServerCertificate", "iam:TagServerCertificate"
                        ],
                        "Resource": format!("arn:aws:iam::*:server-certificate{path}*"),
                    }),
                );
                b.add(
                    &iam.aws,
                    json!({
                        "Sid": "IamListServerCertificates",
                        "Effect": "Allow",
                        "Action": "iam:ListServerCertificates",
                        "Resource": "*",
                    }),
                );
            }
            TargetSettings::Ecs(ecs) => {
                let services: Vec<String> = ecs
                    .services
                    .iter()
                    .map(|s| format!("arn:aws:ecs:*:*:service/{}/{s}", ecs.cluster))
                    .collect();
                b.add(
                    &ecs.aws,
                    json!({
                        "Sid": format!("EcsRedeploy{}", sid(name)),
                        "Effect": "Allow",
                        "Action": ["ecs:DescribeServices", "ecs:UpdateService"],
                        "Resource": services,
                    }),
                );
            }
            TargetSettings::Files(_) => {}
        }
    }
    for (cert, rollout) in &settings.rollouts {
        if config.certificates.iter().any(|c| c.name() == cert) {
            rollout_statements(&mut b, cert, rollout);
        }
    }
    if let Some(watch) = &settings.watch {
        for (i, source) in watch.sources.iter().enumerate() {
            watch_source(&mut b, i, source);
        }
    }
    let mut used_secrets: BTreeSet<&str> = config
        .certificates
        .iter()
        .filter_map(|c| c.spec.pkcs12.as_ref().map(|p| p.password.as_str()))
        .collect();
    used_secrets.extend(settings_secrets(settings));
    for (name, secret) in &settings.secrets {
        if let (Some(param), true) = (&secret.ssm, used_secrets.contains(name.as_str())) {
            b.add(
                &default,
                json!({
                    "Sid": format!("ReadSecret{}", sid(name)),
                    "Effect": "Allow",
                    "Action": "ssm:GetParameter",
                    "Resource": format!("arn:aws:ssm:*:*:parameter/{}", param.trim_start_matches('/')),
                }),
            );
        }
    }
    b.statements
        .into_iter()
        .map(|(id, statements)| {
            (
                id,
                json!({ "Version": "2012-10-17", "Statement": statements }),
            )
        })
        .collect()
}

/// What one certificate's rollout reads and switches: each listed
/// consumer by its ARN; the describe and list calls, which IAM cannot
/// limit to a resource, on `*`. `cloudfront: previous` cannot be known in
/// advance, so it may update any distribution.
fn rollout_statements(b: &mut Builder, cert: &str, rollout: &crate::settings::RolloutSettings) {
    use crate::settings::StepConsumer;
    let region = rollout.aws.region.as_deref().unwrap_or("*");
    let mut distributions = BTreeSet::new();
    let mut list_distributions = false;
    let mut load_balancers = BTreeSet::new();
    let mut listeners = BTreeSet::new();
    for step in &rollout.steps {
        match step.consumer() {
            Ok(StepConsumer::Distribution(id)) => {
                distributions.insert(format!("arn:aws:cloudfront::*:distribution/{id}"));
            }
            Ok(StepConsumer::Previous) => {
                list_distributions = true;
                distributions.insert("arn:aws:cloudfront::*:distribution/*".to_string());
            }
            Ok(StepConsumer::Elb { name, .. }) => {
                load_balancers.insert(format!(
                    "arn:aws:elasticloadbalancing:{region}:*:loadbalancer/{name}"
                ));
            }
            Ok(StepConsumer::Listener { arn, .. }) => {
                listeners.insert(arn.to_string());
            }
            Err(_) => {}
        }
    }
    if list_distributions {
        // `previous` may be any distribution; naming some adds nothing.
        distributions = BTreeSet::from(["arn:aws:cloudfront::*:distribution/*".to_string()]);
    }
    let id = &rollout.aws;
    let cert = sid(cert);
    if !distributions.is_empty() {
        b.add(
            id,
            json!({
                "Sid": format!("RolloutCloudFront{cert}"),
                "Effect": "Allow",
                "Action": [
                    "cloudfront:GetDistribution", "cloudfront:GetDistributionConfig",
                    "cloudfront:UpdateDistribution"
                ],
                "Resource": distributions,
            }),
        );
    }
    if list_distributions {
        b.add(
            id,
            json!({
                "Sid": "RolloutListDistributions",
                "Effect": "Allow",
                "Action": "cloudfront:ListDistributions",
                "Resource": "*",
            }),
        );
    }
    if !load_balancers.is_empty() {
        b.add(
            id,
            json!({
                "Sid": format!("RolloutClassicElb{cert}"),
                "Effect": "Allow",
                "Action": "elasticloadbalancing:SetLoadBalancerListenerSSLCertificate",
                "Resource": load_balancers,
            }),
        );
    }
    if !listeners.is_empty() {
        b.add(
            id,
            json!({
                "Sid": format!("RolloutListeners{cert}"),
                "Effect": "Allow",
                "Action": [
                    "elasticloadbalancing:ModifyListener",
                    "elasticloadbalancing:AddListenerCertificates",
                    "elasticloadbalancing:RemoveListenerCertificates"
                ],
                "Resource": listeners,
            }),
        );
    }
    if !load_balancers.is_empty() || !listeners.is_empty() {
        b.add(
            id,
            json!({
                "Sid": "RolloutDescribeLoadBalancers",
                "Effect": "Allow",
                "Action": [
                    "elasticloadbalancing:DescribeLoadBalancers",
                    "elasticloadbalancing:DescribeListenerCertificates"
                ],
                "Resource": "*",
            }),
        );
    }
}

/// What reading one watch source needs.
fn watch_source(b: &mut Builder, i: usize, source: &WatchSource) {
    match source {
        WatchSource::S3(s) => {
            let prefix = s.prefix.trim_start_matches('/');
            b.add(
                &s.aws,
                json!({
                    "Sid": format!("WatchS3List{i}"),
                    "Effect": "Allow",
                    "Action": "s3:ListBucket",
                    "Resource": format!("arn:aws:s3:::{}", s.bucket),
                    "Condition": {"StringLike": {"s3:prefix": format!("{prefix}*")}},
                }),
            );
            b.add(
                &s.aws,
                json!({
                    "Sid": format!("WatchS3Read{i}"),
                    "Effect": "Allow",
                    "Action": "s3:GetObject",
                    "Resource": format!("arn:aws:s3:::{}/{prefix}*", s.bucket),
                }),
            );
        }
        WatchSource::Ssm(s) => {
            let path = s.path.trim_matches('/');
            b.add(
                &s.aws,
                json!({
                    "Sid": format!("WatchSsmRead{i}"),
                    "Effect": "Allow",
                    "Action": "ssm:GetParametersByPath",
                    "Resource": [
                        format!("arn:aws:ssm:*:*:parameter/{path}"),
                        format!("arn:aws:ssm:*:*:parameter/{path}/*"),
                    ],
                }),
            );
        }
        WatchSource::Files(_) | WatchSource::Endpoint(_) => {}
    }
}

/// The `secrets:` names the settings themselves refer to: alert channels'
/// URLs and keys, watched PKCS#12 passwords.
fn settings_secrets(settings: &Settings) -> Vec<&str> {
    let mut out = Vec::new();
    for channel in settings.channels.values() {
        match channel {
            ChannelSettings::Slack { webhook_url } => out.push(webhook_url.as_str()),
            ChannelSettings::Webhook { url, hmac_secret } => {
                out.push(url.as_str());
                out.extend(hmac_secret.as_deref());
            }
            ChannelSettings::Email { password, .. } => out.extend(password.as_deref()),
        }
    }
    for source in settings.watch.iter().flat_map(|w| &w.sources) {
        match source {
            WatchSource::Files(f) => out.extend(f.pkcs12_password.as_deref()),
            WatchSource::S3(s) => out.extend(s.pkcs12_password.as_deref()),
            WatchSource::Ssm(_) | WatchSource::Endpoint(_) => {}
        }
    }
    out
}

fn kms(target: &str, key: &str, actions: &[&str]) -> Value {
    let resource = if key.starts_with("arn:") && !key.contains(":alias/") {
        key.to_string()
    } else {
        // An alias names the key only indirectly: allow keys used through it.
        "*".to_string()
    };
    let mut statement = json!({
        "Sid": format!("Kms{}", sid(target)),
        "Effect": "Allow",
        "Action": actions,
        "Resource": resource,
    });
    if resource == "*" {
        let alias = if key.starts_with("alias/") {
            key.to_string()
        } else {
            key.rsplit_once(':')
                .map(|(_, a)| a.to_string())
                .unwrap_or_else(|| key.to_string())
        };
        statement["Condition"] =
            json!({ "ForAnyValue:StringEquals": { "kms:ResourceAliases": alias } });
    }
    statement
}

/// IAM statement ids are alphanumeric.
fn sid(name: &str) -> String {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(extra: &str) -> Settings {
        let text = format!(
            "config_repo: {{url: /tmp/repo}}\nstate_dir: /tmp/state\nacme: {{directory_url: https://ca.test/dir}}\ns3: {{bucket: certs, prefix: prod}}\n{extra}"
        );
        Settings::parse(
            std::path::Path::new("/etc/certkeeper/certkeeper.yaml"),
            &text,
        )
        .unwrap()
    }

    fn config(yaml: &str) -> Config {
        Config::parse(&[(
            std::path::PathBuf::from("certificates.yaml"),
            yaml.to_string(),
        )])
        .unwrap()
    }

    #[test]
    fn replicas_may_write_their_leases_and_nothing_else_new() {
        let s = settings("replicas: {lease_ttl: 60s}\n");
        let c = config("certificates:\n  - name: web\n    domains: [www.example.test]\n");
        let text = policies(&s, &c)["default"].to_string();
        assert!(text.contains("arn:aws:s3:::certs/prod/.leases/*"), "{text}");
        assert!(!text.contains("s3:DeleteObject"), "{text}");
        assert!(text.contains("s3:ListBucket"), "{text}");
        assert!(text.contains("\"s3:prefix\":[\"prod/*\"]"), "{text}");
    }

    /// Live sets outside the prefix: both places the run lists are allowed,
    /// and nothing more.
    #[test]
    fn replicas_may_list_where_the_live_sets_and_the_leases_are() {
        let text = "config_repo: {url: /tmp/repo}\nstate_dir: /tmp/state\nacme: {directory_url: https://ca.test/dir}\ns3: {bucket: certs, prefix: prod, key_template: \"live/{name}/{file}\"}\nreplicas: {lease_ttl: 60s}\n";
        let s = Settings::parse(
            std::path::Path::new("/etc/certkeeper/certkeeper.yaml"),
            text,
        )
        .unwrap();
        let c = config("certificates:\n  - name: web\n    domains: [www.example.test]\n");
        let text = policies(&s, &c)["default"].to_string();
        assert!(
            text.contains("\"s3:prefix\":[\"live/*\",\"prod/.leases/*\"]"),
            "{text}"
        );
    }

    #[test]
    fn route53_is_limited_to_the_challenge_names() {
        let s = settings("");
        let c = config(
            "certificates:\n  - name: web\n    domains: [\"*.Example.test\", www.example.test]\n  - name: api\n    domains: [api.example.test]\n    dns: {hosted_zone_id: Z123}\n",
        );
        let p = policies(&s, &c);
        let doc = &p["default"];
        let text = doc.to_string();
        let change = &doc["Statement"][0];
        assert_eq!(change["Action"], "route53:ChangeResourceRecordSets");
        let names = &change["Condition"]["ForAllValues:StringEquals"]["route53:ChangeResourceRecordSetsNormalizedRecordNames"];
        assert_eq!(
            names,
            &json!([
                "_acme-challenge.api.example.test",
                "_acme-challenge.example.test",
                "_acme-challenge.www.example.test"
            ])
        );
        assert_eq!(
            change["Condition"]["ForAllValues:StringEquals"]["route53:ChangeResourceRecordSetsRecordTypes"],
            json!(["TXT"])
        );
        // One certificate finds its zone by name: any zone, same names.
        assert_eq!(
            change["Resource"],
            json!(["arn:aws:route53:::hostedzone/*"])
        );
        assert!(text.contains("arn:aws:s3:::certs/prod/*/*"), "{text}");
        assert!(
            !text.contains(".leases"),
            "no leases without replicas: {text}"
        );
        assert!(
            text.contains("arn:aws:s3:::certs/prod/index.json"),
            "{text}"
        );
    }

    #[test]
    fn one_policy_per_identity() {
        let s = settings(
            "dns_providers:\n  r53: {type: route53, role_arn: \"arn:aws:iam::111:role/dns\"}\ntargets:\n  mesh:\n    type: ssm\n    environments: [dev, prod]\n    parameters: {cert: \"/registrations/{env}/mesh/{mailbox}-cert\"}\n    aws: {profile: params}\n  fwd: {type: ecs, cluster: mesh, services: [forwarder]}\n",
        );
        let c = config(
            "certificates:\n  - name: web\n    domains: [web.example.test]\n    dns: {provider: r53}\n    targets: [s3, mesh, fwd]\n    vars: {mailbox: X1}\n",
        );
        let p = policies(&s, &c);
        let ids: Vec<&String> = p.keys().collect();
        assert_eq!(
            ids,
            ["arn:aws:iam::111:role/dns", "default", "profile:params"]
        );
        let ssm = p["profile:params"].to_string();
        assert!(
            ssm.contains("arn:aws:ssm:*:*:parameter/registrations/*/mesh/*-cert"),
            "{ssm}"
        );
        assert!(!p["arn:aws:iam::111:role/dns"].to_string().contains("s3:"));
        assert!(p["default"].to_string().contains("service/mesh/forwarder"));
    }

    #[test]
    fn watch_sources_and_the_settings_secrets_are_readable() {
        let s = settings(
            "secrets:\n  slack: {ssm: /certkeeper/slack-url}\n  unused: {ssm: /certkeeper/other}\nchannels:\n  ops: {type: slack, webhook_url: slack}\nwatch:\n  channels: [ops]\n  sources:\n    - {type: s3, bucket: backups, prefix: mesh/}\n    - {type: ssm, path: /registrations/prod/, aws: {profile: registry}}\n",
        );
        let c = config("certificates: []\n");
        let all = policies(&s, &c);
        let default = all["default"].to_string();
        assert!(default.contains("\"s3:ListBucket\""), "{default}");
        assert!(default.contains("\"arn:aws:s3:::backups\""), "{default}");
        assert!(default.contains("\"s3:prefix\":\"mesh/*\""), "{default}");
        assert!(default.contains("arn:aws:s3:::backups/mesh/*"), "{default}");
        assert!(
            default.contains("arn:aws:ssm:*:*:parameter/certkeeper/slack-url"),
            "{default}"
        );
        assert!(
            !default.contains("certkeeper/other"),
            "a secret nothing uses: {default}"
        );
        assert!(!default.contains("GetParametersByPath"), "{default}");
        let registry = all["profile:registry"].to_string();
        assert!(registry.contains("ssm:GetParametersByPath"), "{registry}");
        assert!(
            registry.contains("arn:aws:ssm:*:*:parameter/registrations/prod/*"),
            "{registry}"
        );
    }

    /// `seal --publish backup`: an s3 target no certificate publishes to may
    /// take sealed bundles under its key template, and nothing else (no
    /// manifest, no leases); a target of another type nobody uses grants
    /// nothing.
    #[test]
    fn an_s3_target_only_for_sealed_bundles_may_be_written_under_its_keys() {
        let s = settings(
            "targets:\n  backup: {type: s3, bucket: backups, prefix: mesh, sse: aws:kms, kms_key_id: alias/backup}\n  spare: {type: ecs, cluster: c, services: [svc]}\nreplicas: {lease_ttl: 60s, target: backup}\n",
        );
        let c = config("certificates:\n  - name: web\n    domains: [web.example.test]\n");
        let text = policies(&s, &c)["default"].to_string();
        assert!(text.contains("\"Sid\":\"S3SealBackup\""), "{text}");
        assert!(text.contains("arn:aws:s3:::backups/mesh/*/*"), "{text}");
        assert!(text.contains("kms:GenerateDataKey"), "{text}");
        assert!(!text.contains("backups/mesh/index.json"), "{text}");
        assert!(!text.contains("backups/mesh/.leases"), "{text}");
        assert!(!text.contains("service/c/svc"), "{text}");
        // The target the certificate uses is granted as before.
        assert!(text.contains("\"Sid\":\"S3PublishS3\""), "{text}");
        assert!(
            text.contains("arn:aws:s3:::certs/prod/index.json"),
            "{text}"
        );
    }

    #[test]
    fn a_rollout_may_switch_exactly_its_consumers() {
        let s = settings(
            "targets:\n  cdn: {type: iam, path: /cloudfront/web/}\nrollouts:\n  web:\n    target: cdn\n    aws: {profile: edge, region: eu-west-2}\n    steps:\n      - elb: small:443\n        verify: {endpoints: [small.example.test:443]}\n      - listener: arn:aws:elasticloadbalancing:eu-west-2:111:listener/app/web/1/2\n      - cloudfront: E2QWRUHAPOMQZL\n  gone:\n    target: cdn\n    steps:\n      - cloudfront: EGONE\n        verify: {endpoints: [gone.example.test:443]}\n",
        );
        let c = config(
            "certificates:\n  - name: web\n    domains: [web.example.test]\n    targets: [cdn]\n",
        );
        let all = policies(&s, &c);
        let edge = all["profile:edge"].to_string();
        assert!(
            edge.contains("arn:aws:cloudfront::*:distribution/E2QWRUHAPOMQZL"),
            "{edge}"
        );
        assert!(edge.contains("cloudfront:UpdateDistribution"), "{edge}");
        assert!(!edge.contains("ListDistributions"), "{edge}");
        assert!(
            edge.contains("arn:aws:elasticloadbalancing:eu-west-2:*:loadbalancer/small"),
            "{edge}"
        );
        assert!(
            edge.contains("\"arn:aws:elasticloadbalancing:eu-west-2:111:listener/app/web/1/2\""),
            "{edge}"
        );
        assert!(
            edge.contains("elasticloadbalancing:AddListenerCertificates"),
            "{edge}"
        );
        // A rollout of a certificate the repo does not have grants nothing.
        assert!(!edge.contains("EGONE"), "{edge}");
        assert!(!all["default"].to_string().contains("cloudfront:"));
    }
}
