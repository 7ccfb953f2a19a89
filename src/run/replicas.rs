//! Replicas: certificates another replica is issuing, and bringing the
//! local store up to the bucket's sets.

use super::*;

/// Certificates this replica has no copy of because another one was
/// issuing them (`waiting`: their index and certificate): wait (up to twice the lease) for their holders to publish,
/// take them from the bucket and publish them here too, so that replicas
/// started together all end their first run complete.
pub(super) async fn await_elsewhere(
    c: &Arc<crate::replica::Coordinator>,
    store: &Store,
    lease_ttl: std::time::Duration,
    certificates: &mut [CertStatus],
    mut waiting: Vec<(usize, &Certificate)>,
    make_task: &dyn Fn(&Certificate) -> CertTask,
    cancel: &CancellationToken,
) {
    let deadline = tokio::time::Instant::now() + lease_ttl * 2;
    while !waiting.is_empty() && tokio::time::Instant::now() < deadline && !cancel.is_cancelled() {
        // One listing a round shows which holders have published; without
        // s3:ListBucket, a GET per certificate still waiting.
        let listing = c.listing().await;
        let mut still = Vec::new();
        for (i, cert) in waiting {
            let pulled = match &listing {
                Some(listing) => c.pull_surveyed(store, cert.name(), listing).await,
                None => c.pull(store, cert.name()).await,
            };
            match pulled {
                Ok(Some(_)) => {
                    certificates[i] = make_task(cert).process(cert, CertPlan::Keep).await.status;
                }
                _ => still.push((i, cert)),
            }
        }
        waiting = still;
        if !waiting.is_empty() {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
}

/// Brings every certificate's local set up to the bucket's (replicas): a
/// new replica starts from what the others issued instead of re-issuing.
pub(super) async fn pull_all(c: &Arc<crate::replica::Coordinator>, store: &Store, config: &Config) {
    let names: Vec<&str> = config.certificates.iter().map(|c| c.name()).collect();
    let survey = c.survey(&names).await.map(Arc::new);
    let limit = Arc::new(Semaphore::new(16));
    let mut tasks = JoinSet::new();
    for cert in &config.certificates {
        let (c, store, name, limit, survey) = (
            c.clone(),
            store.clone(),
            cert.name().to_string(),
            limit.clone(),
            survey.clone(),
        );
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await.expect("semaphore never closed");
            let pulled = match &survey {
                Some(survey) => c.pull_surveyed(&store, &name, survey).await,
                None => c.pull(&store, &name).await,
            };
            if let Err(e) = pulled {
                tracing::error!(event = "replica.pull.failed", cert = %name, error = %e);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}
