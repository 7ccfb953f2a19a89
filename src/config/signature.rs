//! SSH-signed commits (git's `gpg.format=ssh`) checked against an
//! allowed-signers file, so a push to the config repo by someone without a
//! listed key cannot make certkeeper issue anything.

use git2::Repository;
use ssh_key::{PublicKey, SshSig};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("cannot read allowed signers file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read allowed signers file {path}: {source}")]
    Signers {
        path: PathBuf,
        #[source]
        source: SignersError,
    },
    #[error("commit {commit} is not signed")]
    Unsigned { commit: String },
    #[error("commit {commit} has a signature that is not an SSH signature ({message})")]
    NotSsh { commit: String, message: String },
    #[error("commit {commit} is signed by {fingerprint}, which is not in the allowed signers file")]
    UnknownKey { commit: String, fingerprint: String },
    #[error("commit {commit} has a bad signature by {fingerprint}: {message}")]
    Bad {
        commit: String,
        fingerprint: String,
        message: String,
    },
    #[error("cannot read commit {commit}: {message}")]
    Git { commit: String, message: String },
}

/// A line of an allowed signers file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct SignersError {
    pub line: usize,
    pub problem: SignersProblem,
}

#[derive(Debug, thiserror::Error)]
pub enum SignersProblem {
    #[error("no key type (ssh-ed25519, ecdsa-sha2-…)")]
    NoKeyType,
    #[error("expected `principals [options] keytype key`")]
    Layout,
    #[error("unsupported or invalid key: {0}")]
    Key(#[source] ssh_key::Error),
    #[error("invalid time {0:?} (expected YYYYMMDD[HHMM[SS]])")]
    Time(String),
    #[error("unsupported option {0:?}")]
    Option(String),
}

#[derive(Debug, Clone)]
struct Signer {
    principals: String,
    key: PublicKey,
    namespaces: Option<Vec<String>>,
    valid_after: Option<i64>,
    valid_before: Option<i64>,
}

/// Parsed `allowed_signers` file.
#[derive(Debug, Clone)]
pub struct AllowedSigners {
    signers: Vec<Signer>,
}

impl AllowedSigners {
    pub fn load(path: &Path) -> Result<Self, SignatureError> {
        let text = std::fs::read_to_string(path).map_err(|source| SignatureError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|source| SignatureError::Signers {
            path: path.to_path_buf(),
            source,
        })
    }

    /// `principals [options] keytype base64 [comment]` per line.
    pub fn parse(text: &str) -> Result<Self, SignersError> {
        let mut signers = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let at = |problem| SignersError {
                line: n + 1,
                problem,
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let Some(key_at) = fields.iter().position(|f| is_key_type(f)) else {
                return Err(at(SignersProblem::NoKeyType));
            };
            if key_at == 0 || key_at + 1 >= fields.len() {
                return Err(at(SignersProblem::Layout));
            }
            let key =
                PublicKey::from_openssh(&format!("{} {}", fields[key_at], fields[key_at + 1]))
                    .map_err(|e| at(SignersProblem::Key(e)))?;
            let mut signer = Signer {
                principals: fields[0].to_string(),
                key,
                namespaces: None,
                valid_after: None,
                valid_before: None,
            };
            for option in fields[1..key_at].iter().flat_map(|f| f.split(',')) {
                let (name, value) = option.split_once('=').unwrap_or((option, ""));
                let value = value.trim_matches('"');
                match name.to_ascii_lowercase().as_str() {
                    "namespaces" => {
                        signer.namespaces = Some(value.split(',').map(str::to_string).collect())
                    }
                    "valid-after" => signer.valid_after = Some(parse_time(value).map_err(at)?),
                    "valid-before" => signer.valid_before = Some(parse_time(value).map_err(at)?),
                    // A CA line would trust any key it certified; not supported.
                    other => return Err(at(SignersProblem::Option(other.to_string()))),
                }
            }
            signers.push(signer);
        }
        Ok(Self { signers })
    }

