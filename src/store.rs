//! Certificates on disk: `live/<name>` always points at one complete version
//! under `archive/<name>/<NNNN>/`.
//!
//! A version directory is written in full (each file fsynced, then the
//! directory) before `live/<name>` — a symlink — is swapped to it with one
//! rename. A crash at any moment leaves either the old or the new set live,
//! never a mix and never a half-written file. Keys are 0600, directories 0700.

use crate::pki::KeyType;
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use time::OffsetDateTime;
use zeroize::Zeroizing;

pub const CERT: &str = "cert.pem";
pub const CHAIN: &str = "chain.pem";
pub const FULLCHAIN: &str = "fullchain.pem";
pub const PRIVKEY: &str = "privkey.pem";

/// A live set's files by name, as read for publishing; wiped on drop.
pub type LiveFiles = Vec<(&'static str, Zeroizing<Vec<u8>>)>;
pub const META: &str = "meta.json";
/// Every file of a live set, in the order they are published (meta last, so
/// a reader that sees the new meta.json sees the new files).
pub const LIVE_FILES: [&str; 5] = [PRIVKEY, CERT, CHAIN, FULLCHAIN, META];
/// Files derived from a live set on request (`pkcs12`, `fingerprints`),
/// added to its version directory after it was installed.
pub const P12: &str = "cert.p12";
pub const FINGERPRINTS: &str = "fingerprints.txt";
pub const DERIVED_FILES: [&str; 2] = [P12, FINGERPRINTS];

/// Whether `file` names a file a live set can hold.
pub fn is_live_file(file: &str) -> bool {
    LIVE_FILES.contains(&file) || DERIVED_FILES.contains(&file)
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is corrupt: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error(
        "state dir {path} is open to other users (mode {mode:04o}); it holds private keys: `chmod 700 {path}` (or point state_dir at a new directory) and start again"
    )]
    Exposed { path: PathBuf, mode: u32 },
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// What we know about a stored certificate, written next to it as meta.json.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub name: String,
    pub serial: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// The domains as the config asked for them (order kept).
    pub domains: Vec<String>,
    /// The SANs the CA put in the certificate.
    pub sans: Vec<String>,
    pub key_type: KeyType,
    /// SHA-256 of the leaf's DER, `AB:CD:…`.
    pub sha256: String,
    /// ACME directory URL of the CA that issued it.
    pub issuer: String,
    /// Config repo commit the certificate was issued from.
    pub config_commit: String,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    pub version: u32,
    /// ACME profile asked for, if any.
    #[serde(default)]
    pub profile: Option<String>,
    /// Generation of the replica lease it was issued under; a publish
    /// never replaces one made under a newer generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
}

