//! The commands for certificates from CAs without ACME (`csr new`, `csr
//! import`), and the file tools of the runbooks they replace (`convert`,
//! `fingerprint`). Argument parsing lives in main; each command returns
//! its error as one printable line.

use super::Failure;
use certkeeper::convert::{self, Bundle};
use certkeeper::csr::{self, Request};
use certkeeper::secret::Secret;
use certkeeper::settings::Settings;
use certkeeper::store::Store;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct CsrNewArgs {
    /// Certificate name (the config repo's, when it declares one).
    #[arg(long)]
    pub name: String,
    /// Common name template, e.g. '{identifier}.{ods}.mesh-client.nhs.uk'
    /// (default: the config repo's `csr.cn`).
    #[arg(long)]
    pub cn: Option<String>,
    /// Template variable, `key=value`; repeatable. Adds to the config's `vars`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Subject alternative name (template); repeatable. Default: the
    /// config's `csr.sans`.
    #[arg(long = "san")]
    pub sans: Vec<String>,
    /// rsa-2048 (default), rsa-3072, rsa-4096, ecdsa-p256, ecdsa-p384;
    /// default: the config's `key_type` when it declares the certificate.
    #[arg(long)]
    pub key: Option<String>,
    /// Write the CSR here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Discard a pending request for another subject (and its key).
    #[arg(long)]
    pub replace: bool,
    #[arg(long, short, default_value = "/etc/certkeeper/certkeeper.yaml")]
    pub config: PathBuf,
}

#[derive(clap::Args)]
pub struct CsrImportArgs {
    #[arg(long)]
    pub name: String,
    /// The signed certificate (PEM or DER; a PEM bundle may carry its chain).
    #[arg(long)]
    pub cert: PathBuf,
    /// CA certificates up to the root (sub CA, root CA), any order; repeatable.
    #[arg(long)]
    pub chain: Vec<PathBuf>,
    #[arg(long, short, default_value = "/etc/certkeeper/certkeeper.yaml")]
    pub config: PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConvertTo {
    /// cert.pem, privkey.pem, chain.pem and fullchain.pem in --out-dir.
    Pem,
    /// PKCS#12 with the key, the certificate and its chain.
    P12,
    /// PKCS#12 for Java: the key entry plus the CA certificates as trusted
    /// entries `rootca` and `subca`.
    Keystore,
}

#[derive(clap::Args)]
pub struct ConvertArgs {
    #[arg(long, value_enum)]
    pub to: ConvertTo,
    /// PKCS#12/PFX input (for --to pem).
    #[arg(long)]
    pub p12: Option<PathBuf>,
    /// Certificate input, PEM or DER (for --to p12/keystore).
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// Private key input, PEM or DER.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// CA certificates, any order; repeatable.
    #[arg(long)]
    pub chain: Vec<PathBuf>,
    /// Output file (p12, keystore).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Output directory (pem).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Alias (friendly name) of the key entry.
    #[arg(long, default_value = "meshclient")]
    pub alias: String,
    /// 3DES and SHA-1 instead of AES-256, for Java before 8u301 and old Windows.
    #[arg(long)]
    pub legacy: bool,
    /// File whose first line is the PKCS#12 password.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the PKCS#12 password.
    #[arg(long)]
    pub password_env: Option<String>,
    /// Replace existing output files.
    #[arg(long)]
    pub force: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FingerprintFormat {
    /// SHA-256, SHA-1 and MD5 as `openssl x509 -noout -fingerprint` prints them.
    Openssl,
    /// The bare upper-case MD5 that monit's `certmd5` compares.
    Monit,
}

#[derive(clap::Args)]
pub struct FingerprintArgs {
    /// Certificate files, PEM or DER (the first certificate of each, as openssl reads it).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "openssl")]
    pub format: FingerprintFormat,
}

/// The command line as typed, to repeat for the next certificate; quoted
/// for a POSIX shell.
fn command_line() -> String {
    let mut words = vec!["certkeeper".to_string()];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--replace" {
            continue;
        }
        if a == "--out" {
            args.next();
            continue;
        }
        if a.starts_with("--out=") {
            continue;
        }
        words.push(shell_quote(&a));
    }
    words.join(" ")
}

fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@,+".contains(c))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

