//! `config_repo:`: where the config repo is and how to reach it.

use super::*;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoSettings {
    /// A local path, `file://` URL or `https://` URL.
    pub url: String,
    #[serde(default = "defaults::branch")]
    pub branch: String,
    /// For `ssh://` and `user@host:path` URLs.
    #[serde(default)]
    pub ssh: Option<SshSettings>,
    /// For `https://` URLs that need a token.
    #[serde(default)]
    pub https: Option<HttpsSettings>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshSettings {
    /// Private key file (OpenSSH format, unencrypted; mode 0600).
    pub private_key_file: PathBuf,
    /// Pinned host keys in OpenSSH known_hosts format (hashed hosts work).
    pub known_hosts_file: Option<PathBuf>,
    /// Or: the host key's fingerprint as `ssh-keygen -lf` prints it
    /// (`SHA256:…`). One of the two is required: unknown hosts are refused.
    pub host_key_sha256: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpsSettings {
    /// User name sent with the token (`x-access-token` for GitHub apps,
    /// `oauth2` for GitLab).
    #[serde(default = "defaults::https_username")]
    pub username: String,
    /// File holding the token (first line).
    pub token_file: Option<PathBuf>,
    /// Or: environment variable holding the token.
    pub token_env: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedCommits {
    /// git's `gpg.ssh.allowedSignersFile` format.
    pub allowed_signers: PathBuf,
}

impl RepoSettings {
    /// Whether the URL is a local path or file:// (no credentials needed).
    pub fn is_local(&self) -> bool {
        is_local_path(&self.url) || self.url.starts_with("file://")
    }
}

pub(super) fn is_local_path(url: &str) -> bool {
    !url.contains("://") && !url.contains('@')
}
