//! Rollouts: switching what serves a certificate — CloudFront
//! distributions, classic ELB listeners, ALB/NLB listeners — to the copy
//! an `iam` or `acm` target holds of its live set, as the runbook did by
//! hand: the canary first, checked with the endpoints it should now serve
//! (the `verify:` format), then the rest in order, each step checked; a
//! step that does not serve the new certificate is switched back, the
//! steps after it are not touched, and the run fails.
//!
//! Every consumer is read before anything is switched, so an unknown
//! distribution, load balancer, port or listener stops the rollout with
//! nothing changed. After it, every consumer is read again: the alignment
//! (who references the current copy) goes to the status, the metrics and
//! `certkeeper status`, and only then may the target delete earlier
//! copies — none that a consumer still references.
//!
//! One consumer kind per file (`cloudfront`, `elb`); [`build`] is the
//! registry. The decisions ([`standing`], [`on_ours`], [`halted_until`],
//! [`summary`]) are pure and tested with a fixed clock.

pub mod cloudfront;
pub mod elb;

use crate::publish::{CertCopy, Copies, Item, PublishError, Target};
use crate::report::{ConsumerStatus, RolloutStatus};
use crate::settings::{RolloutSettings, Settings, StepConsumer};
use crate::store::Store;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

/// Why a consumer could not be read or switched.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// The distribution, load balancer, port or listener does not exist.
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Api(String),
}

/// Something that serves a certificate by reference.
#[async_trait]
pub trait Consumer: Send + Sync {
    /// `cloudfront E2QWRUHAPOMQZL`, `elb web:443`, `listener arn:…`.
    fn label(&self) -> String;
    /// The copy this consumer can use (IAM's, or ACM's in its region).
    fn wants<'a>(&self, copies: &'a [CertCopy]) -> Option<&'a CertCopy>;
    /// What it references now: ARNs, or IAM ids for CloudFront.
    async fn read(&self) -> Result<Vec<String>, ConsumerError>;
    /// Makes it reference `to`; `replace` are the earlier copies of this
    /// certificate it references (an additional listener certificate
    /// drops them).
    async fn switch(&self, to: &CertCopy, replace: &[String]) -> Result<(), ConsumerError>;
    /// Puts back what `read` said before the switch to `to`.
    async fn restore(&self, before: &[String], to: &CertCopy) -> Result<(), ConsumerError>;
}

/// Why a rollout did not finish aligned.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error("{at}: {consumer}: {source}; nothing was switched")]
    Preflight {
        at: String,
        consumer: String,
        #[source]
        source: ConsumerError,
    },
    #[error("{at}: {consumer}: target {target} has no copy it can use ({why})")]
    NoCopy {
        at: String,
        consumer: String,
        target: String,
        why: String,
    },
    #[error("target {target} holds no copy of the live certificate yet (publish it first)")]
    NotPublished { target: String },
    #[error("{0}")]
    Target(#[from] PublishError),
    #[error("{at}: switching {consumer}: {source}{}", restored_note(.restored))]
    Switch {
        at: String,
        consumer: String,
        #[source]
        source: ConsumerError,
        restored: Vec<String>,
    },
    #[error(
        "{at}: {step} does not serve the new certificate ({findings}); switched back: {}; later steps untouched{}",
        .restored.join(", "), failed_note(.failed_restores)
    )]
    NotServed {
        at: String,
        step: String,
        findings: String,
        restored: Vec<String>,
        failed_restores: Vec<String>,
    },
    #[error(
        "halted since {since} at {step} ({reason}); tried again after {until} (rollouts.{cert}.retry_after)"
    )]
    Halted {
        cert: String,
        since: String,
        until: String,
        step: String,
        reason: String,
    },
    #[error("{0} after the rollout")]
    Misaligned(String),
}

fn restored_note(restored: &[String]) -> String {
    if restored.is_empty() {
        String::new()
    } else {
        format!("; switched back: {}", restored.join(", "))
    }
}

fn failed_note(failed: &[String]) -> String {
    if failed.is_empty() {
        String::new()
    } else {
        format!("; COULD NOT SWITCH BACK: {}", failed.join("; "))
    }
}

/// A consumer against the copies of the certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// References the current copy.
    Aligned,
    /// References something else (an earlier copy, another certificate,
    /// CloudFront's default).
    Behind,
}

