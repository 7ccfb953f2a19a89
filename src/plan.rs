//! Deciding what is due. Pure: (config, stored meta, now) -> decision.

use crate::config::{CertificateSpec, RenewBefore};
use crate::store::Meta;
use std::fmt;
use time::OffsetDateTime;

#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    Missing,
    DomainsChanged,
    KeyTypeChanged,
    IssuerChanged,
    ProfileChanged,
    Forced,
    Revoked,
    RenewWindow { renew_at: OffsetDateTime },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Missing => f.write_str("missing"),
            Reason::DomainsChanged => f.write_str("domains changed"),
            Reason::KeyTypeChanged => f.write_str("key type changed"),
            Reason::IssuerChanged => f.write_str("issuer changed"),
            Reason::ProfileChanged => f.write_str("profile changed"),
            Reason::Forced => f.write_str("forced"),
            Reason::Revoked => f.write_str("revoked"),
            Reason::RenewWindow { .. } => f.write_str("inside renewal window"),
        }
    }
}

impl Reason {
    /// Stable token for logs.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::DomainsChanged => "domains_changed",
            Reason::KeyTypeChanged => "key_type_changed",
            Reason::IssuerChanged => "issuer_changed",
            Reason::ProfileChanged => "profile_changed",
            Reason::Forced => "forced",
            Reason::Revoked => "revoked",
            Reason::RenewWindow { .. } => "renew_window",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Due(Reason),
    Current { renew_at: OffsetDateTime },
}

/// What the settings say a certificate should come from.
#[derive(Debug, Clone, Copy)]
pub struct Wanted<'a> {
    /// Directory URLs of the certificate's issuer and its fallbacks: a
    /// certificate from any of them is acceptable.
    pub issuers: &'a [String],
    /// The ACME profile it should have (`None`: the CA's default).
    pub profile: Option<&'a str>,
}

pub fn decide(
    spec: &CertificateSpec,
    meta: Option<&Meta>,
    wanted: Wanted<'_>,
    now: OffsetDateTime,
) -> Decision {
    let Some(meta) = meta else {
        return Decision::Due(Reason::Missing);
    };
    if normalized(&spec.domains) != normalized(&meta.domains) {
        return Decision::Due(Reason::DomainsChanged);
    }
    if spec.key_type != meta.key_type {
        return Decision::Due(Reason::KeyTypeChanged);
    }
    if !wanted.issuers.contains(&meta.issuer) {
        return Decision::Due(Reason::IssuerChanged);
    }
    if wanted.profile != meta.profile.as_deref() {
        return Decision::Due(Reason::ProfileChanged);
    }
    let renew_at = renew_at(meta, spec.renew_before.unwrap_or_default());
    if now >= renew_at {
        Decision::Due(Reason::RenewWindow { renew_at })
    } else {
        Decision::Current { renew_at }
    }
}

/// The moment from which a certificate is due.
pub fn renew_at(meta: &Meta, renew_before: RenewBefore) -> OffsetDateTime {
    let lifetime = meta.not_after - meta.not_before;
    let before = match renew_before {
        RenewBefore::Remaining(d) => time::Duration::try_from(d).unwrap_or(time::Duration::MAX),
        RenewBefore::Fraction(f) => lifetime * f,
    };
    // Whatever was configured, never less than half of a short lifetime
    // (6-day certificates must not wait until their last two days).
    let floor = if lifetime <= time::Duration::days(10) {
        lifetime / 2
    } else {
        time::Duration::ZERO
    };
    let before = before.max(floor);
    // A renew_before longer than the lifetime means "always due"; saturate
    // instead of overflowing.
    meta.not_after
        .checked_sub(before)
        .unwrap_or(meta.not_before)
}

