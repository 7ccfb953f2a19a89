//! Checking the settings as a whole, after parsing: one small check per
//! section, in the order of the file's reference; the first problem is
//! reported with the file, line and field.

use super::*;

/// A problem: the field, a text to find its line by, the message.
struct Problem {
    field: String,
    needle: String,
    /// The line, when known without a needle.
    line: Option<usize>,
    message: String,
}

type Check = Result<(), Problem>;

fn problem(field: &str, needle: &str, message: impl Into<String>) -> Check {
    Err(Problem {
        field: field.to_string(),
        needle: needle.to_string(),
        line: None,
        message: message.into(),
    })
}

fn problem_at(field: &str, line: usize, message: impl Into<String>) -> Check {
    Err(Problem {
        field: field.to_string(),
        needle: String::new(),
        line: Some(line),
        message: message.into(),
    })
}

/// Every check, in order.
const CHECKS: &[fn(&Settings, &str) -> Check] = &[
    replicas,
    concurrency,
    issuers_present,
    issuers,
    config_repo_ssh,
    config_repo_https,
    allowed_zones,
    proxy,
    dns_providers,
    schedule,
    http,
    watch,
    channels,
    default_targets,
    secrets,
    targets,
    rollouts,
    nameservers,
];

impl Settings {
    pub(super) fn validate(&self, text: &str) -> Result<(), SettingsError> {
        for check in CHECKS {
            if let Err(p) = check(self, text) {
                let (line, column) = match p.line {
                    Some(line) => (line, 1),
                    None => yaml::find_line(text, &p.needle, 1),
                };
                return Err(SettingsError::Invalid(Located {
                    file: self.source.clone(),
                    line: Some(line),
                    column: Some(column),
                    field: p.field,
                    message: p.message,
                }));
            }
        }
        Ok(())
    }
}

/// The replicas' bucket is an s3 target whose keys are found by name.
fn replicas(s: &Settings, _: &str) -> Check {
    if let Some(r) = &s.replicas {
        match s.targets.get(&r.target) {
            Some(TargetSettings::S3(s3)) => {
                let template = s3
                    .key_template
                    .replace("{prefix}", "")
                    .replace("{name}", "")
                    .replace("{file}", "");
                if template.contains('{') {
                    return problem(
                        "replicas.target",
                        "replicas:",
                        format!(
                            "the s3 target {:?} has key_template {:?}; replicas find live sets by name, so only {{prefix}}, {{name}} and {{file}} may be used",
                            r.target, s3.key_template
                        ),
                    );
                }
            }
            _ => {
                return problem(
                    "replicas.target",
                    "replicas:",
                    format!("{:?} is not an s3 target of these settings", r.target),
                );
            }
        }
        if r.lease_ttl < Duration::from_secs(2) {
            return problem("replicas.lease_ttl", "lease_ttl", "must be at least 2s");
        }
    }
    Ok(())
}

/// At least one order and one publish at a time.
fn concurrency(s: &Settings, _: &str) -> Check {
    if s.max_concurrent_publishes == 0 {
        return problem(
            "max_concurrent_publishes",
            "max_concurrent_publishes",
            "must be at least 1",
        );
    }
    if s.max_concurrent_orders == 0 {
        return problem(
            "max_concurrent_orders",
            "max_concurrent_orders",
            "must be at least 1",
        );
    }
    Ok(())
}

/// At least one ACME issuer.
fn issuers_present(s: &Settings, _: &str) -> Check {
    if s.issuers.is_empty() {
        return problem("acme", "", "no ACME issuer: set `acme:` or `issuers:`");
    }
    Ok(())
}