/// Pure: where a consumer referencing `refs` stands against `wanted`.
pub fn standing(refs: &[String], wanted: &CertCopy) -> Standing {
    if refs.iter().any(|r| wanted.is(r)) {
        Standing::Aligned
    } else {
        Standing::Behind
    }
}

/// Pure: the distributions (of `all`, id and references) that use a copy
/// of this certificate, current or earlier: what `cloudfront: previous`
/// stands for.
pub fn on_ours(all: &[(String, Vec<String>)], copies: &Copies) -> Vec<String> {
    all.iter()
        .filter(|(_, refs)| {
            refs.iter().any(|r| {
                copies
                    .current
                    .iter()
                    .chain(&copies.previous)
                    .any(|c| c.is(r))
            })
        })
        .map(|(id, _)| id.clone())
        .collect()
}

/// A halted rollout, in `rollouts/<name>.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Halt {
    /// The certificate (leaf SHA-256) whose rollout halted.
    pub sha256: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub step: String,
    pub reason: String,
}

/// Pure: until when a rollout of the certificate `sha256` stays halted.
pub fn halted_until(
    halt: Option<&Halt>,
    sha256: &str,
    retry_after: std::time::Duration,
    now: OffsetDateTime,
) -> Option<OffsetDateTime> {
    let halt = halt.filter(|h| h.sha256 == sha256)?;
    let until = halt.at + retry_after;
    (now < until).then_some(until)
}

/// Pure: the status of the consumers read, aligned or not.
pub fn summary(read: &[(String, Vec<String>, Standing)], result: String) -> RolloutStatus {
    RolloutStatus {
        aligned: !read.is_empty() && read.iter().all(|(_, _, s)| *s == Standing::Aligned),
        result,
        consumers: read
            .iter()
            .map(|(consumer, references, s)| ConsumerStatus {
                consumer: consumer.clone(),
                references: references.clone(),
                aligned: *s == Standing::Aligned,
            })
            .collect(),
    }
}

fn halt_path(cert: &str) -> String {
    format!("rollouts/{cert}.json")
}

fn read_halt(store: &Store, cert: &str) -> Option<Halt> {
    store
        .read_state(&halt_path(cert))
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

fn write_halt(store: &Store, cert: &str, halt: Option<&Halt>) {
    let json = match halt {
        Some(h) => serde_json::to_vec_pretty(h).expect("halt serializes"),
        None => b"null".to_vec(),
    };
    if let Err(e) = store.write_state(&halt_path(cert), &json) {
        tracing::error!(event = "rollout.state.write_failed", cert = %cert, error = %e);
    }
}

/// Each step's consumers, by step index (`previous` looked up).
type Planned = Vec<(usize, Vec<Arc<dyn Consumer>>)>;

/// One certificate's rollout, with the clients it switches with.
pub struct Rollout {
    cert: String,
    settings: RolloutSettings,
    /// The settings file, for error locations.
    source: PathBuf,
    cloudfront: aws_sdk_cloudfront::Client,
    elb: aws_sdk_elasticloadbalancing::Client,
    /// The ALB/NLB clients by region (a listener's comes from its ARN).
    elbv2: BTreeMap<String, aws_sdk_elasticloadbalancingv2::Client>,
    region: String,
}

/// A step's consumers, read before anything is switched.
struct Step {
    index: usize,
    consumers: Vec<Read>,
}

struct Read {
    consumer: Arc<dyn Consumer>,
    refs: Vec<String>,
    wanted: CertCopy,
}

impl Read {
    fn standing(&self) -> Standing {
        standing(&self.refs, &self.wanted)
    }
}

/// What one rollout works on: the target holding the copies, the live
/// set, the state dir (for a halt), the run's cancellation, and now.
pub struct Context<'a> {
    pub target: &'a dyn Target,
    pub item: &'a Item<'a>,
    pub store: &'a Store,
    pub cancel: &'a CancellationToken,
    pub now: OffsetDateTime,
    /// `false`: only read the consumers and report the alignment (a
    /// replica without the certificate's lease).
    pub switch: bool,
}

/// What a rollout leaves: the status to show, and why it failed.
pub struct Outcome {
    pub status: RolloutStatus,
    pub error: Option<RolloutError>,
}

