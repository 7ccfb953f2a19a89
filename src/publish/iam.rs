//! IAM server certificates, for CloudFront distributions and classic ELBs
//! that take a certificate by IAM name.
//!
//! Uploaded under a path (`/cloudfront/<name>/`) with a dated name
//! (`STAR.example.com_2026-11-22`): IAM certificates cannot be replaced in
//! place, so each renewal is a new one and the user switches or automation
//! follows the newest (a `rollouts:` entry switches them). The newest
//! `keep` stay; with `delete_old`, older ones are deleted, except those a
//! rollout's consumer still references, and those IAM refuses to delete
//! because they are still in use (reported, retried next run).

use super::{CertCopy, Copies, Item, Outcome, PublishError, Target, same_pem};
use crate::aws::message as aws_message;
use crate::settings::IamSettings;
use crate::store::{CERT, CHAIN, PRIVKEY};
use async_trait::async_trait;
use aws_sdk_iam::Client;
use std::collections::BTreeSet;

pub struct Iam {
    name: String,
    client: Client,
    settings: IamSettings,
    /// Certificates with a rollout from this target: their old copies are
    /// pruned after the rollout, not while publishing.
    rolled_out: BTreeSet<String>,
}

/// One certificate under the path.
struct Existing {
    name: String,
    uploaded: i64,
    arn: String,
    id: String,
}

impl Existing {
    fn copy(&self) -> CertCopy {
        CertCopy {
            arn: self.arn.clone(),
            iam_id: Some(self.id.clone()),
            region: None,
        }
    }
}

impl Iam {
    pub fn new(
        name: &str,
        client: Client,
        settings: IamSettings,
        rolled_out: BTreeSet<String>,
    ) -> Self {
        Self {
            name: name.to_string(),
            client,
            settings,
            rolled_out,
        }
    }

    fn error(&self, object: &str, message: impl std::fmt::Display) -> PublishError {
        PublishError {
            target: self.name.clone(),
            object: format!("iam:server-certificate/{object}"),
            message: message.to_string(),
        }
    }

    async fn list(&self, path: &str) -> Result<Vec<Existing>, PublishError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_server_certificates()
            .path_prefix(path)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error(path, aws_message(&e)))?;
            for m in page.server_certificate_metadata_list() {
                // A prefix also matches deeper paths; keep exactly ours.
                if m.path() == path {
                    out.push(Existing {
                        name: m.server_certificate_name().to_string(),
                        uploaded: m.upload_date().map(|d| d.secs()).unwrap_or(0),
                        arn: m.arn().to_string(),
                        id: m.server_certificate_id().to_string(),
                    });
                }
            }
        }
        // The newest first.
        out.sort_by(|a, b| b.uploaded.cmp(&a.uploaded).then(b.name.cmp(&a.name)));
        Ok(out)
    }

    /// The certificates under `item`'s path, and the index of the one
    /// holding its set.
    async fn find(&self, item: &Item<'_>) -> Result<(Vec<Existing>, Option<usize>), PublishError> {
        let path = item
            .render(&self.settings.path, &[])
            .map_err(|m| self.error(&self.settings.path, m))?;
        let cert = item.file(CERT).unwrap_or_default();
        let existing = self.list(&path).await?;
        for (i, e) in existing.iter().enumerate() {
            if same_pem(&self.body(&e.name).await?, cert) {
                return Ok((existing, Some(i)));
            }
        }
        Ok((existing, None))
    }

    /// Deletes the copies beyond `keep` (the newest first, `current`
    /// aside), except those in `in_use`; IAM's DeleteConflict is the last
    /// guard.
    async fn delete_old(
        &self,
        item: &Item<'_>,
        existing: &[Existing],
        current: &str,
        in_use: &BTreeSet<String>,
    ) -> Result<(), PublishError> {
        let old = existing
            .iter()
            .filter(|e| e.name != current)
            .skip(self.settings.keep.saturating_sub(1));
        for e in old {
            if in_use.contains(&e.arn) || in_use.contains(&e.id) {
                tracing::info!(event = "publish.iam.kept_in_use", target = %self.name, cert = %item.meta.name, iam_name = %e.name, reason = "a rollout consumer references it");
                continue;
            }
            match self
                .client
                .delete_server_certificate()
                .server_certificate_name(&e.name)
                .send()
                .await
            {
                Ok(_) => {
                    tracing::info!(event = "publish.iam.deleted", target = %self.name, cert = %item.meta.name, iam_name = %e.name);
                }
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|s| s.is_delete_conflict_exception()) =>
                {
                    tracing::warn!(event = "publish.iam.in_use", target = %self.name, cert = %item.meta.name, iam_name = %e.name, error = %aws_message(&err));
                }
                Err(err) => return Err(self.error(&e.name, aws_message(&err))),
            }
        }
        Ok(())
    }

    async fn body(&self, name: &str) -> Result<String, PublishError> {
        let out = self
            .client
            .get_server_certificate()
            .server_certificate_name(name)
            .send()
            .await
            .map_err(|e| self.error(name, aws_message(&e)))?;
        Ok(out
            .server_certificate()
            .map(|c| c.certificate_body().to_string())
            .unwrap_or_default())
    }
}