fn parse_key_type(text: &str) -> Result<certkeeper::config::KeyType, Failure> {
    serde_json::from_value(serde_json::Value::String(text.to_string())).map_err(|_| {
        format!("--key {text:?}: expected rsa-2048, rsa-3072, rsa-4096, ecdsa-p256 or ecdsa-p384")
            .into()
    })
}

/// The config repo's entry for `name`, if the repo can be read and has one.
async fn config_entry(
    settings: &Settings,
    store: &Store,
    name: &str,
) -> Result<(Option<certkeeper::config::Certificate>, String), Failure> {
    let (s, st) = (settings.clone(), store.clone());
    let accepted =
        tokio::task::spawn_blocking(move || certkeeper::config::gate::accept(&s, &st, None))
            .await?
            .map_err(|e| format!("config repo: {e}"))?;
    let cert = accepted
        .config
        .certificates
        .into_iter()
        .find(|c| c.name() == name);
    Ok((cert, accepted.commit))
}

pub async fn csr_new(settings: Settings, args: CsrNewArgs) -> Result<(), Failure> {
    let store = Store::open(&settings.state_dir)?;
    // The config is needed only for what the command line leaves out.
    let entry = if args.cn.is_none() || args.key.is_none() {
        config_entry(&settings, &store, &args.name).await?.0
    } else {
        None
    };
    if let Some(e) = &entry
        && !e.spec.is_external()
    {
        return Err(format!(
            "{} is an ACME certificate in the config repo ({}); CSRs are for `issuer: {}` ones",
            args.name,
            e.origin,
            certkeeper::config::EXTERNAL
        )
        .into());
    }
    let spec_csr = entry.as_ref().and_then(|e| e.spec.csr.clone());
    let cn = args
        .cn
        .clone()
        .or_else(|| spec_csr.as_ref().map(|c| c.cn.clone()))
        .ok_or_else(|| {
            format!(
                "no --cn given and the config repo has no `csr.cn` for {:?}",
                args.name
            )
        })?;
    let sans = if args.sans.is_empty() {
        spec_csr.map(|c| c.sans).unwrap_or_default()
    } else {
        args.sans.clone()
    };
    let mut vars: BTreeMap<String, String> = entry
        .as_ref()
        .map(|e| e.spec.vars.clone())
        .unwrap_or_default();
    for kv in &args.set {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("--set {kv:?}: expected KEY=VALUE"))?;
        vars.insert(k.trim().to_string(), v.to_string());
    }
    let (common_name, sans) = certkeeper::config::domain::render_names(&cn, &sans, &vars)?;
    let key_type = match (&args.key, &entry) {
        (Some(k), _) => parse_key_type(k)?,
        (None, Some(e)) => e.spec.key_type,
        (None, None) => certkeeper::config::KeyType::Rsa2048,
    };
    let request = Request {
        name: args.name.clone(),
        common_name,
        sans,
        key_type,
        created_at: time::OffsetDateTime::now_utc(),
        command: command_line(),
    };
    let made = csr::new_request(&store, &request, args.replace)?;
    match &args.out {
        Some(out) => {
            convert::write_all(&[(out.clone(), made.pem.clone().into_bytes(), 0o644)], true)?
        }
        None => print!("{}", made.pem),
    }
    eprintln!(
        "{} for {} ({}, {}); the key stays in {} (mode 0600).\nSend the CSR to the CA, then: certkeeper csr import --name {} --cert SIGNED.pem --chain SUBCA.pem --chain ROOTCA.pem",
        if made.reused {
            "CSR already pending (same subject, same key)"
        } else {
            "New CSR"
        },
        args.name,
        request.subject(),
        request.key_type,
        store.root().join("csr").join(&args.name).display(),
        args.name,
    );
    if entry.is_none() {
        eprintln!(
            "Note: the config repo does not declare {:?} with `issuer: {}`: after import it is stored and watched, but published nowhere.",
            args.name,
            certkeeper::config::EXTERNAL
        );
    }
    Ok(())
}