/// The registry: one rollout per certificate of `rollouts:`, each with the
/// identity it names.
pub async fn build(
    settings: &Settings,
    base: &aws_config::SdkConfig,
) -> BTreeMap<String, Arc<Rollout>> {
    let mut out = BTreeMap::new();
    for (cert, rollout) in &settings.rollouts {
        let sdk =
            crate::aws::identity(&settings.aws, &rollout.aws, base, "certkeeper-rollout").await;
        let region = sdk
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| cloudfront::ACM_REGION.into());
        let cloudfront = aws_sdk_cloudfront::Client::from_conf(
            aws_sdk_cloudfront::config::Builder::from(&sdk)
                .region(aws_config::Region::new(cloudfront::ACM_REGION))
                .build(),
        );
        let elb = aws_sdk_elasticloadbalancing::Client::new(&sdk);
        let mut elbv2 = BTreeMap::new();
        for step in &rollout.steps {
            if let Ok(StepConsumer::Listener { arn, .. }) = step.consumer() {
                let r = elb::Listener::region(arn).to_string();
                elbv2.entry(r.clone()).or_insert_with(|| {
                    aws_sdk_elasticloadbalancingv2::Client::from_conf(
                        aws_sdk_elasticloadbalancingv2::config::Builder::from(&sdk)
                            .region(aws_config::Region::new(r))
                            .build(),
                    )
                });
            }
        }
        out.insert(
            cert.clone(),
            Arc::new(Rollout {
                cert: cert.clone(),
                settings: rollout.clone(),
                source: settings.source.clone(),
                cloudfront,
                elb,
                elbv2,
                region,
            }),
        );
    }
    out
}

impl Rollout {
    /// The rollout's target (`rollouts.<name>.target`).
    pub fn target(&self) -> &str {
        &self.settings.target
    }

    /// `settings.yaml:42: rollouts.web.steps[1]`.
    fn at(&self, index: usize) -> String {
        let line = self.settings.step_lines.get(index).copied().unwrap_or(0);
        format!(
            "{}:{line}: rollouts.{}.steps[{index}]",
            self.source.display(),
            self.cert
        )
    }

    fn distribution(&self, id: &str) -> Arc<dyn Consumer> {
        Arc::new(cloudfront::Distribution {
            id: id.to_string(),
            client: self.cloudfront.clone(),
            deploy_timeout: self.settings.deploy_timeout,
        })
    }

    /// The consumers of every step; `previous` is looked up now.
    async fn consumers(&self, copies: &Copies) -> Result<Planned, RolloutError> {
        let explicit: BTreeSet<&str> = self
            .settings
            .steps
            .iter()
            .filter_map(|s| s.cloudfront.as_deref())
            .collect();
        let mut out = Vec::new();
        for (index, step) in self.settings.steps.iter().enumerate() {
            // Validated with the settings.
            let Ok(consumer) = step.consumer() else {
                continue;
            };
            let consumers: Vec<Arc<dyn Consumer>> = match consumer {
                StepConsumer::Distribution(id) => vec![self.distribution(id)],
                StepConsumer::Previous => {
                    let all = cloudfront::list(&self.cloudfront).await.map_err(|source| {
                        RolloutError::Preflight {
                            at: self.at(index),
                            consumer: "cloudfront previous (listing distributions)".into(),
                            source,
                        }
                    })?;
                    on_ours(&all, copies)
                        .into_iter()
                        .filter(|id| !explicit.contains(id.as_str()))
                        .map(|id| self.distribution(&id))
                        .collect()
                }
                StepConsumer::Elb { name, port } => vec![Arc::new(elb::Classic {
                    name: name.to_string(),
                    port,
                    region: self.region.clone(),
                    client: self.elb.clone(),
                })],
                StepConsumer::Listener { arn, role } => {
                    let region = elb::Listener::region(arn);
                    let Some(client) = self.elbv2.get(region) else {
                        continue;
                    };
                    vec![Arc::new(elb::Listener {
                        arn: arn.to_string(),
                        role,
                        client: client.clone(),
                    })]
                }
            };
            out.push((index, consumers));
        }
        Ok(out)
    }

