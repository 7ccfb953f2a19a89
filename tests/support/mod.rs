//! Real servers for tests, on free loopback ports, stopped on drop:
//! Pebble (ACME CA), moto (AWS), and a DNS responder that serves exactly what
//! moto's Route53 holds, so Pebble validates the TXT values certkeeper wrote
//! through the Route53 API.
#![allow(dead_code)]

pub mod bind;
pub mod dns;
pub mod edge;
pub mod fault;
pub mod smtp;
pub mod sshd;
pub mod tinyproxy;
pub mod tls;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (the OS picks; we release it at once).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

pub(crate) fn wait_for_port(port: u16, child: &mut Child, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited with {status}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on port {port} within 60s");
}

/// Long-lived children are tied to the thread that starts them: the kernel
/// kills them (`PR_SET_PDEATHSIG`) when it ends, however it ends — a test
/// that panics, an example stopped with Ctrl-C, SIGTERM or SIGKILL — so
/// nothing is left running. Every server a test or example starts is
/// spawned through it; `Process` also kills on drop, the usual way.
pub trait Tied {
    fn tied(&mut self) -> &mut Self;
}

impl Tied for Command {
    fn tied(&mut self) -> &mut Command {
        use std::os::unix::process::CommandExt;
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            self.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent died before the prctl: go now.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            })
        }
    }
}

/// A child process killed when dropped.
pub struct Process {
    child: Child,
}

impl Process {
    /// Owns `child`: it is killed on every exit path, panics included.
    #[allow(dead_code)] // not every test binary uses it
    pub fn own(child: Child) -> Process {
        Process { child }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// moto in server mode: Route53, S3 and friends on one port.
pub struct Moto {
    pub port: u16,
    _process: Process,
    _dir: tempfile::TempDir,
}

impl Moto {
    pub fn start() -> Moto {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let log = dir.path().join("moto.log");
        let program = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let mut child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::fs::File::create(&log).expect("log"))
            .stderr(std::fs::File::create(dir.path().join("moto.err")).expect("log"))
            .tied()
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program} (pip install 'moto[server]'): {e}"));
        wait_for_port(
            port,
            &mut child,
            "moto_server",
            &dir.path().join("moto.err"),
        );
        Moto {
            port,
            _process: Process { child },
            _dir: dir,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The SDK config every test client uses: static test credentials.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        sdk_config_at(&self.endpoint()).await
    }

    pub async fn route53(&self) -> aws_sdk_route53::Client {
        aws_sdk_route53::Client::new(&self.sdk_config().await)
    }

    pub async fn s3(&self) -> aws_sdk_s3::Client {
        let sdk = self.sdk_config().await;
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(true)
                .build(),
        )
    }

    /// Creates a public hosted zone and returns its id (without /hostedzone/).
    pub async fn create_zone(&self, name: &str) -> String {
        let out = self
            .route53()
            .await
            .create_hosted_zone()
            .name(name)
            .caller_reference(format!("{name}-{}", std::process::id()))
            .send()
            .await
            .expect("create hosted zone");
        out.hosted_zone()
            .expect("zone")
            .id()
            .trim_start_matches("/hostedzone/")
            .to_string()
    }

    pub async fn create_bucket(&self, bucket: &str) {
        self.s3()
            .await
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .expect("create bucket");
    }

    /// Every TXT record set named `_acme-challenge...` in every zone.
    pub async fn challenge_records(&self) -> Vec<String> {
        let r53 = self.route53().await;
        let zones = r53.list_hosted_zones().send().await.expect("list zones");
        let mut out = Vec::new();
        for zone in zones.hosted_zones() {
            let sets = r53
                .list_resource_record_sets()
                .hosted_zone_id(zone.id())
                .send()
                .await
                .expect("list record sets");
            for set in sets.resource_record_sets() {
                if set.name().starts_with("_acme-challenge") {
                    let values: Vec<&str> =
                        set.resource_records().iter().map(|r| r.value()).collect();
                    out.push(format!("{} {:?}", set.name(), values));
                }
            }
        }
        out
    }
}