/// A freshly issued certificate, before it is stored.
#[derive(Debug)]
pub struct Issued {
    pub cert_pem: String,
    pub chain_pem: String,
    pub key_pem: Secret,
}

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the state dir, and refuses one others can read.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let store = Store {
            root: root.to_path_buf(),
        };
        create_private_dir(root)?;
        let mode = fs::metadata(root)
            .map_err(io("reading", root))?
            .permissions()
            .mode();
        // Others may have read keys already: refuse instead of quietly
        // fixing it, so a person looks. Group bits are only tightened.
        if mode & 0o007 != 0 {
            return Err(StoreError::Exposed {
                path: root.to_path_buf(),
                mode: mode & 0o7777,
            });
        }
        if mode & 0o077 != 0 {
            fs::set_permissions(root, fs::Permissions::from_mode(0o700))
                .map_err(io("restricting permissions of", root))?;
        }
        for sub in [
            "live",
            "archive",
            "accounts",
            "published",
            "revoked",
            "ari",
            "failures",
        ] {
            create_private_dir(&root.join(sub))?;
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn live_dir(&self, name: &str) -> PathBuf {
        self.root.join("live").join(name)
    }

    /// The stored meta of the live version, `None` when there is none.
    pub fn live_meta(&self, name: &str) -> Result<Option<Meta>, StoreError> {
        let path = self.live_dir(name).join(META);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("reading", &path)(e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                path,
                message: e.to_string(),
            })
    }

    /// Reads every file of the live set, for publishing.
    /// Derived files that exist are included, before meta.json.
    /// The bytes are wiped when dropped: the private key and PKCS#12 are
    /// among them.
    pub fn live_files(&self, name: &str) -> Result<LiveFiles, StoreError> {
        let dir = self.live_dir(name);
        let mut files = Vec::new();
        for f in LIVE_FILES.iter().filter(|f| **f != META) {
            let path = dir.join(f);
            files.push((
                *f,
                Zeroizing::new(fs::read(&path).map_err(io("reading", &path))?),
            ));
        }
        for f in DERIVED_FILES {
            let path = dir.join(f);
            match fs::read(&path) {
                Ok(b) => files.push((f, Zeroizing::new(b))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("reading", &path)(e)),
            }
        }
        let path = dir.join(META);
        files.push((
            META,
            Zeroizing::new(fs::read(&path).map_err(io("reading", &path))?),
        ));
        Ok(files)
    }

    /// Adds (or replaces) a derived file in the live version's directory,
    /// atomically; `None` removes it.
    pub fn set_derived(
        &self,
        name: &str,
        file: &str,
        bytes: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let live = self.live_dir(name);
        let dir = fs::canonicalize(&live).map_err(io("resolving", &live))?;
        let path = dir.join(file);
        match bytes {
            Some(b) => write_atomic(&path, b, 0o600),
            None => match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("removing", &path)(e)),
                _ => Ok(()),
            },
        }
    }

    /// Writes a new version and makes it live in one atomic step.
    pub fn install(&self, issued: &Issued, meta: &mut Meta) -> Result<PathBuf, StoreError> {
        let archive = self.root.join("archive").join(&meta.name);
        create_private_dir(&archive)?;
        meta.version = next_version(&archive)?;
        self.install_at(issued, meta, &archive)
    }

    /// `install`, keeping the version number `meta` has when it is newer
    /// than every local one (a set pulled from another replica keeps its
    /// number, so its meta.json is byte for byte the published one).
    pub fn install_version(&self, issued: &Issued, meta: &mut Meta) -> Result<PathBuf, StoreError> {
        let archive = self.root.join("archive").join(&meta.name);
        create_private_dir(&archive)?;
        meta.version = meta.version.max(next_version(&archive)?);
        self.install_at(issued, meta, &archive)
    }

    fn install_at(
        &self,
        issued: &Issued,
        meta: &mut Meta,
        archive: &Path,
    ) -> Result<PathBuf, StoreError> {
        let archive = archive.to_path_buf();
        let version = format!("{:04}", meta.version);
        let tmp = archive.join(format!(".tmp-{version}"));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io("removing", &tmp))?;
        }
        create_private_dir(&tmp)?;
        let fullchain = format!("{}{}", ensure_newline(&issued.cert_pem), issued.chain_pem);
        let meta_json = serde_json::to_vec_pretty(meta).expect("meta serializes");
        let written = (|| {
            write_new(
                &tmp.join(PRIVKEY),
                issued.key_pem.expose().as_bytes(),
                0o600,
            )?;
            write_new(&tmp.join(CERT), issued.cert_pem.as_bytes(), 0o644)?;
            write_new(&tmp.join(CHAIN), issued.chain_pem.as_bytes(), 0o644)?;
            write_new(&tmp.join(FULLCHAIN), fullchain.as_bytes(), 0o644)?;
            write_new(&tmp.join(META), &meta_json, 0o644)?;
            sync_dir(&tmp)
        })();
        if let Err(e) = written {
            // A full disk or an I/O error: leave nothing half-written behind
            // (removing frees space, so it works on a full disk too).
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        let final_dir = archive.join(&version);
        if let Err(e) = fs::rename(&tmp, &final_dir) {
            let _ = fs::remove_dir_all(&tmp);
            return Err(io("renaming", &tmp)(e));
        }
        sync_dir(&archive)?;
        if let Err(e) = self.switch_live(&meta.name, &version) {
            // Never live, so never served or published: not kept either, or
            // the archive would hold a version nobody can tell apart.
            let _ = fs::remove_dir_all(&final_dir);
            return Err(e);
        }
        Ok(final_dir)
    }

    /// Points `live/<name>` at archive version `version` in one rename.
    fn switch_live(&self, name: &str, version: &str) -> Result<(), StoreError> {
        let live_root = self.root.join("live");
        let link_tmp = live_root.join(format!(".{name}.tmp"));
        let _ = fs::remove_file(&link_tmp);
        let target = Path::new("../archive").join(name).join(version);
        std::os::unix::fs::symlink(&target, &link_tmp).map_err(io("linking", &link_tmp))?;
        let live = self.live_dir(name);
        if let Err(e) = fs::rename(&link_tmp, &live) {
            let _ = fs::remove_file(&link_tmp);
            return Err(io("switching", &live)(e));
        }
        sync_dir(&live_root)
    }

    /// Writes a small state file atomically (temp file, fsync, rename).
    pub fn write_state(&self, rel: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.root.join(rel);
        if let Some(parent) = path.parent()
            && !parent.exists()
        {
            create_private_dir(parent)?;
        }
        write_atomic(&path, bytes, 0o600)
    }

    pub fn read_state(&self, rel: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.root.join(rel);
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("reading", &path)(e)),
        }
    }
}