    /// Reads every consumer; the first that cannot be read or has no copy
    /// it can use stops the rollout before anything is switched.
    async fn preflight(
        &self,
        planned: &Planned,
        copies: &Copies,
        target: &str,
    ) -> Result<Vec<Step>, RolloutError> {
        let mut steps = Vec::new();
        for (index, consumers) in planned {
            let index = *index;
            let mut read = Vec::new();
            for consumer in consumers {
                let consumer = consumer.clone();
                let refs = consumer
                    .read()
                    .await
                    .map_err(|source| RolloutError::Preflight {
                        at: self.at(index),
                        consumer: consumer.label(),
                        source,
                    })?;
                let wanted = consumer.wants(&copies.current).cloned().ok_or_else(|| {
                    RolloutError::NoCopy {
                        at: self.at(index),
                        consumer: consumer.label(),
                        target: target.to_string(),
                        why: match copies
                            .current
                            .iter()
                            .filter_map(|c| c.region.clone())
                            .collect::<Vec<_>>()
                        {
                            regions if regions.is_empty() => "none".into(),
                            regions => format!("its ACM copies are in {}", regions.join(", ")),
                        },
                    }
                })?;
                read.push(Read {
                    consumer,
                    refs,
                    wanted,
                });
            }
            steps.push(Step {
                index,
                consumers: read,
            });
        }
        Ok(steps)
    }

    /// Brings every consumer to the copy of `item`'s set that `target`
    /// holds, then lets the target delete what no consumer references.
    pub async fn run(&self, cx: &Context<'_>) -> Outcome {
        let mut read = Vec::new();
        let error = self.roll(cx, &mut read).await.err();
        let result = match &error {
            None if read.iter().any(|(_, _, s)| *s == Standing::Behind) => {
                "not aligned (not switched here)".into()
            }
            None => "aligned".into(),
            Some(e) => e.to_string(),
        };
        Outcome {
            status: summary(&read, result),
            error,
        }
    }

    async fn roll(
        &self,
        cx: &Context<'_>,
        read: &mut Vec<(String, Vec<String>, Standing)>,
    ) -> Result<(), RolloutError> {
        let copies = cx
            .target
            .copies(cx.item)
            .await?
            .filter(|c| !c.current.is_empty())
            .ok_or_else(|| RolloutError::NotPublished {
                target: cx.target.name().to_string(),
            })?;
        let planned = self.consumers(&copies).await?;
        self.roll_planned(&planned, &copies, cx, read).await
    }

    /// The rollout over consumers already built: read, switch, check,
    /// read again, prune.
    async fn roll_planned(
        &self,
        planned: &Planned,
        copies: &Copies,
        cx: &Context<'_>,
        read: &mut Vec<(String, Vec<String>, Standing)>,
    ) -> Result<(), RolloutError> {
        let Context {
            target,
            item,
            store,
            cancel,
            now,
            switch,
        } = *cx;
        let steps = self.preflight(planned, copies, target.name()).await?;
        let record = |steps: &[Step], read: &mut Vec<(String, Vec<String>, Standing)>| {
            *read = steps
                .iter()
                .flat_map(|s| &s.consumers)
                .map(|r| (r.consumer.label(), r.refs.clone(), r.standing()))
                .collect();
        };
        record(&steps, read);
        let behind = steps
            .iter()
            .flat_map(|s| &s.consumers)
            .any(|r| r.standing() == Standing::Behind);
        if behind && !switch {
            return Ok(());
        }
        if behind {
            let halt = read_halt(store, &self.cert);
            if let (Some(until), Some(halt)) = (
                halted_until(
                    halt.as_ref(),
                    &item.meta.sha256,
                    self.settings.retry_after,
                    now,
                ),
                halt.clone(),
            ) {
                return Err(RolloutError::Halted {
                    cert: self.cert.clone(),
                    since: rfc3339(halt.at),
                    until: rfc3339(until),
                    step: halt.step,
                    reason: halt.reason,
                });
            }
            let previous: Vec<&CertCopy> = copies.previous.iter().collect();
            for (n, step) in steps.iter().enumerate() {
                // The canary is checked even when already switched, before
                // anything else moves.
                if let Err(e) = self.roll_step(step, n == 0, &previous, item, cancel).await {
                    // A shutdown cut the check short: not a verdict on
                    // the certificate, so nothing is halted.
                    if let RolloutError::NotServed { step, findings, .. } = &e
                        && !cancel.is_cancelled()
                    {
                        write_halt(
                            store,
                            &self.cert,
                            Some(&Halt {
                                sha256: item.meta.sha256.clone(),
                                at: now,
                                step: step.clone(),
                                reason: findings.clone(),
                            }),
                        );
                    }
                    // What the consumers reference now.
                    let after = self.preflight(planned, copies, target.name()).await;
                    if let Ok(after) = after {
                        record(&after, read);
                    }
                    return Err(e);
                }
            }
            write_halt(store, &self.cert, None);
            let after = self.preflight(planned, copies, target.name()).await?;
            record(&after, read);
        }
        let misaligned: Vec<&str> = read
            .iter()
            .filter(|(_, _, s)| *s == Standing::Behind)
            .map(|(c, _, _)| c.as_str())
            .collect();
        if !misaligned.is_empty() {
            return Err(RolloutError::Misaligned(format!(
                "{} still reference{} another certificate",
                misaligned.join(", "),
                if misaligned.len() == 1 { "s" } else { "" }
            )));
        }
        let in_use: BTreeSet<String> = read.iter().flat_map(|(_, refs, _)| refs.clone()).collect();
        target.prune(item, &in_use).await?;
        Ok(())
    }

