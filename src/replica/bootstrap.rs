//! Live sets from the bucket: one listing per run, and a pull of each set
//! that is newer there than here. `newer` decides.

use super::bucket::{Listing, Object};
use super::memo::{remember_etag, seen};
use super::{Coordinator, LeaseError, keys};
use crate::store::{Issued, META, Meta, Store};

/// What one listing of the bucket found.
pub struct Survey {
    listing: Listing,
}

/// Whether the bucket's set (`remote`) should replace the local one: any
/// when there is none here; else a newer generation, or a later expiry
/// when the bucket's was published without replicas.
pub(super) fn newer(local: Option<&Meta>, remote: &Meta) -> bool {
    match local {
        None => true,
        Some(l) if l.serial == remote.serial => false,
        Some(l) => match (remote.generation, l.generation) {
            (Some(r), Some(lg)) => r > lg,
            (Some(_), None) => true,
            (None, _) => remote.not_after > l.not_after,
        },
    }
}

impl Coordinator {
    /// Lists the leases and live sets of the bucket, once per run, and
    /// remembers which of `names` have neither. `None` when the listing is
    /// not allowed (no s3:ListBucket) or fails: the run then asks per
    /// certificate, as before.
    pub async fn survey(&self, names: &[&str]) -> Option<Survey> {
        self.can_list
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let survey = self.listing().await?;
        let objects = &survey.listing.objects;
        let unseen: std::collections::HashSet<String> = names
            .iter()
            .filter(|n| {
                !objects.contains_key(&self.lease_key(n))
                    && !objects.contains_key(&self.object_key(n, META))
            })
            .map(|n| n.to_string())
            .collect();
        tracing::info!(event = "replica.survey", bucket = %self.bucket.name(), objects = objects.len(), requests = survey.listing.requests, new_certificates = unseen.len());
        *self.unseen.lock().expect("unseen") = unseen;
        Some(survey)
    }

    /// One listing of the live sets and leases, `None` when not allowed or
    /// failed (logged with the fix).
    pub async fn listing(&self) -> Option<Survey> {
        if !self.can_list.load(std::sync::atomic::Ordering::SeqCst) {
            return None;
        }
        let prefixes = keys::prefixes_listed(&self.prefix, &self.key_template);
        match self.bucket.list(&prefixes).await {
            Ok(listing) => Some(Survey { listing }),
            Err(e) => {
                self.can_list
                    .store(false, std::sync::atomic::Ordering::SeqCst);
                tracing::warn!(event = "replica.survey.failed", bucket = %e.bucket, prefix = %e.key, error = %e.message, hint = "allow s3:ListBucket on the bucket (see `certkeeper iam-policy`); until then every certificate costs a few more requests");
                None
            }
        }
    }

    /// Pulls `name` unless the survey shows nothing there, or the same
    /// meta.json this replica already compared or installed.
    pub async fn pull_surveyed(
        &self,
        store: &Store,
        name: &str,
        survey: &Survey,
    ) -> Result<Option<Meta>, LeaseError> {
        let key = self.object_key(name, META);
        match survey.listing.objects.get(&key) {
            None => Ok(None),
            Some(etag)
                if !etag.is_empty()
                    && store.live_meta(name).ok().flatten().is_some_and(|local| {
                        seen(store, name)
                            == Some(format!("{} {etag} {}", self.url(&key), local.serial))
                    }) =>
            {
                Ok(None)
            }
            Some(_) => self.pull(store, name).await,
        }
    }

    /// Brings the local live set of `name` up to the bucket's when the
    /// bucket holds a newer one (see `newer`). The key must match the
    /// certificate and the files their recorded hashes; nothing is
    /// installed otherwise. Returns the installed meta.
    pub async fn pull(&self, store: &Store, name: &str) -> Result<Option<Meta>, LeaseError> {
        let meta_key = self.object_key(name, META);
        let fail = |key: &str, message: String| LeaseError::Pull {
            name: name.to_string(),
            bucket: self.bucket.name().to_string(),
            key: key.to_string(),
            message,
        };
        let Some(Object {
            bytes: meta_bytes,
            etag: meta_etag,
            ..
        }) = self.bucket.get(&meta_key).await?
        else {
            return Ok(None);
        };
        let remote: Meta =
            serde_json::from_slice(&meta_bytes).map_err(|e| fail(&meta_key, e.to_string()))?;
        let local = store.live_meta(name).ok().flatten();
        if !newer(local.as_ref(), &remote) {
            let serial = local
                .as_ref()
                .map(|l| l.serial.as_str())
                .unwrap_or_default();
            remember_etag(store, name, &self.url(&meta_key), &meta_etag, serial);
            return Ok(None);
        }
        let mut files = Vec::new();
        for file in [
            crate::store::CERT,
            crate::store::CHAIN,
            crate::store::PRIVKEY,
        ] {
            let key = self.object_key(name, file);
            let Object { bytes, .. } = self
                .bucket
                .get(&key)
                .await?
                .ok_or_else(|| fail(&key, "missing from the bucket".into()))?;
            files.push(String::from_utf8(bytes).map_err(|_| fail(&key, "not PEM text".into()))?);
        }
        let [cert_pem, chain_pem, key_pem] = <[String; 3]>::try_from(files).expect("three files");
        // Wiped on every path out of here, the refusals included.
        let key_pem = crate::secret::Secret::new(key_pem);
        let cert_key = self.object_key(name, crate::store::CERT);
        let ders = crate::x509::pem_chain(&cert_pem).map_err(|e| fail(&cert_key, e.to_string()))?;
        let info = crate::x509::leaf_info(&ders[0]).map_err(|e| fail(&cert_key, e.to_string()))?;
        if info.sha256 != remote.sha256 {
            return Err(fail(
                &cert_key,
                "the certificate is not the one meta.json describes".into(),
            ));
        }
        let key_path = std::path::PathBuf::from(self.object_key(name, crate::store::PRIVKEY));
        let key = crate::convert::private_key(&key_path, key_pem.expose().as_bytes())
            .map_err(|e| fail(&key_path.display().to_string(), e.to_string()))?;
        if !crate::convert::key_matches(&key.pair, &ders[0]) {
            return Err(fail(
                &key_path.display().to_string(),
                "the private key does not match the certificate".into(),
            ));
        }
        let issued = Issued {
            cert_pem,
            chain_pem,
            key_pem,
        };
        let mut meta = remote.clone();
        store
            .install_version(&issued, &mut meta)
            .map_err(|e| fail(&meta_key, e.to_string()))?;
        remember_etag(store, name, &self.url(&meta_key), &meta_etag, &meta.serial);
        tracing::info!(event = "replica.pulled", cert = %name, serial = %meta.serial, generation = ?meta.generation, from = %self.url(&meta_key));
        Ok(Some(meta))
    }
}
