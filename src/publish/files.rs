//! Local files: copies of live files at fixed paths with owner, group and
//! mode (a web server reading `/etc/nginx/tls/`), then a reload command.
//!
//! Each file is replaced atomically (temporary file in the same directory,
//! fsync, rename), so the server never reads half a certificate. The reload
//! runs when any file changed, and again on every run until it succeeds:
//! a pending marker in the state dir survives a failed reload, because the
//! files alone would look "unchanged" next time.

use super::{Item, Outcome, PublishError, Target};
use crate::settings::FilesSettings;
use crate::store::{P12, PRIVKEY};
use async_trait::async_trait;
use std::ffi::CString;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

pub struct Files {
    name: String,
    settings: FilesSettings,
}

/// What one destination must look like.
struct Wanted {
    path: String,
    mode: u32,
    uid: Option<u32>,
    gid: Option<u32>,
}

impl Files {
    pub fn new(name: &str, settings: FilesSettings) -> Self {
        Self {
            name: name.to_string(),
            settings,
        }
    }

    fn error(&self, object: &str, message: impl std::fmt::Display) -> PublishError {
        PublishError {
            target: self.name.clone(),
            object: object.to_string(),
            message: message.to_string(),
        }
    }

    fn pending_marker(&self, cert: &str) -> String {
        format!("targets/{}/{cert}.reload-pending", self.name)
    }

    async fn reload(&self, cert: &str) -> Result<(), PublishError> {
        let Some((program, args)) = self.settings.reload.split_first() else {
            return Ok(());
        };
        let shown = self.settings.reload.join(" ");
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| self.error(&shown, format!("cannot start reload command: {e}")))?;
        let mut stderr = child.stderr.take();
        let read_err = async {
            let mut buf: Vec<u8> = Vec::new();
            if let Some(s) = stderr.as_mut() {
                use tokio::io::AsyncReadExt;
                let _ = s.read_to_end(&mut buf).await;
            }
            buf
        };
        let waited = tokio::time::timeout(self.settings.reload_timeout, async {
            let (status, err) = tokio::join!(child.wait(), read_err);
            (status, err)
        })
        .await;
        match waited {
            Err(_) => {
                let _ = child.kill().await;
                Err(self.error(
                    &shown,
                    format!(
                        "reload command did not finish within {}",
                        crate::duration::format(self.settings.reload_timeout)
                    ),
                ))
            }
            Ok((Err(e), _)) => Err(self.error(&shown, format!("reload command: {e}"))),
            Ok((Ok(status), err)) if !status.success() => {
                let err = String::from_utf8_lossy(&err);
                let err: String = err.trim().chars().take(500).collect();
                Err(self.error(&shown, format!("reload command failed ({status}): {err}")))
            }
            Ok((Ok(_), _)) => {
                tracing::info!(event = "publish.files.reloaded", target = %self.name, cert = %cert, command = %shown);
                Ok(())
            }
        }
    }
}

#[async_trait]
impl Target for Files {
    fn name(&self) -> &str {
        &self.name
    }