    /// Switches a step's consumers that are behind, then checks its
    /// endpoints; switches them back when the endpoints do not serve the
    /// new certificate.
    async fn roll_step(
        &self,
        step: &Step,
        canary: bool,
        previous: &[&CertCopy],
        item: &Item<'_>,
        cancel: &CancellationToken,
    ) -> Result<(), RolloutError> {
        let at = self.at(step.index);
        let mut switched: Vec<&Read> = Vec::new();
        for r in step
            .consumers
            .iter()
            .filter(|r| r.standing() == Standing::Behind)
        {
            let replace: Vec<String> = r
                .refs
                .iter()
                .filter(|x| previous.iter().any(|p| p.is(x)))
                .cloned()
                .collect();
            tracing::info!(event = "rollout.switch", cert = %self.cert, consumer = %r.consumer.label(), from = %r.refs.join(","), to = %r.wanted.arn, canary);
            if let Err(source) = r.consumer.switch(&r.wanted, &replace).await {
                let (restored, _) = self.restore(&switched).await;
                return Err(RolloutError::Switch {
                    at,
                    consumer: r.consumer.label(),
                    source,
                    restored,
                });
            }
            switched.push(r);
        }
        if switched.is_empty() && !canary {
            return Ok(());
        }
        let Some(spec) = &self.settings.steps[step.index].verify else {
            return Ok(());
        };
        let label = step
            .consumers
            .iter()
            .map(|r| r.consumer.label())
            .collect::<Vec<_>>()
            .join(", ");
        match crate::verify::verify(spec, &item.meta.sha256, &item.meta.serial, cancel).await {
            Ok(()) => {
                tracing::info!(event = "rollout.verified", cert = %self.cert, step = %label, canary);
                Ok(())
            }
            Err(findings) => {
                tracing::error!(event = "rollout.not_served", cert = %self.cert, step = %label, canary, error = %findings);
                let (restored, failed_restores) = self.restore(&switched).await;
                Err(RolloutError::NotServed {
                    at,
                    step: if label.is_empty() {
                        "(none)".into()
                    } else {
                        label
                    },
                    findings: findings.to_string(),
                    restored,
                    failed_restores,
                })
            }
        }
    }

    /// Switches `switched` back; (the ones switched back, the failures).
    async fn restore(&self, switched: &[&Read]) -> (Vec<String>, Vec<String>) {
        let mut restored = Vec::new();
        let mut failed = Vec::new();
        for r in switched.iter().rev() {
            match r.consumer.restore(&r.refs, &r.wanted).await {
                Ok(()) => {
                    tracing::warn!(event = "rollout.switched_back", cert = %self.cert, consumer = %r.consumer.label(), to = %r.refs.join(","));
                    restored.push(r.consumer.label());
                }
                Err(e) => {
                    tracing::error!(event = "rollout.switch_back_failed", cert = %self.cert, consumer = %r.consumer.label(), error = %e);
                    failed.push(format!("{}: {e}", r.consumer.label()));
                }
            }
        }
        (restored, failed)
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
