//! Fetching the config repo with git: local paths, file://, https with a
//! token, ssh with a key and a pinned host key.
//!
//! The checkout under the state dir is ours: it is hard-reset on every sync,
//! so local edits there never survive and the commit id we report is exactly
//! what we validated. Credentials are read when needed and never logged.

use crate::secret::Secret;
use crate::settings::RepoSettings;
use git2::{
    CertificateCheckStatus, Cred, FetchOptions, RemoteCallbacks, Repository, build::RepoBuilder,
};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot fetch config repo {url} (branch {branch}): {message}")]
    Fetch {
        url: String,
        branch: String,
        message: String,
    },
    #[error("config repo checkout {dir} is unusable: {message}")]
    Checkout { dir: PathBuf, message: String },
    #[error("config repo credentials: {0}")]
    Credentials(String),
}

/// The working tree of one fetched commit.
#[derive(Debug, Clone)]
pub struct Checkout {
    pub commit: String,
    pub dir: PathBuf,
}

pub struct GitSource {
    settings: RepoSettings,
    dir: PathBuf,
    /// Why our own host key check refused, since libgit2 replaces the
    /// callback's message with a generic one.
    refusal: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl GitSource {
    pub fn new(settings: &RepoSettings, dir: &Path) -> Self {
        Self {
            settings: settings.clone(),
            dir: dir.to_path_buf(),
            refusal: Default::default(),
        }
    }

    /// Clones on first use, afterwards fetches; then hard-resets the working
    /// tree to the tip of the branch. Blocking.
    pub fn sync(&self) -> Result<Checkout, SourceError> {
        let repo = if self.dir.join(".git").exists() {
            self.fetch_existing()?
        } else {
            self.clone_fresh()?
        };
        let remote_ref = format!("refs/remotes/origin/{}", self.settings.branch);
        let commit = repo
            .find_reference(&remote_ref)
            .and_then(|r| r.peel_to_commit())
            .map_err(|e| self.fetch_error(&e))?;
        self.reset(&repo, commit.id())
    }

    /// Puts the working tree back to an earlier commit (the last good one).
    pub fn checkout(&self, commit: &str) -> Result<Checkout, SourceError> {
        let repo = Repository::open(&self.dir).map_err(|e| self.checkout_error(&e))?;
        let oid = git2::Oid::from_str(commit).map_err(|e| self.checkout_error(&e))?;
        self.reset(&repo, oid)
    }

    pub fn repository(&self) -> Result<Repository, SourceError> {
        Repository::open(&self.dir).map_err(|e| self.checkout_error(&e))
    }

    fn reset(&self, repo: &Repository, oid: git2::Oid) -> Result<Checkout, SourceError> {
        let object = repo
            .find_object(oid, None)
            .map_err(|e| self.checkout_error(&e))?;
        repo.reset(&object, git2::ResetType::Hard, None)
            .map_err(|e| self.checkout_error(&e))?;
        // Files that are not in the commit (left by a newer one) must not be
        // read as config.
        let mut opts = git2::build::CheckoutBuilder::new();
        opts.force().remove_untracked(true).remove_ignored(true);
        repo.checkout_head(Some(&mut opts))
            .map_err(|e| self.checkout_error(&e))?;
        Ok(Checkout {
            commit: oid.to_string(),
            dir: self.dir.clone(),
        })
    }

    fn clone_fresh(&self) -> Result<Repository, SourceError> {
        if self.dir.exists() {
            // A clone that died half-way leaves a directory without a usable
            // .git; start over rather than fail forever.
            std::fs::remove_dir_all(&self.dir).map_err(|e| SourceError::Checkout {
                dir: self.dir.clone(),
                message: e.to_string(),
            })?;
        }
        let mut builder = RepoBuilder::new();
        builder.branch(&self.settings.branch);
        builder.fetch_options(self.fetch_options()?);
        builder
            .clone(&self.settings.url, &self.dir)
            .map_err(|e| self.fetch_error(&e))
    }

    fn fetch_existing(&self) -> Result<Repository, SourceError> {
        let repo = Repository::open(&self.dir).map_err(|e| self.checkout_error(&e))?;
        // The settings may point at a new URL since the clone.
        repo.remote_set_url("origin", &self.settings.url)
            .map_err(|e| self.checkout_error(&e))?;
        {
            let mut remote = repo
                .find_remote("origin")
                .map_err(|e| self.checkout_error(&e))?;
            let refspec = format!(
                "+refs/heads/{0}:refs/remotes/origin/{0}",
                self.settings.branch
            );
            remote
                .fetch(&[&refspec], Some(&mut self.fetch_options()?), None)
                .map_err(|e| self.fetch_error(&e))?;
        }
        Ok(repo)
    }

    /// The callbacks and proxy of a fetch.
    fn fetch_options(&self) -> Result<FetchOptions<'static>, SourceError> {
        let mut callbacks = RemoteCallbacks::new();
        let token = self.https_token()?;
        let ssh = self.settings.ssh.clone();
        let username = self
            .settings
            .https
            .as_ref()
            .map(|h| h.username.clone())
            .unwrap_or_default();
        let mut attempts = 0;
        callbacks.credentials(move |_url, user_from_url, allowed| {
            // libgit2 calls again after a rejected credential; one try is
            // enough to know it is wrong, and avoids an endless loop.
            attempts += 1;
            if attempts > 1 {
                return Err(git2::Error::from_str("authentication failed"));
            }
            if allowed.contains(git2::CredentialType::SSH_KEY)
                && let Some(ssh) = &ssh
            {
                return Cred::ssh_key(user_from_url.unwrap_or("git"), None, &ssh.private_key_file, None);
            }
            if allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT)
                && let Some(token) = &token
            {
                return Cred::userpass_plaintext(&username, token.expose());
            }
            Err(git2::Error::from_str(
                "the repo asks for credentials and none are configured (config_repo.ssh or config_repo.https)",
            ))
        });
        let pins = self.settings.ssh.as_ref().map(|s| HostKeyPins {
            fingerprint: s.host_key_sha256.clone(),
            known_hosts: s.known_hosts_file.clone(),
            port: ssh_port(&self.settings.url),
        });
        let refusal = self.refusal.clone();
        callbacks.certificate_check(move |cert, host| {
            let Some(hostkey) = cert.as_hostkey() else {
                // X.509 (https): libgit2's normal verification applies.
                return Ok(CertificateCheckStatus::CertificatePassthrough);
            };
            let Some(pins) = &pins else {
                return Err(git2::Error::from_str(
                    "ssh host key cannot be checked: set config_repo.ssh.known_hosts_file or host_key_sha256",
                ));
            };
            pins.check(host, hostkey.hostkey(), hostkey.hash_sha256())
                .map(|()| CertificateCheckStatus::CertificateOk)
                .map_err(|e| {
                    let e = e.to_string();
                    *refusal.lock().expect("refusal") = Some(e.clone());
                    git2::Error::from_str(&e)
                })
        });
        let mut options = FetchOptions::new();
        options.remote_callbacks(callbacks);
        // git over https through the proxy the rest of the run uses
        // (NO_PROXY honoured); libgit2 connects to http:// remotes and ssh
        // direct.
        let proxy = crate::proxy::current();
        if let (Some(url), Ok(uri)) = (proxy.url(), self.settings.url.parse::<http::Uri>())
            && proxy.applies_to(&uri)
        {
            tracing::debug!(
                event = "config.fetch.proxy",
                proxy = proxy.shown().unwrap_or_default()
            );
            let mut via = git2::ProxyOptions::new();
            via.url(url.expose());
            options.proxy_options(via);
        }
        Ok(options)
    }

    fn https_token(&self) -> Result<Option<Secret>, SourceError> {
        let Some(https) = &self.settings.https else {
            return Ok(None);
        };
        let token = if let Some(file) = &https.token_file {
            std::fs::read_to_string(file)
                .map_err(|e| {
                    SourceError::Credentials(format!(
                        "cannot read token file {}: {e}",
                        file.display()
                    ))
                })?
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string()
        } else if let Some(var) = &https.token_env {
            std::env::var(var).map_err(|_| {
                SourceError::Credentials(format!("environment variable {var} is not set"))
            })?
        } else {
            return Ok(None);
        };
        if token.is_empty() {
            return Err(SourceError::Credentials("the https token is empty".into()));
        }
        Ok(Some(Secret::new(token)))
    }

    fn fetch_error(&self, e: &git2::Error) -> SourceError {
        let ours = self.refusal.lock().expect("refusal").take();
        SourceError::Fetch {
            url: redact_url(&self.settings.url),
            branch: self.settings.branch.clone(),
            message: ours.unwrap_or_else(|| e.message().to_string()),
        }
    }

    fn checkout_error(&self, e: &git2::Error) -> SourceError {
        SourceError::Checkout {
            dir: self.dir.clone(),
            message: e.message().to_string(),
        }
    }
}

