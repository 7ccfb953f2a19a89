//! The local settings file: where the config repo is, where state lives, which
//! CA and AWS endpoints to use.
//!
//! Settings are local to the machine and never come from the config repo,
//! because they decide who may issue what. Defaults live here and only here.

use crate::yaml::{self, Located};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod validate;

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
    #[serde(default = "defaults::max_concurrent_orders")]
    pub max_concurrent_orders: usize,
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
    /// The file this was read from, for error messages.
    #[serde(skip)]
    pub source: PathBuf,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchSettings {
    /// Alerts start this many days before expiry (default 30).
    #[serde(default = "defaults::warn_days")]
    pub warn_days: i64,
    /// The louder template from here on, and for expired ones (default 7).
    #[serde(default = "defaults::critical_days")]
    pub critical_days: i64,
    /// Variables: {name}, {environment}, {owner}, {duration} (days left),
    /// {not_after}, {source}, and any label.
    #[serde(default = "defaults::warn_template")]
    pub template: String,
    #[serde(default = "defaults::critical_template")]
    pub critical_template: String,
    /// Alert on a managed certificate after this many failed renewals in a
    /// row (and when it gets under critical_days); a recovery message
    /// follows when it is fixed.
    #[serde(default = "defaults::failures_before_alert")]
    pub failures_before_alert: u32,
    #[serde(default)]
    pub sources: Vec<WatchSource>,
    /// Channel names from `channels:`.
    #[serde(default)]
    pub channels: Vec<String>,
}

/// Where watched certificates are found.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum WatchSource {
    Files(WatchFiles),
    Ssm(WatchSsm),
    S3(WatchS3),
    Endpoint(WatchEndpoint),
}

/// A file, or every `.pem`, `.crt`, `.cer`, `.der`, `.pfx`, `.p12` under a
/// folder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchFiles {
    pub path: PathBuf,
    /// Name template; `{stem}` is the file name without extension, `{dir}`
    /// its folder's name. Default `{stem}`.
    #[serde(default = "defaults::watch_name")]
    pub name: String,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// `secrets:` name of the password of `.pfx`/`.p12` files.
    pub pkcs12_password: Option<String>,
}

/// SSM parameters under a path whose values are PEM certificates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchSsm {
    pub path: String,
    /// Name template; `{stem}` is the last path segment. Default `{stem}`.
    #[serde(default = "defaults::watch_name")]
    pub name: String,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub aws: AwsIdentity,
}

/// Every certificate object under a prefix.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchS3 {
    pub bucket: String,
    #[serde(default)]
    pub prefix: String,
    #[serde(default = "defaults::watch_name")]
    pub name: String,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub aws: AwsIdentity,
    /// `secrets:` name of the password of `.pfx`/`.p12` objects.
    pub pkcs12_password: Option<String>,
}

