//! Publishing live certificates to where they are used.
//!
//! A [`Target`] receives the complete live set and must make the destination
//! hold exactly it; running it twice changes nothing the second time. Which
//! sets a target already holds is remembered in `published/<name>.json`, so
//! an unchanged certificate costs no API calls, and a failed publish is
//! retried on the next run even when nothing is due.

pub mod acm;
pub mod ecs;
pub mod files;
pub mod iam;
pub mod s3;
pub mod ssm;

use crate::store::{Meta, Store};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
#[error("publish to {target} failed for {object}: {message}")]
pub struct PublishError {
    pub target: String,
    pub object: String,
    pub message: String,
}

/// What a publish changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub uploaded: usize,
    pub unchanged: usize,
}

/// One certificate's live set, as handed to a target.
pub struct Item<'a> {
    pub meta: &'a Meta,
    pub files: &'a [(&'static str, zeroize::Zeroizing<Vec<u8>>)],
    /// Template values: the certificate's `vars`, then `name`, `domain`,
    /// `serial`, `date`.
    pub vars: BTreeMap<String, String>,
    pub store: &'a Store,
}

impl Item<'_> {
    pub fn new<'a>(
        meta: &'a Meta,
        files: &'a [(&'static str, zeroize::Zeroizing<Vec<u8>>)],
        cert_vars: &BTreeMap<String, String>,
        store: &'a Store,
    ) -> Item<'a> {
        let mut vars = cert_vars.clone();
        vars.insert("name".into(), meta.name.clone());
        let first = meta.domains.first().cloned().unwrap_or_default();
        // `*` is not allowed in IAM names and awkward in paths and keys.
        vars.insert("domain".into(), first.replacen("*.", "STAR.", 1));
        vars.insert("serial".into(), meta.serial.clone());
        vars.insert("date".into(), today());
        Item {
            meta,
            files,
            vars,
            store,
        }
    }

    pub fn file(&self, name: &str) -> Option<&[u8]> {
        self.files
            .iter()
            .find(|(f, _)| *f == name)
            .map(|(_, b)| b.as_slice())
    }

    /// `template` with this item's variables and `extra` filled in.
    pub fn render(
        &self,
        template: &str,
        extra: &[(&str, &str)],
    ) -> Result<String, crate::template::TemplateError> {
        let mut vars = self.vars.clone();
        for (k, v) in extra {
            vars.insert((*k).to_string(), (*v).to_string());
        }
        crate::template::render(template, &vars)
    }
}

fn today() -> String {
    let d = time::OffsetDateTime::now_utc().date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// Whether a PEM an AWS service returned is `ours` (services trim or add
/// a final newline).
pub fn same_pem(theirs: &str, ours: &[u8]) -> bool {
    theirs.trim() == String::from_utf8_lossy(ours).trim()
}

#[async_trait]
pub trait Target: Send + Sync {
    /// The instance name from the settings (`targets.<name>`), used in logs,
    /// status and the published record.
    fn name(&self) -> &str;

    /// Makes the destination hold exactly `item`'s set. Idempotent: a second
    /// call with the same set changes nothing and reports it unchanged.
    async fn publish(&self, item: &Item<'_>) -> Result<Outcome, PublishError>;

    /// The copies of `item`'s certificate this target keeps where load
    /// balancers and CloudFront reference them: the one holding this set,
    /// and earlier ones of the same name. `None` for targets consumers do
    /// not reference (everything but iam and acm).
    async fn copies(&self, _item: &Item<'_>) -> Result<Option<Copies>, PublishError> {
        Ok(None)
    }

    /// Deletes earlier copies of `item`'s certificate beyond what the
    /// target keeps, except those a consumer references (`in_use`: ARNs and
    /// IAM ids). For a certificate with a rollout this runs after the
    /// rollout, instead of during `publish`.
    async fn prune(
        &self,
        _item: &Item<'_>,
        _in_use: &std::collections::BTreeSet<String>,
    ) -> Result<(), PublishError> {
        Ok(())
    }

    /// Called once after every certificate of a run was handled, with every
    /// live certificate this target publishes (and its template vars).
    async fn finish_run(&self, _certs: &[Published], _store: &Store) -> Result<(), PublishError> {
        Ok(())
    }
}

/// One copy of a certificate in IAM or ACM, as consumers reference it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertCopy {
    pub arn: String,
    /// IAM's ServerCertificateId: CloudFront references IAM certificates
    /// by it, load balancers by the ARN.
    pub iam_id: Option<String>,
    /// ACM's region; `None` for IAM, which is global.
    pub region: Option<String>,
}

impl CertCopy {
    /// Whether a consumer's reference (an ARN or an IAM id) is this copy.
    pub fn is(&self, reference: &str) -> bool {
        self.arn == reference || self.iam_id.as_deref() == Some(reference)
    }
}

/// Where a target keeps a certificate: the copy holding the live set (one
/// per ACM region) and the earlier ones of the same name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Copies {
    pub current: Vec<CertCopy>,
    pub previous: Vec<CertCopy>,
}

