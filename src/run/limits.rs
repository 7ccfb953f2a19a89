//! The CA's limits, planned instead of hit. Two token buckets per issuer,
//! kept in the state dir across runs: new orders per account (Let's
//! Encrypt: 300 per 3 hours, one back every 36 s) and new certificates per
//! registered domain (Let's Encrypt: 50 per 7 days, one back every 202
//! minutes; a certificate counts once for each registered domain it names;
//! a renewal of exactly the same names is exempt). A run orders what both
//! allow, the most urgent first (the live certificate expiring soonest; new
//! certificates after renewals); the others wait for a later run, say until
//! when, and are not failures. `admit` decides, with the time given.

use super::*;
use crate::settings::{DomainLimit, NewOrderLimit};
use std::time::Duration;

/// One bucket as a run leaves it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub(super) struct Bucket {
    pub tokens: f64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// How a bucket fills: `capacity` tokens, all back in `per`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rate {
    capacity: u32,
    per: Duration,
}

impl From<&NewOrderLimit> for Rate {
    fn from(l: &NewOrderLimit) -> Rate {
        Rate {
            capacity: l.orders,
            per: l.per,
        }
    }
}

impl From<&DomainLimit> for Rate {
    fn from(l: &DomainLimit) -> Rate {
        Rate {
            capacity: l.certificates,
            per: l.per,
        }
    }
}

impl Rate {
    fn full(self) -> f64 {
        f64::from(self.capacity)
    }

    /// Tokens per second.
    fn per_second(self) -> f64 {
        self.full() / self.per.as_secs_f64().max(1.0)
    }

    /// The tokens `bucket` holds `now` (a bucket never used is full).
    fn tokens(self, bucket: Option<&Bucket>, now: OffsetDateTime) -> f64 {
        bucket.map_or(self.full(), |b| {
            let elapsed = (now - b.at).as_seconds_f64().max(0.0);
            (b.tokens + elapsed * self.per_second()).min(self.full())
        })
    }

    /// When `missing` more tokens than there are will have come back.
    fn after(self, missing: f64, now: OffsetDateTime) -> OffsetDateTime {
        let wait = missing.max(0.0) / self.per_second();
        now.replace_nanosecond(0).unwrap_or(now) + Duration::from_secs_f64(wait.ceil())
    }
}

/// One certificate due, as the limits see it: the registered domains of
/// its names when it is new (or its names changed), `None` for a renewal
/// of the same names (exempt from the per-domain limit).
pub(super) type Due = Option<Vec<String>>;

/// What the limits say about one due certificate.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Verdict {
    Now,
    /// The new-order limit: its turn comes then.
    Orders(OffsetDateTime),
    /// These registered domains have no new certificate left until then.
    Domains(OffsetDateTime, Vec<String>),
}

impl Verdict {
    pub fn until(&self) -> Option<OffsetDateTime> {
        match self {
            Verdict::Now => None,
            Verdict::Orders(t) | Verdict::Domains(t, _) => Some(*t),
        }
    }
}

/// The verdict for the due certificates, in order of urgency.
#[derive(Debug, PartialEq)]
pub(super) struct Admitted {
    pub verdicts: Vec<Verdict>,
    /// The new-order bucket once the admitted orders are taken from it.
    pub orders: Option<Bucket>,
    /// The per-domain buckets touched, once taken from (full ones left out).
    pub domains: BTreeMap<String, Bucket>,
}

impl Admitted {
    pub fn now(&self) -> usize {
        self.verdicts.iter().filter(|v| **v == Verdict::Now).count()
    }
}

