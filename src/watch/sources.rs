//! Reading certificates from watched sources: files and folders, S3
//! prefixes, live TLS endpoints.

use super::Watched;
use crate::settings::{Settings, WatchSource};
use std::collections::BTreeMap;
use std::path::Path;

const EXTENSIONS: [&str; 6] = ["pem", "crt", "cer", "der", "pfx", "p12"];

fn is_pkcs12(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".pfx") || lower.ends_with(".p12")
}

/// What a scan needs besides the settings.
pub struct Context<'a> {
    pub secrets: &'a crate::secrets::Secrets,
    /// For the S3 ETag cache; none: everything is downloaded.
    pub store: Option<&'a crate::store::Store>,
}

/// What was read from an S3 object, by ETag, so an unchanged object is not
/// downloaded again.
#[derive(serde::Serialize, serde::Deserialize, Clone)]
struct Cached {
    etag: String,
    #[serde(with = "time::serde::rfc3339")]
    not_after: time::OffsetDateTime,
    serial: String,
    subject: String,
}

const CACHE: &str = "watch-cache.json";

/// The leaf certificate DER of a PKCS#12 file.
fn pkcs12_leaf(bytes: &[u8], password: &crate::secret::Secret) -> Result<Vec<u8>, String> {
    use p12_keystore::{KeyStore, KeyStoreEntry, Pkcs12ImportPolicy};
    let store = KeyStore::from_pkcs12(bytes, password.expose(), Pkcs12ImportPolicy::Relaxed)
        .map_err(|e| format!("PKCS#12 (wrong password or damaged file?): {e}"))?;
    if let Some((_, chain)) = store.private_key_chain()
        && let Some(c) = chain.certs().first()
    {
        return Ok(c.as_der().to_vec());
    }
    store
        .entries()
        .find_map(|(_, e)| match e {
            KeyStoreEntry::Certificate(c) => Some(c.as_der().to_vec()),
            _ => None,
        })
        .ok_or_else(|| "PKCS#12 holds no certificate".to_string())
}

/// Bytes as a certificate: PKCS#12 (with `password`) by name, else PEM/DER.
fn decode(
    name: &str,
    bytes: Vec<u8>,
    password: Option<&crate::secret::Secret>,
) -> Result<Vec<u8>, String> {
    if is_pkcs12(name) {
        let password = password.ok_or("a .pfx/.p12 needs pkcs12_password in the source")?;
        pkcs12_leaf(&bytes, password)
    } else {
        Ok(bytes)
    }
}

fn is_cert_name(name: &str) -> bool {
    name.rsplit_once('.')
        .is_some_and(|(_, ext)| EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()))
}

/// The leaf of a PEM bundle, or DER as it is.
pub fn parse(bytes: &[u8]) -> Result<crate::x509::LeafInfo, String> {
    let der = if bytes.starts_with(b"-----") || bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        let text = String::from_utf8_lossy(bytes);
        crate::x509::pem_chain(&text)
            .map_err(|e| e.to_string())?
            .remove(0)
    } else {
        bytes.to_vec()
    };
    crate::x509::leaf_info(&der).map_err(|e| e.to_string())
}

fn subject_of(bytes: &[u8]) -> String {
    let der = if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        crate::x509::pem_chain(&String::from_utf8_lossy(bytes))
            .ok()
            .and_then(|mut c| (!c.is_empty()).then(|| c.remove(0)))
    } else {
        Some(bytes.to_vec())
    };
    der.and_then(|d| {
        use x509_parser::prelude::FromDer;
        x509_parser::certificate::X509Certificate::from_der(&d)
            .ok()
            .map(|(_, c)| c.subject().to_string())
    })
    .unwrap_or_default()
}

fn name_for(template: &str, key: &str) -> String {
    let file = key.rsplit('/').next().unwrap_or(key);
    let stem = file.rsplit_once('.').map(|(s, _)| s).unwrap_or(file);
    let dir = key.rsplit('/').nth(1).unwrap_or_default();
    let mut vars = BTreeMap::new();
    vars.insert("stem".to_string(), stem.to_string());
    vars.insert("dir".to_string(), dir.to_string());
    vars.insert("file".to_string(), file.to_string());
    crate::template::render(template, &vars).unwrap_or_else(|_| stem.to_string())
}

fn watched(
    name: String,
    source: String,
    labels: &BTreeMap<String, String>,
    bytes: &[u8],
) -> Result<Watched, String> {
    let info = parse(bytes).map_err(|e| format!("{source}: {e}"))?;
    Ok(Watched {
        name,
        source,
        labels: labels.clone(),
        not_after: info.not_after,
        serial: info.serial,
        subject: subject_of(bytes),
    })
}

