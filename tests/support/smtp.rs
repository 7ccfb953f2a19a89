//! A local SMTP sink: EHLO, STARTTLS (a certificate for 127.0.0.1 from a
//! throw-away CA), AUTH PLAIN, MAIL, RCPT, DATA. Records every message.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

#[derive(Debug, Clone, Default)]
pub struct Mail {
    pub tls: bool,
    /// `user:password` from AUTH PLAIN.
    pub auth: Option<String>,
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

pub struct SmtpSink {
    pub addr: std::net::SocketAddr,
    pub ca: PathBuf,
    pub mails: Arc<Mutex<Vec<Mail>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    mail: &mut Mail,
) -> std::io::Result<bool> {
    // Returns Ok(true) when the client asked for STARTTLS.
    loop {
        let mut line = String::new();
        if s.read_line(&mut line).await? == 0 {
            return Ok(false);
        }
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        let answer = if upper.starts_with("EHLO") {
            if mail.tls {
                "250-sink\r\n250 AUTH PLAIN\r\n".to_string()
            } else {
                "250-sink\r\n250 STARTTLS\r\n".to_string()
            }
        } else if upper == "STARTTLS" {
            s.get_mut().write_all(b"220 go ahead\r\n").await?;
            return Ok(true);
        } else if let Some(token) = cmd.strip_prefix("AUTH PLAIN ") {
            use base64::Engine;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(token)
                .unwrap_or_default();
            let parts: Vec<String> = raw
                .split(|b| *b == 0)
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
            mail.auth = Some(format!(
                "{}:{}",
                parts.get(1).cloned().unwrap_or_default(),
                parts.get(2).cloned().unwrap_or_default()
            ));
            "235 ok\r\n".into()
        } else if let Some(from) = upper.strip_prefix("MAIL FROM:") {
            mail.from = cmd[10..].trim_matches(['<', '>', ' ']).to_string();
            let _ = from;
            "250 ok\r\n".into()
        } else if upper.starts_with("RCPT TO:") {
            mail.to
                .push(cmd[8..].trim_matches(['<', '>', ' ']).to_string());
            "250 ok\r\n".into()
        } else if upper == "DATA" {
            s.get_mut().write_all(b"354 end with .\r\n").await?;
            loop {
                let mut l = String::new();
                if s.read_line(&mut l).await? == 0 {
                    return Ok(false);
                }
                if l == ".\r\n" {
                    break;
                }
                mail.data.push_str(&l);
            }
            "250 queued\r\n".into()
        } else if upper == "QUIT" {
            s.get_mut().write_all(b"221 bye\r\n").await?;
            return Ok(false);
        } else {
            "502 unknown\r\n".into()
        };
        s.get_mut().write_all(answer.as_bytes()).await?;
    }
}

impl SmtpSink {
    pub async fn start(dir: &Path) -> SmtpSink {
        std::fs::create_dir_all(dir).unwrap();
        super::write_listener_certs(dir);
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(dir.join("listener.pem"))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_file(dir.join("listener.key")).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
        let store = mails.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, store) = (acceptor.clone(), store.clone());
                tokio::spawn(async move {
                    let mut mail = Mail::default();
                    if tcp.write_all(b"220 sink ready\r\n").await.is_err() {
                        return;
                    }
                    let mut s = BufReader::new(tcp);
                    if let Ok(true) = session(&mut s, &mut mail).await {
                        let Ok(tls) = acceptor.accept(s.into_inner()).await else {
                            return;
                        };
                        mail.tls = true;
                        let mut s = BufReader::new(tls);
                        let _ = session(&mut s, &mut mail).await;
                    }
                    if !mail.data.is_empty() {
                        store.lock().unwrap().push(mail);
                    }
                });
            }
        });
        SmtpSink {
            addr,
            ca: dir.join("listener-ca.pem"),
            mails,
            task,
        }
    }
}
