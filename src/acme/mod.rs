//! ACME: the account, and one order from new-order to certificate chain.
//!
//! instant-acme retries a bad nonce only three times, and real CAs reject
//! nonces; every step here is wrapped in our own bounded retry with backoff
//! and jitter, re-reading the order from the CA before each new attempt so a
//! retried step continues from the order's true state.

mod account;
pub mod ari;
pub mod http;
mod order;
pub mod revocation;

pub use account::Issuer;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use account::retry;
pub use order::generate_key;

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("ACME {step} failed: {message}")]
    Step {
        step: &'static str,
        message: String,
        /// What the step ended in, for the callers that decide on it.
        ended: Ended,
    },
    #[error("cannot read ACME root CA file {path}: {message}")]
    Root { path: String, message: String },
    #[error("ACME account file {path}: {message}")]
    AccountFile { path: String, message: String },
    #[error("challenge for {domain} failed: {message}")]
    Challenge { domain: String, message: String },
    #[error("order is {status}: {message}")]
    OrderFailed { status: String, message: String },
    /// The order is invalid because the CA's own DNS lookups failed, after
    /// our nameservers were seen serving every value: worth one new order.
    #[error("order is invalid: {message}")]
    CaDnsLookup { message: String },
    #[error("key generation failed: {0}")]
    Key(String),
    #[error(transparent)]
    Dns(#[from] crate::dns::DnsError),
    #[error("cancelled")]
    Cancelled,
}

/// How a step that gave up ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The CA answered with this problem type
    /// (`urn:ietf:params:acme:error:…`).
    Problem(String),
    /// The stored account key is not usable (rejected, or not a key).
    BadKey,
    Other,
}

impl Ended {
    fn of(e: &instant_acme::Error) -> Ended {
        use instant_acme::Error as E;
        match e {
            E::Api(p) => Ended::Problem(p.r#type.clone().unwrap_or_default()),
            E::KeyRejected | E::Crypto => Ended::BadKey,
            _ => Ended::Other,
        }
    }
}

/// Whether an instant-acme error is worth another attempt.
fn retryable(e: &instant_acme::Error) -> bool {
    use instant_acme::Error as E;
    match e {
        E::Api(p) => {
            // 429 and 503 carry a Retry-After that the HTTP layer waits for
            // before the next request to this CA.
            p.r#type.as_deref() == Some("urn:ietf:params:acme:error:badNonce")
                || p.status.is_some_and(|s| s >= 500 || s == 429)
        }
        E::Hyper(_) | E::Http(_) | E::Other(_) => true,
        _ => false,
    }
}

const MAX_ATTEMPTS: u32 = 8;

/// Exponential backoff with full jitter: 100ms, 200ms, … capped at 5s.
fn backoff(attempt: u32) -> Duration {
    let cap = Duration::from_millis(100 * 2u64.pow(attempt.min(6))).min(Duration::from_secs(5));
    cap.mul_f64(0.5 + rand::random::<f64>() * 0.5)
}

/// Describes an instant-acme error without leaking anything secret (its
/// messages carry URLs and problem documents, never keys).
fn describe(e: &instant_acme::Error) -> String {
    match e {
        instant_acme::Error::Api(p) => {
            let mut s = format!(
                "{}: {}",
                p.r#type.as_deref().unwrap_or("problem"),
                p.detail.as_deref().unwrap_or("")
            );
            for sub in &p.subproblems {
                s.push_str(&format!(
                    "; {:?}: {}",
                    sub.identifier,
                    sub.detail.as_deref().unwrap_or("")
                ));
            }
            s
        }
        other => other.to_string(),
    }
}
