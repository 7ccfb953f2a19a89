//! The local settings file: where the config repo is, where state lives, which
//! CA and AWS endpoints to use.
//!
//! Settings are local to the machine and never come from the config repo,
//! because they decide who may issue what. Defaults live here and only here.

use crate::yaml::{self, Located};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod acme;
mod dns;
mod repo;
mod rollout;
mod targets;
mod validate;
mod watch;

pub use acme::*;
pub use dns::*;
pub use repo::*;
pub use rollout::*;
pub use targets::*;
pub use watch::*;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read settings file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Located),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub config_repo: RepoSettings,
    pub state_dir: PathBuf,
    /// Shorthand for one issuer named `default`.
    #[serde(default)]
    pub acme: Option<AcmeSettings>,
    /// Named ACME issuers; certificates pick one (and fallbacks) by name.
    #[serde(default)]
    pub issuers: std::collections::BTreeMap<String, AcmeSettings>,
    #[serde(default)]
    pub aws: AwsSettings,
    #[serde(default)]
    pub dns: DnsSettings,
    /// Named DNS providers; certificates pick one by name. Absent: one
    /// provider named `route53` with the default AWS credentials.
    #[serde(default)]
    pub dns_providers: std::collections::BTreeMap<String, DnsProviderSettings>,
    /// Shorthand for a publish target named `s3`.
    #[serde(default)]
    pub s3: Option<S3Settings>,
    /// Named publish targets; certificates list theirs by name, in order.
    #[serde(default)]
    pub targets: std::collections::BTreeMap<String, TargetSettings>,
    /// Targets of certificates that list none. Default: `[s3]` when `s3:`
    /// is set, else none.
    #[serde(default)]
    pub default_targets: Option<Vec<String>>,
    /// Named secrets (PKCS#12 passwords) certificates refer to by name, so
    /// the config repo never holds them or chooses where they are read from.
    #[serde(default)]
    pub secrets: std::collections::BTreeMap<String, SecretSource>,
    #[serde(default)]
    pub log_format: LogFormat,
    /// Orders in flight at once, their waits included (INSYNC,
    /// propagation, the CA's validation). A waiting order costs a few KiB
    /// and no CPU, so this is a memory bound, not a pace: the CA is paced
    /// by its issuer's request rate and newOrder limit.
    #[serde(default = "defaults::max_concurrent_orders")]
    pub max_concurrent_orders: usize,
    /// Certificates stored, published and verified at once (the work after
    /// an order, which talks to the targets).
    #[serde(default = "defaults::max_concurrent_publishes")]
    pub max_concurrent_publishes: usize,
    /// The forward proxy for outbound HTTP(S) (ACME, AWS, git https, alert
    /// channels). Absent: HTTPS_PROXY / HTTP_PROXY / NO_PROXY.
    #[serde(default)]
    pub proxy: Option<ProxySettings>,
    /// Zones certificates may be issued in, whatever the repo says. Absent:
    /// the zones the DNS providers hold.
    #[serde(default)]
    pub allowed_zones: Option<Vec<String>>,
    /// Only use commits with an SSH signature by one of these signers.
    #[serde(default)]
    pub require_signed_commits: Option<SignedCommits>,
    /// When the daemon (`certkeeper run`) renews.
    #[serde(default)]
    pub schedule: ScheduleSettings,
    /// On SIGTERM: no new orders; orders in flight get this long to finish
    /// before they are cancelled (TXT records are removed either way).
    #[serde(
        default = "defaults::shutdown_grace",
        with = "crate::duration::serde_human"
    )]
    pub shutdown_grace: Duration,
    /// Certificates to watch for expiry, from any CA, and how to alert.
    #[serde(default)]
    pub watch: Option<WatchSettings>,
    /// Named alert channels (`watch.channels` lists the ones used).
    #[serde(default)]
    pub channels: std::collections::BTreeMap<String, ChannelSettings>,
    /// Thresholds of `certkeeper status` and `/healthz`.
    #[serde(default)]
    pub health: HealthSettings,
    /// The daemon's HTTP listener (/healthz, /status, /metrics); off when
    /// absent.
    #[serde(default)]
    pub http: Option<HttpSettings>,
    /// Several replicas sharing one bucket: leases, fencing, bootstrap.
    #[serde(default)]
    pub replicas: Option<ReplicaSettings>,
    /// Per certificate name: what serves it, switched to each new copy
    /// canary first (CloudFront, classic ELB, ALB/NLB listeners).
    #[serde(default)]
    pub rollouts: std::collections::BTreeMap<String, RolloutSettings>,
    /// The file this was read from, for error messages.
    #[serde(skip)]
    pub source: PathBuf,
}

