//! The protocol against the in-memory bucket, with a clock the tests move:
//! who waits, who takes over at which generation, what a takeover inherits.

use super::bootstrap::newer;
use super::lease::{Body, CORRUPT_HOLDER, Step, corrupt_stand_in, step};
use super::*;
use crate::dns::{Placement, SharedJournal};
use crate::testing::bucket::MemoryBucket;
use std::sync::Mutex;

const TTL: Duration = Duration::from_secs(600);
const PREFIX: (&str, &str) = ("certs", "{prefix}/{name}/{file}");

fn t(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).unwrap()
}

/// A clock the test moves, shared by the bucket and every replica.
#[derive(Clone)]
struct Hands(Arc<Mutex<OffsetDateTime>>);

impl Hands {
    fn new() -> Hands {
        Hands(Arc::new(Mutex::new(t(0))))
    }
    fn clock(&self) -> Clock {
        let hands = self.0.clone();
        Arc::new(move || *hands.lock().unwrap())
    }
    fn set(&self, to: OffsetDateTime) {
        *self.0.lock().unwrap() = to;
    }
}

/// A bucket shared by replicas (each owns a `Box<dyn Bucket>`).
#[derive(Clone)]
struct Shared(Arc<MemoryBucket>);

#[async_trait::async_trait]
impl Bucket for Shared {
    fn name(&self) -> &str {
        self.0.name()
    }
    async fn get(&self, key: &str) -> Result<Option<bucket::Object>, BucketError> {
        self.0.get(key).await
    }
    async fn put(
        &self,
        key: &str,
        body: Vec<u8>,
        condition: bucket::Write<'_>,
    ) -> Result<Option<String>, BucketError> {
        self.0.put(key, body, condition).await
    }
    async fn head(
        &self,
        key: &str,
    ) -> Result<Option<std::collections::HashMap<String, String>>, BucketError> {
        self.0.head(key).await
    }
    async fn list(&self, prefixes: &[String]) -> Result<bucket::Listing, BucketError> {
        self.0.list(prefixes).await
    }
}

struct World {
    hands: Hands,
    bucket: Shared,
}

impl World {
    fn new() -> World {
        let hands = Hands::new();
        let bucket = Shared(Arc::new(MemoryBucket::new(hands.clock())));
        World { hands, bucket }
    }
    fn replica(&self, holder: &str) -> Coordinator {
        Coordinator::over(
            Box::new(self.bucket.clone()),
            PREFIX,
            TTL,
            holder.into(),
            self.hands.clock(),
        )
    }
}

fn taken(a: Acquired) -> Arc<Lease> {
    match a {
        Acquired::Taken(lease) => lease,
        Acquired::Held { holder, .. } => panic!("held by {holder}"),
    }
}

fn held_by(a: Acquired) -> (String, OffsetDateTime) {
    match a {
        Acquired::Held { holder, until } => (holder, until),
        Acquired::Taken(lease) => panic!("taken at generation {}", lease.generation),
    }
}

fn placement() -> Placement {
    serde_json::from_value(serde_json::json!({
        "parts": [["r53", {"zone_id": null}, [{"name": "_acme-challenge.www.example.test", "value": "v1"}]]]
    }))
    .unwrap()
}

fn body(holder: &str, generation: u64, expires_at: OffsetDateTime) -> Body {
    Body {
        cert: "www".into(),
        holder: holder.into(),
        generation,
        expires_at,
        dns: None,
    }
}

#[test]
fn step_waits_for_another_holders_unexpired_lease() {
    let s = step(&body("b", 4, t(10)), "a", t(0));
    assert!(matches!(s, Step::Wait { holder, until } if holder == "b" && until == t(10)));
}

#[test]
fn step_takes_over_an_expired_lease_from_a_holder_that_may_have_died() {
    let s = step(&body("b", 4, t(10)), "a", t(10));
    assert!(
        matches!(s, Step::Take { generation: 5, previous_holder: Some(h), left_dns: None } if h == "b")
    );
}

