//! The HTTP client under instant-acme, with the manners a CA expects: a
//! per-issuer request rate (token bucket), and a 429/503 `Retry-After`
//! honoured before the next request to that CA.

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
    rate: f64,
    state: tokio::sync::Mutex<(f64, Instant)>,
    not_before: Mutex<Option<Instant>>,
}

impl Manners {
    pub fn new(requests_per_second: f64) -> Arc<Self> {
        let rate = requests_per_second.max(0.1);
        Arc::new(Self {
            rate,
            state: tokio::sync::Mutex::new((rate, Instant::now())),
            not_before: Mutex::new(None),
        })
    }

    async fn wait_turn(&self) {
        let until = *self.not_before.lock().expect("not_before");
        if let Some(until) = until {
            tokio::time::sleep_until(until).await;
        }
        let mut state = self.state.lock().await;
        loop {
            let now = Instant::now();
            let (tokens, last) = *state;
            let tokens =
                (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.rate);
            if tokens >= 1.0 {
                *state = (tokens - 1.0, now);
                return;
            }
            *state = (tokens, now);
            tokio::time::sleep(Duration::from_secs_f64((1.0 - tokens) / self.rate)).await;
        }
    }

    fn back_off(&self, wait: Duration) {
        let until = Instant::now() + wait.min(MAX_WAIT);
        let mut slot = self.not_before.lock().expect("not_before");
        if slot.is_none_or(|current| current < until) {
            *slot = Some(until);
        }
    }
}

pub struct PoliteClient {
    inner: Arc<dyn HttpClient>,
    manners: Arc<Manners>,
}

type Hyper = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    BodyWrapper<Bytes>,
>;

impl PoliteClient {
    /// HTTPS only; system roots, or only `root` when given.
    pub fn new(root: Option<&Path>, manners: Arc<Manners>) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match root {
            Some(path) => {
                use rustls_pki_types::pem::PemObject;
                let mut roots = rustls::RootCertStore::empty();
                for cert in rustls_pki_types::CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?
                {
                    let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                }
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| e.to_string())?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                builder.with_tls_config(config)
            }
            None => builder
                .with_provider_and_platform_verifier(provider)
                .map_err(|e| e.to_string())?,
        };
        let connector = builder.https_only().enable_http1().enable_http2().build();
        let client: Hyper =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(connector);
        Ok(Self {
            inner: Arc::new(client),
            manners,
        })
    }
}

impl HttpClient for PoliteClient {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let (inner, manners) = (self.inner.clone(), self.manners.clone());
        Box::pin(async move {
            manners.wait_turn().await;
            let response = inner.request(req).await?;
            let status = response.parts.status.as_u16();
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

    #[tokio::test(start_paused = true)]
    async fn rate_and_retry_after() {
        let manners = Manners::new(2.0);
        let start = Instant::now();
        for _ in 0..4 {
            manners.wait_turn().await;
        }
        assert!(
            start.elapsed() >= Duration::from_millis(900),
            "{:?}",
            start.elapsed()
        );
        let start = Instant::now();
        manners.back_off(Duration::from_secs(30));
        manners.wait_turn().await;
        assert!(start.elapsed() >= Duration::from_secs(30));
        manners.back_off(Duration::from_secs(3600));
        let start = Instant::now();
        manners.wait_turn().await;
        assert!(start.elapsed() <= MAX_WAIT + Duration::from_secs(1));
    }
}