/// Takes certificates in order while both buckets hold a token for them.
/// A certificate held back by the new-order limit waits its turn after the
/// earlier ones; one held back by a domain waits for that domain's next
/// token (after those already waiting for it), and a later certificate of
/// other domains may still go now.
pub(super) fn admit(
    orders: Option<(Rate, Option<Bucket>)>,
    domains: Option<(Rate, &BTreeMap<String, Bucket>)>,
    due: &[Due],
    now: OffsetDateTime,
) -> Admitted {
    let mut order_tokens = orders.map_or(f64::INFINITY, |(rate, b)| rate.tokens(b.as_ref(), now));
    let mut order_queue = 0.0;
    let mut tokens: BTreeMap<&str, f64> = BTreeMap::new();
    let mut queued: BTreeMap<&str, f64> = BTreeMap::new();
    let mut verdicts = Vec::with_capacity(due.len());
    for cert in due {
        if let Some((rate, _)) = orders
            && order_tokens < 1.0
        {
            order_queue += 1.0;
            verdicts.push(Verdict::Orders(rate.after(order_queue - order_tokens, now)));
            continue;
        }
        let (Some(names), Some((rate, buckets))) = (cert, domains) else {
            order_tokens -= 1.0;
            verdicts.push(Verdict::Now);
            continue;
        };
        let mut wait: Option<(OffsetDateTime, Vec<String>)> = None;
        for d in names {
            let t = *tokens
                .entry(d.as_str())
                .or_insert_with(|| rate.tokens(buckets.get(d), now));
            if t < 1.0 {
                let q = queued.entry(d.as_str()).or_default();
                *q += 1.0;
                let at = rate.after(*q - t, now);
                let (until, full) = wait.get_or_insert((at, Vec::new()));
                *until = (*until).max(at);
                full.push(d.clone());
            }
        }
        match wait {
            Some((until, full)) => verdicts.push(Verdict::Domains(until, full)),
            None => {
                order_tokens -= 1.0;
                for d in names {
                    *tokens.get_mut(d.as_str()).expect("looked up above") -= 1.0;
                }
                verdicts.push(Verdict::Now);
            }
        }
    }
    let domains = match domains {
        Some((rate, _)) => tokens
            .into_iter()
            .filter(|(_, t)| *t < rate.full())
            .map(|(d, t)| (d.to_string(), Bucket { tokens: t, at: now }))
            .collect(),
        None => BTreeMap::new(),
    };
    Admitted {
        verdicts,
        orders: orders.map(|_| Bucket {
            tokens: order_tokens,
            at: now,
        }),
        domains,
    }
}

fn state_file(issuer: &str) -> String {
    format!("limits/{issuer}.json")
}

fn domains_file(issuer: &str) -> String {
    format!("limits/{issuer}.domains.json")
}

/// What a certificate counts as: exempt when the live set holds exactly
/// the same names, else the registered domains it names.
fn due_of(cert: &Certificate, live: Option<&crate::store::Meta>) -> Due {
    let names = |domains: &[String]| {
        let mut n: Vec<String> = domains.iter().map(|d| d.to_ascii_lowercase()).collect();
        n.sort();
        n.dedup();
        n
    };
    if live.is_some_and(|m| names(&m.domains) == names(&cert.spec.domains)) {
        return None;
    }
    let list = crate::psl::system();
    let mut registered: Vec<String> = cert
        .spec
        .domains
        .iter()
        .filter_map(|d| list.registered_domain(d))
        .collect();
    registered.sort();
    registered.dedup();
    Some(registered)
}