#[test]
fn step_after_a_release_or_of_our_own_lease_names_no_previous_holder() {
    let released = step(&body("b", 4, OffsetDateTime::UNIX_EPOCH), "a", t(0));
    assert!(matches!(
        released,
        Step::Take {
            generation: 5,
            previous_holder: None,
            ..
        }
    ));
    let ours = step(&body("a", 4, t(100)), "a", t(0));
    assert!(matches!(
        ours,
        Step::Take {
            generation: 5,
            previous_holder: None,
            ..
        }
    ));
}

#[test]
fn step_inherits_noted_records_but_not_an_empty_note() {
    let mut b = body("b", 1, t(-1));
    b.dns = Some(placement());
    assert!(matches!(step(&b, "a", t(0)), Step::Take { left_dns: Some(p), .. } if !p.is_empty()));
    b.dns = Some(Placement::default());
    assert!(matches!(
        step(&b, "a", t(0)),
        Step::Take { left_dns: None, .. }
    ));
}

#[test]
fn a_corrupt_lease_is_held_for_a_lease_from_its_last_write_above_every_generation() {
    let b = corrupt_stand_in(
        "www",
        br#"{"generation": 7, "holder": 3}"#,
        Some(t(0)),
        TTL,
        3,
    );
    assert_eq!((b.generation, b.expires_at), (7, t(600)));
    assert_eq!(b.holder, CORRUPT_HOLDER);
    let b = corrupt_stand_in("www", b"{trunc", Some(t(0)), TTL, 9);
    assert_eq!(b.generation, 9);
    // No Last-Modified: expired, but never at the epoch (that is a release).
    let b = corrupt_stand_in("www", b"", None, Duration::ZERO, 0);
    assert!(b.expires_at > OffsetDateTime::UNIX_EPOCH);
    assert!(matches!(
        step(&b, "a", t(0)),
        Step::Take {
            previous_holder: Some(_),
            ..
        }
    ));
}

fn meta(serial: &str, generation: Option<u64>, not_after: i64) -> crate::store::Meta {
    serde_json::from_value(serde_json::json!({
        "name": "www", "serial": serial,
        "not_before": "2027-01-01T00:00:00Z",
        "not_after": crate::replica::rfc3339(t(not_after)),
        "domains": ["www.example.test"], "sans": ["www.example.test"],
        "key_type": "ecdsa-p256", "sha256": "AB", "issuer": "https://ca.test/dir",
        "config_commit": "c0ffee", "issued_at": "2027-01-01T00:00:00Z", "version": 1,
        "generation": generation,
    }))
    .unwrap()
}

#[test]
fn the_bucket_set_is_newer_by_generation_else_by_expiry() {
    let here = meta("01", Some(3), 100);
    assert!(newer(None, &here));
    assert!(
        !newer(Some(&here), &meta("01", Some(9), 900)),
        "same serial"
    );
    assert!(
        newer(Some(&here), &meta("02", Some(4), 50)),
        "newer generation wins"
    );
    assert!(
        !newer(Some(&here), &meta("02", Some(2), 900)),
        "older generation loses"
    );
    assert!(newer(
        Some(&meta("01", None, 100)),
        &meta("02", Some(1), 50)
    ));
    assert!(
        newer(Some(&here), &meta("02", None, 101)),
        "no generation: later expiry"
    );
    assert!(!newer(Some(&here), &meta("02", None, 100)));
}

