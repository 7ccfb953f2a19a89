//! A file, or every certificate file under a folder.

use super::read::{collect, decode, name_for, watched};
use super::{Context, Found, Problem, Source, SourceError};
use crate::settings::{Settings, WatchFiles};

pub(super) struct Files<'a>(pub &'a WatchFiles);

#[async_trait::async_trait]
impl Source for Files<'_> {
    async fn scan(&self, _: &Settings, ctx: &Context<'_>) -> Result<Found, SourceError> {
        let s = self.0;
        let password = super::password(ctx, &s.pkcs12_password).await?;
        let mut files = Vec::new();
        collect(&s.path, &mut files)
            .map_err(|e| SourceError::at(&s.path.display().to_string(), e))?;
        let mut found = Found::default();
        for file in files {
            let shown = file.display().to_string();
            let bytes = std::fs::read(&file)
                .map_err(Problem::from)
                .and_then(|b| decode(&shown, b, password.as_ref()));
            let item = match bytes {
                Ok(b) => watched(name_for(&s.name, &shown), shown, &s.labels, &b),
                Err(e) => Err(SourceError::at(&shown, e)),
            };
            match item {
                Ok(w) => found.certs.push(w),
                Err(e) => found.errors.push(e),
            }
        }
        Ok(found)
    }
}
