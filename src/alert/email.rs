//! Email over SMTP: STARTTLS (required unless turned off), AUTH PLAIN, one
//! message to every recipient. The password is a secret and never logged;
//! TLS is verified (system roots, or the configured root for a private CA).

use super::{Alert, Channel, ChannelError};
use crate::secret::Secret;
use async_trait::async_trait;
use base64::Engine;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

#[derive(Clone)]
pub struct Email {
    pub name: String,
    pub server: String,
    pub from: String,
    pub to: Vec<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub starttls: bool,
    pub root_ca_file: Option<PathBuf>,
}

const TIMEOUT: Duration = Duration::from_secs(30);

/// Why a message was not delivered. Never carries the password.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error("connect: {0}")]
    Connect(#[source] std::io::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the server closed the connection")]
    Closed,
    #[error("expected {want}, got: {got}")]
    Reply { want: u16, got: String },
    #[error("authentication failed")]
    Auth,
    #[error("the server does not offer STARTTLS (refusing to send in clear)")]
    NoStarttls,
    #[error("server name: {0}")]
    ServerName(#[source] rustls::pki_types::InvalidDnsNameError),
    #[error("{}: {message}", path.display())]
    Root { path: PathBuf, message: String },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("no answer within {}s", TIMEOUT.as_secs())]
    Timeout,
}

/// Reads one (possibly multi-line) reply; `Err` unless its code is `want`.
async fn reply<S: AsyncRead + Unpin>(r: &mut BufReader<S>, want: u16) -> Result<String, SmtpError> {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        let n = r.read_line(&mut line).await?;
        if n == 0 {
            return Err(SmtpError::Closed);
        }
        all.push_str(&line);
        // `250-...` continues, `250 ...` ends.
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            break;
        }
    }
    let code: u16 = all.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
    if code == want {
        Ok(all)
    } else {
        Err(SmtpError::Reply {
            want,
            got: all.trim().to_string(),
        })
    }
}

async fn command<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    line: &str,
    want: u16,
) -> Result<String, SmtpError> {
    s.get_mut()
        .write_all(format!("{line}\r\n").as_bytes())
        .await?;
    reply(s, want).await
}

/// After EHLO (and STARTTLS): AUTH, the envelope, the message.
async fn deliver<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    email: &Email,
    message: &str,
) -> Result<(), SmtpError> {
    if let (Some(user), Some(password)) = (&email.username, &email.password) {
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("\0{user}\0{}", password.expose()));
        command(s, &format!("AUTH PLAIN {token}"), 235)
            .await
            .map_err(|_| SmtpError::Auth)?;
    }
    command(s, &format!("MAIL FROM:<{}>", email.from), 250).await?;
    for to in &email.to {
        command(s, &format!("RCPT TO:<{to}>"), 250).await?;
    }
    command(s, "DATA", 354).await?;
    // Dot-stuffing: a line starting with '.' gets another.
    let body: String = message
        .lines()
        .map(|l| {
            if l.starts_with('.') {
                format!(".{l}\r\n")
            } else {
                format!("{l}\r\n")
            }
        })
        .collect();
    s.get_mut()
        .write_all(format!("{body}.\r\n").as_bytes())
        .await?;
    reply(s, 250).await?;
    let _ = command(s, "QUIT", 221).await;
    Ok(())
}

impl Email {
    fn tls(&self) -> Result<tokio_rustls::TlsConnector, SmtpError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| SmtpError::Tls(e.to_string()))?;
        let config = match &self.root_ca_file {
            Some(path) => {
                use rustls::pki_types::pem::PemObject;
                let mut roots = rustls::RootCertStore::empty();
                let root = |e: &dyn std::fmt::Display| SmtpError::Root {
                    path: path.clone(),
                    message: e.to_string(),
                };
                for cert in
                    rustls::pki_types::CertificateDer::pem_file_iter(path).map_err(|e| root(&e))?
                {
                    roots
                        .add(cert.map_err(|e| root(&e))?)
                        .map_err(|e| root(&e))?;
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            None => {
                use rustls_platform_verifier::BuilderVerifierExt;
                builder
                    .with_platform_verifier()
                    .map_err(|e| SmtpError::Tls(e.to_string()))?
                    .with_no_client_auth()
            }
        };
        Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
    }

    fn message(&self, alert: &Alert) -> String {
        let date = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc2822)
            .unwrap_or_default();
        if alert.level == crate::alert::REMINDER {
            // To someone outside: no internal locations.
            let days = alert.days_left.unwrap_or(0).max(0);
            return format!(
                "From: {}\r\nTo: {}\r\nSubject: Certificate {} due for renewal within {days} days\r\nDate: {date}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{}\r\n",
                self.from,
                self.to.join(", "),
                alert.name,
                alert.message.replace('\n', "\r\n"),
            );
        }
        let subject = format!("[certkeeper] {}: {}", alert.level, alert.name);
        format!(
            "From: {}\r\nTo: {}\r\nSubject: {subject}\r\nDate: {date}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{}\r\n\r\nsource: {}\r\nnot after: {}\r\n",
            self.from,
            self.to.join(", "),
            alert.message,
            alert.source,
            alert.not_after.as_deref().unwrap_or("-"),
        )
    }

    async fn send_inner(&self, alert: &Alert) -> Result<(), SmtpError> {
        let tcp = tokio::net::TcpStream::connect(&self.server)
            .await
            .map_err(SmtpError::Connect)?;
        let mut s = BufReader::new(tcp);
        reply(&mut s, 220).await?;
        let ehlo = command(&mut s, "EHLO certkeeper", 250).await?;
        let message = self.message(alert);
        if !self.starttls {
            return deliver(&mut s, self, &message).await;
        }
        if !ehlo.lines().any(|l| {
            l.get(4..)
                .is_some_and(|e| e.trim().eq_ignore_ascii_case("STARTTLS"))
        }) {
            return Err(SmtpError::NoStarttls);
        }
        command(&mut s, "STARTTLS", 220).await?;
        let host = self
            .server
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(&self.server)
            .to_string();
        let name = rustls::pki_types::ServerName::try_from(host).map_err(SmtpError::ServerName)?;
        let tls = self
            .tls()?
            .connect(name, s.into_inner())
            .await
            .map_err(|e| SmtpError::Tls(e.to_string()))?;
        let mut s = BufReader::new(tls);
        command(&mut s, "EHLO certkeeper", 250).await?;
        deliver(&mut s, self, &message).await
    }
}

#[async_trait]
impl Channel for Email {
    fn name(&self) -> &str {
        &self.name
    }

    fn readdressed(&self, to: &[String]) -> Option<Arc<dyn Channel>> {
        Some(Arc::new(Email {
            to: to.to_vec(),
            ..self.clone()
        }))
    }

    async fn send(&self, alert: &Alert) -> Result<(), ChannelError> {
        tokio::time::timeout(TIMEOUT, self.send_inner(alert))
            .await
            .map_err(|_| SmtpError::Timeout)
            .and_then(|r| r)
            .map_err(|e| ChannelError {
                channel: self.name.clone(),
                cause: e.into(),
            })
    }
}