/// An SDK config for `endpoint` with static test credentials.
pub async fn sdk_config_at(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .load()
        .await
}

/// How the Route53 in front of moto behaves.
#[derive(Debug, Clone, Copy)]
pub struct Route53Timing {
    /// How long a change stays PENDING (real Route53: up to a minute).
    pub insync: Duration,
    /// Account-wide API requests per second (real Route53: 5).
    pub requests_per_second: f64,
    /// A change to a zone within this long of its last one is refused
    /// with PriorRequestNotComplete (zero: never).
    pub prior_request_window: Duration,
}

impl Default for Route53Timing {
    /// PENDING for `CK_ROUTE53_INSYNC` seconds (default 1), 5 requests/s.
    fn default() -> Self {
        let insync = std::env::var("CK_ROUTE53_INSYNC")
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(1.0);
        Route53Timing {
            insync: Duration::from_secs_f64(insync),
            requests_per_second: 5.0,
            prior_request_window: Duration::ZERO,
        }
    }
}

/// moto behind `route53_proxy.py`: Route53 as the real one behaves (fresh
/// change ids, PENDING for a while, 5 requests/s with `Throttling` above,
/// wildcards as `\052.`); every other service passed through.
pub struct Route53Front {
    pub port: u16,
    pub timing: Route53Timing,
    log: PathBuf,
    /// The record sets each accepted change left (the DNS responder's feed).
    pub journal: PathBuf,
    _process: Process,
    _dir: tempfile::TempDir,
}

