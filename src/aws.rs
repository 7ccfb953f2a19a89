//! AWS clients as every part of certkeeper builds them: the settings'
//! region and endpoint override, request timeouts, and per-target
//! identities (a profile, a region, an assumed role).

use serde::Deserialize;
use std::time::Duration;

/// `aws:` in the settings: what every AWS client shares.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSettings {
    pub region: Option<String>,
    /// Endpoint override for every AWS service (moto, LocalStack, VPC endpoints).
    pub endpoint_url: Option<String>,
    /// How long one AWS request may take before it is abandoned and retried
    /// (the SDK's attempt timeout). Without it a request that is accepted
    /// but never answered would stall the run, and with it the lease
    /// keep-alive, forever.
    #[serde(
        default = "default_request_timeout",
        with = "crate::duration::serde_human"
    )]
    pub request_timeout: Duration,
}

impl Default for AwsSettings {
    fn default() -> Self {
        Self {
            region: None,
            endpoint_url: None,
            request_timeout: default_request_timeout(),
        }
    }
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}

/// Which AWS credentials and region a target uses; empty: the defaults
/// (`aws:` in the settings and the usual credential chain).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AwsIdentity {
    /// AWS profile (from ~/.aws/config).
    pub profile: Option<String>,
    /// Assume this role (e.g. in the account the target lives in).
    pub role_arn: Option<String>,
    /// External id required by the role's trust policy.
    pub external_id: Option<String>,
    pub region: Option<String>,
}

/// The SDK config of the default identity (or of `profile`): the settings'
/// region and endpoint override, and request timeouts so no AWS call can
/// hang a run.
pub async fn base(settings: &AwsSettings, profile: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = &settings.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(endpoint) = &settings.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(profile) = profile {
        loader = loader.profile_name(profile);
    }
    // Per attempt, and for the whole call with the SDK's retries (3
    // attempts and their back-off), so no AWS call can hang a run.
    let attempt = settings.request_timeout;
    // A `proxy:` setting (the environment's HTTPS_PROXY and NO_PROXY the
    // SDK reads by itself).
    if let Some(client) = crate::proxy::current().aws_http_client() {
        loader = loader.http_client(client);
    }
    loader = loader.timeout_config(
        aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(attempt.min(std::time::Duration::from_secs(10)))
            .operation_attempt_timeout(attempt)
            .operation_timeout(attempt * 4)
            .build(),
    );
    loader.load().await
}

/// The SDK config for one identity: its profile, region and assumed role
/// on top of the defaults.
pub async fn identity(
    settings: &AwsSettings,
    identity: &AwsIdentity,
    base: &aws_config::SdkConfig,
    session: &str,
) -> aws_config::SdkConfig {
    let mut sdk = match &identity.profile {
        Some(profile) => self::base(settings, Some(profile)).await,
        None => base.clone(),
    };
    if let Some(region) = &identity.region {
        sdk = sdk
            .into_builder()
            .region(aws_config::Region::new(region.clone()))
            .build();
    }
    let Some(role) = &identity.role_arn else {
        return sdk;
    };
    let mut assume = aws_config::sts::AssumeRoleProvider::builder(role).session_name(session);
    if let Some(id) = &identity.external_id {
        assume = assume.external_id(id);
    }
    let provider = assume.configure(&sdk).build().await;
    sdk.into_builder()
        .credentials_provider(aws_sdk_route53::config::SharedCredentialsProvider::new(
            provider,
        ))
        .build()
}

/// An S3 client for `sdk`. Path-style addressing when an endpoint override
/// is set: it works with every endpoint (an IP address has no virtual-host
/// buckets).
pub fn s3_client(settings: &AwsSettings, sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(settings.endpoint_url.is_some())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Turns an AWS SDK error into the code and message AWS sent, or the whole
/// error chain when there is none (connection errors).
pub fn message<E>(e: &E) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    match (e.code(), e.message()) {
        (Some(code), Some(msg)) => format!("{code}: {msg}"),
        (Some(code), None) => code.to_string(),
        _ => aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
    }
}