/// Holds back the due certificates their issuer's limits do not allow now:
/// `CertPlan::Waiting` until their turn.
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
        let Some(acme) = settings.issuers.get(&issuer) else {
            continue;
        };
        let (order_limit, domain_limit) = (acme.new_order_limit(), acme.registered_domain_limit());
        if order_limit.is_none() && domain_limit.is_none() {
            continue;
        }
        // The most urgent first: renewals by expiry, then new certificates.
        let metas: BTreeMap<usize, Option<crate::store::Meta>> = due
            .iter()
            .map(|&i| (i, store.live_meta(plans[i].0.name()).ok().flatten()))
            .collect();
        due.sort_by_key(|i| {
            let meta = &metas[i];
            (meta.is_none(), meta.as_ref().map(|m| m.not_after))
        });
        let read = |file: &str| store.read_state(file).ok().flatten();
        let order_bucket =
            read(&state_file(&issuer)).and_then(|b| serde_json::from_slice::<Bucket>(&b).ok());
        let domain_buckets: BTreeMap<String, Bucket> = read(&domains_file(&issuer))
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let counted: Vec<Due> = due
            .iter()
            .map(|&i| due_of(&plans[i].0, metas[&i].as_ref()))
            .collect();
        let verdict = admit(
            order_limit.as_ref().map(|l| (Rate::from(l), order_bucket)),
            domain_limit
                .as_ref()
                .map(|l| (Rate::from(l), &domain_buckets)),
            &counted,
            now,
        );
        let mut saves = Vec::new();
        if let Some(bucket) = &verdict.orders {
            saves.push((
                state_file(&issuer),
                serde_json::to_vec(bucket).expect("bucket serializes"),
            ));
        }
        if domain_limit.is_some() {
            saves.push((
                domains_file(&issuer),
                serde_json::to_vec(&verdict.domains).expect("buckets serialize"),
            ));
        }
        for (file, json) in saves {
            if let Err(e) = store.write_state(&file, &json) {
                tracing::warn!(event = "ca.limit.unsaved", issuer = %issuer, error = %e);
            }
        }
        let mut by_orders = Vec::new();
        let mut by_domains: Vec<(OffsetDateTime, &[String])> = Vec::new();
        for (&i, verdict) in due.iter().zip(&verdict.verdicts) {
            let limit = match verdict {
                Verdict::Now => None,
                Verdict::Orders(_) => Some("the CA's new-order limit".to_string()),
                Verdict::Domains(_, d) => Some(format!(
                    "the CA's limit on new certificates for {}",
                    d.join(", ")
                )),
            };
            if let (Some(until), Some(limit)) = (verdict.until(), limit) {
                plans[i].1 = CertPlan::Waiting { until, limit };
            }
            match verdict {
                Verdict::Now => {}
                Verdict::Orders(t) => by_orders.push(*t),
                Verdict::Domains(t, d) => by_domains.push((*t, d)),
            }
        }
        if let (Some(limit), Some(next)) = (order_limit, by_orders.iter().min()) {
            tracing::warn!(
                event = "ca.limit.wait",
                issuer = %issuer,
                limit = "new_order_limit",
                waiting = by_orders.len(),
                ordered = verdict.now(),
                next = %rfc3339(*next),
                message = %format!(
                    "{} certificates wait for the CA's new-order limit ({} per {}); next at {}",
                    by_orders.len(),
                    limit.orders,
                    crate::duration::format(limit.per),
                    rfc3339(*next)
                ),
            );
        }
        if let (Some(limit), Some((next, _))) = (domain_limit, by_domains.iter().min()) {
            let mut full: Vec<&str> = by_domains
                .iter()
                .flat_map(|(_, d)| d.iter().map(String::as_str))
                .collect();
            full.sort();
            full.dedup();
            tracing::warn!(
                event = "ca.limit.wait",
                issuer = %issuer,
                limit = "registered_domain_limit",
                waiting = by_domains.len(),
                ordered = verdict.now(),
                next = %rfc3339(*next),
                domains = ?full,
                message = %format!(
                    "{} new certificates wait for the CA's limit of {} new certificates per registered domain per {} ({}); next at {}",
                    by_domains.len(),
                    limit.certificates,
                    crate::duration::format(limit.per),
                    full.join(", "),
                    rfc3339(*next)
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LE: NewOrderLimit = NewOrderLimit {
        orders: 300,
        per: Duration::from_secs(3 * 3600),
    };
    const LE_DOMAINS: DomainLimit = DomainLimit {
        certificates: 50,
        per: Duration::from_secs(7 * 86_400),
    };

    fn t(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).unwrap()
    }

    /// `n` renewals against the new-order limit alone.
    fn orders(bucket: Option<Bucket>, n: usize, now: OffsetDateTime) -> Admitted {
        admit(Some((Rate::from(&LE), bucket)), None, &vec![None; n], now)
    }

    fn later(v: &Admitted) -> Vec<OffsetDateTime> {
        v.verdicts.iter().filter_map(Verdict::until).collect()
    }

    fn new(domains: &[&str]) -> Due {
        Some(domains.iter().map(|d| d.to_string()).collect())
    }

    #[test]
    fn a_full_bucket_takes_300_then_one_every_36_seconds() {
        let v = orders(None, 314, t(0));
        assert_eq!(v.now(), 300);
        assert_eq!(later(&v).len(), 14);
        assert_eq!(v.verdicts[300], Verdict::Orders(t(36)));
        assert_eq!(v.verdicts[313], Verdict::Orders(t(14 * 36)));
        assert_eq!(
            v.orders,
            Some(Bucket {
                tokens: 0.0,
                at: t(0)
            })
        );
    }

    #[test]
    fn the_bucket_refills_between_runs_up_to_the_limit() {
        let empty = Bucket {
            tokens: 0.0,
            at: t(0),
        };
        let v = orders(Some(empty), 10, t(360));
        assert_eq!((v.now(), later(&v).len()), (10, 0));
        let v = orders(Some(empty), 20, t(360));
        assert_eq!((v.now(), later(&v).len()), (10, 10));
        assert_eq!(later(&v)[0], t(396));
        let v = orders(Some(empty), 1000, t(86_400));
        assert_eq!(v.now(), 300, "never more than the limit at once");
    }

    #[test]
    fn a_part_token_counts_toward_the_next_order() {
        let half = Bucket {
            tokens: 0.5,
            at: t(0),
        };
        let v = orders(Some(half), 1, t(0));
        assert_eq!((v.now(), later(&v)), (0, vec![t(18)]));
    }

    #[test]
    fn nothing_due_takes_nothing() {
        let v = orders(None, 0, t(0));
        assert_eq!((v.now(), v.orders.map(|b| b.tokens)), (0, Some(300.0)));
    }

    #[test]
    fn fifty_new_certificates_per_registered_domain_then_one_every_202_minutes() {
        let none = BTreeMap::new();
        let due: Vec<Due> = (0..52).map(|_| new(&["example.com"])).collect();
        let v = admit(
            Some((Rate::from(&LE), None)),
            Some((Rate::from(&LE_DOMAINS), &none)),
            &due,
            t(0),
        );
        assert_eq!(v.now(), 50);
        let every = 7 * 86_400 / 50;
        assert_eq!(
            v.verdicts[50],
            Verdict::Domains(t(every), vec!["example.com".into()])
        );
        assert_eq!(
            v.verdicts[51],
            Verdict::Domains(t(2 * every), vec!["example.com".into()])
        );
        assert_eq!(
            v.orders.map(|b| b.tokens),
            Some(250.0),
            "held back by a domain takes no new-order token"
        );
        assert_eq!(v.domains["example.com"].tokens, 0.0);
    }

    #[test]
    fn renewals_are_exempt_and_other_domains_go_on() {
        let full = BTreeMap::from([(
            "example.com".to_string(),
            Bucket {
                tokens: 0.0,
                at: t(0),
            },
        )]);
        let due = vec![
            None,
            new(&["example.com", "example.net"]),
            new(&["example.net"]),
            new(&["example.org", "example.net"]),
        ];
        let v = admit(None, Some((Rate::from(&LE_DOMAINS), &full)), &due, t(60));
        assert_eq!(v.verdicts[0], Verdict::Now, "a renewal of the same names");
        assert!(
            matches!(&v.verdicts[1], Verdict::Domains(_, d) if d == &["example.com"]),
            "{:?}",
            v.verdicts[1]
        );
        assert_eq!(v.verdicts[2], Verdict::Now);
        assert_eq!(v.verdicts[3], Verdict::Now);
        assert_eq!(v.orders, None, "no new-order limit: no bucket kept");
        assert_eq!(v.domains["example.net"].tokens, 48.0, "one for each");
        assert_eq!(v.domains["example.org"].tokens, 49.0);
        assert!(v.domains["example.com"].tokens < 1.0);
    }

    #[test]
    fn full_buckets_are_not_kept() {
        let old = BTreeMap::from([(
            "example.com".to_string(),
            Bucket {
                tokens: 10.0,
                at: t(0),
            },
        )]);
        let v = admit(
            None,
            Some((Rate::from(&LE_DOMAINS), &old)),
            &[new(&["example.com"])],
            t(8 * 86_400),
        );
        assert_eq!(v.domains["example.com"].tokens, 49.0);
        let v = admit(
            None,
            Some((Rate::from(&LE_DOMAINS), &old)),
            &[None],
            t(8 * 86_400),
        );
        assert!(v.domains.is_empty());
    }
}
