//! Where watched certificates come from: one `Source` per kind, each in
//! its file (`files`, `s3`, `ssm`, `endpoint`), built by `build` from the
//! settings; `read.rs` turns bytes into a certificate for all of them.
//! A new kind is its file, its settings struct and one arm in `build`.

mod endpoint;
mod files;
mod read;
mod s3;
mod ssm;

pub use read::parse;

use super::Watched;
use crate::settings::{Settings, WatchSource};

/// What a scan needs besides the settings.
pub struct Context<'a> {
    pub secrets: &'a crate::secrets::Secrets,
    /// For the S3 ETag cache; none: everything is downloaded.
    pub store: Option<&'a crate::store::Store>,
}

/// What one source holds: the certificates read, and the items that could
/// not be (one unreadable file does not hide the others).
#[derive(Default)]
pub struct Found {
    pub certs: Vec<Watched>,
    pub errors: Vec<SourceError>,
}

/// Why an item, or a whole source, could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The service's code and message.
    #[error("{0}")]
    Aws(String),
    #[error("{0}")]
    Certificate(#[from] crate::x509::X509Error),
    #[error("a .pfx/.p12 needs pkcs12_password in the source")]
    NoPassword,
    #[error("PKCS#12 (wrong password or damaged file?): {0}")]
    Pkcs12(String),
    #[error("PKCS#12 holds no certificate")]
    EmptyPkcs12,
    #[error("{0}")]
    Endpoint(#[from] crate::verify::ServedError),
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source's password could not be read.
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
    /// `place` is a path, `s3://bucket/key`, `ssm:/name` or `host:port`.
    #[error("{place}: {problem}")]
    Read {
        place: String,
        #[source]
        problem: Problem,
    },
}

impl SourceError {
    fn at(place: &str, problem: impl Into<Problem>) -> SourceError {
        SourceError::Read {
            place: place.to_string(),
            problem: problem.into(),
        }
    }
}

#[async_trait::async_trait]
pub trait Source: Send + Sync {
    /// The certificates this source holds now. `Err` when the source
    /// itself cannot be read (a missing folder, a denied listing).
    async fn scan(&self, settings: &Settings, ctx: &Context<'_>) -> Result<Found, SourceError>;
}

/// The registry: the source a `watch.sources` entry describes.
pub fn build(source: &WatchSource) -> Box<dyn Source + '_> {
    match source {
        WatchSource::Files(s) => Box::new(files::Files(s)),
        WatchSource::S3(s) => Box::new(s3::S3(s)),
        WatchSource::Ssm(s) => Box::new(ssm::Ssm(s)),
        WatchSource::Endpoint(s) => Box::new(endpoint::Endpoint(s)),
    }
}

/// The password a source names, read when it has one.
async fn password(
    ctx: &Context<'_>,
    secret: &Option<String>,
) -> Result<Option<crate::secret::Secret>, SourceError> {
    match secret {
        Some(s) => Ok(Some(ctx.secrets.get(s).await?)),
        None => Ok(None),
    }
}