impl Route53Front {
    pub fn start(moto: &Moto, timing: Route53Timing) -> Route53Front {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let log = dir.path().join("route53.log");
        let journal = dir.path().join("changes.jsonl");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/route53_proxy.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(moto.endpoint())
            .arg(timing.insync.as_secs_f64().to_string())
            .arg(&log)
            .arg(timing.requests_per_second.to_string())
            .arg(&journal)
            .arg(timing.prior_request_window.as_secs_f64().to_string())
            .stderr(std::fs::File::create(dir.path().join("proxy.err")).expect("log"))
            .tied()
            .spawn()
            .expect("python3 route53_proxy.py");
        wait_for_port(
            port,
            &mut child,
            "route53 proxy",
            &dir.path().join("proxy.err"),
        );
        Route53Front {
            port,
            timing,
            log,
            journal,
            _process: Process { child },
            _dir: dir,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A Route53 client through this front, as certkeeper's would be.
    pub async fn route53(&self) -> aws_sdk_route53::Client {
        aws_sdk_route53::Client::new(&sdk_config_at(&self.endpoint()).await)
    }

    /// Route53 requests seen so far, and how many of them were throttled.
    pub fn calls(&self) -> (usize, usize) {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let throttled = log.lines().filter(|l| l.contains(" Throttling ")).count();
        (log.lines().count(), throttled)
    }

    /// Its request log: `<time> <status> <action> [change id] [status]`.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Change ids handed out, in order.
    pub fn changes(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(" ChangeResourceRecordSets ").nth(1))
            .map(|id| id.trim().to_string())
            .collect()
    }
}

/// Pebble, with a throw-away CA for its own TLS listener.
pub struct Pebble {
    pub port: u16,
    pub management_port: u16,
    dir: tempfile::TempDir,
    dns_server: SocketAddr,
    nonce_reject_percent: Option<u8>,
    process: Option<Process>,
}

#[derive(Default, Clone)]
pub struct PebbleOptions {
    /// `None` keeps Pebble's default (5% of nonces rejected).
    pub nonce_reject_percent: Option<u8>,
    /// Require external account binding with this (key id, base64url HMAC key).
    pub eab: Option<(String, String)>,
}

impl Pebble {
    pub fn start(dns_server: SocketAddr, options: PebbleOptions) -> Pebble {
        let dir = tempfile::tempdir().expect("tempdir");
        write_listener_certs(dir.path());
        let port = free_port();
        let management_port = free_port();
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{port}"),
                "managementListenAddress": format!("127.0.0.1:{management_port}"),
                "certificate": dir.path().join("listener.pem"),
                "privateKey": dir.path().join("listener.key"),
                "httpPort": free_port(),
                "tlsPort": free_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": options.eab.is_some(),
                "externalAccountMACKeys": options.eab.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect::<serde_json::Map<_, _>>()
            }
        });
        std::fs::write(dir.path().join("pebble.json"), config.to_string())
            .expect("write pebble config");
        let mut pebble = Pebble {
            port,
            management_port,
            dir,
            dns_server,
            nonce_reject_percent: options.nonce_reject_percent,
            process: None,
        };
        pebble.spawn();
        pebble
    }

    fn spawn(&mut self) {
        let dir = self.dir.path();
        let log = dir.join("pebble.log");
        let mut cmd = Command::new("pebble");
        cmd.arg("-config")
            .arg(dir.join("pebble.json"))
            .arg("-dnsserver")
            .arg(self.dns_server.to_string())
            .env("PEBBLE_VA_NOSLEEP", "1")
            // Reused authorizations would skip DNS-01 entirely.
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdin(Stdio::null())
            .stdout(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .expect("log"),
            )
            .stderr(std::fs::File::create(dir.join("pebble.err")).expect("log"));
        if let Some(p) = self.nonce_reject_percent {
            cmd.env("PEBBLE_WFE_NONCEREJECT", p.to_string());
        } else {
            cmd.env_remove("PEBBLE_WFE_NONCEREJECT");
        }
        let mut child = cmd
            .tied()
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start pebble (apt-get install pebble): {e}"));
        wait_for_port(self.port, &mut child, "pebble", &log);
        wait_for_port(self.management_port, &mut child, "pebble management", &log);
        self.process = Some(Process { child });
    }

    /// Kills Pebble (SIGKILL): the CA is gone, mid-whatever.
    pub fn kill(&mut self) {
        self.process = None;
    }

    /// Starts Pebble again on the same ports. Pebble keeps nothing on disk:
    /// the new one knows no account, order or certificate of the old one,
    /// and issues from a new root.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    /// The CA file that makes Pebble's own listener trusted.
    pub fn listener_ca(&self) -> PathBuf {
        self.dir.path().join("listener-ca.pem")
    }

    /// The root that issued certificates chain to (new on every start).
    pub fn issuing_root(&self) -> String {
        let out = Command::new("curl")
            .args(["-sSf", "--cacert"])
            .arg(self.listener_ca())
            .arg(format!(
                "https://127.0.0.1:{}/roots/0",
                self.management_port
            ))
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "curl /roots/0: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf8 root")
    }

    /// Starts an HTTPS front that adds ARI to this Pebble; returns it with
    /// its directory URL. The window served is read from `window_file`.
    pub fn ari_front(&self, window_file: &Path, log_file: &Path) -> (Process, String) {
        let port = free_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/ari_proxy.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(self.directory_url())
            .arg(self.dir.path().join("listener.pem"))
            .arg(self.dir.path().join("listener.key"))
            .arg(self.listener_ca())
            .arg(window_file)
            .arg(log_file)
            .tied()
            .spawn()
            .expect("python3 ari_proxy.py");
        wait_for_port(port, &mut child, "ari proxy", log_file);
        (Process { child }, format!("https://127.0.0.1:{port}/dir"))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }
}

pub fn write_listener_certs(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "certkeeper test listener CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("key");
    let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("params");
    let cert = params.signed_by(&key, &issuer).expect("listener cert");
    std::fs::write(dir.join("listener-ca.pem"), ca_cert.pem()).expect("write");
    std::fs::write(dir.join("listener.pem"), cert.pem()).expect("write");
    std::fs::write(dir.join("listener.key"), key.serialize_pem()).expect("write");
}

