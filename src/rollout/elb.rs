//! Load balancer listeners as consumers: a classic ELB's HTTPS listener
//! (by load balancer name and port) and an ALB/NLB listener (by ARN), as
//! its default certificate or as an additional (SNI) one. Both reference a
//! certificate by ARN, IAM's or ACM's in the load balancer's region.

use super::{Consumer, ConsumerError};
use crate::aws::message as aws_message;
use crate::publish::CertCopy;
use crate::settings::ListenerRole;
use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::types::Certificate;

/// The copy a load balancer in `region` can use: the IAM one, or ACM's in
/// that region.
fn in_region<'a>(copies: &'a [CertCopy], region: &str) -> Option<&'a CertCopy> {
    copies
        .iter()
        .find(|c| c.region.is_none() || c.region.as_deref() == Some(region))
}

pub struct Classic {
    pub name: String,
    pub port: u16,
    pub region: String,
    pub client: aws_sdk_elasticloadbalancing::Client,
}

#[async_trait]
impl Consumer for Classic {
    fn label(&self) -> String {
        format!("elb {}:{}", self.name, self.port)
    }

    fn wants<'a>(&self, copies: &'a [CertCopy]) -> Option<&'a CertCopy> {
        in_region(copies, &self.region)
    }

    async fn read(&self) -> Result<Vec<String>, ConsumerError> {
        let out = self
            .client
            .describe_load_balancers()
            .load_balancer_names(&self.name)
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error()
                    .is_some_and(|s| s.is_access_point_not_found_exception())
                {
                    ConsumerError::NotFound(format!(
                        "no load balancer {:?} in {}",
                        self.name, self.region
                    ))
                } else {
                    ConsumerError::Api(aws_message(&e))
                }
            })?;
        let listeners: Vec<_> = out
            .load_balancer_descriptions()
            .iter()
            .flat_map(|d| d.listener_descriptions())
            .filter_map(|l| l.listener())
            .collect();
        let Some(listener) = listeners
            .iter()
            .find(|l| l.load_balancer_port() == i32::from(self.port))
        else {
            let ports: Vec<String> = listeners
                .iter()
                .map(|l| l.load_balancer_port().to_string())
                .collect();
            return Err(ConsumerError::NotFound(format!(
                "load balancer {:?} has no listener on port {} (its ports: {})",
                self.name,
                self.port,
                ports.join(", ")
            )));
        };
        match listener.ssl_certificate_id() {
            Some(arn) if !arn.is_empty() => Ok(vec![arn.to_string()]),
            _ => Err(ConsumerError::NotFound(format!(
                "the listener on port {} of {:?} is {}, it has no certificate",
                self.port,
                self.name,
                listener.protocol()
            ))),
        }
    }

    async fn switch(&self, to: &CertCopy, _replace: &[String]) -> Result<(), ConsumerError> {
        self.set(&to.arn).await
    }

    async fn restore(&self, before: &[String], _to: &CertCopy) -> Result<(), ConsumerError> {
        match before.first() {
            Some(arn) => self.set(arn).await,
            None => Ok(()),
        }
    }
}

impl Classic {
    async fn set(&self, arn: &str) -> Result<(), ConsumerError> {
        self.client
            .set_load_balancer_listener_ssl_certificate()
            .load_balancer_name(&self.name)
            .load_balancer_port(i32::from(self.port))
            .ssl_certificate_id(arn)
            .send()
            .await
            .map_err(|e| ConsumerError::Api(aws_message(&e)))?;
        Ok(())
    }
}

pub struct Listener {
    pub arn: String,
    pub role: ListenerRole,
    pub client: aws_sdk_elasticloadbalancingv2::Client,
}

impl Listener {
    /// The listener's region, from its ARN.
    pub fn region(arn: &str) -> &str {
        arn.split(':').nth(3).unwrap_or_default()
    }

