//! `watch:` (certificates from anywhere, checked for expiry) and the
//! alert `channels:`.

use super::*;

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
    /// An email channel of `channels:`: a certificate labelled
    /// `contact: ADDRESS` also gets `contact_template` mailed to that
    /// address through this channel's server, once per level (warning, then
    /// critical), not daily.
    #[serde(default)]
    pub contact_channel: Option<String>,
    /// The reminder to a certificate's contact; the same variables.
    #[serde(default = "defaults::contact_template")]
    pub contact_template: String,
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