/// Imports, then publishes through a run of this one certificate.
/// Returns whether publishing left something to retry.
pub async fn csr_import(settings: Settings, args: CsrImportArgs) -> Result<bool, Failure> {
    let store = Store::open(&settings.state_dir)?;
    let (entry, commit) = match config_entry(&settings, &store, &args.name).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(event = "csr.import.config_unavailable", error = %e);
            (None, String::new())
        }
    };
    if let Some(e) = &entry
        && !e.spec.is_external()
    {
        return Err(format!(
            "{} is an ACME certificate in the config repo ({}); only `issuer: {}` certificates are imported",
            args.name,
            e.origin,
            certkeeper::config::EXTERNAL
        ).into());
    }
    let imported = {
        let _lock = certkeeper::lock::RunLock::acquire(store.root())?;
        let chain: Vec<&Path> = args.chain.iter().map(PathBuf::as_path).collect();
        csr::import(
            &store,
            &args.name,
            &args.cert,
            &chain,
            &commit,
            time::OffsetDateTime::now_utc(),
        )?
    };
    eprintln!(
        "Imported {} as version {}: serial {}, valid until {}, chain {}.",
        args.name,
        imported.meta.version,
        imported.meta.serial,
        imported
            .meta
            .not_after
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        imported.chain.join(" <- ")
    );
    for u in &imported.unused {
        eprintln!("Note: {u} from --chain is not on the certificate's chain and was left out.");
    }
    if entry.is_none() {
        eprintln!(
            "Not published: the config repo does not declare {:?} with `issuer: {}` and its targets.",
            args.name,
            certkeeper::config::EXTERNAL
        );
        return Ok(false);
    }
    let services = certkeeper::run::Services::from_settings(&settings)
        .await
        .map_err(|e| format!("imported, but not published: {e}"))?;
    let options = certkeeper::run::RunOptions {
        only: Some(args.name.clone()),
        ..Default::default()
    };
    let cancel = tokio_util::sync::CancellationToken::new();
    let status = certkeeper::run::run_once(&settings, &services, &options, &cancel)
        .await
        .map_err(|e| format!("imported, but not published: {e}"))?;
    let cert = status.certificates.iter().find(|c| c.name == args.name);
    match cert {
        Some(c) if c.published => {
            let targets: Vec<&str> = c.targets.iter().map(|t| t.name.as_str()).collect();
            eprintln!(
                "Published to {}.",
                if targets.is_empty() {
                    "no targets".to_string()
                } else {
                    targets.join(", ")
                }
            );
            if let Some(note) = &c.last_error {
                eprintln!("Note: {note}");
            }
            Ok(false)
        }
        Some(c) => {
            eprintln!(
                "Imported, but publishing failed (the next run retries): {}",
                c.last_error.as_deref().unwrap_or("see the logs")
            );
            Ok(true)
        }
        None => Ok(true),
    }
}

fn password(args: &ConvertArgs) -> Result<Secret, Failure> {
    match (&args.password_file, &args.password_env) {
        (Some(f), None) => {
            let text = std::fs::read_to_string(f)
                .map_err(|e| format!("--password-file {}: {e}", f.display()))?;
            Ok(Secret::new(text.lines().next().unwrap_or("").to_string()))
        }
        (None, Some(var)) => std::env::var(var)
            .map(Secret::new)
            .map_err(|_| format!("--password-env {var}: the variable is not set").into()),
        (Some(_), Some(_)) => Err("give --password-file or --password-env, not both".into()),
        (None, None) => Err(
            "the PKCS#12 password: give --password-file FILE or --password-env VAR (never on the command line)"
                .into(),
        ),
    }
}