fn ensure_newline(pem: &str) -> String {
    if pem.ends_with('\n') {
        pem.to_string()
    } else {
        format!("{pem}\n")
    }
}

fn next_version(archive: &Path) -> Result<u32, StoreError> {
    let mut max = 0;
    for entry in fs::read_dir(archive).map_err(io("listing", archive))? {
        let entry = entry.map_err(io("listing", archive))?;
        if let Some(n) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        {
            max = max.max(n);
        }
    }
    Ok(max + 1)
}

/// Creates `path` (and missing parents) as 0700 exactly: the umask can
/// neither widen nor narrow it.
pub fn create_private_dir(path: &Path) -> Result<(), StoreError> {
    // One level at a time, outermost first, each set to 0700 before the
    // next is made inside it (a umask of 077 or more would otherwise leave
    // a parent that its own user cannot enter).
    let missing: Vec<&Path> = path.ancestors().take_while(|p| !p.is_dir()).collect();
    for dir in missing.into_iter().rev() {
        match fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(io("setting permissions of", dir))?,
            // Made by someone else meanwhile: theirs to set.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io("creating", dir)(e)),
        }
    }
    Ok(())
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StoreError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io("creating", path))?;
    // The umask may have narrowed the mode; never widened, but be exact.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io("setting permissions of", path))?;
    file.write_all(bytes).map_err(io("writing", path))?;
    file.sync_all().map_err(io("syncing", path))
}

/// Temp file in the same directory, fsync, rename, fsync the directory.
impl Store {
    /// Removes what a run killed half-way left: `.tmp-N` version
    /// directories in `archive/<name>/` and `.<file>.<pid>.tmp` files and
    /// links written by [`write_atomic`] and the live switch. Only under the
    /// run lock (no other run can be writing them). Returns what it removed.
    pub fn sweep(&self) -> Vec<PathBuf> {
        let stale = |name: &str| {
            name.starts_with(".tmp-") || (name.starts_with('.') && name.ends_with(".tmp"))
        };
        let mut dirs = vec![self.root.clone()];
        let entries = |dir: &Path| -> Vec<fs::DirEntry> {
            fs::read_dir(dir)
                .map(|r| r.flatten().collect())
                .unwrap_or_default()
        };
        for entry in entries(&self.root) {
            let name = entry.file_name().to_string_lossy().into_owned();
            // The config repo's clone has its own dot files.
            if name != "repo" && entry.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(entry.path());
            }
        }
        dirs.extend(
            entries(&self.root.join("archive"))
                .into_iter()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path()),
        );
        let mut removed = Vec::new();
        for dir in dirs {
            for entry in entries(&dir) {
                if !stale(&entry.file_name().to_string_lossy()) {
                    continue;
                }
                let path = entry.path();
                let gone = match entry.file_type() {
                    Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
                    _ => fs::remove_file(&path),
                };
                match gone {
                    Ok(()) => removed.push(path),
                    Err(e) => {
                        tracing::warn!(event = "store.sweep.failed", path = %path.display(), error = %e)
                    }
                }
            }
        }
        if !removed.is_empty() {
            let paths: Vec<String> = removed.iter().map(|p| p.display().to_string()).collect();
            tracing::warn!(event = "store.swept", removed = ?paths, "removed what an interrupted run left half-written");
        }
        removed
    }
}

pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StoreError> {
    let dir = folder_of(path);
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    if let Err(e) = write_new(&tmp, bytes, mode) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, path).map_err(io("renaming", &tmp))?;
    sync_dir(dir)
}

