//! The publish targets (`targets:`, the `s3:` shorthand) and the AWS
//! identity each uses.

use super::*;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    pub bucket: String,
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub sse: Sse,
    /// KMS key id or ARN, only with `sse: aws:kms`.
    pub kms_key_id: Option<String>,
    /// Object key of each file; `{prefix}`, `{name}`, `{file}`, the
    /// certificate's `vars` and `{domain}` are replaced.
    #[serde(default = "defaults::s3_key_template")]
    pub key_template: String,
    /// Keep `<prefix>/index.json`, a manifest of every certificate.
    #[serde(default = "defaults::yes")]
    pub manifest: bool,
    #[serde(default)]
    pub aws: AwsIdentity,
}

/// One publish target. Defined here, not in the config repo: targets hold
/// credentials and decide what may be written where.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum TargetSettings {
    S3(S3Settings),
    Ssm(SsmSettings),
    Acm(AcmTargetSettings),
    Iam(IamSettings),
    Files(FilesSettings),
    Ecs(EcsSettings),
}

/// SSM Parameter Store: SecureString parameters, one per file and
/// environment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsmSettings {
    /// Values of `{env}`; every parameter is written once per environment.
    #[serde(default)]
    pub environments: Vec<String>,
    /// Which file goes to which parameter: keys `cert`, `chain`,
    /// `fullchain`, `key`, `pkcs12` (base64), `fingerprints`; values are
    /// path templates like `/registrations/{env}/user-input/mesh/cert`.
    pub parameters: std::collections::BTreeMap<String, String>,
    /// KMS key for the SecureStrings (default: the account's aws/ssm key).
    pub kms_key_id: Option<String>,
    #[serde(default)]
    pub tier: SsmTier,
    #[serde(default)]
    pub aws: AwsIdentity,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum SsmTier {
    #[serde(rename = "standard")]
    Standard,
    #[serde(rename = "advanced")]
    Advanced,
    /// Standard unless the value needs Advanced (over 4 KB).
    #[default]
    #[serde(rename = "intelligent-tiering")]
    IntelligentTiering,
}

/// ACM: import, then re-import to the same ARN on renewal.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmTargetSettings {
    /// Regions to import into (CloudFront needs us-east-1). Default: the
    /// identity's region.
    #[serde(default)]
    pub regions: Vec<String>,
    #[serde(default)]
    pub aws: AwsIdentity,
}

/// IAM server certificates (CloudFront, classic ELB).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IamSettings {
    /// Path template; CloudFront needs it to start with `/cloudfront/`.
    #[serde(default = "defaults::iam_path")]
    pub path: String,
    /// Name template; `{date}` is the upload day, `{domain}` the first
    /// domain with `*` written as `STAR`.
    #[serde(default = "defaults::iam_name")]
    pub name_template: String,
    /// How many certificates to keep under the path (the newest first).
    #[serde(default = "defaults::iam_keep")]
    pub keep: usize,
    /// Delete the ones beyond `keep`; IAM refuses to delete one still in
    /// use, and that one is kept and reported.
    #[serde(default)]
    pub delete_old: bool,
    #[serde(default)]
    pub aws: AwsIdentity,
}

/// Local files for a server on this machine, then a reload command.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesSettings {
    pub files: Vec<FileCopy>,
    /// Command run (no shell) after a file changed, e.g.
    /// `[systemctl, reload, nginx]`.
    #[serde(default)]
    pub reload: Vec<String>,
    #[serde(
        default = "defaults::reload_timeout",
        with = "crate::duration::serde_human"
    )]
    pub reload_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCopy {
    /// A file of the live set: `cert.pem`, `chain.pem`, `fullchain.pem`,
    /// `privkey.pem`, `cert.p12`, `fingerprints.txt`.
    pub source: String,
    /// Destination path template (`/etc/nginx/tls/{name}.crt`).
    pub path: String,
    /// User name or uid; default: unchanged (certkeeper's own).
    pub owner: Option<String>,
    pub group: Option<String>,
    /// Octal mode; default 0644, and 0600 for private keys and PKCS#12.
    pub mode: Option<String>,
}

/// ECS: force a new deployment of services that read the certificate at
/// start-up only.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EcsSettings {
    pub cluster: String,
    pub services: Vec<String>,
    #[serde(default)]
    pub aws: AwsIdentity,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum Sse {
    #[default]
    #[serde(rename = "AES256")]
    Aes256,
    #[serde(rename = "aws:kms")]
    Kms,
}

/// The target the `s3:` shorthand defines.
pub const S3_TARGET: &str = "s3";

/// The live-set file an SSM `parameters` key stands for.
pub fn ssm_file(key: &str) -> Option<&'static str> {
    use crate::store::*;
    Some(match key {
        "cert" => CERT,
        "chain" => CHAIN,
        "fullchain" => FULLCHAIN,
        "key" => PRIVKEY,
        "pkcs12" => P12,
        "fingerprints" => FINGERPRINTS,
        _ => return None,
    })
}
