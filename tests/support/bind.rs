//! BIND9 on a loopback port with a TSIG key and one dynamic zone.

use super::{Process, Tied, free_port};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Bind {
    pub addr: SocketAddr,
    pub zone: String,
    pub key_name: String,
    /// File holding the base64 secret.
    pub secret_file: PathBuf,
    _process: Process,
}

impl Bind {
    pub fn start(dir: &Path, zone: &str) -> Bind {
        use base64::Engine;
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let secret = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
        let key_name = "certkeeper-test".to_string();
        std::fs::write(
            dir.join("zone.db"),
            format!("$TTL 60\n@ IN SOA ns.{zone}. hostmaster.{zone}. 1 60 60 600 60\n@ IN NS ns.{zone}.\nns IN A 127.0.0.1\n"),
        )
        .unwrap();
        let d = dir.display();
        std::fs::write(
            dir.join("named.conf"),
            format!(
                r#"options {{
  directory "{d}";
  listen-on port {port} {{ 127.0.0.1; }};
  listen-on-v6 {{ none; }};
  pid-file "{d}/named.pid";
  session-keyfile "{d}/session.key";
  managed-keys-directory "{d}";
  recursion no;
  dnssec-validation no;
  allow-query {{ any; }};
  notify no;
}};
controls {{ }};
key "{key_name}" {{ algorithm hmac-sha256; secret "{secret}"; }};
zone "{zone}" {{
  type primary;
  file "{d}/zone.db";
  update-policy {{ grant {key_name} zonesub TXT; }};
}};
"#
            ),
        )
        .unwrap();
        let secret_file = dir.join("tsig.secret");
        std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
        let log = dir.join("named.log");
        let mut child = Command::new("/usr/sbin/named")
            .args(["-g", "-c"])
            .arg(dir.join("named.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .tied()
            .spawn()
            .expect("start /usr/sbin/named (apt-get install bind9)");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "named exited with {status}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "named did not listen: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // The port opens before the zone is loaded; named logs "running"
        // once it answers for its zones.
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("running")
        {
            assert!(
                Instant::now() < deadline,
                "named did not finish starting: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Bind {
            addr: ([127, 0, 0, 1], port).into(),
            zone: zone.to_string(),
            key_name,
            secret_file,
            _process: Process { child },
        }
    }

    /// Settings YAML for a `dns_providers` entry pointing at this server.
    pub fn provider_yaml(&self, name: &str) -> String {
        format!(
            "  {name}:\n    type: rfc2136\n    nameserver: \"{}\"\n    zone: {}\n    tsig_key_name: {}\n    tsig_algorithm: hmac-sha256\n    tsig_secret_file: {}\n",
            self.addr,
            self.zone,
            self.key_name,
            self.secret_file.display()
        )
    }
}
