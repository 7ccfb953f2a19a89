//! Checking the settings as a whole, after parsing: every problem names
//! the file, line and field.

use super::*;

impl Settings {
    pub(super) fn validate(&self, text: &str) -> Result<(), SettingsError> {
        let fail = |field: &str, needle: &str, message: String| {
            let (line, column) = yaml::find_line(text, needle, 1);
            SettingsError::Invalid(Located {
                file: self.source.clone(),
                line: Some(line),
                column: Some(column),
                field: field.into(),
                message,
            })
        };
        if let Some(r) = &self.replicas {
            match self.targets.get(&r.target) {
                Some(TargetSettings::S3(s3)) => {
                    let template = s3
                        .key_template
                        .replace("{prefix}", "")
                        .replace("{name}", "")
                        .replace("{file}", "");
                    if template.contains('{') {
                        return Err(fail(
                            "replicas.target",
                            "replicas:",
                            format!(
                                "the s3 target {:?} has key_template {:?}; replicas find live sets by name, so only {{prefix}}, {{name}} and {{file}} may be used",
                                r.target, s3.key_template
                            ),
                        ));
                    }
                }
                _ => {
                    return Err(fail(
                        "replicas.target",
                        "replicas:",
                        format!("{:?} is not an s3 target of these settings", r.target),
                    ));
                }
            }
            if r.lease_ttl < Duration::from_secs(2) {
                return Err(fail(
                    "replicas.lease_ttl",
                    "lease_ttl",
                    "must be at least 2s".into(),
                ));
            }
        }
        if self.max_concurrent_orders == 0 {
            return Err(fail(
                "max_concurrent_orders",
                "max_concurrent_orders",
                "must be at least 1".into(),
            ));
        }
        if self.issuers.is_empty() {
            return Err(fail(
                "acme",
                "",
                "no ACME issuer: set `acme:` or `issuers:`".into(),
            ));
        }
        for (name, issuer) in &self.issuers {
            let field = if name == DEFAULT_ISSUER && text.contains("\nacme:") {
                "acme.directory_url".to_string()
            } else {
                format!("issuers.{name}.directory_url")
            };
            for url in std::iter::once(&issuer.directory_url).chain(&issuer.staging_directory_url) {
                if !url.starts_with("https://") {
                    return Err(fail(
                        &field,
                        url,
                        format!("{url:?} must be an https:// URL"),
                    ));
                }
            }
            if let Some(eab) = &issuer.eab
                && eab.hmac_key_file.is_some() == eab.hmac_key_env.is_some()
            {
                return Err(fail(
                    &format!("issuers.{name}.eab"),
                    "eab:",
                    "needs exactly one of hmac_key_file and hmac_key_env".into(),
                ));
            }
            if issuer.new_orders_in_flight == Some(0) {
                let prefix = if name == DEFAULT_ISSUER && text.contains("\nacme:") {
                    "acme".to_string()
                } else {
                    format!("issuers.{name}")
                };
                return Err(fail(
                    &format!("{prefix}.new_orders_in_flight"),
                    "new_orders_in_flight",
                    "must be at least 1".into(),
                ));
            }
        }
        if let Some(ssh) = &self.config_repo.ssh
            && ssh.known_hosts_file.is_none()
            && ssh.host_key_sha256.is_none()
        {
            return Err(fail(
                "config_repo.ssh",
                "ssh:",
                "needs known_hosts_file or host_key_sha256: unknown host keys are refused".into(),
            ));
        }
        if let Some(https) = &self.config_repo.https
            && https.token_file.is_some() == https.token_env.is_some()
        {
            return Err(fail(
                "config_repo.https",
                "https:",
                "needs exactly one of token_file and token_env".into(),
            ));
        }
        if let Some(zones) = &self.allowed_zones {
            for zone in zones {
                if let Err(why) = crate::config::domain::validate(&zone.to_ascii_lowercase()) {
                    return Err(fail("allowed_zones", zone, why.to_string()));
                }
            }
        }
        for (name, provider) in &self.dns_providers {
            if let DnsProviderSettings::Rfc2136(r) = provider
                && r.nameserver.parse::<std::net::SocketAddr>().is_err()
            {
                return Err(fail(
                    &format!("dns_providers.{name}.nameserver"),
                    &r.nameserver,
                    format!("{:?} is not an ip:port address", r.nameserver),
                ));
            }
            if let DnsProviderSettings::Route53(r) = provider
                && r.external_id.is_some()
                && r.role_arn.is_none()
            {
                return Err(fail(
                    &format!("dns_providers.{name}.external_id"),
                    "external_id",
                    "is only used with role_arn".into(),
                ));
            }
        }
        if let Err(e) = self.schedule.build() {
            let (field, needle) = match e {
                crate::schedule::ScheduleError::TimeZone(_) => ("schedule.timezone", "timezone"),
                _ => ("schedule.cron", "cron"),
            };
            return Err(fail(field, needle, e.to_string()));
        }
        if let Some(http) = &self.http
            && http.listen.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(fail(
                "http.listen",
                &http.listen,
                format!("{:?} is not an ip:port address", http.listen),
            ));
        }
        if let Some(watch) = &self.watch {
            for c in &watch.channels {
                if !self.channels.contains_key(c) {
                    return Err(fail(
                        "watch.channels",
                        c,
                        format!(
                            "unknown channel {c:?} (channels: {:?})",
                            self.channels.keys().collect::<Vec<_>>()
                        ),
                    ));
                }
            }
        }
        for (name, channel) in &self.channels {
            let secrets: Vec<&String> = match channel {
                ChannelSettings::Slack { webhook_url } => vec![webhook_url],
                ChannelSettings::Webhook { url, hmac_secret } => {
                    std::iter::once(url).chain(hmac_secret).collect()
                }
                ChannelSettings::Email { password, .. } => password.iter().collect(),
            };
            for secret in secrets {
                if !self.secrets.contains_key(secret) {
                    return Err(fail(
                        &format!("channels.{name}"),
                        secret,
                        format!(
                            "{secret:?} is not a name in `secrets:` (URLs and keys are secrets, never written here)"
                        ),
                    ));
                }
            }
        }
        for name in self.default_targets.iter().flatten() {
            if !self.targets.contains_key(name) {
                return Err(fail(
                    "default_targets",
                    name,
                    format!(
                        "unknown target {name:?} (targets: {:?})",
                        self.target_names()
                    ),
                ));
            }
        }
        for (name, secret) in &self.secrets {
            let sources = [
                secret.file.is_some(),
                secret.env.is_some(),
                secret.ssm.is_some(),
            ];
            if sources.iter().filter(|s| **s).count() != 1 {
                return Err(fail(
                    &format!("secrets.{name}"),
                    &format!("{name}:"),
                    "needs exactly one of file, env and ssm".into(),
                ));
            }
        }
        for (name, target) in &self.targets {
            let problem = match target {
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
            if let Some((field, message)) = problem {
                let field = if name == S3_TARGET && self.s3.is_some() {
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
                return Err(fail(&field, &needle, message));
            }
        }
        for ns in &self.dns.nameservers {
            if ns.parse::<std::net::SocketAddr>().is_err() {
                return Err(fail(
                    "dns.nameservers",
                    ns,
                    format!("{ns:?} is not an ip:port address"),
                ));
            }
        }
        Ok(())
    }
}
