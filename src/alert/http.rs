//! One small HTTPS (or, for local receivers, HTTP) client for channels.

use hyper_util::client::legacy::Client;
use std::time::Duration;

pub type Poster = Client<hyper_rustls::HttpsConnector<crate::proxy::Connector>, String>;

/// Why a POST did not deliver. Never carries the URL (a secret) or the
/// host (hyper's messages may name it).
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("HTTP client: {0}")]
    Client(#[source] std::io::Error),
    #[error("the URL is not valid")]
    BadUrl,
    #[error("no answer within 15s")]
    Timeout,
    #[error("cannot connect")]
    Connect,
    #[error("request failed")]
    Request,
    #[error("answered HTTP {0}")]
    Status(u16),
}

/// The client every channel posts with, through `proxy` where its rules
/// say.
pub fn poster(proxy: &crate::proxy::Proxy) -> Result<Poster, PostError> {
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_platform_verifier(provider)
        .map_err(PostError::Client)?
        .https_or_http()
        .enable_http1()
        .wrap_connector(proxy.connector());
    Ok(Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector))
}

/// POSTs `body` as JSON; the error never contains the URL (a secret).
pub async fn post_json(
    client: &Poster,
    url: &str,
    body: String,
    headers: &[(&str, String)],
) -> Result<(), PostError> {
    let mut req = http::Request::post(url).header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let req = req.body(body).map_err(|_| PostError::BadUrl)?;
    let resp = tokio::time::timeout(Duration::from_secs(15), client.request(req))
        .await
        .map_err(|_| PostError::Timeout)?
        .map_err(|e| {
            // hyper's error may name the host; keep only its kind.
            if e.is_connect() {
                PostError::Connect
            } else {
                PostError::Request
            }
        })?;
    let status = resp.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(PostError::Status(status.as_u16()))
    }
}