pub fn convert(args: ConvertArgs) -> Result<(), Failure> {
    let password = password(&args)?;
    match args.to {
        ConvertTo::Pem => {
            let input = args.p12.as_ref().ok_or("--to pem needs --p12 FILE")?;
            let dir = args
                .out_dir
                .as_ref()
                .ok_or("--to pem needs --out-dir DIR")?;
            if !dir.exists() {
                return Err(format!(
                    "--out-dir {}: does not exist (create it first, mode 0700: it receives a private key)",
                    dir.display()
                )
                .into());
            }
            if !dir.is_dir() {
                return Err(format!("--out-dir {}: not a directory", dir.display()).into());
            }
            let set = convert::p12_to_pem(input, &convert::read(input)?, &password)?;
            let fullchain = format!("{}{}", set.cert, set.chain);
            let files = vec![
                (
                    dir.join("privkey.pem"),
                    set.key.expose().as_bytes().to_vec(),
                    0o600,
                ),
                (dir.join("cert.pem"), set.cert.into_bytes(), 0o644),
                (dir.join("chain.pem"), set.chain.into_bytes(), 0o644),
                (dir.join("fullchain.pem"), fullchain.into_bytes(), 0o644),
            ];
            convert::write_all(&files, args.force)?;
            eprintln!(
                "Wrote privkey.pem (0600), cert.pem, chain.pem and fullchain.pem for {} to {}",
                set.subject,
                dir.display()
            );
            Ok(())
        }
        ConvertTo::P12 | ConvertTo::Keystore => {
            let cert_path = args
                .cert
                .as_ref()
                .ok_or("--to p12/keystore needs --cert FILE")?;
            let key_path = args
                .key
                .as_ref()
                .ok_or("--to p12/keystore needs --key FILE")?;
            let out = args
                .out
                .as_ref()
                .ok_or("--to p12/keystore needs --out FILE")?;
            let mut certs = convert::certificates(cert_path, &convert::read(cert_path)?)?;
            let leaf = certs.remove(0);
            let mut pool = certs;
            for c in &args.chain {
                pool.extend(convert::certificates(c, &convert::read(c)?)?);
            }
            let key_bytes = zeroize::Zeroizing::new(convert::read(key_path)?);
            let key = convert::private_key(key_path, &key_bytes)?;
            if !convert::key_matches(&key.pair, &leaf) {
                return Err(format!(
                    "{}: the private key does not match the certificate in {} ({})",
                    key_path.display(),
                    cert_path.display(),
                    convert::subject(&leaf)
                )
                .into());
            }
            let chain = if pool.is_empty() {
                Vec::new()
            } else {
                let (path, unused) = convert::build_chain(&leaf, &pool)
                    .map_err(|e| format!("{}: {e}", cert_path.display()))?;
                for u in unused {
                    eprintln!(
                        "Note: {} is not on the certificate's chain and was left out.",
                        convert::subject(&u)
                    );
                }
                path
            };
            if args.to == ConvertTo::Keystore && chain.is_empty() {
                return Err("--to keystore needs the CA certificates (--chain SUBCA.pem --chain ROOTCA.pem)".into());
            }
            let mut all = vec![leaf.clone()];
            all.extend(chain.iter().cloned());
            let trusted = if args.to == ConvertTo::Keystore {
                convert::ca_aliases(&chain)
            } else {
                Vec::new()
            };
            let bundle = Bundle {
                key_pkcs8: key.pkcs8(),
                chain: &all,
                alias: &args.alias,
                trusted: &trusted,
                legacy: args.legacy,
            };
            let p12 = convert::pkcs12(&bundle, &password)?;
            convert::write_all(&[(out.clone(), p12, 0o600)], args.force)?;
            let aliases: Vec<&str> = std::iter::once(args.alias.as_str())
                .chain(trusted.iter().map(|(a, _)| a.as_str()))
                .collect();
            eprintln!(
                "Wrote {} ({} entr{}: {}; {}; mode 0600)",
                out.display(),
                aliases.len(),
                if aliases.len() == 1 { "y" } else { "ies" },
                aliases.join(", "),
                if args.legacy {
                    "3DES/SHA-1"
                } else {
                    "AES-256/SHA-256"
                }
            );
            Ok(())
        }
    }
}

pub fn fingerprint(args: FingerprintArgs) -> Result<(), Failure> {
    use md5::Digest as _;
    let several = args.files.len() > 1;
    let mut out = String::new();
    for f in &args.files {
        let certs = convert::certificates(f, &convert::read(f)?)?;
        let der = &certs[0];
        match args.format {
            FingerprintFormat::Monit => {
                let md5: String = md5::Md5::digest(der)
                    .iter()
                    .map(|b| format!("{b:02X}"))
                    .collect();
                if several {
                    out.push_str(&format!("{md5}  {}\n", f.display()));
                } else {
                    out.push_str(&format!("{md5}\n"));
                }
            }
            FingerprintFormat::Openssl => {
                for line in certkeeper::formats::fingerprints(der).lines().take(3) {
                    if several {
                        out.push_str(&format!("{}: {line}\n", f.display()));
                    } else {
                        out.push_str(&format!("{line}\n"));
                    }
                }
            }
        }
    }
    print!("{out}");
    Ok(())
}
