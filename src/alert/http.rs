//! One small HTTPS (or, for local receivers, HTTP) client for channels.

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use std::time::Duration;

pub type Poster = Client<hyper_rustls::HttpsConnector<HttpConnector>, String>;

pub fn poster() -> Result<Poster, String> {
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_platform_verifier(provider)
        .map_err(|e| e.to_string())?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector))
}

/// POSTs `body` as JSON; the error never contains the URL (a secret).
pub async fn post_json(
    client: &Poster,
    url: &str,
    body: String,
    headers: &[(&str, String)],
) -> Result<(), String> {
    let mut req = http::Request::post(url).header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let req = req
        .body(body)
        .map_err(|_| "the URL is not valid".to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(15), client.request(req))
        .await
        .map_err(|_| "no answer within 15s".to_string())?
        .map_err(|e| {
            // hyper's error may name the host; keep only its kind.
            if e.is_connect() {
                "cannot connect".to_string()
            } else {
                "request failed".to_string()
            }
        })?;
    let status = resp.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("answered HTTP {}", status.as_u16()))
    }
}