/// Order and case do not matter when comparing domain lists.
fn normalized(domains: &[String]) -> Vec<String> {
    let mut v: Vec<String> = domains.iter().map(|d| d.to_ascii_lowercase()).collect();
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DnsSpec, KeyType};
    use time::macros::datetime;

    const ISSUER: &str = "https://ca.test/dir";

    fn wanted() -> Wanted<'static> {
        static ISSUERS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        Wanted {
            issuers: ISSUERS.get_or_init(|| vec![ISSUER.to_string()]),
            profile: None,
        }
    }

    fn spec(domains: &[&str]) -> CertificateSpec {
        CertificateSpec {
            name: "web".into(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            key_type: KeyType::EcdsaP256,
            dns: DnsSpec::default(),
            renew_before: None,
            issuer: None,
            fallback_issuers: vec![],
            profile: None,
            reuse_key: false,
            targets: None,
            vars: Default::default(),
            pkcs12: None,
            fingerprints: false,
            verify: None,
            csr: None,
        }
    }

    fn meta(domains: &[&str]) -> Meta {
        Meta {
            name: "web".into(),
            serial: "01".into(),
            not_before: datetime!(2026-01-01 0:00 UTC),
            not_after: datetime!(2026-04-01 0:00 UTC), // 90 days
            domains: domains.iter().map(|d| d.to_string()).collect(),
            sans: vec![],
            key_type: KeyType::EcdsaP256,
            sha256: String::new(),
            issuer: ISSUER.into(),
            config_commit: String::new(),
            issued_at: datetime!(2026-01-01 0:00 UTC),
            version: 1,
            profile: None,
            generation: None,
        }
    }

    #[test]
    fn missing_is_due() {
        let d = decide(
            &spec(&["a.test"]),
            None,
            wanted(),
            datetime!(2026-01-02 0:00 UTC),
        );
        assert_eq!(d, Decision::Due(Reason::Missing));
    }

    #[test]
    fn default_window_is_last_third() {
        let s = spec(&["a.test"]);
        let m = meta(&["a.test"]);
        // 90-day lifetime: due from day 60 (2026-03-02).
        assert!(matches!(
            decide(&s, Some(&m), wanted(), datetime!(2026-03-01 23:59 UTC)),
            Decision::Current { .. }
        ));
        assert!(matches!(
            decide(&s, Some(&m), wanted(), datetime!(2026-03-02 0:00 UTC)),
            Decision::Due(Reason::RenewWindow { .. })
        ));
    }

    #[test]
    fn fixed_remaining_window() {
        let mut s = spec(&["a.test"]);
        s.renew_before = Some(RenewBefore::parse("10d").unwrap());
        let m = meta(&["a.test"]);
        assert!(matches!(
            decide(&s, Some(&m), wanted(), datetime!(2026-03-21 0:00 UTC)),
            Decision::Current { .. }
        ));
        assert!(matches!(
            decide(&s, Some(&m), wanted(), datetime!(2026-03-22 0:00 UTC)),
            Decision::Due(_)
        ));
        s.renew_before = Some(RenewBefore::parse("1000d").unwrap());
        assert!(matches!(
            decide(&s, Some(&m), wanted(), datetime!(2026-01-02 0:00 UTC)),
            Decision::Due(_)
        ));
    }

    #[test]
    fn short_lifetimes_renew_at_half() {
        let mut m = meta(&["a.test"]);
        m.not_after = datetime!(2026-01-07 0:00 UTC); // 6 days
        let s = spec(&["a.test"]);
        assert!(matches!(
            decide(&s, Some(&m), wanted(), datetime!(2026-01-03 23:00 UTC)),
            Decision::Current { .. }
        ));
        assert!(matches!(
            decide(&s, Some(&m), wanted(), datetime!(2026-01-04 0:00 UTC)),
            Decision::Due(Reason::RenewWindow { .. })
        ));
    }

    #[test]
    fn changes_make_it_due() {
        let now = datetime!(2026-01-02 0:00 UTC);
        let m = meta(&["a.test", "b.test"]);
        // Same set, other order and case: not a change.
        assert!(matches!(
            decide(&spec(&["B.test", "a.test"]), Some(&m), wanted(), now),
            Decision::Current { .. }
        ));
        assert_eq!(
            decide(&spec(&["a.test"]), Some(&m), wanted(), now),
            Decision::Due(Reason::DomainsChanged)
        );
        let mut s = spec(&["a.test", "b.test"]);
        s.key_type = KeyType::Rsa2048;
        assert_eq!(
            decide(&s, Some(&m), wanted(), now),
            Decision::Due(Reason::KeyTypeChanged)
        );
        let other = vec!["https://other/dir".to_string()];
        let only_other = Wanted {
            issuers: &other,
            profile: None,
        };
        assert_eq!(
            decide(&spec(&["a.test", "b.test"]), Some(&m), only_other, now),
            Decision::Due(Reason::IssuerChanged)
        );
        // A certificate from a fallback issuer is acceptable.
        let both = vec!["https://other/dir".to_string(), ISSUER.to_string()];
        assert!(matches!(
            decide(
                &spec(&["a.test", "b.test"]),
                Some(&m),
                Wanted {
                    issuers: &both,
                    profile: None
                },
                now
            ),
            Decision::Current { .. }
        ));
        assert_eq!(
            decide(
                &spec(&["a.test", "b.test"]),
                Some(&m),
                Wanted {
                    issuers: &both,
                    profile: Some("shortlived")
                },
                now
            ),
            Decision::Due(Reason::ProfileChanged)
        );
    }
}