    /// Checks `commit`'s signature; returns the signer's principals.
    pub fn verify_commit(&self, repo: &Repository, commit: &str) -> Result<String, SignatureError> {
        let git_err = |e: git2::Error| SignatureError::Git {
            commit: commit.to_string(),
            message: e.message().to_string(),
        };
        let oid = git2::Oid::from_str(commit).map_err(git_err)?;
        let time = repo.find_commit(oid).map_err(git_err)?.time().seconds();
        let (signature, signed) = match repo.extract_signature(&oid, None) {
            Ok(pair) => pair,
            Err(e) if e.code() == git2::ErrorCode::NotFound => {
                return Err(SignatureError::Unsigned {
                    commit: commit.to_string(),
                });
            }
            Err(e) => return Err(git_err(e)),
        };
        let sig = SshSig::from_pem(&*signature).map_err(|e| SignatureError::NotSsh {
            commit: commit.to_string(),
            message: e.to_string(),
        })?;
        let fingerprint = sig
            .public_key()
            .fingerprint(ssh_key::HashAlg::Sha256)
            .to_string();
        let signer = self
            .signers
            .iter()
            .find(|s| s.key.key_data() == sig.public_key() && s.accepts("git", time))
            .ok_or_else(|| SignatureError::UnknownKey {
                commit: commit.to_string(),
                fingerprint: fingerprint.clone(),
            })?;
        signer
            .key
            .verify("git", &signed, &sig)
            .map_err(|e| SignatureError::Bad {
                commit: commit.to_string(),
                fingerprint,
                message: e.to_string(),
            })?;
        Ok(signer.principals.clone())
    }
}

impl Signer {
    fn accepts(&self, namespace: &str, time: i64) -> bool {
        self.namespaces
            .as_ref()
            .is_none_or(|n| n.iter().any(|x| x == namespace))
            && self.valid_after.is_none_or(|t| time >= t)
            && self.valid_before.is_none_or(|t| time < t)
    }
}

fn is_key_type(field: &str) -> bool {
    field.starts_with("ssh-") || field.starts_with("ecdsa-sha2-") || field.starts_with("sk-")
}

/// `YYYYMMDD[HHMM[SS]][Z]`, as ssh-keygen accepts; read as UTC.
fn parse_time(text: &str) -> Result<i64, SignersProblem> {
    let digits = text.trim_end_matches(['Z', 'z']);
    let bad = || SignersProblem::Time(text.to_string());
    if !matches!(digits.len(), 8 | 12 | 14) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| {
        digits
            .get(r)
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(0)
    };
    let month = time::Month::try_from(num(4..6) as u8).map_err(|_| bad())?;
    let date = time::Date::from_calendar_date(num(0..4) as i32, month, num(6..8) as u8)
        .map_err(|_| bad())?;
    let at = date
        .with_hms(num(8..10) as u8, num(10..12) as u8, num(12..14) as u8)
        .map_err(|_| bad())?;
    Ok(at.assume_utc().unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB";

    #[test]
    fn parses_allowed_signers() {
        let text = format!(
            "# team\nops@example.test {KEY} laptop\nci@example.test namespaces=\"git\",valid-after=20260101 {KEY}\n"
        );
        let signers = AllowedSigners::parse(&text).unwrap();
        assert_eq!(signers.signers.len(), 2);
        let ci = &signers.signers[1];
        assert!(ci.accepts("git", parse_time("20260102").unwrap()));
        assert!(!ci.accepts("git", parse_time("20251231").unwrap()));
        assert!(!ci.accepts("file", parse_time("20260102").unwrap()));
    }

    #[test]
    fn rejects_bad_lines() {
        let e = AllowedSigners::parse("ops@example.test\n").unwrap_err();
        assert!(matches!(e.problem, SignersProblem::NoKeyType) && e.line == 1);
        assert!(e.to_string().starts_with("line 1: "), "{e}");
        let e = AllowedSigners::parse(&format!("x cert-authority {KEY}\n")).unwrap_err();
        assert!(matches!(e.problem, SignersProblem::Option(o) if o == "cert-authority"));
        assert!(parse_time("2026-01-01").is_err());
        assert_eq!(parse_time("19700101000001").unwrap(), 1);
    }
}