/// Each issuer: https URLs, one EAB key source, newOrder concurrency.
fn issuers(s: &Settings, text: &str) -> Check {
    for (name, issuer) in &s.issuers {
        let field = if name == DEFAULT_ISSUER && text.contains("\nacme:") {
            "acme.directory_url".to_string()
        } else {
            format!("issuers.{name}.directory_url")
        };
        for url in std::iter::once(&issuer.directory_url).chain(&issuer.staging_directory_url) {
            if !url.starts_with("https://") {
                return problem(&field, url, format!("{url:?} must be an https:// URL"));
            }
        }
        if let Some(eab) = &issuer.eab
            && eab.hmac_key_file.is_some() == eab.hmac_key_env.is_some()
        {
            return problem(
                &format!("issuers.{name}.eab"),
                "eab:",
                "needs exactly one of hmac_key_file and hmac_key_env",
            );
        }
        if let Some(limit) = issuer.new_order_limit
            && (limit.orders == 0 || limit.per < Duration::from_secs(1))
        {
            return problem(
                &format!("issuers.{name}.new_order_limit"),
                "new_order_limit",
                "needs orders of at least 1 and per of at least 1s",
            );
        }
        if let Some(limit) = issuer.registered_domain_limit
            && (limit.certificates == 0 || limit.per < Duration::from_secs(1))
        {
            return problem(
                &format!("issuers.{name}.registered_domain_limit"),
                "registered_domain_limit",
                "needs certificates of at least 1 and per of at least 1s",
            );
        }
        if issuer.max_names == Some(0) {
            return problem(
                &format!("issuers.{name}.max_names"),
                "max_names",
                "needs at least 1",
            );
        }
        if issuer.new_orders_in_flight == Some(0) {
            let prefix = if name == DEFAULT_ISSUER && text.contains("\nacme:") {
                "acme".to_string()
            } else {
                format!("issuers.{name}")
            };
            return problem(
                &format!("{prefix}.new_orders_in_flight"),
                "new_orders_in_flight",
                "must be at least 1",
            );
        }
    }
    Ok(())
}

/// ssh host keys are pinned.
fn config_repo_ssh(s: &Settings, _: &str) -> Check {
    if let Some(ssh) = &s.config_repo.ssh
        && ssh.known_hosts_file.is_none()
        && ssh.host_key_sha256.is_none()
    {
        return problem(
            "config_repo.ssh",
            "ssh:",
            "needs known_hosts_file or host_key_sha256: unknown host keys are refused",
        );
    }
    Ok(())
}

/// One https token source.
fn config_repo_https(s: &Settings, _: &str) -> Check {
    if let Some(https) = &s.config_repo.https
        && https.token_file.is_some() == https.token_env.is_some()
    {
        return problem(
            "config_repo.https",
            "https:",
            "needs exactly one of token_file and token_env",
        );
    }
    Ok(())
}

/// The zone allowlist holds domain names.
fn allowed_zones(s: &Settings, _: &str) -> Check {
    if let Some(zones) = &s.allowed_zones {
        for zone in zones {
            if let Err(why) = crate::config::domain::validate(&zone.to_ascii_lowercase()) {
                return problem("allowed_zones", zone, why.to_string());
            }
        }
    }
    Ok(())
}

/// The proxy URL is one certkeeper can tunnel through.
fn proxy(s: &Settings, _: &str) -> Check {
    match (&s.proxy, s.proxy()) {
        // Located by its value (other sections have a `url:` too); the
        // message shows it without credentials.
        (Some(p), Err(e)) => problem("proxy.url", &p.url, e.to_string()),
        _ => Ok(()),
    }
}

/// Each DNS provider's addresses and options fit together.
fn dns_providers(s: &Settings, _: &str) -> Check {
    for (name, provider) in &s.dns_providers {
        if let DnsProviderSettings::Rfc2136(r) = provider
            && r.nameserver.parse::<std::net::SocketAddr>().is_err()
        {
            return problem(
                &format!("dns_providers.{name}.nameserver"),
                &r.nameserver,
                format!("{:?} is not an ip:port address", r.nameserver),
            );
        }
        if let DnsProviderSettings::Route53(r) = provider
            && r.external_id.is_some()
            && r.role_arn.is_none()
        {
            return problem(
                &format!("dns_providers.{name}.external_id"),
                "external_id",
                "is only used with role_arn",
            );
        }
    }
    Ok(())
}

/// The cron expression and time zone parse.
fn schedule(s: &Settings, _: &str) -> Check {
    if let Err(e) = s.schedule.build() {
        let (field, needle) = match e {
            crate::schedule::ScheduleError::TimeZone(_) => ("schedule.timezone", "timezone"),
            _ => ("schedule.cron", "cron"),
        };
        return problem(field, needle, e.to_string());
    }
    Ok(())
}

