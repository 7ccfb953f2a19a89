//! SSM parameters under a path whose values are PEM certificates (keys
//! and other values beside them are skipped).

use super::read::{name_for, watched};
use super::{Context, Found, Problem, Source, SourceError};
use crate::settings::{Settings, WatchSsm};

pub(super) struct Ssm<'a>(pub &'a WatchSsm);

#[async_trait::async_trait]
impl Source for Ssm<'_> {
    async fn scan(&self, settings: &Settings, _: &Context<'_>) -> Result<Found, SourceError> {
        let s = self.0;
        let base = crate::aws::base(&settings.aws, None).await;
        let sdk = crate::aws::identity(&settings.aws, &s.aws, &base, "certkeeper-watch").await;
        let client = aws_sdk_ssm::Client::new(&sdk);
        let mut pages = client
            .get_parameters_by_path()
            .path(&s.path)
            .recursive(true)
            .with_decryption(true)
            .into_paginator()
            .send();
        let mut found = Found::default();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                SourceError::at(
                    &format!("ssm:{}", s.path),
                    Problem::Aws(crate::aws::message(&e)),
                )
            })?;
            for p in page.parameters() {
                let (Some(pname), Some(value)) = (p.name(), p.value()) else {
                    continue;
                };
                if !value.contains("-----BEGIN CERTIFICATE-----") {
                    continue;
                }
                let stem = pname.rsplit('/').next().unwrap_or(pname);
                let shown = format!("ssm:{pname}");
                let name = name_for(&s.name, &format!("{stem}.pem"));
                match watched(name, shown, &s.labels, value.as_bytes()) {
                    Ok(w) => found.certs.push(w),
                    Err(e) => found.errors.push(e),
                }
            }
        }
        Ok(found)
    }
}
