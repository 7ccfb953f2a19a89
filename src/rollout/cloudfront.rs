//! A CloudFront distribution as a consumer: its viewer certificate is an
//! IAM certificate (by ServerCertificateId) or an ACM one (by ARN, in
//! us-east-1).
//!
//! Every change is a read-modify-write under the distribution's ETag
//! (If-Match): when someone else edited the distribution in between,
//! CloudFront answers PreconditionFailed, and the configuration is read
//! again and only the certificate is changed on it — their edit is never
//! overwritten. After an update the distribution deploys for minutes; the
//! switch waits until it says `Deployed`.

use super::{Consumer, ConsumerError};
use crate::aws::message as aws_message;
use crate::publish::CertCopy;
use async_trait::async_trait;
use aws_sdk_cloudfront::Client;
use aws_sdk_cloudfront::types::{DistributionConfig, ViewerCertificate};
use std::time::Duration;

/// Conflicting edits tolerated in a row before giving up.
const CONFLICT_ATTEMPTS: u32 = 5;
/// How often the deployment status is read.
const DEPLOY_POLL: Duration = Duration::from_secs(5);

/// The region CloudFront takes ACM certificates from.
pub const ACM_REGION: &str = "us-east-1";

pub struct Distribution {
    pub id: String,
    pub client: Client,
    pub deploy_timeout: Duration,
}

/// What a viewer certificate references: an IAM id, an ACM ARN, or
/// nothing (CloudFront's own `*.cloudfront.net` certificate).
pub fn referenced(vc: Option<&ViewerCertificate>) -> Vec<String> {
    let Some(vc) = vc else {
        return Vec::new();
    };
    [vc.iam_certificate_id(), vc.acm_certificate_arn()]
        .into_iter()
        .flatten()
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .collect()
}

/// `vc` referencing `reference` (an ACM ARN or an IAM id; none for
/// CloudFront's default certificate), the TLS settings kept. A
/// distribution on CloudFront's own certificate has none, and CloudFront
/// requires them with a certificate of ours: SNI and TLS 1.2, its
/// recommended ones.
fn pointing_at(vc: Option<&ViewerCertificate>, reference: Option<&str>) -> ViewerCertificate {
    use aws_sdk_cloudfront::types::{MinimumProtocolVersion, SslSupportMethod};
    let mut method = vc.and_then(|v| v.ssl_support_method().cloned());
    let mut minimum = vc.and_then(|v| v.minimum_protocol_version().cloned());
    if reference.is_some() {
        method.get_or_insert(SslSupportMethod::SniOnly);
        minimum.get_or_insert(MinimumProtocolVersion::TlSv122021);
    }
    let mut b = ViewerCertificate::builder()
        .set_ssl_support_method(method)
        .set_minimum_protocol_version(minimum);
    b = match reference {
        Some(r) if r.starts_with("arn:") => b
            .acm_certificate_arn(r)
            .cloud_front_default_certificate(false),
        Some(r) => b
            .iam_certificate_id(r)
            .cloud_front_default_certificate(false),
        None => b.cloud_front_default_certificate(true),
    };
    b.build()
}

impl Distribution {
    async fn config(&self) -> Result<(DistributionConfig, String), ConsumerError> {
        let out = self
            .client
            .get_distribution_config()
            .id(&self.id)
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error()
                    .is_some_and(|s| s.is_no_such_distribution())
                {
                    ConsumerError::NotFound("no such distribution".into())
                } else {
                    ConsumerError::Api(aws_message(&e))
                }
            })?;
        let etag = out.e_tag().unwrap_or_default().to_string();
        let config = out.distribution_config.ok_or_else(|| {
            ConsumerError::Api("GetDistributionConfig returned no configuration".into())
        })?;
        Ok((config, etag))
    }

    /// Points the viewer certificate at `reference`, re-reading on a
    /// conflicting edit, then waits for the deployment.
    async fn point(&self, reference: Option<&str>) -> Result<(), ConsumerError> {
        let mut conflicts = 0;
        loop {
            let (mut config, etag) = self.config().await?;
            config.viewer_certificate =
                Some(pointing_at(config.viewer_certificate.as_ref(), reference));
            let sent = self
                .client
                .update_distribution()
                .id(&self.id)
                .if_match(&etag)
                .distribution_config(config)
                .send()
                .await;
            match sent {
                Ok(_) => break,
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_precondition_failed())
                        && conflicts + 1 < CONFLICT_ATTEMPTS =>
                {
                    conflicts += 1;
                    tracing::warn!(event = "rollout.cloudfront.conflict", distribution = %self.id, attempt = conflicts, detail = "edited by someone else since it was read: reading it again");
                }
                Err(e) => return Err(ConsumerError::Api(aws_message(&e))),
            }
        }
        self.wait_deployed().await
    }

    async fn wait_deployed(&self) -> Result<(), ConsumerError> {
        let deadline = tokio::time::Instant::now() + self.deploy_timeout;
        loop {
            let out = self
                .client
                .get_distribution()
                .id(&self.id)
                .send()
                .await
                .map_err(|e| ConsumerError::Api(aws_message(&e)))?;
            let status = out.distribution().map(|d| d.status()).unwrap_or_default();
            if status == "Deployed" {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ConsumerError::Api(format!(
                    "still {status} after {}s (deploy_timeout)",
                    self.deploy_timeout.as_secs()
                )));
            }
            tokio::time::sleep(DEPLOY_POLL.min(self.deploy_timeout)).await;
        }
    }
}