    async fn publish(&self, item: &Item<'_>) -> Result<Outcome, PublishError> {
        let mut outcome = Outcome::default();
        let mut writes = Vec::new();
        for copy in &self.settings.files {
            let bytes = item.file(&copy.source).ok_or_else(|| {
                self.error(
                    &copy.source,
                    format!(
                        "the live set has no {} (enable it on the certificate)",
                        copy.source
                    ),
                )
            })?;
            let path = item
                .render(&copy.path, &[])
                .map_err(|m| self.error(&copy.path, m))?;
            let secret = copy.source == PRIVKEY || copy.source == P12;
            let mode = match &copy.mode {
                Some(m) => u32::from_str_radix(m, 8).map_err(|_| self.error(&path, "bad mode"))?,
                None if secret => 0o600,
                None => 0o644,
            };
            let uid = copy
                .owner
                .as_deref()
                .map(|o| user_id(o).ok_or_else(|| self.error(&path, format!("unknown user {o:?}"))))
                .transpose()?;
            let gid = copy
                .group
                .as_deref()
                .map(|g| {
                    group_id(g).ok_or_else(|| self.error(&path, format!("unknown group {g:?}")))
                })
                .transpose()?;
            writes.push((
                Wanted {
                    path,
                    mode,
                    uid,
                    gid,
                },
                bytes,
            ));
        }
        for (wanted, bytes) in &writes {
            if matches(wanted, bytes) {
                outcome.unchanged += 1;
                continue;
            }
            // The marker goes first: a crash between the write and the
            // reload still reloads on the next run.
            item.store
                .write_state(&self.pending_marker(&item.meta.name), b"")
                .map_err(|e| self.error(&wanted.path, e.to_string()))?;
            write_file(wanted, bytes).map_err(|e| self.error(&wanted.path, e.to_string()))?;
            tracing::info!(event = "publish.files.written", target = %self.name, cert = %item.meta.name, path = %wanted.path, mode = %format!("{:04o}", wanted.mode));
            outcome.uploaded += 1;
        }
        let marker = item.store.root().join(self.pending_marker(&item.meta.name));
        if marker.exists() {
            self.reload(&item.meta.name).await?;
            let _ = std::fs::remove_file(&marker);
        }
        Ok(outcome)
    }
}

/// Whether the destination already holds `bytes` with the wanted mode and
/// ownership.
fn matches(wanted: &Wanted, bytes: &[u8]) -> bool {
    let Ok(meta) = std::fs::metadata(&wanted.path) else {
        return false;
    };
    meta.permissions().mode() & 0o7777 == wanted.mode
        && wanted.uid.is_none_or(|u| meta.uid() == u)
        && wanted.gid.is_none_or(|g| meta.gid() == g)
        && meta.len() == bytes.len() as u64
        && std::fs::read(&wanted.path).is_ok_and(|b| b == bytes)
}

/// Why a file could not be put in place; the old one is untouched.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("directory {} does not exist", .0.display())]
    NoDirectory(std::path::PathBuf),
    #[error("{step} {}: {source}", path.display())]
    Io {
        step: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn write_file(wanted: &Wanted, bytes: &[u8]) -> Result<(), WriteError> {
    let path = Path::new(&wanted.path);
    let dir = path.parent().unwrap_or(Path::new("/"));
    if !dir.is_dir() {
        return Err(WriteError::NoDirectory(dir.to_path_buf()));
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.certkeeper.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let io = |step: &'static str, at: &Path| {
        let path = at.to_path_buf();
        move |source| WriteError::Io { step, path, source }
    };
    let result = (|| {
        // Created with the final mode (never briefly world-readable), owned
        // before the rename.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(wanted.mode)
            .open(&tmp)
            .map_err(io("creating", &tmp))?;
        f.write_all(bytes).map_err(io("writing", &tmp))?;
        if wanted.uid.is_some() || wanted.gid.is_some() {
            std::os::unix::fs::fchown(&f, wanted.uid, wanted.gid)
                .map_err(io("changing owner of", &tmp))?;
        }
        // The umask and chown may have trimmed the mode.
        f.set_permissions(std::fs::Permissions::from_mode(wanted.mode))
            .map_err(io("setting mode of", &tmp))?;
        f.sync_all().map_err(io("syncing", &tmp))?;
        std::fs::rename(&tmp, path).map_err(io("renaming into place", path))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A user name or numeric uid.
fn user_id(user: &str) -> Option<u32> {
    if let Ok(id) = user.parse() {
        return Some(id);
    }
    let name = CString::new(user).ok()?;
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result = std::ptr::null_mut();
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some(pwd.pw_uid)
}

/// A group name or numeric gid.
fn group_id(group: &str) -> Option<u32> {
    if let Ok(id) = group.parse() {
        return Some(id);
    }
    let name = CString::new(group).ok()?;
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result = std::ptr::null_mut();
    let rc = unsafe {
        libc::getgrnam_r(
            name.as_ptr(),
            &mut grp,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some(grp.gr_gid)
}