/// A live certificate and its template variables.
pub type Published = (Meta, BTreeMap<String, String>);

/// Per certificate: target name -> fingerprint of the set it holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    targets: BTreeMap<String, String>,
}

/// Fingerprint of a whole live set (file names and contents).
pub fn set_fingerprint(files: &[(&'static str, zeroize::Zeroizing<Vec<u8>>)]) -> String {
    let mut joined = Vec::new();
    for (name, bytes) in files {
        joined.extend_from_slice(name.as_bytes());
        joined.push(0);
        joined.extend_from_slice(crate::x509::sha256_hex(bytes).as_bytes());
        joined.push(b'\n');
    }
    crate::x509::sha256_hex(&joined)
}

fn record_path(name: &str) -> String {
    format!("published/{name}.json")
}

/// Whether `target` is known to hold the set with `fingerprint`.
pub fn is_published(store: &Store, name: &str, target: &str, fingerprint: &str) -> bool {
    read_record(store, name)
        .targets
        .get(target)
        .is_some_and(|f| f == fingerprint)
}

/// Whether `target` ever took a set of `name` from this state dir: when
/// not, its objects are most likely absent, and a target may create them
/// without looking first.
pub fn ever_published(store: &Store, name: &str, target: &str) -> bool {
    read_record(store, name).targets.contains_key(target)
}

pub fn mark_published(
    store: &Store,
    name: &str,
    target: &str,
    fingerprint: &str,
) -> Result<(), crate::store::StoreError> {
    let mut record = read_record(store, name);
    record
        .targets
        .insert(target.to_string(), fingerprint.to_string());
    let json = serde_json::to_vec_pretty(&record).expect("record serializes");
    store.write_state(&record_path(name), &json)
}

fn read_record(store: &Store, name: &str) -> Record {
    // An unreadable record only costs a re-check of the target.
    store
        .read_state(&record_path(name))
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// The registry: one target from its settings, with its own AWS identity
/// where it calls AWS. A new target is its module above, its settings arm,
/// and one arm here.
pub async fn build(
    name: &str,
    settings: &crate::settings::Settings,
    target: &crate::settings::TargetSettings,
    base: &aws_config::SdkConfig,
) -> std::sync::Arc<dyn Target> {
    use crate::aws;
    use crate::settings::TargetSettings;
    use std::sync::Arc;
    match target {
        TargetSettings::S3(s3) => {
            let sdk = aws::identity(&settings.aws, &s3.aws, base, "certkeeper-s3").await;
            Arc::new(s3::S3::new(
                name,
                aws::s3_client(&settings.aws, &sdk),
                s3.clone(),
            ))
        }
        TargetSettings::Ssm(ssm) => {
            let sdk = aws::identity(&settings.aws, &ssm.aws, base, "certkeeper-ssm").await;
            Arc::new(ssm::Ssm::new(
                name,
                aws_sdk_ssm::Client::new(&sdk),
                ssm.clone(),
            ))
        }
        TargetSettings::Acm(acm) => {
            let sdk = aws::identity(&settings.aws, &acm.aws, base, "certkeeper-acm").await;
            let mut regions = acm.regions.clone();
            if regions.is_empty() {
                regions.push(
                    sdk.region()
                        .map(|r| r.to_string())
                        .unwrap_or_else(|| "us-east-1".into()),
                );
            }
            let clients = regions
                .into_iter()
                .map(|r| {
                    let config = aws_sdk_acm::config::Builder::from(&sdk)
                        .region(aws_config::Region::new(r.clone()))
                        .build();
                    (r, aws_sdk_acm::Client::from_conf(config))
                })
                .collect();
            Arc::new(acm::Acm::new(name, clients))
        }
        TargetSettings::Iam(iam) => {
            let sdk = aws::identity(&settings.aws, &iam.aws, base, "certkeeper-iam").await;
            // Certificates rolled out from this target keep their earlier
            // copies until the rollout has moved every consumer off them.
            let rolled_out = settings
                .rollouts
                .iter()
                .filter(|(_, r)| r.target == name)
                .map(|(cert, _)| cert.clone())
                .collect();
            Arc::new(iam::Iam::new(
                name,
                aws_sdk_iam::Client::new(&sdk),
                iam.clone(),
                rolled_out,
            ))
        }
        TargetSettings::Ecs(ecs) => {
            let sdk = aws::identity(&settings.aws, &ecs.aws, base, "certkeeper-ecs").await;
            Arc::new(ecs::Ecs::new(
                name,
                aws_sdk_ecs::Client::new(&sdk),
                ecs.clone(),
            ))
        }
        TargetSettings::Files(files) => Arc::new(files::Files::new(name, files.clone())),
    }
}