#[async_trait]
impl Target for Iam {
    fn name(&self) -> &str {
        &self.name
    }

    async fn publish(&self, item: &Item<'_>) -> Result<Outcome, PublishError> {
        let path = item
            .render(&self.settings.path, &[])
            .map_err(|m| self.error(&self.settings.path, m))?;
        let cert = item.file(CERT).unwrap_or_default();
        // Already there under any name (renamed template, or a second run
        // on another day)?
        let (mut existing, found) = self.find(item).await?;
        let mut outcome = Outcome::default();
        let current = match found {
            Some(i) => {
                outcome.unchanged += 1;
                existing[i].name.clone()
            }
            None => {
                let mut name = item
                    .render(&self.settings.name_template, &[])
                    .map_err(|m| self.error(&self.settings.name_template, m))?;
                if existing.iter().any(|e| e.name == name) {
                    // Renewed twice on one day: the serial keeps names unique.
                    name = format!(
                        "{name}_{}",
                        &item.meta.serial[..item.meta.serial.len().min(8)]
                    );
                }
                let out = self
                    .client
                    .upload_server_certificate()
                    .path(&path)
                    .server_certificate_name(&name)
                    .certificate_body(String::from_utf8_lossy(cert))
                    .private_key(String::from_utf8_lossy(
                        item.file(PRIVKEY).unwrap_or_default(),
                    ))
                    .certificate_chain(String::from_utf8_lossy(
                        item.file(CHAIN).unwrap_or_default(),
                    ))
                    .send()
                    .await
                    .map_err(|e| self.error(&name, aws_message(&e)))?;
                tracing::info!(event = "publish.iam.uploaded", target = %self.name, cert = %item.meta.name, path = %path, iam_name = %name);
                outcome.uploaded += 1;
                let meta = out.server_certificate_metadata();
                existing.insert(
                    0,
                    Existing {
                        name: name.clone(),
                        uploaded: i64::MAX,
                        arn: meta.map(|m| m.arn().to_string()).unwrap_or_default(),
                        id: meta
                            .map(|m| m.server_certificate_id().to_string())
                            .unwrap_or_default(),
                    },
                );
                name
            }
        };
        // With a rollout, consumers still reference the old copies now:
        // they are pruned once the rollout has moved them.
        if self.settings.delete_old && !self.rolled_out.contains(&item.meta.name) {
            self.delete_old(item, &existing, &current, &BTreeSet::new())
                .await?;
        }
        Ok(outcome)
    }

    async fn copies(&self, item: &Item<'_>) -> Result<Option<Copies>, PublishError> {
        let (existing, found) = self.find(item).await?;
        let mut copies = Copies::default();
        for (i, e) in existing.iter().enumerate() {
            if Some(i) == found {
                copies.current.push(e.copy());
            } else {
                copies.previous.push(e.copy());
            }
        }
        Ok(Some(copies))
    }

    async fn prune(&self, item: &Item<'_>, in_use: &BTreeSet<String>) -> Result<(), PublishError> {
        if !self.settings.delete_old {
            return Ok(());
        }
        let (existing, found) = self.find(item).await?;
        // The live set not there (yet): nothing is known to be old.
        let Some(current) = found else {
            return Ok(());
        };
        let current = existing[current].name.clone();
        self.delete_old(item, &existing, &current, in_use).await
    }
}
