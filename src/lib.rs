//! certkeeper: keeps TLS certificates alive with nobody watching.
//!
//! The library is split the way the runbook it replaces is split: read the
//! settings ([`settings`]), fetch and validate the config repo ([`config`]),
//! decide what is due ([`plan`]), get certificates from an ACME CA ([`acme`])
//! by answering DNS-01 challenges ([`dns`]), keep them on disk ([`store`]),
//! copy them where they are used ([`publish`]) and say what happened
//! ([`report`]). [`run`] strings those steps together for one renewal run.

pub mod acme;
pub mod alert;
pub mod aws;
pub mod backoff;
pub mod config;
pub mod convert;
pub mod csr;
pub mod daemon;
pub mod dns;
pub mod duration;
pub mod endpoint;
pub mod formats;
pub mod iam;
pub mod lock;
pub mod logging;
pub mod metrics;
pub mod names;
pub mod notify;
pub mod pki;
pub mod plan;
pub mod proxy;
pub mod psl;
pub mod publish;
pub mod ratelimit;
pub mod replica;
pub mod report;
pub mod rollout;
pub mod run;
pub mod schedule;
pub mod seal;
pub mod secret;
pub mod secrets;
pub mod serve;
pub mod settings;
pub mod shutdown;
pub mod store;
pub mod template;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod testing;
pub mod verify;
pub mod watch;
pub mod x509;
pub mod yaml;

/// Process exit codes, shared by `main` and the tests that read them.
pub mod exit {
    /// Every certificate is valid, current and published.
    pub const OK: i32 = 0;
    /// At least one certificate failed to renew or publish.
    pub const RENEWAL_FAILED: i32 = 1;
    /// The settings or the config repo are unusable; nothing was issued.
    pub const CONFIG_ERROR: i32 = 2;
}
