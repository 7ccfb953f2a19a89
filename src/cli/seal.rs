//! `certkeeper seal`: a certificate's credentials sealed to a client's RSA
//! public key (src/seal.rs), written as one bundle and optionally uploaded
//! to a target, so the client's expiry watch sees the new certificate.

use super::Failure;
use certkeeper::convert;
use certkeeper::seal::{self, About, Plain};
use certkeeper::settings::{Settings, TargetSettings};
use certkeeper::store::{self, Store};
use std::path::PathBuf;
use zeroize::Zeroizing;

#[derive(clap::Args)]
pub struct SealArgs {
    /// The certificate: a live one in the state dir (issued by a run or
    /// imported with `csr import`); with --key and --cert, only its name.
    pub name: String,
    /// The client's RSA public key (PEM `PUBLIC KEY` or `RSA PUBLIC KEY`,
    /// or DER), at least 2048 bits.
    #[arg(long, value_name = "FILE")]
    pub public_key: PathBuf,
    /// Seal these files instead of the stored set: the private key ...
    #[arg(long, requires = "cert", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// ... the certificate ...
    #[arg(long, requires = "key", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// ... and its chain (optional).
    #[arg(long, requires = "key", value_name = "FILE")]
    pub chain: Option<PathBuf>,
    /// Where to write the bundle (default: NAME-sealed.tar here).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Also upload the bundle and the (public) certificate to this s3
    /// target of the settings, e.g. the backup bucket a watch source reads.
    #[arg(long, value_name = "TARGET")]
    pub publish: Option<String>,
    #[arg(long, short, default_value = "/etc/certkeeper/certkeeper.yaml")]
    pub config: PathBuf,
}

pub async fn seal(settings: Settings, args: SealArgs) -> Result<(), Failure> {
    let to = seal::recipient(&args.public_key, &convert::read(&args.public_key)?)?;
    let store = Store::open(&settings.state_dir)?;
    // The target is checked before anything is sealed or written.
    let target = match &args.publish {
        None => None,
        Some(_) if args.key.is_some() => {
            return Err(
                "--publish needs a certificate from the state dir (not --key/--cert)".into(),
            );
        }
        Some(name) => match settings.targets.get(name) {
            Some(t @ TargetSettings::S3(_)) => Some((name.clone(), t.clone())),
            Some(_) => {
                return Err(format!(
                    "--publish {name}: a sealed bundle goes to an s3 target; {name} is another type"
                )
                .into());
            }
            None => {
                return Err(format!(
                    "--publish {name}: no target {name:?} in {}",
                    args.config.display()
                )
                .into());
            }
        },
    };
    let (files, details, meta) = match (&args.key, &args.cert) {
        (Some(key), Some(cert)) => {
            let read = |p: &PathBuf| convert::read(p).map(Zeroizing::new);
            let key_bytes = read(key)?;
            let cert_bytes = read(cert)?;
            let pair = convert::private_key(key, &key_bytes)?;
            let leaf = convert::certificates(cert, &cert_bytes)?;
            if !convert::key_matches(&pair.pair, &leaf[0]) {
                return Err(format!(
                    "{}: the private key does not match the certificate in {}",
                    key.display(),
                    cert.display()
                )
                .into());
            }
            let mut files = vec![(store::PRIVKEY, key_bytes), (store::CERT, cert_bytes)];
            if let Some(chain) = &args.chain {
                files.push((store::CHAIN, read(chain)?));
            }
            let info = certkeeper::x509::leaf_info(&leaf[0])?;
            (
                files,
                describe(&info.dns_names, &info.serial, info.not_after),
                None,
            )
        }
        _ => {
            let meta = store.live_meta(&args.name)?.ok_or_else(|| {
                format!(
                    "no live certificate {:?} in {}; seal files with --key and --cert",
                    args.name,
                    settings.state_dir.display()
                )
            })?;
            let files: Vec<_> = store
                .live_files(&args.name)?
                .into_iter()
                .filter(|(f, _)| *f != store::META && *f != store::FINGERPRINTS)
                .collect();
            let details = describe(&meta.sans, &meta.serial, meta.not_after);
            (files, details, Some(meta))
        }
    };
    let plain: Vec<Plain> = files
        .iter()
        .map(|(name, bytes)| Plain { name, bytes })
        .collect();
    let about = About {
        name: &args.name,
        details: &details,
        sealed_at: time::OffsetDateTime::now_utc(),
    };
    let bundle = seal::seal(&to, &about, &plain)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}-sealed.tar", args.name)));
    store::write_atomic(&out, &bundle, 0o644)?;
    let sealed: Vec<&str> = files.iter().map(|(f, _)| *f).collect();
    tracing::info!(event = "seal.written", cert = %args.name, out = %out.display(), files = %sealed.join(","), recipient_sha256 = %to.sha256, bits = to.bits);
    eprintln!(
        "Sealed {} ({}) to the {}-bit RSA key {} in {}.",
        args.name,
        sealed.join(", "),
        to.bits,
        to.sha256,
        out.display()
    );
    if let (Some((name, target)), Some(meta)) = (target, meta) {
        let base = certkeeper::aws::base(&settings.aws, None).await;
        let target = certkeeper::publish::build(&name, &settings, &target, &base).await;
        let cert = files
            .iter()
            .find(|(f, _)| *f == store::FULLCHAIN)
            .or_else(|| files.iter().find(|(f, _)| *f == store::CERT))
            .map(|(_, b)| b.clone())
            .unwrap_or_default();
        let upload = [(seal::BUNDLE, Zeroizing::new(bundle)), (store::CERT, cert)];
        let item = certkeeper::publish::Item::new(&meta, &upload, &Default::default(), &store);
        let outcome = target.publish(&item).await?;
        tracing::info!(event = "seal.published", cert = %args.name, target = %name, uploaded = outcome.uploaded, unchanged = outcome.unchanged);
        eprintln!(
            "Uploaded the bundle and the certificate to target {name} ({} new, {} unchanged).",
            outcome.uploaded, outcome.unchanged
        );
    }
    Ok(())
}

fn describe(sans: &[String], serial: &str, not_after: time::OffsetDateTime) -> Vec<String> {
    vec![
        format!("names: {}", sans.join(", ")),
        format!("serial: {serial}"),
        format!(
            "not after: {}",
            not_after
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        ),
    ]
}
