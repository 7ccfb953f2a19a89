//! Outbound HTTP(S) through a forward proxy, as corporate networks require:
//! the `proxy:` setting, else `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` and
//! `NO_PROXY` (as curl reads them). Every client certkeeper makes itself (the
//! ACME client, the alert channels) connects through [`Connector`], which
//! tunnels with HTTP CONNECT when the proxy rules match the destination; the
//! AWS SDK gets the same rules (`aws::base`), git the same URL
//! (`config::source`). Endpoint verification (`verify:`) goes direct: it
//! checks what the endpoint serves to its own clients.
//!
//! The proxy in force is process-wide, like the environment it defaults to:
//! [`install`] sets it when the settings are loaded, [`current`] reads it.
//! Its credentials never reach a log line or an error: [`Proxy::shown`] is
//! the URL without them.

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

/// Which destinations go through which proxy.
#[derive(Clone)]
pub struct Proxy {
    matcher: Arc<Matcher>,
    /// The proxy URL without credentials, for logs; `None` when direct.
    shown: Option<String>,
    /// The URL with its credentials, for clients configured by URL (git).
    url: Option<crate::secret::Secret>,
    no_proxy: String,
    /// Set by the settings, not read from the environment.
    configured: bool,
}

/// A proxy setting that cannot be used. Never carries the credentials.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(
        "proxy URL {0:?} is not an http:// URL with a host (https:// proxies are not supported)"
    )]
    Url(String),
}

impl Proxy {
    /// No proxy: every connection direct.
    pub fn direct() -> Self {
        Self {
            matcher: Arc::new(Matcher::builder().build()),
            shown: None,
            url: None,
            no_proxy: String::new(),
            configured: false,
        }
    }

    /// The environment's rules (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY,
    /// NO_PROXY and their lower-case forms).
    pub fn from_env() -> Self {
        let var = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
        };
        let url = var(&["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"])
            .or_else(|| var(&["HTTP_PROXY", "http_proxy"]));
        Self {
            matcher: Arc::new(Matcher::from_env()),
            shown: url.as_deref().map(without_credentials),
            url: url.map(crate::secret::Secret::new),
            no_proxy: var(&["NO_PROXY", "no_proxy"]).unwrap_or_default(),
            configured: false,
        }
    }

    /// One proxy for every http and https destination except `no_proxy`
    /// (NO_PROXY's syntax: names, `.suffix`, IPs, CIDR blocks, `*`).
    pub fn configured(url: &str, no_proxy: &[String]) -> Result<Self, ProxyError> {
        let shown = without_credentials(url);
        let parsed: http::Uri = url.parse().map_err(|_| ProxyError::Url(shown.clone()))?;
        if parsed.scheme_str() != Some("http") || parsed.host().is_none() {
            return Err(ProxyError::Url(shown));
        }
        let no_proxy = no_proxy.join(",");
        let matcher = Matcher::builder()
            .all(url.to_string())
            .no(no_proxy.clone())
            .build();
        Ok(Self {
            matcher: Arc::new(matcher),
            shown: Some(shown),
            url: Some(crate::secret::Secret::new(url.to_string())),
            no_proxy,
            configured: true,
        })
    }

    /// The proxy URL without its credentials, when there is one.
    pub fn shown(&self) -> Option<&str> {
        self.shown.as_deref()
    }

    /// The proxy URL, credentials included, for a client configured by
    /// URL; never to be logged.
    pub fn url(&self) -> Option<&crate::secret::Secret> {
        self.url.as_ref()
    }

    /// The NO_PROXY rules, comma-separated.
    pub fn no_proxy(&self) -> &str {
        &self.no_proxy
    }

    /// Whether a connection to `uri` goes through the proxy.
    pub fn applies_to(&self, uri: &http::Uri) -> bool {
        self.matcher.intercept(uri).is_some()
    }

    /// The AWS SDK's HTTP client for a proxy from the settings (`None`
    /// for the environment's, which the SDK reads by itself, or none).
    pub fn aws_http_client(&self) -> Option<aws_sdk_s3::config::SharedHttpClient> {
        use aws_smithy_http_client::proxy::ProxyConfig;
        use aws_smithy_http_client::tls;
        let url = self.url.as_ref().filter(|_| self.configured)?;
        let (plain, credentials) = split_credentials(url.expose());
        let mut config = ProxyConfig::all(plain.as_str()).ok()?;
        if let Some((user, password)) = credentials {
            config = config.with_basic_auth(user, password);
        }
        if !self.no_proxy.is_empty() {
            config = config.no_proxy(&self.no_proxy);
        }
        let client = aws_smithy_http_client::Builder::new().build_with_connector_fn(
            move |settings, components| {
                let mut builder = aws_smithy_http_client::Connector::builder().tls_provider(
                    tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc),
                );
                builder.set_connector_settings(settings.cloned());
                if let Some(components) = components {
                    builder.set_sleep_impl(components.sleep_impl());
                }
                builder.proxy_config(config.clone()).build()
            },
        );
        Some(client)
    }

    /// A connector that goes through this proxy where its rules say, and
    /// direct elsewhere.
    pub fn connector(&self) -> Connector {
        let mut http = HttpConnector::new();
        // The TLS layer above asks for https:// destinations.
        http.enforce_http(false);
        Connector {
            proxy: self.clone(),
            http,
        }
    }
}

