use super::*;
use time::macros::datetime;

fn iam(name: &str) -> CertCopy {
    CertCopy {
        arn: format!("arn:aws:iam::123456789012:server-certificate/cloudfront/web/{name}"),
        iam_id: Some(format!("ASCA{}", name.to_uppercase())),
        region: None,
    }
}

fn copies() -> Copies {
    Copies {
        current: vec![iam("new")],
        previous: vec![iam("old"), iam("older")],
    }
}

#[test]
fn a_consumer_is_aligned_by_arn_or_iam_id() {
    let new = iam("new");
    assert_eq!(
        standing(std::slice::from_ref(&new.arn), &new),
        Standing::Aligned
    );
    assert_eq!(standing(&["ASCANEW".into()], &new), Standing::Aligned);
    assert_eq!(standing(&["ASCAOLD".into()], &new), Standing::Behind);
    // CloudFront's own certificate: nothing referenced.
    assert_eq!(standing(&[], &new), Standing::Behind);
    // An additional-certificate listener holding both.
    assert_eq!(
        standing(&[iam("old").arn, new.arn.clone()], &new),
        Standing::Aligned
    );
}

#[test]
fn previous_is_every_distribution_on_a_copy_of_this_certificate() {
    let all = vec![
        ("EOLD".to_string(), vec!["ASCAOLD".to_string()]),
        ("EOLDER".to_string(), vec!["ASCAOLDER".to_string()]),
        ("ENEW".to_string(), vec!["ASCANEW".to_string()]),
        ("EOTHER".to_string(), vec!["ASCASOMEONEELSE".to_string()]),
        ("EDEFAULT".to_string(), vec![]),
        (
            "EACM".to_string(),
            vec!["arn:aws:acm:us-east-1:123456789012:certificate/x".to_string()],
        ),
    ];
    assert_eq!(on_ours(&all, &copies()), vec!["EOLD", "EOLDER", "ENEW"]);
}

#[test]
fn a_halt_holds_for_retry_after_and_only_for_that_certificate() {
    let at = datetime!(2026-12-07 06:00 UTC);
    let halt = Halt {
        sha256: "AA".into(),
        at,
        step: "elb small:443".into(),
        reason: "mismatch".into(),
    };
    let day = std::time::Duration::from_secs(86400);
    assert_eq!(
        halted_until(Some(&halt), "AA", day, datetime!(2026-12-07 18:00 UTC)),
        Some(datetime!(2026-12-08 06:00 UTC))
    );
    assert_eq!(
        halted_until(Some(&halt), "AA", day, datetime!(2026-12-08 06:00 UTC)),
        None
    );
    // A newer certificate is rolled out at once.
    assert_eq!(
        halted_until(Some(&halt), "BB", day, datetime!(2026-12-07 07:00 UTC)),
        None
    );
    assert_eq!(halted_until(None, "AA", day, at), None);
}

#[test]
fn the_summary_is_aligned_only_when_every_consumer_is() {
    let read = vec![
        (
            "elb small:443".to_string(),
            vec!["a".to_string()],
            Standing::Aligned,
        ),
        (
            "cloudfront E1".to_string(),
            vec!["b".to_string()],
            Standing::Behind,
        ),
    ];
    let s = summary(&read, "not aligned".into());
    assert!(!s.aligned);
    assert_eq!(s.consumers.len(), 2);
    assert!(s.consumers[0].aligned && !s.consumers[1].aligned);
    assert!(summary(&read[..1], "aligned".into()).aligned);
    // No consumer read (the rollout stopped before): not aligned.
    assert!(!summary(&[], "x".into()).aligned);
}

// The rollout's order of events, with consumers and a target that only
// record what is asked of them.

use crate::endpoint::{Endpoint, VerifySpec};
use crate::publish::Outcome as Published;
use crate::settings::{ListenerRole, RolloutStep};
use std::sync::Mutex;
use std::time::Duration;

type Log = Arc<Mutex<Vec<String>>>;

struct Fake {
    label: String,
    refs: Mutex<Vec<String>>,
    log: Log,
    refuse: bool,
}

#[async_trait]
impl Consumer for Fake {
    fn label(&self) -> String {
        self.label.clone()
    }

    fn wants<'a>(&self, copies: &'a [CertCopy]) -> Option<&'a CertCopy> {
        copies.first()
    }

    async fn read(&self) -> Result<Vec<String>, ConsumerError> {
        Ok(self.refs.lock().unwrap().clone())
    }

    async fn switch(&self, to: &CertCopy, _replace: &[String]) -> Result<(), ConsumerError> {
        if self.refuse {
            return Err(ConsumerError::Api("AccessDenied".into()));
        }
        self.log
            .lock()
            .unwrap()
            .push(format!("switch {}", self.label));
        *self.refs.lock().unwrap() = vec![to.arn.clone()];
        Ok(())
    }

    async fn restore(&self, before: &[String], _to: &CertCopy) -> Result<(), ConsumerError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("restore {}", self.label));
        *self.refs.lock().unwrap() = before.to_vec();
        Ok(())
    }
}

