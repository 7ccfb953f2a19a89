//! Fetching the config repo with git.
//!
//! The checkout under the state dir is ours: it is hard-reset to
//! `origin/<branch>` on every sync, so local edits there never survive and the
//! commit id we report is exactly what the remote branch pointed at.

use git2::{FetchOptions, Repository, build::RepoBuilder};
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
}

/// The working tree of one fetched commit.
#[derive(Debug, Clone)]
pub struct Checkout {
    pub commit: String,
    pub dir: PathBuf,
}

pub struct GitSource {
    url: String,
    branch: String,
    dir: PathBuf,
}

impl GitSource {
    pub fn new(url: &str, branch: &str, dir: &Path) -> Self {
        Self {
            url: url.to_string(),
            branch: branch.to_string(),
            dir: dir.to_path_buf(),
        }
    }

    /// Clones on first use, afterwards fetches and hard-resets. Blocking.
    pub fn sync(&self) -> Result<Checkout, SourceError> {
        let repo = if self.dir.join(".git").exists() {
            self.fetch_existing()?
        } else {
            self.clone_fresh()?
        };
        let remote_ref = format!("refs/remotes/origin/{}", self.branch);
        let commit = repo
            .find_reference(&remote_ref)
            .and_then(|r| r.peel_to_commit())
            .map_err(|e| self.fetch_error(&e))?;
        repo.reset(commit.as_object(), git2::ResetType::Hard, None)
            .map_err(|e| self.checkout_error(&e))?;
        Ok(Checkout {
            commit: commit.id().to_string(),
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
        builder.branch(&self.branch);
        builder.fetch_options(FetchOptions::new());
        builder
            .clone(&self.url, &self.dir)
            .map_err(|e| self.fetch_error(&e))
    }

    fn fetch_existing(&self) -> Result<Repository, SourceError> {
        let repo = Repository::open(&self.dir).map_err(|e| self.checkout_error(&e))?;
        // The settings may point at a new URL since the clone.
        repo.remote_set_url("origin", &self.url)
            .map_err(|e| self.checkout_error(&e))?;
        {
            let mut remote = repo
                .find_remote("origin")
                .map_err(|e| self.checkout_error(&e))?;
            let refspec = format!("+refs/heads/{0}:refs/remotes/origin/{0}", self.branch);
            remote
                .fetch(&[&refspec], Some(&mut FetchOptions::new()), None)
                .map_err(|e| self.fetch_error(&e))?;
        }
        Ok(repo)
    }

    fn fetch_error(&self, e: &git2::Error) -> SourceError {
        SourceError::Fetch {
            url: redact_url(&self.url),
            branch: self.branch.clone(),
            message: e.message().to_string(),
        }
    }

    fn checkout_error(&self, e: &git2::Error) -> SourceError {
        SourceError::Checkout {
            dir: self.dir.clone(),
            message: e.message().to_string(),
        }
    }
}

/// Drops any `user:password@` part so tokens never reach logs or errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://[redacted]@{}", &rest[at + 1..]),
        None => url.to_string(),
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
        assert_eq!(redact_url("/srv/repo"), "/srv/repo");
        assert_eq!(
            redact_url("https://git.example/a@b/x.git"),
            "https://git.example/a@b/x.git"
        );
    }
}
