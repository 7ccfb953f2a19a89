//! `dns:` (propagation checks) and `dns_providers:`.

use super::*;

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
