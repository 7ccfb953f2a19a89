//! The daemon's optional HTTP listener: `/healthz` (200, or 503 with the
//! reason), `/status` (status.json) and `/metrics` (Prometheus).
//!
//! A deliberately small HTTP/1.1 responder: GET only, one request per
//! connection, bounded request size and time. Everything it serves is read
//! from the status file, so it answers the same as `certkeeper status`.

use crate::report::health::{self, Level, Thresholds};
use crate::report::{STATUS_FILE, Status};
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const MAX_REQUEST: usize = 8 * 1024;
/// The pause after a failed accept doubles from the first to the most.
const ACCEPT_PAUSE_FIRST: Duration = Duration::from_millis(10);
const ACCEPT_PAUSE_MOST: Duration = Duration::from_secs(1);

/// A run of failing accepts: logged once when it starts and once when it
/// ends, paused between, so the listener neither spins nor floods the log.
#[derive(Default)]
struct AcceptFailures {
    count: u64,
    pause: Duration,
}

impl AcceptFailures {
    fn failed(&mut self, e: &std::io::Error) -> Duration {
        if self.count == 0 {
            tracing::warn!(event = "http.accept.failing", error = %e, message = "the HTTP listener cannot accept connections (out of file descriptors?); retrying with a pause");
        }
        self.count += 1;
        self.pause = (self.pause * 2).clamp(ACCEPT_PAUSE_FIRST, ACCEPT_PAUSE_MOST);
        self.pause
    }

    fn recovered(&mut self) {
        if self.count > 0 {
            tracing::info!(event = "http.accept.recovered", failed = self.count);
        }
        *self = AcceptFailures::default();
    }
}
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves until `cancel` fires.
pub async fn serve(
    listener: TcpListener,
    state_dir: PathBuf,
    thresholds: Thresholds,
    cancel: CancellationToken,
) {
    let mut failing = AcceptFailures::default();
    loop {
        let (mut tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => {
                    failing.recovered();
                    a
                }
                Err(e) => {
                    // EMFILE/ENFILE (out of descriptors), ENOBUFS …: the
                    // connection waits in the backlog; retrying at once
                    // would spin. Wait, longer each time, and try again.
                    let pause = failing.failed(&e);
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => continue,
                        _ = cancel.cancelled() => return,
                    }
                }
            },
            _ = cancel.cancelled() => return,
        };
        let state_dir = state_dir.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, async {
                let path = match read_request(&mut tcp).await {
                    Some(p) => p,
                    None => {
                        let _ = respond(&mut tcp, 400, "text/plain", "bad request\n").await;
                        return;
                    }
                };
                let (code, kind, body) = answer(&path, &state_dir, &thresholds);
                let _ = respond(&mut tcp, code, kind, &body).await;
            })
            .await;
        });
    }
}

/// The path of a GET request, `None` for anything else.
async fn read_request(tcp: &mut tokio::net::TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tcp.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() + n > MAX_REQUEST {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = std::str::from_utf8(&buf).ok()?;
    let mut parts = text.lines().next()?.split(' ');
    let (method, target) = (parts.next()?, parts.next()?);
    (method == "GET").then(|| target.split('?').next().unwrap_or("/").to_string())
}

async fn respond(
    tcp: &mut tokio::net::TcpStream,
    code: u16,
    kind: &str,
    body: &str,
) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        503 => "Service Unavailable",
        _ => "Bad Request",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await?;
    tcp.write_all(body.as_bytes()).await?;
    tcp.shutdown().await
}

fn read_watched(state_dir: &std::path::Path) -> Vec<crate::watch::Watched> {
    std::fs::read(state_dir.join(crate::watch::LAST_SCAN))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn read_status(state_dir: &std::path::Path) -> Option<(String, Status)> {
    let text = std::fs::read_to_string(state_dir.join(STATUS_FILE)).ok()?;
    let status = serde_json::from_str(&text).ok()?;
    Some((text, status))
}

/// Status code, content type and body for `path`.
pub fn answer(
    path: &str,
    state_dir: &std::path::Path,
    thresholds: &Thresholds,
) -> (u16, &'static str, String) {
    let now = time::OffsetDateTime::now_utc();
    match path {
        "/healthz" => match read_status(state_dir) {
            None => (503, "text/plain", "UNKNOWN: no status yet\n".into()),
            Some((_, status)) => {
                let (level, reasons) = health::overall(&status, thresholds, now);
                let body = if reasons.is_empty() {
                    format!("{}\n", level.label())
                } else {
                    format!("{}: {}\n", level.label(), reasons.join("; "))
                };
                // A warning (renewal failed, still valid) is not an outage.
                let code = if matches!(level, Level::Ok | Level::Warning) {
                    200
                } else {
                    503
                };
                (code, "text/plain", body)
            }
        },
        "/status" => match read_status(state_dir) {
            None => (
                503,
                "application/json",
                "{\"error\":\"no status yet\"}\n".into(),
            ),
            Some((text, _)) => (200, "application/json", text),
        },
        "/metrics" => {
            let status = read_status(state_dir).map(|(_, s)| s);
            if let Some(s) = &status
                && s.error.is_none()
                && s.certificates
                    .iter()
                    .all(|c| c.state != crate::report::CertState::Failed)
            {
                crate::metrics::set(
                    "certkeeper_run_last_success_timestamp_seconds",
                    s.finished_at.unix_timestamp() as f64,
                );
            }
            (
                200,
                "text/plain; version=0.0.4",
                crate::metrics::render(status.as_ref(), &read_watched(state_dir), now),
            )
        }
        _ => (
            404,
            "text/plain",
            "not found: try /healthz, /status, /metrics\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_include_watched_certificates_and_healthz_needs_a_status() {
        let dir = tempfile::tempdir().unwrap();
        let t = Thresholds::default();
        assert_eq!(answer("/healthz", dir.path(), &t).0, 503);
        std::fs::write(
            dir.path().join(crate::watch::LAST_SCAN),
            r#"[{"name":"mesh","source":"s3://b/mesh/cert.pem","labels":{},"not_after":"2027-01-01T00:00:00Z","serial":"01","subject":"CN=mesh"}]"#,
        )
        .unwrap();
        let (code, _, body) = answer("/metrics", dir.path(), &t);
        assert_eq!(code, 200);
        assert!(
            body.contains("certkeeper_watched_certificate_expiration_timestamp_seconds{name=\"mesh\",source=\"s3://b/mesh/cert.pem\"} 1798761600"),
            "{body}"
        );
        assert_eq!(answer("/other", dir.path(), &t).0, 404);
    }
}
