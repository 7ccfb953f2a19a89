//! CloudFront and load balancers on loopback, for the rollout tests:
//! moto behind `edge_proxy.py` (an id of its own per IAM certificate,
//! CloudFront's ETags, conflicting edits and deployments), the consumers a
//! team set up by hand made with boto3 (`edge_fixtures.py`), and TLS
//! servers that serve, at each handshake, whatever certificate a load
//! balancer or distribution references in moto at that moment, with the
//! key certkeeper's state dir holds for it — so "the canary serves the
//! new certificate" is checked against the switch that really happened.

use super::tls::{Pair, TlsServer};
use super::{Process, Tied, free_port, sdk_config_at, wait_for_port};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

pub struct EdgeFront {
    pub port: u16,
    log: PathBuf,
    conflicts: PathBuf,
    _process: Process,
    _dir: tempfile::TempDir,
}

impl EdgeFront {
    /// In front of `upstream`; distributions deploy for `deploy_seconds`
    /// after an update.
    pub fn start(upstream: &str, deploy_seconds: f64) -> EdgeFront {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let log = dir.path().join("edge.log");
        let conflicts = dir.path().join("conflicts");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/edge_proxy.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(upstream)
            .arg(&log)
            .arg(deploy_seconds.to_string())
            .arg(&conflicts)
            .stderr(std::fs::File::create(dir.path().join("edge.err")).expect("log"))
            .tied()
            .spawn()
            .expect("python3 edge_proxy.py");
        wait_for_port(port, &mut child, "edge proxy", &dir.path().join("edge.err"));
        EdgeFront {
            port,
            log,
            conflicts,
            _process: Process { child },
            _dir: dir,
        }
    }

    /// Someone else edits `distribution` just before its next update
    /// (once), so that update is refused with 412.
    pub fn conflict_on(&self, distribution: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.conflicts)
            .expect("conflicts file");
        writeln!(f, "{distribution}").expect("conflicts file");
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// CloudFront requests seen: `<time> <status> <method> <path>` lines.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `edge_fixtures.py COMMAND ARGS…` through this front; its
    /// output, trimmed.
    pub fn fixture(&self, args: &[&str]) -> String {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/edge_fixtures.py");
        let out = Command::new("python3")
            .arg(script)
            .arg(self.endpoint())
            .args(args)
            .output()
            .expect("python3 edge_fixtures.py");
        assert!(
            out.status.success(),
            "edge_fixtures.py {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Every distribution, listener and IAM certificate (see
    /// `edge_fixtures.py show`).
    pub fn show(&self) -> serde_json::Value {
        serde_json::from_str(&self.fixture(&["show"])).expect("show json")
    }

    /// A TLS server that serves what `consumer` references now.
    pub async fn serving(&self, consumer: Follow, state_dir: &Path) -> TlsServer {
        let sdk = sdk_config_at(&self.endpoint()).await;
        let clients = Arc::new(Clients {
            iam: aws_sdk_iam::Client::new(&sdk),
            acm: aws_sdk_acm::Client::new(&sdk),
            elb: aws_sdk_elasticloadbalancing::Client::new(&sdk),
            elbv2: aws_sdk_elasticloadbalancingv2::Client::new(&sdk),
            cloudfront: aws_sdk_cloudfront::Client::new(&sdk),
        });
        let state_dir = state_dir.to_path_buf();
        let consumer = Arc::new(consumer);
        TlsServer::serve(Arc::new(move || {
            let (clients, consumer, state_dir) =
                (clients.clone(), consumer.clone(), state_dir.clone());
            Box::pin(async move { clients.pair(&consumer, &state_dir).await })
        }))
        .await
    }
}

/// What a test TLS server stands in for.
pub enum Follow {
    Elb { name: String, port: i32 },
    Listener(String),
    Distribution(String),
}

struct Clients {
    iam: aws_sdk_iam::Client,
    acm: aws_sdk_acm::Client,
    elb: aws_sdk_elasticloadbalancing::Client,
    elbv2: aws_sdk_elasticloadbalancingv2::Client,
    cloudfront: aws_sdk_cloudfront::Client,
}

impl Clients {
    /// The reference (ARN or IAM id) `consumer` holds now.
    async fn reference(&self, consumer: &Follow) -> Option<String> {
        match consumer {
            Follow::Elb { name, port } => {
                let out = self
                    .elb
                    .describe_load_balancers()
                    .load_balancer_names(name)
                    .send()
                    .await
                    .ok()?;
                out.load_balancer_descriptions()
                    .iter()
                    .flat_map(|d| d.listener_descriptions())
                    .filter_map(|l| l.listener())
                    .find(|l| l.load_balancer_port() == *port)?
                    .ssl_certificate_id()
                    .map(str::to_string)
            }
            Follow::Listener(arn) => {
                let out = self
                    .elbv2
                    .describe_listener_certificates()
                    .listener_arn(arn)
                    .send()
                    .await
                    .ok()?;
                out.certificates()
                    .iter()
                    .find(|c| c.is_default() == Some(true))?
                    .certificate_arn()
                    .map(str::to_string)
            }
            Follow::Distribution(id) => {
                let out = self
                    .cloudfront
                    .get_distribution_config()
                    .id(id)
                    .send()
                    .await
                    .ok()?;
                let vc = out.distribution_config()?.viewer_certificate()?;
                vc.iam_certificate_id()
                    .or(vc.acm_certificate_arn())
                    .filter(|r| !r.is_empty())
                    .map(str::to_string)
            }
        }
    }

    /// The PEM of the certificate `reference` names.
    async fn body(&self, reference: &str) -> Option<String> {
        if reference.starts_with("arn:aws:acm:") {
            let out = self
                .acm
                .get_certificate()
                .certificate_arn(reference)
                .send()
                .await
                .ok()?;
            return out.certificate().map(str::to_string);
        }
        let list = self.iam.list_server_certificates().send().await.ok()?;
        let name = list
            .server_certificate_metadata_list()
            .iter()
            .find(|m| m.arn() == reference || m.server_certificate_id() == reference)?
            .server_certificate_name()
            .to_string();
        let out = self
            .iam
            .get_server_certificate()
            .server_certificate_name(name)
            .send()
            .await
            .ok()?;
        Some(out.server_certificate()?.certificate_body().to_string())
    }

    async fn pair(&self, consumer: &Follow, state_dir: &Path) -> Option<Pair> {
        let reference = self.reference(consumer).await?;
        let body = self.body(&reference).await?;
        // The key certkeeper keeps beside that certificate.
        let archive = std::fs::read_dir(state_dir.join("archive")).ok()?;
        for name in archive.flatten() {
            for version in std::fs::read_dir(name.path()).ok()?.flatten() {
                let cert = version.path().join("cert.pem");
                let Ok(pem) = std::fs::read_to_string(&cert) else {
                    continue;
                };
                if pem.trim() != body.trim() {
                    continue;
                }
                let certs = CertificateDer::pem_file_iter(&cert)
                    .ok()?
                    .collect::<Result<Vec<_>, _>>()
                    .ok()?;
                let key = PrivateKeyDer::from_pem_file(version.path().join("privkey.pem")).ok()?;
                return Some((certs, key));
            }
        }
        None
    }
}
