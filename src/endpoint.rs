//! Endpoints that should serve a certificate, and how long to keep
//! checking them: the `verify:` of a certificate in the config repo and of
//! a rollout step in the settings, one format for both.

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySpec {
    pub endpoints: Vec<Endpoint>,
    /// How long to keep checking after a publish (rollouts take minutes).
    #[serde(
        default = "default_verify_window",
        with = "crate::duration::serde_human"
    )]
    pub window: std::time::Duration,
    #[serde(
        default = "default_verify_interval",
        with = "crate::duration::serde_human"
    )]
    pub interval: std::time::Duration,
}

fn default_verify_window() -> std::time::Duration {
    std::time::Duration::from_secs(300)
}

fn default_verify_interval() -> std::time::Duration {
    std::time::Duration::from_secs(10)
}

/// `host:port`, or `{address: host:port, sni: name}` when the name to ask
/// for differs from the address.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Endpoint {
    Address(String),
    WithSni { address: String, sni: String },
}

impl Endpoint {
    pub fn address(&self) -> &str {
        match self {
            Endpoint::Address(a) | Endpoint::WithSni { address: a, .. } => a,
        }
    }

    /// The server name sent: explicit, else the host part of the address.
    pub fn sni(&self) -> &str {
        match self {
            Endpoint::WithSni { sni, .. } => sni,
            Endpoint::Address(a) => a.rsplit_once(':').map(|(h, _)| h).unwrap_or(a),
        }
    }
}
