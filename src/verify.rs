//! Deploy verification: after publishing, connect to the endpoints that
//! should serve the certificate and compare the leaf they present.
//!
//! The handshake accepts any chain: this inspects what is served, it does
//! not trust it (the ACME client's TLS is verified separately and always).
//! Rollouts take minutes, so a mismatch is retried over a window.

use crate::config::{Endpoint, VerifySpec};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What one endpoint served.
#[derive(Debug)]
pub enum Seen {
    /// The expected certificate.
    Match,
    /// Another certificate, by serial.
    Other {
        serial: String,
    },
    Unreachable(ServedError),
}

/// Why an endpoint's certificate could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ServedError {
    #[error("bad server name {name:?}: {source}")]
    BadName {
        name: String,
        #[source]
        source: rustls::pki_types::InvalidDnsNameError,
    },
    #[error("connect: {0}")]
    Connect(#[source] std::io::Error),
    #[error("TLS handshake: {0}")]
    Handshake(#[source] std::io::Error),
    #[error("no certificate presented")]
    NoCertificate,
    #[error("no answer within {}s", CONNECT_TIMEOUT.as_secs())]
    Timeout,
    #[error("unreadable certificate: {0}")]
    Unreadable(#[source] crate::x509::X509Error),
}

/// What the endpoints served when the window closed, like `mismatch:
/// www.example.com:443 serves serial X, expected Y`.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.findings.join("; "))]
pub struct VerifyError {
    pub findings: Vec<String>,
}

/// Accepts every certificate: we only want to look at it.
#[derive(Debug)]
struct Inspect(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Inspect {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn client_config() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Inspect(provider)))
        .with_no_client_auth();
    Arc::new(config)
}

/// The DER of the leaf `endpoint` serves.
pub async fn served_leaf(endpoint: &Endpoint) -> Result<Vec<u8>, ServedError> {
    let name = ServerName::try_from(endpoint.sni().to_string()).map_err(|source| {
        ServedError::BadName {
            name: endpoint.sni().to_string(),
            source,
        }
    })?;
    let connector = tokio_rustls::TlsConnector::from(client_config());
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect(endpoint.address())
            .await
            .map_err(ServedError::Connect)?;
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(ServedError::Handshake)?;
        let (_, session) = tls.get_ref();
        session
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .ok_or(ServedError::NoCertificate)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, handshake)
        .await
        .map_err(|_| ServedError::Timeout)?
}

/// Checks one endpoint once against the expected leaf SHA-256 (`AB:CD:…`).
pub async fn check(endpoint: &Endpoint, expected_sha256: &str) -> Seen {
    match served_leaf(endpoint).await {
        Err(e) => Seen::Unreachable(e),
        Ok(der) => {
            let info = crate::x509::leaf_info(&der);
            match info {
                Ok(i) if i.sha256 == expected_sha256 => Seen::Match,
                Ok(i) => Seen::Other { serial: i.serial },
                Err(e) => Seen::Unreachable(ServedError::Unreadable(e)),
            }
        }
    }
}

/// Checks every endpoint until all serve the expected certificate or the
/// window closes. `Ok(())` when verified, else the last findings, like
/// `mismatch: www.example.com:443 serves serial X, expected Y`.
pub async fn verify(
    spec: &VerifySpec,
    expected_sha256: &str,
    expected_serial: &str,
    cancel: &CancellationToken,
) -> Result<(), VerifyError> {
    let deadline = tokio::time::Instant::now() + spec.window;
    let mut pending: Vec<&Endpoint> = spec.endpoints.iter().collect();
    loop {
        let mut problems = Vec::new();
        let mut still = Vec::new();
        for endpoint in pending {
            match check(endpoint, expected_sha256).await {
                Seen::Match => {}
                Seen::Other { serial } => {
                    problems.push(format!(
                        "mismatch: {} serves serial {serial}, expected {expected_serial}",
                        endpoint.address()
                    ));
                    still.push(endpoint);
                }
                Seen::Unreachable(e) => {
                    problems.push(format!("unreachable: {}: {e}", endpoint.address()));
                    still.push(endpoint);
                }
            }
        }
        if still.is_empty() {
            return Ok(());
        }
        pending = still;
        let now = tokio::time::Instant::now();
        if now >= deadline || cancel.is_cancelled() {
            return Err(VerifyError { findings: problems });
        }
        let wait = spec.interval.min(deadline - now);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cancel.cancelled() => return Err(VerifyError { findings: problems }),
        }
    }
}