struct FakeTarget {
    pruned: Mutex<Option<BTreeSet<String>>>,
}

#[async_trait]
impl Target for FakeTarget {
    fn name(&self) -> &str {
        "cdn"
    }

    async fn publish(&self, _item: &Item<'_>) -> Result<Published, PublishError> {
        Ok(Published::default())
    }

    async fn prune(&self, _item: &Item<'_>, in_use: &BTreeSet<String>) -> Result<(), PublishError> {
        *self.pruned.lock().unwrap() = Some(in_use.clone());
        Ok(())
    }
}

fn copy(arn: &str) -> CertCopy {
    CertCopy {
        arn: arn.into(),
        iam_id: None,
        region: None,
    }
}

/// A step; with `verify`, its endpoint refuses connections and the window
/// is `window`.
fn step(id: &str, verify: Option<Duration>) -> RolloutStep {
    RolloutStep {
        cloudfront: Some(id.into()),
        elb: None,
        listener: None,
        role: ListenerRole::Default,
        verify: verify.map(|window| VerifySpec {
            endpoints: vec![Endpoint::Address("127.0.0.1:1".into())],
            window,
            interval: Duration::from_millis(50),
        }),
    }
}

fn rollout(steps: Vec<RolloutStep>) -> Rollout {
    let conf = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .build();
    Rollout {
        cert: "web".into(),
        settings: RolloutSettings {
            target: "cdn".into(),
            step_lines: (0..steps.len()).map(|i| 20 + i).collect(),
            steps,
            deploy_timeout: Duration::from_secs(60),
            retry_after: Duration::from_secs(86400),
            aws: Default::default(),
        },
        source: PathBuf::from("/etc/certkeeper/certkeeper.yaml"),
        cloudfront: aws_sdk_cloudfront::Client::new(&conf),
        elb: aws_sdk_elasticloadbalancing::Client::new(&conf),
        elbv2: BTreeMap::new(),
        region: "us-east-1".into(),
    }
}

struct World {
    log: Log,
    planned: Planned,
    fakes: Vec<Arc<Fake>>,
    target: FakeTarget,
    store: Store,
    meta: crate::store::Meta,
    _dir: tempfile::TempDir,
}

/// Consumers per step: (label, what it references, refuses to switch).
fn world(steps: &[&[(&str, &str, bool)]]) -> World {
    let log: Log = Arc::default();
    let mut planned = Vec::new();
    let mut fakes = Vec::new();
    for (i, consumers) in steps.iter().enumerate() {
        let mut list: Vec<Arc<dyn Consumer>> = Vec::new();
        for (label, refs, refuse) in consumers.iter() {
            let fake = Arc::new(Fake {
                label: label.to_string(),
                refs: Mutex::new(
                    refs.split(',')
                        .filter(|r| !r.is_empty())
                        .map(str::to_string)
                        .collect(),
                ),
                log: log.clone(),
                refuse: *refuse,
            });
            fakes.push(fake.clone());
            list.push(fake);
        }
        planned.push((i, list));
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("state")).unwrap();
    let meta = crate::store::Meta {
        name: "web".into(),
        serial: "02".into(),
        not_before: OffsetDateTime::UNIX_EPOCH,
        not_after: OffsetDateTime::UNIX_EPOCH,
        domains: vec!["web.example.test".into()],
        sans: vec!["web.example.test".into()],
        key_type: crate::pki::KeyType::EcdsaP256,
        sha256: "NEWSHA".into(),
        issuer: "https://ca.test/dir".into(),
        config_commit: "abc".into(),
        issued_at: OffsetDateTime::UNIX_EPOCH,
        version: 2,
        profile: None,
        generation: None,
    };
    World {
        log,
        planned,
        fakes,
        target: FakeTarget {
            pruned: Mutex::new(None),
        },
        store,
        meta,
        _dir: dir,
    }
}

const NOW: OffsetDateTime = datetime!(2026-12-07 06:00 UTC);

