//! `rollouts:` — switching what serves a certificate (CloudFront
//! distributions, classic ELB listeners, ALB/NLB listeners) to its new
//! IAM or ACM copy, canary first. Local settings only: a rollout changes
//! production traffic, so the config repo cannot widen it.

use super::*;
use crate::endpoint::VerifySpec;

/// One certificate's rollout.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutSettings {
    /// The `iam` or `acm` target whose copy of the certificate the
    /// consumers are switched to.
    pub target: String,
    /// The consumers, in order; the first is the canary: switched alone,
    /// verified, and switched back when it does not serve the new
    /// certificate (the rest then stay untouched).
    pub steps: Vec<RolloutStep>,
    /// How long to wait for a CloudFront distribution to deploy.
    #[serde(
        default = "defaults::cloudfront_deploy_timeout",
        with = "crate::duration::serde_human"
    )]
    pub deploy_timeout: Duration,
    /// After a halted rollout (a step that did not serve the new
    /// certificate was switched back), how long before it is tried again.
    #[serde(
        default = "defaults::rollout_retry",
        with = "crate::duration::serde_human"
    )]
    pub retry_after: Duration,
    /// The identity that switches (its own profile or role, like a
    /// target's); its `region` is the classic load balancers' (a
    /// listener's comes from its ARN; CloudFront is global).
    #[serde(default)]
    pub aws: AwsIdentity,
    /// Line of each step in the settings file, for error messages.
    #[serde(skip)]
    pub step_lines: Vec<usize>,
}

/// One step: exactly one consumer (or every distribution on the previous
/// certificate), and the endpoints that must then serve the new one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutStep {
    /// A distribution id, or `previous`: every distribution now using an
    /// earlier certificate of this name (or this one).
    pub cloudfront: Option<String>,
    /// A classic load balancer's listener, `name:port`.
    pub elb: Option<String>,
    /// An ALB/NLB listener ARN.
    pub listener: Option<String>,
    /// For `listener`: the certificate as the listener's `default`, or as
    /// an `additional` one (SNI), replacing earlier copies of this name.
    #[serde(default, rename = "as")]
    pub role: ListenerRole,
    /// Endpoints that must serve the new certificate once this step is
    /// switched (the canary's is required).
    #[serde(default)]
    pub verify: Option<VerifySpec>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerRole {
    #[default]
    Default,
    Additional,
}

/// `cloudfront: previous`.
pub const PREVIOUS: &str = "previous";

/// What a step switches, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepConsumer<'a> {
    Distribution(&'a str),
    Previous,
    Elb { name: &'a str, port: u16 },
    Listener { arn: &'a str, role: ListenerRole },
}

impl RolloutStep {
    /// The consumer this step names, or why it names none or several.
    pub fn consumer(&self) -> Result<StepConsumer<'_>, String> {
        let named = [
            self.cloudfront.is_some(),
            self.elb.is_some(),
            self.listener.is_some(),
        ];
        if named.iter().filter(|n| **n).count() != 1 {
            return Err("name exactly one of cloudfront, elb, listener".into());
        }
        if self.role != ListenerRole::Default && self.listener.is_none() {
            return Err("`as` is only for a listener".into());
        }
        if let Some(id) = &self.cloudfront {
            if id == PREVIOUS {
                return Ok(StepConsumer::Previous);
            }
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(format!(
                    "cloudfront {id:?} is not a distribution id (like E2QWRUHAPOMQZL) or `previous`"
                ));
            }
            return Ok(StepConsumer::Distribution(id));
        }
        if let Some(elb) = &self.elb {
            let parsed = elb
                .rsplit_once(':')
                .and_then(|(name, port)| Some((name, port.parse::<u16>().ok()?)))
                .filter(|(name, port)| !name.is_empty() && *port > 0);
            return match parsed {
                Some((name, port)) => Ok(StepConsumer::Elb { name, port }),
                None => Err(format!(
                    "elb {elb:?} is not `load-balancer-name:port` (like web:443)"
                )),
            };
        }
        let arn = self.listener.as_deref().unwrap_or_default();
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        if parts.len() != 6
            || parts[0] != "arn"
            || parts[2] != "elasticloadbalancing"
            || !parts[5].starts_with("listener/")
        {
            return Err(format!(
                "listener {arn:?} is not a listener ARN (arn:aws:elasticloadbalancing:REGION:ACCOUNT:listener/app/NAME/ID/ID)"
            ));
        }
        Ok(StepConsumer::Listener {
            arn,
            role: self.role,
        })
    }
}