/// What a live TLS endpoint serves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchEndpoint {
    pub address: String,
    /// Server name sent; default: the host of `address`.
    pub sni: Option<String>,
    pub name: String,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ChannelSettings {
    /// A Slack incoming webhook; its URL is a secret (`secrets:` name).
    Slack { webhook_url: String },
    /// A JSON POST; `url` and `hmac_secret` are `secrets:` names. With a
    /// secret, `X-Certkeeper-Signature: sha256=<hex HMAC of the body>`.
    Webhook {
        url: String,
        hmac_secret: Option<String>,
    },
    /// Email over SMTP, with STARTTLS unless `starttls: false`.
    Email {
        /// `host:port` (587 for submission).
        server: String,
        from: String,
        to: Vec<String>,
        username: Option<String>,
        /// `secrets:` name of the SMTP password.
        password: Option<String>,
        #[serde(default = "defaults::yes")]
        starttls: bool,
        /// Trust only this CA for the server (a private relay).
        root_ca_file: Option<PathBuf>,
    },
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoSettings {
    /// A local path, `file://` URL or `https://` URL.
    pub url: String,
    #[serde(default = "defaults::branch")]
    pub branch: String,
    /// For `ssh://` and `user@host:path` URLs.
    #[serde(default)]
    pub ssh: Option<SshSettings>,
    /// For `https://` URLs that need a token.
    #[serde(default)]
    pub https: Option<HttpsSettings>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshSettings {
    /// Private key file (OpenSSH format, unencrypted; mode 0600).
    pub private_key_file: PathBuf,
    /// Pinned host keys in OpenSSH known_hosts format (hashed hosts work).
    pub known_hosts_file: Option<PathBuf>,
    /// Or: the host key's fingerprint as `ssh-keygen -lf` prints it
    /// (`SHA256:…`). One of the two is required: unknown hosts are refused.
    pub host_key_sha256: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpsSettings {
    /// User name sent with the token (`x-access-token` for GitHub apps,
    /// `oauth2` for GitLab).
    #[serde(default = "defaults::https_username")]
    pub username: String,
    /// File holding the token (first line).
    pub token_file: Option<PathBuf>,
    /// Or: environment variable holding the token.
    pub token_env: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedCommits {
    /// git's `gpg.ssh.allowedSignersFile` format.
    pub allowed_signers: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeSettings {
    pub directory_url: String,
    pub contact: Option<String>,
    /// Extra root CA (PEM) trusted for the ACME server's own TLS, for private
    /// or test CAs. The system roots are still used when absent.
    pub root_ca_file: Option<PathBuf>,
    /// How long to wait for the CA to validate and issue.
    #[serde(
        default = "defaults::order_timeout",
        with = "crate::duration::serde_human"
    )]
    pub order_timeout: Duration,
    /// External account binding, for CAs that require it (ZeroSSL, …).
    #[serde(default)]
    pub eab: Option<EabSettings>,
    /// ACME profile for orders (`tlsserver`, `shortlived`, …), checked
    /// against the profiles the directory advertises.
    pub profile: Option<String>,
    /// Directory used by `renew --dry-run`.
    pub staging_directory_url: Option<String>,
    /// Requests per second to each endpoint of this CA, shared by every
    /// order (default 20, bursts of twice that).
    pub requests_per_second: Option<f64>,
    /// newOrder requests in flight at once to this CA (default 1). The rest
    /// of an order runs in parallel; a newOrder is one short request, so
    /// one at a time costs little, and it spares a CA whose order
    /// creation contends with itself (Pebble 2.4 deadlocks on concurrent
    /// newOrders: every later one hangs; BENCHMARKS.md, 2026-12-03).
    pub new_orders_in_flight: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EabSettings {
    pub key_id: String,
    /// File holding the base64url HMAC key (never logged).
    pub hmac_key_file: Option<PathBuf>,
    /// Or: environment variable holding it.
    pub hmac_key_env: Option<String>,
}

/// The issuer name the `acme:` shorthand defines.
pub const DEFAULT_ISSUER: &str = "default";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSettings {
    pub region: Option<String>,
    /// Endpoint override for every AWS service (moto, LocalStack, VPC endpoints).
    pub endpoint_url: Option<String>,
    /// How long one AWS request may take before it is abandoned and retried
    /// (the SDK's attempt timeout). Without it a request that is accepted
    /// but never answered would stall the run, and with it the lease
    /// keep-alive, forever.
    #[serde(
        default = "defaults::aws_request_timeout",
        with = "crate::duration::serde_human"
    )]
    pub request_timeout: Duration,
}

impl Default for AwsSettings {
    fn default() -> Self {
        Self {
            region: None,
            endpoint_url: None,
            request_timeout: defaults::aws_request_timeout(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSettings {
    /// Ask these `host:port` servers instead of the zone's authoritative ones
    /// (split-horizon setups, tests).
    #[serde(default)]
    pub nameservers: Vec<String>,
    #[serde(
        default = "defaults::propagation_timeout",
        with = "crate::duration::serde_human"
    )]
    pub propagation_timeout: Duration,
    /// `check` (default): wait until the nameservers serve the values;
    /// `skip`: tell the CA at once (when the check cannot reach them).
    #[serde(default)]
    pub propagation: Propagation,
    /// Follow a CNAME at `_acme-challenge.<domain>` and write the value at
    /// its target (delegated validation), possibly through another provider.
    #[serde(default = "defaults::yes")]
    pub follow_cname: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Propagation {
    #[default]
    Check,
    Skip,
}

impl Default for DnsSettings {
    fn default() -> Self {
        Self {
            nameservers: Vec::new(),
            propagation_timeout: defaults::propagation_timeout(),
            propagation: Propagation::Check,
            follow_cname: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum DnsProviderSettings {
    Route53(Route53Settings),
    Rfc2136(Rfc2136Settings),
}

/// Route53 with its own AWS identity, separate from the one used for S3.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route53Settings {
    /// AWS profile (from ~/.aws/config) for this provider.
    pub profile: Option<String>,
    /// Assume this role for Route53 calls.
    pub role_arn: Option<String>,
    /// External id required by the role's trust policy.
    pub external_id: Option<String>,
    /// Use private hosted zones instead of public ones.
    #[serde(default)]
    pub private_zone: bool,
    /// API requests per second, shared by every order (Route53 allows 5).
    pub requests_per_second: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rfc2136Settings {
    /// Primary nameserver accepting dynamic updates, `ip:port`.
    pub nameserver: String,
    /// The zone updated (e.g. `internal.example.com`).
    pub zone: String,
    pub tsig_key_name: String,
    #[serde(default)]
    pub tsig_algorithm: TsigAlgorithm,
    /// File holding the base64 TSIG secret (as in BIND's key file `secret`).
    pub tsig_secret_file: PathBuf,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum TsigAlgorithm {
    #[default]
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
    #[serde(rename = "hmac-sha512")]
    HmacSha512,
}

/// The provider name used when the settings define none.
pub use crate::names::DEFAULT_DNS_PROVIDER;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    pub bucket: String,
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub sse: Sse,
    /// KMS key id or ARN, only with `sse: aws:kms`.
    pub kms_key_id: Option<String>,
    /// Object key of each file; `{prefix}`, `{name}`, `{file}`, the
    /// certificate's `vars` and `{domain}` are replaced.
    #[serde(default = "defaults::s3_key_template")]
    pub key_template: String,
    /// Keep `<prefix>/index.json`, a manifest of every certificate.
    #[serde(default = "defaults::yes")]
    pub manifest: bool,
    #[serde(default)]
    pub aws: AwsIdentity,
}

/// Which AWS credentials and region a target uses; empty: the defaults
/// (`aws:` in the settings and the usual credential chain).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AwsIdentity {
    /// AWS profile (from ~/.aws/config).
    pub profile: Option<String>,
    /// Assume this role (e.g. in the account the target lives in).
    pub role_arn: Option<String>,
    /// External id required by the role's trust policy.
    pub external_id: Option<String>,
    pub region: Option<String>,
}

/// One publish target. Defined here, not in the config repo: targets hold
/// credentials and decide what may be written where.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum TargetSettings {
    S3(S3Settings),
    Ssm(SsmSettings),
    Acm(AcmTargetSettings),
    Iam(IamSettings),
    Files(FilesSettings),
    Ecs(EcsSettings),
}

/// SSM Parameter Store: SecureString parameters, one per file and
/// environment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsmSettings {
    /// Values of `{env}`; every parameter is written once per environment.
    #[serde(default)]
    pub environments: Vec<String>,
    /// Which file goes to which parameter: keys `cert`, `chain`,
    /// `fullchain`, `key`, `pkcs12` (base64), `fingerprints`; values are
    /// path templates like `/registrations/{env}/user-input/mesh/cert`.
    pub parameters: std::collections::BTreeMap<String, String>,
    /// KMS key for the SecureStrings (default: the account's aws/ssm key).
    pub kms_key_id: Option<String>,
    #[serde(default)]
    pub tier: SsmTier,
    #[serde(default)]
    pub aws: AwsIdentity,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum SsmTier {
    #[serde(rename = "standard")]
    Standard,
    #[serde(rename = "advanced")]
    Advanced,
    /// Standard unless the value needs Advanced (over 4 KB).
    #[default]
    #[serde(rename = "intelligent-tiering")]
    IntelligentTiering,
}

/// ACM: import, then re-import to the same ARN on renewal.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmTargetSettings {
    /// Regions to import into (CloudFront needs us-east-1). Default: the
    /// identity's region.
    #[serde(default)]
    pub regions: Vec<String>,
    #[serde(default)]
    pub aws: AwsIdentity,
}

/// IAM server certificates (CloudFront, classic ELB).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IamSettings {
    /// Path template; CloudFront needs it to start with `/cloudfront/`.
    #[serde(default = "defaults::iam_path")]
    pub path: String,
    /// Name template; `{date}` is the upload day, `{domain}` the first
    /// domain with `*` written as `STAR`.
    #[serde(default = "defaults::iam_name")]
    pub name_template: String,
    /// How many certificates to keep under the path (the newest first).
    #[serde(default = "defaults::iam_keep")]
    pub keep: usize,
    /// Delete the ones beyond `keep`; IAM refuses to delete one still in
    /// use, and that one is kept and reported.
    #[serde(default)]
    pub delete_old: bool,
    #[serde(default)]
    pub aws: AwsIdentity,
}

/// Local files for a server on this machine, then a reload command.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesSettings {
    pub files: Vec<FileCopy>,
    /// Command run (no shell) after a file changed, e.g.
    /// `[systemctl, reload, nginx]`.
    #[serde(default)]
    pub reload: Vec<String>,
    #[serde(
        default = "defaults::reload_timeout",
        with = "crate::duration::serde_human"
    )]
    pub reload_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCopy {
    /// A file of the live set: `cert.pem`, `chain.pem`, `fullchain.pem`,
    /// `privkey.pem`, `cert.p12`, `fingerprints.txt`.
    pub source: String,
    /// Destination path template (`/etc/nginx/tls/{name}.crt`).
    pub path: String,
    /// User name or uid; default: unchanged (certkeeper's own).
    pub owner: Option<String>,
    pub group: Option<String>,
    /// Octal mode; default 0644, and 0600 for private keys and PKCS#12.
    pub mode: Option<String>,
}

/// ECS: force a new deployment of services that read the certificate at
/// start-up only.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EcsSettings {
    pub cluster: String,
    pub services: Vec<String>,
    #[serde(default)]
    pub aws: AwsIdentity,
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

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum Sse {
    #[default]
    #[serde(rename = "AES256")]
    Aes256,
    #[serde(rename = "aws:kms")]
    Kms,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

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
    /// Orders mostly wait (DNS batch window, propagation, the CA's
    /// validation), so more in flight is more throughput, not more load:
    /// the per-issuer request rate still caps what the CA sees, and larger
    /// Route53 batches mean fewer calls. 16 is where the 1,000-certificate
    /// bench stopped getting faster (BENCHMARKS.md, 2026-12-03).
    pub fn max_concurrent_orders() -> usize {
        16
    }
    pub fn order_timeout() -> Duration {
        Duration::from_secs(300)
    }
    pub fn aws_request_timeout() -> Duration {
        Duration::from_secs(30)
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
    pub fn watch_name() -> String {
        "{stem}".into()
    }
    pub fn shutdown_grace() -> Duration {
        Duration::from_secs(60)
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
        settings.validate(text)?;
        Ok(settings)
    }
}

fn is_local_path(url: &str) -> bool {
    !url.contains("://") && !url.contains('@')
}

/// The target the `s3:` shorthand defines.
pub const S3_TARGET: &str = "s3";

impl Settings {
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

impl RepoSettings {
    /// Whether the URL is a local path or file:// (no credentials needed).
    pub fn is_local(&self) -> bool {
        is_local_path(&self.url) || self.url.starts_with("file://")
    }
}

/// The live-set file an SSM `parameters` key stands for.
pub fn ssm_file(key: &str) -> Option<&'static str> {
    use crate::store::*;
    Some(match key {
        "cert" => CERT,
        "chain" => CHAIN,
        "fullchain" => FULLCHAIN,
        "key" => PRIVKEY,
        "pkcs12" => P12,
        "fingerprints" => FINGERPRINTS,
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