/// Runs a prepared command, panicking with its output when it fails;
/// returns stdout and stderr together (openssl and keytool print results
/// on either).
#[allow(dead_code)] // not every test binary uses it
pub fn run_tool(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run tool");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs a command, panicking with its output when it fails.
pub fn sh(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A git repo made for the test, holding the config.
pub struct ConfigRepo {
    pub path: PathBuf,
}

impl ConfigRepo {
    pub fn init(path: &Path) -> ConfigRepo {
        std::fs::create_dir_all(path).expect("mkdir repo");
        sh(path, "git", &["init", "-q", "-b", "main"]);
        sh(path, "git", &["config", "user.email", "test@example.test"]);
        sh(path, "git", &["config", "user.name", "test"]);
        sh(path, "git", &["config", "commit.gpgsign", "false"]);
        ConfigRepo {
            path: path.to_path_buf(),
        }
    }

    /// Writes `certificates.yaml` and commits it; returns the commit id.
    pub fn commit_certificates(&self, yaml: &str, message: &str) -> String {
        self.commit_file("certificates.yaml", yaml, message, None)
    }

    /// Writes one file and commits it, SSH-signed with `signing_key` if given.
    pub fn commit_file(
        &self,
        rel: &str,
        text: &str,
        message: &str,
        signing_key: Option<&Path>,
    ) -> String {
        let path = self.path.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).expect("mkdir");
        std::fs::write(&path, text).expect("write file");
        sh(&self.path, "git", &["add", "-A"]);
        match signing_key {
            None => sh(&self.path, "git", &["commit", "-q", "-m", message]),
            Some(key) => {
                let signing = format!("user.signingkey={}", key.display());
                sh(
                    &self.path,
                    "git",
                    &[
                        "-c",
                        "gpg.format=ssh",
                        "-c",
                        &signing,
                        "commit",
                        "-q",
                        "-S",
                        "-m",
                        message,
                    ],
                )
            }
        };
        sh(&self.path, "git", &["rev-parse", "HEAD"])
            .trim()
            .to_string()
    }
}

/// Everything a certkeeper run needs, on loopback: moto with hosted zones
/// and a bucket, the Route53-backed DNS responder, Pebble, a config repo and
/// a settings file.
pub struct LocalEnv {
    pub moto: Moto,
    /// What certkeeper talks to: moto behind the realistic Route53.
    pub route53: Route53Front,
    pub dns: dns::Route53Dns,
    pub pebble: Pebble,
    pub root: PathBuf,
    pub repo: ConfigRepo,
    pub bucket: String,
    pub zone_ids: Vec<(String, String)>,
    /// Handed to certkeeper as AWS_SECRET_ACCESS_KEY; must never show up in
    /// its output.
    pub aws_secret: String,
    _tmp: Option<tempfile::TempDir>,
}

pub struct RunOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl RunOutput {
    /// Parsed JSON log lines.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn events_named(&self, name: &str) -> Vec<serde_json::Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == name)
            .collect()
    }
}

impl LocalEnv {
    /// Starts everything in a fresh temp dir.
    pub async fn start(zones: &[&str], pebble: PebbleOptions) -> LocalEnv {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().to_path_buf();
        let mut env = Self::start_in(&root, zones, pebble).await;
        env._tmp = Some(tmp);
        env
    }

    /// Starts everything with files under `root` (kept after exit).
    pub async fn start_in(root: &Path, zones: &[&str], pebble: PebbleOptions) -> LocalEnv {
        Self::start_timed(root, zones, pebble, Route53Timing::default()).await
    }

    /// `start_in` with Route53 behaving as `timing` says.
    pub async fn start_timed(
        root: &Path,
        zones: &[&str],
        pebble: PebbleOptions,
        timing: Route53Timing,
    ) -> LocalEnv {
        let moto = Moto::start();
        let route53 = Route53Front::start(&moto, timing);
        let mut zone_ids = Vec::new();
        for zone in zones {
            zone_ids.push((zone.to_string(), moto.create_zone(zone).await));
        }
        let bucket = "certkeeper-test".to_string();
        moto.create_bucket(&bucket).await;
        let dns = dns::Route53Dns::start(moto.route53().await, &route53.journal).await;
        let pebble = Pebble::start(dns.addr, pebble);
        let repo = ConfigRepo::init(&root.join("config-repo"));
        let env = LocalEnv {
            moto,
            route53,
            dns,
            pebble,
            root: root.to_path_buf(),
            repo,
            bucket,
            zone_ids,
            aws_secret: format!("ck-secret-{:016x}", rand::random::<u64>()),
            _tmp: None,
        };
        env.write_settings("");
        env
    }