#[async_trait]
impl Consumer for Distribution {
    fn label(&self) -> String {
        format!("cloudfront {}", self.id)
    }

    fn wants<'a>(&self, copies: &'a [CertCopy]) -> Option<&'a CertCopy> {
        copies
            .iter()
            .find(|c| c.iam_id.is_some() || c.region.as_deref() == Some(ACM_REGION))
    }

    async fn read(&self) -> Result<Vec<String>, ConsumerError> {
        let (config, _) = self.config().await?;
        Ok(referenced(config.viewer_certificate.as_ref()))
    }

    async fn switch(&self, to: &CertCopy, _replace: &[String]) -> Result<(), ConsumerError> {
        let reference = to.iam_id.as_deref().unwrap_or(&to.arn);
        self.point(Some(reference)).await
    }

    async fn restore(&self, before: &[String], _to: &CertCopy) -> Result<(), ConsumerError> {
        self.point(before.first().map(String::as_str)).await
    }
}

/// Every distribution, with what its viewer certificate references.
pub async fn list(client: &Client) -> Result<Vec<(String, Vec<String>)>, ConsumerError> {
    let mut out = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = client
            .list_distributions()
            .set_marker(marker.clone())
            .send()
            .await
            .map_err(|e| ConsumerError::Api(aws_message(&e)))?;
        let Some(list) = page.distribution_list() else {
            break;
        };
        for d in list.items() {
            out.push((d.id().to_string(), referenced(d.viewer_certificate())));
        }
        match list.next_marker() {
            Some(m) if list.is_truncated() && !m.is_empty() => marker = Some(m.to_string()),
            _ => break,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cloudfront::types::{MinimumProtocolVersion, SslSupportMethod};

    #[test]
    fn a_distribution_on_cloudfronts_own_certificate_gets_sni_and_tls_1_2() {
        let own = ViewerCertificate::builder()
            .cloud_front_default_certificate(true)
            .build();
        let ours = pointing_at(Some(&own), Some("ASCAEXAMPLE"));
        assert_eq!(ours.iam_certificate_id(), Some("ASCAEXAMPLE"));
        assert_eq!(ours.cloud_front_default_certificate(), Some(false));
        assert_eq!(ours.ssl_support_method(), Some(&SslSupportMethod::SniOnly));
        assert_eq!(
            ours.minimum_protocol_version(),
            Some(&MinimumProtocolVersion::TlSv122021)
        );
        assert_eq!(referenced(Some(&ours)), ["ASCAEXAMPLE"]);
        // Switched back: CloudFront's own certificate again.
        let back = pointing_at(Some(&ours), None);
        assert_eq!(back.cloud_front_default_certificate(), Some(true));
        assert!(referenced(Some(&back)).is_empty());
    }

    #[test]
    fn the_tls_settings_in_place_are_kept_and_acm_is_referenced_by_arn() {
        let vip = ViewerCertificate::builder()
            .iam_certificate_id("ASCAOLD")
            .ssl_support_method(SslSupportMethod::Vip)
            .minimum_protocol_version(MinimumProtocolVersion::TlSv122019)
            .build();
        let arn = "arn:aws:acm:us-east-1:123456789012:certificate/abc";
        let ours = pointing_at(Some(&vip), Some(arn));
        assert_eq!(ours.acm_certificate_arn(), Some(arn));
        assert_eq!(ours.iam_certificate_id(), None);
        assert_eq!(ours.ssl_support_method(), Some(&SslSupportMethod::Vip));
        assert_eq!(
            ours.minimum_protocol_version(),
            Some(&MinimumProtocolVersion::TlSv122019)
        );
    }
}