/// The ssh port named in an `ssh://host:port/...` URL (22 otherwise).
fn ssh_port(url: &str) -> u16 {
    url.strip_prefix("ssh://")
        .and_then(|rest| rest.split('/').next())
        .and_then(|authority| authority.rsplit_once(':'))
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or(22)
}

/// Why the config repo's ssh server was refused.
#[derive(Debug, thiserror::Error)]
enum HostKeyError {
    #[error("cannot read known_hosts file {}: {source}", file.display())]
    KnownHosts {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("host key of {host} ({presented}) is not pinned in the settings: refusing to connect")]
    NotPinned { host: String, presented: String },
}

/// The host keys we accept for the config repo's ssh server.
struct HostKeyPins {
    fingerprint: Option<String>,
    known_hosts: Option<PathBuf>,
    port: u16,
}

impl HostKeyPins {
    fn check(
        &self,
        host: &str,
        key: Option<&[u8]>,
        sha256: Option<&[u8; 32]>,
    ) -> Result<(), HostKeyError> {
        use base64::Engine;
        let presented = sha256
            .map(|h| {
                format!(
                    "SHA256:{}",
                    base64::engine::general_purpose::STANDARD_NO_PAD.encode(h)
                )
            })
            .unwrap_or_else(|| "unknown".into());
        if let Some(expected) = &self.fingerprint
            && expected.trim() == presented
        {
            return Ok(());
        }
        if let (Some(file), Some(key)) = (&self.known_hosts, key) {
            let text =
                std::fs::read_to_string(file).map_err(|source| HostKeyError::KnownHosts {
                    file: file.clone(),
                    source,
                })?;
            if known_hosts_accepts(&text, host, self.port, key) {
                return Ok(());
            }
        }
        Err(HostKeyError::NotPinned {
            host: host.to_string(),
            presented,
        })
    }
}

