//! What a live TLS endpoint serves.

use super::read::watched;
use super::{Context, Found, Source, SourceError};
use crate::settings::{Settings, WatchEndpoint};

pub(super) struct Endpoint<'a>(pub &'a WatchEndpoint);

#[async_trait::async_trait]
impl Source for Endpoint<'_> {
    async fn scan(&self, _: &Settings, _: &Context<'_>) -> Result<Found, SourceError> {
        let s = self.0;
        let endpoint = match &s.sni {
            Some(sni) => crate::config::Endpoint::WithSni {
                address: s.address.clone(),
                sni: sni.clone(),
            },
            None => crate::config::Endpoint::Address(s.address.clone()),
        };
        let der = crate::verify::served_leaf(&endpoint)
            .await
            .map_err(|e| SourceError::at(&s.address, e))?;
        let cert = watched(s.name.clone(), s.address.clone(), &s.labels, &der)?;
        Ok(Found {
            certs: vec![cert],
            errors: Vec::new(),
        })
    }
}
