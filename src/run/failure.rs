//! Why a certificate was not renewed, published or verified. Its text is
//! the status line's `last_error`; the step that failed is recorded beside
//! it (`report::FailedStage`), so nothing reads the text to decide.

#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Its stored state is unreadable (the plan says how to get past it).
    #[error("{0}")]
    Broken(String),
    /// From a CA without ACME, due: what a person must do.
    #[error("{0}")]
    ExternalDue(String),
    #[error("not started: shutting down")]
    ShuttingDown,
    #[error("backing off after {count} failures until {until}: {last_error}")]
    BackingOff {
        count: u32,
        until: String,
        last_error: String,
    },
    #[error("{issuer}: {source}")]
    Unloaded {
        issuer: String,
        #[source]
        source: std::sync::Arc<super::issuers::LoadError>,
    },
    #[error("{0}: not loaded")]
    NotLoaded(String),
    #[error(transparent)]
    Acme(#[from] crate::acme::AcmeError),
    #[error("CA returned {0}")]
    Issued(#[source] crate::x509::X509Error),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// One issuer of several failed.
    #[error("{issuer}: {source}")]
    Via {
        issuer: String,
        #[source]
        source: Box<Failure>,
    },
    /// Every issuer failed, in order.
    #[error("{}", .0.iter().map(|f| f.to_string()).collect::<Vec<_>>().join("; "))]
    Every(Vec<Failure>),
    #[error("not published: another replica took over this certificate's lease")]
    LeaseLost,
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
    #[error(transparent)]
    Format(#[from] crate::formats::FormatError),
    #[error("not published: the derived files failed")]
    NoDerivedFiles,
    #[error(transparent)]
    Publish(#[from] crate::publish::PublishError),
    #[error("verification: {0}")]
    Verify(#[from] crate::verify::VerifyError),
    #[error(transparent)]
    Rollout(#[from] super::rollout::RolloutFailure),
}
