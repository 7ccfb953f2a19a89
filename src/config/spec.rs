//! The format of one certificate entry: what a team may write.

use super::*;

/// A certificate as the config repo describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateSpec {
    pub name: String,
    /// Absent for `issuer: external` certificates with a `csr:` (their
    /// names come from it).
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(default)]
    pub key_type: KeyType,
    #[serde(default)]
    pub dns: DnsSpec,
    #[serde(default)]
    pub renew_before: Option<RenewBefore>,
    /// Issuer name from the settings; default: the `acme:` issuer.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Issuers tried in order when `issuer` fails.
    #[serde(default)]
    pub fallback_issuers: Vec<String>,
    /// ACME profile; default: the issuer's.
    #[serde(default)]
    pub profile: Option<String>,
    /// Keep the private key across renewals (default: a fresh key each time).
    #[serde(default)]
    pub reuse_key: bool,
    /// Publish targets (defined in the settings), run in this order.
    /// Absent: the settings' `default_targets`.
    #[serde(default)]
    pub targets: Option<Vec<String>>,
    /// Values for the targets' templates, e.g. `mailbox` for
    /// `/registrations/{env}/user-input/mesh/{mailbox}-cert`.
    #[serde(default)]
    pub vars: std::collections::BTreeMap<String, String>,
    /// Also keep the set as PKCS#12 (`cert.p12`).
    #[serde(default)]
    pub pkcs12: Option<Pkcs12Spec>,
    /// Also keep `fingerprints.txt` (SHA-256, SHA-1, MD5 and monit's MD5).
    #[serde(default)]
    pub fingerprints: bool,
    /// Endpoints that must serve the new certificate after publishing.
    #[serde(default)]
    pub verify: Option<VerifySpec>,
    /// For `issuer: external`: what `certkeeper csr new` asks the CA for.
    #[serde(default)]
    pub csr: Option<CsrSpec>,
}

impl CertificateSpec {
    /// Signed by a CA without ACME: made with `csr new`, brought in with
    /// `csr import`, never renewed here.
    pub fn is_external(&self) -> bool {
        self.issuer.as_deref() == Some(EXTERNAL)
    }
}

/// The request of an external certificate. Templates use the
/// certificate's `vars`, e.g. `cn: "{identifier}.{ods}.mesh-client.nhs.uk"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsrSpec {
    pub cn: String,
    #[serde(default)]
    pub sans: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs12Spec {
    /// Name of a secret in the settings' `secrets:`.
    pub password: String,
    /// 3DES and SHA-1 for old Java (before 8u301) instead of AES-256.
    #[serde(default)]
    pub legacy: bool,
    /// Friendly name of the key entry (the keytool alias).
    #[serde(default = "default_alias")]
    pub alias: String,
    /// A Java-ready keystore: the chain's CA certificates are also trusted
    /// entries, `rootca` and `subca` (`keytool -list` shows three entries).
    #[serde(default)]
    pub trusted_chain: bool,
}

fn default_alias() -> String {
    "certkeeper".into()
}

pub use crate::endpoint::{Endpoint, VerifySpec};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSpec {
    /// Name of a DNS provider defined in the settings (`dns_providers`).
    #[serde(default = "default_provider")]
    pub provider: String,
    /// Route53 hosted zone id; found by longest matching suffix when absent.
    pub hosted_zone_id: Option<String>,
}

impl Default for DnsSpec {
    fn default() -> Self {
        Self {
            provider: default_provider(),
            hosted_zone_id: None,
        }
    }
}

pub use crate::pki::KeyType;

/// The `issuer` of certificates signed outside ACME, in the config and in
/// meta.json.
pub const EXTERNAL: &str = "external";

fn default_provider() -> String {
    crate::names::DEFAULT_DNS_PROVIDER.to_string()
}

/// How early to renew: a fixed time before expiry, or a share of the lifetime.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RenewBefore {
    Remaining(Duration),
    /// Renew when less than this fraction (0..1) of the lifetime remains.
    Fraction(f64),
}

impl Eq for RenewBefore {}

impl Default for RenewBefore {
    fn default() -> Self {
        RenewBefore::Fraction(1.0 / 3.0)
    }
}

/// `renew_before` that is neither a fraction nor a duration.
#[derive(Debug, thiserror::Error)]
pub enum RenewBeforeError {
    #[error("{0:?} is not a fraction between 0 and 1 (e.g. \"1/3\" or \"33%\")")]
    Fraction(String),
    #[error(transparent)]
    Duration(#[from] crate::duration::DurationError),
}

impl RenewBefore {
    pub fn parse(text: &str) -> Result<Self, RenewBeforeError> {
        let text = text.trim();
        let fraction = if let Some(pct) = text.strip_suffix('%') {
            Some(pct.trim().parse::<f64>().map(|p| p / 100.0))
        } else {
            text.split_once('/').map(|(a, b)| {
                let a: f64 = a.trim().parse()?;
                let b: f64 = b.trim().parse()?;
                Ok(a / b)
            })
        };
        match fraction {
            Some(Ok(f)) if f > 0.0 && f < 1.0 => Ok(RenewBefore::Fraction(f)),
            Some(_) => Err(RenewBeforeError::Fraction(text.to_string())),
            None => Ok(RenewBefore::Remaining(crate::duration::parse(text)?)),
        }
    }
}

impl<'de> Deserialize<'de> for RenewBefore {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        RenewBefore::parse(&text).map_err(serde::de::Error::custom)
    }
}
