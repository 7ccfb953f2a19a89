//! A real OpenSSH server on a loopback port with a throw-away host key,
//! serving git repos by path to one authorized key.

use super::{Process, Tied, free_port, sh};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Sshd {
    pub port: u16,
    pub dir: PathBuf,
    /// Private key that may log in (as root).
    pub client_key: PathBuf,
    pub host_pub: PathBuf,
    _process: Process,
}

impl Sshd {
    pub fn start(dir: &Path) -> Sshd {
        std::fs::create_dir_all(dir).unwrap();
        let host_key = super::ssh_keygen(dir, "host_ed25519");
        let client_key = super::ssh_keygen(dir, "client_ed25519");
        let authorized = dir.join("authorized_keys");
        std::fs::copy(dir.join("client_ed25519.pub"), &authorized).unwrap();
        std::fs::create_dir_all("/run/sshd").ok();
        let port = free_port();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nAuthorizedKeysFile {auth}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\nPidFile {pid}\nLogLevel ERROR\n",
                host = host_key.display(),
                auth = authorized.display(),
                pid = dir.join("sshd.pid").display(),
            ),
        )
        .unwrap();
        let log = dir.join("sshd.log");
        let mut child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .tied()
            .spawn()
            .expect("start /usr/sbin/sshd (apt-get install openssh-server)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "sshd exited with {status}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "sshd did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Sshd {
            port,
            dir: dir.to_path_buf(),
            client_key,
            host_pub: dir.join("host_ed25519.pub"),
            _process: Process { child },
        }
    }

    /// A known_hosts file pinning this server's host key.
    pub fn known_hosts(&self) -> PathBuf {
        let pubkey = std::fs::read_to_string(&self.host_pub).unwrap();
        let mut parts = pubkey.split_whitespace();
        let (kind, blob) = (parts.next().unwrap(), parts.next().unwrap());
        let path = self.dir.join("known_hosts");
        std::fs::write(&path, format!("[127.0.0.1]:{} {kind} {blob}\n", self.port)).unwrap();
        path
    }

    /// `SHA256:…` fingerprint of the host key, as ssh-keygen -lf prints it.
    pub fn fingerprint(&self) -> String {
        let out = sh(
            &self.dir,
            "ssh-keygen",
            &["-lf", self.host_pub.to_str().unwrap()],
        );
        out.split_whitespace().nth(1).unwrap().to_string()
    }

    pub fn url(&self, repo: &Path) -> String {
        format!("ssh://root@127.0.0.1:{}{}", self.port, repo.display())
    }
}
