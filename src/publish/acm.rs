//! ACM: imports the certificate, and on renewal re-imports it to the same
//! ARN, so load balancers and CloudFront that use the ARN pick up the new
//! certificate without being touched. One ARN per region (CloudFront needs
//! us-east-1), kept in the state dir; a lost state file is recovered from
//! the `certkeeper:name` tag instead of importing a duplicate.

use super::{CertCopy, Copies, Item, Outcome, PublishError, Target, same_pem};
use crate::aws::message as aws_message;
use crate::store::{CERT, CHAIN, PRIVKEY};
use async_trait::async_trait;
use aws_sdk_acm::Client;
use aws_sdk_acm::primitives::Blob;
use aws_sdk_acm::types::Tag;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const NAME_TAG: &str = "certkeeper:name";

pub struct Acm {
    name: String,
    /// One client per region.
    clients: Vec<(String, Client)>,
}

/// region -> certificate ARN.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Arns {
    arns: BTreeMap<String, String>,
}

impl Acm {
    pub fn new(name: &str, clients: Vec<(String, Client)>) -> Self {
        Self {
            name: name.to_string(),
            clients,
        }
    }

    fn error(&self, object: &str, message: impl std::fmt::Display) -> PublishError {
        PublishError {
            target: self.name.clone(),
            object: object.to_string(),
            message: message.to_string(),
        }
    }

    fn state_path(&self, cert: &str) -> String {
        format!("targets/{}/{cert}.json", self.name)
    }

    /// The PEM ACM holds at `arn`; `None` when the ARN no longer exists.
    async fn stored_pem(&self, client: &Client, arn: &str) -> Result<Option<String>, PublishError> {
        match client.get_certificate().certificate_arn(arn).send().await {
            Ok(out) => Ok(out.certificate().map(str::to_string)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.error(arn, aws_message(&e))),
        }
    }

    /// An ARN tagged with this certificate's name, for a lost state file.
    async fn find_tagged(
        &self,
        client: &Client,
        cert: &str,
        region: &str,
    ) -> Result<Option<String>, PublishError> {
        let mut pages = client.list_certificates().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error(region, aws_message(&e)))?;
            for summary in page.certificate_summary_list() {
                let Some(arn) = summary.certificate_arn() else {
                    continue;
                };
                let tags = client
                    .list_tags_for_certificate()
                    .certificate_arn(arn)
                    .send()
                    .await
                    .map_err(|e| self.error(arn, aws_message(&e)))?;
                if tags
                    .tags()
                    .iter()
                    .any(|t| t.key() == NAME_TAG && t.value() == Some(cert))
                {
                    return Ok(Some(arn.to_string()));
                }
            }
        }
        Ok(None)
    }
}

#[async_trait]
impl Target for Acm {
    fn name(&self) -> &str {
        &self.name
    }

    async fn publish(&self, item: &Item<'_>) -> Result<Outcome, PublishError> {
        let cert_name = &item.meta.name;
        let state_path = self.state_path(cert_name);
        let mut state: Arns = item
            .store
            .read_state(&state_path)
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let cert = item.file(CERT).unwrap_or_default();
        let mut outcome = Outcome::default();
        for (region, client) in &self.clients {
            let mut arn = state.arns.get(region).cloned();
            if arn.is_none() {
                arn = self.find_tagged(client, cert_name, region).await?;
            }
            if let Some(a) = &arn {
                match self.stored_pem(client, a).await? {
                    Some(pem) if same_pem(&pem, cert) => {
                        state.arns.insert(region.clone(), a.clone());
                        outcome.unchanged += 1;
                        continue;
                    }
                    Some(_) => {}
                    // Deleted by someone: import afresh.
                    None => arn = None,
                }
            }
            let mut import = client
                .import_certificate()
                .certificate(Blob::new(cert.to_vec()))
                .private_key(Blob::new(item.file(PRIVKEY).unwrap_or_default().to_vec()))
                .certificate_chain(Blob::new(item.file(CHAIN).unwrap_or_default().to_vec()))
                .set_certificate_arn(arn.clone());
            if arn.is_none() {
                // Tags can only be given on the first import.
                import = import.tags(
                    Tag::builder()
                        .key(NAME_TAG)
                        .value(cert_name)
                        .build()
                        .expect("tag has a key"),
                );
            }
            let out = import
                .send()
                .await
                .map_err(|e| self.error(arn.as_deref().unwrap_or(region), aws_message(&e)))?;
            let new_arn = out
                .certificate_arn()
                .or(arn.as_deref())
                .ok_or_else(|| self.error(region, "ACM returned no certificate ARN"))?
                .to_string();
            tracing::info!(event = "publish.acm.imported", target = %self.name, cert = %cert_name, region = %region, arn = %new_arn, reimport = arn.is_some());
            state.arns.insert(region.clone(), new_arn);
            outcome.uploaded += 1;
            // Saved after every region, so a failure in the next one does
            // not lose this ARN.
            let json = serde_json::to_vec_pretty(&state).expect("state serializes");
            item.store
                .write_state(&state_path, &json)
                .map_err(|e| self.error(&state_path, e.to_string()))?;
        }
        let json = serde_json::to_vec_pretty(&state).expect("state serializes");
        item.store
            .write_state(&state_path, &json)
            .map_err(|e| self.error(&state_path, e.to_string()))?;
        Ok(outcome)
    }

    /// The ARN of each region: re-imports keep it, so there is no earlier
    /// copy to move consumers off.
    async fn copies(&self, item: &Item<'_>) -> Result<Option<Copies>, PublishError> {
        let current = self
            .clients
            .iter()
            .filter_map(|(region, _)| {
                recorded_arn(item.store, &self.name, &item.meta.name, region).map(|arn| CertCopy {
                    arn,
                    iam_id: None,
                    region: Some(region.clone()),
                })
            })
            .collect();
        Ok(Some(Copies {
            current,
            previous: Vec::new(),
        }))
    }
}

/// The ARN of `cert` in `region`, as recorded by target `target`.
pub fn recorded_arn(
    store: &crate::store::Store,
    target: &str,
    cert: &str,
    region: &str,
) -> Option<String> {
    let bytes = store
        .read_state(&format!("targets/{target}/{cert}.json"))
        .ok()
        .flatten()?;
    let state: Arns = serde_json::from_slice(&bytes).ok()?;
    state.arns.get(region).cloned()
}
