//! The Route53 provider against moto behind the realistic Route53 front
//! (changes PENDING for a while, fresh change ids, 5 requests/s): values
//! are merged into what is there, cleanup removes only what certkeeper
//! added, a present returns only once its change is INSYNC.

use crate::support;

use certkeeper::dns::route53::Route53;
use certkeeper::dns::{DnsProvider, TxtRecord, ZoneHint};
use std::sync::Arc;

async fn txt_values(moto: &support::Moto, zone: &str, name: &str) -> Vec<String> {
    let out = moto
        .route53()
        .await
        .list_resource_record_sets()
        .hosted_zone_id(zone)
        .send()
        .await
        .unwrap();
    let mut values: Vec<String> = out
        .resource_record_sets()
        .iter()
        .filter(|s| s.name().trim_end_matches('.') == name && s.r#type().as_str() == "TXT")
        .flat_map(|s| s.resource_records().iter().map(|r| r.value().to_string()))
        .collect();
    values.sort();
    values
}

/// Changes stay PENDING this long.
const PENDING: std::time::Duration = std::time::Duration::from_millis(1500);

fn front(moto: &support::Moto) -> support::Route53Front {
    support::Route53Front::start(
        moto,
        support::Route53Timing {
            insync: PENDING,
            requests_per_second: 5.0,
            prior_request_window: std::time::Duration::ZERO,
        },
    )
}

fn rec(name: &str, value: &str) -> TxtRecord {
    TxtRecord {
        name: name.into(),
        value: value.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn merges_and_removes_only_its_own_values() {
    let moto = support::Moto::start();
    let zone = moto.create_zone("example.test").await;
    moto.create_zone("sub.example.test").await;
    let name = "_acme-challenge.www.example.test";

    // Another client's value is already there.
    let r53 = moto.route53().await;
    let foreign = aws_sdk_route53::types::ResourceRecordSet::builder()
        .name(format!("{name}."))
        .r#type(aws_sdk_route53::types::RrType::Txt)
        .ttl(60)
        .resource_records(
            aws_sdk_route53::types::ResourceRecord::builder()
                .value("\"other-client\"")
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    r53.change_resource_record_sets()
        .hosted_zone_id(&zone)
        .change_batch(
            aws_sdk_route53::types::ChangeBatch::builder()
                .changes(
                    aws_sdk_route53::types::Change::builder()
                        .action(aws_sdk_route53::types::ChangeAction::Upsert)
                        .resource_record_set(foreign)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    let front = front(&moto);
    let provider = Arc::new(Route53::new(front.route53().await));
    let hint = ZoneHint::default();
    // Two orders presenting on the same name at once (a wildcard and its
    // apex in different certificates) must not drop each other's value.
    let (a, b) = (provider.clone(), provider.clone());
    let (ra, rb) = tokio::join!(
        async move {
            a.present(&ZoneHint::default(), &[rec(name, "value-a")])
                .await
        },
        async move {
            b.present(&ZoneHint::default(), &[rec(name, "value-b")])
                .await
        },
    );
    ra.unwrap();
    rb.unwrap();
    // Both presents returned after their change was seen INSYNC.
    let log = front.log();
    let change = &front.changes()[0];
    assert!(log.contains(&format!("GetChange {change} INSYNC")), "{log}");
    assert_eq!(
        txt_values(&moto, &zone, name).await,
        ["\"other-client\"", "\"value-a\"", "\"value-b\""]
    );

    provider
        .cleanup(&hint, &[rec(name, "value-a")])
        .await
        .unwrap();
    assert_eq!(
        txt_values(&moto, &zone, name).await,
        ["\"other-client\"", "\"value-b\""]
    );
    provider
        .cleanup(&hint, &[rec(name, "value-b")])
        .await
        .unwrap();
    assert_eq!(txt_values(&moto, &zone, name).await, ["\"other-client\""]);
    // Cleaning up again is a no-op, not an error.
    provider
        .cleanup(&hint, &[rec(name, "value-b")])
        .await
        .unwrap();

    // Longest suffix wins: a name under sub.example.test goes to that zone.
    let sub_zone = provider
        .zone_for(&hint, "_acme-challenge.x.sub.example.test")
        .await
        .unwrap();
    assert_ne!(sub_zone, zone);
    assert!(matches!(
        provider
            .zone_for(&hint, "_acme-challenge.www.nowhere.test")
            .await,
        Err(certkeeper::dns::DnsError::NoZone { .. })
    ));
    // The last value of a name is removed with a DELETE of the exact set.
    provider
        .present(&hint, &[rec("_acme-challenge.solo.example.test", "v")])
        .await
        .unwrap();
    provider
        .cleanup(&hint, &[rec("_acme-challenge.solo.example.test", "v")])
        .await
        .unwrap();
    assert!(
        txt_values(&moto, &zone, "_acme-challenge.solo.example.test")
            .await
            .is_empty()
    );
    assert!(provider.api_calls() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_orders_share_one_change_and_a_bad_one_is_isolated() {
    let moto = support::Moto::start();
    let zone = moto.create_zone("example.test").await;
    moto.create_zone("other.test").await;
    let front = front(&moto);
    let provider = Arc::new(Route53::new(front.route53().await));

    // 20 orders present at once: one zone listing, one zone snapshot (two
    // reads), one ChangeBatch and its INSYNC wait (two GetChange: a change
    // is PENDING 1.5 s) for all of them.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let p = provider.clone();
        tasks.push(tokio::spawn(async move {
            p.present(
                &ZoneHint::default(),
                &[rec(&format!("_acme-challenge.h{i}.example.test"), "v")],
            )
            .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let calls = provider.api_calls();
    assert_eq!(front.changes().len(), 1, "{}", front.log());
    assert!(
        calls <= 6,
        "{calls} Route53 calls for 20 concurrent presents"
    );
    assert_eq!(
        txt_values(&moto, &zone, "_acme-challenge.h7.example.test").await,
        ["\"v\""]
    );

    // A request the zone refuses (a name outside it, with the zone given
    // explicitly) fails alone; the others in the same batch succeed.
    let bad_hint = ZoneHint {
        zone_id: Some(zone.clone()),
    };
    let (p1, p2) = (provider.clone(), provider.clone());
    let bad = tokio::spawn(async move {
        p1.present(&bad_hint, &[rec("_acme-challenge.x.other.test", "bad")])
            .await
    });
    let good = tokio::spawn(async move {
        p2.present(
            &ZoneHint::default(),
            &[rec("_acme-challenge.ok.example.test", "good")],
        )
        .await
    });
    let err = bad.await.unwrap().unwrap_err().to_string();
    assert!(err.contains("InvalidChangeBatch"), "{err}");
    good.await.unwrap().unwrap();
    assert_eq!(
        txt_values(&moto, &zone, "_acme-challenge.ok.example.test").await,
        ["\"good\""]
    );

    // Cleanup of all 20 at once is one more change.
    let before = provider.api_calls();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let p = provider.clone();
        tasks.push(tokio::spawn(async move {
            p.cleanup(
                &ZoneHint::default(),
                &[rec(&format!("_acme-challenge.h{i}.example.test"), "v")],
            )
            .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert!(
        provider.api_calls() - before <= 2,
        "{} calls for cleanup",
        provider.api_calls() - before
    );
    assert!(
        txt_values(&moto, &zone, "_acme-challenge.h7.example.test")
            .await
            .is_empty()
    );
}

/// Two writers on one zone (two replicas, or certkeeper and a person):
/// Route53 refuses a change that comes while it still processes the
/// zone's previous one (PriorRequestNotComplete); each is retried after a
/// pause and every value lands, then every one is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prior_request_not_complete_is_waited_out() {
    let moto = support::Moto::start();
    let zone = moto.create_zone("example.test").await;
    let front = support::Route53Front::start(
        &moto,
        support::Route53Timing {
            insync: PENDING,
            requests_per_second: 5.0,
            prior_request_window: std::time::Duration::from_millis(800),
        },
    );
    let writers = [
        Arc::new(Route53::new(front.route53().await)),
        Arc::new(Route53::new(front.route53().await)),
        Arc::new(Route53::new(front.route53().await)),
    ];
    let name = |w: usize, i: usize| format!("_acme-challenge.w{w}-{i}.example.test");
    for op in ["present", "cleanup"] {
        let mut tasks = Vec::new();
        for (w, p) in writers.iter().enumerate() {
            for i in 0..3 {
                let (p, n) = (p.clone(), name(w, i));
                tasks.push(tokio::spawn(async move {
                    let records = [rec(&n, "v")];
                    if op == "present" {
                        p.present(&ZoneHint::default(), &records).await
                    } else {
                        p.cleanup(&ZoneHint::default(), &records).await
                    }
                }));
            }
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        for w in 0..3 {
            for i in 0..3 {
                let want: &[&str] = if op == "present" { &["\"v\""] } else { &[] };
                assert_eq!(txt_values(&moto, &zone, &name(w, i)).await, want, "{op}");
            }
        }
    }
    let log = front.log();
    assert!(
        log.lines()
            .any(|l| l.contains(" 400 PriorRequestNotComplete ")),
        "three writers at once never overlapped: {log}"
    );
}
