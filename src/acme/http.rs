//! The HTTP client under instant-acme, with the manners a CA expects: a
//! request rate per CA endpoint (token buckets, as Let's Encrypt limits
//! requests per endpoint and IP), and a 429/503 `Retry-After` honoured
//! before the next request to that CA.

use crate::ratelimit::TokenBucket;
use bytes::Bytes;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Retry-After values longer than this are not waited for: the step fails
/// with the CA's message (rate limits of hours are for the next run).
pub const MAX_WAIT: Duration = Duration::from_secs(120);

/// Shared by every request to one issuer.
pub struct Manners {
    /// Issuer name, for metrics.
    issuer: String,
    rate: f64,
    buckets: Mutex<std::collections::HashMap<String, Arc<TokenBucket>>>,
    not_before: Mutex<Option<Instant>>,
}

impl Manners {
    pub fn new(issuer: &str, requests_per_second: f64) -> Arc<Self> {
        Arc::new(Self {
            issuer: issuer.to_string(),
            rate: requests_per_second,
            buckets: Default::default(),
            not_before: Mutex::new(None),
        })
    }

    /// Bursts up to two seconds' worth of requests, then `rate` per second,
    /// per endpoint; never before a Retry-After has passed.
    async fn wait_turn(&self, endpoint: &str) {
        let until = *self.not_before.lock().expect("not_before");
        if let Some(until) = until {
            tokio::time::sleep_until(until).await;
        }
        let bucket = self
            .buckets
            .lock()
            .expect("buckets")
            .entry(endpoint.to_string())
            .or_insert_with(|| Arc::new(TokenBucket::new(self.rate, self.rate * 2.0)))
            .clone();
        bucket.acquire().await;
    }

    fn back_off(&self, wait: Duration) {
        let until = Instant::now() + wait.min(MAX_WAIT);
        let mut slot = self.not_before.lock().expect("not_before");
        if slot.is_none_or(|current| current < until) {
            *slot = Some(until);
        }
    }
}

/// The endpoint a path belongs to: `/acme/order/1/2` -> `/acme/order`,
/// `/my-order/xyz` -> `/my-order`.
fn endpoint(path: &str) -> String {
    let mut parts = path.trim_start_matches('/').split('/');
    match (parts.next(), parts.next()) {
        (Some("acme"), Some(second)) => format!("/acme/{second}"),
        (Some(first), _) => format!("/{first}"),
        _ => "/".into(),
    }
}

/// The longest Retry-After passed on to instant-acme. It adds the value to
/// the system clock, which panics on overflow: a CA (or a proxy on the
/// way) answering `Retry-After: 18446744073709551615` would otherwise
/// crash the run (found by the hostile-CA fuzzing).
const MAX_RETRY_AFTER_SECS: u64 = 366 * 86_400;

fn tame_retry_after(headers: &mut http::HeaderMap) {
    let Some(value) = headers.get(http::header::RETRY_AFTER) else {
        return;
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text.bytes().all(|b| b.is_ascii_digit())
        && !text.is_empty()
        && text
            .parse::<u64>()
            .ok()
            .is_none_or(|s| s > MAX_RETRY_AFTER_SECS)
    {
        headers.insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from(MAX_RETRY_AFTER_SECS),
        );
    }
}

pub struct PoliteClient {
    connection: Arc<Connection>,
    manners: Arc<Manners>,
}

/// The HTTP client of the moment, replaced after a request times out.
///
/// A CA that stops answering on one HTTP/2 connection (seen with Pebble at
/// 32 orders in flight: it stopped reading the socket, and keep-alive pings
/// did not drop it) would otherwise get every retry multiplexed onto the
/// same dead connection. A fresh client has a fresh pool, so the retry
/// dials anew; requests still in flight on the old one finish or time out.
struct Connection {
    make: Box<dyn Fn() -> Arc<dyn HttpClient> + Send + Sync>,
    current: Mutex<(u64, Arc<dyn HttpClient>)>,
}

impl Connection {
    fn new(make: Box<dyn Fn() -> Arc<dyn HttpClient> + Send + Sync>) -> Arc<Self> {
        let first = make();
        Arc::new(Self {
            make,
            current: Mutex::new((0, first)),
        })
    }