    /// Every certificate of the listener: (ARN, is the default).
    async fn certificates(&self) -> Result<Vec<(String, bool)>, ConsumerError> {
        let not_found =
            |e: &dyn std::fmt::Display| ConsumerError::NotFound(format!("no such listener ({e})"));
        let mut out = Vec::new();
        let mut marker = None;
        loop {
            let page = self
                .client
                .describe_listener_certificates()
                .listener_arn(&self.arn)
                .set_marker(marker)
                .send()
                .await
                .map_err(|e| {
                    if e.as_service_error()
                        .is_some_and(|s| s.is_listener_not_found_exception())
                    {
                        not_found(&aws_message(&e))
                    } else {
                        ConsumerError::Api(aws_message(&e))
                    }
                })?;
            for c in page.certificates() {
                if let Some(arn) = c.certificate_arn() {
                    out.push((arn.to_string(), c.is_default().unwrap_or(false)));
                }
            }
            match page.next_marker() {
                Some(m) if !m.is_empty() => marker = Some(m.to_string()),
                _ => break,
            }
        }
        Ok(out)
    }

    fn cert(arn: &str) -> Certificate {
        Certificate::builder().certificate_arn(arn).build()
    }

    async fn set_default(&self, arn: &str) -> Result<(), ConsumerError> {
        self.client
            .modify_listener()
            .listener_arn(&self.arn)
            .certificates(Self::cert(arn))
            .send()
            .await
            .map_err(|e| ConsumerError::Api(aws_message(&e)))?;
        Ok(())
    }

    /// Adds `arns` to the listener's certificates, or removes them.
    async fn additional(&self, add: bool, arns: &[&str]) -> Result<(), ConsumerError> {
        if arns.is_empty() {
            return Ok(());
        }
        let certs = Some(arns.iter().map(|a| Self::cert(a)).collect());
        let sent = if add {
            self.client
                .add_listener_certificates()
                .listener_arn(&self.arn)
                .set_certificates(certs)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| aws_message(&e))
        } else {
            self.client
                .remove_listener_certificates()
                .listener_arn(&self.arn)
                .set_certificates(certs)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| aws_message(&e))
        };
        sent.map_err(ConsumerError::Api)
    }
}

#[async_trait]
impl Consumer for Listener {
    fn label(&self) -> String {
        match self.role {
            ListenerRole::Default => format!("listener {}", self.arn),
            ListenerRole::Additional => format!("listener {} (additional)", self.arn),
        }
    }

    fn wants<'a>(&self, copies: &'a [CertCopy]) -> Option<&'a CertCopy> {
        in_region(copies, Self::region(&self.arn))
    }

    /// The default certificate, or the additional ones.
    async fn read(&self) -> Result<Vec<String>, ConsumerError> {
        let all = self.certificates().await?;
        let want_default = self.role == ListenerRole::Default;
        let refs: Vec<String> = all
            .into_iter()
            .filter(|(_, default)| *default == want_default)
            .map(|(arn, _)| arn)
            .collect();
        if want_default && refs.is_empty() {
            return Err(ConsumerError::NotFound(
                "the listener has no default certificate (not HTTPS/TLS?)".into(),
            ));
        }
        Ok(refs)
    }

    /// As the default: replaces it. As an additional one: adds the new
    /// copy, then removes the earlier copies of this certificate
    /// (`replace`), leaving other certificates on the listener alone.
    async fn switch(&self, to: &CertCopy, replace: &[String]) -> Result<(), ConsumerError> {
        match self.role {
            ListenerRole::Default => self.set_default(&to.arn).await,
            ListenerRole::Additional => {
                self.additional(true, &[to.arn.as_str()]).await?;
                let old: Vec<&str> = replace
                    .iter()
                    .map(String::as_str)
                    .filter(|a| *a != to.arn)
                    .collect();
                self.additional(false, &old).await
            }
        }
    }

    async fn restore(&self, before: &[String], to: &CertCopy) -> Result<(), ConsumerError> {
        match self.role {
            ListenerRole::Default => match before.first() {
                Some(arn) => self.set_default(arn).await,
                None => Ok(()),
            },
            ListenerRole::Additional => {
                let back: Vec<&str> = before.iter().map(String::as_str).collect();
                self.additional(true, &back).await?;
                if !before.contains(&to.arn) {
                    self.additional(false, &[to.arn.as_str()]).await?;
                }
                Ok(())
            }
        }
    }
}
