//! Where things are in the bucket: leases under `<prefix>/.leases/`, live
//! sets where the s3 target's key template puts them.

use crate::settings::S3Settings;
use crate::store::META;

pub(super) fn under(prefix: &str, rest: &str) -> String {
    if prefix.is_empty() {
        rest.to_string()
    } else {
        format!("{prefix}/{rest}")
    }
}

pub(super) fn object_key(prefix: &str, key_template: &str, name: &str, file: &str) -> String {
    key_template
        .replace("{prefix}", prefix)
        .replace("{name}", name)
        .replace("{file}", file)
        .trim_start_matches('/')
        .replace("//", "/")
}

pub(super) fn prefixes_listed(prefix: &str, key_template: &str) -> Vec<String> {
    let meta = object_key(prefix, key_template, "\u{0}", META);
    let meta = meta.split('\u{0}').next().unwrap_or_default().to_string();
    let leases = under(prefix, ".leases/");
    if leases.starts_with(&meta) {
        vec![meta]
    } else {
        vec![meta, leases]
    }
}

/// The key prefixes a replica's run lists: the live sets' meta.json (the
/// key template up to `{name}`) and the leases, when not under it.
/// `certkeeper iam-policy` allows s3:ListBucket on exactly these.
pub fn listed_prefixes(s3: &S3Settings) -> Vec<String> {
    prefixes_listed(s3.prefix.trim_matches('/'), &s3.key_template)
}
