//! A real forward proxy (Debian's tinyproxy) on a loopback port, asking
//! for basic auth and logging every request and CONNECT it serves.

use super::{Process, Tied, free_port};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Tinyproxy {
    pub port: u16,
    pub user: String,
    pub password: String,
    log: PathBuf,
    _process: Process,
}

impl Tinyproxy {
    pub fn start(dir: &Path, user: &str, password: &str) -> Tinyproxy {
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let log = dir.join("tinyproxy.log");
        let config = dir.join("tinyproxy.conf");
        // No ConnectPort line: CONNECT to any port (the test servers are on
        // free ports, not 443). An empty password: no authentication.
        let auth = if password.is_empty() {
            String::new()
        } else {
            format!("BasicAuth {user} {password}\n")
        };
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 120\nLogFile \"{log}\"\nLogLevel Connect\nMaxClients 200\nAllow 127.0.0.1\n{auth}DisableViaHeader Yes\n",
                log = log.display(),
            ),
        )
        .unwrap();
        let mut child = Command::new("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("tinyproxy.err")).unwrap())
            .tied()
            .spawn()
            .expect("start tinyproxy (apt-get install tinyproxy)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "tinyproxy exited with {status}: {}",
                    std::fs::read_to_string(dir.join("tinyproxy.err")).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "tinyproxy did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Tinyproxy {
            port,
            user: user.to_string(),
            password: password.to_string(),
            log,
            _process: Process { child },
        }
    }

    /// `http://user:password@127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!(
            "http://{}:{}@127.0.0.1:{}",
            self.user, self.password, self.port
        )
    }

    /// What it logged: one `Request (file descriptor N): CONNECT host:port`
    /// or `GET http://…` line per request it served.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