    fn get(&self) -> (u64, Arc<dyn HttpClient>) {
        let current = self.current.lock().expect("connection");
        (current.0, current.1.clone())
    }

    /// Replaces the client that `generation` named, once: the other
    /// requests that timed out on it keep the replacement.
    fn replace(&self, generation: u64) -> bool {
        let mut current = self.current.lock().expect("connection");
        if current.0 != generation {
            return false;
        }
        *current = (generation + 1, (self.make)());
        true
    }
}

type Hyper = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<crate::proxy::Connector>,
    BodyWrapper<Bytes>,
>;

impl PoliteClient {
    /// The same manners over another HTTP client (the fuzzing harness's
    /// hostile CA).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn over(inner: Arc<dyn HttpClient>, manners: Arc<Manners>) -> Self {
        Self {
            connection: Connection::new(Box::new(move || inner.clone())),
            manners,
        }
    }

    /// The same manners over clients made by `make`, a new one after each
    /// timeout.
    #[cfg(test)]
    fn reconnecting(
        make: impl Fn() -> Arc<dyn HttpClient> + Send + Sync + 'static,
        manners: Arc<Manners>,
    ) -> Self {
        Self {
            connection: Connection::new(Box::new(make)),
            manners,
        }
    }

    /// HTTPS only; system roots, or only `root` when given.
    pub fn new(root: Option<&Path>, manners: Arc<Manners>) -> Result<Self, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match root {
            Some(path) => {
                use rustls_pki_types::pem::PemObject;
                let mut roots = rustls::RootCertStore::empty();
                let root = |e: &dyn std::fmt::Display| TlsSetupError::Root {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                };
                for cert in
                    rustls_pki_types::CertificateDer::pem_file_iter(path).map_err(|e| root(&e))?
                {
                    let cert = cert.map_err(|e| root(&e))?;
                    roots.add(cert).map_err(|e| root(&e))?;
                }
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(TlsSetupError::Tls)?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                builder.with_tls_config(config)
            }
            None => builder
                .with_provider_and_platform_verifier(provider)
                .map_err(TlsSetupError::Platform)?,
        };
        let connector = builder
            .https_only()
            .enable_http1()
            .enable_http2()
            .wrap_connector(crate::proxy::current().connector());
        // HTTP/2 multiplexes every order over one connection: ping it, so a
        // connection that stopped answering is dropped (and the requests on
        // it retried on a new one) instead of stalling every order.
        let make = move || -> Arc<dyn HttpClient> {
            let client: Hyper =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .timer(hyper_util::rt::TokioTimer::new())
                    .http2_keep_alive_interval(Some(Duration::from_secs(15)))
                    .http2_keep_alive_timeout(Duration::from_secs(10))
                    .build(connector.clone());
            Arc::new(client)
        };
        Ok(Self {
            connection: Connection::new(Box::new(make)),
            manners,
        })
    }
}

