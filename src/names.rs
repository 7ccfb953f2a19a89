//! Names the settings and the config repo share, defined once.

/// The DNS provider a certificate uses when it names none, and the name of
/// the Route53 provider the settings define when they define none.
pub const DEFAULT_DNS_PROVIDER: &str = "route53";