/// Whether a known_hosts file lists `key` for `host` (plain or hashed names,
/// `[host]:port` for other ports). Revoked (`@revoked`) lines never match.
pub fn known_hosts_accepts(text: &str, host: &str, port: u16, key: &[u8]) -> bool {
    use base64::Engine;
    let name = if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    };
    let mut accepted = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace().peekable();
        let marker = fields.next_if(|f| f.starts_with('@'));
        let (Some(hosts), Some(_kind), Some(blob)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Ok(blob) = base64::engine::general_purpose::STANDARD.decode(blob) else {
            continue;
        };
        if blob != key || !host_pattern_matches(hosts, &name) {
            continue;
        }
        match marker {
            // A revoked key is refused even if another line lists it.
            Some("@revoked") => return false,
            // CA lines certify other keys; a host key is never accepted by one.
            Some(_) => {}
            None => accepted = true,
        }
    }
    accepted
}

fn host_pattern_matches(patterns: &str, name: &str) -> bool {
    if let Some(hashed) = patterns.strip_prefix("|1|") {
        return hashed_host_matches(hashed, name);
    }
    patterns.split(',').any(|p| p.eq_ignore_ascii_case(name))
}

/// `|1|salt|hash`: HMAC-SHA1 of the host name keyed with the salt.
fn hashed_host_matches(hashed: &str, name: &str) -> bool {
    use base64::Engine;
    use hmac::{KeyInit, Mac};
    let Some((salt, hash)) = hashed.split_once('|') else {
        return false;
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let (Ok(salt), Ok(hash)) = (b64.decode(salt), b64.decode(hash)) else {
        return false;
    };
    let Ok(mut mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.update(name.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

/// Drops any `user:password@` part so tokens never reach logs or errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) if rest[..at].contains(':') => {
            format!("{scheme}://[redacted]@{}", &rest[at + 1..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials() {
        assert_eq!(
            redact_url("https://user:tok@git.example/x.git"),
            "https://[redacted]@git.example/x.git"
        );
        assert_eq!(
            redact_url("https://git.example/x.git"),
            "https://git.example/x.git"
        );
        assert_eq!(
            redact_url("ssh://git@git.example/x.git"),
            "ssh://git@git.example/x.git"
        );
        assert_eq!(redact_url("/srv/repo"), "/srv/repo");
        assert_eq!(
            redact_url("https://git.example/a@b/x.git"),
            "https://git.example/a@b/x.git"
        );
    }

    #[test]
    fn ssh_port_from_url() {
        assert_eq!(ssh_port("ssh://git@127.0.0.1:2222/srv/x.git"), 2222);
        assert_eq!(ssh_port("ssh://git@host/srv/x.git"), 22);
        assert_eq!(ssh_port("git@host:x.git"), 22);
    }

    #[test]
    fn known_hosts_plain_and_hashed() {
        use base64::Engine;
        let key = b"fake-key-blob";
        let b64 = base64::engine::general_purpose::STANDARD.encode(key);
        let plain = format!("[127.0.0.1]:2222,other ssh-ed25519 {b64}\n");
        assert!(known_hosts_accepts(&plain, "127.0.0.1", 2222, key));
        assert!(!known_hosts_accepts(&plain, "127.0.0.1", 22, key));
        assert!(!known_hosts_accepts(
            &plain,
            "127.0.0.1",
            2222,
            b"other-key"
        ));
        // Hashed entry for "[127.0.0.1]:2222" made with a fixed salt.
        use hmac::{KeyInit, Mac};
        let salt = b"0123456789abcdefghij";
        let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(salt).unwrap();
        mac.update(b"[127.0.0.1]:2222");
        let hash = mac.finalize().into_bytes();
        let e = base64::engine::general_purpose::STANDARD;
        let hashed = format!(
            "|1|{}|{} ssh-ed25519 {b64}\n",
            e.encode(salt),
            e.encode(hash)
        );
        assert!(known_hosts_accepts(&hashed, "127.0.0.1", 2222, key));
        assert!(!known_hosts_accepts(&hashed, "127.0.0.2", 2222, key));
        let revoked = format!("{plain}@revoked [127.0.0.1]:2222 ssh-ed25519 {b64}\n");
        assert!(!known_hosts_accepts(&revoked, "127.0.0.1", 2222, key));
    }
}