/// The longest one request to the CA may take, answer included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl HttpClient for PoliteClient {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let (connection, manners) = (self.connection.clone(), self.manners.clone());
        let endpoint = endpoint(req.uri().path());
        Box::pin(async move {
            manners.wait_turn(&endpoint).await;
            let (generation, inner) = connection.get();
            // A CA that accepts a request and never answers must not hang
            // the run (seen with Pebble under load): give up, and let the
            // caller retry with a fresh nonce.
            let response = tokio::time::timeout(REQUEST_TIMEOUT, inner.request(req))
                .await
                .map_err(|_| {
                    crate::metrics::inc(
                        "certkeeper_acme_requests_total",
                        &[("issuer", &manners.issuer), ("status", "timeout")],
                    );
                    let reconnected = connection.replace(generation);
                    tracing::warn!(event = "acme.request.timeout", endpoint = %endpoint, timeout_secs = REQUEST_TIMEOUT.as_secs(), reconnected);
                    instant_acme::Error::Other(Box::new(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no answer from the CA within {}s", REQUEST_TIMEOUT.as_secs()),
                    )))
                })??;
            let mut response = response;
            tame_retry_after(&mut response.parts.headers);
            let status = response.parts.status.as_u16();
            crate::metrics::inc(
                "certkeeper_acme_requests_total",
                &[("issuer", &manners.issuer), ("status", &status.to_string())],
            );
            if status == 429 || status == 503 {
                let wait = response
                    .parts
                    .headers
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs)
                    .unwrap_or(Duration::from_secs(1));
                tracing::warn!(
                    event = "acme.retry_after",
                    status,
                    wait_secs = wait.as_secs()
                );
                manners.back_off(wait);
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absurd_retry_after_is_capped_before_instant_acme_adds_it_to_the_clock() {
        let mut h = http::HeaderMap::new();
        for (given, kept) in [
            ("18446744073709551615", "31622400"),
            ("99999999999999999999999", "31622400"),
            ("120", "120"),
            (
                "Fri, 31 Dec 1999 23:59:59 GMT",
                "Fri, 31 Dec 1999 23:59:59 GMT",
            ),
        ] {
            h.insert(http::header::RETRY_AFTER, given.parse().unwrap());
            tame_retry_after(&mut h);
            assert_eq!(h[http::header::RETRY_AFTER], kept, "{given}");
        }
    }

    /// Never answers, like the Pebble connection that stopped reading.
    struct Silent;
    impl HttpClient for Silent {
        fn request(
            &self,
            _req: http::Request<BodyWrapper<Bytes>>,
        ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>>
        {
            Box::pin(std::future::pending())
        }
    }

    struct Answers;
    impl HttpClient for Answers {
        fn request(
            &self,
            _req: http::Request<BodyWrapper<Bytes>>,
        ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>>
        {
            let (parts, ()) = http::Response::builder()
                .status(200)
                .body(())
                .expect("response")
                .into_parts();
            Box::pin(async move {
                Ok(BytesResponse {
                    parts,
                    body: Box::new(Bytes::from_static(b"{}")),
                })
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_retried_after_a_timeout_goes_out_on_a_new_connection() {
        let made = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = made.clone();
        let client = PoliteClient::reconnecting(
            move || -> Arc<dyn HttpClient> {
                match counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                    0 => Arc::new(Silent),
                    _ => Arc::new(Answers),
                }
            },
            Manners::new("test", 100.0),
        );
        let request = || {
            http::Request::post("https://ca.invalid/acme/new-order")
                .body(BodyWrapper::default())
                .expect("request")
        };
        // Three orders multiplexed on the silent connection all time out,
        // and the connection is replaced once, not three times.
        let stalled = tokio::join!(
            client.request(request()),
            client.request(request()),
            client.request(request())
        );
        for result in [stalled.0, stalled.1, stalled.2] {
            let error = result.err().expect("timed out").to_string();
            assert!(
                error.contains("no answer from the CA within 30s"),
                "{error}"
            );
        }
        assert_eq!(made.load(std::sync::atomic::Ordering::SeqCst), 2);
        let retried = client.request(request()).await.expect("answered");
        assert_eq!(retried.parts.status, 200);
        assert_eq!(made.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[test]
    fn endpoints() {
        assert_eq!(endpoint("/acme/order/123/456"), "/acme/order");
        assert_eq!(endpoint("/my-order/abc"), "/my-order");
        assert_eq!(endpoint("/dir"), "/dir");
    }

    #[tokio::test(start_paused = true)]
    async fn rate_and_retry_after() {
        let manners = Manners::new("test", 2.0);
        let start = Instant::now();
        // A burst of 4, then 2 per second.
        for _ in 0..6 {
            manners.wait_turn("/acme/order").await;
        }
        assert!(
            start.elapsed() >= Duration::from_millis(900),
            "{:?}",
            start.elapsed()
        );
        // Another endpoint has its own bucket.
        let start = Instant::now();
        manners.wait_turn("/acme/authz").await;
        assert!(start.elapsed() < Duration::from_millis(10));
        let start = Instant::now();
        manners.back_off(Duration::from_secs(30));
        manners.wait_turn("/acme/authz").await;
        assert!(start.elapsed() >= Duration::from_secs(30));
        manners.back_off(Duration::from_secs(3600));
        let start = Instant::now();
        manners.wait_turn("/acme/authz").await;
        assert!(start.elapsed() <= MAX_WAIT + Duration::from_secs(1));
    }
}

/// The ACME client's TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// The configured root CA file (`root_ca_file`).
    #[error("{}: {message}", path.display())]
    Root {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("{0}")]
    Tls(#[source] rustls::Error),
    #[error("{0}")]
    Platform(#[source] std::io::Error),
}