#[tokio::test]
async fn one_holder_at_a_time_and_a_takeover_fences_the_old_one() {
    let w = World::new();
    let (a, b) = (w.replica("a"), w.replica("b"));
    let first = taken(a.acquire("www").await.unwrap());
    assert_eq!(
        (first.generation, first.first, first.took_over.as_deref()),
        (1, true, None)
    );
    assert_eq!(
        held_by(b.acquire("www").await.unwrap()),
        ("a".into(), t(600))
    );
    w.hands.set(t(300));
    a.renew(&first).await.unwrap();
    w.hands.set(t(700));
    assert_eq!(
        held_by(b.acquire("www").await.unwrap()).1,
        t(900),
        "renewed"
    );
    w.hands.set(t(901));
    let second = taken(b.acquire("www").await.unwrap());
    assert_eq!((second.generation, second.first), (2, false));
    assert_eq!(second.took_over.as_deref(), Some("a"));
    assert!(matches!(
        a.renew(&first).await,
        Err(LeaseError::Lost { generation: 1, .. })
    ));
    let lease = w.bucket.0.json("certs/.leases/www").unwrap();
    assert_eq!(
        (lease["holder"].as_str(), lease["generation"].as_u64()),
        (Some("b"), Some(2))
    );
}

#[tokio::test]
async fn a_released_lease_is_taken_at_once_and_is_no_takeover() {
    let w = World::new();
    let (a, b) = (w.replica("a"), w.replica("b"));
    let lease = taken(a.acquire("www").await.unwrap());
    a.release(&lease).await;
    let next = taken(b.acquire("www").await.unwrap());
    assert_eq!((next.generation, next.took_over.as_deref()), (2, None));
}

#[tokio::test]
async fn a_first_lease_starts_above_the_published_generation() {
    let w = World::new();
    w.bucket
        .0
        .insert("certs/www/meta.json", b"{}", &[("generation", "7")]);
    let lease = taken(w.replica("a").acquire("www").await.unwrap());
    assert_eq!((lease.generation, lease.first), (8, false));
}

#[tokio::test]
async fn a_corrupt_lease_object_waits_a_lease_then_is_taken_over_above_it() {
    let w = World::new();
    w.bucket.0.insert(
        "certs/.leases/www",
        br#"{"generation": 7, "holder": 3}"#,
        &[],
    );
    let b = w.replica("b");
    w.hands.set(t(599));
    assert_eq!(
        held_by(b.acquire("www").await.unwrap()),
        (CORRUPT_HOLDER.into(), t(600))
    );
    w.hands.set(t(601));
    let lease = taken(b.acquire("www").await.unwrap());
    assert_eq!(lease.generation, 8);
    assert_eq!(lease.took_over.as_deref(), Some(CORRUPT_HOLDER));
}

#[tokio::test]
async fn records_noted_by_a_holder_that_died_go_to_the_next_holder() {
    let w = World::new();
    let (a, b) = (w.replica("a"), w.replica("b"));
    let _lease = taken(a.acquire("www").await.unwrap());
    a.note("www", &placement()).await.unwrap();
    // a dies here: no cleanup, no release.
    w.hands.set(t(601));
    let next = taken(b.acquire("www").await.unwrap());
    assert!(next.left_dns.as_ref().is_some_and(|p| !p.is_empty()));
    // Still noted in the lease until b has removed them and rewrites it.
    assert!(w.bucket.0.json("certs/.leases/www").unwrap()["dns"].is_object());
    b.forget("www").await;
    b.renew(&next).await.unwrap();
    assert!(
        w.bucket
            .0
            .json("certs/.leases/www")
            .unwrap()
            .get("dns")
            .is_none()
    );
}

#[tokio::test]
async fn the_survey_leases_new_certificates_blind_but_never_twice() {
    let w = World::new();
    let (a, b) = (w.replica("a"), w.replica("b"));
    w.bucket.0.insert("certs/old/meta.json", b"{}", &[]);
    let survey = a.survey(&["new", "old"]).await.unwrap();
    // b leases "new" after a's listing: a's blind create must fail and
    // fall back to looking.
    let theirs = taken(b.acquire("new").await.unwrap());
    assert_eq!(theirs.generation, 1);
    assert_eq!(held_by(a.acquire("new").await.unwrap()).0, "b");
    let old = taken(a.acquire("old").await.unwrap());
    assert_eq!((old.generation, old.first), (1, false), "a live set exists");
    drop(survey);
}