/// `http://user:pass@host:port` → (`http://host:port`, user and password).
fn split_credentials(url: &str) -> (String, Option<(String, String)>) {
    let plain = without_credentials(url);
    let userinfo = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split('/')
        .next()
        .and_then(|authority| authority.rsplit_once('@'))
        .map(|(userinfo, _)| userinfo);
    let credentials = userinfo.map(|u| match u.split_once(':') {
        Some((user, password)) => (user.to_string(), password.to_string()),
        None => (u.to_string(), String::new()),
    });
    (plain, credentials)
}

/// `http://user:pass@host:port` → `http://host:port`.
pub fn without_credentials(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => url.rsplit_once('@').map_or(url, |(_, h)| h).to_string(),
    }
}

static CURRENT: RwLock<Option<Proxy>> = RwLock::new(None);

/// Sets the proxy every client made from now on uses.
pub fn install(proxy: Proxy) {
    if let Some(shown) = proxy.shown() {
        tracing::info!(event = "proxy.configured", proxy = %shown, no_proxy = %proxy.no_proxy());
    }
    *CURRENT.write().unwrap_or_else(|e| e.into_inner()) = Some(proxy);
}

/// The proxy installed, else the environment's.
pub fn current() -> Proxy {
    if let Some(p) = CURRENT.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        return p.clone();
    }
    Proxy::from_env()
}

/// A TCP connector for hyper: direct, or through the proxy with CONNECT.
#[derive(Clone)]
pub struct Connector {
    proxy: Proxy,
    http: HttpConnector,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<http::Uri> for Connector {
    type Response = TokioIo<tokio::net::TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: http::Uri) -> Self::Future {
        let http = self.http.clone();
        match self.proxy.matcher.intercept(&dst) {
            Some(intercept) => {
                let mut tunnel = Tunnel::new(intercept.uri().clone(), http);
                if let Some(auth) = intercept.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                Box::pin(async move {
                    tower_service::Service::call(&mut tunnel, dst)
                        .await
                        .map_err(|e| -> BoxError { Box::new(TunnelFailed(e.to_string())) })
                })
            }
            None => {
                let mut http = http;
                Box::pin(async move {
                    tower_service::Service::call(&mut http, dst)
                        .await
                        .map_err(Into::into)
                })
            }
        }
    }
}

/// The proxy refused or dropped the tunnel (hyper's message, which names
/// neither the credentials nor the destination's path).
#[derive(Debug, thiserror::Error)]
#[error("through the proxy: {0}")]
struct TunnelFailed(String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_never_shown() {
        assert_eq!(
            without_credentials("http://ops:s3cret@proxy.corp:3128"),
            "http://proxy.corp:3128"
        );
        assert_eq!(
            without_credentials("http://proxy.corp:3128/"),
            "http://proxy.corp:3128/"
        );
        let p = Proxy::configured("http://ops:s3cret@proxy.corp:3128", &[]).unwrap();
        assert_eq!(p.shown(), Some("http://proxy.corp:3128"));
        let err = Proxy::configured("https://ops:s3cret@proxy.corp:3128", &[])
            .err()
            .unwrap()
            .to_string();
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn no_proxy_rules_send_those_destinations_direct() {
        let p = Proxy::configured(
            "http://proxy.corp:3128",
            &[".internal.corp".into(), "10.0.0.0/8".into()],
        )
        .unwrap();
        let uri = |u: &str| u.parse::<http::Uri>().unwrap();
        assert!(p.applies_to(&uri("https://acme-v02.api.letsencrypt.org/directory")));
        assert!(p.applies_to(&uri("http://hooks.example.com/x")));
        assert!(!p.applies_to(&uri("https://git.internal.corp/repo")));
        assert!(!p.applies_to(&uri("https://10.1.2.3/")));
        assert!(!Proxy::direct().applies_to(&uri("https://example.com/")));
    }
}
