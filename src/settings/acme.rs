//! `acme:` / `issuers:`: the ACME CAs.

use super::*;

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
    /// The CA's new-order limit, planned instead of hit (`run/limits.rs`).
    /// Default: Let's Encrypt's for its directories (300 per 3h in
    /// production, 1,500 per 3h on staging), none for other CAs.
    pub new_order_limit: Option<NewOrderLimit>,
    /// New certificates per registered domain (`run/limits.rs`); a renewal
    /// of the same names is exempt, as Let's Encrypt counts. Default: Let's
    /// Encrypt's for its directories (50 per 7 days in production, 30,000
    /// on staging), none for other CAs.
    pub registered_domain_limit: Option<DomainLimit>,
    /// Names one certificate may carry at this CA (default 100, Let's
    /// Encrypt's limit); `config check` and the run refuse more.
    pub max_names: Option<usize>,
}

/// At most `certificates` new certificates per registered domain per
/// `per`, refilled evenly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainLimit {
    pub certificates: u32,
    #[serde(with = "crate::duration::serde_human")]
    pub per: Duration,
}

/// At most `orders` new orders per `per`, refilled evenly (a token bucket,
/// as Let's Encrypt counts them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOrderLimit {
    pub orders: u32,
    #[serde(with = "crate::duration::serde_human")]
    pub per: Duration,
}

impl AcmeSettings {
    /// The limit that applies: the configured one, else the CA's published
    /// one when it is a CA we know.
    pub fn new_order_limit(&self) -> Option<NewOrderLimit> {
        let three_hours = Duration::from_secs(3 * 3600);
        self.new_order_limit.or(match self.known_ca() {
            Some(KnownCa::LetsEncrypt) => Some(NewOrderLimit {
                orders: 300,
                per: three_hours,
            }),
            Some(KnownCa::LetsEncryptStaging) => Some(NewOrderLimit {
                orders: 1500,
                per: three_hours,
            }),
            None => None,
        })
    }

    /// Names one certificate may carry at this CA.
    pub fn max_names(&self) -> usize {
        self.max_names.unwrap_or(100)
    }

    /// The limit on new certificates per registered domain that applies,
    /// as `new_order_limit`.
    pub fn registered_domain_limit(&self) -> Option<DomainLimit> {
        let week = Duration::from_secs(7 * 86_400);
        self.registered_domain_limit.or(match self.known_ca() {
            Some(KnownCa::LetsEncrypt) => Some(DomainLimit {
                certificates: 50,
                per: week,
            }),
            Some(KnownCa::LetsEncryptStaging) => Some(DomainLimit {
                certificates: 30_000,
                per: week,
            }),
            None => None,
        })
    }

    fn known_ca(&self) -> Option<KnownCa> {
        let host = self
            .directory_url
            .strip_prefix("https://")
            .and_then(|rest| rest.split(['/', ':']).next())
            .unwrap_or_default();
        match host {
            "acme-v02.api.letsencrypt.org" => Some(KnownCa::LetsEncrypt),
            "acme-staging-v02.api.letsencrypt.org" => Some(KnownCa::LetsEncryptStaging),
            _ => None,
        }
    }
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

/// CAs whose published limits are the defaults.
enum KnownCa {
    LetsEncrypt,
    LetsEncryptStaging,
}

/// The issuer name the `acme:` shorthand defines.
pub const DEFAULT_ISSUER: &str = "default";