/// The listener is an address.
fn http(s: &Settings, _: &str) -> Check {
    if let Some(http) = &s.http
        && http.listen.parse::<std::net::SocketAddr>().is_err()
    {
        return problem(
            "http.listen",
            &http.listen,
            format!("{:?} is not an ip:port address", http.listen),
        );
    }
    Ok(())
}

/// Watch alerts go to configured channels; contacts are mailed.
fn watch(s: &Settings, _: &str) -> Check {
    if let Some(watch) = &s.watch {
        if let Some(c) = &watch.contact_channel {
            match s.channels.get(c) {
                Some(ChannelSettings::Email { .. }) => {}
                Some(_) => {
                    return problem(
                        "watch.contact_channel",
                        "contact_channel:",
                        format!("{c:?} is not an email channel (contacts are mailed)"),
                    );
                }
                None => {
                    return problem(
                        "watch.contact_channel",
                        "contact_channel:",
                        format!(
                            "unknown channel {c:?} (channels: {:?})",
                            s.channels.keys().collect::<Vec<_>>()
                        ),
                    );
                }
            }
        }
        for c in &watch.channels {
            if !s.channels.contains_key(c) {
                return problem(
                    "watch.channels",
                    c,
                    format!(
                        "unknown channel {c:?} (channels: {:?})",
                        s.channels.keys().collect::<Vec<_>>()
                    ),
                );
            }
        }
    }
    Ok(())
}

/// Channel URLs and keys are named secrets.
fn channels(s: &Settings, _: &str) -> Check {
    for (name, channel) in &s.channels {
        let secrets: Vec<&String> = match channel {
            ChannelSettings::Slack { webhook_url } => vec![webhook_url],
            ChannelSettings::Webhook { url, hmac_secret } => {
                std::iter::once(url).chain(hmac_secret).collect()
            }
            ChannelSettings::Email { password, .. } => password.iter().collect(),
        };
        for secret in secrets {
            if !s.secrets.contains_key(secret) {
                return problem(
                    &format!("channels.{name}"),
                    secret,
                    format!(
                        "{secret:?} is not a name in `secrets:` (URLs and keys are secrets, never written here)"
                    ),
                );
            }
        }
    }
    Ok(())
}

/// Default targets exist.
fn default_targets(s: &Settings, _: &str) -> Check {
    for name in s.default_targets.iter().flatten() {
        if !s.targets.contains_key(name) {
            return problem(
                "default_targets",
                name,
                format!("unknown target {name:?} (targets: {:?})", s.target_names()),
            );
        }
    }
    Ok(())
}

/// Each secret has exactly one source.
fn secrets(s: &Settings, _: &str) -> Check {
    for (name, secret) in &s.secrets {
        let sources = [
            secret.file.is_some(),
            secret.env.is_some(),
            secret.ssm.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            return problem(
                &format!("secrets.{name}"),
                &format!("{name}:"),
                "needs exactly one of file, env and ssm",
            );
        }
    }
    Ok(())
}