impl World {
    async fn roll(
        &self,
        rollout: &Rollout,
        cancel: &CancellationToken,
    ) -> (
        Result<(), RolloutError>,
        Vec<(String, Vec<String>, Standing)>,
    ) {
        let copies = Copies {
            current: vec![copy("new")],
            previous: vec![copy("old")],
        };
        let item = Item::new(&self.meta, &[], &BTreeMap::new(), &self.store);
        let mut read = Vec::new();
        let cx = Context {
            target: &self.target,
            item: &item,
            store: &self.store,
            cancel,
            now: NOW,
            switch: true,
        };
        let result = rollout
            .roll_planned(&self.planned, &copies, &cx, &mut read)
            .await;
        (result, read)
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn refs(&self, i: usize) -> Vec<String> {
        self.fakes[i].refs.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn a_canary_that_does_not_serve_it_is_switched_back_and_the_rest_untouched() {
    let w = world(&[&[("canary", "old", false)], &[("E2", "old", false)]]);
    let r = rollout(vec![step("E1", Some(Duration::ZERO)), step("E2", None)]);
    let (result, read) = w.roll(&r, &CancellationToken::new()).await;
    let e = result.unwrap_err();
    assert!(matches!(e, RolloutError::NotServed { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.starts_with(
            "/etc/certkeeper/certkeeper.yaml:20: rollouts.web.steps[0]: canary does not serve"
        ),
        "{text}"
    );
    assert_eq!(w.log(), ["switch canary", "restore canary"]);
    assert_eq!(w.refs(0), ["old"]);
    assert_eq!(w.refs(1), ["old"], "the rest untouched");
    let halt = read_halt(&w.store, "web").expect("halted");
    assert_eq!((halt.sha256.as_str(), halt.at), ("NEWSHA", NOW));
    assert!(w.target.pruned.lock().unwrap().is_none(), "nothing pruned");
    assert!(
        read.iter().all(|(_, _, s)| *s == Standing::Behind),
        "{read:?}"
    );

    // Until retry_after: nothing is switched, and the error says why.
    w.log.lock().unwrap().clear();
    let (result, _) = w.roll(&r, &CancellationToken::new()).await;
    let text = result.unwrap_err().to_string();
    assert!(
        text.contains("halted since 2026-12-07T06:00:00Z at canary"),
        "{text}"
    );
    assert!(
        text.contains("tried again after 2026-12-08T06:00:00Z"),
        "{text}"
    );
    assert!(w.log().is_empty());
}

#[tokio::test]
async fn a_shutdown_during_the_check_switches_back_without_halting() {
    let w = world(&[&[("canary", "old", false)], &[("E2", "old", false)]]);
    let r = rollout(vec![
        step("E1", Some(Duration::from_secs(3600))),
        step("E2", None),
    ]);
    let cancel = CancellationToken::new();
    cancel.cancel();
    let (result, _) = w.roll(&r, &cancel).await;
    assert!(matches!(result, Err(RolloutError::NotServed { .. })));
    assert_eq!(w.log(), ["switch canary", "restore canary"]);
    assert!(
        read_halt(&w.store, "web").is_none(),
        "a shutdown halts nothing"
    );
}

#[tokio::test]
async fn a_refused_switch_puts_back_what_its_step_switched() {
    let w = world(&[
        &[("canary", "old", false)],
        &[("E2", "old", false), ("E3", "old", true)],
        &[("E4", "old", false)],
    ]);
    let r = rollout(vec![
        step("E1", None),
        step("previous", None),
        step("E4", None),
    ]);
    let (result, _) = w.roll(&r, &CancellationToken::new()).await;
    let text = result.unwrap_err().to_string();
    assert!(
        text.contains("rollouts.web.steps[1]: switching E3: AccessDenied; switched back: E2"),
        "{text}"
    );
    assert_eq!(w.log(), ["switch canary", "switch E2", "restore E2"]);
    assert_eq!(w.refs(3), ["old"], "later steps untouched");
}

#[tokio::test]
async fn aligned_consumers_are_left_alone_and_pruning_keeps_what_they_use() {
    let w = world(&[&[("canary", "new", false)], &[("E2", "new,other", false)]]);
    let r = rollout(vec![step("E1", Some(Duration::ZERO)), step("E2", None)]);
    let (result, read) = w.roll(&r, &CancellationToken::new()).await;
    result.unwrap();
    assert!(w.log().is_empty(), "{:?}", w.log());
    assert!(read.iter().all(|(_, _, s)| *s == Standing::Aligned));
    let pruned = w.target.pruned.lock().unwrap().clone().expect("pruned");
    assert_eq!(
        pruned,
        BTreeSet::from(["new".to_string(), "other".to_string()])
    );
}

#[tokio::test]
async fn behind_consumers_are_switched_in_order_then_pruned() {
    let w = world(&[
        &[("canary", "old", false)],
        &[("E2", "old", false), ("E3", "new", false)],
    ]);
    let r = rollout(vec![step("E1", None), step("previous", None)]);
    let (result, read) = w.roll(&r, &CancellationToken::new()).await;
    result.unwrap();
    assert_eq!(w.log(), ["switch canary", "switch E2"]);
    assert!(
        read.iter().all(|(_, _, s)| *s == Standing::Aligned),
        "{read:?}"
    );
    let pruned = w.target.pruned.lock().unwrap().clone().expect("pruned");
    assert_eq!(
        pruned,
        BTreeSet::from(["new".to_string()]),
        "old is free to go"
    );
}