/// The folder a file is in; `.` for a bare file name (`out.tar`), whose
/// parent is the empty path.
fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_file_name_is_in_the_current_folder() {
        assert_eq!(folder_of(Path::new("bundle.tar")), Path::new("."));
        assert_eq!(folder_of(Path::new("out/bundle.tar")), Path::new("out"));
        assert_eq!(folder_of(Path::new("/bundle.tar")), Path::new("/"));
    }

    #[test]
    fn sweep_removes_what_a_killed_run_left_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s")).unwrap();
        let root = store.root().to_path_buf();
        let half = root.join("archive/web/.tmp-0003");
        fs::create_dir_all(&half).unwrap();
        fs::write(half.join("cert.pem"), "half").unwrap();
        fs::create_dir_all(root.join("archive/web/0002")).unwrap();
        fs::write(root.join(".status.json.4242.tmp"), "{").unwrap();
        fs::write(root.join("published/.web.json.77.tmp"), "{").unwrap();
        std::os::unix::fs::symlink("../archive/web/0003", root.join("live/.web.tmp")).unwrap();
        fs::create_dir_all(root.join("repo/.git")).unwrap();
        fs::write(root.join("status.json"), "{}").unwrap();
        let mut removed = store.sweep();
        removed.sort();
        assert_eq!(removed.len(), 4, "{removed:?}");
        assert!(!half.exists() && root.join("archive/web/0002").is_dir());
        assert!(root.join("repo/.git").is_dir() && root.join("status.json").is_file());
        assert!(store.sweep().is_empty());
    }

    fn meta(name: &str) -> Meta {
        Meta {
            name: name.into(),
            serial: "01".into(),
            not_before: OffsetDateTime::UNIX_EPOCH,
            not_after: OffsetDateTime::UNIX_EPOCH,
            domains: vec!["a.example.test".into()],
            sans: vec!["a.example.test".into()],
            key_type: KeyType::EcdsaP256,
            sha256: "AA".into(),
            issuer: "https://ca.test/dir".into(),
            config_commit: "abc".into(),
            issued_at: OffsetDateTime::UNIX_EPOCH,
            version: 0,
            profile: None,
            generation: None,
        }
    }

    fn issued(tag: &str) -> Issued {
        Issued {
            cert_pem: format!("cert {tag}"),
            chain_pem: format!("chain {tag}\n"),
            key_pem: Secret::new(format!("key {tag}")),
        }
    }

    #[test]
    fn install_switches_live_and_keeps_archive() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state")).unwrap();
        let mode = fs::metadata(store.root()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert_eq!(store.live_meta("web").unwrap(), None);

        let mut m = meta("web");
        store.install(&issued("one"), &mut m).unwrap();
        assert_eq!(m.version, 1);
        let mut m2 = meta("web");
        store.install(&issued("two"), &mut m2).unwrap();
        assert_eq!(m2.version, 2);

        let live = store.live_dir("web");
        assert_eq!(fs::read_to_string(live.join(CERT)).unwrap(), "cert two");
        assert_eq!(
            fs::read_to_string(live.join(FULLCHAIN)).unwrap(),
            "cert two\nchain two\n"
        );
        let key_mode = fs::metadata(live.join(PRIVKEY))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(key_mode, 0o600);
        let old = store.root().join("archive/web/0001").join(CERT);
        assert_eq!(fs::read_to_string(old).unwrap(), "cert one");
        assert_eq!(store.live_meta("web").unwrap().unwrap().version, 2);
        assert_eq!(store.live_files("web").unwrap().len(), 5);
    }

    #[test]
    fn leftover_temp_version_does_not_block_install() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state")).unwrap();
        let half = dir.path().join("archive/web/.tmp-0001");
        fs::create_dir_all(&half).unwrap();
        fs::write(half.join(CERT), "half").unwrap();
        let mut m = meta("web");
        store.install(&issued("one"), &mut m).unwrap();
        assert_eq!(
            fs::read_to_string(store.live_dir("web").join(CERT)).unwrap(),
            "cert one"
        );
    }

    #[test]
    fn corrupt_meta_is_an_error_not_a_reissue() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state")).unwrap();
        let live = store.live_dir("web");
        fs::create_dir_all(&live).unwrap();
        fs::write(live.join(META), "{ truncated").unwrap();
        assert!(matches!(
            store.live_meta("web"),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn world_readable_state_dir_is_refused_and_group_bits_tightened() {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let err = Store::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is open to other users (mode 0755)"), "{err}");
        assert!(err.contains("chmod 700"), "{err}");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o750)).unwrap();
        Store::open(dir.path()).unwrap();
        let mode = fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}