    /// A `certkeeper` command with this environment's AWS credentials and
    /// nothing from the host's ~/.aws (for benches that run the binary
    /// themselves).
    pub fn command(&self) -> Command {
        self.aws_command(certkeeper_bin())
    }

    /// Any program (certbot in the bench) with the same AWS environment.
    pub fn aws_command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("AWS_ACCESS_KEY_ID", "AKIDBENCH")
            .env("AWS_SECRET_ACCESS_KEY", &self.aws_secret)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent");
        cmd
    }

    pub fn settings_path(&self) -> PathBuf {
        self.root.join("certkeeper.yaml")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }

    /// The standard settings for this environment, plus `extra` YAML lines.
    pub fn write_settings(&self, extra: &str) {
        let text = format!(
            "config_repo:\n  url: {repo}\n  branch: main\nstate_dir: {state}\nacme:\n  directory_url: {dir}\n  staging_directory_url: {dir}\n  contact: ops@example.test\n  root_ca_file: {ca}\n  order_timeout: 60s\naws:\n  region: us-east-1\n  endpoint_url: {aws}\ndns:\n  nameservers: [\"{ns}\"]\n  propagation_timeout: 30s\ns3:\n  bucket: {bucket}\n  prefix: certs\nlog_format: json\n{extra}",
            repo = self.repo.path.display(),
            state = self.state_dir().display(),
            dir = self.pebble.directory_url(),
            ca = self.pebble.listener_ca().display(),
            aws = self.route53.endpoint(),
            ns = self.dns.addr,
            bucket = self.bucket,
        );
        std::fs::write(self.settings_path(), text).expect("write settings");
    }

    /// Settings of replica `i` sharing this environment's bucket: the
    /// standard ones with their own state dir (`state-<i>`) and holder name,
    /// `replicas:` with `lease_ttl`, then `extra` YAML.
    pub fn replica_settings(&self, i: usize, lease_ttl: &str, extra: &str) -> PathBuf {
        let text = std::fs::read_to_string(self.settings_path()).expect("settings");
        let state = self.state_dir().display().to_string();
        let text = text.replace(
            &format!("state_dir: {state}\n"),
            &format!("state_dir: {state}-{i}\n"),
        );
        let path = self.root.join(format!("replica-{i}.yaml"));
        std::fs::write(
            &path,
            format!("{text}replicas:\n  lease_ttl: {lease_ttl}\n  holder: replica-{i}\n{extra}"),
        )
        .expect("write replica settings");
        path
    }

    /// `certkeeper WORDS… --config CONFIG`, the words split on spaces.
    #[allow(dead_code)] // not every test binary uses it
    pub async fn certkeeper_line(&self, line: &str, config: &Path) -> RunOutput {
        let mut args: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        args.push("--config".into());
        args.push(config.display().to_string());
        self.certkeeper(args).await
    }

    /// Runs `certkeeper run --once` as a separate process, like cron would.
    pub async fn run(&self) -> RunOutput {
        let args = vec![
            "run".to_string(),
            "--once".to_string(),
            "--config".to_string(),
            self.settings_path().display().to_string(),
        ];
        self.certkeeper(args).await
    }

    pub async fn certkeeper(&self, args: Vec<String>) -> RunOutput {
        let bin = certkeeper_bin();
        let secret = self.aws_secret.clone();
        let home = self.root.clone();
        // Empty AWS config files: nothing from the host's ~/.aws leaks in.
        let empty = self.root.join("aws-empty");
        let _ = std::fs::write(&empty, "");
        tokio::task::spawn_blocking(move || {
            let out = Command::new(&bin)
                .args(&args)
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("HOME", &home)
                .env("AWS_ACCESS_KEY_ID", "AKIDTESTCERTKEEPER")
                .env("AWS_SECRET_ACCESS_KEY", &secret)
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .env("AWS_CONFIG_FILE", &empty)
                .env("AWS_SHARED_CREDENTIALS_FILE", &empty)
                // Debug by default, so the secret checks cover debug output too.
                .env(
                    "CERTKEEPER_LOG",
                    std::env::var("CERTKEEPER_LOG").unwrap_or_else(|_| {
                        "debug,aws_config=warn,aws_smithy_runtime=warn,hyper=warn,h2=warn,rustls=warn".into()
                    }),
                )
                .stdin(Stdio::null())
                .tied()
                .output()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
            RunOutput {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        })
        .await
        .expect("run task")
    }

    pub fn status(&self) -> serde_json::Value {
        let text =
            std::fs::read_to_string(self.state_dir().join("status.json")).expect("status.json");
        serde_json::from_str(&text).expect("status json")
    }

    pub fn live_file(&self, name: &str, file: &str) -> Vec<u8> {
        std::fs::read(self.state_dir().join("live").join(name).join(file))
            .unwrap_or_else(|e| panic!("live/{name}/{file}: {e}"))
    }

    pub async fn s3_object(&self, key: &str) -> Option<Vec<u8>> {
        let out = self
            .moto
            .s3()
            .await
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .ok()?;
        Some(out.body.collect().await.ok()?.into_bytes().to_vec())
    }
}