/// `proxy:` — a forward proxy every outbound HTTP(S) connection goes
/// through (HTTP CONNECT), except to the `no_proxy` destinations.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySettings {
    /// `http://host:port`, with `user:password@` when the proxy asks for
    /// them (never logged).
    pub url: String,
    /// Destinations reached directly: names, `.suffix`es, IPs, CIDR blocks
    /// (NO_PROXY's syntax).
    #[serde(default)]
    pub no_proxy: Vec<String>,
}

/// The URL's credentials never print.
impl std::fmt::Debug for ProxySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxySettings")
            .field("url", &crate::proxy::without_credentials(&self.url))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

impl Settings {
    /// The proxy outbound connections use: the setting, else the
    /// environment's.
    pub fn proxy(&self) -> Result<crate::proxy::Proxy, crate::proxy::ProxyError> {
        match &self.proxy {
            Some(p) => crate::proxy::Proxy::configured(&p.url, &p.no_proxy),
            None => Ok(crate::proxy::Proxy::from_env()),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSettings {
    /// Five-field cron (minute hour day month weekday). Default: daily at a
    /// minute derived from the host name.
    pub cron: Option<String>,
    /// IANA time zone of `cron`; default UTC.
    pub timezone: Option<String>,
}

impl ScheduleSettings {
    pub fn build(&self) -> Result<crate::schedule::Schedule, crate::schedule::ScheduleError> {
        match &self.cron {
            Some(c) => crate::schedule::Schedule::new(c, self.timezone.as_deref()),
            None => {
                let host = crate::schedule::default_for_host(&crate::schedule::host_name());
                match &self.timezone {
                    Some(tz) => crate::schedule::Schedule::new(host.expression(), Some(tz)),
                    None => Ok(host),
                }
            }
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSettings {
    /// WARNING below this many days left (default 14).
    pub warning_days: Option<i64>,
    /// CRITICAL below this many days left (default 7).
    pub critical_days: Option<i64>,
    /// CRITICAL when the last run finished longer ago (default 36h).
    #[serde(default, with = "optional_duration")]
    pub max_run_age: Option<Duration>,
}

mod optional_duration {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| crate::duration::parse(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Running as several replicas (VMs, a Kubernetes Deployment) with no
/// coordinator but S3: per-certificate leases taken with conditional
/// writes, publishes fenced by the lease generation, and new replicas
/// bootstrapped from the bucket.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaSettings {
    /// The `s3` publish target whose bucket and prefix hold the live sets
    /// and the leases (`<prefix>/.leases/<name>`). Default `s3`.
    #[serde(default = "defaults::replica_target")]
    pub target: String,
    /// How long a lease lasts without renewal; a holder renews it at a
    /// third of this. A replica that stops for longer loses it.
    #[serde(default = "defaults::lease_ttl", with = "crate::duration::serde_human")]
    pub lease_ttl: Duration,
    /// This replica's name in leases; default: host name and process id.
    #[serde(default)]
    pub holder: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// `ip:port`; default 127.0.0.1:9469. Anything but loopback exposes the
    /// status (names, domains, errors) to the network.
    #[serde(default = "defaults::http_listen")]
    pub listen: String,
}

/// Where a secret is read from; exactly one of the three.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    pub file: Option<PathBuf>,
    pub env: Option<String>,
    /// An SSM SecureString parameter name.
    pub ssm: Option<String>,
}

pub use crate::aws::{AwsIdentity, AwsSettings};
pub use crate::logging::LogFormat;

mod defaults {
    use std::time::Duration;
    pub fn branch() -> String {
        "main".into()
    }
    pub fn yes() -> bool {
        true
    }
    pub fn https_username() -> String {
        "x-access-token".into()
    }
    /// Orders mostly wait (DNS batch window, INSYNC, propagation, the
    /// CA's validation): with every due certificate's order in flight, a
    /// run pays Route53's INSYNC wait about once instead of once per 16
    /// certificates (BENCHMARKS.md, 2026-12-04).
    pub fn max_concurrent_orders() -> usize {
        1000
    }
    /// Where the 1,000-certificate bench stopped getting faster with moto
    /// as the targets (BENCHMARKS.md, 2026-12-03).
    pub fn max_concurrent_publishes() -> usize {
        16
    }
    pub fn order_timeout() -> Duration {
        Duration::from_secs(300)
    }
    pub fn propagation_timeout() -> Duration {
        Duration::from_secs(300)
    }
    pub fn replica_target() -> String {
        super::S3_TARGET.to_string()
    }

    pub fn lease_ttl() -> Duration {
        Duration::from_secs(120)
    }

    pub fn s3_key_template() -> String {
        "{prefix}/{name}/{file}".into()
    }
    pub fn iam_path() -> String {
        "/cloudfront/{name}/".into()
    }
    pub fn iam_name() -> String {
        "{domain}_{date}".into()
    }
    pub fn iam_keep() -> usize {
        2
    }
    pub fn warn_days() -> i64 {
        30
    }
    pub fn critical_days() -> i64 {
        7
    }
    pub fn failures_before_alert() -> u32 {
        3
    }
    pub fn warn_template() -> String {
        "The certificate for {name} in {environment} will expire within the next {duration} days"
            .into()
    }
    pub fn critical_template() -> String {
        "URGENT: the certificate for {name} in {environment} expires within {duration} days (not after {not_after}); renew it now".into()
    }
    /// The mTLS client runbook's email: new keys made on the client's side,
    /// only the public key sent.
    pub fn contact_template() -> String {
        "Hello,\n\nThe client certificate {name} for the {environment} environment is due for renewal: it expires within the next {duration} days ({not_after}).\n\nPlease generate a new key pair as below and send us only the public key (public-key.pem). Never send the private key; keep it where the client runs.\n\n  openssl genrsa -out private-key.pem 3072\n  openssl rsa -in private-key.pem -pubout -out public-key.pem\n\nWe will send the new certificate back encrypted to that public key, with the openssl commands to open it.".into()
    }
    pub fn watch_name() -> String {
        "{stem}".into()
    }
    pub fn shutdown_grace() -> Duration {
        Duration::from_secs(60)
    }
    pub fn cloudfront_deploy_timeout() -> Duration {
        Duration::from_secs(30 * 60)
    }
    pub fn rollout_retry() -> Duration {
        Duration::from_secs(24 * 3600)
    }
    pub fn http_listen() -> String {
        "127.0.0.1:9469".into()
    }
    pub fn reload_timeout() -> Duration {
        Duration::from_secs(60)
    }
}

impl Settings {
    pub fn load(path: &Path) -> Result<Self, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, SettingsError> {
        let mut settings: Settings = yaml::parse(path, text).map_err(SettingsError::Invalid)?;
        settings.source = path.to_path_buf();
        // Relative paths are relative to the settings file, not to wherever
        // cron happened to start us.
        let base = path.parent().unwrap_or(Path::new("."));
        settings.state_dir = base.join(&settings.state_dir);
        if let Some(acme) = settings.acme.take() {
            if settings.issuers.contains_key(DEFAULT_ISSUER) {
                let (line, column) = yaml::find_line(text, "acme:", 1);
                return Err(SettingsError::Invalid(Located {
                    file: path.to_path_buf(),
                    line: Some(line),
                    column: Some(column),
                    field: "acme".into(),
                    message: "conflicts with issuers.default; use one or the other".into(),
                }));
            }
            settings.issuers.insert(DEFAULT_ISSUER.to_string(), acme);
        }
        for issuer in settings.issuers.values_mut() {
            issuer.root_ca_file = issuer.root_ca_file.as_ref().map(|p| base.join(p));
            if let Some(eab) = &mut issuer.eab {
                eab.hmac_key_file = eab.hmac_key_file.as_ref().map(|p| base.join(p));
            }
        }
        let repo = &mut settings.config_repo;
        if let Some(ssh) = &mut repo.ssh {
            ssh.private_key_file = base.join(&ssh.private_key_file);
            ssh.known_hosts_file = ssh.known_hosts_file.as_ref().map(|p| base.join(p));
        }
        if let Some(https) = &mut repo.https {
            https.token_file = https.token_file.as_ref().map(|p| base.join(p));
        }
        for provider in settings.dns_providers.values_mut() {
            if let DnsProviderSettings::Rfc2136(r) = provider {
                r.tsig_secret_file = base.join(&r.tsig_secret_file);
            }
        }
        if settings.dns_providers.is_empty() {
            settings.dns_providers.insert(
                DEFAULT_DNS_PROVIDER.to_string(),
                DnsProviderSettings::Route53(Route53Settings::default()),
            );
        }
        for secret in settings.secrets.values_mut() {
            secret.file = secret.file.as_ref().map(|p| base.join(p));
        }
        let had_s3 = settings.s3.is_some();
        if let Some(s3) = settings.s3.clone() {
            if settings.targets.contains_key(S3_TARGET) {
                let (line, column) = yaml::find_line(text, "s3:", 1);
                return Err(SettingsError::Invalid(Located {
                    file: path.to_path_buf(),
                    line: Some(line),
                    column: Some(column),
                    field: "s3".into(),
                    message: "conflicts with targets.s3; use one or the other".into(),
                }));
            }
            settings
                .targets
                .insert(S3_TARGET.to_string(), TargetSettings::S3(s3));
        }
        if settings.default_targets.is_none() {
            settings.default_targets = Some(if had_s3 {
                vec![S3_TARGET.to_string()]
            } else {
                Vec::new()
            });
        }
        if let Some(signed) = &mut settings.require_signed_commits {
            signed.allowed_signers = base.join(&signed.allowed_signers);
        }
        if is_local_path(&settings.config_repo.url) {
            settings.config_repo.url = base.join(&settings.config_repo.url).display().to_string();
        }
        settings.locate_rollout_steps(text);
        settings.validate(text)?;
        Ok(settings)
    }
}

impl Settings {
    /// The line of every rollout step, for errors found at run time (an
    /// unknown distribution, load balancer or listener).
    fn locate_rollout_steps(&mut self, text: &str) {
        let (start, _) = yaml::find_line(text, "rollouts:", 1);
        for (name, rollout) in self.rollouts.iter_mut() {
            let (line, _) = yaml::find_line(text, &format!("{name}:"), start);
            let (mut at, _) = yaml::find_line(text, "steps:", line);
            rollout.step_lines = rollout
                .steps
                .iter()
                .map(|step| {
                    let needle = step
                        .cloudfront
                        .as_deref()
                        .or(step.elb.as_deref())
                        .or(step.listener.as_deref())
                        .unwrap_or("-");
                    (at, _) = yaml::find_line(text, needle, at + 1);
                    at
                })
                .collect();
        }
    }

    pub fn target_names(&self) -> Vec<String> {
        self.targets.keys().cloned().collect()
    }

    /// The issuer a certificate uses when it names none.
    pub fn default_issuer(&self) -> Option<&str> {
        if self.issuers.contains_key(DEFAULT_ISSUER) {
            Some(DEFAULT_ISSUER)
        } else if self.issuers.len() == 1 {
            self.issuers.keys().next().map(String::as_str)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests;
