//! The rollout stage: after a certificate's targets, its `rollouts:`
//! entry switches the consumers to the copy its iam or acm target holds,
//! and reports who references what (the alignment), every run.

use super::*;
use crate::report::RolloutStatus;
use crate::rollout::{Rollout, RolloutError};

/// Why a certificate's rollout did not run or finish.
#[derive(Debug, thiserror::Error)]
pub(super) enum RolloutFailure {
    #[error(
        "{settings}: rollouts.{cert}.target {target:?} is not a target of certificate {cert} (its targets: {targets})"
    )]
    NotATarget {
        settings: String,
        cert: String,
        target: String,
        targets: String,
    },
    #[error("not rolled out: publishing to {0} failed")]
    NotPublished(String),
    #[error("rollout: {0}")]
    Rollout(#[from] RolloutError),
    #[error("rollout: the certificate's lease: {0}")]
    Lease(#[from] crate::replica::LeaseError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Runs `rollout` for `meta`'s live set; `published` says which targets
/// hold it now.
pub(super) async fn roll_out(
    task: &CertTask,
    rollout: &Rollout,
    meta: &Meta,
    vars: &BTreeMap<String, String>,
    published: &[report::TargetStatus],
) -> (Option<RolloutStatus>, Result<(), RolloutFailure>) {
    let Some(target) = task.targets.iter().find(|t| t.name() == rollout.target()) else {
        return (
            None,
            Err(RolloutFailure::NotATarget {
                settings: task.settings_file.clone(),
                cert: meta.name.clone(),
                target: rollout.target().to_string(),
                targets: task
                    .targets
                    .iter()
                    .map(|t| t.name().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        );
    };
    if published
        .iter()
        .any(|t| t.name == rollout.target() && t.failed)
    {
        return (
            None,
            Err(RolloutFailure::NotPublished(rollout.target().to_string())),
        );
    }
    let files = match task.store.live_files(&meta.name) {
        Ok(f) => f,
        Err(e) => return (None, Err(e.into())),
    };
    let item = publish::Item::new(meta, &files, vars, &task.store);
    let started = std::time::Instant::now();
    let cx = |switch| crate::rollout::Context {
        target: target.as_ref(),
        item: &item,
        store: &task.store,
        cancel: &task.cancel,
        now: OffsetDateTime::now_utc(),
        switch,
    };
    // Replicas: only the holder of the certificate's lease switches. One
    // that renewed it in this run holds it; another looks first, and takes
    // the lease only when something is behind.
    let held_here = task.lease.lock().expect("lease lock").is_some();
    let outcome = match &task.coordinator {
        Some(c) if !held_here => {
            let look = rollout.run(&cx(false)).await;
            if look.error.is_some() || look.status.aligned {
                look
            } else {
                match c.acquire(&meta.name).await {
                    Ok(crate::replica::Acquired::Taken(lease)) => {
                        let outcome = rollout.run(&cx(true)).await;
                        c.release(&lease).await;
                        outcome
                    }
                    Ok(crate::replica::Acquired::Held { holder, until }) => {
                        tracing::info!(event = "rollout.left_to_holder", cert = %meta.name, holder = %holder);
                        let mut look = look;
                        look.status.result = format!(
                            "not aligned; {holder} holds the certificate's lease until {} and rolls it out",
                            until
                                .format(&time::format_description::well_known::Rfc3339)
                                .unwrap_or_default()
                        );
                        look
                    }
                    Err(e) => return (Some(look.status), Err(e.into())),
                }
            }
        }
        _ => rollout.run(&cx(true)).await,
    };
    let aligned = outcome
        .status
        .consumers
        .iter()
        .filter(|c| c.aligned)
        .count();
    match &outcome.error {
        None => {
            tracing::info!(event = "rollout.aligned", cert = %meta.name, serial = %meta.serial, consumers = outcome.status.consumers.len(), duration_ms = started.elapsed().as_millis() as u64);
        }
        Some(e) => {
            tracing::error!(event = "rollout.failed", cert = %meta.name, serial = %meta.serial, aligned, consumers = outcome.status.consumers.len(), error = %e);
        }
    }
    (
        Some(outcome.status),
        match outcome.error {
            None => Ok(()),
            Some(e) => Err(e.into()),
        },
    )
}