pub fn certkeeper_bin() -> PathBuf {
    if let Ok(path) = std::env::var("CERTKEEPER_BIN") {
        return PathBuf::from(path);
    }
    match option_env!("CARGO_BIN_EXE_certkeeper") {
        Some(p) => PathBuf::from(p),
        None => panic!("set CERTKEEPER_BIN to the certkeeper binary"),
    }
}

/// The status entry of certificate `name` (Null when absent).
pub fn cert_status(status: &serde_json::Value, name: &str) -> serde_json::Value {
    status["certificates"]
        .as_array()
        .and_then(|certs| certs.iter().find(|c| c["name"] == name))
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

/// No private key (PEM marker or the body of any live key), and not the
/// AWS secret key, in a run's stdout, stderr or status file.
pub fn assert_no_secrets(env: &LocalEnv, out: &RunOutput) {
    let status = std::fs::read_to_string(env.state_dir().join("status.json")).unwrap_or_default();
    for (what, text) in [
        ("stdout", &out.stdout),
        ("stderr", &out.stderr),
        ("status", &status),
    ] {
        assert!(
            !text.contains("PRIVATE KEY"),
            "private key material in {what}"
        );
        assert!(!text.contains(&env.aws_secret), "AWS secret key in {what}");
    }
    // Every private key actually written must not appear either (e.g. base64 body).
    for entry in std::fs::read_dir(env.state_dir().join("live"))
        .unwrap()
        .flatten()
    {
        if let Ok(key) = std::fs::read_to_string(entry.path().join("privkey.pem")) {
            let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
            let probe = &body[..40.min(body.len())];
            assert!(
                !out.stdout.contains(probe)
                    && !out.stderr.contains(probe)
                    && !status.contains(probe),
                "key body leaked"
            );
        }
    }
}

/// A fresh unencrypted ed25519 key pair made by ssh-keygen; returns the
/// private key path (the public key is next to it, `.pub`).
pub fn ssh_keygen(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    sh(
        dir,
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            name,
            "-f",
            path.to_str().unwrap(),
        ],
    );
    path
}

/// Fails unless `xml` is a JUnit report Jenkins' junit plugin reads:
/// valid against tests/support/junit.xsd with counts that match its
/// testcases (tests/support/junit_check.py, with PyPI's xmlschema, which
/// deploy/local/setup.sh installs).
pub fn assert_junit_valid(xml: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let report = dir.path().join("report.xml");
    std::fs::write(&report, xml).expect("write report");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/junit_check.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&report)
        .output()
        .expect(
            "run python3 tests/support/junit_check.py (deploy/local/setup.sh installs xmlschema)",
        );
    assert!(
        out.status.success(),
        "not a JUnit report Jenkins reads:\n{}{}\n{xml}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
