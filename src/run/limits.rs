//! The CA's new-order limit, planned instead of hit: a token bucket per
//! issuer (Let's Encrypt: 300 new orders per account per 3 hours, one back
//! every 36 s), kept in the state dir across runs. A run orders only what
//! the bucket holds, the most urgent first (the live certificate expiring
//! soonest; new certificates after renewals); the others wait for a later
//! run, say until when, and are not failures. `admit` decides, with the
//! time given.

use super::*;
use crate::settings::NewOrderLimit;
use std::time::Duration;

/// The bucket of one issuer as a run leaves it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub(super) struct Bucket {
    pub tokens: f64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl Bucket {
    /// A full bucket: a CA never used from this state dir.
    fn full(limit: &NewOrderLimit, now: OffsetDateTime) -> Bucket {
        Bucket {
            tokens: f64::from(limit.orders),
            at: now,
        }
    }

    /// The tokens there are `now`.
    fn refilled(self, limit: &NewOrderLimit, now: OffsetDateTime) -> f64 {
        let elapsed = (now - self.at).as_seconds_f64().max(0.0);
        (self.tokens + elapsed * rate(limit)).min(f64::from(limit.orders))
    }
}

/// Orders per second the bucket refills at.
fn rate(limit: &NewOrderLimit) -> f64 {
    f64::from(limit.orders) / limit.per.as_secs_f64().max(1.0)
}

/// The verdict for `due` certificates in order of urgency: how many may
/// order now, and for each of the others when its order would be allowed.
#[derive(Debug, PartialEq)]
pub(super) struct Admitted {
    pub now: usize,
    pub later: Vec<OffsetDateTime>,
    /// The bucket once the admitted orders are taken from it.
    pub bucket: Bucket,
}

pub(super) fn admit(
    limit: &NewOrderLimit,
    bucket: Option<Bucket>,
    due: usize,
    now: OffsetDateTime,
) -> Admitted {
    let tokens = bucket
        .map(|b| b.refilled(limit, now))
        .unwrap_or(f64::from(limit.orders));
    let admitted = (tokens.floor().max(0.0) as usize).min(due);
    let left = tokens - admitted as f64;
    let later = (1..=due - admitted)
        .map(|k| {
            let wait = (k as f64 - left).max(0.0) / rate(limit);
            now.replace_nanosecond(0).unwrap_or(now) + Duration::from_secs_f64(wait.ceil())
        })
        .collect();
    Admitted {
        now: admitted,
        later,
        bucket: Bucket {
            tokens: left,
            at: now,
        },
    }
}

fn state_file(issuer: &str) -> String {
    format!("limits/{issuer}.json")
}

/// Holds back the due certificates their issuer's new-order limit does not
/// allow now: `CertPlan::Waiting` until their turn.
pub(super) fn plan_limits(
    settings: &Settings,
    store: &Store,
    resolution: &resolve::Resolution,
    plans: &mut [(Certificate, CertPlan)],
    now: OffsetDateTime,
) {
    let mut by_issuer: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, (cert, plan)) in plans.iter().enumerate() {
        if matches!(plan, CertPlan::Renew)
            && let Some(first) = resolution.of(cert.name()).issuers.first()
        {
            by_issuer.entry(first.clone()).or_default().push(i);
        }
    }
    for (issuer, mut due) in by_issuer {
        let Some(limit) = settings
            .issuers
            .get(&issuer)
            .and_then(|a| a.new_order_limit())
        else {
            continue;
        };
        // The most urgent first: renewals by expiry, then new certificates.
        due.sort_by_key(|&i| {
            let meta = store.live_meta(plans[i].0.name()).ok().flatten();
            (meta.is_none(), meta.map(|m| m.not_after))
        });
        let bucket = store
            .read_state(&state_file(&issuer))
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice::<Bucket>(&b).ok());
        let verdict = admit(
            &limit,
            bucket.or(Some(Bucket::full(&limit, now))),
            due.len(),
            now,
        );
        let json = serde_json::to_vec(&verdict.bucket).expect("bucket serializes");
        if let Err(e) = store.write_state(&state_file(&issuer), &json) {
            tracing::warn!(event = "ca.limit.unsaved", issuer = %issuer, error = %e);
        }
        if verdict.later.is_empty() {
            continue;
        }
        for (&i, until) in due[verdict.now..].iter().zip(&verdict.later) {
            plans[i].1 = CertPlan::Waiting { until: *until };
        }
        let next = verdict.later[0];
        tracing::warn!(
            event = "ca.limit.wait",
            issuer = %issuer,
            waiting = verdict.later.len(),
            ordered = verdict.now,
            next = %rfc3339(next),
            message = %format!(
                "{} certificates wait for the CA's new-order limit ({} per {}); next at {}",
                verdict.later.len(),
                limit.orders,
                crate::duration::format(limit.per),
                rfc3339(next)
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LE: NewOrderLimit = NewOrderLimit {
        orders: 300,
        per: Duration::from_secs(3 * 3600),
    };

    fn t(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).unwrap()
    }

    #[test]
    fn a_full_bucket_takes_300_then_one_every_36_seconds() {
        let v = admit(&LE, None, 314, t(0));
        assert_eq!(v.now, 300);
        assert_eq!(v.later.len(), 14);
        assert_eq!(v.later[0], t(36));
        assert_eq!(v.later[13], t(14 * 36));
        assert_eq!(
            v.bucket,
            Bucket {
                tokens: 0.0,
                at: t(0)
            }
        );
    }

    #[test]
    fn the_bucket_refills_between_runs_up_to_the_limit() {
        let empty = Bucket {
            tokens: 0.0,
            at: t(0),
        };
        let v = admit(&LE, Some(empty), 10, t(360));
        assert_eq!((v.now, v.later.len()), (10, 0));
        let v = admit(&LE, Some(empty), 20, t(360));
        assert_eq!((v.now, v.later.len()), (10, 10));
        assert_eq!(v.later[0], t(396));
        let v = admit(&LE, Some(empty), 1000, t(86_400));
        assert_eq!(v.now, 300, "never more than the limit at once");
    }

    #[test]
    fn a_part_token_counts_toward_the_next_order() {
        let half = Bucket {
            tokens: 0.5,
            at: t(0),
        };
        let v = admit(&LE, Some(half), 1, t(0));
        assert_eq!((v.now, v.later), (0, vec![t(18)]));
    }

    #[test]
    fn nothing_due_takes_nothing() {
        let v = admit(&LE, None, 0, t(0));
        assert_eq!((v.now, v.later.len(), v.bucket.tokens), (0, 0, 300.0));
    }
}