/// Each target's own fields.
fn targets(s: &Settings, text: &str) -> Check {
    for (name, target) in &s.targets {
        let found = match target {
            TargetSettings::S3(s3) if s3.bucket.is_empty() => {
                Some(("bucket", "must not be empty".to_string()))
            }
            TargetSettings::S3(s3) if s3.kms_key_id.is_some() && s3.sse != Sse::Kms => Some((
                "kms_key_id",
                "is only used with `sse: aws:kms`".to_string(),
            )),
            TargetSettings::S3(s3) if !s3.key_template.contains("{file}") => Some((
                "key_template",
                "must contain {file} (each file needs its own key)".to_string(),
            )),
            TargetSettings::Ssm(ssm) => ssm
                .parameters
                .keys()
                .find(|k| ssm_file(k).is_none())
                .map(|k| {
                    (
                        "parameters",
                        format!(
                            "unknown file {k:?} (use cert, chain, fullchain, key, pkcs12, fingerprints)"
                        ),
                    )
                })
                .or_else(|| {
                    let uses_env = ssm.parameters.values().any(|p| p.contains("{env}"));
                    (uses_env && ssm.environments.is_empty()).then(|| {
                        (
                            "environments",
                            "parameters use {env} but no environments are listed".to_string(),
                        )
                    })
                }),
            TargetSettings::Iam(iam) if !iam.path.starts_with('/') || !iam.path.ends_with('/') => {
                Some(("path", "must start and end with '/'".to_string()))
            }
            TargetSettings::Files(files) => files
                .files
                .iter()
                .find_map(|f| {
                    if !crate::store::is_live_file(&f.source) {
                        Some(("files", format!("unknown source file {:?}", f.source)))
                    } else if f.mode.as_deref().is_some_and(|m| u32::from_str_radix(m, 8).is_err()) {
                        Some(("files", format!("mode {:?} is not octal", f.mode.as_deref().unwrap_or(""))))
                    } else if !f.path.starts_with('/') {
                        Some(("files", format!("path {:?} must be absolute", f.path)))
                    } else {
                        None
                    }
                }),
            TargetSettings::Ecs(ecs) if ecs.services.is_empty() => {
                Some(("services", "must list at least one service".to_string()))
            }
            _ => None,
        };
        if let Some((field, message)) = found {
            let field = if name == S3_TARGET && s.s3.is_some() {
                format!("s3.{field}")
            } else {
                format!("targets.{name}.{field}")
            };
            // Point at the field, or at the target when the field is
            // missing from it.
            let key = field.rsplit('.').next().unwrap_or("");
            let needle = if text.contains(&format!("{key}:")) {
                format!("{key}:")
            } else {
                format!("{name}:")
            };
            return problem(&field, &needle, message);
        }
    }
    Ok(())
}

/// A rollout names an iam or acm target, and steps that each name one
/// consumer; the canary (the first) says how to verify it.
fn rollouts(s: &Settings, _: &str) -> Check {
    for (name, rollout) in &s.rollouts {
        let field = |f: &str| format!("rollouts.{name}.{f}");
        match s.targets.get(&rollout.target) {
            Some(TargetSettings::Iam(_) | TargetSettings::Acm(_)) => {}
            Some(_) => {
                return problem(
                    &field("target"),
                    &format!("target: {}", rollout.target),
                    format!(
                        "{:?} is not an iam or acm target (consumers reference IAM or ACM certificates)",
                        rollout.target
                    ),
                );
            }
            None => {
                return problem(
                    &field("target"),
                    &format!("target: {}", rollout.target),
                    format!(
                        "unknown target {:?} (defined: {})",
                        rollout.target,
                        s.target_names().join(", ")
                    ),
                );
            }
        }
        if rollout.steps.is_empty() {
            return problem(&field("steps"), &format!("{name}:"), "lists no consumer");
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, step) in rollout.steps.iter().enumerate() {
            let step_field = field(&format!("steps[{i}]"));
            let line = rollout.step_lines.get(i).copied().unwrap_or(1);
            let consumer = match step.consumer() {
                Ok(c) => c,
                Err(message) => return problem_at(&step_field, line, message),
            };
            if i == 0 && consumer == StepConsumer::Previous {
                return problem_at(
                    &step_field,
                    line,
                    "the canary (the first step) must be one consumer, not `previous`",
                );
            }
            if i == 0 && step.verify.is_none() {
                return problem_at(
                    &step_field,
                    line,
                    "the canary (the first step) needs `verify:` (the endpoints that must serve the new certificate before the rest is switched)",
                );
            }
            let named = format!("{consumer:?}");
            if !seen.insert(named) {
                return problem_at(&step_field, line, "this consumer is listed twice");
            }
        }
    }
    Ok(())
}

/// Propagation-check nameservers are addresses.
fn nameservers(s: &Settings, _: &str) -> Check {
    for ns in &s.dns.nameservers {
        if ns.parse::<std::net::SocketAddr>().is_err() {
            return problem(
                "dns.nameservers",
                ns,
                format!("{ns:?} is not an ip:port address"),
            );
        }
    }
    Ok(())
}
