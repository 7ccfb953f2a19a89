//! A TLS server on loopback that serves the certificate in a pair of PEM
//! files, like a web server after `nginx -s reload`, but only once the files
//! have been unchanged for `rollout` — the delay of a real rollout. Before
//! that (and before the files exist) it serves a throw-away self-signed
//! certificate.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub struct TlsServer {
    pub addr: SocketAddr,
    /// Serial (upper-case hex) of the placeholder certificate.
    pub placeholder_serial: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub type Pair = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// What to serve on the next connection; `None` keeps the last.
pub type Pick = std::sync::Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Pair>> + Send>>
        + Send
        + Sync,
>;

fn placeholder() -> (Pair, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params =
        rcgen::CertificateParams::new(vec!["placeholder.test".into()]).expect("params");
    params.serial_number = Some(rcgen::SerialNumber::from(vec![0x0A, 0xBC, 0xDE]));
    let cert = params.self_signed(&key).expect("self-signed");
    let der = cert.der().clone();
    (
        (
            vec![der],
            PrivateKeyDer::try_from(key.serialize_der()).expect("key der"),
        ),
        "0ABCDE".into(),
    )
}

fn read_pair(cert: &PathBuf, key: &PathBuf, rollout: Duration) -> Option<Pair> {
    let modified = std::fs::metadata(cert).and_then(|m| m.modified()).ok()?;
    if SystemTime::now()
        .duration_since(modified)
        .unwrap_or_default()
        < rollout
    {
        return None;
    }
    let certs = CertificateDer::pem_file_iter(cert)
        .ok()?
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    let key = PrivateKeyDer::from_pem_file(key).ok()?;
    Some((certs, key))
}

impl TlsServer {
    pub async fn start(cert: PathBuf, key: PathBuf, rollout: Duration) -> TlsServer {
        Self::serve(std::sync::Arc::new(move || {
            let (cert, key) = (cert.clone(), key.clone());
            Box::pin(async move { read_pair(&cert, &key, rollout) })
        }))
        .await
    }

    /// Serves what `pick` says at each connection (the placeholder until
    /// it says something).
    pub async fn serve(pick: Pick) -> TlsServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (fallback, placeholder_serial) = placeholder();
        let task = tokio::spawn(async move {
            let mut serving = fallback;
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                if let Some(pair) = pick().await {
                    serving = pair;
                }
                let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
                let config = rustls::ServerConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .expect("versions")
                    .with_no_client_auth()
                    .with_single_cert(serving.0.clone(), serving.1.clone_key());
                let Ok(config) = config else {
                    continue;
                };
                let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        use tokio::io::AsyncWriteExt;
                        let _ = tls.shutdown().await;
                    }
                });
            }
        });
        TlsServer {
            addr,
            placeholder_serial,
            task,
        }
    }
}