/// The certificates of one source, and per-item errors.
pub async fn scan(
    settings: &Settings,
    source: &WatchSource,
    ctx: &Context<'_>,
) -> Result<(Vec<Watched>, Vec<String>), String> {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    let password = |secret: &Option<String>| {
        let secret = secret.clone();
        async move {
            match secret {
                Some(s) => ctx.secrets.get(&s).await.map(Some),
                None => Ok(None),
            }
        }
    };
    match source {
        WatchSource::Files {
            path,
            name,
            labels,
            pkcs12_password,
        } => {
            let password = password(pkcs12_password).await?;
            let mut files = Vec::new();
            collect(path, &mut files).map_err(|e| format!("{}: {e}", path.display()))?;
            for file in files {
                let shown = file.display().to_string();
                let bytes = match std::fs::read(&file)
                    .map_err(|e| e.to_string())
                    .and_then(|b| decode(&shown, b, password.as_ref()))
                {
                    Ok(b) => b,
                    Err(e) => {
                        errors.push(format!("{shown}: {e}"));
                        continue;
                    }
                };
                match watched(name_for(name, &shown), shown, labels, &bytes) {
                    Ok(w) => found.push(w),
                    Err(e) => errors.push(e),
                }
            }
        }
        WatchSource::S3 {
            bucket,
            prefix,
            name,
            labels,
            aws,
            pkcs12_password,
        } => {
            let password = password(pkcs12_password).await?;
            let mut cache: BTreeMap<String, Cached> = ctx
                .store
                .and_then(|s| s.read_state(CACHE).ok().flatten())
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            let base = crate::aws::base(settings, None).await;
            let sdk = crate::aws::identity(settings, aws, &base, "certkeeper-watch").await;
            let client = crate::aws::s3_client(settings, &sdk);
            let mut pages = client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .into_paginator()
                .send();
            let mut keys = Vec::new();
            while let Some(page) = pages.next().await {
                let page = page
                    .map_err(|e| format!("s3://{bucket}/{prefix}: {}", crate::aws::message(&e)))?;
                keys.extend(
                    page.contents()
                        .iter()
                        .filter_map(|o| {
                            Some((
                                o.key()?.to_string(),
                                o.e_tag().unwrap_or_default().to_string(),
                            ))
                        })
                        .filter(|(k, _)| is_cert_name(k)),
                );
            }
            // Unchanged objects (same ETag) come from the cache.
            let mut fetch = Vec::new();
            for (key, etag) in keys {
                let shown = format!("s3://{bucket}/{key}");
                match cache.get(&shown) {
                    Some(c) if !etag.is_empty() && c.etag == etag => found.push(Watched {
                        name: name_for(name, &key),
                        source: shown,
                        labels: labels.clone(),
                        not_after: c.not_after,
                        serial: c.serial.clone(),
                        subject: c.subject.clone(),
                    }),
                    _ => fetch.push((key, etag)),
                }
            }
            let keys = fetch;
            // Downloaded 16 at a time.
            let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
            let mut tasks = tokio::task::JoinSet::new();
            for (key, etag) in keys {
                let (client, bucket, limit) = (client.clone(), bucket.clone(), limit.clone());
                tasks.spawn(async move {
                    let _permit = limit.acquire_owned().await;
                    let got = client.get_object().bucket(&bucket).key(&key).send().await;
                    let bytes = match got {
                        Ok(o) => o
                            .body
                            .collect()
                            .await
                            .map(|b| b.into_bytes().to_vec())
                            .map_err(|e| e.to_string()),
                        Err(e) => Err(crate::aws::message(&e)),
                    };
                    (key, etag, bytes)
                });
            }
            while let Some(joined) = tasks.join_next().await {
                let Ok((key, etag, bytes)) = joined else {
                    continue;
                };
                let shown = format!("s3://{bucket}/{key}");
                match bytes.and_then(|b| decode(&key, b, password.as_ref())) {
                    Ok(b) => match watched(name_for(name, &key), shown.clone(), labels, &b) {
                        Ok(w) => {
                            cache.insert(
                                shown,
                                Cached {
                                    etag,
                                    not_after: w.not_after,
                                    serial: w.serial.clone(),
                                    subject: w.subject.clone(),
                                },
                            );
                            found.push(w);
                        }
                        Err(e) => errors.push(e),
                    },
                    Err(e) => errors.push(format!("{shown}: {e}")),
                }
            }
            if let Some(store) = ctx.store {
                let json = serde_json::to_vec(&cache).expect("cache serializes");
                let _ = store.write_state(CACHE, &json);
            }
        }
        WatchSource::Ssm {
            path,
            name,
            labels,
            aws,
        } => {
            let base = crate::aws::base(settings, None).await;
            let sdk = crate::aws::identity(settings, aws, &base, "certkeeper-watch").await;
            let client = aws_sdk_ssm::Client::new(&sdk);
            let mut pages = client
                .get_parameters_by_path()
                .path(path)
                .recursive(true)
                .with_decryption(true)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| format!("ssm:{path}: {}", crate::aws::message(&e)))?;
                for p in page.parameters() {
                    let (Some(pname), Some(value)) = (p.name(), p.value()) else {
                        continue;
                    };
                    // Keys and other values live beside certificates.
                    if !value.contains("-----BEGIN CERTIFICATE-----") {
                        continue;
                    }
                    let stem = pname.rsplit('/').next().unwrap_or(pname);
                    let shown = format!("ssm:{pname}");
                    match watched(
                        name_for(name, &format!("{stem}.pem")),
                        shown,
                        labels,
                        value.as_bytes(),
                    ) {
                        Ok(w) => found.push(w),
                        Err(e) => errors.push(e),
                    }
                }
            }
        }
        WatchSource::Endpoint {
            address,
            sni,
            name,
            labels,
        } => {
            let endpoint = match sni {
                Some(sni) => crate::config::Endpoint::WithSni {
                    address: address.clone(),
                    sni: sni.clone(),
                },
                None => crate::config::Endpoint::Address(address.clone()),
            };
            let der = crate::verify::served_leaf(&endpoint)
                .await
                .map_err(|e| format!("{address}: {e}"))?;
            found.push(watched(name.clone(), address.clone(), labels, &der)?);
        }
    }
    Ok((found, errors))
}

fn collect(path: &Path, out: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    if path.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(path)?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect(&p, out)?;
        } else if p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(is_cert_name)
        {
            out.push(p);
        }
    }
    Ok(())
}
